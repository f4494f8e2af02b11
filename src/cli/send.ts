// `zcopy send FILE HOST:PORT|UNIX_PATH`: a netcat for files. The file goes
// out with sendFile (page cache -> socket in the kernel) behind a small
// header; the receiver (`zcopy recv`) answers one line when the file is
// safely in place, so the exit status says whether it arrived.
//
// Wire format, version 1 (all integers big-endian):
//   "ZCPY" | version u8 = 1 | flags u8 (bit 0: digest follows) |
//   name length u16 | size u64 | [sha256 digest, 32 bytes] | name (UTF-8)
//   then exactly `size` bytes of file.
// Reply (receiver -> sender), one line:
//   "OK <bytes> verified|unverified\n"  or  "ERR <CODE> <message>\n"
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { FileRegion, mapFile } from '../index.js';
import { OPTIONS, err as errLine, help, invalid, parseAddress, parseOptions, type Address } from './common.js';

export const MAGIC = Buffer.from('ZCPY');
export const VERSION = 1;
export const FLAG_DIGEST = 1;
export const MAX_NAME = 4096;

/**
 * Exit codes both commands use, for scripts:
 * 0 done (and verified when asked); 1 failed (I/O, network, refused by the
 * other side); 2 usage error; 3 the digests differ (or --verify without
 * one); 4 incomplete (the connection ended early).
 */
export const EXIT = { OK: 0, FAIL: 1, USAGE: 2, MISMATCH: 3, INCOMPLETE: 4 } as const;

const HELP = `Usage: zcopy send FILE ADDRESS [options]

Sends FILE to a 'zcopy recv' listening at ADDRESS: a small header (name,
size, optional SHA-256), then the bytes with sendfile(2). Waits for the
receiver's answer, so exit status 0 means the file is in place.

ADDRESS: host:port, [ipv6]:port, a port (on 127.0.0.1), or unix:<path>
(a path with a '/' is a Unix socket too: ./recv.sock).

Options:
      --name <name>   the name the receiver stores (default: FILE's basename)
      --verify        send a SHA-256 of the file (read through a memory
                      mapping); the receiver checks its written copy
  -q, --quiet         no progress, only errors
  -h, --help          this help

Exit status: 0 done, 1 failed, 2 usage, 3 digest mismatch, 4 incomplete.
`;

export type { Address };

/** An address as the commands print it: host:port, [ipv6]:port or unix:<path>. */
export function formatAddress(a: Address): string {
  return 'path' in a ? `unix:${a.path}` : `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}

/** A name the receiver may store: one path component, printable, not hidden-dot tricks. */
export function safeName(name: string): boolean {
  return (
    name.length > 0 &&
    Buffer.byteLength(name) <= 255 &&
    name !== '.' &&
    name !== '..' &&
    !/[/\\\u0000-\u001f\u007f]/.test(name)
  );
}

export function encodeHeader(name: string, size: number, digest: Buffer | undefined): Buffer {
  const n = Buffer.from(name, 'utf8');
  const h = Buffer.alloc(16 + (digest ? 32 : 0));
  MAGIC.copy(h, 0);
  h[4] = VERSION;
  h[5] = digest ? FLAG_DIGEST : 0;
  h.writeUInt16BE(n.length, 6);
  h.writeBigUInt64BE(BigInt(size), 8);
  if (digest) digest.copy(h, 16);
  return Buffer.concat([h, n]);
}

/** Human sizes for progress lines. */
export function human(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${u[i]}`;
}

/**
 * Progress on stderr: a redrawn line on a TTY (bytes, rate, ETA), nothing
 * between the plain start and end lines otherwise.
 */
export function progress(label: string, total: number, read: () => number, quiet: boolean): { stop(): void } {
  const tty = process.stderr.isTTY === true && !quiet;
  const t0 = performance.now();
  const draw = () => {
    const done = read();
    const secs = (performance.now() - t0) / 1000;
    const rate = secs > 0 ? done / secs : 0;
    const eta = rate > 0 && total > done ? Math.ceil((total - done) / rate) : 0;
    const pct = total > 0 ? ((100 * done) / total).toFixed(1) : '100.0';
    errLine(`\r${label}: ${human(done)} / ${human(total)} (${pct}%) ${human(rate)}/s ETA ${eta}s\u001b[K`);
  };
  const timer = tty ? setInterval(draw, 250) : undefined;
  timer?.unref();
  return {
    stop() {
      if (timer) {
        clearInterval(timer);
        draw();
        errLine('\n');
      }
    },
  };
}

/** SHA-256 of a file, read through a mapping (no copy into JS); a stream without the addon. */
export async function digestFile(file: string): Promise<Buffer> {
  const h = createHash('sha256');
  const size = fs.statSync(file).size;
  if (size === 0) return h.digest();
  let m;
  try {
    m = await mapFile(file);
  } catch {
    m = undefined;
  }
  if (m) {
    try {
      m.advise('sequential');
      const step = 1 << 30;
      for (let off = 0; off < m.length; off += step) h.update(m.subarray(off, Math.min(m.length, off + step)));
    } finally {
      m.close();
    }
    return h.digest();
  }
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest();
}

/** Reads one reply line (bounded); resolves undefined if the peer closed first. */
export function readLine(sock: net.Socket, max = 4096): Promise<string | undefined> {
  return new Promise((resolve) => {
    let buf = '';
    const done = (v: string | undefined) => {
      sock.off('data', onData);
      sock.off('end', onEnd);
      sock.off('close', onEnd);
      sock.off('error', onEnd);
      resolve(v);
    };
    const onData = (d: Buffer) => {
      buf += d.toString('utf8');
      const i = buf.indexOf('\n');
      if (i >= 0) done(buf.slice(0, i));
      else if (buf.length > max) done(buf.slice(0, max));
    };
    const onEnd = () => done(undefined);
    sock.on('data', onData);
    sock.once('end', onEnd);
    sock.once('close', onEnd);
    sock.once('error', onEnd);
  });
}

export async function sendCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseOptions(
    'send',
    argv,
    { name: { type: 'string' }, verify: { type: 'boolean' }, quiet: OPTIONS.quiet, help: OPTIONS.help },
    2,
  );
  if (values.help) return help(HELP);
  if (positionals.length === 0) throw invalid('missing FILE and ADDRESS (zcopy send --help)');
  if (positionals.length === 1) throw invalid('missing ADDRESS after FILE (zcopy send --help)');
  const [file, where] = positionals as [string, string];
  const addr = parseAddress('ADDRESS', where, '127.0.0.1', { connect: true, slashIsPath: true });
  const name = values.name ?? path.basename(file);
  if (!safeName(name)) throw invalid(`invalid --name '${name}': expected a safe file name (one path component, no control characters)`);
  const quiet = values.quiet === true;
  const log = (s: string) => {
    if (!quiet) errLine(`zcopy send: ${s}\n`);
  };

  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (err) {
    errLine(`zcopy send: ${(err as Error).message}\n`);
    return EXIT.FAIL;
  }
  if (!st.isFile()) {
    errLine(`zcopy send: ${file}: not a regular file\n`);
    return EXIT.FAIL;
  }
  const size = st.size;
  const digest = values.verify ? await digestFile(file) : undefined;
  const sock = 'path' in addr ? net.connect(addr.path) : net.connect(addr.port, addr.host);
  sock.on('error', () => {});
  const connected = await new Promise<Error | undefined>((resolve) => {
    sock.once('connect', () => resolve(undefined));
    sock.once('error', (e) => resolve(e));
  });
  if (connected) {
    errLine(`zcopy send: cannot connect to ${formatAddress(addr)}: ${(connected as NodeJS.ErrnoException).code ?? connected.message}\n`);
    return EXIT.FAIL;
  }
  log(`${name} (${human(size)}) -> ${formatAddress(addr)}${digest ? ` sha256 ${digest.toString('hex')}` : ''}`);
  // The answer may come early (a refusal): listen from the start.
  const reply = readLine(sock);
  sock.write(encodeHeader(name, size, digest));
  const region = new FileRegion(file, 0, size);
  const bar = progress('zcopy send', size, () => region.transferred, quiet);
  const t0 = performance.now();
  let sendErr: Error | undefined;
  try {
    await region.transferTo(sock);
  } catch (err) {
    sendErr = err as Error;
  } finally {
    region.release();
    bar.stop();
  }
  const line = await reply;
  sock.destroy();
  const secs = (performance.now() - t0) / 1000;
  if (line === undefined) {
    errLine(`zcopy send: the receiver closed without an answer after ${region.transferred} of ${size} bytes${sendErr ? ` (${(sendErr as { code?: string }).code ?? sendErr.message})` : ''}\n`);
    return EXIT.INCOMPLETE;
  }
  const ok = /^OK (\d+) (verified|unverified)$/.exec(line);
  if (ok) {
    log(`done: ${human(size)} in ${secs.toFixed(2)} s (${human(size / Math.max(secs, 1e-6))}/s), ${ok[2]}`);
    return EXIT.OK;
  }
  const err = /^ERR (\S+) ?(.*)$/.exec(line);
  errLine(`zcopy send: the receiver refused: ${err ? `${err[1]} ${err[2]}` : line}\n`);
  if (err?.[1] === 'MISMATCH' || err?.[1] === 'NO_DIGEST') return EXIT.MISMATCH;
  if (err?.[1] === 'INCOMPLETE') return EXIT.INCOMPLETE;
  return EXIT.FAIL;
}
