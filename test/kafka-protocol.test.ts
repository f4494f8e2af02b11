// The broker at the byte level: a raw client sends exactly the frames a test
// needs. Fetch's zero-copy accounting, KIP-74, long poll, framing limits,
// malformed input, pipelining, many connections, a stalled consumer.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { execFileSync } from 'node:child_process';
import v8 from 'node:v8';
import vm from 'node:vm';
import { resetStats, stats } from '../src/index.js';
import { NATIVE, settledFds, tmpDir, withTimeout } from './helpers.js';
import { RawClient, Writer, batches, fetchBody, parseFetchV4, produceBody, recordBatch, startBroker } from './kafka-helpers.js';

let b: Awaited<ReturnType<typeof startBroker>>;
before(async () => {
  b = await startBroker({ numPartitions: 1 });
});
after(async () => {
  await b.stop();
});

/** Waits (bounded) until `ok()` holds: counters land when the broker's send completes. */
async function settled(ok: () => boolean): Promise<void> {
  await withTimeout(
    (async () => {
      while (!ok()) await new Promise((r) => setTimeout(r, 10));
    })(),
    5000,
    'stats to account for the response',
  ).catch(() => {}); // the assertion that follows says what is missing
}

async function createTopic(c: RawClient, name: string, partitions: number): Promise<void> {
  const w = new Writer();
  w.int32(1).string(name).int32(partitions).int16(1).int32(0).int32(0);
  w.int32(5000);
  const r = await c.request(19, 0, w);
  r.int32();
  r.string();
  assert.equal(r.int16(), 0, `create ${name}`);
}

async function produce(c: RawClient, topic: string, partition: number, batch: Buffer, version = 3): Promise<{ error: number; base: number }> {
  const r = await c.request(0, version, produceBody(topic, partition, batch));
  r.int32();
  r.string();
  r.int32();
  r.int32();
  const error = r.int16();
  return { error, base: r.int64() };
}

test('ApiVersions v0-v3 list every API; v3 (librdkafka first) is answered flexible; v9 gets UNSUPPORTED_VERSION in the v0 layout', async () => {
  const c = await RawClient.connect(b.port);
  try {
    for (const v of [0, 1, 2]) {
      const r = await c.request(18, v, Buffer.alloc(0));
      assert.equal(r.int16(), 0);
      const apis = r.array((r) => [r.int16(), r.int16(), r.int16()]);
      const fetch = apis.find((a) => a[0] === 1)!;
      assert.deepEqual(fetch, [1, 4, 11]);
      assert.deepEqual(apis.find((a) => a[0] === 0), [0, 0, 7], 'Produce advertises min 0');
    }
    const v3 = new Writer().uvarint(8).raw(Buffer.from('kcat-ok')).uvarint(4).raw(Buffer.from('1.7')).uvarint(0);
    const r3 = await c.request(18, 3, v3, { flexible: true });
    assert.equal(r3.int16(), 0);
    const n = r3.uvarint() - 1;
    assert.equal(n, 17);
    const r9 = await c.request(18, 9, new Writer().uvarint(0), { flexible: true });
    assert.equal(r9.int16(), 35);
    const apis = r9.array((r) => [r.int16(), r.int16(), r.int16()]);
    assert.ok(apis.some((a) => a[0] === 18));
  } finally {
    c.destroy();
  }
});

test('Produce then Fetch: bytes round-trip, offsets assigned, and the record bytes go zero-copy (stats)', async () => {
  const c = await RawClient.connect(b.port);
  try {
    await createTopic(c, 'zc', 1);
    const sent: Buffer[] = [];
    let total = 0;
    for (let i = 0; i < 40; i++) {
      const batch = recordBatch(Array.from({ length: 20 }, (_, k) => `rec-${i}-${k}-${'z'.repeat(500)}`));
      const res = await produce(c, 'zc', 0, batch);
      assert.equal(res.error, 0);
      assert.equal(res.base, i * 20);
      sent.push(batch);
      total += batch.length;
    }
    resetStats();
    const r = await c.request(1, 4, fetchBody([{ topic: 'zc', partitions: [{ partition: 0, offset: 0, maxBytes: 10 * 1024 * 1024 }] }]));
    const [t] = parseFetchV4(r);
    const p = t!.partitions[0]!;
    assert.equal(p.error, 0);
    assert.equal(p.hw, 800);
    assert.equal(p.records.length, total);
    const got = batches(p.records);
    assert.equal(got.length, 40);
    got.forEach((g, i) => assert.equal(g.base, i * 20));
    // The batch bytes after the base offset (rewritten in place) are as sent.
    let at = 0;
    for (const s of sent) {
      assert.ok(p.records.subarray(at + 8, at + s.length).equals(s.subarray(8)) || p.records.subarray(at + 17, at + s.length).equals(s.subarray(17)));
      at += s.length;
    }
    await settled(() => {
      const x = stats().bytesByPath;
      return x.sendfile + x.splice + x.nativeCopy + x.portable >= total;
    });
    const st = stats();
    if (NATIVE) {
      assert.equal(st.bytesByPath.sendfile + st.bytesByPath.splice + st.bytesByPath.nativeCopy, total, 'every record byte on the native path');
      assert.equal(st.bytesByPath.portable, 0);
    } else {
      assert.equal(st.bytesByPath.portable, total, 'forced portable path');
    }
  } finally {
    c.destroy();
  }
});

test("fetchMechanism 'sendfile' sends the record bytes by sendfile (native); a bad value is refused", async () => {
  await assert.rejects(startBroker({ fetchMechanism: 'mmap' as 'copy' }), { code: 'ERR_INVALID_ARG_VALUE' });
  const sb = await startBroker({ numPartitions: 1, fetchMechanism: 'sendfile' });
  const c = await RawClient.connect(sb.port);
  try {
    await createTopic(c, 'sf', 1);
    const batch = recordBatch(Array.from({ length: 50 }, (_, k) => `s-${k}-${'s'.repeat(2000)}`));
    assert.equal((await produce(c, 'sf', 0, batch)).error, 0);
    resetStats();
    const r = await c.request(1, 4, fetchBody([{ topic: 'sf', partitions: [{ partition: 0, offset: 0, maxBytes: 1 << 20 }] }]));
    const p = parseFetchV4(r)[0]!.partitions[0]!;
    assert.equal(p.records.length, batch.length);
    await settled(() => {
      const x = stats().bytesByPath;
      return x.sendfile + x.portable >= batch.length;
    });
    const st = stats().bytesByPath;
    if (NATIVE) assert.equal(st.sendfile, batch.length, 'forced sendfile');
    else assert.equal(st.portable, batch.length);
  } finally {
    c.destroy();
    await sb.stop();
  }
});

for (const fetchMode of ['buffer', 'stream'] as const) test(`fetchMode '${fetchMode}' (a benchmark's Node baseline) answers the same bytes, none of them through zcopy's transfer paths`, async () => {
  const nb = await startBroker({ numPartitions: 1, fetchMode });
  const c = await RawClient.connect(nb.port);
  try {
    await createTopic(c, 'buf', 1);
    let total = 0;
    const sent: Buffer[] = [];
    for (let i = 0; i < 6; i++) {
      // ~400 KiB batches: the record set spans several of the 1 MiB reads.
      const batch = recordBatch(Array.from({ length: 100 }, (_, k) => `b-${i}-${k}-${'q'.repeat(4000)}`));
      assert.equal((await produce(c, 'buf', 0, batch)).error, 0);
      sent.push(batch);
      total += batch.length;
    }
    assert.ok(total > 2 * 1024 * 1024, `record set of ${total} bytes spans several chunks`);
    resetStats();
    for (let round = 0; round < 2; round++) {
      const r = await c.request(1, 4, fetchBody([{ topic: 'buf', partitions: [{ partition: 0, offset: 0, maxBytes: 10 * 1024 * 1024 }] }]));
      const p = parseFetchV4(r)[0]!.partitions[0]!;
      assert.equal(p.error, 0);
      assert.equal(p.records.length, total);
      let at = 0;
      for (const s of sent) {
        assert.ok(p.records.subarray(at + 17, at + s.length).equals(s.subarray(17)), `batch at ${at}`);
        at += s.length;
      }
    }
    const st = stats().bytesByPath;
    assert.equal(st.sendfile + st.splice + st.nativeCopy + st.portable, 0, 'the buffer mode writes with socket.write only');
  } finally {
    c.destroy();
    await nb.stop();
  }
});

test('KIP-74: a batch larger than partition_max_bytes comes whole; a later partition gets a cut (partial trailing batch allowed)', async () => {
  const c = await RawClient.connect(b.port);
  try {
    await createTopic(c, 'kip74', 2);
    const big = recordBatch(['x'.repeat(64 * 1024)]);
    assert.equal((await produce(c, 'kip74', 0, big)).error, 0);
    for (let i = 0; i < 3; i++) assert.equal((await produce(c, 'kip74', 1, recordBatch(['y'.repeat(10_000)]))).error, 0);
    const r = await c.request(
      1,
      4,
      fetchBody([{ topic: 'kip74', partitions: [{ partition: 0, offset: 0, maxBytes: 1000 }, { partition: 1, offset: 0, maxBytes: 15_000 }] }]),
    );
    const [t] = parseFetchV4(r);
    const [p0, p1] = t!.partitions;
    assert.equal(p0!.records.length, big.length, 'first partition with data: whole batch');
    assert.ok(p1!.records.length <= 15_000, `second partition cut at partition_max_bytes (${p1!.records.length})`);
    assert.equal(batches(p1!.records).length, 1, 'one whole batch, then a partial one dropped by the client');
  } finally {
    c.destroy();
  }
});

test('OFFSET_OUT_OF_RANGE and UNKNOWN_TOPIC_OR_PARTITION answer at once (no long poll)', async () => {
  const c = await RawClient.connect(b.port);
  try {
    await createTopic(c, 'oor', 1);
    await produce(c, 'oor', 0, recordBatch(['a']));
    const t0 = Date.now();
    const r = await c.request(1, 4, fetchBody([{ topic: 'oor', partitions: [{ partition: 0, offset: 99, maxBytes: 1000 }, { partition: 5, offset: 0, maxBytes: 1000 }] }], { maxWait: 5000, minBytes: 1 }));
    const [t] = parseFetchV4(r);
    assert.equal(t!.partitions[0]!.error, 1);
    assert.equal(t!.partitions[1]!.error, 3);
    assert.ok(Date.now() - t0 < 2500, 'answered without waiting max_wait');
  } finally {
    c.destroy();
  }
});

test('long poll: released early by a produce; other connections are served meanwhile; times out empty otherwise', async () => {
  const c = await RawClient.connect(b.port);
  const other = await RawClient.connect(b.port);
  try {
    await createTopic(c, 'poll', 1);
    const t0 = Date.now();
    const pending = c.request(1, 4, fetchBody([{ topic: 'poll', partitions: [{ partition: 0, offset: 0, maxBytes: 1 << 20 }] }], { maxWait: 15_000, minBytes: 1 }));
    // Another connection works while the fetch waits.
    const md = await other.request(3, 1, new Writer().int32(-1));
    assert.ok(md.remaining > 0);
    await produce(other, 'poll', 0, recordBatch(['wake']));
    const [t] = parseFetchV4(await pending);
    assert.equal(batches(t!.partitions[0]!.records).length, 1);
    assert.ok(Date.now() - t0 < 10_000, 'released by the append, not the timeout');
    const t1 = Date.now();
    const empty = parseFetchV4(await c.request(1, 4, fetchBody([{ topic: 'poll', partitions: [{ partition: 0, offset: 1, maxBytes: 1 << 20 }] }], { maxWait: 300, minBytes: 1 })));
    assert.equal(empty[0]!.partitions[0]!.records.length, 0);
    assert.ok(Date.now() - t1 >= 250, 'waited max_wait_ms');
  } finally {
    c.destroy();
    other.destroy();
  }
});

test('pipelined requests are answered in order; acks=0 gets no response', async () => {
  const c = await RawClient.connect(b.port);
  try {
    await createTopic(c, 'pipe', 1);
    const ps: Array<Promise<unknown>> = [];
    for (let i = 0; i < 30; i++) {
      if (i % 3 === 0) ps.push(c.request(0, 3, produceBody('pipe', 0, recordBatch([`n${i}`]), 0), { noResponse: true }));
      else if (i % 3 === 1) ps.push(c.request(3, 1, new Writer().int32(0)));
      else ps.push(c.request(1, 4, fetchBody([{ topic: 'pipe', partitions: [{ partition: 0, offset: 0, maxBytes: 1 << 20 }] }])));
    }
    await Promise.all(ps); // RawClient rejects on a correlation id out of order
    const lo = await c.request(2, 1, new Writer().int32(-1).int32(1).string('pipe').int32(1).int32(0).int64(-1));
    lo.int32();
    lo.string();
    lo.int32();
    lo.int32();
    assert.equal(lo.int16(), 0);
    lo.int64();
    assert.equal(lo.int64(), 10, 'the ten acks=0 batches were appended');
  } finally {
    c.destroy();
  }
});

test('an acks=0 produce queued behind a long poll is appended even though the client closes right after sending it', async () => {
  const c = await RawClient.connect(b.port);
  await createTopic(c, 'fire', 1);
  // The fetch holds the connection (one request in flight); the produce waits in the queue.
  void c.request(1, 4, fetchBody([{ topic: 'fire', partitions: [{ partition: 0, offset: 0, maxBytes: 1 << 20 }] }], { maxWait: 10_000, minBytes: 1 })).catch(() => {});
  const f = c.frame(0, 3, produceBody('fire', 0, recordBatch(['fire-and-forget']), 0).toBuffer()).bytes;
  c.socket.end(f);
  await withTimeout(c.closed, 5000, 'closed');
  await withTimeout((async () => { while (b.broker.connections > 0) await new Promise((r) => setTimeout(r, 20)); })(), 5000, 'connection finished');
  const q = await RawClient.connect(b.port);
  try {
    const lo = await q.request(2, 1, new Writer().int32(-1).int32(1).string('fire').int32(1).int32(0).int64(-1));
    lo.int32();
    lo.string();
    lo.int32();
    lo.int32();
    assert.equal(lo.int16(), 0);
    lo.int64();
    assert.equal(lo.int64(), 1, 'the acks=0 batch was appended');
  } finally {
    q.destroy();
  }
});

test('Produce v2 (message sets) gets UNSUPPORTED_VERSION per partition, connection stays usable', async () => {
  const c = await RawClient.connect(b.port);
  try {
    const w = new Writer().int16(1).int32(1000).int32(1).string('v2').int32(1).int32(0).bytes(Buffer.alloc(30));
    const r = await c.request(0, 2, w);
    r.int32();
    r.string();
    r.int32();
    r.int32();
    assert.equal(r.int16(), 35);
    assert.equal((await c.request(18, 0, Buffer.alloc(0))).int16(), 0);
  } finally {
    c.destroy();
  }
});

test('a corrupt batch gets CORRUPT_MESSAGE, nothing appended, the connection stays usable', async () => {
  const c = await RawClient.connect(b.port);
  try {
    await createTopic(c, 'crc', 1);
    const bad = recordBatch(['hello']);
    bad[bad.length - 1] ^= 0xff;
    const res = await produce(c, 'crc', 0, bad);
    assert.equal(res.error, 2);
    assert.equal((await produce(c, 'crc', 0, recordBatch(['ok']))).base, 0);
  } finally {
    c.destroy();
  }
});

test('malformed frames close only their connection: negative/huge/tiny size, truncated body, unknown key, bad version, garbage; no fd leaked', async () => {
  const fds = await settledFds();
  const cases: Array<[string, Buffer]> = [];
  const size = (n: number): Buffer => {
    const s = Buffer.alloc(4);
    s.writeInt32BE(n);
    return s;
  };
  cases.push(['negative size', size(-5)]);
  cases.push(['size over socket.request.max.bytes', size(200 * 1024 * 1024)]);
  cases.push(['size too small', Buffer.concat([size(3), Buffer.alloc(3)])]);
  const probe = await RawClient.connect(b.port);
  cases.push(['unknown api key', probe.frame(999, 0, Buffer.alloc(0)).bytes]);
  cases.push(['unsupported Fetch version', probe.frame(1, 99, Buffer.alloc(10)).bytes]);
  cases.push(['truncated Metadata body', probe.frame(3, 1, Buffer.from([0, 0, 0, 5, 0, 3])).bytes]);
  cases.push(['garbage array count', probe.frame(1, 4, Buffer.from('\xff\xff\xff\xf0garbagegarbagegarbage', 'latin1')).bytes]);
  probe.destroy();
  for (const [name, bytes] of cases) {
    const c = await RawClient.connect(b.port);
    c.socket.write(bytes);
    await withTimeout(c.closed, 5000, `${name}: the broker closes the connection`);
  }
  // Garbage after a valid header (trailing bytes) is ignored: answered.
  const ok = await RawClient.connect(b.port);
  const r = await ok.request(18, 0, Buffer.from('trailing garbage'));
  assert.equal(r.int16(), 0);
  ok.destroy();
  // A truncated frame then a disconnect (mid-produce) leaves nothing behind.
  const mid = await RawClient.connect(b.port);
  const f = mid.frame(0, 3, produceBody('midp', 0, recordBatch(['x'.repeat(10_000)])).toBuffer()).bytes;
  mid.socket.write(f.subarray(0, f.length / 2));
  await new Promise((r) => setTimeout(r, 50));
  mid.destroy();
  await withTimeout((async () => { while (b.broker.connections > 0) await new Promise((r) => setTimeout(r, 20)); })(), 5000, 'connections closed');
  assert.equal(await settledFds(), fds, 'fds back to where they were');
});

test('200 concurrent connections producing and fetching', async () => {
  const setup = await RawClient.connect(b.port);
  await createTopic(setup, 'many', 4);
  setup.destroy();
  const clients = await Promise.all(Array.from({ length: 200 }, () => RawClient.connect(b.port)));
  try {
    await withTimeout(
      Promise.all(
        clients.map(async (c, i) => {
          const p = i % 4;
          const res = await produce(c, 'many', p, recordBatch([`from-${i}`]));
          assert.equal(res.error, 0);
          const [t] = parseFetchV4(await c.request(1, 4, fetchBody([{ topic: 'many', partitions: [{ partition: p, offset: res.base, maxBytes: 1 << 16 }] }])));
          assert.ok(t!.partitions[0]!.records.includes(Buffer.from(`from-${i}`)));
        }),
      ),
      60_000,
      '200 clients',
    );
    assert.equal(b.broker.connections >= 200, true);
  } finally {
    for (const c of clients) c.destroy();
  }
});

test('a consumer that stops reading mid-fetch costs ~0 CPU and no memory; disconnecting it releases everything', async () => {
  const c = await RawClient.connect(b.port);
  await createTopic(c, 'stall', 1);
  const payload = 'q'.repeat(900_000);
  for (let i = 0; i < 24; i++) assert.equal((await produce(c, 'stall', 0, recordBatch([payload]))).error, 0);
  c.destroy();
  const fds = await settledFds();
  const s = net.connect(b.port, '127.0.0.1');
  await withTimeout(new Promise((r) => s.once('connect', r)), 5000, 'connect');
  s.on('error', () => {});
  s.pause(); // never reads: the response (~21 MB) fills the socket buffers
  const rc = (await RawClient.connect(b.port));
  const f = rc.frame(1, 4, fetchBody([{ topic: 'stall', partitions: [{ partition: 0, offset: 0, maxBytes: 64 << 20 }] }]).toBuffer()).bytes;
  rc.destroy();
  // Garbage from the produce above (21 MB of request frames) must not be
  // collected inside the window and hide growth: collect it first.
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  gc();
  const mem0 = process.memoryUsage().arrayBuffers;
  s.write(f);
  await new Promise((r) => setTimeout(r, 300)); // let the send fill the buffers and stall
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, 1000));
  const cpu = process.cpuUsage(cpu0);
  const wall = Number(process.hrtime.bigint() - t0) / 1e6;
  const ms = (cpu.user + cpu.system) / 1000;
  assert.ok(ms < wall * 0.1, `CPU ${ms.toFixed(1)} ms over ${wall.toFixed(0)} ms stalled`);
  // The ~21 MB response is not held in memory: the file bytes wait in the page cache.
  gc();
  const grown = process.memoryUsage().arrayBuffers - mem0;
  assert.ok(grown < 8 * 1024 * 1024, `Buffer memory grew by ${(grown / 1048576).toFixed(1)} MiB while stalled`);
  s.destroy();
  await withTimeout((async () => { while (b.broker.connections > 0) await new Promise((r) => setTimeout(r, 20)); })(), 5000, 'connection gone');
  assert.equal(await settledFds(), fds, 'no fd leaked by the aborted fetch');
});

test('TLS listener: Fetch takes the portable path (stats shows it), bytes intact', async (t) => {
  const dir = tmpDir('zcopy-kafka-tls-');
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, 'k.pem'), '-out', path.join(dir, 'c.pem'), '-days', '1', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
  } catch {
    t.skip('openssl not available to make a certificate');
    return;
  }
  const tb = await startBroker({ dataDir: path.join(dir, 'data'), tls: { cert: fs.readFileSync(path.join(dir, 'c.pem')), key: fs.readFileSync(path.join(dir, 'k.pem')) } });
  try {
    const s = tls.connect({ port: tb.port, host: '127.0.0.1', rejectUnauthorized: false });
    await withTimeout(new Promise((r) => s.once('secureConnect', r)), 10_000, 'tls');
    // The raw client speaks over any duplex: wrap the TLS socket.
    const c = new (RawClient as unknown as { new (s: net.Socket): RawClient })(s);
    await createTopic(c, 'tls', 1);
    const batch = recordBatch(['secret'.repeat(1000)]);
    assert.equal((await produce(c, 'tls', 0, batch)).error, 0);
    resetStats();
    const [tt] = parseFetchV4(await c.request(1, 4, fetchBody([{ topic: 'tls', partitions: [{ partition: 0, offset: 0, maxBytes: 1 << 20 }] }])));
    assert.equal(tt!.partitions[0]!.records.length, batch.length);
    // The client can parse the response before the broker's last write
    // callback (where the portable path counts) has run: wait for it.
    await settled(() => stats().bytesByPath.portable >= batch.length);
    const st = stats();
    assert.equal(st.bytesByPath.portable, batch.length, JSON.stringify(st));
    assert.equal(st.bytesZeroCopy, 0, JSON.stringify(st));
    s.destroy();
  } finally {
    await tb.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
