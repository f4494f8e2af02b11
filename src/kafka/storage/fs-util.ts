/**
 * Small promise wrappers over node:fs's fd-based calls (numeric fds: the
 * broker sends slices by fd with zcopy), and an atomic file replace.
 *
 * @module
 */
import * as fs from 'node:fs';
import { dirname } from 'node:path';
import { promisify } from 'node:util';

export const openFd = promisify(fs.open) as (path: string, flags: string | number, mode?: number) => Promise<number>;
export const closeFd = promisify(fs.close) as (fd: number) => Promise<void>;
export const fsyncFd = promisify(fs.fsync) as (fd: number) => Promise<void>;
export const fdatasyncFd = promisify(fs.fdatasync) as (fd: number) => Promise<void>;
export const ftruncateFd = promisify(fs.ftruncate) as (fd: number, len: number) => Promise<void>;
export const fstatFd = promisify(fs.fstat) as (fd: number) => Promise<fs.Stats>;

/** pwrite all of buf[off, off+len) at `position`, looping on short writes. */
export async function writeAll(fd: number, buf: Uint8Array, off: number, len: number, position: number): Promise<void> {
  while (len > 0) {
    const n = await new Promise<number>((resolve, reject) => fs.write(fd, buf, off, len, position, (err, written) => (err ? reject(err) : resolve(written))));
    if (n <= 0) throw new Error('write returned 0 bytes');
    off += n;
    len -= n;
    position += n;
  }
}

/** pread up to len bytes at position; returns how many were read (short only at end of file). */
export async function readAt(fd: number, buf: Uint8Array, off: number, len: number, position: number): Promise<number> {
  let total = 0;
  while (len > 0) {
    const n = await new Promise<number>((resolve, reject) => fs.read(fd, buf, off, len, position, (err, r) => (err ? reject(err) : resolve(r))));
    if (n === 0) break;
    total += n;
    off += n;
    len -= n;
    position += n;
  }
  return total;
}

/** The same, synchronously (small reads on the fetch path; see docs/kafka-storage.md). */
export function readAtSync(fd: number, buf: Uint8Array, off: number, len: number, position: number): number {
  let total = 0;
  while (len > 0) {
    const n = fs.readSync(fd, buf, off, len, position);
    if (n === 0) break;
    total += n;
    off += n;
    len -= n;
    position += n;
  }
  return total;
}

/** fsync a directory, so that creates, renames and unlinks in it are durable. */
export async function fsyncDir(dir: string): Promise<void> {
  let fd: number | undefined;
  try {
    fd = await openFd(dir, 'r');
    await fsyncFd(fd);
  } catch {
    // Some filesystems refuse fsync on a directory; nothing better to do.
  } finally {
    if (fd !== undefined) await closeFd(fd).catch(() => {});
  }
}

/** Replaces `path` with `data` atomically and durably: write a temp file, fsync, rename, fsync the directory. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.tmp`;
  const fd = await openFd(tmp, 'w');
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    await writeAll(fd, buf, 0, buf.length, 0);
    await fsyncFd(fd);
  } finally {
    await closeFd(fd);
  }
  await fs.promises.rename(tmp, path);
  await fsyncDir(dirname(path));
}
