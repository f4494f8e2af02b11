/**
 * RecordBatch v2 header layout, validation of produced batches, and record
 * parsing for timestamp lookups.
 *
 * baseOffset 0-7 | batchLength 8-11 (counts from byte 12) | partitionLeaderEpoch 12-15 |
 * magic 16 | crc 17-20 (CRC-32C of bytes 21..end) | attributes 21-22 | lastOffsetDelta 23-26 |
 * baseTimestamp 27-34 | maxTimestamp 35-42 | producerId 43-50 | producerEpoch 51-52 |
 * baseSequence 53-56 | recordsCount 57-60 | records 61..
 *
 * @module
 */
import { gunzipSync } from 'node:zlib';
import { crc32c } from '../../index.js';
import { ErrorCode } from './errors.js';

/** baseOffset + batchLength: the part of a batch outside batchLength. */
export const LOG_OVERHEAD = 12;
/** The fixed header of a v2 batch (everything before the records). */
export const BATCH_HEADER_SIZE = 61;
export const OFF_BASE_OFFSET = 0;
export const OFF_LENGTH = 8;
export const OFF_LEADER_EPOCH = 12;
export const OFF_MAGIC = 16;
export const OFF_CRC = 17;
export const OFF_ATTRIBUTES = 21;
export const OFF_LAST_OFFSET_DELTA = 23;
export const OFF_BASE_TIMESTAMP = 27;
export const OFF_MAX_TIMESTAMP = 35;
export const OFF_PRODUCER_ID = 43;
export const OFF_PRODUCER_EPOCH = 51;
export const OFF_BASE_SEQUENCE = 53;
export const OFF_RECORDS_COUNT = 57;

/** What the log needs to know about one batch. */
export interface BatchInfo {
  /** Byte position of the batch in its buffer (or file). */
  position: number;
  /** Whole batch size, LOG_OVERHEAD included. */
  size: number;
  baseOffset: number;
  lastOffsetDelta: number;
  recordsCount: number;
  maxTimestamp: number;
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  attributes: number;
}

/** Reads the header fields of the batch at `pos` (at least 61 bytes must be there). */
export function readBatchInfo(buf: Buffer, pos: number, position = pos): BatchInfo {
  return {
    position,
    size: LOG_OVERHEAD + buf.readInt32BE(pos + OFF_LENGTH),
    baseOffset: Number(buf.readBigInt64BE(pos + OFF_BASE_OFFSET)),
    lastOffsetDelta: buf.readInt32BE(pos + OFF_LAST_OFFSET_DELTA),
    recordsCount: buf.readInt32BE(pos + OFF_RECORDS_COUNT),
    maxTimestamp: Number(buf.readBigInt64BE(pos + OFF_MAX_TIMESTAMP)),
    producerId: Number(buf.readBigInt64BE(pos + OFF_PRODUCER_ID)),
    producerEpoch: buf.readInt16BE(pos + OFF_PRODUCER_EPOCH),
    baseSequence: buf.readInt32BE(pos + OFF_BASE_SEQUENCE),
    attributes: buf.readInt16BE(pos + OFF_ATTRIBUTES),
  };
}

export type ValidationResult =
  | { ok: true; batches: BatchInfo[]; records: number }
  | { ok: false; errorCode: number; batchIndex: number; message: string };

/**
 * Checks the batches of a Produce request's records field: each complete
 * (length bounds), magic 2, no larger than `maxMessageBytes`, CRC-32C
 * correct, offsets consistent (recordsCount = lastOffsetDelta + 1).
 * The first failure decides the answer: Kafka rejects the whole partition.
 */
export function validateBatches(buf: Buffer, maxMessageBytes: number): ValidationResult {
  const batches: BatchInfo[] = [];
  let records = 0;
  let pos = 0;
  const fail = (errorCode: number, message: string): ValidationResult => ({ ok: false, errorCode, batchIndex: batches.length, message });
  while (pos < buf.length) {
    if (buf.length - pos < BATCH_HEADER_SIZE) return fail(ErrorCode.CORRUPT_MESSAGE, `truncated batch: ${buf.length - pos} bytes left, a batch header needs ${BATCH_HEADER_SIZE}`);
    const len = buf.readInt32BE(pos + OFF_LENGTH);
    const size = LOG_OVERHEAD + len;
    if (len < BATCH_HEADER_SIZE - LOG_OVERHEAD) return fail(ErrorCode.CORRUPT_MESSAGE, `batch length ${len} is below the minimum ${BATCH_HEADER_SIZE - LOG_OVERHEAD}`);
    if (size > maxMessageBytes) return fail(ErrorCode.MESSAGE_TOO_LARGE, `batch of ${size} bytes exceeds message.max.bytes (${maxMessageBytes})`);
    if (size > buf.length - pos) return fail(ErrorCode.CORRUPT_MESSAGE, `truncated batch: length says ${size} bytes, ${buf.length - pos} present`);
    const magic = buf[pos + OFF_MAGIC];
    if (magic !== 2) return fail(ErrorCode.CORRUPT_MESSAGE, `unsupported record batch magic ${magic} (only v2 is accepted)`);
    const want = buf.readUInt32BE(pos + OFF_CRC);
    const got = crc32c(buf, pos + OFF_ATTRIBUTES, pos + size);
    if (want !== got) return fail(ErrorCode.CORRUPT_MESSAGE, `CRC-32C mismatch: batch says 0x${want.toString(16)}, computed 0x${got.toString(16)}`);
    const info = readBatchInfo(buf, pos);
    if (info.recordsCount <= 0 || info.lastOffsetDelta !== info.recordsCount - 1) {
      return fail(ErrorCode.INVALID_RECORD, `inconsistent batch: recordsCount ${info.recordsCount}, lastOffsetDelta ${info.lastOffsetDelta}`);
    }
    if (info.producerId >= 0 && info.baseSequence < 0) return fail(ErrorCode.INVALID_RECORD, `idempotent batch (producerId ${info.producerId}) without a sequence number`);
    batches.push(info);
    records += info.recordsCount;
    pos += size;
  }
  return { ok: true, batches, records };
}

/**
 * Checks a batch read back from a segment during recovery: complete, magic 2,
 * CRC-32C correct. Returns its size, or -1.
 */
export function checkStoredBatch(buf: Buffer, pos: number, end: number): number {
  if (end - pos < BATCH_HEADER_SIZE) return -1;
  const len = buf.readInt32BE(pos + OFF_LENGTH);
  if (len < BATCH_HEADER_SIZE - LOG_OVERHEAD || LOG_OVERHEAD + len > end - pos) return -1;
  if (buf[pos + OFF_MAGIC] !== 2) return -1;
  if (buf.readUInt32BE(pos + OFF_CRC) !== crc32c(buf, pos + OFF_ATTRIBUTES, pos + LOG_OVERHEAD + len)) return -1;
  return LOG_OVERHEAD + len;
}

function readVarint(b: Buffer, p: { i: number }): number {
  let v = 0;
  let shift = 0;
  for (;;) {
    if (p.i >= b.length) throw new RangeError('truncated varint');
    const byte = b[p.i++]!;
    v += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) break;
    shift += 7;
    if (shift > 63) throw new RangeError('varint too long');
  }
  // zigzag
  return v % 2 === 0 ? v / 2 : -(v + 1) / 2;
}

/**
 * The first record of a (whole) batch whose timestamp is >= `ts`, as
 * {offset, timestamp}; Kafka answers ListOffsets with that record. Works for
 * uncompressed and gzip batches; for other codecs (snappy, lz4, zstd: no
 * decoder here) it answers the batch's base offset with its max timestamp.
 */
export function findRecordAtTimestamp(batch: Buffer, ts: number): { offset: number; timestamp: number } | undefined {
  const info = readBatchInfo(batch, 0);
  if (info.maxTimestamp < ts) return undefined;
  const codec = info.attributes & 7;
  const logAppendTime = (info.attributes & 8) !== 0;
  if (logAppendTime || (codec !== 0 && codec !== 1)) return { offset: info.baseOffset, timestamp: info.maxTimestamp };
  const baseTimestamp = Number(batch.readBigInt64BE(OFF_BASE_TIMESTAMP));
  let body = batch.subarray(BATCH_HEADER_SIZE, info.size);
  try {
    if (codec === 1) body = gunzipSync(body);
    const p = { i: 0 };
    for (let r = 0; r < info.recordsCount; r++) {
      const len = readVarint(body, p);
      const start = p.i;
      p.i++; // attributes
      const tsDelta = readVarint(body, p);
      const offDelta = readVarint(body, p);
      if (baseTimestamp + tsDelta >= ts) return { offset: info.baseOffset + offDelta, timestamp: baseTimestamp + tsDelta };
      p.i = start + len;
    }
  } catch {
    // A batch we cannot decode: answer at batch granularity.
  }
  return { offset: info.baseOffset, timestamp: info.maxTimestamp };
}
