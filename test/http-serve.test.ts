// serveStatic / serveFile on node:http with real clients (fetch, http.request,
// raw pipelined sockets): headers, ranges, conditionals, keep-alive after a
// zero-copy body, truncation, aborts, directories, dotfiles, symlinks.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { open } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { capabilities, stats } from '../src/index.js';
import { DEFAULT_SENDFILE_THRESHOLD, serveFile, serveStatic, type ServeResult, type ServeStaticOptions } from '../src/http/index.js';
import { makeFile, openFds, sha, tmpDir, withTimeout } from './helpers.js';
import { collectResponses, listen, parseMultipart, rawExchange, req, request, until, type Listening } from './http-helpers.js';

const NATIVE = capabilities().native;
const root = tmpDir('zcopy-http-');
const outside = tmpDir('zcopy-http-outside-');
let small: { path: string; data: Buffer };
let mid: { path: string; data: Buffer };
let big: { path: string; data: Buffer };
const unhandled: unknown[] = [];
const onUnhandled = (e: unknown): void => {
  unhandled.push(e);
};

interface TestServer {
  l: Listening;
  results: Array<Promise<ServeResult | undefined>>;
  close(): Promise<void>;
}

const servers: TestServer[] = [];

async function start(options: ServeStaticOptions = {}, transport: 'tcp' | 'unix' = 'tcp', dir = root): Promise<TestServer> {
  const handler = serveStatic(dir, options);
  const results: Array<Promise<ServeResult | undefined>> = [];
  const server = http.createServer((rq, rs) => {
    results.push(handler(rq, rs));
  });
  const l = await listen(server, transport);
  const s = { l, results, close: () => l.close() };
  servers.push(s);
  return s;
}

before(() => {
  process.on('unhandledRejection', onUnhandled);
  small = makeFile(root, 'a.txt', 0, 1);
  fs.writeFileSync(small.path, 'hello world\n');
  small.data = fs.readFileSync(small.path);
  mid = makeFile(root, 'mid.bin', 200 * 1024, 2);
  big = makeFile(root, 'big.bin', 3 * 1024 * 1024 + 17, 3);
  fs.writeFileSync(path.join(root, 'empty.txt'), '');
  fs.writeFileSync(path.join(root, 'style.css'), 'body{}\n');
  fs.mkdirSync(path.join(root, 'sub'));
  fs.writeFileSync(path.join(root, 'sub', 'index.html'), '<h1>sub</h1>\n');
  fs.mkdirSync(path.join(root, 'noindex'));
  fs.writeFileSync(path.join(root, 'noindex', 'x.txt'), 'x');
  fs.writeFileSync(path.join(root, 'noindex', '<b>&amp;.txt'), 'y'.repeat(1536));
  fs.writeFileSync(path.join(root, '.hidden'), 'secret');
  fs.mkdirSync(path.join(root, '.git'));
  fs.writeFileSync(path.join(root, '.git', 'config'), 'secret');
  fs.writeFileSync(path.join(root, 'sub', '.env'), 'secret');
  fs.mkdirSync(path.join(root, 'a"b<c'));
  fs.writeFileSync(path.join(outside, 'secret.txt'), 'OUTSIDE-SECRET');
  fs.symlinkSync(path.join(outside, 'secret.txt'), path.join(root, 'link-out.txt'));
  fs.symlinkSync(outside, path.join(root, 'dir-out'));
  fs.symlinkSync(path.join(root, 'a.txt'), path.join(root, 'link-in.txt'));
  fs.writeFileSync(path.join(root, 'app.js'), 'console.log(1)\n');
  fs.writeFileSync(path.join(root, 'app.js.br'), 'BROTLI');
  fs.writeFileSync(path.join(root, 'app.js.gz'), 'GZIP');
});

after(async () => {
  for (const s of servers) await s.close();
  process.removeListener('unhandledRejection', onUnhandled);
  fs.rmSync(root, { recursive: true, force: true });
  fs.rmSync(outside, { recursive: true, force: true });
  assert.deepEqual(unhandled, [], 'no unhandled rejections');
});

describe('headers and bodies', () => {
  it('GET a small file: exact headers from the fd, body in one buffered write', async () => {
    const s = await start();
    const before = stats().transfers;
    const r = await fetch(`${s.l.url}/a.txt`);
    const body = Buffer.from(await r.arrayBuffer());
    assert.equal(r.status, 200);
    assert.deepEqual(body, small.data);
    const st = fs.statSync(small.path);
    assert.equal(r.headers.get('content-length'), String(small.data.length));
    assert.equal(r.headers.get('content-type'), 'text/plain; charset=utf-8');
    assert.equal(r.headers.get('accept-ranges'), 'bytes');
    assert.equal(r.headers.get('cache-control'), 'public, max-age=0');
    assert.equal(r.headers.get('last-modified'), new Date(st.mtimeMs).toUTCString());
    assert.match(r.headers.get('etag')!, /^"[0-9a-f]+-[0-9a-f]+-[0-9a-f]+"$/);
    assert.ok(r.headers.get('etag')!.includes(`-${st.size.toString(16)}-`));
    assert.ok(r.headers.get('etag')!.startsWith(`"${st.ino.toString(16)}-`));
    const res = (await s.results[0])!;
    assert.deepEqual({ status: res.status, bytes: res.bytes, zc: res.bytesZeroCopy }, { status: 200, bytes: small.data.length, zc: 0 });
    // Below the threshold no transfer was started: one buffered end().
    const after = stats().transfers;
    assert.equal(Object.values(after).reduce((a, b) => a + b, 0), Object.values(before).reduce((a, b) => a + b, 0));
  });

  for (const transport of ['tcp', 'unix'] as const) {
    it(`GET a 3 MiB file over ${transport}: bytes by hash, path by stats`, async () => {
      // No body cache: once big.bin is older than its racy margin, loopback
      // TCP and the portable path would send it from memory (buffered, no
      // transfer to count; test/http-copied-anyway.test.ts covers that).
      const s = await start({ openFileCache: { bodyBytes: 0 } }, transport);
      const b0 = stats();
      const r = await request(s.l.target, { path: '/big.bin' });
      assert.equal(r.status, 200);
      assert.equal(r.headers['content-length'], String(big.data.length));
      assert.equal(sha(r.body), sha(big.data));
      const res = (await s.results[0])!;
      assert.equal(res.bytes, big.data.length);
      assert.equal(res.error, undefined);
      const b1 = stats();
      if (NATIVE) {
        assert.equal(b1.bytesByPath.portable - b0.bytesByPath.portable, 0, 'no byte through the portable path');
        if (capabilities().auto[transport === 'unix' ? 'unix' : 'tcp-loopback'] !== 'copy') {
          assert.equal(res.bytesZeroCopy, big.data.length, 'the whole body went zero-copy');
        }
      } else {
        assert.equal(b1.bytesByPath.portable - b0.bytesByPath.portable, big.data.length);
        assert.equal(res.bytesZeroCopy, 0);
      }
    });
  }

  it('mechanism: "sendfile" sends every body byte zero-copy over TCP (native)', async (t) => {
    if (!NATIVE) return t.skip('needs the native addon');
    const s = await start({ mechanism: 'sendfile' });
    const r = await request(s.l.target, { path: '/big.bin' });
    assert.equal(sha(r.body), sha(big.data));
    assert.equal((await s.results[0])!.bytesZeroCopy, big.data.length);
  });

  it('sendfileThreshold: 0 sends even a tiny body through the transfer path', async () => {
    const s = await start({ sendfileThreshold: 0 });
    const before = stats().transfers;
    const r = await request(s.l.target, { path: '/a.txt' });
    assert.deepEqual(r.body, small.data);
    const after = stats().transfers;
    assert.equal(Object.values(after).reduce((a, b) => a + b, 0) - Object.values(before).reduce((a, b) => a + b, 0), 1);
    assert.equal(DEFAULT_SENDFILE_THRESHOLD, 256 * 1024);
  });

  it('HEAD: same headers as GET, no body (the next pipelined response parses cleanly)', async () => {
    const s = await start();
    const x = await rawExchange(() => s.l.connect(), req('HEAD', '/big.bin') + req('GET', '/a.txt'), ['HEAD', 'GET'], 2);
    const [h, g] = x.responses;
    assert.equal(h!.status, 200);
    assert.equal(h!.headers['content-length'], String(big.data.length));
    assert.equal(h!.body.length, 0);
    assert.ok(h!.headers['etag']);
    assert.deepEqual(g!.body, small.data);
    assert.equal(x.rest.length, 0);
    // HEAD ignores Range (defined for GET only).
    const y = await rawExchange(() => s.l.connect(), req('HEAD', '/big.bin', { Range: 'bytes=0-9' }), ['HEAD'], 1);
    assert.equal(y.responses[0]!.status, 200);
  });

  it('other methods: 405 with Allow', async () => {
    const s = await start();
    for (const m of ['POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']) {
      const r = await request(s.l.target, { method: m, path: '/a.txt' });
      assert.equal(r.status, 405, m);
      assert.equal(r.headers['allow'], 'GET, HEAD');
    }
  });

  it('empty file: 200, Content-Length 0, Range ignored', async () => {
    const s = await start();
    const r = await request(s.l.target, { path: '/empty.txt', headers: { Range: 'bytes=0-' } });
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-length'], '0');
    assert.equal(r.body.length, 0);
  });

  it('Content-Type from the MIME database; absolute-form request target', async () => {
    const s = await start();
    const r = await request(s.l.target, { path: '/style.css' });
    assert.equal(r.headers['content-type'], 'text/css; charset=utf-8');
    const x = await rawExchange(() => s.l.connect(), req('GET', 'http://localhost/a.txt'), ['GET'], 1);
    assert.equal(x.responses[0]!.status, 200);
    assert.deepEqual(x.responses[0]!.body, small.data);
  });

  it('maxAge / immutable / etag:false / lastModified:false / headers hook', async () => {
    let seen: { path: string; size: number } | undefined;
    const s = await start({
      maxAge: '2h',
      immutable: true,
      etag: false,
      lastModified: false,
      headers(res, p, st) {
        seen = { path: p, size: st.size };
        res.setHeader('X-Hook', 'yes');
      },
    });
    const r = await request(s.l.target, { path: '/a.txt' });
    assert.equal(r.headers['cache-control'], 'public, max-age=7200, immutable');
    assert.equal(r.headers['etag'], undefined);
    assert.equal(r.headers['last-modified'], undefined);
    assert.equal(r.headers['x-hook'], 'yes');
    assert.deepEqual(seen, { path: path.join(root, 'a.txt'), size: small.data.length });
  });

  it('ETag changes when the file is rewritten (same size) or replaced', async () => {
    const s = await start();
    const p = path.join(root, 'changing.txt');
    fs.writeFileSync(p, 'version-1');
    const e1 = (await request(s.l.target, { path: '/changing.txt' })).headers['etag'];
    const t = new Date(Date.now() + 5000);
    fs.writeFileSync(p, 'version-2');
    fs.utimesSync(p, t, t);
    const e2 = (await request(s.l.target, { path: '/changing.txt' })).headers['etag'];
    fs.writeFileSync(p + '.new', 'version-3');
    fs.renameSync(p + '.new', p);
    const e3 = (await request(s.l.target, { path: '/changing.txt' })).headers['etag'];
    assert.notEqual(e1, e2);
    assert.notEqual(e2, e3);
  });
});

describe('ranges', () => {
  let s: TestServer;
  before(async () => {
    s = await start();
  });

  const get = (range: string, p = '/big.bin', extra: Record<string, string> = {}) => request(s.l.target, { path: p, headers: { Range: range, ...extra } });

  it('single ranges: first-last, open, suffix, clamped', async () => {
    const n = big.data.length;
    const cases: Array<[string, number, number]> = [
      ['bytes=100-199', 100, 199],
      ['bytes=1000-', 1000, n - 1],
      ['bytes=-500', n - 500, n - 1],
      ['bytes=-99999999', 0, n - 1],
      ['bytes=10-99999999999', 10, n - 1],
      ['bytes=0-0', 0, 0],
      ['BYTES = 5-9', 5, 9],
      ['bytes=0-1048575', 0, 1048575], // large: through the zero-copy path
    ];
    for (const [range, a, b] of cases) {
      const r = await get(range);
      assert.equal(r.status, 206, range);
      assert.equal(r.headers['content-range'], `bytes ${a}-${b}/${n}`, range);
      assert.equal(r.headers['content-length'], String(b - a + 1), range);
      assert.equal(sha(r.body), sha(big.data.subarray(a, b + 1)), range);
    }
  });

  it('multipart/byteranges: parts in order, each body exact, Content-Length exact', async () => {
    const n = big.data.length;
    for (const spec of [
      [[0, 9], [100_000, 1_299_999], [n - 100, n - 1]], // large: zero-copy parts
      [[0, 0], [5, 9], [20, 29]], // small: one buffered write
      [[2_000_000, 2_999_999], [10, 20]], // out of order, kept
    ]) {
      const range = 'bytes=' + spec.map(([a, b]) => `${a}-${b}`).join(',');
      const r = await get(range);
      assert.equal(r.status, 206);
      assert.match(String(r.headers['content-type']), /^multipart\/byteranges; boundary=[0-9a-f]+$/);
      assert.equal(Number(r.headers['content-length']), r.body.length);
      const parts = parseMultipart(r.body, String(r.headers['content-type']));
      assert.equal(parts.length, spec.length);
      spec.forEach(([a, b], i) => {
        assert.equal(parts[i]!.headers['content-range'], `bytes ${a}-${b}/${n}`);
        assert.equal(parts[i]!.headers['content-type'], 'application/octet-stream');
        assert.equal(sha(parts[i]!.body), sha(big.data.subarray(a!, b! + 1)));
      });
    }
  });

  it('416 with Content-Range: bytes */size when nothing is satisfiable', async () => {
    for (const range of [`bytes=${big.data.length}-`, 'bytes=99999999-99999999', 'bytes=-0', `bytes=${big.data.length}-${big.data.length + 5},-0`]) {
      const r = await get(range);
      assert.equal(r.status, 416, range);
      assert.equal(r.headers['content-range'], `bytes */${big.data.length}`);
    }
  });

  it('malformed or foreign-unit ranges are ignored: 200 with the whole file', async () => {
    for (const range of ['bytes=abc', 'bytes=5-1', 'items=0-1', 'bytes=', 'bytes=--1', 'bytes=1-2-3', 'bytes=0x10-20', '0-10', 'bytes=,,']) {
      const r = await get(range, '/mid.bin');
      assert.equal(r.status, 200, range);
      assert.equal(r.body.length, mid.data.length, range);
    }
  });

  it('overlapping ranges coalesce: no response larger than the file from a tiny request', async () => {
    const r1 = await get('bytes=0-99,50-149,0-149');
    assert.equal(r1.status, 206);
    assert.equal(r1.headers['content-range'], `bytes 0-149/${big.data.length}`);
    const r2 = await get('bytes=' + Array(500).fill('0-').join(','));
    assert.equal(r2.status, 206);
    assert.equal(r2.body.length, big.data.length);
    const r3 = await get('bytes=0-9,10-19,20-29');
    assert.equal(r3.headers['content-range'], `bytes 0-29/${big.data.length}`);
  });

  it('too many ranges (after coalescing) are ignored: 200', async () => {
    const many = Array.from({ length: 200 }, (_, i) => `${i * 10}-${i * 10 + 1}`).join(',');
    const r = await get('bytes=' + many, '/mid.bin');
    assert.equal(r.status, 200);
    assert.equal(r.body.length, mid.data.length);
    const ok = Array.from({ length: 50 }, (_, i) => `${i * 10}-${i * 10 + 1}`).join(',');
    const r2 = await get('bytes=' + ok, '/mid.bin');
    assert.equal(r2.status, 206);
    assert.equal(parseMultipart(r2.body, String(r2.headers['content-type'])).length, 50);
  });

  it('If-Range: strong ETag or exact date honours Range; anything else sends all', async () => {
    const h = (await request(s.l.target, { method: 'HEAD', path: '/mid.bin' })).headers;
    const etag = String(h['etag']);
    const lm = String(h['last-modified']);
    assert.equal((await get('bytes=0-9', '/mid.bin', { 'If-Range': etag })).status, 206);
    assert.equal((await get('bytes=0-9', '/mid.bin', { 'If-Range': lm })).status, 206);
    assert.equal((await get('bytes=0-9', '/mid.bin', { 'If-Range': '"other"' })).status, 200);
    assert.equal((await get('bytes=0-9', '/mid.bin', { 'If-Range': 'W/' + etag })).status, 200);
    assert.equal((await get('bytes=0-9', '/mid.bin', { 'If-Range': new Date(Date.parse(lm) - 1000).toUTCString() })).status, 200);
    assert.equal((await get('bytes=0-9', '/mid.bin', { 'If-Range': 'garbage' })).status, 200);
  });
});

describe('conditionals (RFC 9110 13.2.2)', () => {
  let s: TestServer;
  let etag: string;
  let lm: string;
  before(async () => {
    s = await start();
    const h = (await request(s.l.target, { method: 'HEAD', path: '/a.txt' })).headers;
    etag = String(h['etag']);
    lm = String(h['last-modified']);
  });
  const st = async (headers: Record<string, string>, method = 'GET') => (await request(s.l.target, { method, path: '/a.txt', headers })).status;
  const later = () => new Date(Date.parse(lm) + 60_000).toUTCString();
  const earlier = () => new Date(Date.parse(lm) - 60_000).toUTCString();

  it('If-None-Match -> 304 with validators, no payload headers or body', async () => {
    const r = await request(s.l.target, { path: '/a.txt', headers: { 'If-None-Match': etag } });
    assert.equal(r.status, 304);
    assert.equal(r.body.length, 0);
    assert.equal(r.headers['etag'], etag);
    assert.equal(r.headers['cache-control'], 'public, max-age=0');
    assert.equal(r.headers['content-type'], undefined);
    assert.equal(await st({ 'If-None-Match': `"x", W/${etag}` }), 304, 'weak comparison');
    assert.equal(await st({ 'If-None-Match': '*' }), 304);
    assert.equal(await st({ 'If-None-Match': '"nope"' }), 200);
    assert.equal(await st({ 'If-None-Match': etag }, 'HEAD'), 304);
  });

  it('If-Modified-Since -> 304 unless modified; invalid dates ignored', async () => {
    assert.equal(await st({ 'If-Modified-Since': lm }), 304);
    assert.equal(await st({ 'If-Modified-Since': later() }), 304);
    assert.equal(await st({ 'If-Modified-Since': earlier() }), 200);
    assert.equal(await st({ 'If-Modified-Since': 'not a date' }), 200);
  });

  it('If-None-Match takes precedence over If-Modified-Since', async () => {
    assert.equal(await st({ 'If-None-Match': '"nope"', 'If-Modified-Since': later() }), 200);
    assert.equal(await st({ 'If-None-Match': etag, 'If-Modified-Since': earlier() }), 304);
  });

  it('If-Match / If-Unmodified-Since -> 412; If-Match first', async () => {
    assert.equal(await st({ 'If-Match': '"nope"' }), 412);
    assert.equal(await st({ 'If-Match': etag }), 200);
    assert.equal(await st({ 'If-Match': '*' }), 200);
    assert.equal(await st({ 'If-Match': 'W/' + etag }), 412, 'strong comparison');
    assert.equal(await st({ 'If-Unmodified-Since': earlier() }), 412);
    assert.equal(await st({ 'If-Unmodified-Since': lm }), 200);
    assert.equal(await st({ 'If-Match': etag, 'If-Unmodified-Since': earlier() }), 200, 'IUS ignored when If-Match is present');
    assert.equal(await st({ 'If-Match': '"nope"', 'If-None-Match': etag }), 412, 'If-Match is evaluated first');
    assert.equal(await st({ 'If-Unmodified-Since': earlier(), 'If-None-Match': etag }), 412);
    assert.equal(await st({ 'If-Match': etag, 'If-None-Match': etag }), 304);
  });

  it('a 304/412 is followed by a clean pipelined response', async () => {
    const x = await rawExchange(
      () => s.l.connect(),
      req('GET', '/a.txt', { 'If-None-Match': etag }) + req('GET', '/a.txt', { 'If-Match': '"no"' }) + req('GET', '/a.txt'),
      ['GET', 'GET', 'GET'],
      3,
    );
    assert.deepEqual(x.responses.map((r) => r.status), [304, 412, 200]);
    assert.deepEqual(x.responses[2]!.body, small.data);
  });
});

describe('keep-alive and pipelining after a zero-copy body', () => {
  for (const transport of ['tcp', 'unix'] as const) {
    it(`pipelined requests over ${transport}: every response parses, bodies exact`, async () => {
      const s = await start({}, transport);
      const reqs = [
        req('GET', '/big.bin'),
        req('GET', '/a.txt'),
        req('GET', '/mid.bin', { Range: 'bytes=1000-150000' }),
        req('HEAD', '/big.bin'),
        req('GET', '/big.bin', { Range: 'bytes=0-99,-1048576' }),
        req('GET', '/nope'),
        req('GET', '/mid.bin'),
      ];
      const methods = ['GET', 'GET', 'GET', 'HEAD', 'GET', 'GET', 'GET'];
      const x = await rawExchange(() => s.l.connect(), reqs.join(''), methods, reqs.length);
      assert.deepEqual(x.responses.map((r) => r.status), [200, 200, 206, 200, 206, 404, 200]);
      assert.equal(sha(x.responses[0]!.body), sha(big.data));
      assert.deepEqual(x.responses[1]!.body, small.data);
      assert.equal(sha(x.responses[2]!.body), sha(mid.data.subarray(1000, 150001)));
      const parts = parseMultipart(x.responses[4]!.body, x.responses[4]!.headers['content-type']!);
      assert.equal(sha(parts[1]!.body), sha(big.data.subarray(big.data.length - 1048576)));
      assert.equal(sha(x.responses[6]!.body), sha(mid.data));
      assert.equal(x.rest.length, 0);
      assert.equal(x.closed, false);
    });
  }

  it('a large body whose send buffer fills (EAGAIN), then the next response', async () => {
    const file = makeFile(root, 'huge.bin', 24 * 1024 * 1024, 9);
    let serverSock: import('node:net').Socket | undefined;
    const s = await start();
    s.l.server.once('connection', (c) => {
      serverSock = c;
    });
    const sock = s.l.connect();
    const waits0 = stats().waits;
    const c = collectResponses(sock, ['GET', 'GET'], 2);
    sock.write(req('GET', '/huge.bin') + req('GET', '/a.txt'));
    await until(() => c.received() > 0, 10_000, 'first bytes');
    sock.pause();
    // Wait until the server really is blocked on a full socket buffer.
    await until(() => (NATIVE ? stats().waits > waits0 : (serverSock?.writableLength ?? 0) > 0), 10_000, 'a full send buffer');
    sock.resume();
    const x = await c.done;
    sock.destroy();
    assert.equal(x.responses.length, 2);
    assert.equal(sha(x.responses[0]!.body), sha(file.data));
    assert.deepEqual(x.responses[1]!.body, small.data);
    assert.equal(x.rest.length, 0);
    fs.rmSync(file.path);
  });
});

describe('failures mid-body', () => {
  it('file truncated while being sent: the connection is destroyed, never desynced', async () => {
    const file = makeFile(root, 'shrinks.bin', 32 * 1024 * 1024, 11);
    let serverSock: import('node:net').Socket | undefined;
    const s = await start();
    s.l.server.once('connection', (c) => {
      serverSock = c;
    });
    const sock = s.l.connect();
    const chunks: Buffer[] = [];
    let got = 0;
    const waits0 = stats().waits;
    sock.on('data', (d: Buffer) => {
      chunks.push(d);
      got += d.length;
    });
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    sock.on('error', () => {});
    sock.write(req('GET', '/shrinks.bin') + req('GET', '/a.txt'));
    await until(() => got > 0, 10_000, 'first bytes');
    sock.pause();
    await until(() => (NATIVE ? stats().waits > waits0 : (serverSock?.writableLength ?? 0) > 0), 10_000, 'a full send buffer');
    fs.truncateSync(file.path, 1024 * 1024);
    sock.resume();
    await withTimeout(closed, 30_000, 'connection closed');
    const all = Buffer.concat(chunks);
    const headEnd = all.indexOf('\r\n\r\n');
    assert.ok(all.length - headEnd - 4 < file.data.length, 'the body is short');
    assert.equal(all.indexOf('HTTP/1.1', 10), -1, 'no second response on a desynced connection');
    const r = (await s.results[0])!;
    assert.equal((r.error as { code?: string }).code, 'ZCOPY_ERR_FILE_TRUNCATED');
    fs.rmSync(file.path);
  });

  it('client abort mid-body: promise resolves, fd count back to baseline, no unhandled rejection', async () => {
    const file = makeFile(root, 'abort.bin', 32 * 1024 * 1024, 12);
    const s = await start();
    // Warm-up request so lazily created handles exist before the baseline.
    await request(s.l.target, { path: '/a.txt' });
    const base = openFds();
    for (let i = 0; i < 3; i++) {
      const sock = s.l.connect();
      sock.on('error', () => {});
      let got = 0;
      sock.on('data', (d: Buffer) => {
        got += d.length;
      });
      sock.write(req('GET', '/abort.bin'));
      await until(() => got > 100_000, 10_000, 'body bytes');
      sock.destroy();
      const r = (await withTimeout(s.results[s.results.length - 1]!, 10_000, 'serve result'))!;
      assert.ok(r.error, 'the result reports the abort');
      assert.ok(r.bytes < file.data.length);
    }
    await until(() => openFds() <= base, 10_000, `fd count back to ${base}`);
    fs.rmSync(file.path);
  });
});

describe('directories, dotfiles, symlinks, precompressed', () => {
  it('directory without slash -> 301 (query kept, leading slashes collapsed); with slash -> index.html', async () => {
    const s = await start();
    const x = await rawExchange(() => s.l.connect(), req('GET', '/sub?x=1&y=%3C') + req('GET', '//sub') + req('GET', '/sub/'), ['GET', 'GET', 'GET'], 3);
    assert.equal(x.responses[0]!.status, 301);
    assert.equal(x.responses[0]!.headers['location'], '/sub/?x=1&y=%3C');
    assert.equal(x.responses[1]!.headers['location'], '/sub/');
    assert.equal(x.responses[2]!.status, 200);
    assert.equal(x.responses[2]!.body.toString(), '<h1>sub</h1>\n');
    assert.equal(x.responses[2]!.headers['content-type'], 'text/html; charset=utf-8');
  });

  it('a redirect escapes the path in Location and in HTML', async () => {
    const s = await start();
    const x = await rawExchange(() => s.l.connect(), req('GET', '/a%22b%3Cc'), ['GET'], 1);
    assert.equal(x.responses[0]!.status, 301);
    assert.equal(x.responses[0]!.headers['location'], '/a%22b%3Cc/');
    assert.ok(!x.responses[0]!.body.toString().includes('<c'));
  });

  it('directory without index: 404; index:false -> 403; redirect:false -> 404; listing escapes names', async () => {
    const a = await start();
    assert.equal((await request(a.l.target, { path: '/noindex/' })).status, 404);
    const b = await start({ index: false });
    assert.equal((await request(b.l.target, { path: '/noindex/' })).status, 403);
    assert.equal((await request(b.l.target, { path: '/sub/' })).status, 403);
    const c = await start({ redirect: false });
    assert.equal((await request(c.l.target, { path: '/sub' })).status, 404);
    assert.equal((await request(c.l.target, { path: '/a.txt/' })).status, 404);
    const d = await start({ listing: true });
    const r = await request(d.l.target, { path: '/noindex/' });
    assert.equal(r.status, 200);
    const html = r.body.toString();
    assert.ok(html.includes('&lt;b&gt;&amp;amp;.txt'), 'name escaped');
    assert.ok(html.includes('href="./%3Cb%3E%26amp%3B.txt"'), 'href encoded');
    assert.ok(html.includes('1.5 KiB'));
    assert.ok(!html.includes('<b>'));
    const top = (await request(d.l.target, { path: '/' })).body.toString();
    assert.ok(!top.includes('.hidden') && !top.includes('.git'), 'hidden entries not listed');
  });

  it('dotfiles: ignore -> 404, deny -> 403, allow -> 200, for any hidden segment', async () => {
    const a = await start();
    const b = await start({ dotfiles: 'deny' });
    const c = await start({ dotfiles: 'allow' });
    for (const p of ['/.hidden', '/.git/config', '/sub/.env', '/%2ehidden', '/.git/']) {
      assert.equal((await request(a.l.target, { path: p })).status, 404, p);
      assert.equal((await request(b.l.target, { path: p })).status, 403, p);
    }
    assert.equal((await request(c.l.target, { path: '/.hidden' })).status, 200);
    assert.equal((await request(c.l.target, { path: '/.git/config' })).status, 200);
  });

  it('symlinks inside the root work; leaving it is refused unless followSymlinks', async () => {
    const a = await start();
    const r1 = await request(a.l.target, { path: '/link-in.txt' });
    assert.equal(r1.status, 200);
    assert.deepEqual(r1.body, small.data);
    for (const p of ['/link-out.txt', '/dir-out/secret.txt']) {
      const r = await request(a.l.target, { path: p });
      assert.equal(r.status, 403, p);
      assert.ok(!r.body.toString().includes('OUTSIDE-SECRET'));
    }
    const b = await start({ followSymlinks: true });
    assert.equal((await request(b.l.target, { path: '/link-out.txt' })).body.toString(), 'OUTSIDE-SECRET');
  });

  it('precompressed: .br / .gz by Accept-Encoding, Vary, original Content-Type', async () => {
    const s = await start({ precompressed: true });
    const g = (ae?: string) => request(s.l.target, { path: '/app.js', headers: ae ? { 'Accept-Encoding': ae } : {} });
    const br = await g('gzip, deflate, br');
    assert.equal(br.body.toString(), 'BROTLI');
    assert.equal(br.headers['content-encoding'], 'br');
    assert.equal(br.headers['vary'], 'Accept-Encoding');
    assert.match(String(br.headers['content-type']), /javascript/);
    const gz = await g('gzip');
    assert.equal(gz.body.toString(), 'GZIP');
    assert.equal(gz.headers['content-encoding'], 'gzip');
    assert.equal((await g('br;q=0, gzip;q=0.5')).body.toString(), 'GZIP');
    const id = await g();
    assert.equal(id.body.toString(), 'console.log(1)\n');
    assert.equal(id.headers['content-encoding'], undefined);
    assert.equal(id.headers['vary'], 'Accept-Encoding');
    assert.notEqual(br.headers['etag'], id.headers['etag']);
    // Without the option nothing changes.
    const plain = await start();
    const p = await request(plain.l.target, { path: '/app.js', headers: { 'Accept-Encoding': 'br' } });
    assert.equal(p.body.toString(), 'console.log(1)\n');
    assert.equal(p.headers['vary'], undefined);
  });

  it('error pages never echo the request path', async () => {
    const s = await start();
    const x = await rawExchange(() => s.l.connect(), req('GET', '/%3Cscript%3Ealert(1)%3C/script%3E') + req('GET', '/<img>x"y'), ['GET', 'GET'], 2);
    for (const r of x.responses) {
      assert.equal(r.status, 404);
      assert.ok(!r.body.toString().includes('script') && !r.body.toString().includes('img') && !r.body.toString().includes('"y'));
      assert.equal(r.headers['content-security-policy'], "default-src 'none'");
    }
  });
});

describe('serveFile and middleware mode', () => {
  it('serveFile: absolute paths only (sync TypeError), FileHandle left open, 404 for a directory', async () => {
    assert.throws(() => serveFile({ headers: {} } as never, { setHeader() {} } as never, 'relative.txt'), { code: 'ERR_INVALID_ARG_VALUE' });
    assert.throws(() => serveFile({ headers: {} } as never, { setHeader() {} } as never, 42 as never), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => serveFile({ headers: {} } as never, { setHeader() {} } as never, '/x', { maxAge: 'soon' }), { code: 'ERR_INVALID_ARG_VALUE' });
    const fh = await open(big.path, 'r');
    const results: Array<Promise<ServeResult>> = [];
    const server = http.createServer((rq, rs) => {
      if (rq.url === '/fh') {
        rs.setHeader('Content-Type', 'application/x-test');
        results.push(serveFile(rq, rs, fh));
      } else if (rq.url === '/dir') results.push(serveFile(rq, rs, root));
      else results.push(serveFile(rq, rs, mid.path, { maxAge: 1000 }));
    });
    const l = await listen(server);
    servers.push({ l, results: [], close: () => l.close() });
    const r1 = await request(l.target, { path: '/fh', headers: { Range: 'bytes=10-2000000' } });
    assert.equal(r1.status, 206);
    assert.equal(r1.headers['content-type'], 'application/x-test');
    assert.equal(sha(r1.body), sha(big.data.subarray(10, 2000001)));
    await results[0];
    assert.ok(fh.fd >= 0, 'the caller’s FileHandle is still open');
    assert.equal((await fh.stat()).size, big.data.length);
    await fh.close();
    assert.equal((await request(l.target, { path: '/dir' })).status, 404);
    const r3 = await request(l.target, { path: '/x' });
    assert.equal(r3.headers['cache-control'], 'public, max-age=1');
    assert.equal(sha(r3.body), sha(mid.data));
  });

  it('middleware mode: next() for misses, other methods and (fallthrough) client errors', async () => {
    const calls: string[] = [];
    const mw = serveStatic(root);
    const strict = serveStatic(root, { fallthrough: false });
    const server = http.createServer((rq, rs) => {
      const use = rq.url!.startsWith('/strict') ? strict : mw;
      if (rq.url!.startsWith('/strict')) rq.url = rq.url!.slice(7) || '/';
      void use(rq, rs, (err?: unknown) => {
        calls.push(`${rq.method} ${rq.url} ${err ? 'err' : 'next'}`);
        rs.statusCode = 418;
        rs.end('next');
      });
    });
    const l = await listen(server);
    servers.push({ l, results: [], close: () => l.close() });
    assert.equal((await request(l.target, { path: '/a.txt' })).status, 200);
    assert.equal((await request(l.target, { path: '/missing' })).status, 418);
    assert.equal((await request(l.target, { method: 'POST', path: '/a.txt' })).status, 418);
    assert.equal((await request(l.target, { path: '/.hidden' })).status, 418);
    assert.equal((await request(l.target, { path: '/strict/missing' })).status, 404);
    assert.deepEqual(calls, ['GET /missing next', 'POST /a.txt next', 'GET /.hidden next']);
  });
});
