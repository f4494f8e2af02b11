/**
 * FileRegion: Netty's `DefaultFileRegion` for Node.
 *
 * @module
 */
import type { FileHandle } from 'node:fs/promises';
import type net from 'node:net';
import { ZcopyError, validateOffset } from './errors.js';
import { openFile, type OpenedFile } from './internal/open-file.js';
import type { SocketTurn } from './internal/hold-writes.js';
import type { Path } from './stats.js';
import { notConnected, reserve, transfer, type TransferProgress } from './internal/transfer.js';
import { targetFdError, validateFile, validateTarget } from './internal/validate.js';
import { validateSendOptions, type SendFileOptions } from './send-file.js';

/** Options of {@link FileRegion.transferTo}. */
export type TransferToOptions = Pick<SendFileOptions, 'signal' | 'chunkSize' | 'mechanism' | 'sendBufferSize'>;

/**
 * A resumable, reference-counted range of a file: `count` bytes from
 * `position`. `transferTo` sends what remains; after an error or abort the
 * next call resumes where the last one stopped (`transferred`). A region made
 * from a path opens the file on first use and closes it when `release()`
 * brings the count to zero; an fd or FileHandle is left to its owner.
 *
 * @example
 * ```ts
 * const region = new FileRegion('/var/log/segment.log', 4096, 1 << 20);
 * try {
 *   await region.transferTo(socket);
 * } finally {
 *   region.release();
 * }
 * ```
 */
export class FileRegion {
  /** First byte of the range. */
  readonly position: number;
  /** Length of the range. */
  readonly count: number;
  readonly #file: string | number | FileHandle;
  #opened: Promise<OpenedFile> | undefined;
  #refCnt = 1;
  #busy = false;
  readonly #progress: TransferProgress = { sent: 0, zeroCopy: 0 };

  constructor(file: string | number | FileHandle, position: number, count: number) {
    this.#file = validateFile('file', file);
    this.position = validateOffset('position', position, false)!;
    this.count = validateOffset('count', count, false)!;
    if (this.position + this.count > Number.MAX_SAFE_INTEGER) {
      throw new RangeError('position + count exceeds Number.MAX_SAFE_INTEGER');
    }
  }

  /** Bytes of the region sent so far, across calls. */
  get transferred(): number {
    return this.#progress.sent;
  }

  /** Of `transferred`, the bytes that went zero-copy (sendfile/splice). */
  get bytesZeroCopy(): number {
    return this.#progress.zeroCopy;
  }

  /**
   * The path the last bytes took: `'sendfile'`, `'splice'`, `'nativeCopy'`
   * (the native copy loop) or `'portable'`; undefined before any byte.
   */
  get path(): Path | undefined {
    return this.#progress.path;
  }

  /** Why some bytes took a copying path, if any did ('tls', 'sendfile-EINVAL', ...). */
  get fallbackReason(): string | undefined {
    return this.#progress.fallbackReason;
  }

  /** The current reference count; 0 once released. */
  get refCnt(): number {
    return this.#refCnt;
  }

  /**
   * Sends the bytes not yet transferred to `target` and resolves with the
   * number sent by this call (0 when nothing remains). Rejects like
   * {@link sendFile}; a later call resumes from `transferred`.
   */
  transferTo(target: net.Socket | number, options?: TransferToOptions): Promise<number> {
    const t = validateTarget('target', target);
    const o = validateSendOptions(options);
    if (this.#refCnt === 0) return Promise.reject(new ZcopyError('ZCOPY_ERR_RELEASED', 'FileRegion was released'));
    if (this.#busy) return Promise.reject(new ZcopyError('ZCOPY_ERR_BUSY', 'FileRegion is already transferring'));
    if (this.#progress.sent >= this.count) return Promise.resolve(0);
    const bad = typeof t === 'number' ? targetFdError(t) : notConnected(t);
    if (bad) return Promise.reject(bad);
    this.#busy = true;
    const turn = reserve(t);
    return this.#run(t, o, turn).finally(() => {
      this.#busy = false;
      if (this.#refCnt === 0) void this.#close();
    });
  }

  async #run(target: net.Socket | number, o: ReturnType<typeof validateSendOptions>, turn: SocketTurn | undefined): Promise<number> {
    this.#opened ??= openFile(this.#file);
    let opened: OpenedFile;
    try {
      opened = await this.#opened;
    } catch (err) {
      this.#opened = undefined; // let a later call try again
      turn?.leave(true);
      throw err;
    }
    return transfer(
      { target, fd: opened.fd, path: opened.path, offset: this.position, length: this.count, chunkSize: o.chunkSize, mechanism: o.mechanism, sendBufferSize: o.sendBufferSize, signal: o.signal, turn },
      this.#progress,
    );
  }

  /** Adds `increment` references. Throws ZCOPY_ERR_RELEASED once released. */
  retain(increment = 1): this {
    if (!Number.isInteger(increment) || increment <= 0) throw new RangeError('increment must be a positive integer');
    if (this.#refCnt === 0) throw new ZcopyError('ZCOPY_ERR_RELEASED', 'FileRegion was released');
    this.#refCnt += increment;
    return this;
  }

  /**
   * Drops `decrement` references; at zero, closes a file the region opened
   * and returns true. Throws ZCOPY_ERR_RELEASED when already released.
   */
  release(decrement = 1): boolean {
    if (!Number.isInteger(decrement) || decrement <= 0) throw new RangeError('decrement must be a positive integer');
    if (this.#refCnt === 0 || decrement > this.#refCnt) throw new ZcopyError('ZCOPY_ERR_RELEASED', 'FileRegion released more times than retained');
    this.#refCnt -= decrement;
    if (this.#refCnt > 0) return false;
    if (!this.#busy) void this.#close();
    return true;
  }

  async #close(): Promise<void> {
    const p = this.#opened;
    this.#opened = undefined;
    if (p) await p.then((o) => o.close(), () => {});
  }
}
