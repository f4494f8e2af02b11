/**
 * Idempotent producer state: per producer id, its epoch and the metadata of
 * its last 5 batches (Kafka keeps 5: a producer has at most 5 requests in
 * flight), enough to acknowledge a retried batch with its original offset
 * and to detect sequence gaps.
 *
 * The state is rebuilt at load from a snapshot file (`producer-state.json`,
 * written on clean close and after each roll's flush) plus a scan of the batch
 * headers after the snapshot's offset: headers carry producerId, epoch and
 * baseSequence.
 *
 * @module
 */
import { readFile } from 'node:fs/promises';
import type { BatchInfo } from './batch.js';
import { crc32c } from '../../index.js';
import { ErrorCode } from './errors.js';
import { writeFileAtomic } from './fs-util.js';

const INT32_MAX = 0x7fffffff;
export const MAX_CACHED_BATCHES = 5;

/** firstSeq, lastSeq, firstOffset, lastOffset */
type BatchMeta = [number, number, number, number];

interface ProducerEntry {
  epoch: number;
  batches: BatchMeta[];
}

/** Kafka's DefaultRecordBatch.incrementSequence: sequences wrap at INT32_MAX to 0. */
export function incrementSequence(seq: number, by: number): number {
  return seq > INT32_MAX - by ? by - (INT32_MAX - seq) - 1 : seq + by;
}

export type SequenceCheck =
  | { kind: 'ok' }
  | { kind: 'duplicate'; firstOffset: number; lastOffset: number }
  | { kind: 'error'; errorCode: number; message: string };

export class ProducerState {
  #producers = new Map<number, ProducerEntry>();

  get size(): number {
    return this.#producers.size;
  }

  /**
   * Checks batch `b` against the state, with `staged` holding entries changed
   * by earlier batches of the same append (so a multi-batch request is
   * checked in order and nothing is committed until the append succeeds).
   */
  check(b: BatchInfo, staged: Map<number, ProducerEntry>): SequenceCheck {
    if (b.producerId < 0) return { kind: 'ok' };
    const e = staged.get(b.producerId) ?? this.#producers.get(b.producerId);
    if (e === undefined) return { kind: 'ok' };
    if (b.producerEpoch < e.epoch) {
      return { kind: 'error', errorCode: ErrorCode.INVALID_PRODUCER_EPOCH, message: `producer ${b.producerId}: epoch ${b.producerEpoch} is older than the current epoch ${e.epoch}` };
    }
    if (b.producerEpoch > e.epoch) {
      if (b.baseSequence !== 0) {
        return { kind: 'error', errorCode: ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, message: `producer ${b.producerId}: new epoch ${b.producerEpoch} must start at sequence 0, got ${b.baseSequence}` };
      }
      return { kind: 'ok' };
    }
    const lastSeq = incrementSequence(b.baseSequence, b.lastOffsetDelta);
    for (const m of e.batches) {
      if (m[0] === b.baseSequence && m[1] === lastSeq) return { kind: 'duplicate', firstOffset: m[2], lastOffset: m[3] };
    }
    const last = e.batches[e.batches.length - 1];
    if (last !== undefined && b.baseSequence !== incrementSequence(last[1], 1)) {
      return { kind: 'error', errorCode: ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, message: `producer ${b.producerId} epoch ${b.producerEpoch}: expected sequence ${incrementSequence(last[1], 1)}, got ${b.baseSequence}` };
    }
    return { kind: 'ok' };
  }

  /** Records batch `b` (its baseOffset assigned) into `staged` (or the state itself when staged is omitted). */
  update(b: BatchInfo, staged?: Map<number, ProducerEntry>): void {
    if (b.producerId < 0) return;
    const target = staged ?? this.#producers;
    const cur = staged?.get(b.producerId) ?? this.#producers.get(b.producerId);
    let e: ProducerEntry;
    if (cur === undefined || b.producerEpoch !== cur.epoch) e = { epoch: b.producerEpoch, batches: [] };
    else e = { epoch: cur.epoch, batches: cur.batches.slice() };
    e.batches.push([b.baseSequence, incrementSequence(b.baseSequence, b.lastOffsetDelta), b.baseOffset, b.baseOffset + b.lastOffsetDelta]);
    if (e.batches.length > MAX_CACHED_BATCHES) e.batches.shift();
    target.set(b.producerId, e);
  }

  /** Makes the staged entries the state (the append succeeded). */
  commit(staged: Map<number, ProducerEntry>): void {
    for (const [pid, e] of staged) this.#producers.set(pid, e);
  }

  /** Drops producers whose last batch is below the log start (their data was deleted), as Kafka does. */
  truncateHead(logStartOffset: number): void {
    for (const [pid, e] of this.#producers) {
      const last = e.batches[e.batches.length - 1];
      if (last === undefined || last[3] < logStartOffset) this.#producers.delete(pid);
    }
  }

  /** Drops everything (the log was truncated below the snapshot; a rescan follows). */
  clear(): void {
    this.#producers.clear();
  }

  /** A serialized copy, valid at log offset `offset`. */
  serialize(offset: number): string {
    const producers = [...this.#producers].map(([pid, e]) => [pid, e.epoch, e.batches]);
    const body = JSON.stringify({ version: 1, offset, producers });
    return JSON.stringify({ crc: crc32c(Buffer.from(body)), body }) + '\n';
  }

  static async writeSnapshot(path: string, serialized: string): Promise<void> {
    await writeFileAtomic(path, serialized);
  }

  /** Loads a snapshot; returns its offset, or -1 when it is missing or damaged. */
  async loadSnapshot(path: string): Promise<number> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch {
      return -1;
    }
    try {
      const outer = JSON.parse(text) as { crc: number; body: string };
      if (typeof outer.body !== 'string' || crc32c(Buffer.from(outer.body)) !== outer.crc) return -1;
      const snap = JSON.parse(outer.body) as { version: number; offset: number; producers: Array<[number, number, BatchMeta[]]> };
      if (snap.version !== 1 || !Number.isSafeInteger(snap.offset)) return -1;
      this.#producers.clear();
      for (const [pid, epoch, batches] of snap.producers) this.#producers.set(pid, { epoch, batches });
      return snap.offset;
    } catch {
      return -1;
    }
  }
}
