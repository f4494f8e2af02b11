// receiveBody(req, file): Content-Length bodies in the kernel with the
// connection kept alive (two PUTs then a GET on one connection, pipelined
// or not), maxBytes (413 before anything is written), chunked bodies, short
// bodies, Express, Fastify, TLS and HTTP/2 on the portable path.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { resetStats, stats } from '../src/index.js';
import { receiveBody } from '../src/http/index.js';
import { pipePool } from '../src/internal/pipe-pool.js';
import { NATIVE, once, seededBytes, settledFds, sha, tmpDir, withTimeout } from './helpers.js';
import { collectResponses, listen, type Listening } from './http-helpers.js';

const dir = tmpDir('zcopy-body-');
const closers: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of closers) await c();
  if (NATIVE) pipePool.drain();
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Outcome {
  url: string;
  n?: number;
  err?: Error & { code?: string; status?: number; bytesTransferred?: number };
}

/** A node:http server: PUT stores the body under dir, GET answers 'ok <url>'. */
async function uploadServer(opts: { maxBytes?: number } = {}): Promise<{ l: Listening; outcomes: Outcome[]; next(): Promise<Outcome> }> {
  const outcomes: Outcome[] = [];
  const waiters = new Map<number, (o: Outcome) => void>();
  let asked = 0;
  const push = (o: Outcome) => {
    outcomes.push(o);
    waiters.get(outcomes.length - 1)?.(o);
  };
  const server = http.createServer(async (req, res) => {
    if (req.method !== 'PUT') {
      res.end(`ok ${req.url}`);
      return;
    }
    const file = path.join(dir, path.basename(req.url!));
    try {
      const n = await receiveBody(req, file, { maxBytes: opts.maxBytes });
      push({ url: req.url!, n });
      res.writeHead(201, { 'content-length': String(`${n}`.length) }).end(`${n}`);
    } catch (err) {
      const e = err as Outcome['err'];
      push({ url: req.url!, err: e });
      if (!res.headersSent && !res.destroyed) res.writeHead(e?.status ?? 500, { 'content-length': '0' }).end();
    }
  });
  const l = await listen(server);
  closers.push(() => l.close());
  return {
    l,
    outcomes,
    next: () => {
      const i = asked++;
      return withTimeout(new Promise<Outcome>((r) => (i < outcomes.length ? r(outcomes[i]!) : waiters.set(i, r))), 30_000, 'an upload outcome');
    },
  };
}

function put(url: string, body: Buffer, extra = ''): Buffer {
  return Buffer.concat([Buffer.from(`PUT ${url} HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n${extra}\r\n`), body]);
}

describe('receiveBody on node:http', () => {
  test('two PUTs then a GET on one connection, pipelined: bytes, keep-alive, kernel path', async () => {
    if (NATIVE) pipePool.drain();
    const base = await settledFds();
    const { l } = await uploadServer();
    const a = seededBytes(3 * 1024 * 1024 + 7, 21);
    const b = seededBytes(1024 * 1024 + 3, 22);
    resetStats();
    const sock = l.connect();
    const c = collectResponses(sock, ['PUT', 'PUT', 'GET'], 3);
    sock.write(Buffer.concat([put('/a.bin', a), put('/b.bin', b), Buffer.from('GET /after HTTP/1.1\r\nHost: x\r\n\r\n')]));
    const ex = await c.done;
    sock.destroy();
    assert.equal(ex.responses.length, 3, 'three responses on one connection');
    assert.deepEqual(
      ex.responses.map((r) => r.status),
      [201, 201, 200],
    );
    assert.equal(ex.responses[2]!.body.toString(), 'ok /after');
    assert.equal(sha(fs.readFileSync(path.join(dir, 'a.bin'))), sha(a));
    assert.equal(sha(fs.readFileSync(path.join(dir, 'b.bin'))), sha(b));
    const s = stats();
    if (NATIVE) assert.ok(s.bytesByPath.splice > 0, 'the kernel moved body bytes');
    else assert.equal(s.bytesByPath.splice, 0);
    await l.close();
    if (NATIVE) pipePool.drain();
    assert.equal(await settledFds(), base, 'fds back at baseline');
  });

  test('two PUTs then a GET, each sent after the previous answer (body in pieces)', async () => {
    const { l } = await uploadServer();
    const sock = l.connect();
    const bodies = [seededBytes(2 * 1024 * 1024 + 1, 23), seededBytes(70_000, 24)];
    for (const [i, body] of bodies.entries()) {
      const c = collectResponses(sock, ['PUT'], 1);
      const msg = put(`/p${i}.bin`, body);
      // The head and the first bytes, then the rest later: the kernel path takes over mid-body.
      sock.write(msg.subarray(0, 1000));
      await new Promise((r) => setImmediate(r));
      sock.write(msg.subarray(1000));
      const ex = await c.done;
      sock.removeAllListeners('data');
      sock.removeAllListeners('close');
      assert.equal(ex.responses[0]!.status, 201);
      assert.equal(sha(fs.readFileSync(path.join(dir, `p${i}.bin`))), sha(body));
    }
    const c = collectResponses(sock, ['GET'], 1);
    sock.write('GET /x HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal((await c.done).responses[0]!.body.toString(), 'ok /x');
    sock.destroy();
    await l.close();
  });

  test('maxBytes: a Content-Length over it is refused with 413 before the file is created', async () => {
    const { l, next } = await uploadServer({ maxBytes: 1000 });
    const sock = l.connect();
    const c = collectResponses(sock, ['PUT'], 1);
    sock.write(put('/big.bin', seededBytes(5000, 25)));
    const o = await next();
    assert.equal(o.err?.code, 'ZCOPY_ERR_TOO_LARGE');
    assert.equal(o.err?.status, 413);
    assert.equal(o.err?.bytesTransferred, 0);
    assert.equal(fs.existsSync(path.join(dir, 'big.bin')), false, 'nothing written');
    assert.equal((await c.done).responses[0]!.status, 413);
    sock.destroy();
    await l.close();
  });

  test('a chunked body takes the portable path; over maxBytes it is a 413', async () => {
    const { l, next } = await uploadServer({ maxBytes: 200_000 });
    const body = seededBytes(150_000, 26);
    const sock = l.connect();
    const c = collectResponses(sock, ['PUT'], 1);
    const chunk = (b: Buffer) => Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n')]);
    sock.write(Buffer.concat([Buffer.from('PUT /chunked.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n'), chunk(body.subarray(0, 100_000)), chunk(body.subarray(100_000)), Buffer.from('0\r\n\r\n')]));
    const o = await next();
    assert.equal(o.n, body.length);
    assert.equal((await c.done).responses[0]!.status, 201);
    assert.equal(sha(fs.readFileSync(path.join(dir, 'chunked.bin'))), sha(body));
    sock.destroy();

    const s2 = l.connect();
    const c2 = collectResponses(s2, ['PUT'], 1);
    s2.write(Buffer.concat([Buffer.from('PUT /chunked2.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n'), chunk(seededBytes(150_000, 27)), chunk(seededBytes(150_000, 28)), Buffer.from('0\r\n\r\n')]));
    const o2 = await next();
    assert.equal(o2.err?.code, 'ZCOPY_ERR_TOO_LARGE');
    assert.ok(o2.err!.bytesTransferred! <= 200_000);
    assert.equal((await c2.done).responses[0]!.status, 413);
    s2.destroy();
    await l.close();
  });

  test('a client that closes mid-body: ZCOPY_ERR_SHORT_READ with the bytes received', async () => {
    if (NATIVE) pipePool.drain();
    const base = await settledFds();
    const { l, next } = await uploadServer();
    const sock = l.connect();
    sock.on('error', () => {});
    const part = seededBytes(300_000, 29);
    sock.write(Buffer.from(`PUT /short.bin HTTP/1.1\r\nHost: x\r\nContent-Length: ${2 * 1024 * 1024}\r\n\r\n`));
    await new Promise<void>((r) => sock.write(part, () => r()));
    // Let the bytes reach the file before the close (bounded wait).
    const f = path.join(dir, 'short.bin');
    for (let i = 0; i < 500 && (fs.existsSync(f) ? fs.statSync(f).size : 0) < part.length; i++) await new Promise((r) => setTimeout(r, 10));
    sock.end();
    const o = await next();
    assert.equal(o.err?.code, 'ZCOPY_ERR_SHORT_READ');
    assert.equal(o.err?.bytesTransferred, part.length);
    assert.equal(sha(fs.readFileSync(f)), sha(part));
    sock.destroy();
    await l.close();
    if (NATIVE) pipePool.drain();
    assert.equal(await settledFds(), base, 'fds back at baseline');
  });

  test('Expect: 100-continue through http.request with a keep-alive agent', async () => {
    const { l } = await uploadServer();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const body = seededBytes(4 * 1024 * 1024, 30);
    const sockets = new Set<net.Socket>();
    for (const name of ['k1.bin', 'k2.bin']) {
      const status = await withTimeout(
        new Promise<number>((resolve, reject) => {
          const r = http.request({ ...(l.target as object), method: 'PUT', path: `/${name}`, agent, headers: { 'content-length': String(body.length), expect: '100-continue' } }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode!));
          });
          r.on('socket', (s) => sockets.add(s));
          r.on('continue', () => r.end(body));
          r.on('error', reject);
        }),
        30_000,
        'PUT',
      );
      assert.equal(status, 201);
      assert.equal(sha(fs.readFileSync(path.join(dir, name))), sha(body));
    }
    assert.equal(sockets.size, 1, 'one connection for both');
    agent.destroy();
    await l.close();
  });
});

describe('receiveBody in frameworks and on the portable transports', () => {
  test('Express', async (t) => {
    let express: typeof import('express');
    try {
      express = (await import('express')).default as unknown as typeof import('express');
    } catch {
      t.skip('express is not installed');
      return;
    }
    const app = express();
    app.put('/up/:name', async (req, res, nextFn) => {
      try {
        const n = await receiveBody(req, path.join(dir, `ex-${req.params.name}`), { maxBytes: 10 * 1024 * 1024 });
        res.status(201).send(String(n));
      } catch (err) {
        nextFn(err);
      }
    });
    app.use((err: { status?: number }, _req: unknown, res: { status(n: number): { set(k: string, v: string): { end(): void } } }, _next: unknown) => {
      res.status(err.status ?? 500).set('content-length', '0').end();
    });
    const l = await listen(http.createServer(app));
    closers.push(() => l.close());
    const body = seededBytes(2 * 1024 * 1024, 31);
    const sock = l.connect();
    const c = collectResponses(sock, ['PUT', 'PUT'], 2);
    sock.write(Buffer.concat([put('/up/1', body), put('/up/2', seededBytes(20 * 1024 * 1024, 1))]));
    const ex = await c.done;
    sock.destroy();
    assert.equal(ex.responses[0]!.status, 201);
    assert.equal(ex.responses[1]!.status, 413, "Express's error handler uses err.status");
    assert.equal(sha(fs.readFileSync(path.join(dir, 'ex-1'))), sha(body));
    assert.equal(fs.existsSync(path.join(dir, 'ex-2')), false);
    await l.close();
  });

  test('Fastify (request.raw, with a pass-through content-type parser)', async (t) => {
    let fastifyMod: { default: typeof import('fastify').default };
    try {
      fastifyMod = await import('fastify');
    } catch {
      t.skip('fastify is not installed');
      return;
    }
    const app = fastifyMod.default();
    app.addContentTypeParser('*', (_req, _payload, done) => done(null));
    app.put('/f/:name', async (request, reply) => {
      const n = await receiveBody(request, path.join(dir, `fy-${(request.params as { name: string }).name}`));
      reply.code(201).send(String(n));
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => app.close());
    const port = (app.server.address() as net.AddressInfo).port;
    const body = seededBytes(3 * 1024 * 1024, 32);
    const sock = net.connect(port, '127.0.0.1');
    const c = collectResponses(sock, ['PUT', 'PUT', 'GET'], 3);
    sock.write(Buffer.concat([put('/f/1', body, 'Content-Type: application/octet-stream\r\n'), put('/f/2', body, 'Content-Type: application/octet-stream\r\n'), Buffer.from('GET /none HTTP/1.1\r\nHost: x\r\n\r\n')]));
    const ex = await c.done;
    sock.destroy();
    assert.deepEqual(
      ex.responses.map((r) => r.status),
      [201, 201, 404],
    );
    assert.equal(sha(fs.readFileSync(path.join(dir, 'fy-1'))), sha(body));
    assert.equal(sha(fs.readFileSync(path.join(dir, 'fy-2'))), sha(body));
    await app.close();
  });

  let cert: { key: Buffer; cert: Buffer } | undefined;
  let noCert = '';
  before(() => {
    const key = path.join(dir, 'key.pem');
    const crt = path.join(dir, 'cert.pem');
    const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', crt, '-days', '1', '-subj', '/CN=localhost'], { encoding: 'utf8' });
    if (r.error || r.status !== 0) {
      noCert = `openssl could not make a certificate: ${r.error?.message ?? r.stderr.trim().split('\n')[0]}`;
      return;
    }
    cert = { key: fs.readFileSync(key), cert: fs.readFileSync(crt) };
    fs.rmSync(key);
    fs.rmSync(crt);
  });

  test('HTTPS: the portable path, same bytes', async (t) => {
    if (!cert) {
      console.log(`# skipped: ${noCert}`);
      t.skip(noCert);
      return;
    }
    resetStats();
    const server = https.createServer(cert, async (req, res) => {
      const n = await receiveBody(req, path.join(dir, 'tls.bin'));
      res.writeHead(201).end(String(n));
    });
    const l = await listen(server);
    closers.push(() => l.close());
    const body = seededBytes(1024 * 1024 + 9, 33);
    const status = await withTimeout(
      new Promise<number>((resolve, reject) => {
        const r = https.request({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, method: 'PUT', path: '/', rejectUnauthorized: false, agent: false, headers: { 'content-length': String(body.length) } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode!));
        });
        r.on('error', reject);
        r.end(body);
      }),
      30_000,
      'https PUT',
    );
    assert.equal(status, 201);
    assert.equal(sha(fs.readFileSync(path.join(dir, 'tls.bin'))), sha(body));
    assert.equal(stats().bytesByPath.splice, 0);
    if (NATIVE) assert.ok((stats().fallbacks.tls ?? 0) >= 1);
    await l.close();
  });

  test('HTTP/2 (h2c): the portable path, same bytes', async () => {
    const server = http2.createServer(async (req, res) => {
      const n = await receiveBody(req, path.join(dir, 'h2.bin'));
      res.writeHead(201).end(String(n));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise<void>((r) => server.close(() => r())));
    const client = http2.connect(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`);
    const body = seededBytes(700_000, 34);
    const st = client.request({ ':method': 'PUT', ':path': '/h2', 'content-length': String(body.length) });
    st.end(body);
    const headers = await once<http2.IncomingHttpHeaders>(st, 'response');
    st.resume();
    await once(st, 'end');
    client.close();
    assert.equal(headers[':status'], 201);
    assert.equal(sha(fs.readFileSync(path.join(dir, 'h2.bin'))), sha(body));
  });
});

describe('PUT uploads (createUploadHandler, zcopy serve --upload)', () => {
  async function uploadSite(maxBytes?: number) {
    const { createUploadHandler, serveStatic } = await import('../src/http/index.js');
    const root = fs.mkdtempSync(path.join(dir, 'site-'));
    fs.mkdirSync(path.join(root, 'sub'));
    const upload = createUploadHandler(root, { maxBytes });
    const serve = serveStatic(root);
    const results: Array<{ status: number; error?: Error }> = [];
    const server = http.createServer((req, res) => {
      if (req.method === 'PUT') void upload(req, res).then((r) => results.push(r));
      else void serve(req, res);
    });
    const l = await listen(server);
    closers.push(() => l.close());
    return { root, l, results };
  }

  test('201 then 204, then the same server serves it, all on one connection', async () => {
    const { root, l } = await uploadSite();
    const a = seededBytes(2 * 1024 * 1024 + 5, 51);
    const b = seededBytes(100_000, 52);
    const sock = l.connect();
    const c = collectResponses(sock, ['PUT', 'PUT', 'GET'], 3);
    sock.write(Buffer.concat([put('/sub/f.bin', a), put('/sub/f.bin', b), Buffer.from('GET /sub/f.bin HTTP/1.1\r\nHost: x\r\n\r\n')]));
    const ex = await c.done;
    sock.destroy();
    assert.deepEqual(
      ex.responses.map((r) => r.status),
      [201, 204, 200],
    );
    assert.equal(sha(ex.responses[2]!.body), sha(b));
    assert.deepEqual(fs.readdirSync(path.join(root, 'sub')), ['f.bin'], 'no temporary file left');
    await l.close();
  });

  test('path escapes and bad targets are refused; nothing is written outside the root', async () => {
    const { root, l } = await uploadSite();
    const outside = fs.mkdtempSync(path.join(dir, 'outside-'));
    fs.symlinkSync(outside, path.join(root, 'link'));
    const cases: Array<[string, number[]]> = [
      ['/../escape.bin', [400, 403]],
      ['/%2e%2e/escape.bin', [400, 403]],
      ['/sub/%252e%252e/escape.bin', [400]],
      ['/.hidden', [404]],
      ['/nodir/x.bin', [409]],
      ['/sub', [409]],
      ['/sub/', [400]],
      ['/link/escape.bin', [403]],
    ];
    for (const [url, want] of cases) {
      const sock = l.connect();
      const c = collectResponses(sock, ['PUT'], 1);
      sock.write(put(url, Buffer.from('data')));
      const ex = await c.done;
      sock.destroy();
      assert.ok(want.includes(ex.responses[0]!.status), `${url}: ${ex.responses[0]!.status}`);
    }
    assert.deepEqual(fs.readdirSync(outside), []);
    assert.equal(fs.existsSync(path.join(dir, 'escape.bin')), false);
    assert.deepEqual(fs.readdirSync(root).sort(), ['link', 'sub']);
    await l.close();
  });

  test('over --max-upload-size: 413, nothing written', async () => {
    const { root, l } = await uploadSite(1000);
    const sock = l.connect();
    const c = collectResponses(sock, ['PUT'], 1);
    sock.write(put('/big.bin', seededBytes(5000, 53)));
    assert.equal((await c.done).responses[0]!.status, 413);
    sock.destroy();
    assert.deepEqual(fs.readdirSync(root).sort(), ['sub']);
    await l.close();
  });

  test('an aborted upload leaves nothing behind', async () => {
    const { root, l, results } = await uploadSite();
    const sock = l.connect();
    sock.on('error', () => {});
    sock.write(`PUT /sub/cut.bin HTTP/1.1\r\nHost: x\r\nContent-Length: ${4 * 1024 * 1024}\r\n\r\n`);
    await new Promise<void>((r) => sock.write(seededBytes(500_000, 54), () => r()));
    sock.destroy();
    for (let i = 0; i < 500 && results.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(results.length, 1, 'the upload ended');
    assert.ok(results[0]!.error, 'with an error');
    assert.deepEqual(fs.readdirSync(path.join(root, 'sub')), []);
    await l.close();
  });

  test('zcopy serve --upload: PUT then GET', async () => {
    const { spawn } = await import('node:child_process');
    const { fileURLToPath } = await import('node:url');
    const root = fs.mkdtempSync(path.join(dir, 'cli-'));
    const main = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
    const child = spawn(process.execPath, [main, 'serve', root, '--upload', '--port', '0', '--max-upload-size', '10m'], { stdio: ['ignore', 'pipe', 'pipe'] });
    closers.push(async () => {
      child.kill('SIGKILL');
    });
    let out = '';
    const url = await withTimeout(
      new Promise<string>((resolve, reject) => {
        child.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /at (http:\/\/\S+\/)/.exec(out);
          if (m) resolve(m[1]!);
        });
        child.once('exit', () => reject(new Error(`serve exited: ${out}`)));
      }),
      30_000,
      'zcopy serve to listen',
    );
    const port = Number(new URL(url).port);
    const body = seededBytes(3 * 1024 * 1024, 55);
    const sock = net.connect(port, '127.0.0.1');
    const c = collectResponses(sock, ['PUT', 'GET', 'PUT'], 3);
    sock.write(Buffer.concat([put('/up.bin', body), Buffer.from('GET /up.bin HTTP/1.1\r\nHost: x\r\n\r\n')]));
    sock.write(`PUT /huge.bin HTTP/1.1\r\nHost: x\r\nContent-Length: ${20 * 1024 * 1024}\r\n\r\n`);
    const ex = await c.done;
    sock.destroy();
    assert.deepEqual(
      ex.responses.map((r) => r.status),
      [201, 200, 413],
    );
    assert.equal(sha(ex.responses[1]!.body), sha(body));
    assert.deepEqual(fs.readdirSync(root), ['up.bin']);
    child.kill('SIGTERM');
    await withTimeout(new Promise((r) => child.once('exit', r)), 15_000, 'serve to stop');
  });
});
