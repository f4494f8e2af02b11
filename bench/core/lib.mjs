// bench/core's helpers (buildC, locked, jsonChild, spread, table, ...) are
// the shared harness now, bench/lib.mjs; this file keeps the old import path
// working for the benches that still use it (bench/kafka).
export * from '../lib.mjs';
