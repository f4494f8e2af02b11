#!/usr/bin/env node
// Runs the compiled suite (.test-build/test) twice: with the native addon,
// then with ZCOPY_FORCE_FALLBACK=1 so every transfer test also proves the
// portable path. Prints one closing "N passed, N failed" line for both.
import { spawnSync } from 'node:child_process';
import { readdirSync, existsSync } from 'node:fs';
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
for (const mode of modes) {
  console.log(`\n=== zcopy tests: ${mode.name} ===`);
  const r = spawnSync(process.execPath, ['--test', '--test-reporter=spec', '--test-concurrency=1', ...files], {
    cwd: root,
    env: { ...process.env, ...mode.env },
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    timeout: 20 * 60 * 1000,
  });
  process.stdout.write(r.stdout ?? '');
  const num = (k) => Number(/^\S*\s*ℹ (\w+) (\d+)$/m.test('') ? 0 : (r.stdout.match(new RegExp(`^ℹ ${k} (\\d+)$`, 'm')) ?? [])[1] ?? 0);
  passed += num('pass');
  failed += num('fail');
  skipped += num('skipped');
  if (r.status !== 0) status = 1;
  if (r.error) {
    console.error(`test run failed: ${r.error.message}`);
    status = 1;
  }
}
console.log(`\nzcopy: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(status);
