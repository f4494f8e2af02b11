// sendFile: bytes, paths, ordering, errors and resources. The whole file
// runs twice (npm test): with the addon, and with ZCOPY_FORCE_FALLBACK=1.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { sendFile, stats, resetStats, capabilities } from '../src/index.js';
import { _syscalls } from '../src/internal/transfer.js';
import { native } from '../src/native.js';
import { NATIVE, TRANSPORTS, collect, hashStream, makeFile, once, settledFds, seededBytes, sha, socketPair, tmpDir, withTimeout } from './helpers.js';

const dir = tmpDir();
let small: { path: string; data: Buffer };
let medium: { path: string; data: Buffer };

before(() => {
  small = makeFile(dir, 'small.bin', 100_000, 7);
  medium = makeFile(dir, 'medium.bin', 24 * 1024 * 1024 + 123, 11);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const MECHS = NATIVE ? (['auto', 'sendfile', 'splice', 'copy'] as const) : (['auto'] as const);

describe(`sendFile bytes (${NATIVE ? 'native' : 'portable'})`, () => {
  for (const transport of TRANSPORTS) {
    for (const mechanism of MECHS) {
      test(`${transport} / ${mechanism}: whole file arrives intact`, async () => {
        resetStats();
        const pair = await socketPair(transport, dir);
        try {
          const got = hashStream(pair.client);
          const n = await sendFile(pair.server, medium.path, { mechanism });
          pair.server.end();
          assert.equal(n, medium.data.length);
          const r = await got;
          assert.equal(r.bytes, medium.data.length);
          assert.equal(r.sha, sha(medium.data));
          const s = stats();
          if (NATIVE) {
            // The native path really is taken: no portable bytes at all.
            assert.equal(s.bytesByPath.portable, 0);
            const expected = mechanism === 'copy' ? 'nativeCopy' : mechanism === 'auto' ? undefined : mechanism;
            if (expected) assert.equal(s.bytesByPath[expected], medium.data.length, `bytes by ${expected}`);
            if (mechanism === 'sendfile' || mechanism === 'splice') assert.equal(s.bytesZeroCopy, medium.data.length);
          } else {
            assert.equal(s.bytesByPath.portable, medium.data.length);
            assert.equal(s.bytesZeroCopy, 0);
            assert.equal(s.fallbacks.forced, 1);
          }
        } finally {
          await pair.close();
        }
      });
    }

    test(`${transport}: ranges (offset/length) including empty and last byte`, async () => {
      const cases: Array<[number, number | undefined]> = [
        [0, 0],
        [0, 1],
        [1, 4095],
        [4095, 4097],
        [medium.data.length - 1, 1],
        [medium.data.length, 0],
        [3 * 1024 * 1024 + 17, undefined],
        [12345, 5 * 1024 * 1024 + 1],
      ];
      for (const [offset, length] of cases) {
        const pair = await socketPair(transport, dir);
        try {
          const got = collect(pair.client);
          const n = await sendFile(pair.server, medium.path, { offset, length });
          pair.server.end();
          const expect = medium.data.subarray(offset, length === undefined ? undefined : offset + length);
          assert.equal(n, expect.length, `count for [${offset}, +${length})`);
          assert.ok((await got).equals(expect), `bytes for [${offset}, +${length})`);
        } finally {
          await pair.close();
        }
      }
    });
  }

  test('fd and FileHandle sources stay open; a path source is closed', async () => {
    const fd = fs.openSync(small.path, 'r');
    const fh = await fs.promises.open(small.path, 'r');
    const before = await settledFds();
    for (const src of [fd, fh, small.path]) {
      const pair = await socketPair('tcp');
      const got = collect(pair.client);
      await sendFile(pair.server, src, { offset: 10 });
      pair.server.end();
      assert.ok((await got).equals(small.data.subarray(10)));
      await pair.close();
    }
    assert.equal(fs.fstatSync(fd).size, small.data.length, 'caller fd still open');
    assert.equal((await fh.stat()).size, small.data.length, 'caller FileHandle still open');
    assert.equal(await settledFds(), before);
    fs.closeSync(fd);
    await fh.close();
  });

  test('a raw socket fd target', async () => {
    // Without the addon a raw fd goes through fs.write on the threadpool.
    const pair = await socketPair('tcp');
    try {
      const fd = (pair.server as unknown as { _handle: { fd: number } })._handle.fd;
      const got = collect(pair.client);
      const n = await sendFile(fd, small.path);
      pair.server.end();
      assert.equal(n, small.data.length);
      assert.ok((await got).equals(small.data));
    } finally {
      await pair.close();
    }
  });
});

describe('ordering around the transfer', () => {
  for (const transport of TRANSPORTS) {
    test(`${transport}: writes before, during and after keep their order under EAGAIN`, async () => {
      const pair = await socketPair(transport, dir);
      try {
        // The reader stalls, so the big "before" write stays buffered in Node
        // and the file transfer meets a full socket (EAGAIN) for real.
        pair.client.pause();
        const before = Buffer.alloc(8 * 1024 * 1024, 0x61);
        const during = Buffer.from('--during--');
        const after = Buffer.from('--after--');
        pair.server.write(before);
        assert.ok(pair.server.writableLength > 0, 'the before-write is still pending');
        const p = sendFile(pair.server, medium.path);
        pair.server.write(during);
        const got = collect(pair.client);
        setTimeout(() => pair.client.resume(), 50);
        const n = await withTimeout(p, 60_000, 'sendFile');
        pair.server.write(after);
        pair.server.end();
        const all = await got;
        assert.equal(n, medium.data.length);
        assert.equal(all.length, before.length + medium.data.length + during.length + after.length);
        assert.ok(all.subarray(0, before.length).equals(before), 'before-bytes first');
        assert.equal(sha(all.subarray(before.length, before.length + medium.data.length)), sha(medium.data), 'file bytes next');
        assert.equal(all.subarray(before.length + medium.data.length).toString(), '--during----after--');
        if (NATIVE) assert.ok(stats().waits > 0, 'the transfer waited for writability');
      } finally {
        await pair.close();
      }
    });
  }

  test('writes made during a transfer on an idle socket wait (cork path)', async () => {
    const pair = await socketPair('tcp');
    try {
      const got = collect(pair.client);
      const p = sendFile(pair.server, small.path);
      pair.server.write('tail');
      await p;
      pair.server.end();
      const all = await got;
      assert.ok(all.subarray(0, small.data.length).equals(small.data));
      assert.equal(all.subarray(small.data.length).toString(), 'tail');
    } finally {
      await pair.close();
    }
  });

  test('two transfers on one socket, back to back, stay in order', async () => {
    const pair = await socketPair('unix', dir);
    try {
      const got = collect(pair.client);
      const a = sendFile(pair.server, small.path);
      const b = sendFile(pair.server, small.path, { offset: 1 });
      assert.deepEqual(await Promise.all([a, b]), [small.data.length, small.data.length - 1]);
      pair.server.end();
      const all = await got;
      assert.ok(all.equals(Buffer.concat([small.data, small.data.subarray(1)])));
    } finally {
      await pair.close();
    }
  });
});

describe('stalls, errors and resources', () => {
  test('a stalled reader costs ~0 CPU (no busy loop)', async () => {
    const pair = await socketPair('tcp');
    try {
      pair.client.pause();
      const p = sendFile(pair.server, medium.path);
      p.catch(() => {});
      // Let the socket buffers fill, then measure CPU while nothing can move.
      await new Promise((r) => setTimeout(r, 200));
      const c0 = process.cpuUsage();
      await new Promise((r) => setTimeout(r, 500));
      const c1 = process.cpuUsage(c0);
      const cpuMs = (c1.user + c1.system) / 1000;
      assert.ok(cpuMs < 100, `CPU while stalled: ${cpuMs.toFixed(1)} ms in 500 ms`);
      const got = hashStream(pair.client);
      pair.client.resume();
      await p;
      pair.server.end();
      assert.equal((await got).sha, sha(medium.data));
    } finally {
      await pair.close();
    }
  });

  test('file truncated mid-transfer rejects ZCOPY_ERR_FILE_TRUNCATED, never resolves short', async () => {
    const f = makeFile(dir, 'shrinks.bin', 16 * 1024 * 1024, 3);
    const pair = await socketPair('tcp');
    try {
      pair.client.pause();
      const p = sendFile(pair.server, f.path);
      p.catch(() => {});
      await new Promise((r) => setTimeout(r, 100));
      fs.truncateSync(f.path, 1024 * 1024);
      pair.client.resume();
      pair.client.on('data', () => {});
      const err = await withTimeout(p.then(() => null, (e: unknown) => e), 30_000, 'rejection');
      assert.ok(err, 'must reject');
      assert.equal((err as { code: string }).code, 'ZCOPY_ERR_FILE_TRUNCATED');
      const sent = (err as { bytesTransferred: number }).bytesTransferred;
      assert.ok(sent >= 0 && sent <= 16 * 1024 * 1024);
    } finally {
      await pair.close();
    }
  });

  for (const transport of TRANSPORTS) {
    test(`${transport}: peer reset rejects with a Node-style system error`, async () => {
      const pair = await socketPair(transport, dir);
      try {
        pair.client.once('data', () => {
          if (transport === 'tcp') pair.client.resetAndDestroy();
          else pair.client.destroy();
        });
        pair.server.on('error', () => {});
        const err = (await withTimeout(sendFile(pair.server, medium.path).then(() => null, (e: unknown) => e), 30_000, 'rejection')) as NodeJS.ErrnoException & { bytesTransferred: number };
        assert.ok(err, 'must reject');
        assert.ok(['EPIPE', 'ECONNRESET', 'ZCOPY_ERR_SOCKET_CLOSED'].includes(err.code!), `code ${err.code}`);
        if (err.code !== 'ZCOPY_ERR_SOCKET_CLOSED') {
          assert.equal(typeof err.errno, 'number');
          assert.ok(err.errno! < 0);
          assert.ok(typeof err.syscall === 'string' && err.syscall.length > 0);
          assert.match(err.message, new RegExp(`^${err.code}: `));
        }
        assert.equal(typeof err.bytesTransferred, 'number');
      } finally {
        await pair.close();
      }
    });
  }

  test('socket destroyed mid-transfer: prompt rejection, connection really closes, no fd leak', async () => {
    // Warm up lazily opened fds (threadpool, etc.) before counting.
    const warm = await socketPair('tcp');
    const wg = collect(warm.client);
    await sendFile(warm.server, small.path);
    warm.server.end();
    await wg;
    await warm.close();
    const before = await settledFds();

    const pair = await socketPair('tcp');
    pair.client.pause();
    const p = sendFile(pair.server, medium.path);
    const outcome = p.then(() => null, (e: unknown) => e);
    await new Promise((r) => setTimeout(r, 100));
    const clientEnded = new Promise<void>((resolve) => {
      pair.client.once('end', resolve);
      pair.client.once('close', () => resolve());
      pair.client.once('error', () => resolve());
    });
    pair.server.destroy();
    const err = (await withTimeout(outcome, 5_000, 'rejection after destroy')) as { code: string };
    assert.equal(err?.code, 'ZCOPY_ERR_SOCKET_CLOSED');
    // The dup no longer holds the connection: the peer sees it close.
    pair.client.resume();
    await withTimeout(clientEnded, 5_000, 'peer sees the close');
    await pair.close();
    assert.equal(await settledFds(), before, 'fds before/after');
  });

  test('signal abort rejects with AbortError promptly and leaks nothing', async () => {
    const before = await settledFds();
    const pair = await socketPair('unix', dir);
    pair.client.pause();
    const ac = new AbortController();
    const p = sendFile(pair.server, medium.path, { signal: ac.signal });
    const outcome = p.then(() => null, (e: unknown) => e);
    await new Promise((r) => setTimeout(r, 50));
    ac.abort();
    const err = (await withTimeout(outcome, 5_000, 'abort rejection')) as Error & { code: string };
    assert.equal(err?.name, 'AbortError');
    assert.equal(err.code, 'ABORT_ERR');
    await pair.close();
    assert.equal(await settledFds(), before);
    // Already aborted: rejects before any byte.
    const ac2 = new AbortController();
    ac2.abort();
    const pair2 = await socketPair('tcp');
    await assert.rejects(sendFile(pair2.server, small.path, { signal: ac2.signal }), { name: 'AbortError' });
    await pair2.close();
  });

  test('bad arguments throw synchronously with stable codes', async () => {
    const pair = await socketPair('tcp');
    try {
      for (const offset of [-1, 1.5, NaN, Infinity, 2 ** 53]) {
        assert.throws(() => sendFile(pair.server, small.path, { offset }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
      }
      assert.throws(() => sendFile(pair.server, small.path, { length: -5 }), { code: 'ERR_OUT_OF_RANGE' });
      assert.throws(() => sendFile(pair.server, small.path, { offset: '1' as unknown as number }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
      assert.throws(() => sendFile(pair.server, small.path, { mechanism: 'magic' as never }), { code: 'ERR_INVALID_ARG_VALUE' });
      assert.throws(() => sendFile(pair.server, small.path, { chunkSize: 10 }), { code: 'ERR_OUT_OF_RANGE' });
      assert.throws(() => sendFile({} as never, small.path), { code: 'ERR_INVALID_ARG_TYPE' });
      assert.throws(() => sendFile(-1, small.path), { code: 'ERR_OUT_OF_RANGE' });
      assert.throws(() => sendFile(pair.server, {} as never), { code: 'ERR_INVALID_ARG_TYPE' });
      assert.throws(() => sendFile(pair.server, 'a\u0000b'), { code: 'ERR_INVALID_ARG_VALUE' });
      const srv = net.createServer();
      assert.throws(() => sendFile(srv as never, small.path), { code: 'ERR_INVALID_ARG_TYPE' });
      assert.throws(() => sendFile(pair.server, small.path, { signal: {} as never }), { code: 'ERR_INVALID_ARG_TYPE' });

      // Run-time problems reject before any byte moves.
      await assert.rejects(sendFile(pair.server, dir), { code: 'EISDIR' });
      await assert.rejects(sendFile(pair.server, path.join(dir, 'missing')), { code: 'ENOENT' });
      await assert.rejects(sendFile(pair.server, small.path, { length: small.data.length + 1 }), { code: 'ZCOPY_ERR_OUT_OF_RANGE' });
      await assert.rejects(sendFile(pair.server, small.path, { offset: small.data.length + 1 }), { code: 'ZCOPY_ERR_OUT_OF_RANGE' });
      const fd = fs.openSync(small.path, 'r');
      fs.closeSync(fd);
      await assert.rejects(sendFile(pair.server, fd), { code: 'EBADF' });
      assert.equal(pair.server.bytesWritten, 0, 'nothing was written');
    } finally {
      await pair.close();
    }
  });

  test('raw fd targets: a file, a listening socket, an unconnected socket are refused', async (t) => {
    if (!NATIVE) return t.skip('raw fd target checks use the addon (portable path writes with fs.write)');
    const fileFd = fs.openSync(path.join(dir, 'not-a-socket'), 'w');
    await assert.rejects(sendFile(fileFd, small.path), { code: 'ZCOPY_ERR_INVALID_TARGET' });
    fs.closeSync(fileFd);
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const lfd = (srv as unknown as { _handle: { fd: number } })._handle.fd;
    await assert.rejects(sendFile(lfd, small.path), { code: 'ZCOPY_ERR_INVALID_TARGET' });
    srv.close();
  });

  test('a destroyed or ended socket is refused before any byte', async () => {
    const pair = await socketPair('tcp');
    pair.server.destroy();
    await assert.rejects(sendFile(pair.server, small.path), { code: 'ZCOPY_ERR_SOCKET_CLOSED' });
    await pair.close();
  });

  test('a socket still connecting is waited for', async () => {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const accepted = once<net.Socket>(srv, 'connection');
    const client = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
    assert.equal(client.connecting, true);
    const p = sendFile(client, small.path);
    const s = await accepted;
    const got = collect(s);
    await p;
    client.end();
    assert.ok((await got).equals(small.data));
    client.destroy();
    srv.close();
  });
});

describe('fallback and paths', () => {
  test('sendfile EINVAL mid-stream falls back to a copy from the current offset', async (t) => {
    if (!NATIVE) return t.skip('injects errors into the native sendfile path');
    resetStats();
    const real = _syscalls.sendfile;
    let calls = 0;
    _syscalls.sendfile = (o, i, off, n) => (++calls === 3 ? -22 : real(o, i, off, n));
    const pair = await socketPair('tcp');
    try {
      const got = hashStream(pair.client);
      const n = await sendFile(pair.server, medium.path, { mechanism: 'sendfile' });
      pair.server.end();
      assert.equal(n, medium.data.length);
      assert.equal((await got).sha, sha(medium.data));
      const s = stats();
      assert.equal(s.fallbacks['sendfile-EINVAL'], 1);
      assert.ok(s.bytesByPath.sendfile > 0 && s.bytesByPath.nativeCopy > 0);
      assert.equal(s.bytesByPath.sendfile + s.bytesByPath.nativeCopy, medium.data.length);
    } finally {
      _syscalls.sendfile = real;
      await pair.close();
    }
  });

  test('ENOSYS is latched process-wide (checked in a child process)', (t) => {
    if (!NATIVE) return t.skip('latching concerns the native path');
    // A child, so the latch does not leak into the rest of this suite.
    const child = `
      import net from 'node:net';
      import { sendFile, capabilities, stats } from './src/index.js';
      import { _syscalls } from './src/internal/transfer.js';
      _syscalls.sendfile = () => -38;
      const srv = net.createServer(async (s) => {
        await sendFile(s, process.argv[1], { mechanism: 'sendfile' });
        await sendFile(s, process.argv[1], { mechanism: 'sendfile' });
        s.end(); srv.close();
      });
      srv.listen(0, '127.0.0.1', () => {
        const c = net.connect(srv.address().port, '127.0.0.1'); let n = 0;
        c.on('data', (d) => n += d.length);
        c.on('end', () => console.log(JSON.stringify({ n, caps: capabilities(), s: stats() })));
      });`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', child, small.path], { cwd: path.resolve(import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname), '..'), encoding: 'utf8', timeout: 30_000 });
    const r = JSON.parse(out) as { n: number; caps: { sendfile: boolean }; s: { fallbacks: Record<string, number>; transfers: Record<string, number> } };
    assert.equal(r.n, 2 * small.data.length);
    assert.equal(r.caps.sendfile, false);
    assert.equal(r.s.fallbacks['sendfile-ENOSYS'], 1, 'only the first transfer tried sendfile');
    assert.equal(r.s.transfers.splice, 1, 'the second went straight to splice');
  });

  test('TLS sockets take the portable path with reason "tls"', async (t) => {
    const openssl = spawnSync('openssl', ['version']);
    if (openssl.status !== 0) return t.skip('openssl is not installed: cannot make a test certificate');
    const tls = await import('node:tls');
    const key = path.join(dir, 'key.pem');
    const cert = path.join(dir, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' });
    resetStats();
    const srv = tls.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, async (s) => {
      await sendFile(s, medium.path);
      s.end();
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const c = tls.connect({ port: (srv.address() as net.AddressInfo).port, host: '127.0.0.1', rejectUnauthorized: false });
    const got = await hashStream(c as unknown as net.Socket);
    assert.equal(got.sha, sha(medium.data));
    assert.equal(stats().fallbacks.tls ?? stats().fallbacks.forced, 1);
    assert.equal(stats().bytesByPath.portable, medium.data.length);
    c.destroy();
    srv.close();
  });

  test('non-regular files (a FIFO) stream through the portable path until EOF', async () => {
    const fifo = path.join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const payload = seededBytes(300_000, 5);
    // The writer is a child so the FIFO's open() does not block this loop.
    const src = path.join(dir, 'fifo-payload.bin');
    fs.writeFileSync(src, payload);
    const writer = `require('fs').writeFileSync(process.argv[1], require('fs').readFileSync(process.argv[2]))`;
    const child = (await import('node:child_process')).spawn(process.execPath, ['-e', writer, fifo, src], { stdio: 'ignore' });
    const pair = await socketPair('tcp');
    try {
      const got = collect(pair.client);
      resetStats();
      const n = await withTimeout(sendFile(pair.server, fifo), 20_000, 'fifo transfer');
      pair.server.end();
      assert.equal(n, payload.length);
      assert.ok((await got).equals(payload));
      assert.equal(stats().fallbacks[NATIVE ? 'not-regular-file' : 'forced'], 1);
    } finally {
      child.kill();
      await pair.close();
    }
  });

  test('a chunk whose pages are not cached goes to the threadpool', async (t) => {
    if (!NATIVE) return t.skip('page-cache probing is native');
    const f = makeFile(dir, 'cold.bin', 8 * 1024 * 1024, 9);
    // Evict the file's pages (clean pages go with POSIX_FADV_DONTNEED).
    const { native } = await import('../src/native.js');
    const fd = fs.openSync(f.path, 'r');
    fs.fdatasyncSync(fd);
    native!.fadvise(fd, 0, 0, 4);
    if (native!.uncachedPages(fd, 0, f.data.length) === 0) {
      fs.closeSync(fd);
      return t.skip('this filesystem keeps the pages cached after DONTNEED');
    }
    resetStats();
    const pair = await socketPair('tcp');
    try {
      const got = hashStream(pair.client);
      await sendFile(pair.server, fd);
      pair.server.end();
      assert.equal((await got).sha, sha(f.data));
      assert.ok(stats().threadpoolChunks > 0, 'threadpool used for uncached chunks');
    } finally {
      fs.closeSync(fd);
      await pair.close();
    }
  });

  test('large transfers yield between chunks so timers still run', async () => {
    const pair = await socketPair('unix', dir);
    try {
      let ticks = 0;
      const iv = setInterval(() => ticks++, 1);
      const got = hashStream(pair.client);
      await sendFile(pair.server, medium.path, { chunkSize: 256 * 1024 });
      clearInterval(iv);
      pair.server.end();
      assert.equal((await got).sha, sha(medium.data));
      assert.ok(ticks > 0, 'a 1 ms interval ran during the transfer');
    } finally {
      await pair.close();
    }
  });

  test('capabilities() explains itself', () => {
    const c = capabilities();
    assert.equal(c.platform, process.platform);
    if (c.native) assert.equal(c.reason, undefined);
    else assert.ok(typeof c.reason === 'string' && c.reason.length > 0);
  });
});

// Issue 10: the socket-full wait of the sendfile path runs in native code
// (a pump: sendfile at each writability wake-up, no JavaScript), and large
// transfers to Unix sockets ask for a larger send buffer.
describe('native pump and send buffer (issue 10)', () => {
  const fdOf = (s: net.Socket): number => (s as unknown as { _handle: { fd: number } })._handle.fd;
  const sndbuf = (s: net.Socket): number => native!.sendBuffer(fdOf(s), 0);
  let wmemMax = 0;
  try {
    wmemMax = Number(fs.readFileSync('/proc/sys/net/core/wmem_max', 'utf8'));
  } catch {
    // Unknown: the tests that need it skip.
  }

  /** Resolves once cond() holds, checking each loop turn; rejects after ms. */
  async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
    const end = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setImmediate(r));
    }
  }

  test('a full socket is refilled by native code: far fewer JS waits than buffer fills', async (t) => {
    if (!NATIVE) return t.skip('the pump is native');
    const pair = await socketPair('unix', dir);
    try {
      resetStats();
      const buf = sndbuf(pair.server);
      const got = hashStream(pair.client);
      // sendBufferSize 0: the default buffer, so the socket fills often.
      const n = await sendFile(pair.server, medium.path, { mechanism: 'sendfile', sendBufferSize: 0 });
      pair.server.end();
      assert.equal(n, medium.data.length);
      assert.equal((await got).sha, sha(medium.data));
      assert.equal(sndbuf(pair.server), buf, 'buffer left alone');
      // Moving the file through a buffer of `buf` bytes fills it at least
      // length / buf times; each fill used to be a wait in JavaScript.
      const fills = medium.data.length / buf;
      const waits = stats().waits;
      assert.ok(waits > 0, 'the socket did fill');
      assert.ok(waits < fills / 4, `JS waits ${waits} vs >= ${Math.round(fills)} buffer fills`);
    } finally {
      await pair.close();
    }
  });

  test('a reader stalled during a pump costs ~0 CPU (no busy loop in native code)', async (t) => {
    if (!NATIVE) return t.skip('the pump is native');
    const pair = await socketPair('unix', dir);
    try {
      resetStats();
      pair.client.pause();
      const p = sendFile(pair.server, medium.path, { mechanism: 'sendfile' });
      p.catch(() => {});
      // The socket filled and the pump waits for writability.
      await until(() => stats().waits >= 1, 5_000, 'the first wait');
      const c0 = process.cpuUsage();
      await new Promise((r) => setTimeout(r, 500));
      const c1 = process.cpuUsage(c0);
      const cpuMs = (c1.user + c1.system) / 1000;
      assert.ok(cpuMs < 100, `CPU while stalled: ${cpuMs.toFixed(1)} ms in 500 ms`);
      assert.equal(stats().waits, 1, 'still the one wait');
      const got = hashStream(pair.client);
      pair.client.resume();
      assert.equal(await p, medium.data.length);
      pair.server.end();
      assert.equal((await got).sha, sha(medium.data));
    } finally {
      await pair.close();
    }
  });

  test('abort during a pump: bytesTransferred counts what native code sent', async (t) => {
    if (!NATIVE) return t.skip('the pump is native');
    const pair = await socketPair('unix', dir);
    try {
      pair.client.pause();
      let received = 0;
      const ended = new Promise<void>((resolve) => {
        pair.client.on('end', () => resolve());
        pair.client.on('close', () => resolve());
      });
      const ac = new AbortController();
      const outcome = sendFile(pair.server, medium.path, { mechanism: 'sendfile', sendBufferSize: 0, signal: ac.signal }).then(
        () => null,
        (e: unknown) => e,
      );
      // Once several buffers' worth went out (refilled by the pump, which
      // reports only at the end of its range or every 200 ms), abort.
      let aborted = false;
      pair.client.on('data', (d: Buffer) => {
        received += d.length;
        if (!aborted && received >= 4 * 1024 * 1024) {
          aborted = true;
          ac.abort();
        }
      });
      pair.client.resume();
      const err = (await withTimeout(outcome, 10_000, 'abort rejection')) as Error & { bytesTransferred: number };
      assert.equal(err?.name, 'AbortError');
      pair.server.destroy();
      await withTimeout(ended, 10_000, 'the peer reads what was queued');
      assert.ok(err.bytesTransferred >= 4 * 1024 * 1024, `bytesTransferred ${err.bytesTransferred}`);
      assert.equal(err.bytesTransferred, received, 'every byte the peer got is counted, and no more');
    } finally {
      await pair.close();
    }
  });

  test('a large transfer to a Unix socket raises SO_SNDBUF while it runs, then puts it back', async (t) => {
    if (!NATIVE) return t.skip('the send buffer is set through the addon');
    const pair = await socketPair('unix', dir);
    try {
      const before = sndbuf(pair.server);
      const expect = 2 * Math.min(4 * 1024 * 1024, wmemMax);
      if (!(expect > before)) return t.skip(`net.core.wmem_max (${wmemMax}) allows no larger buffer than ${before}`);
      pair.client.pause();
      const p = sendFile(pair.server, medium.path);
      await until(() => sndbuf(pair.server) !== before, 5_000, 'the raised buffer');
      assert.equal(sndbuf(pair.server), expect);
      const got = hashStream(pair.client);
      pair.client.resume();
      assert.equal(await p, medium.data.length);
      pair.server.end();
      assert.equal((await got).sha, sha(medium.data));
      assert.equal(sndbuf(pair.server), before, 'put back after the transfer');
      // A small transfer leaves it alone.
      const got2 = socketPair('unix', dir);
      const pair2 = await got2;
      const b2 = sndbuf(pair2.server);
      const h2 = hashStream(pair2.client);
      await sendFile(pair2.server, small.path);
      assert.equal(sndbuf(pair2.server), b2);
      pair2.server.end();
      assert.equal((await h2).sha, sha(small.data));
      await pair2.close();
    } finally {
      await pair.close();
    }
  });

  test('sendBufferSize: set and kept, never lowered, validated', async (t) => {
    const pair = await socketPair('unix', dir);
    try {
      for (const bad of [-1, 1.5, NaN, 2 ** 31]) {
        assert.throws(() => sendFile(pair.server, small.path, { sendBufferSize: bad }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
      }
      assert.throws(() => sendFile(pair.server, small.path, { sendBufferSize: '1m' as unknown as number }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
      if (!NATIVE) {
        // The portable path ignores it (Node has no SO_SNDBUF for net.Socket).
        const got = hashStream(pair.client);
        assert.equal(await sendFile(pair.server, small.path, { sendBufferSize: 1 << 20 }), small.data.length);
        pair.server.end();
        assert.equal((await got).sha, sha(small.data));
        return;
      }
      const before = sndbuf(pair.server);
      const expect = 2 * Math.min(1 << 20, wmemMax);
      if (!(expect > before)) return t.skip(`net.core.wmem_max (${wmemMax}) allows no larger buffer than ${before}`);
      const got = hashStream(pair.client);
      await sendFile(pair.server, small.path, { sendBufferSize: 1 << 20 });
      assert.equal(sndbuf(pair.server), expect, 'set, and kept after the transfer');
      await sendFile(pair.server, small.path, { sendBufferSize: 64 * 1024 });
      assert.equal(sndbuf(pair.server), expect, 'never lowered');
      pair.server.end();
      const r = await got;
      assert.equal(r.bytes, 2 * small.data.length);
    } finally {
      await pair.close();
    }
  });
});
