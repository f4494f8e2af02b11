// receiveFile and SO_RCVLOWAT (docs/receive.md): on TCP the kernel path
// raises the socket's SO_RCVLOWAT while it waits for readability (never
// above the bytes still expected, back to 1 after a short patience), and
// puts the socket's own value back on every way out. Runs twice (npm test):
// with the addon, and with ZCOPY_FORCE_FALLBACK=1 (the portable path, which
// never touches SO_RCVLOWAT: the behaviour tests still hold there).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { receiveFile } from '../src/index.js';
import { native } from '../src/native.js';
import { pipePool } from '../src/internal/pipe-pool.js';
import { NATIVE, TRANSPORTS, seededBytes, settledFds, sha, socketPair, tmpDir, withTimeout } from './helpers.js';
import { cpuOver } from './splice-helpers.js';

const dir = tmpDir('zcopy-recv-lowat-');
after(() => {
  if (NATIVE) pipePool.drain();
  fs.rmSync(dir, { recursive: true, force: true });
});

let seq = 0;
const out = () => path.join(dir, `out-${seq++}.bin`);
/** What receive-file.ts raises SO_RCVLOWAT to (at most; the kernel caps it at half of tcp_rmem's maximum). */
const RCV_LOWAT = 1024 * 1024;
/** A value of our own, so that "restored" cannot be confused with a default. */
const OWN = 777;

type RcvLowat = (fd: number, bytes: number) => number;
const rcvLowat = (fd: number, bytes = -1): number => (native!.rcvLowat as RcvLowat)(fd, bytes);
const fdOf = (s: net.Socket): number => (s as unknown as { _handle: { fd: number } })._handle.fd;

function write(c: net.Socket, data: Buffer): Promise<void> {
  return new Promise<void>((resolve, reject) => c.write(data, (err) => (err ? reject(err) : resolve())));
}

async function baseline(): Promise<number> {
  if (NATIVE) pipePool.drain();
  return settledFds();
}

async function fdsAtBaseline(base: number): Promise<void> {
  if (NATIVE) pipePool.drain();
  assert.equal(await settledFds(), base, 'fds back at baseline');
}

/** Polls (1 ms steps, bounded in count and time) until `check` returns a value, or fails. */
async function until<T>(what: string, check: () => T | undefined, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (let i = 0; i < 20_000 && Date.now() < deadline; i++) {
    const v = check();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 1));
  }
  assert.fail(`timed out after ${ms} ms: ${what}`);
}

function sizeOf(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

/** The values SO_RCVLOWAT takes on `fd` until `stop()` (sampled every ms). */
function sampleLowat(fd: number): { seen: Set<number>; stop(): void } {
  const seen = new Set<number>();
  let on = true;
  const tick = () => {
    if (!on) return;
    const v = rcvLowat(fd);
    if (v >= 0) seen.add(v);
    setTimeout(tick, 1);
  };
  tick();
  return {
    seen,
    stop() {
      on = false;
    },
  };
}

describe(`receiveFile: SO_RCVLOWAT on TCP (${NATIVE ? 'native' : 'portable'})`, () => {
  for (const outcome of ['success', 'abort', 'reset', 'destroyed'] as const) {
    test(`raised while waiting, the socket's own value back after ${outcome}`, async (t) => {
      if (!NATIVE) return t.skip('the portable path never sets SO_RCVLOWAT (and without the addon there is nothing to read it with)');
      const base = await baseline();
      const p = await socketPair('tcp', dir);
      // A dup of our own reads the socket's option after Node closed its fd.
      const dupFd = native!.dup(fdOf(p.server));
      assert.ok(dupFd >= 0);
      try {
        assert.ok(rcvLowat(dupFd, OWN) >= 0);
        assert.equal(rcvLowat(dupFd), OWN);
        const ac = new AbortController();
        const length = 4 * 1024 * 1024;
        const data = seededBytes(length, 11);
        const file = out();
        const got = receiveFile(p.server, file, { length, signal: ac.signal });
        got.catch(() => {});
        const first = 100 * 1024;
        await write(p.client, data.subarray(0, first));
        // The receive waits for more: SO_RCVLOWAT is raised (then, after the
        // patience, back to 1), never left at the socket's own value.
        const raised = await until('SO_RCVLOWAT raised while waiting', () => {
          const v = rcvLowat(dupFd);
          return v !== OWN ? v : undefined;
        });
        assert.ok(raised === 1 || (raised > OWN && raised <= RCV_LOWAT), `SO_RCVLOWAT ${raised} while waiting`);
        let err: (Error & { code?: string }) | null = null;
        if (outcome === 'success') {
          await write(p.client, data.subarray(first));
          assert.equal(await withTimeout(got, 30_000, 'receiveFile'), length);
          assert.equal(sha(fs.readFileSync(file)), sha(data));
          // Node's socket is still open: its fd says the same.
          assert.equal(rcvLowat(fdOf(p.server)), OWN);
        } else {
          if (outcome === 'abort') ac.abort();
          else if (outcome === 'reset') p.client.resetAndDestroy();
          else p.server.destroy();
          err = await withTimeout(got.then(() => null, (e: Error & { code?: string }) => e), 10_000, 'receiveFile settles');
          assert.ok(err, 'rejects');
          const expected = { abort: 'ABORT_ERR', reset: 'ECONNRESET', destroyed: 'ZCOPY_ERR_SOCKET_CLOSED' }[outcome];
          assert.equal(err.code, expected, String(err));
        }
        assert.equal(rcvLowat(dupFd), OWN, 'the socket\'s own SO_RCVLOWAT is back');
      } finally {
        native!.close(dupFd);
        await p.close();
      }
      await fdsAtBaseline(base);
    });
  }

  test('a Unix socket is left alone (its poll ignores SO_RCVLOWAT)', async (t) => {
    if (!NATIVE) return t.skip('the portable path never sets SO_RCVLOWAT');
    const p = await socketPair('unix', dir);
    try {
      // rcvLowat refuses non-TCP sockets without touching them.
      assert.equal(rcvLowat(fdOf(p.server), 4096), -os.constants.errno.ENOPROTOOPT);
      const data = seededBytes(300 * 1024, 12);
      const got = receiveFile(p.server, out(), { length: data.length });
      await write(p.client, data.subarray(0, 1000));
      await write(p.client, data.subarray(1000));
      assert.equal(await withTimeout(got, 10_000, 'receiveFile'), data.length);
    } finally {
      await p.close();
    }
  });
});

for (const transport of TRANSPORTS) {
  describe(`receiveFile over ${transport}: waits and a quiet peer (${NATIVE ? 'native' : 'portable'})`, () => {
    test('length-bounded, the last bytes fewer than SO_RCVLOWAT, then the peer goes quiet: resolves, and the last wait asks for no more than the rest', async () => {
      const base = await baseline();
      const p = await socketPair(transport, dir);
      try {
        const length = 200 * 1024 + 60 * 1024;
        const data = seededBytes(length, 13);
        const file = out();
        const got = receiveFile(p.server, file, { length });
        got.catch(() => {});
        const first = 200 * 1024;
        await write(p.client, data.subarray(0, first));
        await until('the first part in the file', () => (sizeOf(file) >= first ? true : undefined));
        // Now the receive waits for the last 60 KiB, fewer than RCV_LOWAT.
        const sampler = NATIVE && transport === 'tcp' ? sampleLowat(fdOf(p.server)) : undefined;
        if (sampler) await until('the wait for the rest armed', () => ([...sampler.seen].some((v) => v !== 1) ? true : undefined));
        sampler?.stop();
        if (sampler) {
          const seen = [...sampler.seen];
          assert.ok(seen.every((v) => v <= length - first), `SO_RCVLOWAT ${seen.join(', ')} while ${length - first} bytes were left`);
        }
        // The peer sends exactly the rest and says nothing more (no FIN).
        await write(p.client, data.subarray(first));
        assert.equal(await withTimeout(got, 10_000, 'receiveFile resolves without a FIN'), length);
        assert.equal(sha(fs.readFileSync(file)), sha(data));
      } finally {
        await p.close();
      }
      await fdsAtBaseline(base);
    });

    test('until EOF, a fast peer that slows to a trickle: its bytes reach the file without waiting for SO_RCVLOWAT bytes, and a stall costs ~0 CPU', async () => {
      const base = await baseline();
      const p = await socketPair(transport, dir);
      try {
        const fast = seededBytes(2 * 1024 * 1024, 14);
        const trickle = seededBytes(1000, 15);
        const file = out();
        const got = receiveFile(p.server, file);
        got.catch(() => {});
        await write(p.client, fast);
        await until('the fast part in the file', () => (sizeOf(file) >= fast.length ? true : undefined));
        // 1000 bytes, far fewer than SO_RCVLOWAT, and then nothing (no FIN).
        await write(p.client, trickle);
        await until('the trickle in the file', () => (sizeOf(file) >= fast.length + trickle.length ? true : undefined), 5_000);
        // Nothing left to move: the wait costs nothing (no timer, no spin).
        const a = await cpuOver(1_000);
        const b = await cpuOver(1_000);
        assert.ok(Math.min(a, b) < 50, `the receive used ${a.toFixed(1)} + ${b.toFixed(1)} ms of CPU over 2 s of a stalled peer`);
        p.client.end();
        const total = fast.length + trickle.length;
        assert.equal(await withTimeout(got, 10_000, 'receiveFile resolves at EOF'), total);
        assert.equal(sha(fs.readFileSync(file)), sha(Buffer.concat([fast, trickle])));
      } finally {
        await p.close();
      }
      await fdsAtBaseline(base);
    });
  });
}
