// sendParts: buffers and file ranges to one socket, in order.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import net from 'node:net';
import { execFileSync } from 'node:child_process';
import { FileRegion, partsLength, resetStats, sendParts, stats, type Part } from '../src/index.js';
import { NATIVE, collect, makeFile, rng, settledFds, socketPair, tmpDir, withTimeout } from './helpers.js';

const dir = tmpDir('zcopy-parts-');
let file: { path: string; data: Buffer };
before(() => {
  file = makeFile(dir, 'parts.bin', 3 * 1024 * 1024 + 17, 33);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function expected(parts: Part[]): Buffer {
  return Buffer.concat(
    parts.map((p) => {
      if (p instanceof Uint8Array) return Buffer.from(p);
      if (p instanceof FileRegion) return file.data.subarray(p.position, p.position + p.count);
      return file.data.subarray(p.offset, p.offset + p.length);
    }),
  );
}

for (const transport of ['tcp', 'unix'] as const) {
  test(`${transport}: 60 interleaved buffers and file ranges arrive in list order`, async () => {
    const fd = fs.openSync(file.path, 'r');
    const pair = await socketPair(transport, dir);
    try {
      const r = rng(7);
      const parts: Part[] = [];
      let fileBytes = 0;
      for (let i = 0; i < 60; i++) {
        if (i % 2 === 0) parts.push(Buffer.from(`<part ${i} ${'x'.repeat(Math.floor(r() * 300))}>`));
        else {
          const offset = Math.floor(r() * (file.data.length - 200_000));
          const length = i === 1 ? 0 : Math.floor(r() * 200_000);
          fileBytes += length;
          parts.push({ fd, offset, length });
        }
      }
      const region = new FileRegion(file.path, 5, 100_000);
      parts.push(region, Buffer.from('END'));
      fileBytes += 100_000;
      const want = expected(parts);
      assert.equal(partsLength(parts), want.length);
      const got = collect(pair.client);
      resetStats();
      const sent = await withTimeout(sendParts(pair.server, parts), 30_000, 'sendParts');
      // A write right after resolves goes after everything.
      pair.server.end('!');
      assert.equal(sent, want.length);
      const bytes = await got;
      assert.ok(bytes.equals(Buffer.concat([want, Buffer.from('!')])), 'bytes in order');
      region.release();
      const s = stats();
      if (NATIVE) assert.equal(s.bytesZeroCopy + s.bytesByPath.nativeCopy, fileBytes, 'file bytes on the native path');
      else assert.equal(s.bytesByPath.portable, fileBytes, 'file bytes on the portable path');
    } finally {
      fs.closeSync(fd);
      await pair.close();
    }
  });
}

test('two sendParts awaited one after the other on one socket keep their order', async () => {
  const fd = fs.openSync(file.path, 'r');
  const pair = await socketPair('tcp');
  try {
    const got = collect(pair.client);
    await sendParts(pair.server, [Buffer.from('A'), { fd, offset: 0, length: 1 << 20 }, Buffer.from('B')]);
    await sendParts(pair.server, [{ fd, offset: 7, length: 1000 }, Buffer.from('C')]);
    pair.server.end();
    const bytes = await got;
    assert.ok(bytes.equals(Buffer.concat([Buffer.from('A'), file.data.subarray(0, 1 << 20), Buffer.from('B'), file.data.subarray(7, 1007), Buffer.from('C')])));
  } finally {
    fs.closeSync(fd);
    await pair.close();
  }
});

test('a truncated file part rejects with ZCOPY_ERR_FILE_TRUNCATED, destroys the socket, does not send later parts, leaks no fd', async () => {
  const short = makeFile(dir, 'short.bin', 50_000, 3);
  const before = await settledFds();
  const fd = fs.openSync(short.path, 'r+');
  const pair = await socketPair('tcp');
  try {
    const got: Buffer[] = [];
    pair.client.on('data', (d: Buffer) => got.push(d));
    const closed = new Promise((r) => pair.client.once('close', r));
    pair.client.on('error', () => {});
    const err = (await withTimeout(
      (() => {
        const p = sendParts(pair.server, [Buffer.from('HEAD'), { fd, offset: 0, length: 50_000 }, Buffer.from('NEVER')]);
        // The file shrinks after the call, before its bytes go out.
        fs.ftruncateSync(fd, 10_000);
        return p.then(
          () => null,
          (e: unknown) => e,
        );
      })(),
      10_000,
      'reject',
    )) as Error & { code?: string; partIndex?: number; bytesTransferred?: number };
    assert.ok(err, 'rejected');
    assert.ok(['ZCOPY_ERR_FILE_TRUNCATED', 'ZCOPY_ERR_OUT_OF_RANGE'].includes(String(err.code)), `code ${err.code}`);
    assert.equal(err.partIndex, 1);
    assert.ok(err.bytesTransferred! >= 4 && err.bytesTransferred! <= 4 + 10_000, `bytesTransferred ${err.bytesTransferred}`);
    assert.ok(pair.server.destroyed, 'socket destroyed');
    await withTimeout(closed, 5000, 'peer sees the close');
    const all = Buffer.concat(got);
    assert.ok(!all.includes(Buffer.from('NEVER')), 'later parts not sent');
  } finally {
    fs.closeSync(fd);
    await pair.close();
  }
  assert.equal(await settledFds(), before, 'no fd leaked');
});

test('the peer going away rejects (EPIPE/ECONNRESET/closed) without hanging', async () => {
  const fd = fs.openSync(file.path, 'r');
  const pair = await socketPair('tcp');
  try {
    pair.server.on('error', () => {});
    pair.client.pause();
    const p = sendParts(pair.server, [Buffer.alloc(10), { fd, offset: 0, length: file.data.length }, { fd, offset: 0, length: file.data.length }, Buffer.alloc(10)]);
    const outcome = p.then(() => null, (e: unknown) => e as { code?: string });
    setTimeout(() => pair.client.destroy(), 50);
    const e = await withTimeout(outcome, 10_000, 'rejection');
    assert.ok(e, 'rejected');
    assert.ok(['EPIPE', 'ECONNRESET', 'ZCOPY_ERR_SOCKET_CLOSED', 'ERR_STREAM_DESTROYED'].includes(String(e.code)), `code ${e.code}`);
  } finally {
    fs.closeSync(fd);
    await pair.close();
  }
});

test('abort destroys the socket and rejects with AbortError', async () => {
  const fd = fs.openSync(file.path, 'r');
  const pair = await socketPair('tcp');
  try {
    pair.client.pause();
    const ac = new AbortController();
    const big: Part[] = [Buffer.alloc(10)];
    for (let i = 0; i < 16; i++) big.push({ fd, offset: 0, length: file.data.length });
    const p = sendParts(pair.server, big, { signal: ac.signal });
    const outcome = p.then(() => null, (e: unknown) => e as Error);
    setTimeout(() => ac.abort(), 30);
    const e = await withTimeout(outcome, 10_000, 'abort');
    assert.equal(e?.name, 'AbortError');
    assert.ok(pair.server.destroyed);
  } finally {
    fs.closeSync(fd);
    await pair.close();
  }
});

test('invalid arguments throw synchronously, nothing written', async () => {
  const pair = await socketPair('tcp');
  try {
    assert.throws(() => sendParts(pair.server, 'x' as unknown as Part[]), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => sendParts(pair.server, [Buffer.from('a'), { fd: -1, offset: 0, length: 1 }]), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => sendParts(pair.server, [{ fd: 0, offset: -1, length: 1 }]), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => sendParts(pair.server, [42 as unknown as Part]), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => sendParts(null as unknown as net.Socket, []), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.equal(pair.server.bytesWritten, 0);
    assert.equal(await sendParts(pair.server, []), 0);
  } finally {
    await pair.close();
  }
});

test('TLS: file parts take the portable path (stats fallback tls), bytes intact', async (t) => {
  let key: string;
  let cert: string;
  try {
    const k = path.join(dir, 'k.pem');
    const c = path.join(dir, 'c.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', k, '-out', c, '-days', '1', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
    key = fs.readFileSync(k, 'utf8');
    cert = fs.readFileSync(c, 'utf8');
  } catch {
    t.skip('openssl not available to make a test certificate');
    return;
  }
  const fd = fs.openSync(file.path, 'r');
  const srv = tls.createServer({ key, cert });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  try {
    const accepted = new Promise<tls.TLSSocket>((r) => srv.once('secureConnection', r));
    const client = tls.connect({ port: (srv.address() as net.AddressInfo).port, host: '127.0.0.1', rejectUnauthorized: false });
    const server = await withTimeout(accepted, 10_000, 'tls accept');
    const got = collect(client);
    resetStats();
    const parts: Part[] = [Buffer.from('H'), { fd, offset: 100, length: 500_000 }, Buffer.from('T')];
    await sendParts(server, parts);
    server.end();
    assert.ok((await got).equals(expected(parts)));
    assert.equal(stats().bytesByPath.portable, 500_000);
    assert.equal(stats().bytesZeroCopy, 0);
    client.destroy();
  } finally {
    fs.closeSync(fd);
    srv.close();
  }
});
