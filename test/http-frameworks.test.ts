// serveStatic as Express 5 middleware and the Fastify 5 plugin, with the
// real frameworks and real clients (fetch, raw pipelined sockets).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import express from 'express';
import Fastify, { type FastifyInstance } from 'fastify';
import { capabilities, stats } from '../src/index.js';
import { serveStatic } from '../src/http/index.js';
import { makeFile, sha, tmpDir } from './helpers.js';
import { listen, parseMultipart, rawExchange, req, type Listening } from './http-helpers.js';

const NATIVE = capabilities().native;
const root = tmpDir('zcopy-fw-');
let big: { path: string; data: Buffer };
const closers: Array<() => Promise<void>> = [];

before(() => {
  big = makeFile(root, 'big.bin', 2 * 1024 * 1024 + 3, 21);
  fs.writeFileSync(path.join(root, 'a.txt'), 'hello\n');
  fs.mkdirSync(path.join(root, 'sub'));
  fs.writeFileSync(path.join(root, 'sub', 'index.html'), '<p>sub</p>');
  fs.writeFileSync(path.join(root, '.secret'), 'nope');
});

after(async () => {
  for (const c of closers) await c();
  fs.rmSync(root, { recursive: true, force: true });
});

describe('Express 5', () => {
  let l: Listening;
  before(async () => {
    const app = express();
    app.use('/static', serveStatic(root, { maxAge: '1d' }));
    app.get('/static/dynamic', (_req, res) => {
      res.send('from a route');
    });
    app.use((_req, res) => {
      res.status(404).send('express 404');
    });
    l = await listen(http.createServer(app));
    closers.push(() => l.close());
  });

  it('serves files under the mount path, zero-copy for large bodies', async () => {
    const b0 = stats();
    const r = await fetch(`${l.url}/static/big.bin`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('cache-control'), 'public, max-age=86400');
    assert.equal(sha(Buffer.from(await r.arrayBuffer())), sha(big.data));
    const b1 = stats();
    if (NATIVE) assert.equal(b1.bytesByPath.portable - b0.bytesByPath.portable, 0);
    else assert.equal(b1.bytesByPath.portable - b0.bytesByPath.portable, big.data.length);
  });

  it('misses, dotfiles and other methods fall through to later handlers', async () => {
    assert.equal(await (await fetch(`${l.url}/static/dynamic`)).text(), 'from a route');
    const miss = await fetch(`${l.url}/static/missing.txt`);
    assert.equal(miss.status, 404);
    assert.equal(await miss.text(), 'express 404');
    assert.equal(await (await fetch(`${l.url}/static/.secret`)).text(), 'express 404');
    const post = await fetch(`${l.url}/static/a.txt`, { method: 'POST' });
    assert.equal(await post.text(), 'express 404');
  });

  it('directory redirect uses the full original URL', async () => {
    const r = await fetch(`${l.url}/static/sub?q=1`, { redirect: 'manual' });
    assert.equal(r.status, 301);
    assert.equal(r.headers.get('location'), '/static/sub/?q=1');
    assert.equal(await (await fetch(`${l.url}/static/sub/`)).text(), '<p>sub</p>');
  });

  it('ranges, multipart, conditionals and pipelining through Express', async () => {
    const etag = (await fetch(`${l.url}/static/a.txt`, { method: 'HEAD' })).headers.get('etag')!;
    const x = await rawExchange(
      () => l.connect(),
      req('GET', '/static/big.bin', { Range: 'bytes=0-99,-1000000' }) +
        req('GET', '/static/a.txt', { 'If-None-Match': etag }) +
        req('HEAD', '/static/big.bin') +
        req('GET', '/static/big.bin', { Range: 'bytes=1000-' }) +
        req('GET', '/static/a.txt'),
      ['GET', 'GET', 'HEAD', 'GET', 'GET'],
      5,
    );
    assert.deepEqual(x.responses.map((r) => r.status), [206, 304, 200, 206, 200]);
    const parts = parseMultipart(x.responses[0]!.body, x.responses[0]!.headers['content-type']!);
    assert.equal(sha(parts[1]!.body), sha(big.data.subarray(big.data.length - 1000000)));
    assert.equal(sha(x.responses[3]!.body), sha(big.data.subarray(1000)));
    assert.equal(x.responses[4]!.body.toString(), 'hello\n');
    assert.equal(x.rest.length, 0);
  });
});

describe('Fastify 5', () => {
  let app: FastifyInstance;
  let base: string;
  before(async () => {
    app = Fastify();
    await app.register(import('../src/http/fastify.js'), { root, prefix: '/static/' });
    app.get('/hello', async () => ({ hello: 'world' }));
    app.setNotFoundHandler((_req, reply) => {
      void reply.code(404).send({ custom: 'not found' });
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const addr = app.server.address() as import('node:net').AddressInfo;
    base = `http://127.0.0.1:${addr.port}`;
    closers.push(() => app.close());
  });

  it('serves files under the prefix; big body by hash; HEAD', async () => {
    const b0 = stats();
    const r = await fetch(`${base}/static/big.bin`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-length'), String(big.data.length));
    assert.equal(sha(Buffer.from(await r.arrayBuffer())), sha(big.data));
    const b1 = stats();
    if (NATIVE) assert.equal(b1.bytesByPath.portable - b0.bytesByPath.portable, 0);
    const h = await fetch(`${base}/static/a.txt`, { method: 'HEAD' });
    assert.equal(h.status, 200);
    assert.equal(h.headers.get('content-length'), '6');
    assert.equal((await h.arrayBuffer()).byteLength, 0);
  });

  it("misses and dotfiles go to Fastify's not-found handler; other routes unaffected", async () => {
    const miss = await fetch(`${base}/static/nope.txt`);
    assert.equal(miss.status, 404);
    assert.deepEqual(await miss.json(), { custom: 'not found' });
    assert.deepEqual(await (await fetch(`${base}/static/.secret`)).json(), { custom: 'not found' });
    assert.deepEqual(await (await fetch(`${base}/hello`)).json(), { hello: 'world' });
  });

  it('prefix root and directories redirect; index.html served', async () => {
    const r1 = await fetch(`${base}/static`, { redirect: 'manual' });
    assert.equal(r1.status, 301);
    assert.equal(r1.headers.get('location'), '/static/');
    const r2 = await fetch(`${base}/static/sub`, { redirect: 'manual' });
    assert.equal(r2.headers.get('location'), '/static/sub/');
    assert.equal(await (await fetch(`${base}/static/sub/`)).text(), '<p>sub</p>');
  });

  it('ranges, 416, 304 and pipelining through Fastify', async () => {
    const etag = (await fetch(`${base}/static/a.txt`)).headers.get('etag')!;
    const port = new URL(base).port;
    const net = await import('node:net');
    const x = await rawExchange(
      () => net.connect(Number(port), '127.0.0.1'),
      req('GET', '/static/big.bin', { Range: 'bytes=0-1048575' }) +
        req('GET', '/static/a.txt', { 'If-None-Match': etag }) +
        req('GET', '/static/a.txt', { Range: 'bytes=100-' }) +
        req('GET', '/static/big.bin', { Range: 'bytes=0-0,2-2' }) +
        req('GET', '/hello'),
      ['GET', 'GET', 'GET', 'GET', 'GET'],
      5,
    );
    assert.deepEqual(x.responses.map((r) => r.status), [206, 304, 416, 206, 200]);
    assert.equal(sha(x.responses[0]!.body), sha(big.data.subarray(0, 1048576)));
    assert.equal(x.responses[2]!.headers['content-range'], 'bytes */6');
    assert.equal(parseMultipart(x.responses[3]!.body, x.responses[3]!.headers['content-type']!).length, 2);
    assert.equal(x.responses[4]!.body.toString(), '{"hello":"world"}');
  });

  it('plugin metadata replaces fastify-plugin; registers inside an encapsulated prefix', async () => {
    const mod = await import('../src/http/fastify.js');
    const plugin = mod.default as unknown as Record<symbol, unknown>;
    assert.equal(plugin[Symbol.for('skip-override')], true);
    assert.equal(plugin[Symbol.for('fastify.display-name')], 'zcopy');
    const app2 = Fastify();
    await app2.register(
      async (child) => {
        await child.register(mod.default, { root, prefix: '/files' });
      },
      { prefix: '/v1' },
    );
    await app2.ready();
    const r = await app2.inject({ method: 'GET', url: '/v1/files/a.txt' });
    assert.equal(r.statusCode, 200);
    assert.equal(r.body, 'hello\n');
    // inject() has no kernel socket: the body goes through the response.
    const r2 = await app2.inject({ method: 'GET', url: '/v1/files/big.bin', headers: { range: 'bytes=0-99,-1048576' } });
    assert.equal(r2.statusCode, 206);
    const parts = parseMultipart(r2.rawPayload, String(r2.headers['content-type']));
    assert.equal(sha(parts[1]!.body), sha(big.data.subarray(big.data.length - 1048576)));
    await app2.close();
  });
});
