// The small-body fast path (issue 11): a body below sendfileThreshold whose
// pages are cached is read on the loop (preadv2 RWF_NOWAIT, no threadpool
// round trip), and head + body leave in one syscall (strace).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { serveStatic } from '../src/http/index.js';
import { bufferedReads } from '../src/http/body.js';
import { makeFile, MODE, NATIVE, sha, tmpDir, withTimeout } from './helpers.js';
import { listen, parseResponses, req, request, type Listening } from './http-helpers.js';

const root = tmpDir('zcopy-fast-');
const servers: Listening[] = [];
const small = makeFile(root, 'small.bin', 4096, 1);
const mid = makeFile(root, 'mid.bin', 64 * 1024, 2);
const big = makeFile(root, 'big.bin', 1024 * 1024, 3);

after(async () => {
  for (const l of servers) await l.close();
  if (!process.env.KEEP) fs.rmSync(root, { recursive: true, force: true });
});

describe(`small bodies without a thread hop (issue 11) [${MODE}]`, () => {
  it('a cached small body is read on the loop (preadv2 RWF_NOWAIT), bytes intact; the portable path uses the pool', async () => {
    // No body cache: every response reads (the files may be old enough
    // for it by the time this runs on a loaded machine).
    const l = await listen(http.createServer(serveStatic(root, { openFileCache: { bodyBytes: 0 } })));
    servers.push(l);
    // The files were just written: their pages are in the cache.
    for (const f of [small, mid]) assert.equal(sha((await request(l.target, { path: '/' + path.basename(f.path) })).body), sha(f.data));
    const r0 = { ...bufferedReads };
    for (let i = 0; i < 20; i++) {
      const f = i % 2 ? small : mid;
      assert.equal(sha((await request(l.target, { path: '/' + path.basename(f.path) })).body), sha(f.data));
    }
    if (NATIVE) {
      assert.equal(bufferedReads.nowait - r0.nowait, 20, 'all 20 read without a thread hop');
      assert.equal(bufferedReads.pool - r0.pool, 0);
    } else {
      assert.equal(bufferedReads.pool - r0.pool, 20);
    }
  });

  it('head and body of a buffered response leave in one syscall (strace: one writev per response)', async (t) => {
    if (spawnSync('strace', ['-V']).status !== 0) return t.skip('strace is not installed (apt-get install strace)');
    const here = path.dirname(fileURLToPath(import.meta.url));
    const index = path.join(here, '..', 'src', 'http', 'index.js');
    const script = `
      const { serveStatic } = await import(${JSON.stringify(index)});
      const http = await import('node:http');
      const h = serveStatic(${JSON.stringify(root)});
      const s = http.createServer((q, r) => void h(q, r));
      s.listen(0, '127.0.0.1', () => console.log('port ' + s.address().port));
      process.stdin.on('end', () => process.exit(0));
      process.stdin.resume();`;
    const log = path.join(root, `strace-${process.pid}.log`);
    const child = spawn('strace', ['-f', '-y', '-qq', '-e', 'trace=write,writev,sendto,sendmsg', '-o', log, process.execPath, '--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    const N = 6;
    try {
      const port = await withTimeout(
        new Promise<number>((resolve, reject) => {
          let out = '';
          child.stdout!.on('data', (d: Buffer) => {
            out += d.toString();
            const m = /port (\d+)/.exec(out);
            if (m) resolve(Number(m[1]));
          });
          child.once('exit', () => reject(new Error('server exited')));
        }),
        30_000,
        'server start',
      );
      const sock = net.connect(port, '127.0.0.1');
      let buf = Buffer.alloc(0);
      const done = new Promise<void>((resolve) => {
        sock.on('data', (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          if (parseResponses(buf, Array(N).fill('GET')).responses.length >= N) resolve();
        });
      });
      // One at a time (not pipelined), so each response is written alone.
      for (let i = 0; i < N; i++) {
        const before = buf.length;
        sock.write(req('GET', i % 2 ? '/small.bin' : '/mid.bin'));
        await withTimeout(
          new Promise<void>((r) => {
            const check = (): void => {
              if (parseResponses(buf, Array(i + 1).fill('GET')).responses.length > i) r();
              else sock.once('data', () => setImmediate(check));
            };
            if (buf.length > before) check();
            else sock.once('data', () => setImmediate(check));
          }),
          10_000,
          `response ${i}`,
        );
      }
      await withTimeout(done, 10_000, 'all responses');
      const got = parseResponses(buf, Array(N).fill('GET')).responses;
      for (let i = 0; i < N; i++) assert.equal(sha(got[i]!.body), sha(i % 2 ? small.data : mid.data));
      sock.destroy();
    } finally {
      child.stdin!.end();
      await withTimeout(exited, 10_000, 'server exit');
    }
    // Every write-family syscall on a socket of the server (the accepted
    // connection; fds 1 and 2 are the test's pipes): exactly one per response, each
    // carrying the head and the whole body.
    const onSockets = fs.readFileSync(log, 'utf8').split('\n').filter((s) => /^\d+\s+(write|writev|sendto|sendmsg)\(([3-9]|\d{2,})<(socket|TCP)/.test(s));
    assert.equal(onSockets.length, N, `one syscall per response:\n${onSockets.join('\n')}`);
    for (const s of onSockets) {
      assert.match(s, /HTTP\/1\.1 200 OK/);
      assert.match(s, /= (4398|65840)$/, 'head + whole body in the one call');
    }
    fs.rmSync(log, { force: true });

  });

  it('a zero-copy body: the head is written under TCP_CORK and uncorked after the file bytes (strace order)', async (t) => {
    if (!NATIVE) return t.skip('TCP_CORK is set through the addon (portable path: no cork)');
    if (spawnSync('strace', ['-V']).status !== 0) return t.skip('strace is not installed (apt-get install strace)');
    const here = path.dirname(fileURLToPath(import.meta.url));
    const index = path.join(here, '..', 'src', 'http', 'index.js');
    const script = `
      const { serveStatic } = await import(${JSON.stringify(index)});
      const http = await import('node:http');
      const h = serveStatic(${JSON.stringify(root)});
      const s = http.createServer((q, r) => void h(q, r));
      s.listen(0, '127.0.0.1', () => console.log('port ' + s.address().port));
      process.stdin.on('end', () => process.exit(0));
      process.stdin.resume();`;
    const log = path.join(root, `strace-cork-${process.pid}.log`);
    const child = spawn('strace', ['-f', '-qq', '-e', 'trace=setsockopt,write,writev,sendto,sendmsg,sendfile', '-o', log, process.execPath, '--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    try {
      const port = await withTimeout(
        new Promise<number>((resolve, reject) => {
          let out = '';
          child.stdout!.on('data', (d: Buffer) => {
            out += d.toString();
            const m = /port (\d+)/.exec(out);
            if (m) resolve(Number(m[1]));
          });
          child.once('exit', () => reject(new Error('server exited')));
        }),
        30_000,
        'server start',
      );
      const r = await request({ host: '127.0.0.1', port }, { path: '/big.bin' });
      assert.equal(sha(r.body), sha(big.data));
    } finally {
      child.stdin!.end();
      await withTimeout(exited, 10_000, 'server exit');
    }
    const lines = fs.readFileSync(log, 'utf8').split('\n');
    const cork = lines.findIndex((l) => /setsockopt\(\d+, SOL_TCP, TCP_CORK, \[1\]/.test(l));
    const head = lines.findIndex((l) => /(write|writev)\(\d+, .*HTTP\/1\.1 200 OK/.test(l));
    const uncork = lines.findIndex((l) => /setsockopt\(\d+, SOL_TCP, TCP_CORK, \[0\]/.test(l));
    const body = lines.findIndex((l, i) => i > head && /^\d+\s+(sendfile|sendto|write|writev)\(/.test(l) && !/HTTP\/1\.1/.test(l) && !/^\d+\s+write\([12],/.test(l));
    assert.ok(cork >= 0 && head > cork, `corked before the head:\n${lines.filter((l) => /CORK|HTTP/.test(l)).join('\n')}`);
    assert.ok(body > head, 'file bytes after the head');
    assert.ok(uncork > body, 'uncorked after the file bytes');
    fs.rmSync(log, { force: true });
  });
});
