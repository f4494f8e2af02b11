// Issue 9 benchmark: the Kafka-protocol broker (zcopy/kafka) over loopback TCP.
//
//   node bench/kafka/index.mjs [--size 1g] [--runs 3] [--clients raw,kcat,kafkajs]
//                              [--modes zerocopy,zerocopy-sendfile,buffer,stream]
//
// Per broker mode, each in its own process:
//   zerocopy           the broker as shipped: record bytes by sendParts with
//                      mechanism 'auto' (a native copy loop on loopback TCP)
//   zerocopy-sendfile  the same with fetchMechanism 'sendfile'
//   buffer             a Node baseline: each partition's record bytes read
//                      into one Buffer, the response written with socket.write
//   stream             a Node baseline: 1 MiB Buffers, socket.write, 'drain'
// and per client:
//   produce  --size of 1 KiB records in ~1 MiB batches (CRC-32C checked and
//            appended by the broker), acks=1, 4 requests in flight
//   raw      a fetch-only client in C (bench/core/c/kafka-fetch.c): Fetch v4
//            with 64 MiB max_bytes, one in flight, each response read into a
//            1 MiB buffer and discarded, the same receive loop as the C sink
//            of the references (so the client is not the bottleneck)
//   raw-node the same fetch loop in Node (net.Socket 'data' events), for
//            comparison: Node's own socket reads cap it
//   kcat     kcat -C -o beginning -e (librdkafka), output discarded
//   kafkajs  a kafkajs consumer counting batch bytes
// Reported: MB/s (1e6 bytes), records/s, and the broker's CPU seconds per GB
// served, median [min-max] over --runs, and the targets of issue 9 as ratios
// of the same run. Needs `npm run build` (dist/). Writes
// bench/results/kafka-<stamp>.json and kafka-latest.json.
import { fork, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32c } from '../../dist/index.js';
import { BenchUsageError, buildC, commandLine, fmtRatio, fmtSpread, jsonChild, options, parseCount, parseSize, spread, track, writeResults } from '../lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const ALL_CLIENTS = ['raw', 'raw-node', 'kcat', 'kafkajs'];
const ALL_MODES = ['zerocopy', 'zerocopy-sendfile', 'buffer', 'stream'];
const list = (v, all, label) => {
  const xs = v.split(',');
  for (const x of xs) if (!all.includes(x)) throw new BenchUsageError(`invalid --${label} '${v}': expected a comma-separated list of ${all.join(', ')}`);
  return xs;
};
const { SIZE, RUNS, CLIENTS, MODES } = options(
  import.meta.url,
  { size: { type: 'string', default: '1g' }, runs: { type: 'string', default: '3' }, clients: { type: 'string', default: 'raw,kcat,kafkajs' }, modes: { type: 'string', default: 'zerocopy,zerocopy-sendfile,buffer,stream' } },
  { check: (v) => ({ SIZE: parseSize(v.size), RUNS: parseCount(v.runs, 'runs'), CLIENTS: list(v.clients, ALL_CLIENTS, 'clients'), MODES: list(v.modes, ALL_MODES, 'modes') }) },
);
const RECORD = 1024;
const PER_BATCH = 1000;

function zigzag(v) {
  return v >= 0 ? v * 2 : -v * 2 - 1;
}
function varint(v) {
  const out = [];
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}
/** One RecordBatch v2 of PER_BATCH records of RECORD bytes. */
function makeBatch() {
  const value = Buffer.alloc(RECORD, 'k');
  const recs = [];
  for (let i = 0; i < PER_BATCH; i++) {
    const body = Buffer.concat([Buffer.from([0]), varint(zigzag(0)), varint(zigzag(i)), varint(zigzag(-1)), varint(zigzag(RECORD)), value, varint(0)]);
    recs.push(varint(zigzag(body.length)), body);
  }
  const records = Buffer.concat(recs);
  const h = Buffer.alloc(61);
  h.writeInt32BE(49 + records.length, 8);
  h.writeInt32BE(-1, 12);
  h.writeInt8(2, 16);
  h.writeInt32BE(PER_BATCH - 1, 23);
  const now = BigInt(Date.now());
  h.writeBigInt64BE(now, 27);
  h.writeBigInt64BE(now, 35);
  h.writeBigInt64BE(-1n, 43);
  h.writeInt16BE(-1, 51);
  h.writeInt32BE(-1, 53);
  h.writeInt32BE(PER_BATCH, 57);
  const batch = Buffer.concat([h, records]);
  batch.writeUInt32BE(crc32c(batch, 21) >>> 0, 17);
  return batch;
}

function str(s) {
  const b = Buffer.alloc(2 + Buffer.byteLength(s));
  b.writeInt16BE(Buffer.byteLength(s));
  b.write(s, 2);
  return b;
}
function frame(apiKey, version, corr, body) {
  const head = Buffer.concat([Buffer.from([apiKey >> 8, apiKey & 255, version >> 8, version & 255]), Buffer.alloc(4), str('bench')]);
  head.writeInt32BE(corr, 4);
  const size = Buffer.alloc(4);
  size.writeInt32BE(head.length + body.length);
  return Buffer.concat([size, head, body]);
}
const i32 = (v) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(v);
  return b;
};
const i64 = (v) => {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(BigInt(v));
  return b;
};

/** Counts response frames and bytes on a socket without keeping them. */
function responses(sock, onFrame) {
  let need = -1;
  let head = Buffer.alloc(0);
  let left = 0;
  const HEAD = 64;
  sock.on('data', (d) => {
    let at = 0;
    while (at < d.length) {
      if (left === 0) {
        const take = Math.min(4 - head.length, d.length - at);
        head = Buffer.concat([head, d.subarray(at, at + take)]);
        at += take;
        if (head.length < 4) return;
        need = head.readInt32BE(0);
        left = need;
        head = Buffer.alloc(0);
        var first = Buffer.alloc(0);
        sock._first = first;
        continue;
      }
      const take = Math.min(left, d.length - at);
      if (sock._first.length < HEAD) sock._first = Buffer.concat([sock._first, d.subarray(at, at + Math.min(take, HEAD - sock._first.length))]);
      at += take;
      left -= take;
      if (left === 0) onFrame(need, sock._first);
    }
  });
}

function connect(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

async function produce(port, topic, batches, batch) {
  const s = await connect(port);
  let corr = 0;
  let acked = 0;
  let sent = 0;
  const t0 = process.hrtime.bigint();
  await new Promise((resolve) => {
    const body = Buffer.concat([Buffer.from([0xff, 0xff]), Buffer.from([0, 1]), i32(30000), i32(1), str(topic), i32(1), i32(0), i32(batch.length), batch]);
    const pump = () => {
      while (sent < batches && sent - acked < 4) {
        s.write(frame(0, 3, ++corr, body));
        sent++;
      }
    };
    responses(s, () => {
      acked++;
      if (acked === batches) resolve();
      else pump();
    });
    pump();
  });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  s.destroy();
  return secs;
}

async function rawFetch(port, topic, totalRecords, batchBytes) {
  const s = await connect(port);
  let offset = 0;
  let bytes = 0;
  let corr = 0;
  const t0 = process.hrtime.bigint();
  const headLen = 4 + 4 + 4 + 2 + Buffer.byteLength(topic) + 4 + 4 + 2 + 8 + 8 + 4 + 4;
  await new Promise((resolve) => {
    const ask = () => {
      const body = Buffer.concat([i32(-1), i32(500), i32(1), i32(64 << 20), Buffer.from([0]), i32(1), str(topic), i32(1), i32(0), i64(offset), i32(64 << 20)]);
      s.write(frame(1, 4, ++corr, body));
    };
    responses(s, (size, first) => {
      const recBytes = first.readInt32BE(headLen - 4);
      bytes += recBytes;
      offset += Math.floor(recBytes / batchBytes) * PER_BATCH; // uniform batches
      if (offset >= totalRecords) resolve();
      else ask();
    });
    ask();
  });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  s.destroy();
  return { secs, bytes };
}

async function rawFetchC(port, topic, totalRecords, batchBytes) {
  const c = jsonChild(C_REF['kafka-fetch'], [`tcp:${port}`, topic, String(totalRecords), String(batchBytes), String(PER_BATCH)], { timeoutMs: 300_000 });
  const r = await c.next();
  await c.done();
  if (r.records < totalRecords) throw new Error(`kafka-fetch: ${r.records} of ${totalRecords} records`);
  return r.wallS;
}

async function kcatFetch(port, topic) {
  const t0 = process.hrtime.bigint();
  await new Promise((resolve, reject) => {
    const c = track(spawn('kcat', ['-b', `127.0.0.1:${port}`, '-C', '-t', topic, '-o', 'beginning', '-e', '-q', '-f', '%o\n', '-X', 'fetch.message.max.bytes=67108864'], { stdio: ['ignore', 'ignore', 'inherit'] }));
    c.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`kcat exited ${code}`))));
  });
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function kafkajsFetch(port, topic, totalRecords) {
  const { Kafka, logLevel } = await import('kafkajs');
  const kafka = new Kafka({ brokers: [`127.0.0.1:${port}`], logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: `bench-${Date.now()}`, maxBytes: 64 << 20, maxBytesPerPartition: 64 << 20 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const t0 = process.hrtime.bigint();
  let n = 0;
  await new Promise((resolve) => {
    void consumer.run({
      eachBatch: async ({ batch }) => {
        n += batch.messages.length;
        if (n >= totalRecords) resolve();
      },
    });
  });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  await consumer.disconnect();
  return secs;
}

function cpu(child) {
  return new Promise((resolve) => {
    child.once('message', (m) => resolve((m.cpu.user + m.cpu.system) / 1e6));
    child.send('cpu');
  });
}


// The C reference programs of bench/core (needs a C compiler; skipped with a
// printed reason otherwise).
let C_REF = null;
try {
  C_REF = buildC(['send', 'sink', 'kafka-fetch']);
} catch (err) {
  console.error(`C reference skipped: cannot build bench/core/c (${err.message.split('\n')[0]})`);
}
const hasKcat = spawnSync('sh', ['-c', 'command -v kcat'], { stdio: 'ignore' }).status === 0;
const batch = makeBatch();
const batches = Math.max(1, Math.round(SIZE / batch.length));
const totalRecords = batches * PER_BATCH;
const results = {};
for (const mode of MODES) {
  const rows = { produce: [], produceRecs: [] };
  for (let run = 0; run < RUNS; run++) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zcopy-bench-kafka-'));
    const child = track(fork(path.join(here, 'broker.mjs'), [dir, mode], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    try {
      const { port } = await new Promise((r) => child.once('message', r));
      const topic = 'bench';
      const pSecs = await produce(port, topic, batches, batch);
      rows.produce.push((batches * batch.length) / 1e6 / pSecs);
      rows.produceRecs.push(totalRecords / pSecs);
      if (mode === MODES[0] && C_REF) {
        // The physical reference: a C program sends the same segment files
        // (the broker's own .log files, as the fetches read them) to a C sink
        // over the same transport, with sendfile and with a 1 MiB copy loop.
        const segs = fs.readdirSync(path.join(dir, `${topic}-0`)).filter((f) => f.endsWith('.log')).sort().map((f) => path.join(dir, `${topic}-0`, f));
        for (const how of ['sendfile', 'copy']) {
          let bytes = 0;
          let secs = 0;
          for (const seg of segs) {
            if (fs.statSync(seg).size === 0) continue;
            const sink = jsonChild(C_REF.sink, ['tcp:0', '--conns', '1'], { timeoutMs: 300_000 });
            const addr = (await sink.next()).listening;
            const sender = jsonChild(C_REF.send, [how, addr, seg], { timeoutMs: 300_000 });
            const r = await sender.next();
            await sink.next();
            await sender.kill?.();
            await sink.kill?.();
            bytes += r.bytes;
            secs += r.wallS;
          }
          (rows[`C ${how} MB/s (reference)`] ??= []).push(bytes / 1e6 / secs);
        }
      }
      for (const client of CLIENTS) {
        if (client === 'kcat' && !hasKcat) continue;
        const c0 = await cpu(child);
        let secs;
        if (client === 'raw' && !C_REF) {
          console.error('raw (C) fetch client skipped: no C compiler; use --clients raw-node');
          continue;
        }
        if (client === 'raw') secs = await rawFetchC(port, topic, totalRecords, batch.length);
        else if (client === 'raw-node') secs = (await rawFetch(port, topic, totalRecords, batch.length)).secs;
        else if (client === 'kcat') secs = await kcatFetch(port, topic);
        else secs = await kafkajsFetch(port, topic, totalRecords);
        const used = (await cpu(child)) - c0;
        const bytes = batches * batch.length;
        (rows[`${client} MB/s`] ??= []).push(bytes / 1e6 / secs);
        (rows[`${client} records/s`] ??= []).push(totalRecords / secs);
        (rows[`${client} broker CPU s/GB`] ??= []).push(used / (bytes / 1e9));
      }
    } finally {
      child.send('stop');
      await new Promise((r) => child.once('exit', r));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  results[mode] = rows;
}

const lines = [];
const say = (l) => {
  lines.push(l);
  console.log(l);
};
say(commandLine(import.meta.url, undefined, { lock: false }));
say(`zcopy/kafka over loopback TCP: ${(batches * batch.length / 1e6).toFixed(0)} MB in ${batches} batches of ${PER_BATCH} x ${RECORD} B records; median [min-max] of ${RUNS} run(s)`);
const keys = Object.keys(results[MODES[0]]);
say(['metric', ...MODES].join(' | '));
const label = (k) => (k === 'produce' ? 'produce MB/s' : k === 'produceRecs' ? 'produce records/s' : k);
for (const k of keys) say([label(k), ...MODES.map((m) => fmtSpread(spread(results[m][k] ?? []), k.includes('records') || k === 'produceRecs' ? 0 : 2))].join(' | '));
// Issue 9's targets, as ratios of medians of this run.
const med = (mode, k) => spread(results[mode]?.[k] ?? [])?.median;
const zc = MODES.includes('zerocopy') ? 'zerocopy' : null;
if (zc) {
  const cBest = Math.max(med(zc, 'C sendfile MB/s (reference)') ?? NaN, med(zc, 'C copy MB/s (reference)') ?? NaN);
  say('targets (same run, medians):');
  say(`  raw fetch / better C reference (>= 0.8x): ${fmtRatio(med(zc, 'raw MB/s'), cBest)}`);
  if (MODES.includes('buffer')) {
    say(`  broker CPU per GB, raw fetch, zerocopy / buffer (<= 0.35x): ${fmtRatio(med(zc, 'raw broker CPU s/GB'), med('buffer', 'raw broker CPU s/GB'))}`);
    say(`  kcat consume, zerocopy / buffer (>= 1.5x): ${fmtRatio(med(zc, 'kcat MB/s'), med('buffer', 'kcat MB/s'))}`);
  }
  if (MODES.includes('zerocopy-sendfile') && MODES.includes('buffer')) {
    say(`  (fetchMechanism sendfile) raw fetch / better C: ${fmtRatio(med('zerocopy-sendfile', 'raw MB/s'), cBest)}; broker CPU per GB / buffer: ${fmtRatio(med('zerocopy-sendfile', 'raw broker CPU s/GB'), med('buffer', 'raw broker CPU s/GB'))}, / stream: ${fmtRatio(med('zerocopy-sendfile', 'raw broker CPU s/GB'), med('stream', 'raw broker CPU s/GB'))}`);
  }
  if (MODES.includes('stream')) {
    say(`  (against the streaming baseline) broker CPU per GB, raw fetch, zerocopy / stream: ${fmtRatio(med(zc, 'raw broker CPU s/GB'), med('stream', 'raw broker CPU s/GB'))}; kcat zerocopy / stream: ${fmtRatio(med(zc, 'kcat MB/s'), med('stream', 'kcat MB/s'))}`);
  }
  say(`  produce MB/s (>= 400): ${fmtSpread(spread(results[zc].produce), 0)}`);
}
const data = { date: new Date().toISOString(), command: lines[0], size: batches * batch.length, runs: RUNS, results };
writeResults('kafka', data, { text: lines.join('\n'), latest: true });
