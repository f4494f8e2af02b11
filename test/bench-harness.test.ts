// bench/lib.mjs, the harness every bench uses: sizes and counts parsed the
// way the CLI parses them, median/spread/ratio, interleaved runs, results
// written where asked, and every converted bench answering --help (exit 0)
// and a bad option with one plain line and exit status 2 before it measures
// anything (no lock taken, no child started).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { tmpDir, withTimeout } from './helpers.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const dir = tmpDir('zcopy-bench-harness-');
after(() => fs.rmSync(dir, { recursive: true, force: true }));

// The harness is plain JavaScript outside the TypeScript build.
const lib: any = await import(pathToFileURL(path.join(ROOT, 'bench', 'lib.mjs')).href);

function node(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ZCOPY_BENCH_LOCK: path.join(dir, 'never-taken.lock'), ...env } });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  child.stderr.on('data', (d: Buffer) => (err += d));
  return withTimeout(
    new Promise<{ code: number | null; out: string; err: string }>((resolve) => child.once('close', (code) => resolve({ code, out, err }))),
    20_000,
    `node ${args.join(' ')}`,
  ).catch((e: Error) => {
    child.kill('SIGKILL');
    throw e;
  });
}

describe('bench/lib.mjs', () => {
  it('parses sizes, counts and seconds, and refuses the rest with a usage error', () => {
    assert.equal(lib.parseSize('16m'), 16 * 2 ** 20);
    assert.equal(lib.parseSize('1GiB'), 2 ** 30);
    assert.equal(lib.parseSize('64k'), 65536);
    assert.equal(lib.parseSize('65536'), 65536);
    assert.equal(lib.parseSize('1.5g'), 1.5 * 2 ** 30);
    assert.throws(() => lib.parseSize('lots', 'size'), (e: Error) => e instanceof lib.BenchUsageError && /^invalid --size 'lots'/.test(e.message));
    assert.equal(lib.parseCount('3', 'runs'), 3);
    assert.throws(() => lib.parseCount('0', 'runs'), /invalid --runs '0': expected a whole number >= 1/);
    assert.throws(() => lib.parseCount('2x', 'runs'), lib.BenchUsageError);
    assert.equal(lib.parseSeconds('0.5'), 0.5);
    assert.throws(() => lib.parseSeconds('0'), /invalid --seconds '0'/);
  });

  it('median, spread, ratio and their formatting', () => {
    assert.equal(lib.median([3, 1, 2]), 2);
    assert.equal(lib.median([4, 1, 2, 3]), 2.5);
    assert.deepEqual(lib.spread([5, NaN, 1, 3]), { median: 3, min: 1, max: 5, n: 3 });
    assert.equal(lib.spread([NaN]), null);
    assert.deepEqual(lib.scaleSpread({ median: 2e6, min: 1e6, max: 3e6, n: 3 }, 1e6), { median: 2, min: 1, max: 3, n: 3 });
    assert.equal(lib.ratio(3, 2), 1.5);
    assert.equal(lib.ratio(3, 0), null);
    assert.equal(lib.ratio(undefined, 2), null);
    assert.equal(lib.fmtRatio(3, 2), '1.50x');
    assert.equal(lib.fmtRatio(null, 2), '-');
    assert.equal(lib.fmtSpread({ median: 2, min: 1, max: 3 }, 1), '2.0 [1.0-3.0]');
    assert.equal(lib.fmtSize(16 * 2 ** 20), '16 MiB');
  });

  it('interleave: every scenario once per run, rotated on request, results in run order', async () => {
    const calls: string[] = [];
    const r = await lib.interleave(3, ['a', 'b', 'c'], async (name: string, run: number) => {
      calls.push(`${run}${name}`);
      return `${name}${run}`;
    }, { rotate: true });
    assert.deepEqual(calls, ['1a', '1b', '1c', '2b', '2c', '2a', '3c', '3a', '3b']);
    assert.deepEqual(r, { a: ['a1', 'a2', 'a3'], b: ['b1', 'b2', 'b3'], c: ['c1', 'c2', 'c3'] });
    const plain: string[] = [];
    await lib.interleave(2, ['x', 'y'], (n: string, run: number) => plain.push(`${run}${n}`));
    assert.deepEqual(plain, ['1x', '1y', '2x', '2y']);
  });

  it('xorshift32 gives the sequence the C peers compute', () => {
    const next = lib.xorshift32(0x1234567);
    // The first values of the same three shifts on a uint32_t (bench/mmap-read.mjs's C reference).
    assert.deepEqual([next(), next(), next()], [1484629408, 1978903364, 335432233]);
  });

  it('writeResults writes the JSON (and the table beside it) where asked; ensureFile keeps a file of the right size', () => {
    const file = path.join(dir, 'r', 'x.json');
    const wrote = lib.writeResults('x', { date: '2026-01-01T00:00:00.000Z', a: 1 }, { file, text: 'cmd\ntable', log: () => {} });
    assert.equal(wrote, file);
    assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')), { date: '2026-01-01T00:00:00.000Z', a: 1 });
    assert.equal(fs.readFileSync(path.join(dir, 'r', 'x.txt'), 'utf8'), 'cmd\ntable\n');
    const data = path.join(dir, 'data.bin');
    lib.ensureFile(data, 100_000, undefined, { log: () => {} });
    assert.equal(fs.statSync(data).size, 100_000);
    const before = fs.readFileSync(data);
    lib.ensureFile(data, 100_000, undefined, { log: () => assert.fail('rewritten') });
    assert.ok(fs.readFileSync(data).equals(before));
  });

  const benches: [string, string[], RegExp, Record<string, string>?][] = [
    ['bench/core/index.mjs', ['--runs', '0'], /^bench\/core\/index\.mjs: invalid --runs '0': expected a whole number >= 1$/],
    ['bench/core/index.mjs', ['--bogus'], /^bench\/core\/index\.mjs: unknown option '--bogus' \(bench\/core\/index\.mjs --help\)$/],
    ['bench/proxy/index.mjs', ['--size', 'huge'], /^bench\/proxy\/index\.mjs: invalid --size 'huge': expected a size/],
    ['bench/proxy/index.mjs', ['--runs'], /^bench\/proxy\/index\.mjs: option --runs needs a value/],
    ['bench/composite.mjs', ['--seconds', 'soon'], /^bench\/composite\.mjs: invalid --seconds 'soon'/],
    ['bench/mmap-read.mjs', ['--size', '1q'], /^bench\/mmap-read\.mjs: invalid --size '1q'/],
    ['bench/mmap-read.mjs', ['extra'], /^bench\/mmap-read\.mjs: unexpected argument 'extra'/],
    ['bench/core/size-sweep.mjs', [], /^bench\/core\/size-sweep\.mjs: usage: size-sweep\.mjs FILE MECHANISM/],
    ['bench/core/node-sender.mjs', ['zcopy-auto', 'tcp:1'], /^bench\/core\/node-sender\.mjs: usage: node-sender\.mjs IMPL/],
    // bench/http and bench/receive (before any apt-get, C build, server or lock).
    ['bench/http/run.mjs', ['--sizes', '3KiB'], /^bench\/http\/run\.mjs: invalid --sizes '3KiB': expected a comma-separated list of 4KiB, 64KiB, 1MiB, 64MiB$/],
    ['bench/http/run.mjs', ['--bogus'], /^bench\/http\/run\.mjs: unknown option '--bogus' \(bench\/http\/run\.mjs --help\)$/],
    ['bench/http/run.mjs', [], /^bench\/http\/run\.mjs: invalid BENCH_RUNS '0': expected a whole number >= 1$/, { BENCH_RUNS: '0' }],
    ['bench/http/run.mjs', ['--servers', 'nginx,apache'], /^bench\/http\/run\.mjs: invalid --servers 'apache'/],
    ['bench/http/threshold.mjs', ['--runs', '0'], /^bench\/http\/threshold\.mjs: invalid --runs '0'/],
    ['bench/http/threshold.mjs', [], /^bench\/http\/threshold\.mjs: invalid BENCH_SIZES '1q': expected a size/, { BENCH_SIZES: '4096,1q' }],
    ['bench/http/peer.mjs', ['nginx', '.', '0'], /^bench\/http\/peer\.mjs: usage: peer\.mjs express\|fastify\|sirv\|memory ROOT/],
    ['bench/receive/index.mjs', ['--receivers', 'receiveFile,nope'], /^bench\/receive\/index\.mjs: invalid --receivers 'nope': expected a comma-separated list of receiveFile, /],
    ['bench/receive/index.mjs', ['--size'], /^bench\/receive\/index\.mjs: option --size needs a value/],
    ['bench/receive/upload.mjs', ['--size', 'huge'], /^bench\/receive\/upload\.mjs: invalid --size 'huge': expected a size/],
    ['bench/receive/upload.mjs', ['--servers', 'zcopy,koa'], /^bench\/receive\/upload\.mjs: invalid --servers 'koa'/],
    ['bench/receive/loop-delay.mjs', ['--runs', 'x'], /^bench\/receive\/loop-delay\.mjs: invalid --runs 'x'/],
    ['bench/receive/node-receiver.mjs', ['zcopy', 'unix:/nonexistent/x.sock'], /^bench\/receive\/node-receiver\.mjs: usage: node-receiver\.mjs zcopy\|pipe ADDR OUT/],
    ['bench/receive/upload-peer.mjs', ['koa', '.'], /^bench\/receive\/upload-peer\.mjs: usage: upload-peer\.mjs express\|fastify\|express-receiveBody ROOT$/],
  ];
  for (const [script, args, re, env] of benches) {
    it(`${env ? `${Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ')} ` : ''}${script} ${args.join(' ')}: one plain line, exit status 2`, async () => {
      const r = await node([script, ...args], env);
      assert.equal(r.code, 2, r.err);
      assert.match(r.err.trim(), re);
      assert.equal(r.err.trim().split('\n').length, 1, r.err);
      assert.equal(r.out, '');
    });
  }

  const helped = ['bench/core/index.mjs', 'bench/proxy/index.mjs', 'bench/composite.mjs', 'bench/mmap-read.mjs', 'bench/core/size-sweep.mjs'];
  helped.push('bench/http/run.mjs', 'bench/http/threshold.mjs', 'bench/http/peer.mjs');
  helped.push('bench/receive/index.mjs', 'bench/receive/upload.mjs', 'bench/receive/loop-delay.mjs', 'bench/receive/node-receiver.mjs', 'bench/receive/upload-peer.mjs');
  for (const script of helped) {
    it(`${script} --help: the header comment, exit 0`, async () => {
      const r = await node([script, '--help']);
      assert.equal(r.code, 0, r.err);
      const header = fs.readFileSync(path.join(ROOT, script), 'utf8').split('\n').find((l) => l.startsWith('// '))!.slice(3);
      assert.ok(r.out.startsWith(header), `${script}: ${r.out.slice(0, 200)}`);
    });
  }

  it('bench/run.mjs --list names every bench with its first sentence', async () => {
    const r = await node(['bench/run.mjs', '--list']);
    assert.equal(r.code, 0, r.err);
    for (const name of ['core', 'proxy', 'composite', 'mmap-read', 'http', 'kafka', 'receive']) assert.match(r.out, new RegExp(`^${name} +bench/\\S+ +\\S`, 'm'));
    assert.doesNotMatch(r.out, /^lib /m);
  });
});
