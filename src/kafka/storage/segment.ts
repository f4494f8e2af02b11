/**
 * One log segment: `<20-digit base offset>.log` holding record batches exactly
 * as produced (baseOffset and partitionLeaderEpoch rewritten), with its
 * sparse `.index` and `.timeindex`.
 *
 * The `.log` fd is refcounted: the log holds one reference, every FileSlice
 * handed to the broker holds one, so a segment deleted by retention stays
 * readable (by fd) until the last slice is released.
 *
 * @module
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { BATCH_HEADER_SIZE, LOG_OVERHEAD, OFF_BASE_OFFSET, OFF_LAST_OFFSET_DELTA, OFF_LENGTH, OFF_MAX_TIMESTAMP, checkStoredBatch, findRecordAtTimestamp, readBatchInfo, type BatchInfo } from './batch.js';
import { closeFd, fsyncFd, fstatFd, ftruncateFd, openFd, readAt, readAtSync, writeAll } from './fs-util.js';
import { IndexFile, MAX_INDEX_BYTES, OFFSET_ENTRY, TIME_ENTRY, fileSize } from './index-file.js';

const INT32_MAX = 0x7fffffff;
/** Reads on the fetch path walk at most about index.interval.bytes of headers. */
const WALK_CHUNK = 16 * 1024;
/** Load-time scans read this much at a time. */
const SCAN_CHUNK = 1024 * 1024;
const scratch = Buffer.allocUnsafe(WALK_CHUNK);
/** Batches of the active segment whose position is remembered (tailing consumers read them without I/O). */
const RING = 4096;

/** Segment file name for a base offset: 20 digits, zero-padded (Kafka's). */
export function segmentName(baseOffset: number): string {
  return String(baseOffset).padStart(20, '0');
}

export interface SegmentLimits {
  segmentBytes: number;
  indexIntervalBytes: number;
}

/** Index capacity for a segment: Kafka preallocates 10 MiB; small segments need less. */
function indexCapacity(limits: SegmentLimits, entrySize: number, atLeast = 0): number {
  const perEntry = Math.max(limits.indexIntervalBytes, BATCH_HEADER_SIZE);
  const need = Math.floor(limits.segmentBytes / perEntry) + 2;
  return Math.max(atLeast + 2, Math.min(need, Math.floor(MAX_INDEX_BYTES / entrySize)));
}

/** What a scan of the batches found. */
interface ScanState {
  nextOffset: number;
  maxTimestamp: number;
  offsetOfMaxTimestamp: number;
  bytesSinceIndex: number;
  firstTimestamp: number;
  offsetEntries: number[];
  timeEntries: number[];
}

export interface OpenOptions {
  /** The last segment: its indexes are mapped read-write and it takes appends. */
  active: boolean;
  /** Verify every batch (CRC, offsets) and truncate at the first bad one (unclean shutdown). */
  recover: boolean;
  limits: SegmentLimits;
  /** Called for every batch found by a full scan (recovery or index rebuild). */
  onBatch?: (info: BatchInfo) => void;
}

export class Segment {
  readonly dir: string;
  readonly baseOffset: number;
  readonly fd: number;
  /** Committed bytes: appends in flight are not counted until written. */
  size: number;
  /** Next offset after this segment's last batch. */
  nextOffset: number;
  maxTimestamp = -1;
  offsetOfMaxTimestamp: number;
  /** The first batch's max timestamp (Kafka rolls by it), -1 when empty or unknown. */
  firstTimestamp = -1;
  createdMs: number;
  lastModifiedMs: number;
  offsetIndex: IndexFile;
  timeIndex: IndexFile;
  #bytesSinceIndex = 0;
  // The last RING batches appended: base offset, position, size.
  #ringOff = new Float64Array(0);
  #ringPos = new Float64Array(0);
  #ringSize = new Float64Array(0);
  #ringStart = 0;
  #ringLen = 0;
  #refs = 1;
  #fdClosed = false;
  #onFdClosed: (() => void) | undefined;
  /** Bytes [0, flushedSize) are known durable. */
  flushedSize = 0;
  deleted = false;

  private constructor(dir: string, baseOffset: number, fd: number, size: number, offsetIndex: IndexFile, timeIndex: IndexFile, now: number) {
    this.dir = dir;
    this.baseOffset = baseOffset;
    this.fd = fd;
    this.size = size;
    this.nextOffset = baseOffset;
    this.offsetOfMaxTimestamp = baseOffset;
    this.offsetIndex = offsetIndex;
    this.timeIndex = timeIndex;
    this.createdMs = now;
    this.lastModifiedMs = now;
  }

  get logPath(): string {
    return join(this.dir, `${segmentName(this.baseOffset)}.log`);
  }
  get indexPath(): string {
    return join(this.dir, `${segmentName(this.baseOffset)}.index`);
  }
  get timeIndexPath(): string {
    return join(this.dir, `${segmentName(this.baseOffset)}.timeindex`);
  }

  /** A new, empty active segment. */
  static async create(dir: string, baseOffset: number, limits: SegmentLimits, now: number, batchesHint = 0): Promise<Segment> {
    const name = join(dir, segmentName(baseOffset));
    const fd = await openFd(`${name}.log`, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_TRUNC, 0o644);
    try {
      await IndexFile.writeFresh(`${name}.index`, Buffer.alloc(0));
      await IndexFile.writeFresh(`${name}.timeindex`, Buffer.alloc(0));
      const oi = await IndexFile.open(`${name}.index`, OFFSET_ENTRY, 0, true, indexCapacity(limits, OFFSET_ENTRY, batchesHint));
      const ti = await IndexFile.open(`${name}.timeindex`, TIME_ENTRY, 0, true, indexCapacity(limits, TIME_ENTRY, batchesHint));
      return new Segment(dir, baseOffset, fd, 0, oi, ti, now);
    } catch (err) {
      await closeFd(fd).catch(() => {});
      throw err;
    }
  }

  /**
   * Opens an existing segment. Rebuilds its indexes when asked to recover,
   * when they are missing, or when they fail a sanity check; in recovery a
   * bad or torn tail is truncated at the last valid batch.
   * Returns the segment and how many bytes recovery cut off.
   */
  static async open(dir: string, baseOffset: number, opts: OpenOptions): Promise<{ segment: Segment; truncated: number }> {
    const name = join(dir, segmentName(baseOffset));
    const fd = await openFd(`${name}.log`, fs.constants.O_RDWR);
    try {
      const st = await fstatFd(fd);
      let size = st.size;
      const oiSize = await fileSize(`${name}.index`);
      const tiSize = await fileSize(`${name}.timeindex`);
      let rebuild = opts.recover || opts.onBatch !== undefined || oiSize < 0 || tiSize < 0 || oiSize % OFFSET_ENTRY !== 0 || tiSize % TIME_ENTRY !== 0;
      if (!rebuild && !(await indexesLookSane(`${name}.index`, oiSize, `${name}.timeindex`, tiSize, size))) rebuild = true;
      let truncated = 0;
      let scan: ScanState | undefined;
      if (rebuild) {
        const r = await scanSegment(fd, baseOffset, size, opts);
        scan = r.state;
        if (r.validEnd < size) {
          if (!opts.recover) throw new Error(`segment ${name}.log holds an invalid batch at byte ${r.validEnd}`);
          truncated = size - r.validEnd;
          await ftruncateFd(fd, r.validEnd);
          await fsyncFd(fd);
          size = r.validEnd;
        }
        // The entry sealing adds (Kafka's onBecomeInactiveSegment): the segment's max timestamp.
        const lastTs = scan.timeEntries.length > 0 ? scan.timeEntries[scan.timeEntries.length - 2]! : -1;
        if (!opts.active && scan.maxTimestamp >= 0 && scan.maxTimestamp > lastTs) scan.timeEntries.push(scan.maxTimestamp, scan.offsetOfMaxTimestamp - baseOffset);
        await IndexFile.writeFresh(`${name}.index`, entriesBuffer(scan.offsetEntries, OFFSET_ENTRY));
        await IndexFile.writeFresh(`${name}.timeindex`, entriesBuffer(scan.timeEntries, TIME_ENTRY));
      }
      const oiEntries = scan ? scan.offsetEntries.length / 2 : oiSize / OFFSET_ENTRY;
      const tiEntries = scan ? scan.timeEntries.length / 2 : tiSize / TIME_ENTRY;
      const oi = await IndexFile.open(`${name}.index`, OFFSET_ENTRY, oiEntries, opts.active, indexCapacity(opts.limits, OFFSET_ENTRY));
      let ti: IndexFile;
      try {
        ti = await IndexFile.open(`${name}.timeindex`, TIME_ENTRY, tiEntries, opts.active, indexCapacity(opts.limits, TIME_ENTRY));
      } catch (err) {
        await oi.close().catch(() => {});
        throw err;
      }
      const seg = new Segment(dir, baseOffset, fd, size, oi, ti, st.mtimeMs);
      if (scan !== undefined) {
        seg.nextOffset = scan.nextOffset;
        seg.maxTimestamp = scan.maxTimestamp;
        seg.offsetOfMaxTimestamp = scan.offsetOfMaxTimestamp;
        seg.firstTimestamp = scan.firstTimestamp;
        seg.#bytesSinceIndex = scan.bytesSinceIndex;
      } else {
        if (ti.entries > 0) {
          seg.maxTimestamp = ti.key(ti.entries - 1);
          seg.offsetOfMaxTimestamp = baseOffset + ti.value(ti.entries - 1);
        }
        if (opts.active) await seg.#loadTail();
      }
      return { segment: seg, truncated };
    } catch (err) {
      await closeFd(fd).catch(() => {});
      throw err;
    }
  }

  /** Active segment with trusted indexes: walks from the last index entry to the end for nextOffset, max timestamp, first timestamp. */
  async #loadTail(): Promise<void> {
    const oi = this.offsetIndex;
    let pos = oi.entries > 0 ? oi.value(oi.entries - 1) : 0;
    const indexPos = pos;
    const head = Buffer.allocUnsafe(BATCH_HEADER_SIZE);
    if (this.size >= BATCH_HEADER_SIZE && (await readAt(this.fd, head, 0, BATCH_HEADER_SIZE, 0)) === BATCH_HEADER_SIZE) {
      this.firstTimestamp = Number(head.readBigInt64BE(OFF_MAX_TIMESTAMP));
    }
    while (pos + BATCH_HEADER_SIZE <= this.size) {
      if ((await readAt(this.fd, head, 0, BATCH_HEADER_SIZE, pos)) < BATCH_HEADER_SIZE) break;
      const info = readBatchInfo(head, 0, pos);
      if (info.size < BATCH_HEADER_SIZE || pos + info.size > this.size) throw new Error(`segment ${this.logPath}: bad batch header at byte ${pos}`);
      this.nextOffset = info.baseOffset + info.lastOffsetDelta + 1;
      if (info.maxTimestamp > this.maxTimestamp) {
        this.maxTimestamp = info.maxTimestamp;
        this.offsetOfMaxTimestamp = info.baseOffset;
      }
      pos += info.size;
    }
    if (pos !== this.size) throw new Error(`segment ${this.logPath}: ${this.size - pos} trailing bytes after the last batch`);
    this.#bytesSinceIndex = this.size - indexPos;
  }

  /**
   * Calls `cb` with the header of every batch whose last offset is >= `offset`
   * (async chunked reads; used to rebuild producer state at load).
   */
  async forEachBatchFrom(offset: number, cb: (info: BatchInfo) => void): Promise<void> {
    const e = this.offsetIndex.floor(offset - this.baseOffset);
    let pos = e >= 0 ? this.offsetIndex.value(e) : 0;
    const buf = Buffer.allocUnsafe(Math.min(SCAN_CHUNK, Math.max(this.size, BATCH_HEADER_SIZE)));
    let chunkPos = 0;
    let chunkLen = 0;
    while (pos + BATCH_HEADER_SIZE <= this.size) {
      if (pos < chunkPos || pos + BATCH_HEADER_SIZE > chunkPos + chunkLen) {
        chunkPos = pos;
        chunkLen = await readAt(this.fd, buf, 0, Math.min(buf.length, this.size - pos), pos);
        if (chunkLen < BATCH_HEADER_SIZE) return;
      }
      const info = readBatchInfo(buf, pos - chunkPos, pos);
      if (info.size < BATCH_HEADER_SIZE) return;
      if (info.baseOffset + info.lastOffsetDelta >= offset) cb(info);
      pos += info.size;
    }
  }

  /** Would appending these batches have to go to a new segment? */
  shouldRoll(bytes: number, batches: number, lastOffset: number, maxTimestamp: number, now: number, segmentBytes: number, segmentMs: number): boolean {
    if (this.size === 0) return false;
    if (this.size + bytes > segmentBytes) return true;
    // Kafka's timeWaitedForRoll: by record time when the segment's first
    // batch has a timestamp (so replayed old data does not roll every
    // append), else by the segment's creation time.
    const waited = this.firstTimestamp >= 0 ? maxTimestamp - this.firstTimestamp : now - this.createdMs;
    if (waited > segmentMs) return true;
    if (this.offsetIndex.entries + batches > this.offsetIndex.maxEntries) return true;
    if (this.timeIndex.entries + batches + 1 > this.timeIndex.maxEntries) return true;
    return lastOffset - this.baseOffset > INT32_MAX;
  }

  /** False once rolled (its indexes are read-only). */
  get writable(): boolean {
    return this.offsetIndex.active && this.timeIndex.active;
  }

  /** Appends `records` (already validated, offsets assigned) at the end; updates the indexes. */
  async append(records: Buffer, batches: BatchInfo[], interval: number, now: number): Promise<void> {
    if (!this.writable) throw new Error(`segment ${this.logPath} is sealed`);
    // Room for every entry these batches may add (and the one sealing adds),
    // before anything is written: a full disk fails the append cleanly.
    await this.offsetIndex.ensureCapacity(this.offsetIndex.entries + batches.length);
    await this.timeIndex.ensureCapacity(this.timeIndex.entries + batches.length + 1);
    const start = this.size;
    try {
      await writeAll(this.fd, records, 0, records.length, start);
    } catch (err) {
      // All-or-nothing: cut whatever part of the records reached the file.
      await ftruncateFd(this.fd, start).catch(() => {});
      throw err;
    }
    for (const b of batches) {
      this.#indexBatch(b.baseOffset, b.maxTimestamp, start + b.position, b.size, interval);
      this.#remember(b.baseOffset, start + b.position, b.size);
    }
    if (this.firstTimestamp < 0 && batches.length > 0) this.firstTimestamp = batches[0]!.maxTimestamp;
    const last = batches[batches.length - 1]!;
    this.nextOffset = last.baseOffset + last.lastOffsetDelta + 1;
    this.size = start + records.length;
    this.lastModifiedMs = now;
  }

  #indexBatch(baseOffset: number, maxTimestamp: number, position: number, size: number, interval: number): void {
    if (maxTimestamp > this.maxTimestamp) {
      this.maxTimestamp = maxTimestamp;
      this.offsetOfMaxTimestamp = baseOffset;
    }
    if (this.#bytesSinceIndex > interval) {
      this.offsetIndex.append(baseOffset - this.baseOffset, position);
      this.#maybeAppendTime();
      this.#bytesSinceIndex = 0;
    }
    this.#bytesSinceIndex += size;
  }

  #maybeAppendTime(): void {
    const ti = this.timeIndex;
    if (this.maxTimestamp < 0) return;
    if (ti.entries > 0 && ti.key(ti.entries - 1) >= this.maxTimestamp) return;
    ti.append(this.maxTimestamp, this.offsetOfMaxTimestamp - this.baseOffset);
  }

  #remember(baseOffset: number, position: number, size: number): void {
    if (this.#ringOff.length === 0) {
      this.#ringOff = new Float64Array(RING);
      this.#ringPos = new Float64Array(RING);
      this.#ringSize = new Float64Array(RING);
    }
    let i: number;
    if (this.#ringLen < RING) i = (this.#ringStart + this.#ringLen++) % RING;
    else {
      i = this.#ringStart;
      this.#ringStart = (this.#ringStart + 1) % RING;
    }
    this.#ringOff[i] = baseOffset;
    this.#ringPos[i] = position;
    this.#ringSize[i] = size;
  }

  /**
   * The batch holding `offset` (which must be in [baseOffset, nextOffset)):
   * from the ring of recent appends when it is there (no I/O), else by the
   * offset index and a walk of batch headers. Undefined when not found.
   */
  findBatch(offset: number): { position: number; size: number } | undefined {
    const n = this.#ringLen;
    if (n > 0 && offset >= this.#ringOff[this.#ringStart]! && offset < this.nextOffset) {
      let lo = 0;
      let hi = n - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >>> 1;
        if (this.#ringOff[(this.#ringStart + mid) % RING]! <= offset) lo = mid;
        else hi = mid - 1;
      }
      const i = (this.#ringStart + lo) % RING;
      return { position: this.#ringPos[i]!, size: this.#ringSize[i]! };
    }
    const oi = this.offsetIndex;
    const e = oi.floor(offset - this.baseOffset);
    let found: { position: number; size: number } | undefined;
    this.#walk(e >= 0 ? oi.value(e) : 0, (buf, at, pos) => {
      const base = Number(buf.readBigInt64BE(at + OFF_BASE_OFFSET));
      if (base + buf.readInt32BE(at + OFF_LAST_OFFSET_DELTA) >= offset) {
        found = { position: pos, size: LOG_OVERHEAD + buf.readInt32BE(at + OFF_LENGTH) };
        return false;
      }
      return true;
    });
    return found;
  }

  /**
   * The first record with timestamp >= ts in this segment, by the time
   * index, the offset index and a walk of batch headers.
   */
  findTimestamp(ts: number): { offset: number; timestamp: number } | undefined {
    if (this.maxTimestamp < ts) return undefined;
    const ti = this.timeIndex;
    const e = ti.floor(ts);
    const fromOffset = e >= 0 ? this.baseOffset + ti.value(e) : this.baseOffset;
    const oe = this.offsetIndex.floor(fromOffset - this.baseOffset);
    let hit: { pos: number; size: number } | undefined;
    this.#walk(oe >= 0 ? this.offsetIndex.value(oe) : 0, (buf, at, pos) => {
      if (Number(buf.readBigInt64BE(at + OFF_MAX_TIMESTAMP)) >= ts) {
        hit = { pos, size: LOG_OVERHEAD + buf.readInt32BE(at + OFF_LENGTH) };
        return false;
      }
      return true;
    });
    if (hit === undefined) return undefined;
    const batch = Buffer.allocUnsafe(hit.size);
    if (readAtSync(this.fd, batch, 0, hit.size, hit.pos) !== hit.size) return undefined;
    return findRecordAtTimestamp(batch, ts);
  }

  /** Visits batch headers from `pos` to the committed end (synchronous small reads). */
  #walk(pos: number, visit: (buf: Buffer, at: number, pos: number) => boolean): void {
    let chunkPos = -1;
    let chunkLen = 0;
    while (pos + BATCH_HEADER_SIZE <= this.size) {
      if (chunkPos < 0 || pos < chunkPos || pos + BATCH_HEADER_SIZE > chunkPos + chunkLen) {
        chunkPos = pos;
        chunkLen = readAtSync(this.fd, scratch, 0, Math.min(WALK_CHUNK, this.size - pos), pos);
        if (chunkLen < BATCH_HEADER_SIZE) return;
      }
      const at = pos - chunkPos;
      const size = LOG_OVERHEAD + scratch.readInt32BE(at + OFF_LENGTH);
      if (size < BATCH_HEADER_SIZE) return;
      if (!visit(scratch, at, pos)) return;
      pos += size;
    }
  }

  /** Roll: the final time-index entry, then both indexes unmapped, trimmed and mapped read-only. */
  async seal(): Promise<void> {
    if (!this.offsetIndex.active) return;
    this.#maybeAppendTime();
    this.#ringOff = this.#ringPos = this.#ringSize = new Float64Array(0);
    this.#ringLen = 0;
    await this.offsetIndex.seal();
    await this.timeIndex.seal();
  }

  /** fsync the log (and the indexes) up to what is written now. */
  async flush(): Promise<void> {
    if (this.#fdClosed) return;
    const upTo = this.size;
    if (upTo > this.flushedSize) {
      this.retain();
      try {
        await fsyncFd(this.fd);
      } finally {
        this.release();
      }
      this.flushedSize = Math.max(this.flushedSize, upTo);
    }
    await this.offsetIndex.flush();
    await this.timeIndex.flush();
  }

  retain(): void {
    this.#refs++;
  }

  /** Drops a reference; the last one closes the fd. */
  release(): void {
    if (--this.#refs === 0 && !this.#fdClosed) {
      this.#fdClosed = true;
      fs.close(this.fd, () => this.#onFdClosed?.());
    }
  }

  get refs(): number {
    return this.#refs;
  }

  get fdClosed(): boolean {
    return this.#fdClosed;
  }

  /** Resolves once the fd is closed (all references released). */
  whenClosed(): Promise<void> {
    if (this.#fdClosed) return Promise.resolve();
    return new Promise((resolve) => {
      const prev = this.#onFdClosed;
      this.#onFdClosed = () => {
        prev?.();
        resolve();
      };
    });
  }

  /** Closes the fd now, whatever references remain (shutdown after its timeout). */
  forceClose(): void {
    this.offsetIndex.drop();
    this.timeIndex.drop();
    if (this.#fdClosed) return;
    this.#refs = 0;
    this.#fdClosed = true;
    fs.close(this.fd, () => this.#onFdClosed?.());
  }

  /** Clean close: trims the active indexes, releases the log's reference. */
  async close(): Promise<void> {
    if (this.offsetIndex.active) this.#maybeAppendTime();
    await this.offsetIndex.close();
    await this.timeIndex.close();
    this.release();
  }

  /** Retention or topic deletion: unlink the files; the fd lives while slices hold it. */
  async delete(): Promise<void> {
    this.deleted = true;
    this.offsetIndex.drop();
    this.timeIndex.drop();
    for (const p of [this.logPath, this.indexPath, this.timeIndexPath]) await fs.promises.rm(p, { force: true });
    this.release();
  }
}

function entriesBuffer(flat: number[], entrySize: number): Buffer {
  const n = flat.length / 2;
  const buf = Buffer.alloc(n * entrySize);
  for (let i = 0; i < n; i++) {
    if (entrySize === OFFSET_ENTRY) {
      buf.writeInt32BE(flat[2 * i]!, i * 8);
      buf.writeInt32BE(flat[2 * i + 1]!, i * 8 + 4);
    } else {
      buf.writeBigInt64BE(BigInt(flat[2 * i]!), i * 12);
      buf.writeInt32BE(flat[2 * i + 1]!, i * 12 + 8);
    }
  }
  return buf;
}

/** Cheap checks of trimmed index files (Kafka's sanityCheck): last entries within the log, offsets non-negative. */
async function indexesLookSane(oiPath: string, oiSize: number, tiPath: string, tiSize: number, logSize: number): Promise<boolean> {
  const b = Buffer.alloc(12);
  if (oiSize > 0) {
    const fd = await openFd(oiPath, 'r');
    try {
      await readAt(fd, b, 0, 8, oiSize - 8);
    } finally {
      await closeFd(fd);
    }
    const rel = b.readInt32BE(0);
    const pos = b.readInt32BE(4);
    if (rel < 0 || pos < 0 || pos >= logSize) return false;
    if (oiSize >= 16 && rel === 0) return false; // a preallocated, never trimmed file reads as zeros
  }
  if (tiSize > 0) {
    const fd = await openFd(tiPath, 'r');
    try {
      await readAt(fd, b, 0, 12, tiSize - 12);
    } finally {
      await closeFd(fd);
    }
    if (b.readInt32BE(8) < 0 || (tiSize >= 24 && b.readBigInt64BE(0) === 0n && b.readInt32BE(8) === 0)) return false;
  }
  return true;
}

/**
 * Reads every batch of a segment from byte 0: in recovery mode checks CRC,
 * magic, length and that offsets continue without a gap; rebuilds the index
 * entries by the same rule as append. Stops at the first bad batch.
 */
async function scanSegment(fd: number, baseOffset: number, size: number, opts: OpenOptions): Promise<{ state: ScanState; validEnd: number }> {
  const interval = opts.limits.indexIntervalBytes;
  const s: ScanState = { nextOffset: baseOffset, maxTimestamp: -1, offsetOfMaxTimestamp: baseOffset, bytesSinceIndex: 0, firstTimestamp: -1, offsetEntries: [], timeEntries: [] };
  let buf = Buffer.allocUnsafe(Math.min(SCAN_CHUNK, Math.max(size, BATCH_HEADER_SIZE)));
  let chunkPos = 0;
  let chunkLen = 0;
  let pos = 0;
  while (pos < size) {
    // Make sure the header is in the buffer, then the whole batch.
    if (pos + BATCH_HEADER_SIZE > chunkPos + chunkLen) {
      chunkPos = pos;
      chunkLen = await readAt(fd, buf, 0, Math.min(buf.length, size - pos), pos);
      if (chunkLen < BATCH_HEADER_SIZE) break;
    }
    const batchSize = LOG_OVERHEAD + buf.readInt32BE(pos - chunkPos + OFF_LENGTH);
    if (batchSize < BATCH_HEADER_SIZE || batchSize > size - pos) break;
    if (pos + batchSize > chunkPos + chunkLen) {
      if (batchSize > buf.length) buf = Buffer.allocUnsafe(batchSize);
      chunkPos = pos;
      chunkLen = await readAt(fd, buf, 0, Math.min(buf.length, size - pos), pos);
      if (chunkLen < batchSize) break;
    }
    const at = pos - chunkPos;
    if (opts.recover && checkStoredBatch(buf, at, chunkLen) !== batchSize) break;
    const info = readBatchInfo(buf, at, pos);
    if (opts.recover && (info.baseOffset !== s.nextOffset || info.lastOffsetDelta < 0)) break;
    opts.onBatch?.(info);
    if (s.firstTimestamp < 0 && pos === 0) s.firstTimestamp = info.maxTimestamp;
    if (info.maxTimestamp > s.maxTimestamp) {
      s.maxTimestamp = info.maxTimestamp;
      s.offsetOfMaxTimestamp = info.baseOffset;
    }
    if (s.bytesSinceIndex > interval) {
      s.offsetEntries.push(info.baseOffset - baseOffset, pos);
      const lastTs = s.timeEntries.length > 0 ? s.timeEntries[s.timeEntries.length - 2]! : -1;
      if (s.maxTimestamp >= 0 && s.maxTimestamp > lastTs) s.timeEntries.push(s.maxTimestamp, s.offsetOfMaxTimestamp - baseOffset);
      s.bytesSinceIndex = 0;
    }
    s.bytesSinceIndex += batchSize;
    s.nextOffset = info.baseOffset + info.lastOffsetDelta + 1;
    pos += batchSize;
  }
  return { state: s, validEnd: pos };
}
