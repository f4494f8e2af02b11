// Small bodies at memory speed (issue 11): the body cache of the open-file
// cache (a body kept only once its file is older than the racily-clean
// margin, sent only while the fd's fresh fstat matches, bounded in bytes),
// pooled buffers for the bodies it does not keep (the 64 KiB defect: a fresh
// buffer per response), the one-writeHead fast path (same headers as the
// general path), and the real-path check of a hit made only when the file's
// or the root's ctime moved (strace), with deeper moves seen at revalidation.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { serveStatic, type ServeResult, type ServeStaticOptions, type StaticHandler } from '../src/http/index.js';
import { bodyPoolStats, bufferedReads } from '../src/http/body.js';
import { bodyCacheTuning } from '../src/http/open-file-cache.js';
import { makeFile, MODE, NATIVE, sha, tmpDir, withTimeout } from './helpers.js';
import { agedPast, listen, parseMultipart, parseResponses, req, request, shortRacyMargin, until, type Listening } from './http-helpers.js';

const base = fs.realpathSync(tmpDir('zcopy-bodies-'));
const servers: Listening[] = [];
/** Short enough for a test, longer than any timestamp tick (ext4: a few ms). */
const RACY_MS = 100;

interface Srv {
  l: Listening;
  h: StaticHandler;
  results: Array<Promise<ServeResult>>;
}

async function serve(root: string, options?: ServeStaticOptions, before?: (res: http.ServerResponse) => void): Promise<Srv> {
  const h = serveStatic(root, options);
  const results: Array<Promise<ServeResult>> = [];
  const l = await listen(
    http.createServer((q, s) => {
      before?.(s);
      results.push(h(q, s));
    }),
  );
  servers.push(l);
  return { l, h, results };
}

function get(s: Srv, p: string, headers?: Record<string, string>, method?: string): ReturnType<typeof request> {
  return request(s.l.target, { path: p, headers, method });
}

function write(p: string, body: string | Buffer): void {
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, body);
}

function etagOf(p: string): string {
  const st = fs.statSync(p);
  return `"${st.ino.toString(16)}-${st.size.toString(16)}-${Math.round(st.mtimeMs * 1000).toString(16)}"`;
}

shortRacyMargin(RACY_MS);
const aged = (...files: string[]): Promise<void> => agedPast(RACY_MS, ...files);

after(async () => {
  for (const l of servers) await l.close();
  fs.rmSync(base, { recursive: true, force: true });
});

describe(`body cache and small-body fast path (issue 11) [${MODE}]`, () => {
  it('a body is kept only once its file is older than the margin, then sent from memory with the same headers and bytes', async () => {
    const root = path.join(base, 'keep');
    const f = makeFile((fs.mkdirSync(root, { recursive: true }), root), 'k.bin', 4096, 3);
    const s = await serve(root);
    const c = s.h.openFileCache!;
    // Just written: read each time (a write in the same timestamp tick
    // could not be told apart afterwards), never kept.
    bodyCacheTuning.racyMs = 60_000;
    for (let i = 0; i < 3; i++) assert.equal(sha((await get(s, '/k.bin')).body), sha(f.data));
    assert.equal(c.bodyCounts.stored, 0, 'not kept while racy');
    bodyCacheTuning.racyMs = RACY_MS;
    await aged(f.path);
    const first = await get(s, '/k.bin');
    assert.equal(c.bodyCounts.stored, 1);
    assert.equal(c.bodyTotal, 4096);
    const m0 = bufferedReads.memory;
    for (let i = 0; i < 5; i++) {
      const r = await get(s, '/k.bin');
      assert.equal(sha(r.body), sha(f.data));
      assert.equal(r.headers.etag, etagOf(f.path));
      assert.deepEqual({ ...r.headers, date: '' }, { ...first.headers, date: '' });
    }
    assert.equal(bufferedReads.memory - m0, 5, 'five responses with no read of the file');
    assert.equal(c.bodyCounts.served >= 5, true);
  });

  it('a cached body rewritten in place (same size), deleted, or replaced by a rename: never old bytes, each ETag with its own bytes', async () => {
    const root = path.join(base, 'change');
    const p = path.join(root, 'c.txt');
    write(p, 'AAAAAAAA');
    await aged(p);
    const s = await serve(root, { openFileCache: { max: 10, validMs: 60_000 } });
    assert.equal((await get(s, '/c.txt')).body.toString(), 'AAAAAAAA');
    assert.equal(s.h.openFileCache!.bodyCounts.stored, 1);
    const pairs = new Map<string, string>();
    const check = (r: { body: Buffer; headers: http.IncomingHttpHeaders }): string => {
      const t = r.body.toString();
      const prev = pairs.get(r.headers.etag!);
      if (prev !== undefined) assert.equal(t, prev, 'one ETag, two bodies');
      pairs.set(r.headers.etag!, t);
      return t;
    };
    assert.equal(check(await get(s, '/c.txt')), 'AAAAAAAA');
    // Same inode, same size: only mtime/ctime tell.
    fs.writeFileSync(p, 'BBBBBBBB');
    const b = await get(s, '/c.txt');
    assert.equal(check(b), 'BBBBBBBB');
    assert.equal(b.headers.etag, etagOf(p));
    assert.ok(s.h.openFileCache!.bodyCounts.dropped >= 1);
    // Replaced by a rename over it.
    write(p + '.tmp', 'CCCCCCCC');
    fs.renameSync(p + '.tmp', p);
    assert.equal(check(await get(s, '/c.txt')), 'CCCCCCCC');
    fs.unlinkSync(p);
    assert.equal((await get(s, '/c.txt')).status, 404);
  });

  it('bounded in bytes: least recently used bodies go first; bodyTotal never exceeds bodyBytes', async () => {
    const root = path.join(base, 'budget');
    fs.mkdirSync(root, { recursive: true });
    const files = Array.from({ length: 6 }, (_, i) => makeFile(root, `b${i}.bin`, 4096, 10 + i));
    await aged(...files.map((f) => f.path));
    // Room for four 4 KiB bodies (one body is at most a quarter of the budget).
    const budget = 4 * 4096 + 100;
    const s = await serve(root, { openFileCache: { max: 100, validMs: 60_000, bodyBytes: budget } });
    const c = s.h.openFileCache!;
    for (let round = 0; round < 2; round++) {
      for (const f of files) {
        assert.equal(sha((await get(s, '/' + path.basename(f.path))).body), sha(f.data));
        assert.ok(c.bodyTotal <= budget, `${c.bodyTotal} bytes held`);
      }
    }
    assert.equal(c.bodyTotal, 4 * 4096);
    // The last four are in memory; the first is not.
    const m0 = bufferedReads.memory;
    for (const f of files.slice(2)) await get(s, '/' + path.basename(f.path));
    assert.equal(bufferedReads.memory - m0, 4);
    await get(s, '/b0.bin');
    assert.equal(bufferedReads.memory - m0, 4, 'b0 was evicted: read, not from memory');
    // A body larger than a quarter of the budget is never kept.
    const big = makeFile(root, 'big.bin', 8192, 30);
    await aged(big.path);
    const stored = c.bodyCounts.stored;
    await get(s, '/big.bin');
    await get(s, '/big.bin');
    assert.equal(c.bodyCounts.stored, stored);
    // bodyBytes 0: no body cache.
    const off = await serve(root, { openFileCache: { bodyBytes: 0 } });
    await get(off, '/b1.bin');
    await get(off, '/b1.bin');
    assert.equal(off.h.openFileCache!.bodyCounts.stored, 0);
    assert.throws(() => serveStatic(root, { openFileCache: { bodyBytes: -1 } }), { code: 'ERR_INVALID_ARG_VALUE' });
    assert.throws(() => serveStatic(root, { openFileCache: { bodyBytes: 1.5 } }), { code: 'ERR_INVALID_ARG_VALUE' });
  });

  it('ranges, multipart, HEAD and conditionals answered from a cached body', async () => {
    const root = path.join(base, 'ranges');
    fs.mkdirSync(root, { recursive: true });
    const f = makeFile(root, 'r.bin', 10_000, 5);
    await aged(f.path);
    const s = await serve(root);
    await get(s, '/r.bin');
    assert.equal(s.h.openFileCache!.bodyCounts.stored, 1);
    const m0 = bufferedReads.memory;
    const one = await get(s, '/r.bin', { Range: 'bytes=100-199' });
    assert.equal(one.status, 206);
    assert.equal(sha(one.body), sha(f.data.subarray(100, 200)));
    const multi = await get(s, '/r.bin', { Range: 'bytes=0-9,5000-5009,-10' });
    assert.equal(multi.status, 206);
    const parts = parseMultipart(multi.body, multi.headers['content-type']!);
    assert.deepEqual(
      parts.map((p) => sha(p.body)),
      [f.data.subarray(0, 10), f.data.subarray(5000, 5010), f.data.subarray(9990)].map((b) => sha(b)),
    );
    const head = await get(s, '/r.bin', undefined, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    assert.equal(head.headers['content-length'], '10000');
    const nm = await get(s, '/r.bin', { 'If-None-Match': etagOf(f.path) });
    assert.equal(nm.status, 304);
    assert.equal(nm.body.length, 0);
    assert.equal(bufferedReads.memory - m0, 2, 'the two bodies came from memory');
  });

  it('the one-writeHead fast path sends what the general path sends; headers set before the handler are kept', async () => {
    const root = path.join(base, 'same');
    write(path.join(root, 'page.html'), '<p>hi</p>');
    write(path.join(root, 'data.json'), '{"a":1}');
    const opts: ServeStaticOptions = { maxAge: '1h', immutable: true };
    const fast = await serve(root, opts);
    // A hook, even one that sets nothing, takes the general path.
    const general = await serve(root, { ...opts, headers: () => {} });
    for (const name of ['page.html', 'data.json']) {
      const a = await get(fast, '/' + name);
      const b = await get(general, '/' + name);
      assert.equal(a.status, b.status);
      assert.equal(a.body.toString(), b.body.toString());
      assert.deepEqual({ ...a.headers, date: '' }, { ...b.headers, date: '' });
      // Same order on the wire, too.
      const raw = (await rawHead(fast.l, '/' + name)).filter((l) => !l.startsWith('Date:'));
      const rawB = (await rawHead(general.l, '/' + name)).filter((l) => !l.startsWith('Date:'));
      assert.deepEqual(raw, rawB);
    }
    const custom = await serve(root, undefined, (res) => res.setHeader('Content-Type', 'text/x-mine'));
    const r = await get(custom, '/page.html');
    assert.equal(r.headers['content-type'], 'text/x-mine');
    assert.equal(r.body.toString(), '<p>hi</p>');
    const cors = await serve(root, undefined, (res) => res.setHeader('Access-Control-Allow-Origin', '*'));
    const r2 = await get(cors, '/data.json');
    assert.equal(r2.headers['access-control-allow-origin'], '*');
    assert.equal(r2.headers['content-type'], 'application/json; charset=utf-8');
  });

  it('bodies the cache does not keep reuse pooled buffers (a fresh 64 KiB buffer per response was the 64 KiB defect); concurrent responses stay intact', async () => {
    const root = path.join(base, 'pool');
    fs.mkdirSync(root, { recursive: true });
    const a = makeFile(root, 'a.bin', 64 * 1024, 40);
    const b = makeFile(root, 'b.bin', 60 * 1024, 41);
    const s = await serve(root, { openFileCache: false });
    await get(s, '/a.bin');
    const p0 = bodyPoolStats();
    for (let i = 0; i < 20; i++) assert.equal(sha((await get(s, i % 2 ? '/b.bin' : '/a.bin')).body), sha((i % 2 ? b : a).data));
    const p1 = bodyPoolStats();
    assert.ok(p1.reused - p0.reused >= 19, `reused ${p1.reused - p0.reused} of 20`);
    assert.ok(p1.created - p0.created <= 1, `created ${p1.created - p0.created}`);
    // 16 at once, two files of one size class: a buffer is never handed to
    // another response while its bytes are still being written.
    const all = await Promise.all(Array.from({ length: 16 }, (_, i) => get(s, i % 2 ? '/b.bin' : '/a.bin').then((r) => ({ i, r }))));
    for (const { i, r } of all) assert.equal(sha(r.body), sha((i % 2 ? b : a).data));
  });

  it('a pooled buffer still being written to a client that stopped reading is not reused until it finished', async () => {
    const root = path.join(base, 'stall');
    fs.mkdirSync(root, { recursive: true });
    // Buffered (under the threshold), one pool size class.
    const a = makeFile(root, 'a.bin', 250 * 1024, 50);
    const b = makeFile(root, 'b.bin', 250 * 1024, 51);
    const s = await serve(root, { openFileCache: false });
    // Pipelined requests to a client that reads nothing: the first responses
    // fill the socket buffers, a later one stays half written, holding its
    // pooled buffer.
    const N = 40;
    const sock = s.l.connect();
    sock.on('error', () => {});
    sock.pause();
    sock.write(Array.from({ length: N }, () => req('GET', '/a.bin')).join(''));
    await withTimeout(
      (async () => {
        while (bodyPoolStats().outstanding < 1) await new Promise((r) => setTimeout(r, 5));
      })(),
      10_000,
      'a response waiting for the client with its buffer',
    );
    // Others of the same size class meanwhile get buffers of their own.
    for (let i = 0; i < 4; i++) assert.equal(sha((await get(s, '/b.bin')).body), sha(b.data));
    const chunks: Buffer[] = [];
    const done = new Promise<void>((resolve) => {
      sock.on('data', (d: Buffer) => {
        chunks.push(d);
        if (parseResponses(Buffer.concat(chunks), Array(N).fill('GET')).responses.length === N) resolve();
      });
    });
    sock.resume();
    await withTimeout(done, 30_000, 'the stalled responses completed');
    const got = parseResponses(Buffer.concat(chunks), Array(N).fill('GET')).responses;
    for (const r of got) assert.equal(sha(r.body), sha(a.data), 'no stalled body was overwritten');
    sock.destroy();
  });

  it('a buffered body a client stops reading is cut after sendTimeout (the fast path arms the timer when end() could not flush)', async () => {
    const root = path.join(base, 'timeout');
    fs.mkdirSync(root, { recursive: true });
    makeFile(root, 'a.bin', 250 * 1024, 60);
    const s = await serve(root, { sendTimeout: 300 });
    const N = 40;
    const sock = s.l.connect();
    sock.on('error', () => {});
    sock.pause();
    sock.write(Array.from({ length: N }, () => req('GET', '/a.bin')).join(''));
    // The paused client sees no close; the server's side settles every response.
    await withTimeout(until(() => s.results.length === N, 10_000, 'all requests dispatched'), 11_000, 'dispatch');
    const settled = await withTimeout(Promise.all(s.results), 10_000, 'every response settled');
    const codes = settled.map((r) => (r.error as { code?: string } | undefined)?.code);
    assert.ok(codes.includes('ZCOPY_ERR_TIMEOUT'), `a response timed out: ${JSON.stringify(codes)}`);
    sock.destroy();
  });

  it('a hit reads the fd real path again only when the file or the root changed (strace: no readlink per hit)', async (t) => {
    if (!NATIVE) return t.skip('the root is watched through the addon (portable path: a readlink per hit, as before)');
    if (spawnSync('strace', ['-V']).status !== 0) return t.skip('strace is not installed (apt-get install strace)');
    const root = path.join(base, 'strace');
    write(path.join(root, 'x.txt'), 'X'.repeat(100));
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
    const log = path.join(base, `strace-readlink-${process.pid}.log`);
    const child = spawn('strace', ['-f', '-qq', '-e', 'trace=readlink,readlinkat', '-o', log, process.execPath, '--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    const N = 30;
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
      for (let i = 0; i < N; i++) assert.equal((await request({ host: '127.0.0.1', port }, { path: '/x.txt' })).status, 200);
      // Something in the root changed: the next hit checks again.
      write(path.join(root, 'new.txt'), 'N');
      assert.equal((await request({ host: '127.0.0.1', port }, { path: '/x.txt' })).status, 200);
    } finally {
      child.stdin!.end();
      await withTimeout(exited, 10_000, 'server exit');
    }
    const links = fs.readFileSync(log, 'utf8').split('\n').filter((l) => /readlink(at)?\(.*\/proc\/self\/fd\//.test(l));
    fs.rmSync(log, { force: true });
    // The open's, the insert's, the first hit's (no identity yet), the one after the change.
    assert.ok(links.length >= 2 && links.length <= 5, `${links.length} readlinks for ${N + 2} responses:\n${links.join('\n')}`);
  });

  it('moves: a directory in the root moved into a hidden one is refused at once; a deeper one once validMs passed (the revalidation reads the real path)', async () => {
    const root = path.join(base, 'moves');
    write(path.join(root, 'top', 'f.txt'), 'TOP');
    write(path.join(root, 'a', 'deep', 'g.txt'), 'DEEP');
    fs.mkdirSync(path.join(root, '.hidden'));
    fs.mkdirSync(path.join(root, 'a', '.h'));
    const s = await serve(root, { openFileCache: { max: 10, validMs: 300 } });
    // A long validMs: only the root's watch can see the move below.
    const long = await serve(root, { openFileCache: { max: 10, validMs: 60_000 } });
    for (let i = 0; i < 2; i++) {
      assert.equal((await get(long, '/top/f.txt')).status, 200);
      assert.equal((await get(s, '/a/deep/g.txt')).status, 200);
    }
    // Moved into a hidden directory, a symlink left where it was: the same
    // inode is still reachable by the old path. Two levels down, neither the
    // file's ctime nor the root's moves: the revalidation's readlink sees it.
    fs.renameSync(path.join(root, 'a', 'deep'), path.join(root, 'a', '.h', 'deep'));
    fs.symlinkSync('.h/deep', path.join(root, 'a', 'deep'));
    const t0 = Date.now();
    let refused = false;
    for (let i = 0; i < 300 && !refused; i++) {
      const r = await get(s, '/a/deep/g.txt');
      if (r.status === 404) refused = true;
      else {
        assert.equal(r.status, 200);
        await new Promise((res) => setTimeout(res, 10));
      }
    }
    assert.ok(refused, 'refused once the entry was revalidated');
    // Directly in the root: the root's ctime moves, the next hit checks.
    fs.renameSync(path.join(root, 'top'), path.join(root, '.hidden', 'top'));
    fs.symlinkSync('.hidden/top', path.join(root, 'top'));
    const top = await get(long, '/top/f.txt');
    assert.equal(top.status, 404);
    assert.ok(!top.body.toString().includes('TOP'));
    assert.ok(Date.now() - t0 < 5000);
  });
});

/** The status line and header lines of a GET, as sent. */
async function rawHead(l: Listening, p: string): Promise<string[]> {
  const sock = l.connect();
  const chunks: Buffer[] = [];
  sock.on('data', (d: Buffer) => chunks.push(d));
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  sock.write(req('GET', p, { Connection: 'close' }));
  await withTimeout(closed, 10_000, 'response');
  const all = Buffer.concat(chunks).toString('latin1');
  return all.slice(0, all.indexOf('\r\n\r\n')).split('\r\n');
}

