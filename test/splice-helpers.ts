// Fixtures for the splice and proxy suites: half-open socket pairs, writers
// with random chunk sizes and pauses, readers that stall at random, CPU use
// over a window, and fd counts with the pipe pool emptied.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pipePool } from '../src/internal/pipe-pool.js';
import { native } from '../src/native.js';
import { once, withTimeout } from './helpers.js';

export type Transport = 'tcp' | 'unix';

export { rng } from './helpers.js';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

let seq = 0;

/** A listening server on loopback TCP or a Unix socket in `dir`. */
export async function listen(server: net.Server, transport: Transport, dir: string): Promise<{ port: number } | { path: string }> {
  if (transport === 'unix') {
    const p = path.join(dir, `s-${process.pid}-${seq++}.sock`);
    fs.rmSync(p, { force: true });
    await new Promise<void>((r) => server.listen(p, r));
    return { path: p };
  }
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port };
}

export function connect(addr: { port: number } | { path: string }): net.Socket {
  return 'path' in addr ? net.connect({ path: addr.path, allowHalfOpen: true }) : net.connect({ port: addr.port, host: '127.0.0.1', allowHalfOpen: true });
}

/** A connected pair, both ends half-open capable: `a` is the client, `b` the accepted side. */
export async function halfOpenPair(transport: Transport, dir: string): Promise<{ a: net.Socket; b: net.Socket; close(): void }> {
  const srv = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  const addr = await listen(srv, transport, dir);
  const accepted = once<net.Socket>(srv, 'connection');
  const a = connect(addr);
  await once(a, 'connect');
  const b = await accepted;
  srv.close();
  return {
    a,
    b,
    close() {
      a.destroy();
      b.destroy();
    },
  };
}

/** Writes `data` in random-sized chunks (1 B .. maxChunk), pausing at random, honouring backpressure; then end(). */
export async function writeRandom(sock: net.Socket, data: Buffer, r: () => number, opts: { maxChunk?: number; stallProb?: number; stallMs?: number; end?: boolean } = {}): Promise<void> {
  const maxChunk = opts.maxChunk ?? 256 * 1024;
  const stallProb = opts.stallProb ?? 0.05;
  const stallMs = opts.stallMs ?? 8;
  let off = 0;
  while (off < data.length) {
    if (sock.destroyed) throw new Error('socket destroyed while writing');
    // Skewed towards small writes, with some large ones.
    const size = Math.max(1, Math.min(data.length - off, Math.floor(r() ** 3 * maxChunk) + 1));
    const ok = sock.write(data.subarray(off, off + size));
    off += size;
    if (!ok) await withTimeout(once(sock, 'drain', 30_000), 30_000, 'drain');
    if (r() < stallProb) await sleep(r() * stallMs);
  }
  if (opts.end !== false) sock.end();
}

/** Hashes what `sock` receives until EOF, pausing the socket at random (reader stalls). */
export function readWithStalls(sock: net.Socket, r: () => number, opts: { stallProb?: number; stallMs?: number; ms?: number } = {}): Promise<{ bytes: number; sha: string }> {
  const stallProb = opts.stallProb ?? 0.05;
  const stallMs = opts.stallMs ?? 15;
  const h = createHash('sha256');
  let bytes = 0;
  sock.on('data', (d: Buffer) => {
    bytes += d.length;
    h.update(d);
    if (r() < stallProb) {
      sock.pause();
      setTimeout(() => sock.resume(), r() * stallMs);
    }
  });
  sock.resume();
  return withTimeout(
    new Promise((resolve, reject) => {
      sock.once('end', () => resolve({ bytes, sha: h.digest('hex') }));
      sock.once('error', reject);
    }),
    opts.ms ?? 60_000,
    'reading to EOF',
  );
}

/** CPU (user+system, ms) this process used over `ms` of wall time. */
export async function cpuOver(ms: number): Promise<number> {
  const c0 = process.cpuUsage();
  await sleep(ms);
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000;
}

/** Open fds of this process, with zcopy's idle pipes closed first. */
export function fdCount(): number {
  if (native) pipePool.drain();
  return fs.readdirSync('/proc/self/fd').length;
}

/** Waits until the fd count drops to `target` (sockets close asynchronously), or fails. */
export async function fdsBackTo(target: number, ms = 10_000): Promise<number> {
  const t0 = Date.now();
  let n = fdCount();
  while (n > target && Date.now() - t0 < ms) {
    await sleep(20);
    n = fdCount();
  }
  return n;
}

export function closed(s: net.Socket, ms = 5_000): Promise<void> {
  if (s.closed) return Promise.resolve();
  return withTimeout(new Promise<void>((r) => s.once('close', () => r())), ms, 'socket close');
}

export function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'zcopy-splice-'));
}
