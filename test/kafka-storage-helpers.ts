// Builds and parses real Kafka RecordBatch v2 bytes for the storage tests.
import fs from 'node:fs';
import { gunzipSync, gzipSync } from 'node:zlib';
import { crc32c } from '../src/kafka/storage/index.js';

function varint(n: number): number[] {
  let z = n >= 0 ? n * 2 : -n * 2 - 1;
  const out: number[] = [];
  do {
    let b = z % 128;
    z = Math.floor(z / 128);
    if (z > 0) b |= 0x80;
    out.push(b);
  } while (z > 0);
  return out;
}

export interface TestRecord {
  key?: Buffer | null;
  value: Buffer | null;
  /** Delta from the batch's base timestamp. */
  tsDelta?: number;
}

export interface BatchOptions {
  baseTimestamp?: number;
  producerId?: number;
  producerEpoch?: number;
  baseSequence?: number;
  gzip?: boolean;
}

/** One v2 batch with a correct CRC, baseOffset 0 as a producer sends it. */
export function makeBatch(records: TestRecord[], opts: BatchOptions = {}): Buffer {
  const baseTs = opts.baseTimestamp ?? 1_700_000_000_000;
  const recs: Buffer[] = records.map((r, i) => {
    const body: number[] = [0, ...varint(r.tsDelta ?? 0), ...varint(i)];
    const parts: Buffer[] = [];
    const k = r.key ?? null;
    const v = r.value;
    const head = Buffer.from([...body, ...varint(k === null ? -1 : k.length)]);
    parts.push(head);
    if (k !== null) parts.push(k);
    parts.push(Buffer.from(varint(v === null ? -1 : v.length)));
    if (v !== null) parts.push(v);
    parts.push(Buffer.from(varint(0)));
    const rec = Buffer.concat(parts);
    return Buffer.concat([Buffer.from(varint(rec.length)), rec]);
  });
  let payload = Buffer.concat(recs);
  if (opts.gzip) payload = gzipSync(payload);
  const maxTs = baseTs + Math.max(0, ...records.map((r) => r.tsDelta ?? 0));
  const h = Buffer.alloc(61);
  h.writeBigInt64BE(0n, 0);
  h.writeInt32BE(61 - 12 + payload.length, 8);
  h.writeInt32BE(-1, 12);
  h[16] = 2;
  h.writeInt16BE(opts.gzip ? 1 : 0, 21);
  h.writeInt32BE(records.length - 1, 23);
  h.writeBigInt64BE(BigInt(baseTs), 27);
  h.writeBigInt64BE(BigInt(maxTs), 35);
  h.writeBigInt64BE(BigInt(opts.producerId ?? -1), 43);
  h.writeInt16BE(opts.producerEpoch ?? -1, 51);
  h.writeInt32BE(opts.baseSequence ?? -1, 53);
  h.writeInt32BE(records.length, 57);
  const b = Buffer.concat([h, payload]);
  b.writeUInt32BE(crc32c(b, 21, b.length), 17);
  return b;
}

/** A batch of `n` records whose values are `${prefix}${i}`. */
export function valuesBatch(prefix: string, n: number, opts: BatchOptions = {}): Buffer {
  return makeBatch(
    Array.from({ length: n }, (_, i) => ({ value: Buffer.from(`${prefix}${i}`), tsDelta: i })),
    opts,
  );
}

export interface ParsedBatch {
  baseOffset: number;
  lastOffsetDelta: number;
  leaderEpoch: number;
  crcOk: boolean;
  values: string[];
  maxTimestamp: number;
  size: number;
}

function readVarint(b: Buffer, p: { i: number }): number {
  let v = 0;
  let s = 0;
  for (;;) {
    const x = b[p.i++]!;
    v += (x & 0x7f) * 2 ** s;
    if ((x & 0x80) === 0) break;
    s += 7;
  }
  return v % 2 === 0 ? v / 2 : -(v + 1) / 2;
}

/** Parses whole batches from bytes; a trailing partial batch is ignored (as clients do). */
export function parseBatches(buf: Buffer): ParsedBatch[] {
  const out: ParsedBatch[] = [];
  let pos = 0;
  while (pos + 61 <= buf.length) {
    const size = 12 + buf.readInt32BE(pos + 8);
    if (pos + size > buf.length) break;
    const b = buf.subarray(pos, pos + size);
    const crcOk = b.readUInt32BE(17) === crc32c(b, 21, b.length);
    const values: string[] = [];
    let body = b.subarray(61);
    if ((b.readInt16BE(21) & 7) === 1) body = gunzipSync(body);
    const p = { i: 0 };
    const n = b.readInt32BE(57);
    for (let r = 0; r < n; r++) {
      const len = readVarint(body, p);
      const start = p.i;
      p.i++;
      readVarint(body, p);
      readVarint(body, p);
      const kl = readVarint(body, p);
      if (kl > 0) p.i += kl;
      const vl = readVarint(body, p);
      values.push(vl < 0 ? '' : body.subarray(p.i, p.i + vl).toString());
      p.i = start + len;
    }
    out.push({ baseOffset: Number(b.readBigInt64BE(0)), lastOffsetDelta: b.readInt32BE(23), leaderEpoch: b.readInt32BE(12), crcOk, values, maxTimestamp: Number(b.readBigInt64BE(35)), size });
    pos += size;
  }
  return out;
}

/** The bytes of slices, read through their fds (what sendfile would send). */
export function sliceBytes(slices: Array<{ fd: number; position: number; length: number }>): Buffer {
  return Buffer.concat(
    slices.map((s) => {
      const b = Buffer.alloc(s.length);
      let got = 0;
      while (got < s.length) {
        const n = fs.readSync(s.fd, b, got, s.length - got, s.position + got);
        if (n === 0) break;
        got += n;
      }
      return b.subarray(0, got);
    }),
  );
}
