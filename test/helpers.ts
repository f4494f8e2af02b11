// Shared test fixtures: files with known hashes, loopback sinks, fd counts.
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { capabilities } from '../src/index.js';

export const NATIVE = capabilities().native;
export const MODE = NATIVE ? 'native' : 'portable';

export function tmpDir(prefix = 'zcopy-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Deterministic pseudo-random bytes (xorshift) so failures reproduce. */
export function seededBytes(n: number, seed = 1): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  for (; i < n; i++) b[i] = i & 0xff;
  return b;
}

/** mulberry32: a small seedable PRNG, so a failing seed reproduces. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function sha(buf: Uint8Array): string {
  return createHash('sha256').update(buf).digest('hex');
}

export function makeFile(dir: string, name: string, size: number, seed = 1): { path: string; data: Buffer } {
  const data = size <= 64 << 20 ? seededBytes(size, seed) : randomBytes(size);
  const p = path.join(dir, name);
  fs.writeFileSync(p, data);
  return { path: p, data };
}

export function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/**
 * The fd count once closes already under way (sockets destroyed a moment
 * ago close on a later loop turn) have landed: three equal readings in a row,
 * bounded to about a second.
 */
export async function settledFds(): Promise<number> {
  let last = openFds();
  let same = 0;
  for (let i = 0; i < 100 && same < 3; i++) {
    await new Promise((r) => setTimeout(r, 10));
    const n = openFds();
    same = n === last ? same + 1 : 0;
    last = n;
  }
  return last;
}

/** Rejects after ms with a clear message; the timer does not keep the loop alive. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
      timer.unref();
    }),
  ]);
}

export function once<T = unknown>(emitter: NodeJS.EventEmitter, event: string, ms = 10_000): Promise<T> {
  return withTimeout(
    new Promise<T>((resolve) => emitter.once(event, (v: T) => resolve(v))),
    ms,
    `event '${event}'`,
  );
}

export type Transport = 'tcp' | 'unix';
export const TRANSPORTS: Transport[] = ['tcp', 'unix'];

export interface Pair {
  /** The server-side socket we send from. */
  server: net.Socket;
  /** The client-side socket that receives. */
  client: net.Socket;
  close(): Promise<void>;
}

let unixSeq = 0;

/** A connected socket pair over loopback TCP or a Unix socket. */
export async function socketPair(transport: Transport, dir?: string): Promise<Pair> {
  const srv = net.createServer();
  let sockPath: string | undefined;
  if (transport === 'unix') {
    sockPath = path.join(dir ?? os.tmpdir(), `zc-${process.pid}-${unixSeq++}.sock`);
    try {
      fs.unlinkSync(sockPath);
    } catch {}
    await new Promise<void>((r) => srv.listen(sockPath, r));
  } else {
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  }
  const accepted = once<net.Socket>(srv, 'connection');
  const client = transport === 'unix' ? net.connect(sockPath!) : net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
  await once(client, 'connect');
  const server = await accepted;
  srv.close();
  return {
    server,
    client,
    async close() {
      server.destroy();
      client.destroy();
      if (sockPath) {
        try {
          fs.unlinkSync(sockPath);
        } catch {}
      }
    },
  };
}

/** Collects everything `sock` receives until it ends. */
export function collect(sock: net.Socket, ms = 60_000): Promise<Buffer> {
  const chunks: Buffer[] = [];
  sock.on('data', (d: Buffer) => chunks.push(d));
  return withTimeout(
    new Promise<Buffer>((resolve, reject) => {
      sock.once('end', () => resolve(Buffer.concat(chunks)));
      sock.once('error', reject);
    }),
    ms,
    'receiving all bytes',
  );
}

/** Hashes everything `sock` receives until it ends, without keeping it. */
export function hashStream(sock: net.Socket, ms = 120_000): Promise<{ bytes: number; sha: string }> {
  const h = createHash('sha256');
  let bytes = 0;
  sock.on('data', (d: Buffer) => {
    bytes += d.length;
    h.update(d);
  });
  return withTimeout(
    new Promise((resolve, reject) => {
      sock.once('end', () => resolve({ bytes, sha: h.digest('hex') }));
      sock.once('error', reject);
    }),
    ms,
    'hashing the stream',
  );
}
