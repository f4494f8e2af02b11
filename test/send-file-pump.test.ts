// Review of issue 10's native pump (FdWatch.pump / pollerPump in poll.c):
// what a pump (or a threadpool chunk) sent is counted on every way a
// transfer ends, a file that shrinks while a pump runs ends the transfer
// with ZCOPY_ERR_FILE_TRUNCATED (no spin), and a raised SO_SNDBUF is put
// back on every exit. The pump is native: without the addon these tests check the
// portable path's answer where it has one, and skip otherwise.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { execFileSync } from 'node:child_process';
import { FileRegion, sendFile, sendParts, stats, resetStats } from '../src/index.js';
import { native } from '../src/native.js';
import { NATIVE, hashStream, makeFile, openFds, settledFds, sha, socketPair, tmpDir, withTimeout } from './helpers.js';

const dir = tmpDir('zcopy-pump-');
let medium: { path: string; data: Buffer };

before(() => {
  medium = makeFile(dir, 'medium.bin', 24 * 1024 * 1024 + 123, 21);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const fdOf = (s: net.Socket): number => (s as unknown as { _handle: { fd: number } })._handle.fd;

/** Resolves once cond() holds, checking each loop turn; rejects after ms. */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

describe(`native pump (issue 10 review, ${NATIVE ? 'native' : 'portable'})`, () => {
  test('socket destroyed during a pump: ZCOPY_ERR_SOCKET_CLOSED counts what native code sent', async (t) => {
    if (!NATIVE) return t.skip('the pump is native (the portable path counts write callbacks)');
    const pair = await socketPair('unix', dir);
    try {
      pair.client.pause();
      let received = 0;
      const ended = new Promise<void>((resolve) => {
        pair.client.on('end', () => resolve());
        pair.client.on('close', () => resolve());
      });
      // sendBufferSize 0: the default buffer, so the pump refills it many
      // times between its reports (range end, or every 200 ms).
      const outcome = sendFile(pair.server, medium.path, { mechanism: 'sendfile', sendBufferSize: 0 }).then(
        () => null,
        (e: unknown) => e,
      );
      let destroyed = false;
      pair.client.on('data', (d: Buffer) => {
        received += d.length;
        if (!destroyed && received >= 4 * 1024 * 1024) {
          destroyed = true;
          pair.server.destroy();
        }
      });
      pair.client.resume();
      const err = (await withTimeout(outcome, 10_000, 'the rejection')) as Error & { code?: string; bytesTransferred: number };
      assert.equal(err?.code, 'ZCOPY_ERR_SOCKET_CLOSED', String(err));
      // The transfer's dup is closed now: the peer reads what was queued, then EOF.
      await withTimeout(ended, 10_000, 'the peer reads what was queued');
      assert.ok(received >= 4 * 1024 * 1024 && received < medium.data.length, `received ${received}`);
      assert.equal(err.bytesTransferred, received, 'every byte the peer got is counted, and no more');
      assert.match(err.message, new RegExp(`after ${received} bytes`));
    } finally {
      await pair.close();
    }
  });

  test('file truncated while a pump waits: ZCOPY_ERR_FILE_TRUNCATED, no spin, no fd left', async () => {
    const f = makeFile(dir, `shrinks-${process.pid}.bin`, 24 * 1024 * 1024, 5);
    const fds0 = openFds();
    const pair = await socketPair('unix', dir);
    try {
      resetStats();
      pair.client.pause();
      const outcome = sendFile(pair.server, f.path, { mechanism: 'sendfile', sendBufferSize: 0 }).then(
        (n) => n,
        (e: unknown) => e,
      );
      if (NATIVE) await until(() => stats().waits >= 1, 5_000, 'the first wait');
      else await new Promise((r) => setTimeout(r, 50));
      fs.truncateSync(f.path, 1024 * 1024);
      const c0 = process.cpuUsage();
      let received = 0;
      pair.client.on('data', (d: Buffer) => (received += d.length));
      pair.client.resume();
      const err = (await withTimeout(outcome, 10_000, 'the rejection')) as Error & { code?: string; bytesTransferred: number };
      const c1 = process.cpuUsage(c0);
      assert.equal(err?.code, 'ZCOPY_ERR_FILE_TRUNCATED', String(err));
      assert.ok(err.bytesTransferred <= 24 * 1024 * 1024, `bytesTransferred ${err.bytesTransferred}`);
      assert.ok((c1.user + c1.system) / 1000 < 2_000, 'no spin');
      pair.server.destroy();
      await withTimeout(
        new Promise<void>((r) => (pair.client.destroyed ? r() : pair.client.on('close', () => r()))),
        10_000,
        'the peer sees the end',
      );
      if (NATIVE) assert.equal(err.bytesTransferred, received, 'every byte the peer got is counted');
    } finally {
      await pair.close();
    }
    assert.equal(await settledFds(), fds0, 'no fd left');
  });
  for (const end of ['abort', 'destroy', 'peer-gone'] as const) {
    test(`SO_SNDBUF raised for a transfer is put back when it ends by ${end}`, async (t) => {
      if (!NATIVE) return t.skip('the send buffer is set through the addon');
      const pair = await socketPair('unix', dir);
      // A dup of our own: reads the buffer after Node closed its fd.
      const probe = native!.dup(fdOf(pair.server));
      assert.ok(probe >= 0);
      try {
        const before = native!.sendBuffer(probe, 0);
        const wmemMax = Number(fs.readFileSync('/proc/sys/net/core/wmem_max', 'utf8'));
        if (!(2 * Math.min(4 * 1024 * 1024, wmemMax) > before)) return t.skip(`net.core.wmem_max (${wmemMax}) allows no larger buffer`);
        pair.client.pause();
        pair.server.on('error', () => {});
        const ac = new AbortController();
        const outcome = sendFile(pair.server, medium.path, { signal: ac.signal }).then(
          () => null,
          (e: unknown) => e,
        );
        await until(() => native!.sendBuffer(probe, 0) !== before, 5_000, 'the raised buffer');
        if (end === 'abort') ac.abort();
        else if (end === 'destroy') pair.server.destroy();
        else pair.client.destroy();
        const err = (await withTimeout(outcome, 10_000, 'the rejection')) as Error & { code?: string };
        const want = { abort: 'ABORT_ERR', destroy: 'ZCOPY_ERR_SOCKET_CLOSED', 'peer-gone': 'EPIPE' }[end];
        if (end === 'peer-gone') assert.ok(['EPIPE', 'ECONNRESET'].includes(String(err?.code)), String(err));
        else assert.equal(err?.code, want, String(err));
        assert.equal(native!.sendBuffer(probe, 0), before, 'put back');
      } finally {
        native!.close(probe);
        await pair.close();
      }
    });
  }
  test('sendParts checks the file options (sendBufferSize, chunkSize, mechanism) before writing anything', async () => {
    const pair = await socketPair('unix', dir);
    const fd = fs.openSync(medium.path, 'r');
    try {
      const parts = [Buffer.from('HEAD'), { fd, offset: 0, length: 10 }];
      const bad: Array<[Record<string, unknown>, string]> = [
        [{ sendBufferSize: -1 }, 'ERR_OUT_OF_RANGE'],
        [{ sendBufferSize: '4m' }, 'ERR_INVALID_ARG_TYPE'],
        [{ chunkSize: 1 }, 'ERR_OUT_OF_RANGE'],
        [{ mechanism: 'teleport' }, 'ERR_INVALID_ARG_VALUE'],
      ];
      for (const [options, code] of bad) {
        assert.throws(() => sendParts(pair.server, parts, options as never), { code }, JSON.stringify(options));
      }
      // Nothing was written and the socket is still usable.
      assert.equal(pair.server.destroyed, false);
      const got = new Promise<Buffer>((resolve) => {
        const chunks: Buffer[] = [];
        pair.client.on('data', (d: Buffer) => chunks.push(d));
        pair.client.on('end', () => resolve(Buffer.concat(chunks)));
      });
      assert.equal(await sendParts(pair.server, parts, { sendBufferSize: 0 }), 14);
      pair.server.end();
      assert.ok((await withTimeout(got, 10_000, 'the bytes')).equals(Buffer.concat([Buffer.from('HEAD'), medium.data.subarray(0, 10)])));
    } finally {
      fs.closeSync(fd);
      await pair.close();
    }
  });
  for (const mechanism of ['sendfile', 'splice', 'copy'] as const) {
    test(`${mechanism}: a threadpool chunk that finishes after an abort is counted`, async (t) => {
      if (!NATIVE) return t.skip('threadpool chunks are native');
      const f = makeFile(dir, `cold-${mechanism}.bin`, 8 * 1024 * 1024, 13);
      const fd = fs.openSync(f.path, 'r');
      fs.fdatasyncSync(fd);
      native!.fadvise(fd, 0, 0, 4);
      if (native!.uncachedPages(fd, 0, f.data.length) === 0) {
        fs.closeSync(fd);
        return t.skip('this filesystem keeps the pages cached after DONTNEED');
      }
      // Every threadpool thread blocks on a FIFO read until released, so
      // the transfer's chunk job is queued, and still runs after the abort.
      const fifo = `${dir}/pool-${mechanism}.fifo`;
      execFileSync('mkfifo', [fifo]);
      const ff = fs.openSync(fifo, fs.constants.O_RDWR);
      const threads = Number(process.env.UV_THREADPOOL_SIZE) || 4;
      const blockers = Array.from({ length: threads }, () => new Promise((r) => fs.read(ff, Buffer.alloc(1), 0, 1, null, r)));
      let released = false;
      const release = (): void => {
        if (!released) fs.writeSync(ff, Buffer.alloc(threads, 1));
        released = true;
      };
      const pair = await socketPair('unix', dir);
      try {
        resetStats();
        let received = 0;
        pair.client.on('data', (d: Buffer) => (received += d.length));
        const ended = new Promise<void>((resolve) => pair.client.on('close', () => resolve()));
        const ac = new AbortController();
        const outcome = sendFile(pair.server, fd, { mechanism, signal: ac.signal }).then(
          () => null,
          (e: unknown) => e,
        );
        await until(() => stats().threadpoolChunks >= 1, 5_000, 'the chunk job');
        ac.abort();
        release();
        await Promise.all(blockers);
        const err = (await withTimeout(outcome, 10_000, 'the rejection')) as Error & { code?: string; bytesTransferred: number };
        assert.equal(err?.code, 'ABORT_ERR', String(err));
        pair.server.destroy();
        await withTimeout(ended, 10_000, 'the peer reads what was sent');
        assert.ok(received > 0, 'the chunk job sent bytes');
        assert.equal(err.bytesTransferred, received, 'every byte the peer got is counted');
      } finally {
        // A failed step must not leave the threadpool blocked.
        release();
        await Promise.all(blockers);
        fs.closeSync(ff);
        fs.closeSync(fd);
        await pair.close();
      }
    });
  }
  test('FileRegion resumed after an abort that a threadpool chunk outlived: every byte once', async (t) => {
    if (!NATIVE) return t.skip('threadpool chunks are native');
    const f = makeFile(dir, 'cold-region.bin', 8 * 1024 * 1024, 17);
    const fd = fs.openSync(f.path, 'r');
    fs.fdatasyncSync(fd);
    native!.fadvise(fd, 0, 0, 4);
    if (native!.uncachedPages(fd, 0, f.data.length) === 0) {
      fs.closeSync(fd);
      return t.skip('this filesystem keeps the pages cached after DONTNEED');
    }
    const fifo = `${dir}/pool-region.fifo`;
    execFileSync('mkfifo', [fifo]);
    const ff = fs.openSync(fifo, fs.constants.O_RDWR);
    const threads = Number(process.env.UV_THREADPOOL_SIZE) || 4;
    const blockers = Array.from({ length: threads }, () => new Promise((r) => fs.read(ff, Buffer.alloc(1), 0, 1, null, r)));
    let released = false;
    const release = (): void => {
      if (!released) fs.writeSync(ff, Buffer.alloc(threads, 1));
      released = true;
    };
    const pair = await socketPair('unix', dir);
    const region = new FileRegion(fd, 0, f.data.length);
    try {
      resetStats();
      const got = hashStream(pair.client);
      const ac = new AbortController();
      const first = region.transferTo(pair.server, { mechanism: 'sendfile', signal: ac.signal }).then(
        () => null,
        (e: unknown) => e,
      );
      await until(() => stats().threadpoolChunks >= 1, 5_000, 'the chunk job');
      ac.abort();
      release();
      await Promise.all(blockers);
      const err = (await withTimeout(first, 10_000, 'the rejection')) as Error & { code?: string };
      assert.equal(err?.code, 'ABORT_ERR', String(err));
      assert.ok(region.transferred > 0, 'the chunk the job sent is counted');
      // The rest, from where the region says it stopped.
      await withTimeout(region.transferTo(pair.server), 20_000, 'the resumed transfer');
      pair.server.end();
      const r = await got;
      assert.equal(r.bytes, f.data.length, 'each byte once');
      assert.equal(r.sha, sha(f.data));
    } finally {
      release();
      await Promise.all(blockers);
      region.release();
      fs.closeSync(ff);
      fs.closeSync(fd);
      await pair.close();
    }
  });
});
