// `zcopy kafka` and the broker's life cycle: the address printed once ready,
// a log line per connection, graceful SIGTERM (in-flight response finished,
// clean-shutdown marker, exit 0); restart keeps topics, records, committed
// offsets and groups, and never reuses a producer id.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLEAN_SHUTDOWN_FILE } from '../src/kafka/storage/index.js';
import { tmpDir, withTimeout } from './helpers.js';
import { RawClient, Writer, batches, fetchBody, parseFetchV4, produceBody, recordBatch, startBroker } from './kafka-helpers.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

test('zcopy kafka: prints its address, logs connections, answers, and stops cleanly on SIGTERM with a long poll in flight', async () => {
  const dir = tmpDir('zcopy-kafka-cli-');
  const child = spawn(process.execPath, [MAIN, 'kafka', '--data', dir, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    const until = (re: RegExp, what: string): Promise<RegExpExecArray> =>
      withTimeout(
        (async () => {
          for (;;) {
            const m = re.exec(out);
            if (m) return m;
            await new Promise((r) => setTimeout(r, 20));
          }
        })(),
        15_000,
        `${what}; stdout: ${out}; stderr: ${err}`,
      );
    const port = Number((await until(/ready on 127\.0\.0\.1:(\d+)/, 'ready line'))[1]);
    const c = await RawClient.connect(port);
    await until(/conn 1 127\.0\.0\.1:\d+ connected/, 'connection log line');
    const res = await c.request(0, 3, produceBody('cli', 0, recordBatch(['hello'])));
    res.int32();
    res.string();
    res.int32();
    res.int32();
    assert.equal(res.int16(), 0);
    // A long poll in flight when the signal comes is answered, not cut.
    const poll = c.request(1, 4, fetchBody([{ topic: 'cli', partitions: [{ partition: 0, offset: 1, maxBytes: 1 << 20 }] }], { maxWait: 20_000, minBytes: 1 }));
    await new Promise((r) => setTimeout(r, 200));
    child.kill('SIGTERM');
    const [t] = parseFetchV4(await withTimeout(poll, 10_000, 'the long poll answered at shutdown'));
    assert.equal(t!.partitions[0]!.error, 0);
    assert.equal(await withTimeout(exited, 15_000, 'exit'), 0);
    assert.match(out, /SIGTERM/);
    assert.match(out, /closed after \d+ request/);
    assert.ok(fs.existsSync(path.join(dir, CLEAN_SHUTDOWN_FILE)), 'clean-shutdown marker written');
    c.destroy();
  } finally {
    child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('zcopy kafka: bad options exit 2 with a message', async () => {
  const run = (args: string[]): Promise<{ code: number | null; err: string }> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [MAIN, 'kafka', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d) => (err += d));
      child.once('exit', (code) => resolve({ code, err }));
    });
  const a = await withTimeout(run([]), 10_000, 'no --data');
  assert.equal(a.code, 2);
  assert.match(a.err, /--data is required/);
  const b = await withTimeout(run(['--data', '/tmp/x', '--log-level', 'loud']), 10_000, 'bad log level');
  assert.equal(b.code, 2);
  const c = await withTimeout(run(['--data', '/tmp/x', '--tls-cert', '/nonexistent']), 10_000, 'cert without key');
  assert.equal(c.code, 2);
});

test('restart: records, committed offsets and groups survive; producer ids are never reused', async () => {
  const dir = tmpDir('zcopy-kafka-restart-');
  try {
    let b = await startBroker({ dataDir: dir });
    let c = await RawClient.connect(b.port);
    await c.request(0, 3, produceBody('keep', 0, recordBatch(['one', 'two', 'three'])));
    const commit = new Writer().string('g-keep').int32(-1).string('').int64(-1).int32(1).string('keep').int32(1).int32(0).int64(2).nullableString('meta');
    const cr = await c.request(8, 2, commit);
    cr.int32();
    cr.string();
    cr.int32();
    cr.int32();
    assert.equal(cr.int16(), 0);
    const pid = async (cl: RawClient): Promise<number> => {
      const r = await cl.request(22, 0, new Writer().nullableString(null).int32(60_000));
      r.int32();
      assert.equal(r.int16(), 0);
      return r.int64();
    };
    const before = [await pid(c), await pid(c)];
    c.destroy();
    await b.stop();

    b = await startBroker({ dataDir: dir });
    c = await RawClient.connect(b.port);
    const [t] = parseFetchV4(await c.request(1, 4, fetchBody([{ topic: 'keep', partitions: [{ partition: 0, offset: 0, maxBytes: 1 << 20 }] }])));
    assert.equal(batches(t!.partitions[0]!.records).length, 1);
    assert.equal(t!.partitions[0]!.hw, 3);
    const of = await c.request(9, 1, new Writer().string('g-keep').int32(1).string('keep').int32(1).int32(0));
    of.int32();
    of.string();
    of.int32();
    of.int32();
    assert.equal(of.int64(), 2, 'committed offset survived');
    assert.equal(of.nullableString(), 'meta', 'commit metadata round-trips');
    assert.ok(b.broker.coordinator.groupIds().includes('g-keep'), 'group rebuilt on start');
    const after = await pid(c);
    assert.ok(!before.includes(after) && after > Math.max(...before), `new producer id ${after} after ${before}`);
    c.destroy();
    await b.stop();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
