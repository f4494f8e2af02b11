// The HTTP/1.1 front of `zcopy serve` (issue 11, src/http/h1-front.ts):
// plain GET/HEAD requests of small files are answered below node:http, with
// the bytes node:http would send; anything else hands the connection to
// node:http with its bytes, in order. Checked here: byte-for-byte equality
// with node:http over a table of requests (plain, pipelined, malformed,
// smuggling shapes), the front really answering (its counts), misses,
// read-your-writes, backpressure, the send and keep-alive timeouts,
// half-close, references and fds after aborted connections, the parser's
// prefix rule, and the CLI (--node-http, shutdown with idle connections).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { serveStatic, type ServeStaticOptions, type StaticHandler } from '../src/http/index.js';
import { FRONT_HEAD_MAX, H1Front, PARTIAL_MS, parsePlain, type FrontResponse } from '../src/http/h1-front.js';
import { makeFile, MODE, settledFds, tmpDir, withTimeout } from './helpers.js';
import { agedPast, collectResponses, listen, req, ResponseParser, shortRacyMargin, until, type Listening } from './http-helpers.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const root = fs.realpathSync(tmpDir('zcopy-front-'));
const servers: Listening[] = [];
const children: ChildProcess[] = [];
const RACY_MS = 50;
shortRacyMargin(RACY_MS);
fs.writeFileSync(path.join(root, 'a.txt'), 'hello front\n');
const mid = makeFile(root, 'mid.bin', 64 * 1024, 7);
makeFile(root, 'big.bin', 300 * 1024, 8);
fs.writeFileSync(path.join(root, 'empty'), '');
fs.mkdirSync(path.join(root, 'sub'));
fs.writeFileSync(path.join(root, 'sub', 'index.html'), '<h1>index</h1>\n');
fs.writeFileSync(path.join(root, '.hidden'), 'secret\n');

after(async () => {
  for (const c of children) c.kill('SIGKILL');
  for (const l of servers) await l.close();
  fs.rmSync(root, { recursive: true, force: true });
});

interface Served {
  l: Listening;
  h: StaticHandler;
  front: H1Front | undefined;
  logged: FrontResponse[];
}

/** A node:http server for `root` as `zcopy serve` builds it: with the front (unless `plain`), keep-alive 5 s. */
async function serve(o: { plain?: boolean; cors?: boolean; keepAliveMs?: number; static?: ServeStaticOptions; dir?: string; http?: http.ServerOptions; unix?: boolean } = {}): Promise<Served> {
  const h = serveStatic(o.dir ?? root, o.static);
  const cors: Array<[string, string]> = o.cors ? [['Access-Control-Allow-Origin', '*'], ['X-Front-Test', 'yes']] : [];
  const server = http.createServer(o.http ?? {}, (q, s) => {
    for (const [k, v] of cors) s.setHeader(k, v);
    void h(q, s);
  });
  server.keepAliveTimeout = o.keepAliveMs ?? 5_000;
  const logged: FrontResponse[] = [];
  const front = o.plain ? undefined : H1Front.install(server, h, { headers: cors, onResponse: (_ctx, r) => logged.push(r) });
  const l = await listen(server, o.unix ? 'unix' : 'tcp');
  servers.push(l);
  return { l, h, front, logged };
}

/**
 * Everything the server sends on one connection for `raw` (written at once,
 * or chunk by chunk 30 ms apart): until it closes, `quiet` ms after the last
 * byte (once all is written), or `ms` in all.
 */
function exchange(l: Listening, raw: string | string[], ms = 1_000, quiet = 100): Promise<string> {
  return new Promise((resolve) => {
    const s = l.connect();
    let got = Buffer.alloc(0);
    let done = false;
    const finish = (tail: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve(got.toString('latin1') + tail);
    };
    const chunks = Array.isArray(raw) ? raw : [raw];
    let i = 0;
    let idle: NodeJS.Timeout | undefined;
    s.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      clearTimeout(idle);
      if (i >= chunks.length) idle = setTimeout(() => finish(''), quiet);
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(idle);
      finish('<closed>');
    });
    const next = (): void => {
      if (i < chunks.length && !s.destroyed) {
        s.write(chunks[i++]!, 'latin1');
        setTimeout(next, 30);
      }
    };
    next();
    const timer = setTimeout(() => finish(''), ms);
  });
}

const norm = (x: string): string => x.replace(/Date: [^\r]*/g, 'Date: -');
const H = 'Host: x\r\n';
const get = (p: string, extra = ''): string => `GET ${p} HTTP/1.1\r\n${H}${extra}\r\n`;

/** Request shapes: [name, raw bytes, answered by the front at least once?]. */
const CASES: Array<[string, string | string[], boolean]> = [
  ['GET', get('/a.txt'), true],
  ['HEAD', `HEAD /a.txt HTTP/1.1\r\n${H}\r\n`, true],
  ['64 KiB', get('/mid.bin'), true],
  ['HEAD of a body sent zero-copy', `HEAD /big.bin HTTP/1.1\r\n${H}\r\n`, true],
  ['a body at or above sendfileThreshold (node:http)', get('/big.bin'), false],
  ['empty file', get('/empty'), true],
  ['directory index', get('/sub/'), true],
  ['directory redirect', get('/sub'), false],
  ['404', get('/nope'), false],
  ['dotfile', get('/.hidden'), false],
  ['query string', get('/a.txt?v=1&x=%20'), true],
  ['percent-encoded name', get('/a%2etxt'), true],
  ['encoded ..', get('/%2e%2e/etc/passwd'), false],
  ['..', get('/../etc/passwd'), false],
  ['pipelined, a 404 in the middle', get('/a.txt') + get('/nope') + get('/a.txt'), true],
  ['pipelined, a Range in the middle', get('/a.txt') + get('/mid.bin', 'Range: bytes=0-3\r\n') + get('/a.txt'), true],
  ['Connection: keep-alive', get('/a.txt', 'Connection: Keep-Alive\r\n'), true],
  ['Connection: close', get('/a.txt', 'Connection: close\r\n'), false],
  ['no Host', `GET /a.txt HTTP/1.1\r\n\r\n`, false],
  ['two Host', get('/a.txt', H), false],
  ['HTTP/1.0', `GET /a.txt HTTP/1.0\r\n\r\n`, false],
  ['Content-Length body then a request', `GET /a.txt HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello` + get('/a.txt'), false],
  ['chunked body then a request', `GET /a.txt HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n` + get('/a.txt'), false],
  ['CL + TE', `GET /a.txt HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, false],
  ['space before colon', get('/a.txt', 'X-A : b\r\n'), false],
  ['obs-fold', get('/a.txt', 'X-A: b\r\n c\r\n'), false],
  ['bare LF', `GET /a.txt HTTP/1.1\n${H.replace('\r', '')}\n`, false],
  ['control byte in a value', get('/a.txt', 'X-A: b\x01c\r\n'), false],
  ['obs-text in a value', get('/a.txt', 'X-A: caf\xe9\r\n'), false],
  ['tabs and an empty value', get('/a.txt', 'X-A:\tb\t\r\nX-B:\r\n'), true],
  ['absolute-form', `GET http://x/a.txt HTTP/1.1\r\n${H}\r\n`, false],
  ['fragment', get('/a.txt#f'), false],
  ['If-None-Match', get('/a.txt', 'If-None-Match: *\r\n'), false],
  ['If-Modified-Since', get('/a.txt', 'If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n'), false],
  ['Range', get('/a.txt', 'Range: bytes=0-1\r\n'), false],
  ['Expect', get('/a.txt', 'Expect: 100-continue\r\n'), false],
  ['Upgrade', get('/a.txt', 'Connection: Upgrade\r\nUpgrade: websocket\r\n'), false],
  ['POST', `POST /a.txt HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\n`, false],
  ['lower-case method', `get /a.txt HTTP/1.1\r\n${H}\r\n`, false],
  ['TLS bytes', '\x16\x03\x01\x00\xa5\x01\x00\x00', false],
  ['a request split in three writes', ['GET /a.t', `xt HTTP/1.1\r\n${H}`, '\r\n'], true],
  ['pipelined, split inside the second', [get('/a.txt') + 'GET /mi', `d.bin HTTP/1.1\r\n${H}\r\n`], true],
  ['a head over 8 KiB', get('/a.txt', `X-Big: ${'b'.repeat(FRONT_HEAD_MAX)}\r\n`), false],
  ['Proxy-Connection: close (llhttp reads it as Connection)', get('/a.txt', 'Proxy-Connection: close\r\n'), false],
];

describe(`HTTP/1.1 front (zcopy serve, issue 11) [${MODE}]`, () => {
  it('sends the bytes node:http sends, for every request shape; answers the plain ones itself and hands the rest over', async () => {
    for (const cors of [false, true]) {
      const fast = await serve({ cors });
      const slow = await serve({ cors, plain: true });
      // Cached first (a miss is answered too, see below): both paths see the same cache state.
      for (const p of ['/a.txt', '/mid.bin', '/big.bin', '/empty', '/sub/']) await exchange(slow.l, get(p));
      for (const [name, raw, answered] of CASES) {
        const before = fast.front!.counts.answered;
        const [a, b] = (await Promise.all([exchange(fast.l, raw), exchange(slow.l, raw)])).map(norm);
        assert.equal(a, b, `${name}${cors ? ' (cors)' : ''}: front and node:http differ`);
        assert.ok(a.startsWith('HTTP/1.1 '), `${name}: no response at all`);
        assert.equal(fast.front!.counts.answered > before, answered, `${name}: answered by the front: ${fast.front!.counts.answered - before}`);
      }
      assert.ok(fast.front!.counts.handedOver > 10);
    }
  });

  it('a body-cache hit is one prebuilt buffer per second: its Date follows the clock, its bytes the file', async () => {
    const dir = fs.realpathSync(tmpDir('zcopy-front-whole-'));
    try {
      const f = path.join(dir, 'w.txt');
      fs.writeFileSync(f, 'first\n');
      await agedPast(RACY_MS, f);
      const s = await serve({ dir });
      const date = (raw: string): number => Date.parse(/\r\nDate: ([^\r]+)/.exec(raw)![1]!);
      const a = await exchange(s.l, get('/w.txt') + get('/w.txt'));
      await new Promise((r) => setTimeout(r, 1_100));
      const b = await exchange(s.l, get('/w.txt'));
      assert.ok(date(b) - date(a) >= 1_000, `Date did not move: ${date(a)} then ${date(b)}`);
      assert.ok(Math.abs(Date.now() - date(b)) < 2_500);
      fs.writeFileSync(f, 'second, longer\n');
      await agedPast(RACY_MS, f);
      const c = await exchange(s.l, get('/w.txt') + get('/w.txt'));
      assert.match(a, /Content-Length: 6\r\n[^]*\r\n\r\nfirst\n[^]*\r\n\r\nfirst\n$/);
      assert.match(c, /Content-Length: 15\r\n[^]*\r\n\r\nsecond, longer\n[^]*\r\n\r\nsecond, longer\n$/);
      assert.equal(s.front!.counts.answered, 5);
      // The first request of each version reads it (and offers it to the body cache); the rest are prebuilt.
      assert.ok(s.front!.counts.prebuilt >= 2, `prebuilt ${s.front!.counts.prebuilt}`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a miss is answered after the open (threadpool), pipelined requests behind it keep their order', async () => {
    const dir = fs.realpathSync(tmpDir('zcopy-front-miss-'));
    try {
      const files = [0, 1, 2].map((i) => makeFile(dir, `f${i}.bin`, 1000 + i * 3000, 20 + i));
      const s = await serve({ dir });
      const order = [0, 1, 2, 1, 0, 2, 2];
      const sock = s.l.connect();
      const c = collectResponses(sock, order.map(() => 'GET'), order.length);
      sock.write(order.map((i) => req('GET', `/f${i}.bin`)).join(''));
      const r = await c.done;
      sock.destroy();
      assert.deepEqual(r.responses.map((x) => x.status), order.map(() => 200));
      r.responses.forEach((x, k) => assert.ok(x.body.equals(files[order[k]!]!.data), `response ${k}`));
      assert.equal(s.front!.counts.answered, order.length);
      assert.equal(s.front!.counts.handedOver, 0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('read-your-writes: a file rewritten between two requests on one connection is served new', async () => {
    const dir = fs.realpathSync(tmpDir('zcopy-front-ryw-'));
    try {
      const f = path.join(dir, 'v.txt');
      fs.writeFileSync(f, 'version one\n');
      const s = await serve({ dir });
      const sock = s.l.connect();
      sock.on('error', () => {});
      const parser = new ResponseParser(['GET', 'GET', 'GET']);
      sock.on('data', (d: Buffer) => parser.push(d));
      const answer = async (n: number): Promise<void> => until(() => parser.responses.length >= n, 5_000, `response ${n}`);
      sock.write(req('GET', '/v.txt'));
      await answer(1);
      fs.writeFileSync(f, 'version two, longer\n');
      sock.write(req('GET', '/v.txt'));
      await answer(2);
      fs.rmSync(f);
      fs.writeFileSync(f, '3\n');
      sock.write(req('GET', '/v.txt'));
      await answer(3);
      sock.destroy();
      const r = parser;
      assert.deepEqual(r.responses.map((x) => x.body.toString()), ['version one\n', 'version two, longer\n', '3\n']);
      assert.equal(s.front!.counts.answered, 3);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a client that does not read stops the reading of its requests; resumed, it gets every response intact and in order', async () => {
    const s = await serve();
    const n = 200;
    const sock = s.l.connect();
    sock.pause();
    const c = collectResponses(sock, new Array(n).fill('GET'), n, 30_000);
    sock.pause();
    sock.write(new Array(n).fill(req('GET', '/mid.bin')).join(''));
    // 200 x 64 KiB = 12.5 MiB: far more than the socket buffers hold.
    await until(() => s.front!.counts.answered > 0, 5_000, 'first responses');
    await new Promise((r) => setTimeout(r, 300));
    const stalled = s.front!.counts.answered;
    assert.ok(stalled < n, `all ${n} answered while the client read nothing: no backpressure`);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(s.front!.counts.answered, stalled, 'answers went on while the socket could not drain');
    sock.resume();
    const r = await c.done;
    sock.destroy();
    assert.equal(r.responses.length, n);
    for (const x of r.responses) assert.ok(x.status === 200 && x.body.equals(mid.data));
    assert.equal(s.front!.counts.answered, n);
  });

  it('responses below the socket highWaterMark, partly taken by the kernel, never stall the connection (TCP and Unix socket)', async () => {
    const dir = fs.realpathSync(tmpDir('zcopy-front-hwm-'));
    try {
      const f = makeFile(dir, 'f15.bin', 15_000, 31);
      for (const unix of [false, true]) {
        const s = await serve({ dir, unix });
        const n = 300;
        const sock = s.l.connect();
        const c = collectResponses(sock, new Array(n).fill('GET'), n, 20_000);
        sock.pause();
        // One request per write, the client reading nothing for a while.
        for (let i = 0; i < n; i++) sock.write(req('GET', '/f15.bin'));
        await new Promise((r) => setTimeout(r, 300));
        sock.resume();
        const r = await c.done;
        sock.destroy();
        assert.equal(r.responses.length, n, unix ? 'unix' : 'tcp');
        for (const x of r.responses) assert.ok(x.status === 200 && x.body.equals(f.data));
        assert.equal(s.front!.counts.answered, n);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a head sent a byte at a time goes to node:http (and its headersTimeout) after PARTIAL_MS, however often bytes come', async () => {
    const s = await serve();
    const sock = s.l.connect();
    sock.on('error', () => {});
    const c = collectResponses(sock, ['GET'], 1);
    const head = get('/a.txt', 'X-Slow: abcdefghijklmnopqrstuvwxyz\r\n');
    const t0 = Date.now();
    let i = 0;
    // A byte per poll of until(): each refreshes the socket's inactivity timer.
    await until(() => {
      if (i < head.length - 2) sock.write(head[i++]!);
      return s.front!.counts.handedOver === 1;
    }, 5_000, 'hand-over of the partial head');
    const took = Date.now() - t0;
    // PARTIAL_MS at most (16 partial reads come first here).
    assert.ok(took < PARTIAL_MS + 1_500, `handed over after ${took} ms`);
    sock.write(head.slice(i));
    const r = await c.done;
    sock.destroy();
    assert.equal(r.responses[0]!.status, 200);
    assert.equal(s.front!.counts.answered, 0);
  });

  it("responses already written reach the client when node:http refuses what follows (hand-over after the batch's writes are uncorked)", async () => {
    const s = await serve();
    await exchange(s.l, get('/a.txt'));
    const before = s.front!.counts.answered;
    // node:http answers the garbage 400 and the big head 431; CONNECT (no 'connect' listener) just closes.
    for (const [next, then] of [['GARBAGE\r\n\r\n', 'HTTP/1.1 400 '], [`CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n`, '<closed>'], [get('/a.txt', `X-Big: ${'b'.repeat(17_000)}\r\n`), 'HTTP/1.1 431 ']]) {
      const got = await exchange(s.l, get('/a.txt') + next!);
      const end = got.indexOf('hello front\n');
      assert.ok(got.startsWith('HTTP/1.1 200 OK\r\n') && end > 0, `${JSON.stringify(next!.slice(0, 20))}: the 200 was lost: ${JSON.stringify(got.slice(0, 80))}`);
      assert.ok(got.slice(end + 12).startsWith(then!), `${JSON.stringify(next!.slice(0, 20))}: then ${JSON.stringify(got.slice(end + 12, end + 60))}`);
    }
    assert.equal(s.front!.counts.answered - before, 3);
  });

  it('a response in the kernel before node:http destroys the socket (a 400 after the hand-over) is logged as sent', async () => {
    const s = await serve();
    await exchange(s.l, get('/a.txt'));
    s.logged.length = 0;
    const got = await exchange(s.l, get('/a.txt') + `BREW /a.txt HTTP/1.1\r\n${H}\r\n`);
    assert.match(got, /hello front\nHTTP\/1\.1 400 /);
    await until(() => s.logged.length === 1, 2_000, 'the log line');
    assert.equal(s.logged[0]!.error, undefined, `logged as ${s.logged[0]!.error?.message}`);
  });

  it('a client that keeps taking bytes, slowly, is not timed out (the send timeout counts time without progress)', async () => {
    const s = await serve({ static: { sendTimeout: 400 }, keepAliveMs: 200 });
    const n = 40;
    const sock = s.l.connect();
    sock.on('error', () => {});
    const parser = new ResponseParser(new Array(n).fill('GET'));
    sock.pause();
    sock.write(new Array(n).fill(req('GET', '/mid.bin')).join(''));
    // 2.6 MiB at ~16 KiB per 50 ms: about 8 s, with no pause near 400 ms.
    const t0 = Date.now();
    while (parser.responses.length < n && Date.now() - t0 < 20_000 && !sock.destroyed) {
      await new Promise((r) => setTimeout(r, 50));
      const d = sock.read(16 * 1024) as Buffer | null;
      if (d) parser.push(d);
      else if (sock.readableEnded) break;
    }
    sock.destroy();
    assert.equal(parser.responses.length, n, `${parser.responses.length} of ${n} responses before the connection closed`);
    assert.ok(!s.logged.some((r) => r.error), 'no response logged as failed');
  });

  it("the prebuilt responses' budget never evicts one built in the current second (a hot set over it would rebuild on every hit)", () => {
    const fp = H1Front.install(http.createServer(), serveStatic(root))!;
    const bodies = Array.from({ length: 300 }, (_, i) => Buffer.alloc(64 * 1024, i));
    const first = bodies.map((b) => fp.wholeResponse('H:\r\n', 'T1\r\n\r\n', b));
    const built = first.filter((b) => b !== undefined).length;
    assert.ok(built > 200 && built < 300, `${built} built`);
    // The same second again: the same buffers, nothing rebuilt, the rest still not built.
    bodies.forEach((b, i) => assert.equal(fp.wholeResponse('H:\r\n', 'T1\r\n\r\n', b), first[i]));
    // The next second: older ones make room.
    const next = fp.wholeResponse('H:\r\n', 'T2\r\n\r\n', bodies[299]!)!;
    assert.ok(next.subarray(10).equals(bodies[299]!) && next.subarray(0, 10).toString() === 'H:\r\nT2\r\n\r\n');
  });

  it("node:http's maxHeaderSize bounds the heads the front reads (a head it would refuse with 431 reaches it)", async () => {
    const fast = await serve({ http: { maxHeaderSize: 4096 } });
    const slow = await serve({ http: { maxHeaderSize: 4096 }, plain: true });
    const raw = get('/a.txt', `X-Pad: ${'p'.repeat(6000)}\r\n`);
    const [a, b] = (await Promise.all([exchange(fast.l, raw), exchange(slow.l, raw)])).map(norm);
    assert.match(b, /^HTTP\/1\.1 431 /);
    assert.equal(a, b);
    assert.equal(fast.front!.counts.answered, 0);
  });

  it('the send timeout closes a connection whose client reads nothing, and says so (ZCOPY_ERR_TIMEOUT)', async () => {
    const s = await serve({ static: { sendTimeout: 300 } });
    const sock = s.l.connect();
    sock.pause();
    sock.on('error', () => {});
    sock.write(new Array(200).fill(req('GET', '/mid.bin')).join(''));
    await until(() => s.front!.counts.answered > 0, 5_000, 'first responses');
    // The paused client cannot see the close; the server's side is what counts.
    await until(() => s.front!.connections === 0, 10_000, 'the server closing the stalled connection');
    // Write callbacks of what was still queued report it (the log line's error=).
    await until(() => s.logged.some((r) => (r.error as { code?: string } | undefined)?.code === 'ZCOPY_ERR_TIMEOUT'), 2_000, 'a ZCOPY_ERR_TIMEOUT in the log');
    assert.ok(s.front!.counts.answered < 200);
    sock.destroy();
  });

  it('keep-alive timeout: an idle connection is closed after it plus a second (as node:http does); a partial request goes to node:http, which answers it', async () => {
    const s = await serve({ keepAliveMs: 200 });
    const idle = s.l.connect();
    idle.on('error', () => {});
    const t0 = Date.now();
    await withTimeout(new Promise((r) => idle.once('close', r)), 5_000, 'idle connection closed');
    // node:http's margin: the keep-alive timeout plus a second.
    assert.ok(Date.now() - t0 >= 1_100, `closed after ${Date.now() - t0} ms`);
    const sock = s.l.connect();
    const c = collectResponses(sock, ['GET'], 1);
    sock.write('GET /a.txt HTTP/1.1\r\nHo');
    await until(() => s.front!.counts.handedOver === 1, 5_000, 'hand-over at the timeout');
    sock.write('st: x\r\n\r\n');
    const r = await c.done;
    sock.destroy();
    assert.equal(r.responses[0]!.status, 200);
    assert.equal(r.responses[0]!.body.toString(), 'hello front\n');
    assert.equal(s.front!.counts.answered, 0);
  });

  it('half-close: requests followed by FIN get their responses, then the connection ends', async () => {
    const s = await serve();
    const sock = s.l.connect();
    const c = collectResponses(sock, ['GET', 'GET', 'GET'], 3);
    sock.end(req('GET', '/a.txt') + req('GET', '/mid.bin') + req('GET', '/a.txt'));
    const r = await c.done;
    assert.deepEqual(r.responses.map((x) => x.status), [200, 200, 200]);
    await withTimeout(new Promise((res) => (sock.closed ? res(undefined) : sock.once('close', res))), 5_000, 'server end');
    assert.equal(s.front!.counts.answered, 3);
  });

  it('no reference or fd is left after 500 concurrent connections that pipeline and abort at random points', async () => {
    const dir = fs.realpathSync(tmpDir('zcopy-front-leak-'));
    try {
      for (let i = 0; i < 20; i++) makeFile(dir, `f${i}.bin`, 500 + i * 7000, 40 + i);
      const s = await serve({ dir });
      // Half of the files cached first: those are answered in the tick their request arrives.
      for (let i = 0; i < 20; i += 2) await exchange(s.l, get(`/f${i}.bin`));
      const warm = s.front!.counts.answered;
      const baseline = await settledFds();
      const mix = (k: number): string =>
        [0, 1, 2, 3, 4]
          .map((j) => {
            const i = (k * 7 + j * 3) % 25;
            if (i >= 22) return req('GET', '/f1.bin', { Range: 'bytes=0-9' });
            if (i >= 20) return req('GET', `/missing${i}`);
            return req(j === 2 ? 'HEAD' : 'GET', `/f${i}.bin`);
          })
          .join('');
      await Promise.all(
        Array.from({ length: 500 }, (_, k) => new Promise<void>((resolve) => {
          const sock = s.l.connect();
          sock.on('error', () => {});
          sock.on('close', () => resolve());
          sock.write(mix(k));
          // Some leave at once, some mid-response, some after reading a little.
          const at = k % 3 === 0 ? 0 : (k % 17) * 2;
          setTimeout(() => sock.destroy(), at);
          if (k % 3 === 2) sock.on('data', () => sock.destroy());
        })),
      );
      await until(() => s.front!.connections === 0, 5_000, 'the front to drop every connection');
      s.h.openFileCache!.clear();
      const fds = await settledFds();
      assert.ok(fds <= baseline, `fds ${fds} after clear(), ${baseline} before: a reference was not released`);
      assert.ok(s.front!.counts.answered > warm, 'no request of the storm was answered by the front');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('parser: every prefix of a plain request waits for more; a bad byte is refused as soon as it arrives', () => {
    const plain = Buffer.from(get('/a/b.txt?x=1', 'Accept: */*\r\nConnection: keep-alive\r\n'), 'latin1');
    for (let n = 0; n < plain.length; n++) assert.equal(parsePlain(plain.subarray(0, n), 0), 0, `prefix of ${n} bytes`);
    const p = parsePlain(plain, 0);
    assert.ok(typeof p === 'object' && p.method === 'GET' && p.url === '/a/b.txt?x=1' && p.end === plain.length);
    // At an offset (pipelined), and HEAD.
    const two = Buffer.concat([plain, Buffer.from(`HEAD /h HTTP/1.1\r\n${H}\r\n`)]);
    const q = parsePlain(two, plain.length);
    assert.ok(typeof q === 'object' && q.method === 'HEAD' && q.url === '/h' && q.end === two.length);
    for (const bad of ['PUT ', 'GET a', 'GET /a\x7f', 'GET /a HTTP/1.0', 'GET /a HTTP/1.1\n', 'GET /a HTTP/1.1\r\nX A', 'GET /a HTTP/1.1\r\nX: \x00', 'GET /a HTTP/1.1\r\nX: a\rb', 'GET /a HTTP/1.1\r\n\r\n']) {
      assert.equal(parsePlain(Buffer.from(bad, 'latin1'), 0), 1, JSON.stringify(bad));
    }
    assert.equal(parsePlain(Buffer.from('GET /' + 'a'.repeat(FRONT_HEAD_MAX)), 0), 1, 'a head past FRONT_HEAD_MAX');
  });

  it('zcopy serve: the front answers (and logs) plain requests, --node-http turns it off, SIGTERM closes idle front connections at once', async () => {
    for (const args of [[], ['--node-http']]) {
      const child = spawn(process.execPath, [MAIN, 'serve', root, '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      let out = '';
      child.stdout!.setEncoding('utf8');
      child.stdout!.on('data', (d: string) => (out += d));
      await until(() => /127\.0\.0\.1:(\d+)/.test(out), 15_000, 'serving line');
      const port = Number(/127\.0\.0\.1:(\d+)/.exec(out)![1]);
      const l = { connect: () => net.connect(port, '127.0.0.1') } as Listening;
      const a = norm(await exchange(l, get('/a.txt') + `HEAD /mid.bin HTTP/1.1\r\n${H}\r\n`));
      assert.match(a, /^HTTP\/1\.1 200 OK\r\n[^]*hello front\n[^]*Content-Length: 65536\r\n/);
      await until(() => /GET \/a\.txt 200 12 [\d.]+ms path=buffered/.test(out) && /HEAD \/mid\.bin 200 0 [\d.]+ms path=-/.test(out), 5_000, 'log lines');
      // Idle keep-alive connections: the shutdown must not wait for them.
      const idle = [0, 1, 2].map(() => net.connect(port, '127.0.0.1'));
      for (const s of idle) s.on('error', () => {});
      await Promise.all(idle.map((s) => new Promise((r) => s.once('connect', r))));
      for (const s of idle) s.write(get('/a.txt'));
      await new Promise((r) => setTimeout(r, 200));
      const t0 = Date.now();
      child.kill('SIGTERM');
      const code = await withTimeout(new Promise((r) => child.once('exit', r)), 5_000, `exit after SIGTERM ${args.join(' ')}`);
      assert.equal(code, 0);
      assert.ok(Date.now() - t0 < 3_000, `shutdown took ${Date.now() - t0} ms`);
      assert.match(out, /zcopy serve: stopped/);
      for (const s of idle) s.destroy();
    }
  });
});
