/**
 * copyFile: a file range copied inside the kernel.
 *
 * @module
 */
import fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import type { FileHandle } from 'node:fs/promises';
import { native } from './native.js';
import { ZcopyError, systemError, validateOffset } from './errors.js';
import { countBytes, countError, countFallback, countTransfer, type Path } from './stats.js';
import { openFile, type OpenedFile } from './internal/open-file.js';
import { validateFile, validateObject } from './internal/validate.js';

const E = osConstants.errno;
/** Errors after which the next mechanism may still work (libuv's list, plus ENOTTY for FICLONE). */
const TRY_NEXT = new Set([-E.EXDEV, -E.EOPNOTSUPP, -(E.ENOTSUP ?? E.EOPNOTSUPP), -E.EINVAL, -E.ENOSYS, -E.EPERM, -E.ENOTTY, -E.EBADF, -E.ETXTBSY]);
/** Bytes per threadpool job: large enough to be cheap, small enough that a copy is not one long opaque job. */
const JOB_BYTES = 64 * 1024 * 1024;

/** Options of {@link copyFile}. */
export interface CopyFileOptions {
  /** First byte of the source. Default 0. */
  srcOffset?: number;
  /** Where the bytes go in the destination. Default 0. */
  destOffset?: number;
  /** Bytes to copy. Default: from srcOffset to the end of the source. */
  length?: number;
}

type Job = (inFd: number, inOff: number, outFd: number, outOff: number, len: number) => Promise<number>;

function job(fn: 'copyFileRangeAsync' | 'sendfileFile' | 'preadPwriteAsync'): Job {
  return (inFd, inOff, outFd, outOff, len) =>
    new Promise((resolve) => {
      const n = native!;
      if (fn === 'sendfileFile') {
        // sendfile to a file writes at the destination's file position.
        n.sendfileAsync(outFd, inFd, inOff, len, resolve);
      } else {
        n[fn](inFd, inOff, outFd, outOff, len, resolve);
      }
    });
}

/**
 * Copies `[srcOffset, srcOffset + length)` of `src` to `dest` at
 * `destOffset`, inside the kernel where it can, and resolves with the bytes
 * copied. In order: a reflink (`FICLONE`, whole files on filesystems that
 * share extents), `copy_file_range(2)`, `sendfile(2)`, then a read/write
 * loop, each taking over where the last could not. The work runs on the
 * threadpool, never on the event loop. A path `dest` is created (with the
 * source's mode) and, unless `destOffset` is given, truncated; an fd or
 * FileHandle is written in place. A destination that is the source itself
 * (by any path, link or fd) is refused with `ZCOPY_ERR_SAME_FILE` before a
 * byte is touched; `destOffset` on an fd open with `O_APPEND` is refused
 * with `ZCOPY_ERR_INVALID_FILE`.
 *
 * @example
 * ```ts
 * await copyFile('video.mp4', 'backup/video.mp4');
 * ```
 */
export function copyFile(src: string | number | FileHandle, dest: string | number | FileHandle, options?: CopyFileOptions): Promise<number> {
  const s = validateFile('src', src);
  const d = validateFile('dest', dest);
  const o = validateObject('options', options) as CopyFileOptions;
  const srcOffset = validateOffset('options.srcOffset', o.srcOffset) ?? 0;
  const destOffset = validateOffset('options.destOffset', o.destOffset);
  const length = validateOffset('options.length', o.length);
  return run(s, d, srcOffset, destOffset, length).catch((err: unknown) => {
    countError();
    throw err;
  });
}

async function run(src: string | number | FileHandle, dest: string | number | FileHandle, srcOffset: number, destOffset: number | undefined, length: number | undefined): Promise<number> {
  const input = await openFile(src, 'r');
  let output: OpenedFile | undefined;
  try {
    const st = fs.fstatSync(input.fd);
    if (st.isDirectory()) throw systemError(-E.EISDIR, 'copyfile', input.path);
    const regular = st.isFile();
    if (regular && srcOffset > st.size) throw new ZcopyError('ZCOPY_ERR_OUT_OF_RANGE', `srcOffset ${srcOffset} is past the end of the source (${st.size} bytes)`);
    const len = length ?? (regular ? st.size - srcOffset : Infinity);
    if (regular && srcOffset + len > st.size) throw new ZcopyError('ZCOPY_ERR_OUT_OF_RANGE', `range [${srcOffset}, ${srcOffset + len}) is past the end of the source (${st.size} bytes)`);

    const createdByUs = typeof dest === 'string';
    const truncate = createdByUs && destOffset === undefined;
    // As libuv's uv_fs_copyfile: open the destination WITHOUT O_TRUNC, prove
    // it is not the source (dev/ino of both fds, so every spelling counts:
    // './x', 'a/../x', a hard link, a symlink, an fd), and only then
    // truncate. Truncating at open emptied the file the check then refused.
    output = await openFile(dest, fs.constants.O_WRONLY | fs.constants.O_CREAT, st.mode & 0o777);
    const dst = fs.fstatSync(output.fd);
    if (dst.isDirectory()) throw systemError(-E.EISDIR, 'copyfile', output.path);
    if (dst.dev === st.dev && dst.ino === st.ino) {
      throw new ZcopyError('ZCOPY_ERR_SAME_FILE', `source and destination are the same file${output.path !== undefined ? ` ('${output.path}')` : ''}; nothing was written`);
    }
    if (destOffset !== undefined && !createdByUs && isAppendOnly(output.fd)) {
      // pwrite(2) on an O_APPEND fd appends whatever the offset (Linux), so
      // the offset would be silently ignored.
      throw new ZcopyError('ZCOPY_ERR_INVALID_FILE', `destOffset ${destOffset} cannot be honoured: the destination fd is open in append mode (O_APPEND); nothing was written`);
    }
    if (truncate && dst.isFile() && dst.size > 0) {
      await new Promise<void>((resolve, reject) => fs.ftruncate(output!.fd, 0, (e) => (e ? reject(e) : resolve())));
    }
    const outOff = destOffset ?? 0;
    if (len === 0) return 0;

    if (!native || !regular || !dst.isFile()) {
      countFallback(!native ? (process.env.ZCOPY_FORCE_FALLBACK === '1' ? 'forced' : 'no-native') : 'not-regular-file');
      countTransfer('portable');
      return await portableCopy(input.fd, regular ? srcOffset : -1, output.fd, outOff, len);
    }

    // A whole-file copy into a fresh destination can share extents.
    if (truncate && srcOffset === 0 && len === st.size) {
      const r = await new Promise<number>((resolve) => native!.ficloneAsync(input.fd, output!.fd, resolve));
      if (r === 0) {
        countTransfer('ficlone');
        countBytes('ficlone', len);
        return len;
      }
      if (!TRY_NEXT.has(r)) throw systemError(r, 'ioctl(FICLONE)', output.path);
    }

    const stages: Array<[Path, Job, string]> = [
      ['copyFileRange', job('copyFileRangeAsync'), 'copy_file_range'],
      ['sendfile', job('sendfileFile'), 'sendfile'],
      ['nativeCopy', job('preadPwriteAsync'), 'read'],
    ];
    let done = 0;
    for (let i = 0; i < stages.length; i++) {
      const [path, fn, syscall] = stages[i]!;
      if (path === 'sendfile') {
        // sendfile writes at the destination's file position: move it, but
        // only on an fd we opened ourselves (a caller's position is theirs).
        if (!createdByUs || native.lseek(output.fd, outOff + done) < 0) continue;
      }
      countTransfer(path);
      let failed = 0;
      while (done < len) {
        const want = Math.min(len - done, JOB_BYTES);
        const r = await fn(input.fd, srcOffset + done, output.fd, outOff + done, want);
        if (r > 0) {
          done += r;
          countBytes(path, r);
          continue;
        }
        if (r === 0) throw new ZcopyError('ZCOPY_ERR_FILE_TRUNCATED', `source ended after ${done} of ${len} bytes`, { bytesTransferred: done });
        failed = r;
        break;
      }
      if (done >= len) return done;
      if (!TRY_NEXT.has(failed) || i === stages.length - 1) throw systemError(failed, syscall, input.path, done);
      countFallback(`${path}-${systemError(failed, syscall).code}`);
    }
    return done;
  } finally {
    await input.close();
    if (output) await output.close();
  }
}

/**
 * True when `fd` was opened with O_APPEND: fcntl(F_GETFL) through the addon,
 * else the `flags:` line of /proc/self/fdinfo (octal). False when neither
 * can tell (no addon, no /proc).
 */
function isAppendOnly(fd: number): boolean {
  const APPEND = fs.constants.O_APPEND;
  if (native) {
    const fl = native.getFl(fd);
    if (fl < 0) throw systemError(fl, 'fcntl');
    return (fl & APPEND) !== 0;
  }
  try {
    const m = /^flags:\s*([0-7]+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1'));
    return m !== null && (parseInt(m[1]!, 8) & APPEND) !== 0;
  } catch {
    return false;
  }
}

async function portableCopy(inFd: number, inOff: number, outFd: number, outOff: number, len: number): Promise<number> {
  const size = Math.max(4096, Math.min(1024 * 1024, Number.isFinite(len) ? len : 1024 * 1024));
  const buf = Buffer.allocUnsafe(size);
  let done = 0;
  while (done < len) {
    const want = Math.min(size, len - done);
    const n = await new Promise<number>((resolve, reject) => fs.read(inFd, buf, 0, want, inOff >= 0 ? inOff + done : null, (e, r) => (e ? reject(e) : resolve(r))));
    if (n === 0) {
      if (len === Infinity) break;
      throw new ZcopyError('ZCOPY_ERR_FILE_TRUNCATED', `source ended after ${done} of ${len} bytes`, { bytesTransferred: done });
    }
    let w = 0;
    while (w < n) {
      w += await new Promise<number>((resolve, reject) => fs.write(outFd, buf, w, n - w, outOff + done + w, (e, r) => (e ? reject(e) : resolve(r))));
    }
    done += n;
    countBytes('portable', n);
  }
  return done;
}
