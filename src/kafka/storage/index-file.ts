/**
 * Kafka's sparse segment indexes: the offset index (8-byte entries: int32
 * offset relative to the segment base, int32 file position) and the time
 * index (12-byte entries: int64 timestamp, int32 relative offset). Both are
 * searched by binary search for the greatest entry <= a target.
 *
 * The active segment's indexes are preallocated and memory-mapped with
 * zcopy's `mapFile` (mode 'rw'): an entry is two stores into the page cache.
 * The preallocation grows on demand (doubling, up to the segment's maximum),
 * by writing zeros so that the blocks exist: a store into a sparse page on a
 * full disk raises SIGBUS. On roll or close the mapping is closed first and
 * the file then trimmed to its used size (truncating a mapped file would
 * SIGBUS too). Sealed indexes are mapped read-only. Without the native addon
 * (portable path) an index lives in a heap Buffer and is written back with
 * pwrite on flush, seal and close.
 *
 * @module
 */
import * as fs from 'node:fs';
import { capabilities, mapFile, type MappedFile } from '../../index.js';
import { closeFd, fsyncFd, ftruncateFd, openFd, readAt, writeAll } from './fs-util.js';

export const OFFSET_ENTRY = 8;
export const TIME_ENTRY = 12;
/** Kafka's segment.index.bytes default: the most an index preallocates. */
export const MAX_INDEX_BYTES = 10 * 1024 * 1024;

const canMap = capabilities().mmap;

const ZEROS = Buffer.alloc(1024 * 1024);
/** Room an active index starts with (grown by doubling as entries come). */
const INITIAL_ENTRIES = 512;

/**
 * Grows an index file to `to` bytes by writing zeros rather than with
 * ftruncate: a sparse page of a mapped file is allocated on the first store
 * into it, and on a full disk that store raises SIGBUS, which kills the
 * process. Written blocks are allocated now, so a full disk fails here, as a
 * clean error at roll time.
 */
async function preallocate(path: string, from: number, to: number): Promise<void> {
  const fd = await openFd(path, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
  try {
    await ftruncateFd(fd, from);
    for (let at = from; at < to; ) {
      const n = Math.min(ZEROS.length, to - at);
      await writeAll(fd, ZEROS, 0, n, at);
      at += n;
    }
  } catch (err) {
    await ftruncateFd(fd, from).catch(() => {});
    throw err;
  } finally {
    await closeFd(fd);
  }
}

/** mapFile, or undefined when this runtime cannot map (then the index lives on the heap). */
async function tryMap(path: string, mode: 'r' | 'rw', length?: number): Promise<MappedFile | undefined> {
  try {
    return await mapFile(path, length === undefined ? { mode } : { mode, length });
  } catch (err) {
    // No external buffers (Electron's sandbox), no address space: the heap
    // path is slower to flush but equivalent.
    if ((err as { code?: string }).code === 'ZCOPY_ERR_EXTERNAL_BUFFERS' || (err as { code?: string }).code === 'ENOMEM') return undefined;
    throw err;
  }
}

export class IndexFile {
  readonly path: string;
  readonly entrySize: number;
  /** The most entries this index may take (the segment rolls before). */
  maxEntries: number;
  entries: number;
  /** Entries the buffer (mapping) has room for now. */
  #capacity: number;
  #buf: Buffer;
  #map: MappedFile | undefined;
  #active: boolean;
  /** Heap mode: entries [0, #written) are already in the file. */
  #written: number;

  private constructor(path: string, entrySize: number, buf: Buffer, map: MappedFile | undefined, entries: number, maxEntries: number, active: boolean) {
    this.path = path;
    this.entrySize = entrySize;
    this.#buf = buf;
    this.#map = map;
    this.entries = entries;
    this.maxEntries = maxEntries;
    this.#active = active;
    this.#written = entries;
    this.#capacity = Math.floor(buf.length / entrySize);
  }

  /**
   * Opens an index whose file holds exactly `entries` valid entries at its
   * start (a trimmed file, or one just rebuilt). Active: preallocates some room
   * (see ensureCapacity) and maps it read-write; sealed: maps the used part
   * read-only.
   */
  static async open(path: string, entrySize: number, entries: number, active: boolean, maxEntries: number): Promise<IndexFile> {
    maxEntries = Math.max(maxEntries, entries);
    const used = entries * entrySize;
    const capacity = Math.max(entries + 2, Math.min(maxEntries + 1, INITIAL_ENTRIES));
    let map: MappedFile | undefined;
    if (canMap && active) {
      await preallocate(path, used, capacity * entrySize);
      map = await tryMap(path, 'rw');
      if (map === undefined) await IndexFile.#truncate(path, used);
    } else if (canMap && used > 0) {
      map = await tryMap(path, 'r', used);
    }
    if (map !== undefined) return new IndexFile(path, entrySize, map.buffer, map, entries, active ? maxEntries : entries, active);
    // Heap mode: the portable path, or a runtime that cannot map.
    const buf = Buffer.alloc(active ? capacity * entrySize : used);
    if (used > 0) {
      const fd = await openFd(path, 'r');
      try {
        await readAt(fd, buf, 0, used, 0);
      } finally {
        await closeFd(fd);
      }
    }
    return new IndexFile(path, entrySize, buf, undefined, entries, active ? maxEntries : entries, active);
  }

  static async #truncate(path: string, len: number): Promise<void> {
    const fd = await openFd(path, fs.constants.O_RDWR);
    try {
      await ftruncateFd(fd, len);
    } finally {
      await closeFd(fd);
    }
  }

  /** Writes `data` (whole entries) as the index file's content and truncates it there. */
  static async writeFresh(path: string, data: Buffer): Promise<void> {
    const fd = await openFd(path, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
    try {
      await ftruncateFd(fd, 0);
      if (data.length > 0) await writeAll(fd, data, 0, data.length, 0);
    } finally {
      await closeFd(fd);
    }
  }

  get active(): boolean {
    return this.#active;
  }

  /** Offset index: relOffset of entry i. Time index: timestamp of entry i. */
  key(i: number): number {
    return this.entrySize === OFFSET_ENTRY ? this.#buf.readInt32BE(i * 8) : Number(this.#buf.readBigInt64BE(i * 12));
  }

  /** Offset index: position of entry i. Time index: relOffset of entry i. */
  value(i: number): number {
    return this.entrySize === OFFSET_ENTRY ? this.#buf.readInt32BE(i * 8 + 4) : this.#buf.readInt32BE(i * 12 + 8);
  }

  /** Index of the greatest entry whose key is <= target, or -1. */
  floor(target: number): number {
    let lo = 0;
    let hi = this.entries - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.key(mid) <= target) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  /**
   * Makes room for `n` entries in all: zero-fills the file further and maps
   * it again (the old mapping serves synchronous reads until the new one is
   * in place), or grows the heap buffer. Fails cleanly (ENOSPC) before
   * anything is appended.
   */
  async ensureCapacity(n: number): Promise<void> {
    if (!this.#active || n <= this.#capacity) return;
    let cap = Math.max(this.#capacity, 1);
    while (cap < n) cap *= 2;
    cap = Math.max(n, Math.min(cap, this.maxEntries + 1));
    if (this.#map !== undefined) {
      await preallocate(this.path, this.#capacity * this.entrySize, cap * this.entrySize);
      const m = await tryMap(this.path, 'rw');
      if (m === undefined) throw new Error(`cannot map ${this.path}`);
      const old = this.#map;
      this.#map = m;
      this.#buf = m.buffer;
      old.close();
    } else {
      const b = Buffer.alloc(cap * this.entrySize);
      this.#buf.copy(b, 0, 0, this.entries * this.entrySize);
      this.#buf = b;
    }
    this.#capacity = cap;
  }

  /** Appends an offset-index entry (relOffset, position) or a time-index entry (timestamp, relOffset). */
  append(key: number, value: number): void {
    if (!this.#active) throw new Error(`index ${this.path} is sealed`);
    if (this.entries >= this.#capacity) throw new Error(`index ${this.path} is full`);
    const at = this.entries * this.entrySize;
    if (this.entrySize === OFFSET_ENTRY) {
      this.#buf.writeInt32BE(key, at);
      this.#buf.writeInt32BE(value, at + 4);
    } else {
      this.#buf.writeBigInt64BE(BigInt(key), at);
      this.#buf.writeInt32BE(value, at + 8);
    }
    this.entries++;
  }

  /** Makes the entries durable: msync of the mapping, or pwrite + fsync in heap mode. */
  async flush(): Promise<void> {
    if (!this.#active) return;
    if (this.#map !== undefined) {
      const used = this.entries * this.entrySize;
      if (used > 0 && !this.#map.closed) await this.#map.sync(0, used);
      return;
    }
    await this.#writeBack(false);
  }

  async #writeBack(trim: boolean): Promise<void> {
    const fd = await openFd(this.path, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
    try {
      const from = this.#written * this.entrySize;
      const to = this.entries * this.entrySize;
      if (to > from) await writeAll(fd, this.#buf, from, to - from, from);
      this.#written = this.entries;
      if (trim) await ftruncateFd(fd, to);
      await fsyncFd(fd);
    } finally {
      await closeFd(fd);
    }
  }

  /** Active -> sealed: unmap, trim the file to its entries, map them read-only. */
  async seal(): Promise<void> {
    if (!this.#active) return;
    const mapped = this.#map !== undefined;
    await this.#trim();
    this.#active = false;
    this.maxEntries = this.entries;
    const used = this.entries * this.entrySize;
    if (!mapped) {
      this.#buf = this.#buf.subarray(0, used);
      return;
    }
    if (used > 0) {
      this.#map = await tryMap(this.path, 'r', used);
      if (this.#map !== undefined) this.#buf = this.#map.buffer;
    }
  }

  async #trim(): Promise<void> {
    if (this.#map !== undefined) {
      const used = this.entries * this.entrySize;
      if (used > 0) await this.#map.sync(0, used);
      // Reads are synchronous and may come while this awaits: they use a
      // heap copy of the entries until the read-only mapping replaces it.
      this.#buf = Buffer.from(this.#buf.subarray(0, used));
      this.#map.close();
      this.#map = undefined;
      const fd = await openFd(this.path, fs.constants.O_RDWR);
      try {
        await ftruncateFd(fd, used);
        await fsyncFd(fd);
      } finally {
        await closeFd(fd);
      }
    } else {
      await this.#writeBack(true);
    }
  }

  /** Releases the mapping; an active index is trimmed first (clean close). */
  async close(): Promise<void> {
    if (this.#active) {
      await this.#trim();
      this.#active = false;
    }
    this.#map?.close();
    this.#map = undefined;
    this.#buf = Buffer.alloc(0);
    this.entries = 0;
  }

  /** Releases the mapping without writing anything (the files are being deleted). */
  drop(): void {
    this.#map?.close();
    this.#map = undefined;
    this.#buf = Buffer.alloc(0);
    this.entries = 0;
    this.#active = false;
  }
}

/** How many bytes of a file, for sizing checks. */
export async function fileSize(path: string): Promise<number> {
  try {
    return (await fs.promises.stat(path)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return -1;
    throw err;
  }
}

