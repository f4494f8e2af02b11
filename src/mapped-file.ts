/**
 * Memory-mapped files: a file range seen as a Buffer without reading it.
 *
 * The mapping is exposed as external ArrayBuffers created by the addon
 * (native/mmap.c). `close()` detaches them (`napi_detach_arraybuffer`), so
 * every view a caller made becomes zero-length: a closed mapping can never
 * be read through a dangling view. A mapping that is never closed is unmapped
 * once the garbage collector has collected it and all its views.
 *
 * Without the addon (other platforms, or `ZCOPY_FORCE_FALLBACK=1`) there is
 * no portable equivalent: `mapFile` rejects with
 * `ZCOPY_ERR_NATIVE_UNAVAILABLE` and `capabilities().mmap` is `false`.
 *
 * @module
 */
import { constants as bufferConstants } from 'node:buffer';
import { constants as fsConstants, fstat, type Stats } from 'node:fs';
import { open } from 'node:fs/promises';
import { native, nativeReason, type MapHandle } from './native.js';
import { ZcopyError, invalidArgType, outOfRange, systemError, validateOffset } from './errors.js';
import { validateFile, validateObject, validateOneOf, validatePositiveInt, type FileLike } from './internal/validate.js';

/** How the file is mapped. */
export type MapMode = 'r' | 'rw' | 'private';

/** Access-pattern hints for {@link MappedFile.advise} (madvise(2)). */
export type MapAdvice = 'normal' | 'sequential' | 'random' | 'willneed' | 'dontneed';

/** Options of {@link mapFile}. */
export interface MapFileOptions {
  /** File offset of the first mapped byte; any value (page alignment is handled inside). Default 0. */
  offset?: number;
  /** Bytes to map. Default: from `offset` to the end of the file. The range must lie inside the file. */
  length?: number;
  /**
   * `'r'` (default): read-only, shared with the page cache.
   * `'rw'`: writes through `buffer` reach the file (durably after `sync()`); needs a file opened for reading and writing.
   * `'private'`: copy-on-write; writes are visible in this process only and never reach the file.
   */
  mode?: MapMode;
  /** Pre-fault the whole range (MAP_POPULATE) on the threadpool, so first accesses do not fault. Default false. */
  populate?: boolean;
}

const MODES: readonly MapMode[] = ['r', 'rw', 'private'];
const ADVICE: readonly MapAdvice[] = ['normal', 'sequential', 'random', 'willneed', 'dontneed'];
const ADVICE_CONST: Record<MapAdvice, string> = {
  normal: 'MADV_NORMAL',
  sequential: 'MADV_SEQUENTIAL',
  random: 'MADV_RANDOM',
  willneed: 'MADV_WILLNEED',
  dontneed: 'MADV_DONTNEED',
};

/** mmap constants from the addon (empty without it). */
const MC: Readonly<Record<string, number>> =
  native && typeof native.mmapConstants === 'function' ? Object.freeze(native.mmapConstants()) : Object.freeze({});

/** Lets only mapFile construct a MappedFile. */
const token = Symbol('MappedFile');

/**
 * Node 20 cannot make a Buffer (or any typed array) over more than
 * `buffer.constants.MAX_LENGTH` (4 GiB) bytes. Larger mappings are exposed
 * as overlapping segments of twice this size starting every `SEGMENT` bytes,
 * so any window of up to `SEGMENT` bytes lies inside one segment.
 */
const MAX_VIEW = bufferConstants.MAX_LENGTH;
const SEGMENT = Math.floor(MAX_VIEW / 2);

/**
 * Builds the error for a negative result of the mmap addon functions.
 * Exported for tests; not part of the public API.
 *
 * @internal
 */
export function mmapError(r: number, syscall: string, path?: string): Error {
  if (MC.E_NO_EXTERNAL_BUFFERS !== undefined && r === MC.E_NO_EXTERNAL_BUFFERS) {
    return new ZcopyError(
      'ZCOPY_ERR_EXTERNAL_BUFFERS',
      'This runtime refuses external ArrayBuffers (napi_no_external_buffers_allowed, e.g. Electron with the V8 sandbox): a mapping cannot be exposed without copying it',
    );
  }
  return systemError(r, syscall, path);
}

/**
 * A mapped file range. Create one with {@link mapFile}; release it with
 * {@link MappedFile.close} (or `using`, via `Symbol.dispose`).
 *
 * Truncating the file while it is mapped makes access to the lost pages
 * raise SIGBUS, which kills the process and cannot be caught: map only
 * files that nothing truncates (see docs/mmap-and-buffers.md).
 *
 * @hideconstructor
 */
export class MappedFile {
  /** File offset of the first byte of the mapping. */
  readonly offset: number;
  /** Bytes mapped (stays the same after close). */
  readonly length: number;
  /** How the file was mapped. */
  readonly mode: MapMode;
  #handle: MapHandle | null;
  /** Every ArrayBuffer created over the mapping: close() detaches them all. */
  #views: ArrayBuffer[] = [];
  #whole: Buffer | undefined;
  #segments: Buffer[] = [];
  #path: string | undefined;

  /** @internal */
  constructor(key: symbol, handle: MapHandle, offset: number, length: number, mode: MapMode, path?: string) {
    if (key !== token) throw new TypeError('Illegal constructor: use mapFile()');
    this.#handle = handle;
    this.offset = offset;
    this.length = length;
    this.mode = mode;
    this.#path = path;
    // The first view is made now so that a runtime refusing external
    // buffers fails in mapFile, not at the first access.
    if (length <= MAX_VIEW) this.#whole = this.#view(0, length);
    else this.#segment(0);
  }

  #view(start: number, length: number): Buffer {
    const ab = native!.mmapView(this.#handle!, start, length);
    if (typeof ab === 'number') throw mmapError(ab, 'mmap', this.#path);
    this.#views.push(ab);
    return Buffer.from(ab, 0, length);
  }

  #segment(k: number): Buffer {
    let seg = this.#segments[k];
    if (seg === undefined) {
      const start = k * SEGMENT;
      seg = this.#view(start, Math.min(this.length - start, 2 * SEGMENT));
      this.#segments[k] = seg;
    }
    return seg;
  }

  #open(what: string): MapHandle {
    if (this.#handle === null) throw new ZcopyError('ZCOPY_ERR_CLOSED', `Cannot ${what}: the mapping is closed`);
    return this.#handle;
  }

  /** True once {@link MappedFile.close} ran. */
  get closed(): boolean {
    return this.#handle === null;
  }

  /**
   * A Buffer over the whole mapping; no bytes were read to make it (pages
   * are faulted in on first access). Writable in `'rw'` and `'private'`
   * modes. After `close()` it, and every view made from it, is zero-length.
   *
   * Mappings larger than `buffer.constants.MAX_LENGTH` (4 GiB on Node 20)
   * cannot be one Buffer: this throws `ZCOPY_ERR_OUT_OF_RANGE` for them;
   * use {@link MappedFile.subarray}.
   */
  get buffer(): Buffer {
    if (this.#whole !== undefined) return this.#whole;
    if (this.#handle === null) return Buffer.alloc(0);
    throw new ZcopyError(
      'ZCOPY_ERR_OUT_OF_RANGE',
      `A ${this.length}-byte mapping exceeds the largest Buffer this Node.js can make (${MAX_VIEW} bytes): use subarray(start, end)`,
    );
  }

  /**
   * A zero-copy Buffer over `[start, end)` of the mapping. Works on mappings
   * of any size; on a mapping above `buffer.constants.MAX_LENGTH` a window
   * may be up to half that (2 GiB on Node 20). Zero-length after `close()`.
   *
   * @example
   * ```ts
   * const header = m.subarray(0, 64);
   * ```
   */
  subarray(start = 0, end: number = this.length): Buffer {
    validateOffset('start', start, false);
    validateOffset('end', end, false);
    if (start > end || end > this.length) throw outOfRange('end', `>= start (${start}) and <= length (${this.length})`, end);
    if (this.#handle === null) return Buffer.alloc(0);
    if (this.#whole !== undefined) return this.#whole.subarray(start, end);
    for (const k of [Math.floor(start / SEGMENT), Math.floor(start / SEGMENT) - 1]) {
      if (k >= 0 && end <= k * SEGMENT + 2 * SEGMENT) return this.#segment(k).subarray(start - k * SEGMENT, end - k * SEGMENT);
    }
    throw new ZcopyError(
      'ZCOPY_ERR_OUT_OF_RANGE',
      `A window of ${end - start} bytes at ${start} does not fit in one Buffer of this mapping (windows of up to ${SEGMENT} bytes always do)`,
    );
  }

  /**
   * Tells the kernel how the range will be accessed (madvise(2)).
   * `'dontneed'` drops the pages; on a `'private'` mapping that also
   * discards this process's changes.
   */
  advise(advice: MapAdvice, offset = 0, length: number = this.length - offset): void {
    const a = validateOneOf('advice', advice, ADVICE);
    if (a === undefined) throw invalidArgType('advice', 'one of ' + ADVICE.join(', '), advice);
    this.#range(offset, length);
    const h = this.#open('advise');
    const r = native!.madvise(h, offset, length, MC[ADVICE_CONST[a]]!);
    if (r < 0) throw systemError(r, 'madvise', this.#path);
  }

  /**
   * Writes the changed pages of `[offset, offset + length)` back to the file
   * and waits for them (msync(MS_SYNC), on the threadpool so the event loop
   * does not wait for the disk). Meaningful for `'rw'`; harmless otherwise.
   */
  sync(offset = 0, length: number = this.length - offset): Promise<void> {
    this.#range(offset, length);
    const site: { stack?: string } = {};
    Error.captureStackTrace(site, this.sync);
    return new Promise<void>((resolve, reject) => {
      const h = this.#open('sync');
      const r = native!.msyncAsync(h, offset, length, MC.MS_SYNC!, (res) => {
        if (res < 0) reject(withStack(systemError(res, 'msync', this.#path), site));
        else resolve();
      });
      if (typeof r === 'number' && r < 0) reject(withStack(systemError(r, 'msync', this.#path), site));
    });
  }

  #range(offset: unknown, length: unknown): void {
    validateOffset('offset', offset, false);
    validateOffset('length', length, false);
    if ((offset as number) + (length as number) > this.length) {
      throw outOfRange('length', `<= ${this.length - (offset as number)} (the mapping ends at ${this.length})`, length);
    }
  }

  /**
   * Unmaps the file. Every Buffer over the mapping, including subarrays
   * made from it, becomes zero-length at once; the memory is released as
   * soon as no in-flight `sync()` uses it. Idempotent.
   *
   * Do not close a mapping while an asynchronous write of one of its views
   * (a socket write, `fs.write`) is still in flight: native code holding the
   * address would see it unmapped.
   */
  close(): void {
    const h = this.#handle;
    if (h === null) return;
    this.#handle = null;
    for (const ab of this.#views) native!.mmapDetach(ab);
    this.#views = [];
    this.#segments = [];
    native!.mmapClose(h);
  }

  /** Same as {@link MappedFile.close}, for `using m = await mapFile(...)`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

function withStack<E extends Error>(err: E, site: { stack?: string }): E {
  if (site.stack !== undefined) {
    const frames = site.stack.slice(site.stack.indexOf('\n') + 1);
    err.stack = `${err.name}: ${err.message}\n${frames}`;
  }
  return err;
}

const fstatAsync = (fd: number): Promise<Stats> =>
  new Promise((resolve, reject) => fstat(fd, (err, st) => (err ? reject(err) : resolve(st))));

/**
 * Maps a file (or a range of it) into memory. No bytes are read: pages are
 * faulted in from the page cache as the Buffer is accessed.
 *
 * `file` is a path (opened and closed here), an open fd or a FileHandle
 * (left open: the mapping does not need it afterwards). Argument errors
 * throw synchronously; everything else rejects:
 * - `ZCOPY_ERR_NATIVE_UNAVAILABLE`: no native addon (see `capabilities()`).
 * - `ZCOPY_ERR_INVALID_FILE`: a directory or other non-regular file, a
 *   write-only fd, or mode `'rw'` on an fd not open for reading and writing.
 * - `ZCOPY_ERR_EMPTY_FILE`: the file is empty (there is nothing to map).
 * - `ZCOPY_ERR_OUT_OF_RANGE`: `offset`/`length` reach past the end of the file.
 * - `ZCOPY_ERR_EXTERNAL_BUFFERS`: the runtime refuses external buffers.
 * - system errors (`ENOENT`, `EACCES`, `ENOMEM`, ...) with `syscall`.
 *
 * @example
 * ```ts
 * const m = await mapFile('data.bin', { offset: 4096, length: 1 << 20 });
 * try {
 *   console.log(m.buffer.readUInt32BE(0));
 * } finally {
 *   m.close();
 * }
 * ```
 */
export function mapFile(file: FileLike, options?: MapFileOptions): Promise<MappedFile> {
  const f = validateFile('file', file);
  const o = validateObject('options', options);
  const offset = validateOffset('options.offset', o.offset) ?? 0;
  const length = validatePositiveInt('options.length', o.length, 1, Number.MAX_SAFE_INTEGER);
  const mode = validateOneOf('options.mode', o.mode, MODES) ?? 'r';
  if (o.populate !== undefined && typeof o.populate !== 'boolean') throw invalidArgType('options.populate', 'of type boolean', o.populate);
  const populate = o.populate === true;
  if (length !== undefined && offset + length > Number.MAX_SAFE_INTEGER) {
    throw outOfRange('options.length', `<= ${Number.MAX_SAFE_INTEGER - offset}`, length);
  }

  const site: { stack?: string } = {};
  Error.captureStackTrace(site, mapFile);
  if (native === null || typeof native.mmap !== 'function') {
    return Promise.reject(
      withStack(new ZcopyError('ZCOPY_ERR_NATIVE_UNAVAILABLE', `mapFile needs the native addon: ${nativeReason ?? 'it has no mmap support'}`), site),
    );
  }
  return mapOpened(f, offset, length, mode, populate).catch((err: Error) => {
    throw withStack(err, site);
  });
}

async function mapOpened(file: FileLike, offset: number, length: number | undefined, mode: MapMode, populate: boolean): Promise<MappedFile> {
  const path = typeof file === 'string' ? file : undefined;
  let fd: number;
  let closeFd: (() => Promise<void>) | undefined;
  if (typeof file === 'string') {
    let handle;
    try {
      handle = await open(file, mode === 'rw' ? 'r+' : 'r');
    } catch (err) {
      if ((err as { code?: string }).code === 'EISDIR') {
        throw new ZcopyError('ZCOPY_ERR_INVALID_FILE', `Cannot map '${file}': it is a directory, not a regular file`, { cause: err });
      }
      throw err;
    }
    fd = handle.fd;
    closeFd = () => handle.close();
  } else {
    fd = typeof file === 'number' ? file : file.fd;
  }
  const name = path !== undefined ? `'${path}'` : `fd ${fd}`;
  try {
    if (path === undefined) {
      // A path is opened with the right access mode above; a caller's fd is
      // checked here so a mismatch is a clear error rather than mmap's EACCES.
      const fl = native!.getFl(fd);
      if (fl < 0) throw systemError(fl, 'fcntl');
      const acc = fl & (fsConstants.O_RDONLY | fsConstants.O_WRONLY | fsConstants.O_RDWR);
      if (acc === fsConstants.O_WRONLY) {
        throw new ZcopyError('ZCOPY_ERR_INVALID_FILE', `Cannot map ${name}: it is open write-only, and a mapping needs read access`);
      }
      if (mode === 'rw' && acc !== fsConstants.O_RDWR) {
        throw new ZcopyError('ZCOPY_ERR_INVALID_FILE', `Cannot map ${name} with mode 'rw': it must be open for reading and writing ('r+')`);
      }
      if (mode === 'rw' && (fl & fsConstants.O_APPEND) !== 0) {
        throw new ZcopyError('ZCOPY_ERR_INVALID_FILE', `Cannot map ${name} with mode 'rw': it is open in append mode`);
      }
    }
    const st = await fstatAsync(fd);
    if (!st.isFile()) {
      const kind = st.isDirectory() ? 'a directory' : 'not a regular file';
      throw new ZcopyError('ZCOPY_ERR_INVALID_FILE', `Cannot map ${name}: it is ${kind}`);
    }
    if (st.size === 0) throw new ZcopyError('ZCOPY_ERR_EMPTY_FILE', `Cannot map ${name}: the file is empty`);
    if (offset >= st.size) {
      throw new ZcopyError('ZCOPY_ERR_OUT_OF_RANGE', `Cannot map ${name} at offset ${offset}: the file has ${st.size} bytes`);
    }
    const len = length ?? st.size - offset;
    if (offset + len > st.size) {
      // Pages past the end of the file raise SIGBUS on access: never map them.
      throw new ZcopyError('ZCOPY_ERR_OUT_OF_RANGE', `Cannot map ${len} bytes of ${name} at offset ${offset}: the file has ${st.size} bytes`);
    }
    const prot = mode === 'r' ? MC.PROT_READ! : MC.PROT_READ! | MC.PROT_WRITE!;
    const flags = (mode === 'private' ? MC.MAP_PRIVATE! : MC.MAP_SHARED!) | (populate ? MC.MAP_POPULATE! : 0);
    const h = native!.mmapNew();
    if (typeof h === 'number') throw systemError(h, 'mmap', path);
    let r: number;
    if (populate) {
      r = await new Promise<number>((resolve) => {
        const q = native!.mmapAsync(h, fd, offset, len, prot, flags, resolve);
        if (typeof q === 'number') resolve(q);
      });
    } else {
      r = native!.mmap(h, fd, offset, len, prot, flags);
    }
    if (r < 0) {
      native!.mmapClose(h);
      throw mmapError(r, 'mmap', path);
    }
    try {
      return new MappedFile(token, h, offset, len, mode, path);
    } catch (err) {
      native!.mmapClose(h);
      throw err;
    }
  } finally {
    await closeFd?.();
  }
}
