// Kafka storage (issue 9): recovery after an unclean shutdown. A garbage or
// torn tail is cut at the last valid batch, a damaged segment drops the ones
// after it, the recovery checkpoint bounds the scan, and a process killed
// with SIGKILL during an append loop reopens as a gap-free prefix.
//
// Run with ZCOPY_KAFKA_CHILD=<dir> this file is the child of the kill test.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { ErrorCode, LogManager, type PartitionLog } from '../src/kafka/storage/index.js';
import { MODE, settledFds, tmpDir } from './helpers.js';
import { makeBatch, parseBatches, sliceBytes, valuesBatch } from './kafka-storage-helpers.js';

const PID = 77;
/** Batch k of the kill test: deterministic content, idempotent sequence. */
function childBatch(k: number, seq: number): Buffer {
  return valuesBatch(`b${k}-`, 1 + (k % 5), { producerId: PID, producerEpoch: 0, baseSequence: seq });
}
const childRecords = (k: number): number => 1 + (k % 5);
const CHILD_CONFIG = { segmentBytes: 64 * 1024, indexIntervalBytes: 0 };

if (process.env.ZCOPY_KAFKA_CHILD !== undefined) {
  // Child: append forever (bounded), several in flight, print each ack.
  // Small segments and every-batch index entries: the kill can land in a
  // roll, an index growth or a retention run (bytes, on a 20 ms timer).
  const mgr = await LogManager.open(process.env.ZCOPY_KAFKA_CHILD, { ...CHILD_CONFIG, flushIntervalMessages: 7, retentionBytes: 30_000, retentionCheckIntervalMs: 20 });
  if (mgr.topic('crash') === undefined) await mgr.createTopic('crash', 1);
  const log = mgr.partition('crash', 0)!;
  let k = 0;
  let seq = 0;
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && k < 200_000) {
    const inflight: Promise<void>[] = [];
    for (let j = 0; j < 4; j++, k++) {
      const kk = k;
      const b = childBatch(kk, seq);
      seq += childRecords(kk);
      inflight.push(
        log.append(b).then((r) => {
          if (r.errorCode !== 0) throw new Error(`append ${kk}: ${r.errorCode}`);
          process.stdout.write(`ack ${kk} ${r.baseOffset}\n`);
        }),
      );
    }
    await Promise.all(inflight);
  }
  process.exit(0);
}

const dirs: string[] = [];
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function readAllBatches(log: PartitionLog, from: number) {
  const r = log.read(from, 1 << 30, true);
  assert.equal(r.errorCode, ErrorCode.NONE);
  const bytes = sliceBytes(r.slices);
  for (const s of r.slices) s.release();
  return { batches: parseBatches(bytes), bytes };
}

function assertGapFree(log: PartitionLog): string[] {
  const { batches, bytes } = readAllBatches(log, log.logStartOffset);
  let next = log.logStartOffset;
  let consumed = 0;
  const values: string[] = [];
  for (const b of batches) {
    assert.equal(b.baseOffset, next, 'gap-free, no duplicate offsets');
    assert.ok(b.crcOk, `batch at ${b.baseOffset} has a valid CRC`);
    next += b.lastOffsetDelta + 1;
    consumed += b.size;
    values.push(...b.values);
  }
  assert.equal(consumed, bytes.length, 'no partial or garbage bytes are served');
  assert.equal(next, log.logEndOffset);
  return values;
}

const seg = (b: number): string => `${String(b).padStart(20, '0')}`;

async function fresh(config = {}): Promise<{ dir: string; mgr: LogManager; log: PartitionLog }> {
  const dir = tmpDir('zcopy-kafka-rec-');
  dirs.push(dir);
  const mgr = await LogManager.open(dir, config);
  await mgr.createTopic('r', 1, config);
  return { dir, mgr, log: mgr.partition('r', 0)! };
}

describe(`kafka storage recovery (${MODE})`, () => {
  test('a garbage tail is cut at the last valid batch after an unclean shutdown', async () => {
    const { dir, mgr, log } = await fresh();
    for (let i = 0; i < 20; i++) await log.append(valuesBatch(`g${i}-`, 3));
    const expected = assertGapFree(log);
    await mgr.close();
    const file = path.join(dir, 'r-0', `${seg(0)}.log`);
    const size = fs.statSync(file).size;
    fs.rmSync(path.join(dir, '.kafka_cleanshutdown'));
    fs.appendFileSync(file, Buffer.from('this is not a record batch, but it is long enough to look like one at first glance'));
    const m2 = await LogManager.open(dir);
    assert.equal(m2.recovered, true);
    const l2 = m2.partition('r', 0)!;
    assert.equal(fs.statSync(file).size, size, 'truncated to the last valid batch');
    assert.equal(l2.logEndOffset, 60);
    assert.deepEqual(assertGapFree(l2), expected);
    assert.equal((await l2.append(valuesBatch('next', 1))).baseOffset, 60);
    await m2.close();
  });

  test('a torn batch (half written), a CRC-corrupt batch and a batch with the wrong offset are all cut', async () => {
    for (const damage of ['torn', 'crc', 'offset'] as const) {
      const { dir, mgr, log } = await fresh();
      for (let i = 0; i < 10; i++) await log.append(valuesBatch(`t${i}-`, 2));
      await mgr.close();
      const file = path.join(dir, 'r-0', `${seg(0)}.log`);
      const size = fs.statSync(file).size;
      const extra = valuesBatch('tail', 4);
      extra.writeBigInt64BE(20n, 0);
      let bytes = extra;
      if (damage === 'torn') bytes = extra.subarray(0, extra.length - 5);
      if (damage === 'crc') extra[extra.length - 2]! ^= 1;
      if (damage === 'offset') extra.writeBigInt64BE(17n, 0); // valid CRC (offsets are outside it), overlapping offsets
      fs.appendFileSync(file, bytes);
      fs.rmSync(path.join(dir, '.kafka_cleanshutdown'));
      const m2 = await LogManager.open(dir);
      const l2 = m2.partition('r', 0)!;
      assert.equal(fs.statSync(file).size, size, damage);
      assert.equal(l2.logEndOffset, 20, damage);
      assert.equal(assertGapFree(l2).length, 20);
      await m2.close();
      // Control: the same bytes undamaged are kept by recovery.
      if (damage === 'torn') {
        const m3 = await LogManager.open(dir);
        await m3.close();
        const good = valuesBatch('tail', 4);
        good.writeBigInt64BE(20n, 0);
        fs.appendFileSync(file, good);
        fs.rmSync(path.join(dir, '.kafka_cleanshutdown'));
        const m4 = await LogManager.open(dir);
        assert.equal(m4.partition('r', 0)!.logEndOffset, 24, 'a whole valid batch survives recovery');
        await m4.close();
      }
    }
  });

  test('damage inside an older segment drops it from there and every later segment; indexes are rebuilt', async () => {
    const { dir, mgr, log } = await fresh({ segmentBytes: 600, indexIntervalBytes: 64 });
    for (let i = 0; i < 40; i++) await log.append(valuesBatch(`d${i}-`, 2));
    const bases = log.segmentBaseOffsets();
    assert.ok(bases.length >= 4);
    await mgr.close();
    // Without a checkpoint every segment is recovered.
    fs.rmSync(path.join(dir, 'recovery-point-offset-checkpoint'));
    fs.rmSync(path.join(dir, '.kafka_cleanshutdown'));
    const victim = path.join(dir, 'r-0', `${seg(bases[1]!)}.log`);
    const buf = fs.readFileSync(victim);
    const second = 12 + buf.readInt32BE(8); // start of the victim's second batch
    buf[second + 70]! ^= 0x55;
    fs.writeFileSync(victim, buf);
    const m2 = await LogManager.open(dir);
    const l2 = m2.partition('r', 0)!;
    assert.deepEqual(l2.segmentBaseOffsets(), [bases[0], bases[1]]);
    assert.equal(fs.statSync(victim).size, second);
    assert.equal(l2.logEndOffset, bases[1]! + 2);
    for (const b of bases.slice(2)) assert.ok(!fs.existsSync(path.join(dir, 'r-0', `${seg(b)}.log`)));
    const values = assertGapFree(l2);
    assert.equal(values.length, bases[1]! + 2);
    // The truncated segment is the active one again and takes appends.
    assert.equal((await l2.append(valuesBatch('z', 1))).baseOffset, bases[1]! + 2);
    await m2.close();
  });

  test('the recovery checkpoint bounds the scan: flushed segments below it are not rescanned', async () => {
    const { dir, mgr, log } = await fresh({ segmentBytes: 600 });
    for (let i = 0; i < 30; i++) await log.append(valuesBatch(`c${i}-`, 2));
    const bases = log.segmentBaseOffsets();
    await mgr.flush();
    await mgr.close();
    fs.rmSync(path.join(dir, '.kafka_cleanshutdown'));
    // A flipped payload byte in the first (flushed, checkpointed) segment is
    // not looked at; the same in the last segment is.
    const first = path.join(dir, 'r-0', `${seg(bases[0]!)}.log`);
    const b0 = fs.readFileSync(first);
    b0[b0.length - 3]! ^= 1;
    fs.writeFileSync(first, b0);
    const m2 = await LogManager.open(dir);
    assert.equal(m2.recovered, true);
    assert.equal(fs.statSync(first).size, b0.length, 'below the recovery point: trusted');
    assert.deepEqual(m2.partition('r', 0)!.segmentBaseOffsets(), bases);
    await m2.close();
    const last = path.join(dir, 'r-0', `${seg(bases[bases.length - 1]!)}.log`);
    const bl = fs.readFileSync(last);
    bl[bl.length - 3]! ^= 1;
    fs.writeFileSync(last, bl);
    fs.rmSync(path.join(dir, '.kafka_cleanshutdown'));
    const m3 = await LogManager.open(dir);
    assert.ok(fs.statSync(last).size < bl.length, 'from the recovery point on: verified and cut');
    await m3.close();
  });

  test('reads concurrent with appends that roll segments always see whole, valid data', async () => {
    const { mgr, log } = await fresh({ segmentBytes: 1024, indexIntervalBytes: 100 });
    let reads = 0;
    let stop = false;
    const reader = (async () => {
      while (!stop) {
        const leo = log.logEndOffset;
        if (leo > 0) {
          const off = (reads * 7) % leo;
          const r = log.read(off, 4096, true);
          assert.equal(r.errorCode, 0);
          const got = parseBatches(sliceBytes(r.slices));
          for (const s of r.slices) s.release();
          assert.ok(got.length > 0 && got[0]!.baseOffset <= off && got[0]!.crcOk);
          const t = log.offsetForTimestamp(1_700_000_000_000);
          assert.equal(t.offset, 0);
          reads++;
        }
        await new Promise((r) => setImmediate(r));
      }
    })();
    const appends: Promise<unknown>[] = [];
    for (let i = 0; i < 300; i++) appends.push(log.append(valuesBatch(`x${i}-`, 3)));
    const results = await Promise.all(appends);
    stop = true;
    await reader;
    assert.ok(results.every((r) => (r as { errorCode: number }).errorCode === 0));
    assert.ok(log.segmentBaseOffsets().length > 20);
    assert.ok(reads > 0);
    assertGapFree(log);
    await mgr.close();
  });

  test('SIGKILL during an append loop: reopened log is a gap-free prefix holding every acknowledged batch', async () => {
    const dir = tmpDir('zcopy-kafka-kill-');
    dirs.push(dir);
    const fds0 = await settledFds();
    for (let round = 0; round < 2; round++) {
      const child = spawn(process.execPath, [fileURLToPath(import.meta.url)], {
        env: { ...process.env, ZCOPY_KAFKA_CHILD: dir },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let acked = -1;
      let lastAckOffset = -1;
      let buffered = '';
      const target = 1300 + round * 300;
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code, sig) => resolve(sig === 'SIGKILL' ? -9 : code)));
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`child acknowledged only ${acked + 1} batches in 60 s`)), 60_000);
        child.stdout!.on('data', (d: Buffer) => {
          buffered += d.toString();
          let nl;
          while ((nl = buffered.indexOf('\n')) >= 0) {
            const [, k, off] = buffered.slice(0, nl).split(' ');
            buffered = buffered.slice(nl + 1);
            acked = Number(k);
            lastAckOffset = Number(off);
          }
          if (acked >= target) {
            clearTimeout(timer);
            child.kill('SIGKILL');
            resolve();
          }
        });
        child.on('exit', () => {
          clearTimeout(timer);
          if (acked < target) reject(new Error('child exited early'));
        });
      });
      assert.equal(await exited, -9);
      const mgr = await LogManager.open(dir, CHILD_CONFIG);
      assert.equal(mgr.recovered, true);
      const log = mgr.partition('crash', 0)!;
      assert.ok(log.logEndOffset > lastAckOffset, `every acknowledged batch is there (LEO ${log.logEndOffset}, last ack at ${lastAckOffset})`);
      const values = assertGapFree(log);
      assert.ok(log.logStartOffset > 0, 'retention ran in the child');
      // The values are exactly batches k0..n-1 in order: nothing lost in the middle, nothing twice.
      let i = 0;
      let k = Number(/^b(\d+)-0$/.exec(values[0]!)![1]);
      while (i < values.length) {
        for (let j = 0; j < childRecords(k); j++, i++) assert.equal(values[i], `b${k}-${j}`, `record ${i}`);
        k++;
      }
      assert.ok(k > acked, `${k} batches, last acknowledged ${acked}`);
      // The idempotent producer state came back too: the last batch retried is a duplicate.
      let seq = 0;
      for (let x = 0; x < k - 1; x++) seq += childRecords(x);
      const lastBase = log.logEndOffset - childRecords(k - 1);
      assert.deepEqual(await log.append(childBatch(k - 1, seq)), { errorCode: 0, baseOffset: lastBase, logAppendTimeMs: -1, logStartOffset: log.logStartOffset });
      assert.equal(log.logEndOffset, lastBase + childRecords(k - 1));
      // The child of the next round continues from here with a new sequence
      // stream: start it fresh (a new topic keeps the check simple).
      await mgr.deleteTopic('crash');
      await mgr.close();
    }
    assert.equal(await settledFds(), fds0);
  });

  test('an empty batch list and a huge declared length never crash recovery', async () => {
    const { dir, mgr, log } = await fresh();
    await log.append(makeBatch([{ value: Buffer.from('only') }]));
    await mgr.close();
    const file = path.join(dir, 'r-0', `${seg(0)}.log`);
    const size = fs.statSync(file).size;
    const huge = Buffer.alloc(61);
    huge.writeBigInt64BE(1n, 0);
    huge.writeInt32BE(0x7fffffff, 8);
    huge[16] = 2;
    fs.appendFileSync(file, huge);
    fs.rmSync(path.join(dir, '.kafka_cleanshutdown'));
    const m2 = await LogManager.open(dir);
    assert.equal(fs.statSync(file).size, size);
    assert.equal(m2.partition('r', 0)!.logEndOffset, 1);
    await m2.close();
  });
});

describe(`kafka storage on a full disk (${MODE})`, () => {
  let mnt: string | undefined;
  let why: string | undefined;
  before(() => {
    const dir = tmpDir('zcopy-kafka-full-');
    dirs.push(dir);
    const m = path.join(dir, 'tmpfs');
    fs.mkdirSync(m);
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', m], { encoding: 'utf8' });
    if (r.status === 0) mnt = m;
    else why = `cannot mount a 2 MiB tmpfs (${(r.stderr || r.error?.message || '').trim()})`;
  });
  after(() => {
    if (mnt) spawnSync('umount', [mnt]);
  });

  test('ENOSPC: the append fails with KAFKA_STORAGE_ERROR, nothing of it stays, the log goes on once there is room', async () => {
    if (!mnt) {
      console.log(`# skipped: ${why}`);
      return;
    }
    const fds0 = await settledFds();
    const filler = path.join(mnt, 'filler');
    fs.writeFileSync(filler, Buffer.alloc(400 * 1024, 1));
    const mgr = await LogManager.open(mnt, { segmentBytes: 200_000, indexIntervalBytes: 512 });
    await mgr.createTopic('full', 1);
    const log = mgr.partition('full', 0)!;
    let okRecords = 0;
    let failed: { errorCode: number } | undefined;
    for (let i = 0; i < 200 && failed === undefined; i++) {
      const leo = log.logEndOffset;
      const r = await log.append(makeBatch(Array.from({ length: 4 }, (_, j) => ({ value: Buffer.alloc(5000, (i + j) & 0xff) }))));
      if (r.errorCode !== 0) {
        failed = r;
        assert.equal(log.logEndOffset, leo, 'nothing assigned');
      } else okRecords += 4;
    }
    assert.ok(failed !== undefined, 'the disk filled up');
    assert.equal(failed.errorCode, ErrorCode.KAFKA_STORAGE_ERROR);
    const logBytes = () => fs.readdirSync(path.join(mnt!, 'full-0')).filter((f) => f.endsWith('.log')).reduce((n, f) => n + fs.statSync(path.join(mnt!, 'full-0', f)).size, 0);
    assert.equal(logBytes(), log.size, 'no partial batch left in the files');
    assert.equal(assertGapFree(log).length, okRecords);
    // Room again: appends go on at the next offset.
    fs.rmSync(filler);
    const next = log.logEndOffset;
    assert.equal((await log.append(valuesBatch('after', 2))).baseOffset, next);
    await mgr.close();
    const m2 = await LogManager.open(mnt);
    assert.equal(m2.recovered, false);
    assert.equal(assertGapFree(m2.partition('full', 0)!).length, okRecords + 2);
    await m2.close();
    assert.equal(await settledFds(), fds0);
  });
});
