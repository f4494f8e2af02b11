// What the three bench/receive scripts share on top of bench/lib.mjs: their
// common options, the C programs beside them, memory warming, and the
// scratch folder (removed at the end, on an error and on Ctrl-C).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { benchDir, compileC, onStop, repoRoot, stopAll } from '../lib.mjs';

export const here = path.join(benchDir, 'receive');
/** The zcopy build measured: ZCOPY_DIST (a tsc --outDir) or the repo's dist/. */
export const dist = process.env.ZCOPY_DIST ? path.resolve(process.env.ZCOPY_DIST) : path.join(repoRoot, 'dist');

/** The options every script takes; `size`/`runs` defaults differ per script. */
export const commonSpec = (size, runs) => ({
  size: { type: 'string', default: size },
  runs: { type: 'string', default: runs },
  json: { type: 'string' },
  dir: { type: 'string' },
});

/** bench/receive/<name>.c built into bench/.build/receive-<name> (when older than its sources). */
export function cBin(name) {
  return compileC(path.join(here, `${name}.c`), `receive-${name}`, { deps: [path.join(here, 'common.h')] });
}

/** A scratch folder under `dir` (default the OS's), removed at exit or Ctrl-C, with the processes left. */
export function scratch(dir, prefix) {
  const work = fs.mkdtempSync(path.join(dir ?? os.tmpdir(), prefix));
  onStop(() => fs.rmSync(work, { recursive: true, force: true }));
  process.once('exit', stopAll);
  return work;
}

let warmBin;
/** Touches 1.25 x bytes of memory and frees it (warm.c: why). */
export function warm(bytes) {
  warmBin ??= cBin('warm');
  execFileSync(warmBin, [String(Math.ceil(bytes * 1.25))]);
}
