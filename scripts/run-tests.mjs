#!/usr/bin/env node
// Runs the compiled suite (.test-build/test) twice: with the native addon,
// then with ZCOPY_FORCE_FALLBACK=1 so every transfer test also proves the
// portable path. Prints one closing "N passed, N failed" line for both.
import { spawnSync } from 'node:child_process';
import { readdirSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const testDir = join(root, '.test-build', 'test');
const only = process.argv.slice(2);
const files = readdirSync(testDir)
  .filter((f) => f.endsWith('.test.js'))
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort()
  .map((f) => join(testDir, f));
if (files.length === 0) {
  console.error('no test files found in', testDir);
  process.exit(1);
}

const modes = [
  { name: 'native', env: {} },
  { name: 'portable (ZCOPY_FORCE_FALLBACK=1)', env: { ZCOPY_FORCE_FALLBACK: '1' } },
];
if (!existsSync(join(root, 'build', 'Release', 'zcopy.node'))) {
  console.log('note: the native addon is not built; both runs use the portable path');
}

let passed = 0;
let failed = 0;
let skipped = 0;
let status = 0;
const tapDir = mkdtempSync(join(tmpdir(), 'zcopy-tap-'));
for (const [i, mode] of modes.entries()) {
  console.log(`\n=== zcopy tests: ${mode.name} ===`);
  // spec to the terminal as it runs; tap to a file for the totals.
  const tap = join(tapDir, `run-${i}.tap`);
  const r = spawnSync(
    process.execPath,
    ['--test', '--test-concurrency=1', '--test-reporter=spec', '--test-reporter-destination=stdout', '--test-reporter=tap', `--test-reporter-destination=${tap}`, ...files],
    { cwd: root, env: { ...process.env, ...mode.env }, stdio: ['ignore', 'inherit', 'inherit'], timeout: 12 * 60 * 1000, killSignal: 'SIGKILL' },
  );
  const out = existsSync(tap) ? readFileSync(tap, 'utf8') : '';
  const num = (k) => Number((out.match(new RegExp(`^# ${k} (\\d+)$`, 'm')) ?? [])[1] ?? 0);
  passed += num('pass');
  failed += num('fail') + num('cancelled');
  skipped += num('skipped');
  if (r.status !== 0) status = 1;
  if (r.error || r.signal) {
    console.error(`test run (${mode.name}) did not finish: ${r.error?.message ?? `killed by ${r.signal} (time limit)`}`);
    failed += 1;
    status = 1;
  }
}
rmSync(tapDir, { recursive: true, force: true });
console.log(`\nzcopy: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(status);
