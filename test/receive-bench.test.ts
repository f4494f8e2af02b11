// bench/receive runs: its three scripts (socket -> file receivers, HTTP
// uploads, event-loop delay) at a few MiB against this build
// (ZCOPY_DIST=.test-build/src), so a change that breaks a benchmark fails
// here rather than at the next measurement. Figures are not asserted (the
// machine is shared); what each script checks itself is: every receiver got
// every byte, every upload stored SIZE bytes with 201, receiveFile returned
// SIZE. Skipped without a C compiler.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tmpDir } from './helpers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// .test-build/test -> the repository root.
const root = path.resolve(here, '..', '..');
const dist = path.resolve(here, '..', 'src');
const noCc = spawnSync('cc', ['--version']).status !== 0 ? 'no C compiler (cc)' : false;

function run(script: string, args: string[]): { stdout: string; json: Record<string, unknown> } {
  const dir = tmpDir('zcopy-bench-recv-test-');
  try {
    const json = path.join(dir, 'out.json');
    const r = spawnSync(process.execPath, [path.join(root, 'bench', 'receive', script), ...args, '--json', json, '--dir', dir], {
      env: { ...process.env, ZCOPY_DIST: dist },
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(r.status, 0, `${script} exited ${r.status} ${r.signal ?? ''}\n${r.stdout}\n${r.stderr}`);
    return { stdout: r.stdout, json: JSON.parse(fs.readFileSync(json, 'utf8')) as Record<string, unknown> };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('bench/receive/index.mjs: receiveFile, the stream pipe and the C receivers each store every byte, on both transports', { skip: noCc, timeout: 150_000 }, () => {
  const { stdout, json } = run('index.mjs', ['--size', '4m', '--runs', '1', '--no-warm', '--receivers', 'receiveFile,stream pipe,C splice,C splice nb,C splice nb lowat 256k']);
  const results = json.results as { transport: string; receiver: string; runs: { bytes: number }[] }[];
  assert.equal(results.length, 10, stdout);
  for (const r of results) assert.deepEqual(r.runs.map((x) => x.bytes), [4 * 1024 ** 2], `${r.transport} ${r.receiver}`);
  assert.match(stdout, /^tcp +receiveFile +\d+/m);
});

test('bench/receive/upload.mjs: zcopy serve --upload and an Express handler store the whole body', { skip: noCc, timeout: 150_000 }, () => {
  const { stdout, json } = run('upload.mjs', ['--size', '4m', '--runs', '1', '--no-warm', '--servers', 'zcopy,express,express-receiveBody']);
  const results = json.results as { server: string; runs: { ms: number }[] }[];
  assert.deepEqual(results.map((r) => r.server), ['zcopy', 'express', 'express-receiveBody'], stdout);
  for (const r of results) assert.equal(r.runs.length, 1);
});

test('bench/receive/loop-delay.mjs: prints p99 for the kernel and the portable path', { skip: noCc, timeout: 150_000 }, () => {
  const { stdout, json } = run('loop-delay.mjs', ['--size', '8m', '--runs', '1', '--no-drop']);
  const results = json.results as { cache: string; mechanism: string; runs: { p99: number; spliced: number; portable: number }[] }[];
  assert.deepEqual(results.map((r) => `${r.cache}/${r.mechanism}`), ['cached/auto', 'cached/copy'], stdout);
  for (const r of results) assert.ok(r.runs[0]!.p99 > 0, stdout);
  // The kernel path really spliced (with the addon); 'copy' never does.
  const auto = results[0]!.runs[0]!;
  if (process.env.ZCOPY_FORCE_FALLBACK !== '1') assert.ok(auto.spliced > 0, `auto spliced ${auto.spliced}`);
  else assert.equal(auto.spliced, 0);
  assert.equal(results[1]!.runs[0]!.spliced, 0);
});
