// Kafka storage (issue 9): appends, reads, validation, idempotent producers,
// segments, retention, indexes, timestamps, group offsets. Recovery and crash
// tests are in kafka-storage-recovery.test.ts, CRC-32C in kafka-storage-crc.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { ErrorCode, LogManager, type LogConfig, type PartitionLog } from '../src/kafka/storage/index.js';
import { MODE, NATIVE, openFds, settledFds, tmpDir } from './helpers.js';
import { makeBatch, parseBatches, sliceBytes, valuesBatch } from './kafka-storage-helpers.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

async function open(config?: Partial<LogConfig>, dir = tmpDir('zcopy-kafka-')): Promise<{ mgr: LogManager; dir: string }> {
  dirs.push(dir);
  return { mgr: await LogManager.open(dir, config), dir };
}

/** Reads [offset, end) through read() slices, releasing them; returns parsed batches. */
function readAll(log: PartitionLog, offset: number, maxBytes = 1 << 30) {
  const r = log.read(offset, maxBytes, true);
  assert.equal(r.errorCode, ErrorCode.NONE);
  const bytes = sliceBytes(r.slices);
  for (const s of r.slices) s.release();
  assert.equal(bytes.length, r.bytes);
  return parseBatches(bytes);
}

/** Checks batches are gap-free from `from` with valid CRCs; returns all values. */
function checkContiguous(batches: ReturnType<typeof parseBatches>, from: number): string[] {
  let next = from;
  const values: string[] = [];
  for (const b of batches) {
    assert.equal(b.baseOffset, next, 'offsets are contiguous');
    assert.ok(b.crcOk, 'CRC still valid after the offset rewrite');
    next = b.baseOffset + b.lastOffsetDelta + 1;
    values.push(...b.values);
  }
  return values;
}

describe(`kafka storage (${MODE})`, () => {
  test('append assigns offsets in place; read returns the batches byte for byte', async () => {
    const fds0 = openFds();
    const { mgr } = await open();
    await mgr.createTopic('t', 2);
    const log = mgr.partition('t', 1)!;
    assert.equal(log.logEndOffset, 0);
    const a = Buffer.concat([valuesBatch('a', 3), valuesBatch('b', 2)]);
    const original = Buffer.from(a);
    const r1 = await log.append(a);
    assert.deepEqual([r1.errorCode, r1.baseOffset, r1.logAppendTimeMs, r1.logStartOffset], [0, 0, -1, 0]);
    const r2 = await log.append(valuesBatch('c', 4));
    assert.equal(r2.baseOffset, 5);
    assert.equal(log.logEndOffset, 9);
    assert.equal(log.highWatermark, 9);
    // Only baseOffset (0-7) and the leader epoch (12-15) changed.
    assert.deepEqual(a.subarray(16, 61 + 0), original.subarray(16, 61));
    const first = parseBatches(a);
    assert.deepEqual(first.map((b) => [b.baseOffset, b.leaderEpoch]), [[0, 0], [3, 0]]);
    const batches = readAll(log, 0);
    assert.deepEqual(checkContiguous(batches, 0), ['a0', 'a1', 'a2', 'b0', 'b1', 'c0', 'c1', 'c2', 'c3']);
    const bytes = sliceBytes(log.read(0, 1 << 20, false).slices);
    assert.deepEqual(bytes.subarray(0, a.length), a, 'the .log holds the batches exactly as rewritten');
    // A read from inside a batch starts at the batch holding the offset.
    assert.equal(readAll(log, 6)[0]!.baseOffset, 5);
    assert.equal(readAll(log, 4)[0]!.baseOffset, 3);
    // At the end: nothing, no error; past it or below the start: out of range.
    const end = log.read(9, 1000, true);
    assert.deepEqual([end.errorCode, end.slices.length, end.highWatermark, end.lastStableOffset], [0, 0, 9, 9]);
    assert.equal(log.read(10, 1000, true).errorCode, ErrorCode.OFFSET_OUT_OF_RANGE);
    assert.equal(log.read(-1, 1000, true).errorCode, ErrorCode.OFFSET_OUT_OF_RANGE);
    assert.equal(mgr.partition('t', 0)!.logEndOffset, 0);
    assert.equal(mgr.partition('t', 2), undefined);
    await mgr.close();
    assert.equal(await settledFds(), fds0, 'no fd left open after close');
  });

  test('data survives a clean restart; the marker is written on close and removed on open', async () => {
    const { mgr, dir } = await open();
    await mgr.createTopic('keep', 1, { segmentBytes: 4096 });
    const log = mgr.partition('keep', 0)!;
    for (let i = 0; i < 50; i++) assert.equal((await log.append(valuesBatch(`m${i}-`, 3))).errorCode, 0);
    await mgr.close();
    assert.ok(fs.existsSync(path.join(dir, '.kafka_cleanshutdown')));
    const again = await LogManager.open(dir);
    assert.equal(again.recovered, false);
    assert.ok(!fs.existsSync(path.join(dir, '.kafka_cleanshutdown')));
    assert.deepEqual(again.topics(), [{ name: 'keep', partitions: 1, config: { segmentBytes: 4096 } }]);
    const l2 = again.partition('keep', 0)!;
    assert.equal(l2.logEndOffset, 150);
    const values = checkContiguous(readAll(l2, 0), 0);
    assert.equal(values.length, 150);
    assert.equal(values[149], 'm49-2');
    assert.equal((await l2.append(valuesBatch('after', 1))).baseOffset, 150);
    await again.close();
  });

  test('a corrupt batch gets CORRUPT_MESSAGE and nothing of the request is appended', async () => {
    const { mgr, dir } = await open();
    await mgr.createTopic('c', 1);
    const log = mgr.partition('c', 0)!;
    await log.append(valuesBatch('ok', 2));
    const logFile = path.join(dir, 'c-0', '00000000000000000000.log');
    const size0 = fs.statSync(logFile).size;
    const good = valuesBatch('g', 2);
    const bad = valuesBatch('x', 2);
    bad[bad.length - 1]! ^= 0xff; // a flipped bit in the records: CRC mismatch
    const r = await log.append(Buffer.concat([good, bad]));
    assert.equal(r.errorCode, ErrorCode.CORRUPT_MESSAGE);
    assert.equal(r.baseOffset, -1);
    assert.equal(r.recordErrors?.[0]?.batchIndex, 1);
    assert.match(r.recordErrors![0]!.message, /CRC/);
    assert.equal(log.logEndOffset, 2);
    assert.equal(fs.statSync(logFile).size, size0);
    // Truncated, bad magic, too-short length, inconsistent counts.
    const trunc = valuesBatch('t', 2).subarray(0, 70);
    assert.equal((await log.append(trunc)).errorCode, ErrorCode.CORRUPT_MESSAGE);
    const magic = valuesBatch('m', 1);
    magic[16] = 1;
    assert.equal((await log.append(magic)).errorCode, ErrorCode.CORRUPT_MESSAGE);
    const shortLen = valuesBatch('s', 1);
    shortLen.writeInt32BE(10, 8);
    assert.equal((await log.append(shortLen)).errorCode, ErrorCode.CORRUPT_MESSAGE);
    assert.equal((await log.append(Buffer.alloc(30))).errorCode, ErrorCode.CORRUPT_MESSAGE);
    assert.equal(log.logEndOffset, 2);
    // The partition stays usable.
    assert.equal((await log.append(good)).baseOffset, 2);
    assert.deepEqual(checkContiguous(readAll(log, 0), 0), ['ok0', 'ok1', 'g0', 'g1']);
    await mgr.close();
  });

  test('a batch over maxMessageBytes gets MESSAGE_TOO_LARGE', async () => {
    const { mgr } = await open({ maxMessageBytes: 500 });
    await mgr.createTopic('big', 1);
    await mgr.createTopic('bigger', 1, { maxMessageBytes: 5000 });
    const batch = makeBatch([{ value: Buffer.alloc(600, 1) }]);
    const r = await mgr.partition('big', 0)!.append(batch);
    assert.equal(r.errorCode, ErrorCode.MESSAGE_TOO_LARGE);
    assert.equal(mgr.partition('big', 0)!.logEndOffset, 0);
    assert.equal((await mgr.partition('bigger', 0)!.append(batch)).errorCode, 0);
    await mgr.close();
  });

  test('idempotent producer: retries acknowledged with the original offset, gaps and stale epochs refused; state survives restart', async () => {
    const { mgr, dir } = await open();
    await mgr.createTopic('idem', 1);
    let log = mgr.partition('idem', 0)!;
    const pid = 4242;
    const b = (seq: number, n: number, epoch = 0) => valuesBatch(`s${seq}-`, n, { producerId: pid, producerEpoch: epoch, baseSequence: seq });
    assert.equal((await log.append(valuesBatch('plain', 1))).baseOffset, 0);
    assert.equal((await log.append(b(0, 3))).baseOffset, 1);
    assert.equal((await log.append(b(3, 2))).baseOffset, 4);
    // Retry of the last and of an older batch: same offsets, nothing appended.
    assert.deepEqual(await log.append(b(3, 2)), { errorCode: 0, baseOffset: 4, logAppendTimeMs: -1, logStartOffset: 0 });
    assert.equal((await log.append(b(0, 3))).baseOffset, 1);
    assert.equal(log.logEndOffset, 6);
    // A gap.
    const gap = await log.append(b(7, 1));
    assert.equal(gap.errorCode, ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER);
    assert.equal(log.logEndOffset, 6);
    // Next in sequence.
    assert.equal((await log.append(b(5, 1))).baseOffset, 6);
    // A new epoch must start at 0; then the old epoch is fenced.
    assert.equal((await log.append(b(3, 1, 1))).errorCode, ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER);
    assert.equal((await log.append(b(0, 1, 1))).baseOffset, 7);
    assert.equal((await log.append(b(6, 1, 0))).errorCode, ErrorCode.INVALID_PRODUCER_EPOCH);
    // Two batches of one request are checked in order; a bad second one refuses both.
    const twoBad = await log.append(Buffer.concat([b(1, 1, 1), b(5, 1, 1)]));
    assert.equal(twoBad.errorCode, ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER);
    assert.equal(log.logEndOffset, 8);
    assert.equal((await log.append(Buffer.concat([b(1, 1, 1), b(2, 2, 1)]))).baseOffset, 8);
    assert.equal(log.logEndOffset, 11);
    await mgr.close();
    // After a clean restart (snapshot) a retry still finds its original offset.
    let m2 = await LogManager.open(dir);
    log = m2.partition('idem', 0)!;
    assert.equal((await log.append(b(2, 2, 1))).baseOffset, 9);
    assert.equal((await log.append(b(9, 1, 1))).errorCode, ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER);
    assert.equal((await log.append(b(4, 1, 1))).baseOffset, 11);
    await m2.close();
    // After an unclean one (no marker, no snapshot): rebuilt from batch headers.
    fs.rmSync(path.join(dir, '.kafka_cleanshutdown'));
    fs.rmSync(path.join(dir, 'idem-0', 'producer-state.json'));
    m2 = await LogManager.open(dir);
    assert.equal(m2.recovered, true);
    log = m2.partition('idem', 0)!;
    assert.equal((await log.append(b(4, 1, 1))).baseOffset, 11);
    assert.equal((await log.append(b(6, 1, 1))).errorCode, ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER);
    assert.equal((await log.append(b(5, 1, 1))).baseOffset, 12);
    assert.equal(log.logEndOffset, 13);
    await m2.close();
  });

  test('idempotent producer: sequence numbers wrap from 2147483647 to 0', async () => {
    const { mgr } = await open();
    await mgr.createTopic('wrap', 1);
    const log = mgr.partition('wrap', 0)!;
    const b = (seq: number, n: number) => valuesBatch(`w${seq}-`, n, { producerId: 9, producerEpoch: 3, baseSequence: seq });
    assert.equal((await log.append(b(2147483645, 2))).baseOffset, 0); // 2147483645..2147483646
    assert.equal((await log.append(b(2147483647, 3))).baseOffset, 2); // 2147483647, 0, 1
    assert.equal((await log.append(b(2147483647, 3))).baseOffset, 2, 'the wrapped batch retried');
    assert.equal((await log.append(b(3, 1))).errorCode, ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER);
    assert.equal((await log.append(b(2, 1))).baseOffset, 5);
    await mgr.close();
  });

  test('segments roll by size and by age; reads cross segment boundaries; files are named by base offset', async () => {
    const { mgr, dir } = await open();
    await mgr.createTopic('roll', 1, { segmentBytes: 1000, indexIntervalBytes: 100 });
    const log = mgr.partition('roll', 0)!;
    const t0 = 1_700_000_000_000;
    for (let i = 0; i < 40; i++) await log.append(valuesBatch(`v${i}-`, 2, { baseTimestamp: t0 + i }), t0 + i);
    const bases = log.segmentBaseOffsets();
    assert.ok(bases.length >= 3, `rolled into ${bases.length} segments`);
    const files = fs.readdirSync(path.join(dir, 'roll-0')).filter((f) => f.endsWith('.log')).sort();
    assert.deepEqual(files, bases.map((b) => `${String(b).padStart(20, '0')}.log`));
    for (const f of files) assert.ok(fs.statSync(path.join(dir, 'roll-0', f)).size <= 1000);
    const all = checkContiguous(readAll(log, 0), 0);
    assert.equal(all.length, 80);
    // Every offset reads from the batch that holds it, in any segment.
    for (let off = 0; off < 80; off++) {
      const r = log.read(off, 200, true);
      const got = parseBatches(sliceBytes(r.slices));
      for (const s of r.slices) s.release();
      assert.ok(got[0]!.baseOffset <= off && off <= got[0]!.baseOffset + got[0]!.lastOffsetDelta, `offset ${off}`);
    }
    // Sealed indexes were trimmed to whole entries.
    for (const b of bases.slice(0, -1)) {
      const idx = fs.statSync(path.join(dir, 'roll-0', `${String(b).padStart(20, '0')}.index`)).size;
      assert.equal(idx % 8, 0);
      assert.ok(idx > 0, 'sealed segments carry index entries');
      assert.ok(idx < 1000);
      assert.equal(fs.statSync(path.join(dir, 'roll-0', `${String(b).padStart(20, '0')}.timeindex`)).size % 12, 0);
    }
    // By age: the first batch of the active segment is older than segmentMs.
    await mgr.createTopic('age', 1, { segmentMs: 60_000 });
    const age = mgr.partition('age', 0)!;
    await age.append(valuesBatch('x', 1, { baseTimestamp: t0 }), t0);
    await age.append(valuesBatch('y', 1, { baseTimestamp: t0 + 1000 }), t0 + 1000);
    assert.equal(age.segmentBaseOffsets().length, 1);
    await age.append(valuesBatch('z', 1, { baseTimestamp: t0 + 61_000 }), t0 + 61_000);
    assert.deepEqual(age.segmentBaseOffsets(), [0, 2]);
    await mgr.close();
  });

  test('maxBytes cuts slices; minOneMessage sends the first batch whole (KIP-74)', async () => {
    const { mgr } = await open();
    await mgr.createTopic('cut', 1, { segmentBytes: 2000 });
    const log = mgr.partition('cut', 0)!;
    const big = makeBatch([{ value: Buffer.alloc(1500, 7) }]);
    const bigSize = big.length;
    await log.append(big);
    for (let i = 0; i < 10; i++) await log.append(valuesBatch(`s${i}-`, 5));
    const whole = log.read(0, 100, true);
    assert.equal(whole.bytes, bigSize);
    assert.equal(parseBatches(sliceBytes(whole.slices)).length, 1);
    for (const s of whole.slices) s.release();
    const part = log.read(0, 100, false);
    assert.equal(part.bytes, 100);
    assert.equal(parseBatches(sliceBytes(part.slices)).length, 0, 'a partial batch only');
    for (const s of part.slices) s.release();
    const zero = log.read(0, 0, false);
    assert.equal(zero.slices.length, 0);
    for (const odd of [NaN, -5, -Infinity]) assert.equal(log.read(0, odd, false).slices.length, 0, String(odd));
    const nanOne = log.read(0, NaN, true);
    assert.equal(nanOne.bytes, bigSize, 'minOneMessage still sends the first batch');
    for (const s of nanOne.slices) s.release();
    // Byte cuts across segment boundaries never exceed maxBytes.
    for (const max of [1, 61, 1600, 2000, 2500, 4000]) {
      const r = log.read(0, max, false);
      assert.ok(r.bytes <= max, `${r.bytes} <= ${max}`);
      assert.equal(r.bytes, r.slices.reduce((n, s) => n + s.length, 0));
      assert.equal(sliceBytes(r.slices).length, r.bytes);
      for (const s of r.slices) s.release();
    }
    const rest = log.read(1, 1 << 20, false);
    assert.ok(rest.slices.length >= 2, 'spans segments');
    assert.equal(checkContiguous(parseBatches(sliceBytes(rest.slices)), 1).length, 50);
    for (const s of rest.slices) s.release();
    await mgr.close();
  });

  test('retention by bytes deletes oldest segments, never the active one; a slice taken before keeps its fd until release', async () => {
    const { mgr, dir } = await open();
    await mgr.createTopic('ret', 1, { segmentBytes: 500, retentionBytes: 1200 });
    const log = mgr.partition('ret', 0)!;
    for (let i = 0; i < 30; i++) await log.append(valuesBatch(`r${i}-`, 3));
    const before = log.segmentBaseOffsets();
    assert.ok(before.length > 4);
    const held = log.read(0, 200, true);
    const heldBytes = sliceBytes(held.slices);
    await mgr.enforceRetention();
    const fdsHeld = await settledFds();
    const after = log.segmentBaseOffsets();
    assert.ok(after.length < before.length, 'segments deleted');
    assert.equal(after[after.length - 1], before[before.length - 1], 'the active segment stays');
    assert.equal(log.logStartOffset, after[0]);
    const sizes = after.map((b) => fs.statSync(path.join(dir, 'ret-0', `${String(b).padStart(20, '0')}.log`)).size);
    const total = sizes.reduce((a, b) => a + b, 0);
    assert.ok(total - sizes[0]! < 1200, 'no more than needed is kept');
    assert.ok(!fs.existsSync(path.join(dir, 'ret-0', '00000000000000000000.log')), 'file unlinked');
    // The slice's fd still reads the deleted segment.
    assert.deepEqual(sliceBytes(held.slices), heldBytes);
    assert.equal(log.read(0, 100, true).errorCode, ErrorCode.OFFSET_OUT_OF_RANGE);
    assert.equal(log.offsetForTimestamp(-2).offset, log.logStartOffset);
    for (const s of held.slices) {
      s.release();
      s.release(); // idempotent
    }
    assert.equal(await settledFds(), fdsHeld - 1, 'the deleted segment fd closed on release');
    // Retention with everything in the active segment deletes nothing.
    await mgr.createTopic('one', 1, { retentionBytes: 0 });
    await mgr.partition('one', 0)!.append(valuesBatch('x', 3));
    await mgr.enforceRetention();
    assert.equal(mgr.partition('one', 0)!.logEndOffset, 3);
    assert.equal(mgr.partition('one', 0)!.logStartOffset, 0);
    await mgr.close();
  });

  test('retention by time uses the newest record of each segment', async () => {
    const { mgr } = await open();
    await mgr.createTopic('old', 1, { segmentBytes: 400, retentionMs: 3_600_000 });
    const log = mgr.partition('old', 0)!;
    const now = Date.now();
    for (let i = 0; i < 10; i++) await log.append(valuesBatch(`o${i}-`, 2, { baseTimestamp: now - 10 * 3_600_000 }), now);
    const oldBases = log.segmentBaseOffsets();
    for (let i = 0; i < 10; i++) await log.append(valuesBatch(`n${i}-`, 2, { baseTimestamp: now }), now);
    const allBases = log.segmentBaseOffsets();
    await mgr.enforceRetention(now);
    const left = log.segmentBaseOffsets();
    assert.ok(left.length < allBases.length);
    assert.ok(left[0]! >= oldBases[oldBases.length - 1]!, 'every all-old sealed segment is gone');
    const firstLeft = readAll(log, log.logStartOffset);
    assert.ok(firstLeft.length > 0);
    await mgr.close();
  });

  test('offsetForTimestamp: latest, earliest, first record at or after a time (plain and gzip), none', async () => {
    const { mgr } = await open();
    await mgr.createTopic('ts', 1, { segmentBytes: 700, indexIntervalBytes: 50 });
    const log = mgr.partition('ts', 0)!;
    const t0 = 1_600_000_000_000;
    // 20 batches of 4 records, batch i at t0 + 100*i, record j at +j.
    for (let i = 0; i < 20; i++) await log.append(valuesBatch(`t${i}-`, 4, { baseTimestamp: t0 + 100 * i, gzip: i % 3 === 1 }));
    assert.deepEqual(log.offsetForTimestamp(-1), { offset: 80, timestamp: -1 });
    assert.deepEqual(log.offsetForTimestamp(-2), { offset: 0, timestamp: -1 });
    assert.deepEqual(log.offsetForTimestamp(0), { offset: 0, timestamp: t0 });
    for (let i = 0; i < 20; i++) {
      assert.deepEqual(log.offsetForTimestamp(t0 + 100 * i), { offset: 4 * i, timestamp: t0 + 100 * i }, `batch ${i}`);
      assert.deepEqual(log.offsetForTimestamp(t0 + 100 * i + 2), { offset: 4 * i + 2, timestamp: t0 + 100 * i + 2 }, `record 2 of batch ${i}`);
      if (i < 19) assert.deepEqual(log.offsetForTimestamp(t0 + 100 * i + 50), { offset: 4 * (i + 1), timestamp: t0 + 100 * (i + 1) });
    }
    assert.deepEqual(log.offsetForTimestamp(t0 + 100_000), { offset: -1, timestamp: -1 });
    assert.deepEqual(log.offsetForTimestamp(-3), { offset: 76, timestamp: t0 + 1903 });
    assert.ok(log.segmentBaseOffsets().length > 2);
    await mgr.close();
  });

  test('indexes: trimmed on close, rebuilt when missing or damaged', async () => {
    const { mgr, dir } = await open();
    await mgr.createTopic('ix', 1, { segmentBytes: 2000, indexIntervalBytes: 64 });
    const log = mgr.partition('ix', 0)!;
    const t0 = 1_650_000_000_000;
    for (let i = 0; i < 60; i++) await log.append(valuesBatch(`i${i}-`, 2, { baseTimestamp: t0 + 10 * i }));
    const expect = checkContiguous(readAll(log, 0), 0);
    const probe = (l: PartitionLog) => [37, 55, 100, 119].map((o) => readAll(l, o)[0]!.baseOffset);
    const probes = probe(log);
    const tsProbe = log.offsetForTimestamp(t0 + 10 * 33 + 1);
    await mgr.close();
    const pdir = path.join(dir, 'ix-0');
    const bases = fs.readdirSync(pdir).filter((f) => f.endsWith('.log')).map((f) => f.slice(0, 20)).sort();
    const active = bases[bases.length - 1]!;
    assert.equal(fs.statSync(path.join(pdir, `${active}.index`)).size % 8, 0, 'the active index was trimmed on close');
    // Positions in the offset index point at batch starts with that offset.
    let entries = 0;
    for (const b of bases) {
      const idx = fs.readFileSync(path.join(pdir, `${b}.index`));
      const logBytes = fs.readFileSync(path.join(pdir, `${b}.log`));
      for (let e = 0; e < idx.length / 8; e++, entries++) {
        const rel = idx.readInt32BE(e * 8);
        const pos = idx.readInt32BE(e * 8 + 4);
        assert.equal(Number(logBytes.readBigInt64BE(pos)), Number(b) + rel);
      }
    }
    assert.ok(entries > 10, `${entries} index entries`);
    // Delete one segment's indexes, garble another's.
    fs.rmSync(path.join(pdir, `${bases[0]}.index`));
    fs.rmSync(path.join(pdir, `${bases[0]}.timeindex`));
    fs.writeFileSync(path.join(pdir, `${bases[1]}.index`), Buffer.alloc(13, 0xff));
    const m2 = await LogManager.open(dir);
    const l2 = m2.partition('ix', 0)!;
    assert.deepEqual(checkContiguous(readAll(l2, 0), 0), expect);
    assert.deepEqual(probe(l2), probes);
    assert.deepEqual(l2.offsetForTimestamp(t0 + 10 * 33 + 1), tsProbe);
    assert.equal(fs.statSync(path.join(pdir, `${bases[0]}.index`)).size % 8, 0);
    assert.ok(fs.statSync(path.join(pdir, `${bases[0]}.index`)).size > 0, 'rebuilt');
    assert.ok(fs.statSync(path.join(pdir, `${bases[0]}.timeindex`)).size > 0, 'rebuilt');
    assert.equal(fs.statSync(path.join(pdir, `${bases[1]}.index`)).size % 8, 0);
    await m2.close();
  });

  test('the active index grows as entries come; its preallocation is written, not sparse', async () => {
    const { mgr, dir } = await open();
    await mgr.createTopic('grow', 1, { indexIntervalBytes: 0 });
    const log = mgr.partition('grow', 0)!;
    const idx = path.join(dir, 'grow-0', '00000000000000000000.index');
    const t0 = 1_700_000_000_000;
    let k = 0;
    for (let round = 0; round < 100; round++) {
      const batches = Array.from({ length: 15 }, () => valuesBatch(`g${k}-`, 1, { baseTimestamp: t0 + k++ }));
      assert.equal((await log.append(Buffer.concat(batches))).errorCode, 0);
      // Reads between growth steps see every entry.
      const probe = Math.floor(k / 2);
      assert.equal(readAll(log, probe, 100)[0]!.baseOffset, probe);
    }
    if (NATIVE) {
      // Mapped: the file itself grew. (Portable: a heap buffer, written on flush.)
      const st = fs.statSync(idx);
      assert.ok(st.size >= 1499 * 8, `grown to ${st.size} bytes`);
      assert.ok(st.blocks * 512 >= st.size, 'every block of the preallocation exists (no sparse page to SIGBUS on)');
    }
    for (const off of [0, 1, 777, 1498, 1499]) assert.equal(readAll(log, off, 100)[0]!.baseOffset, off);
    assert.deepEqual(log.offsetForTimestamp(t0 + 1234), { offset: 1234, timestamp: t0 + 1234 });
    await mgr.close();
    assert.equal(fs.statSync(idx).size, 1499 * 8, 'trimmed: one entry per batch after the first');
    const m2 = await LogManager.open(dir);
    assert.equal(readAll(m2.partition('grow', 0)!, 1000, 100)[0]!.baseOffset, 1000);
    await m2.close();
  });

  test('group offsets are durable across restarts, clean or not, and a torn record is cut', async () => {
    const { mgr, dir } = await open();
    await mgr.createTopic('g', 2);
    await mgr.commitOffsets('grp', [
      { topic: 'g', partition: 0, offset: 5, metadata: 'meta' },
      { topic: 'g', partition: 1, offset: 7, metadata: null },
    ]);
    await mgr.commitOffsets('grp', [{ topic: 'g', partition: 0, offset: 9, metadata: '' }]);
    await mgr.commitOffsets('other', [{ topic: 'g', partition: 1, offset: 1, metadata: null }]);
    assert.deepEqual(mgr.fetchOffset('grp', 'g', 0), { offset: 9, metadata: '' });
    assert.equal(mgr.fetchOffset('grp', 'g', 2), undefined);
    assert.equal(mgr.fetchOffset('nobody', 'g', 0), undefined);
    await assert.rejects(mgr.commitOffsets('grp', [{ topic: 'g', partition: 0.5, offset: 1, metadata: null }]), TypeError);
    await mgr.close();
    let m2 = await LogManager.open(dir);
    assert.deepEqual(m2.groups().sort(), ['grp', 'other']);
    assert.deepEqual(m2.fetchOffset('grp', 'g', 0), { offset: 9, metadata: '' });
    assert.deepEqual(m2.fetchOffset('grp', 'g', 1), { offset: 7, metadata: null });
    await m2.commitOffsets('grp', [{ topic: 'g', partition: 1, offset: 8, metadata: 'x' }]);
    // Crash: no close, no marker; a torn record at the tail.
    const file = path.join(dir, 'group-offsets.log');
    fs.appendFileSync(file, Buffer.from([0, 0, 0, 40, 1, 2, 3, 4, 123, 34]));
    await m2.close();
    fs.rmSync(path.join(dir, '.kafka_cleanshutdown'));
    fs.appendFileSync(file, Buffer.from([0, 0, 0, 40, 1, 2, 3, 4, 123, 34]));
    m2 = await LogManager.open(dir);
    assert.deepEqual(m2.fetchOffset('grp', 'g', 1), { offset: 8, metadata: 'x' });
    assert.deepEqual(m2.fetchOffset('other', 'g', 1), { offset: 1, metadata: null });
    // Deleting the topic forgets its offsets, durably.
    await m2.deleteTopic('g');
    assert.equal(m2.fetchOffset('grp', 'g', 1), undefined);
    await m2.close();
    m2 = await LogManager.open(dir);
    assert.equal(m2.fetchOffset('grp', 'g', 1), undefined);
    assert.deepEqual(m2.topics(), []);
    await m2.close();
  });

  test('topic admin: errors carry Kafka codes; deleteTopic removes files; onAppend wakes listeners', async () => {
    const { mgr, dir } = await open();
    await assert.rejects(mgr.createTopic('bad/name', 1), { errorCode: ErrorCode.INVALID_TOPIC_EXCEPTION });
    await assert.rejects(mgr.createTopic('..', 1), { errorCode: ErrorCode.INVALID_TOPIC_EXCEPTION });
    await assert.rejects(mgr.createTopic('x'.repeat(250), 1), { errorCode: ErrorCode.INVALID_TOPIC_EXCEPTION });
    await assert.rejects(mgr.createTopic('z', 0), { errorCode: ErrorCode.INVALID_PARTITIONS });
    await mgr.createTopic('a.b_c-1', 3);
    await assert.rejects(mgr.createTopic('a.b_c-1', 3), { errorCode: ErrorCode.TOPIC_ALREADY_EXISTS });
    await assert.rejects(mgr.createTopic('cfg', 1, { segmentBytes: -5 }), { errorCode: 40 });
    await assert.rejects(mgr.createTopic('cfg', 1, { nope: 1 } as never), { errorCode: 40 });
    await assert.rejects(mgr.createTopic('cfg', 1, { retentionMs: 1.5 }), { errorCode: 40 });
    // Kafka's "unlimited" Long.MAX_VALUE arrives as a huge number.
    await mgr.createTopic('cfg', 1, { flushIntervalMessages: Number('9223372036854775807'), retentionMs: -1 });
    assert.deepEqual(mgr.topic('cfg')!.config, { flushIntervalMessages: Infinity, retentionMs: -1 });
    assert.deepEqual(mgr.topic('a.b_c-1'), { name: 'a.b_c-1', partitions: 3, config: {} });
    const log = mgr.partition('a.b_c-1', 2)!;
    let woke = 0;
    const off = log.onAppend(() => woke++);
    await log.append(valuesBatch('w', 1));
    off();
    await log.append(valuesBatch('w', 1));
    assert.equal(woke, 1);
    const held = log.read(0, 1000, true);
    await mgr.deleteTopic('a.b_c-1');
    assert.equal(mgr.partition('a.b_c-1', 0), undefined);
    assert.equal(mgr.topic('a.b_c-1'), undefined);
    assert.deepEqual(fs.readdirSync(dir).filter((n) => n.startsWith('a.b_c-1')), []);
    assert.equal(parseBatches(sliceBytes(held.slices)).length, 2, 'a slice of a deleted topic still reads');
    for (const s of held.slices) s.release();
    assert.equal((await log.append(valuesBatch('late', 1))).errorCode, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION);
    await assert.rejects(mgr.deleteTopic('a.b_c-1'), { errorCode: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION });
    await mgr.createTopic('a.b_c-1', 1);
    assert.equal(mgr.partition('a.b_c-1', 0)!.logEndOffset, 0);
    await mgr.close();
  });

  test('flushIntervalMessages fsyncs and moves the recovery point before acknowledging', async () => {
    const { mgr, dir } = await open({ flushIntervalMessages: 3 });
    await mgr.createTopic('f', 1);
    const log = mgr.partition('f', 0)!;
    await log.append(valuesBatch('a', 2));
    assert.equal(log.unflushedMessages, 2);
    await log.append(valuesBatch('b', 2));
    assert.equal(log.unflushedMessages, 0);
    // The checkpoint is written asynchronously: wait for it (bounded).
    const cp = path.join(dir, 'recovery-point-offset-checkpoint');
    const deadline = Date.now() + 5000;
    while (!/^f 0 4$/m.test(fs.readFileSync(cp, 'utf8'))) {
      assert.ok(Date.now() < deadline, 'checkpoint written');
      await new Promise((r) => setImmediate(r));
    }
    await mgr.close();
  });

  test('close waits for slices in flight, and closes their fds after its timeout', async () => {
    const fds0 = await settledFds();
    const { mgr, dir } = await open();
    await mgr.createTopic('cl', 1);
    const log = mgr.partition('cl', 0)!;
    await log.append(valuesBatch('c', 5));
    const held = log.read(0, 1000, true);
    let done = false;
    const closing = mgr.close(60_000).then(() => {
      done = true;
    });
    const marker = path.join(dir, '.kafka_cleanshutdown');
    const deadline = Date.now() + 10_000;
    while (!fs.existsSync(marker)) {
      assert.ok(Date.now() < deadline, 'marker written');
      await new Promise((r) => setTimeout(r, 2));
    }
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    assert.equal(done, false, 'close waits for the slice');
    assert.equal(parseBatches(sliceBytes(held.slices))[0]!.values.length, 5, 'the slice reads after close began');
    assert.equal(log.read(0, 1000, true).errorCode, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, 'no new reads once closed');
    assert.equal((await log.append(valuesBatch('late', 1))).errorCode, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION);
    for (const s of held.slices) s.release();
    await closing;
    assert.equal(await settledFds(), fds0);
    // Never released: closed anyway after the timeout.
    const m2 = await LogManager.open(dir);
    const held2 = m2.partition('cl', 0)!.read(0, 1000, true);
    assert.equal(held2.slices.length, 1);
    const t0 = Date.now();
    await m2.close(50);
    assert.ok(Date.now() - t0 >= 40);
    assert.equal(await settledFds(), fds0, 'fds closed after the timeout');
    held2.slices[0]!.release(); // harmless afterwards
  });

  test('a tailing consumer is served from memory: no read syscall on the event loop', async () => {
    const { mgr, dir } = await open();
    await mgr.createTopic('tail', 1, { indexIntervalBytes: 1 << 20 });
    let log = mgr.partition('tail', 0)!;
    for (let i = 0; i < 60; i++) await log.append(valuesBatch(`t${i}-`, 3));
    const orig = fs.readSync;
    let calls = 0;
    const count = () => {
      fs.readSync = ((...a: Parameters<typeof fs.readSync>) => {
        calls++;
        return orig(...a);
      }) as typeof fs.readSync;
      syncBuiltinESMExports();
    };
    const restore = () => {
      fs.readSync = orig;
      syncBuiltinESMExports();
    };
    const probe = () => {
      for (const off of [0, 100, 150, 178, 179]) {
        const r = log.read(off, 64, true);
        assert.equal(r.errorCode, 0);
        assert.ok(r.bytes > 64, 'the whole first batch (minOneMessage)');
        restore();
        const b = parseBatches(sliceBytes(r.slices))[0]!;
        count();
        assert.ok(b.baseOffset <= off && off <= b.baseOffset + b.lastOffsetDelta);
        for (const s of r.slices) s.release();
      }
    };
    count();
    try {
      probe();
      assert.equal(calls, 0, 'positions of recent batches are known without reading headers');
    } finally {
      restore();
    }
    await mgr.close();
    // Control: after a restart nothing is remembered, so the same reads walk headers.
    const m2 = await LogManager.open(dir);
    log = m2.partition('tail', 0)!;
    count();
    try {
      probe();
      assert.ok(calls > 0, 'without the memory the walk reads headers');
    } finally {
      restore();
    }
    await m2.close();
  });

  test('flushIntervalMs flushes on a timer', async () => {
    const { mgr } = await open({ flushIntervalMs: 20 });
    await mgr.createTopic('ft', 1);
    const log = mgr.partition('ft', 0)!;
    await log.append(valuesBatch('a', 2));
    assert.equal(log.unflushedMessages, 2);
    const deadline = Date.now() + 5000;
    while ((log.unflushedMessages as number) !== 0) {
      assert.ok(Date.now() < deadline, 'flushed by the timer');
      await new Promise((r) => setTimeout(r, 5));
    }
    await mgr.close();
  });
});
