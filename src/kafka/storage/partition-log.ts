/**
 * One topic-partition: its segments, producer state, appends, reads,
 * retention, flushing and recovery at load.
 *
 * @module
 */
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { OFF_BASE_OFFSET, OFF_LEADER_EPOCH, validateBatches, type BatchInfo } from './batch.js';
import type { LogConfig } from './config.js';
import { ErrorCode } from './errors.js';
import { fsyncDir, readAtSync } from './fs-util.js';
import { ProducerState } from './producer-state.js';
import { Segment, segmentName } from './segment.js';

export interface AppendResult {
  /** 0 on success. */
  errorCode: number;
  /** Offset given to the first record of the first batch (-1 on error). */
  baseOffset: number;
  /** -1 (CreateTime topics). */
  logAppendTimeMs: number;
  logStartOffset: number;
  recordErrors?: Array<{ batchIndex: number; message: string }>;
}

/**
 * One slice of a segment file, to be sent with zcopy (sendfile). The fd stays
 * open until release() is called, even if retention deletes the segment
 * meanwhile (refcounted).
 */
export interface FileSlice {
  fd: number;
  /** Byte position in the .log file. */
  position: number;
  length: number;
  /** Idempotent. */
  release(): void;
}

export interface ReadResult {
  /** 0, OFFSET_OUT_OF_RANGE, or UNKNOWN_TOPIC_OR_PARTITION after close/delete. */
  errorCode: number;
  highWatermark: number;
  logStartOffset: number;
  /** = highWatermark (no transactions). */
  lastStableOffset: number;
  /** In order; total length <= maxBytes except the minOneMessage case. */
  slices: FileSlice[];
  /** Sum of slice lengths. */
  bytes: number;
}

/** @internal What the manager learns from a partition. */
export interface PartitionHooks {
  /** The recovery point moved (a flush completed): checkpoint it. */
  onRecoveryPoint(log: PartitionLog): void;
}

/** @internal */
export interface LoadOptions {
  clean: boolean;
  /** Offset up to which the log was flushed (from the checkpoint), or -1. */
  recoveryPoint: number;
  hooks: PartitionHooks;
  now: number;
}

const SNAPSHOT = 'producer-state.json';
const SEGMENT_RE = /^(\d{20})\.log$/;

/**
 * A topic-partition's log. Get one from {@link LogManager.partition}.
 *
 * @hideconstructor
 */
export class PartitionLog {
  readonly topic: string;
  readonly partition: number;
  /** @internal */
  readonly dir: string;
  /** @internal */
  config: LogConfig;
  #segments: Segment[] = [];
  #producers = new ProducerState();
  #lock: Promise<unknown> = Promise.resolve();
  #background: Promise<unknown> = Promise.resolve();
  #listeners = new Set<() => void>();
  #hooks: PartitionHooks;
  #unflushedMessages = 0;
  #closed = false;
  /** Deleted segments whose fds slices still hold. */
  #retired = new Set<Segment>();
  /** @internal Offset below which everything is fsynced. */
  recoveryPoint = 0;
  /** @internal When the last flush completed (for log.flush.interval.ms). */
  lastFlushMs: number;
  /** @internal Bytes cut off by recovery at load. */
  truncatedBytes = 0;
  /** @internal True when load ran recovery on at least one segment. */
  recovered = false;

  private constructor(topic: string, partition: number, dir: string, config: LogConfig, hooks: PartitionHooks, now: number) {
    this.topic = topic;
    this.partition = partition;
    this.dir = dir;
    this.config = config;
    this.#hooks = hooks;
    this.lastFlushMs = now;
  }

  /** @internal Opens (creates) the partition directory and loads it. */
  static async load(topic: string, partition: number, dir: string, config: LogConfig, opts: LoadOptions): Promise<PartitionLog> {
    const log = new PartitionLog(topic, partition, dir, config, opts.hooks, opts.now);
    try {
      await log.#load(opts);
    } catch (err) {
      for (const s of log.#segments) s.forceClose();
      throw err;
    }
    return log;
  }

  get #limits(): { segmentBytes: number; indexIntervalBytes: number } {
    return { segmentBytes: this.config.segmentBytes, indexIntervalBytes: this.config.indexIntervalBytes };
  }

  async #load(opts: LoadOptions): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const names = await readdir(this.dir);
    const bases: number[] = [];
    for (const n of names) {
      const m = SEGMENT_RE.exec(n);
      if (m) bases.push(Number(m[1]));
      else if (n.endsWith('.tmp')) await rm(join(this.dir, n), { force: true });
    }
    bases.sort((a, b) => a - b);
    const snapPath = join(this.dir, SNAPSHOT);
    if (bases.length === 0) {
      await rm(snapPath, { force: true });
      this.#segments.push(await Segment.create(this.dir, 0, this.#limits, opts.now));
      await fsyncDir(this.dir);
      return;
    }
    // Stray index files of segments that no longer exist.
    const baseSet = new Set(bases.map(segmentName));
    for (const n of names) {
      const m = /^(\d{20})\.(index|timeindex)$/.exec(n);
      if (m && !baseSet.has(m[1]!)) await rm(join(this.dir, n), { force: true });
    }
    const snapOffset = await this.#producers.loadSnapshot(snapPath);
    // Producer state: the snapshot, then every batch after its offset.
    const scanFrom = snapOffset >= 0 ? snapOffset : 0;
    const track = (b: BatchInfo): void => {
      if (b.baseOffset >= scanFrom) this.#producers.update(b);
    };
    // Unclean: recover from the segment holding the recovery point on.
    let recoverFrom = bases.length;
    if (!opts.clean) {
      recoverFrom = 0;
      if (opts.recoveryPoint >= 0) for (let i = 0; i < bases.length; i++) if (bases[i]! <= opts.recoveryPoint) recoverFrom = i;
    }
    for (let i = 0; i < bases.length; i++) {
      const last = i === bases.length - 1;
      const recover = i >= recoverFrom;
      // A recovery scan reads every batch anyway: it feeds the producer state.
      const { segment, truncated } = await Segment.open(this.dir, bases[i]!, { active: last, recover, limits: this.#limits, onBatch: recover ? track : undefined });
      if (!recover && (last ? segment.nextOffset > scanFrom : bases[i + 1]! > scanFrom)) await segment.forEachBatchFrom(scanFrom, track);
      if (recover) this.recovered = true;
      this.truncatedBytes += truncated;
      const prev = this.#segments[this.#segments.length - 1];
      if (prev !== undefined) prev.nextOffset = segment.baseOffset;
      const broken = recover && !last && (truncated > 0 || segment.nextOffset !== bases[i + 1]);
      this.#segments.push(segment);
      if (broken) {
        // Everything after a damaged segment is unreachable (offsets would
        // have a gap): Kafka deletes it too.
        for (const b of bases.slice(i + 1)) {
          for (const ext of ['log', 'index', 'timeindex']) await rm(join(this.dir, `${segmentName(b)}.${ext}`), { force: true });
        }
        this.#segments.pop();
        await segment.close();
        const reopened = await Segment.open(this.dir, bases[i]!, { active: true, recover: false, limits: this.#limits });
        this.#segments.push(reopened.segment);
        break;
      }
      if (!last && !recover) segment.nextOffset = bases[i + 1]!;
    }
    const leo = this.logEndOffset;
    if (snapOffset > leo) {
      // The snapshot is ahead of a log that recovery cut: rebuild from scratch.
      this.#producers.clear();
      for (const s of this.#segments) await s.forEachBatchFrom(s.baseOffset, (b) => this.#producers.update(b));
    }
    this.#producers.truncateHead(this.logStartOffset);
    if (!opts.clean) {
      // What recovery verified is in the page cache; make it durable before
      // calling it recovered.
      for (const s of this.#segments) await s.flush();
    }
    this.recoveryPoint = leo;
    await fsyncDir(this.dir);
  }

  get #active(): Segment {
    return this.#segments[this.#segments.length - 1]!;
  }

  /** First offset still in the log. */
  get logStartOffset(): number {
    return this.#segments.length > 0 ? this.#segments[0]!.baseOffset : this.#closedStart;
  }

  /** Next offset to assign. */
  get logEndOffset(): number {
    return this.#segments.length > 0 ? this.#active.nextOffset : this.#closedLeo;
  }

  /** Single node: every completed append is committed, so this is logEndOffset. */
  get highWatermark(): number {
    return this.logEndOffset;
  }

  /** @internal Bytes in all segments. */
  get size(): number {
    let n = 0;
    for (const s of this.#segments) n += s.size;
    return n;
  }

  /** @internal For tests and tools: the segments' base offsets. */
  segmentBaseOffsets(): number[] {
    return this.#segments.map((s) => s.baseOffset);
  }

  /** @internal */
  get closed(): boolean {
    return this.#closed;
  }

  /** @internal Records appended since the last flush. */
  get unflushedMessages(): number {
    return this.#unflushedMessages;
  }

  #withLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(fn, fn);
    this.#lock = run.catch(() => {});
    return run;
  }

  #error(errorCode: number, batchIndex: number, message: string): AppendResult {
    return { errorCode, baseOffset: -1, logAppendTimeMs: -1, logStartOffset: this.logStartOffset, recordErrors: [{ batchIndex, message }] };
  }

  /**
   * Appends a Produce request's records for this partition: one or more
   * RecordBatch v2 back to back, exactly as received. Validates each batch
   * (length, magic 2, CRC-32C, size <= maxMessageBytes, producer sequence),
   * assigns offsets by rewriting baseOffset (and partitionLeaderEpoch) in
   * place, appends to the active segment (rolling first if needed), updates
   * the indexes and flushes per config. All-or-nothing per call. Never
   * rejects for bad input: the error is in `errorCode`.
   */
  append(records: Buffer, now: number = Date.now()): Promise<AppendResult> {
    if (!Buffer.isBuffer(records)) return Promise.resolve(this.#error(ErrorCode.CORRUPT_MESSAGE, 0, 'records must be a Buffer'));
    // CRC and structure checks need no state: outside the lock.
    const v = validateBatches(records, this.config.maxMessageBytes);
    if (!v.ok) return Promise.resolve(this.#error(v.errorCode, v.batchIndex, v.message));
    return this.#withLock(async (): Promise<AppendResult> => {
      if (this.#closed) return this.#error(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, 0, `${this.topic}-${this.partition} is closed`);
      const batches = v.batches;
      if (batches.length === 0) return { errorCode: ErrorCode.NONE, baseOffset: -1, logAppendTimeMs: -1, logStartOffset: this.logStartOffset };
      const staged = new Map();
      let next = this.logEndOffset;
      for (let i = 0; i < batches.length; i++) {
        const b = batches[i]!;
        const c = this.#producers.check(b, staged);
        if (c.kind === 'error') return this.#error(c.errorCode, i, c.message);
        if (c.kind === 'duplicate') {
          // A retry of a batch already in the log: acknowledge it with its offset.
          return { errorCode: ErrorCode.NONE, baseOffset: c.firstOffset, logAppendTimeMs: -1, logStartOffset: this.logStartOffset };
        }
        b.baseOffset = next;
        next += b.lastOffsetDelta + 1;
        this.#producers.update(b, staged);
      }
      const first = batches[0]!.baseOffset;
      for (const b of batches) {
        records.writeBigInt64BE(BigInt(b.baseOffset), b.position + OFF_BASE_OFFSET);
        records.writeInt32BE(0, b.position + OFF_LEADER_EPOCH);
      }
      try {
        let maxTs = -1;
        for (const b of batches) maxTs = Math.max(maxTs, b.maxTimestamp);
        // A sealed active segment: an earlier roll could not create the next one (disk full).
        if (!this.#active.writable || this.#active.shouldRoll(records.length, batches.length, next - 1, maxTs, now, this.config.segmentBytes, this.config.segmentMs)) await this.#roll(now, batches.length);
        await this.#active.append(records, batches, this.config.indexIntervalBytes, now);
      } catch (err) {
        return this.#error(ErrorCode.KAFKA_STORAGE_ERROR, 0, `append to ${this.topic}-${this.partition} failed: ${(err as Error).message}`);
      }
      this.#producers.commit(staged);
      this.#unflushedMessages += v.records;
      if (this.#unflushedMessages >= this.config.flushIntervalMessages) {
        try {
          await this.#flushLocked(now);
        } catch (err) {
          return this.#error(ErrorCode.KAFKA_STORAGE_ERROR, 0, `flush of ${this.topic}-${this.partition} failed: ${(err as Error).message}`);
        }
      }
      for (const l of [...this.#listeners]) {
        try {
          l();
        } catch {
          // A listener's failure is its own business.
        }
      }
      return { errorCode: ErrorCode.NONE, baseOffset: first, logAppendTimeMs: -1, logStartOffset: this.logStartOffset };
    });
  }

  async #roll(now: number, batchesHint: number): Promise<void> {
    const old = this.#active;
    const base = this.logEndOffset;
    await old.seal();
    const seg = await Segment.create(this.dir, base, this.#limits, now, batchesHint);
    this.#segments.push(seg);
    // Kafka flushes the rolled segment in the background and moves the
    // recovery point to the new segment; the producer snapshot is taken
    // now (it describes the state at `base`) and written after the flush.
    const snapshot = this.#producers.serialize(base);
    old.retain();
    this.#background = this.#background.then(async () => {
      try {
        await old.flush();
        await fsyncDir(this.dir);
        if (this.#closed) return;
        await ProducerState.writeSnapshot(join(this.dir, SNAPSHOT), snapshot);
        if (base > this.recoveryPoint) {
          this.recoveryPoint = base;
          this.#hooks.onRecoveryPoint(this);
        }
      } catch {
        // The next flush retries; recovery covers the rest.
      } finally {
        old.release();
      }
    });
  }

  /** fsync everything appended so far; moves the recovery point. */
  flush(now: number = Date.now()): Promise<void> {
    return this.#withLock(() => (this.#closed ? Promise.resolve() : this.#flushLocked(now)));
  }

  async #flushLocked(now: number): Promise<void> {
    const target = this.logEndOffset;
    const pending = this.#unflushedMessages;
    for (const s of this.#segments) if (s.nextOffset > this.recoveryPoint || s === this.#active) await s.flush();
    this.#unflushedMessages = Math.max(0, this.#unflushedMessages - pending);
    this.lastFlushMs = now;
    if (target > this.recoveryPoint) {
      this.recoveryPoint = target;
      this.#hooks.onRecoveryPoint(this);
    }
  }

  /**
   * Slices starting at the batch containing `offset`, cut at `maxBytes`,
   * never beyond the high watermark; with `minOneMessage` the first batch is
   * whole even when larger than maxBytes (KIP-74). May cross segment
   * boundaries; the last slice may end inside a batch (clients drop it).
   * The caller must release() every slice.
   */
  read(offset: number, maxBytes: number, minOneMessage: boolean): ReadResult {
    const hw = this.highWatermark;
    const res: ReadResult = { errorCode: ErrorCode.NONE, highWatermark: hw, logStartOffset: this.logStartOffset, lastStableOffset: hw, slices: [], bytes: 0 };
    if (this.#closed) {
      res.errorCode = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION;
      return res;
    }
    if (!Number.isSafeInteger(offset) || offset < this.logStartOffset || offset > hw) {
      res.errorCode = ErrorCode.OFFSET_OUT_OF_RANGE;
      return res;
    }
    // NaN or a negative limit reads nothing (but the KIP-74 first batch).
    const max = maxBytes === Infinity ? Number.MAX_SAFE_INTEGER : Number.isFinite(maxBytes) ? Math.max(0, Math.floor(maxBytes)) : 0;
    if (offset === hw || (max <= 0 && !minOneMessage)) return res;
    let i = this.#segmentFor(offset);
    const found = this.#segments[i]!.findBatch(offset);
    let pos = 0;
    let firstSize = 0;
    if (found === undefined) i++;
    else ({ position: pos, size: firstSize } = found);
    let remaining = max;
    let first = true;
    for (; i < this.#segments.length; i++, pos = 0) {
      const seg = this.#segments[i]!;
      const avail = seg.size - pos;
      if (avail <= 0) continue;
      let len = Math.min(avail, remaining);
      if (first && minOneMessage) {
        const head = Buffer.allocUnsafe(12);
        if (firstSize === 0 && readAtSync(seg.fd, head, 0, 12, pos) === 12) firstSize = 12 + head.readInt32BE(8);
        len = Math.max(len, Math.min(avail, firstSize));
      }
      first = false;
      if (len <= 0) break;
      res.slices.push(this.#slice(seg, pos, len));
      res.bytes += len;
      remaining -= len;
      if (remaining <= 0) break;
    }
    return res;
  }

  #slice(seg: Segment, position: number, length: number): FileSlice {
    seg.retain();
    let released = false;
    return {
      fd: seg.fd,
      position,
      length,
      release: () => {
        if (released) return;
        released = true;
        seg.release();
        if (seg.fdClosed) this.#retired.delete(seg);
      },
    };
  }

  /** Index of the last segment whose base offset is <= offset. */
  #segmentFor(offset: number): number {
    let lo = 0;
    let hi = this.#segments.length - 1;
    let found = 0;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#segments[mid]!.baseOffset <= offset) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  /**
   * ListOffsets: -1 latest (high watermark), -2 earliest (log start), -3 the
   * record with the largest timestamp; else the first record whose timestamp
   * is >= ts, with that timestamp; {offset: -1, timestamp: -1} if none.
   */
  offsetForTimestamp(ts: number): { offset: number; timestamp: number } {
    if (ts === -1) return { offset: this.highWatermark, timestamp: -1 };
    if (ts === -2) return { offset: this.logStartOffset, timestamp: -1 };
    if (this.#closed) return { offset: -1, timestamp: -1 };
    if (ts === -3) {
      let best: Segment | undefined;
      for (const s of this.#segments) if (s.size > 0 && (best === undefined || s.maxTimestamp > best.maxTimestamp)) best = s;
      if (best === undefined || best.maxTimestamp < 0) return { offset: -1, timestamp: -1 };
      return { offset: best.offsetOfMaxTimestamp, timestamp: best.maxTimestamp };
    }
    for (const s of this.#segments) {
      if (s.maxTimestamp < ts) continue;
      const r = s.findTimestamp(ts);
      if (r !== undefined) return r;
    }
    return { offset: -1, timestamp: -1 };
  }

  /** Calls `listener` after every successful append (long-poll wake-up). Returns the unsubscribe function. */
  onAppend(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /**
   * @internal Retention: deletes whole segments oldest first, by the age of
   * their newest record (retentionMs) and the partition's total size
   * (retentionBytes); never the active segment. Returns the bytes deleted.
   */
  enforceRetention(now: number): Promise<number> {
    return this.#withLock(async () => {
      if (this.#closed) return 0;
      const { retentionMs, retentionBytes } = this.config;
      let total = this.size;
      let n = 0;
      while (n < this.#segments.length - 1) {
        const s = this.#segments[n]!;
        const newest = s.maxTimestamp >= 0 ? s.maxTimestamp : s.lastModifiedMs;
        const byTime = retentionMs >= 0 && now - newest > retentionMs;
        const bySize = retentionBytes >= 0 && total - s.size >= retentionBytes;
        if (!byTime && !bySize) break;
        total -= s.size;
        n++;
      }
      if (n === 0) return 0;
      const gone = this.#segments.splice(0, n);
      let bytes = 0;
      for (const s of gone) {
        bytes += s.size;
        if (s.refs > 1) this.#retired.add(s);
        await s.delete();
      }
      this.#producers.truncateHead(this.logStartOffset);
      if (this.recoveryPoint < this.logStartOffset) this.recoveryPoint = this.logStartOffset;
      this.#hooks.onRecoveryPoint(this);
      await fsyncDir(this.dir);
      return bytes;
    });
  }

  /**
   * @internal Clean close: waits for appends in flight, flushes, trims the
   * active indexes, writes the producer snapshot. Returns the segments whose
   * fds slices still hold (the manager waits for or forces them).
   */
  close(now: number = Date.now()): Promise<Segment[]> {
    return this.#withLock(async () => {
      if (this.#closed) return [];
      await this.#background;
      await this.#flushLocked(now);
      this.#closed = true;
      await ProducerState.writeSnapshot(join(this.dir, SNAPSHOT), this.#producers.serialize(this.logEndOffset));
      this.#closedLeo = this.logEndOffset;
      this.#closedStart = this.logStartOffset;
      const segs = this.#segments;
      for (const s of segs) await s.close();
      this.#segments = [];
      this.#listeners.clear();
      return [...segs, ...this.#retired].filter((s) => !s.fdClosed);
    });
  }

  #closedLeo = 0;
  #closedStart = 0;

  /** @internal Deletes the partition: files removed, fds live on while slices hold them. */
  destroy(): Promise<Segment[]> {
    return this.#withLock(async () => {
      this.#closed = true;
      await this.#background;
      this.#closedLeo = this.logEndOffset;
      this.#closedStart = this.logStartOffset;
      const segs = this.#segments;
      this.#segments = [];
      for (const s of segs) await s.delete();
      this.#listeners.clear();
      await rm(this.dir, { recursive: true, force: true });
      return [...segs, ...this.#retired].filter((s) => !s.fdClosed);
    });
  }
}
