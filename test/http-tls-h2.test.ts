// HTTPS (https.createServer: the portable path inside sendFile, same
// semantics) and HTTP/2 (compat API: bodies streamed through the response, no respondWithFD).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { capabilities, stats } from '../src/index.js';
import { serveStatic, type ServeResult } from '../src/http/index.js';
import { makeFile, openFds, sha, tmpDir, withTimeout } from './helpers.js';
import { collectResponses, parseMultipart, req, until } from './http-helpers.js';

const NATIVE = capabilities().native;
const root = tmpDir('zcopy-tls-');
let big: { path: string; data: Buffer };
let cert: { key: Buffer; cert: Buffer } | undefined;
let noCert = '';
const closers: Array<() => Promise<void>> = [];

before(() => {
  big = makeFile(root, 'big.bin', 3 * 1024 * 1024 + 5, 31);
  fs.writeFileSync(path.join(root, 'a.txt'), 'hello tls\n');
  const key = path.join(root, 'key.pem');
  const crt = path.join(root, 'cert.pem');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', crt, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    noCert = `openssl could not make a self-signed certificate: ${r.error?.message ?? r.stderr.trim().split('\n')[0]}`;
    return;
  }
  cert = { key: fs.readFileSync(key), cert: fs.readFileSync(crt) };
  // The key material is not a public file.
  fs.rmSync(key);
  fs.rmSync(crt);
});

after(async () => {
  for (const c of closers) await c();
  fs.rmSync(root, { recursive: true, force: true });
});

function h2request(client: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: Buffer }> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const s = client.request(headers);
      const chunks: Buffer[] = [];
      let h: http2.IncomingHttpHeaders = {};
      s.on('response', (hh) => {
        h = hh;
      });
      s.on('data', (d: Buffer) => chunks.push(d));
      s.on('end', () => resolve({ status: Number(h[':status']), headers: h, body: Buffer.concat(chunks) }));
      s.on('error', reject);
      s.end();
    }),
    30_000,
    `h2 ${String(headers[':path'])}`,
  );
}

describe('HTTPS', () => {
  let port = 0;
  const results: Array<Promise<ServeResult>> = [];
  before(async () => {
    if (!cert) return;
    const handler = serveStatic(root);
    const server = https.createServer(cert, (rq, rs) => {
      results.push(handler(rq, rs));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as import('node:net').AddressInfo).port;
    closers.push(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });
  });

  it('GET a large file through the portable path, bytes by hash', async (t) => {
    if (!cert) return t.skip(noCert);
    const tls0 = stats().fallbacks.tls ?? 0;
    const body = await withTimeout(
      new Promise<Buffer>((resolve, reject) => {
        https
          .get({ host: '127.0.0.1', port, path: '/big.bin', ca: cert!.cert, agent: false }, (res) => {
            assert.equal(res.statusCode, 200);
            assert.equal(res.headers['content-length'], String(big.data.length));
            const c: Buffer[] = [];
            res.on('data', (d: Buffer) => c.push(d));
            res.on('end', () => resolve(Buffer.concat(c)));
          })
          .on('error', reject);
      }),
      30_000,
      'https GET',
    );
    assert.equal(sha(body), sha(big.data));
    const r = await results[results.length - 1]!;
    assert.equal(r.bytesZeroCopy, 0, 'no zero copy over TLS');
    if (NATIVE) assert.ok((stats().fallbacks.tls ?? 0) > tls0, 'the core counted a TLS fallback');
  });

  it('pipelined requests over TLS: ranges, multipart, HEAD, keep-alive', async (t) => {
    if (!cert) return t.skip(noCert);
    const sock = tls.connect({ host: '127.0.0.1', port, ca: cert.cert, servername: 'localhost' });
    await withTimeout(new Promise((r) => sock.once('secureConnect', r)), 10_000, 'TLS handshake');
    const methods = ['GET', 'GET', 'HEAD', 'GET', 'GET'];
    const c = collectResponses(sock as unknown as import('node:net').Socket, methods, 5);
    sock.write(
      req('GET', '/big.bin', { Range: 'bytes=100-2000000' }) +
        req('GET', '/big.bin', { Range: 'bytes=0-9,-1048576' }) +
        req('HEAD', '/big.bin') +
        req('GET', '/a.txt') +
        req('GET', '/big.bin'),
    );
    const x = await c.done;
    sock.destroy();
    assert.deepEqual(x.responses.map((r) => r.status), [206, 206, 200, 200, 200]);
    assert.equal(sha(x.responses[0]!.body), sha(big.data.subarray(100, 2000001)));
    const parts = parseMultipart(x.responses[1]!.body, x.responses[1]!.headers['content-type']!);
    assert.equal(sha(parts[1]!.body), sha(big.data.subarray(big.data.length - 1048576)));
    assert.equal(x.responses[3]!.body.toString(), 'hello tls\n');
    assert.equal(sha(x.responses[4]!.body), sha(big.data));
  });
});

describe('HTTP/2 (compat API)', () => {
  for (const secure of [true, false]) {
    const name = secure ? 'h2 over TLS' : 'h2c';
    let url = '';
    let client: http2.ClientHttp2Session;
    const results: Array<Promise<ServeResult>> = [];
    before(async () => {
      if (secure && !cert) return;
      const handler = serveStatic(root);
      const onRequest = (rq: http2.Http2ServerRequest, rs: http2.Http2ServerResponse): void => {
        results.push(handler(rq, rs));
      };
      const server = secure ? http2.createSecureServer({ ...cert!, allowHTTP1: true }, onRequest) : http2.createServer(onRequest);
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const port = (server.address() as import('node:net').AddressInfo).port;
      url = `${secure ? 'https' : 'http'}://127.0.0.1:${port}`;
      client = http2.connect(url, secure ? { ca: cert!.cert } : {});
      closers.push(async () => {
        client.close();
        await new Promise((r) => server.close(r));
      });
    });

    it(`${name}: GET (streamed), HEAD, single range, multipart, 304, 404, 405`, async (t) => {
      if (secure && !cert) return t.skip(noCert);
      const full = await h2request(client, { ':path': '/big.bin' });
      assert.equal(full.status, 200);
      assert.equal(full.headers['content-length'], String(big.data.length));
      assert.equal(sha(full.body), sha(big.data));
      const etag = String(full.headers['etag']);
      const r0 = await results[results.length - 1]!;
      assert.equal(r0.bytes, big.data.length);
      assert.equal(r0.error, undefined);

      const head = await h2request(client, { ':path': '/big.bin', ':method': 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers['content-length'], String(big.data.length));
      assert.equal(head.body.length, 0);

      const one = await h2request(client, { ':path': '/big.bin', range: 'bytes=1000-1500000' });
      assert.equal(one.status, 206);
      assert.equal(one.headers['content-range'], `bytes 1000-1500000/${big.data.length}`);
      assert.equal(sha(one.body), sha(big.data.subarray(1000, 1500001)));

      const multi = await h2request(client, { ':path': '/big.bin', range: 'bytes=0-99,2000000-2999999' });
      assert.equal(multi.status, 206);
      assert.equal(Number(multi.headers['content-length']), multi.body.length);
      const parts = parseMultipart(multi.body, String(multi.headers['content-type']));
      assert.equal(sha(parts[1]!.body), sha(big.data.subarray(2000000, 3000000)));

      assert.equal((await h2request(client, { ':path': '/big.bin', 'if-none-match': etag })).status, 304);
      assert.equal((await h2request(client, { ':path': '/a.txt' })).body.toString(), 'hello tls\n');
      assert.equal((await h2request(client, { ':path': '/nope' })).status, 404);
      const post = await h2request(client, { ':path': '/a.txt', ':method': 'POST' });
      assert.equal(post.status, 405);
      assert.equal(post.headers['allow'], 'GET, HEAD');
    });

    it(`${name}: a stream reset mid-body closes the file (fd count)`, async (t) => {
      if (secure && !cert) return t.skip(noCert);
      const file = makeFile(root, 'h2-abort.bin', 32 * 1024 * 1024, 33);
      await h2request(client, { ':path': '/a.txt' });
      const base = openFds();
      const s = client.request({ ':path': '/h2-abort.bin' });
      let got = 0;
      s.on('data', (d: Buffer) => {
        got += d.length;
      });
      s.on('error', () => {});
      await until(() => got > 100_000, 10_000, 'body bytes');
      s.close(http2.constants.NGHTTP2_CANCEL);
      const r = await withTimeout(results[results.length - 1]!, 10_000, 'serve result');
      assert.ok(r.error, 'the reset is reported');
      await until(() => openFds() <= base, 10_000, `fd count back to ${base}`);
      fs.rmSync(file.path);
    });
  }
});
