// CompositeBuffer benchmark (issue 4): CompositeBuffer against bl 6.
//
//   npx tsc -p tsconfig.json
//   flock /tmp/zcopy-bench.lock node bench/composite.mjs [--runs 5] [--seconds 1.5] [--quick]
//
// Scenarios (the same seeded data for both libraries):
//   frames       a 1 MiB stream of Kafka-style requests arriving in random 1-16 KiB
//                chunks: per frame read size (u32BE), api key and version (i16BE),
//                correlation id (i32BE), client-id length (i16BE), take the body
//                (0-1 KiB) as one Buffer, drop the frame. The stream is replayed.
//   frames-min   the same stream, reading only the length prefix and the body.
//   random-u32   readUInt32BE at 2^18 random offsets over 1,000 components of 1-16 KiB.
// Received data is hot in cache in a real server (the kernel has just copied
// it), hence a 1 MiB stream replayed rather than a cold 1 GiB one.
// Each (scenario, library) runs in its own process; runs are interleaved; the
// measured runs hold /tmp/zcopy-bench.lock. The table goes to stdout, the raw
// runs and medians to bench/results/composite-<date>.json.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { commandLine, fmt, fmtRatio, interleave, locked, machineInfo, options, parseCount, parseSeconds, ratio, runSelf, spread, table, writeResults, xorshift32 } from './lib.mjs';

// --child and --impl: one scenario in this process (the parent runs them).
const { values: argv, runs, seconds } = options(import.meta.url, {
  child: { type: 'string' },
  impl: { type: 'string' },
  runs: { type: 'string' },
  seconds: { type: 'string' },
  quick: { type: 'boolean', default: false },
}, {
  check: (v) => ({
    values: v,
    runs: parseCount(v.runs ?? (v.quick ? 2 : 5), 'runs'),
    seconds: parseSeconds(v.seconds ?? (v.quick ? 0.5 : 1.5)),
  }),
});

/** An integer in [lo, hi] from xorshift32: the same sequence in every process. */
function rng(seed) {
  const next = xorshift32(seed);
  return (lo, hi) => lo + (next() % (hi - lo + 1));
}

function makeStream() {
  const ri = rng(0xf00d);
  const frames = [];
  let total = 0;
  while (total < 1 << 20) {
    const body = ri(0, 1024);
    const cid = ri(0, 16);
    const f = Buffer.alloc(14 + cid + body, 0x61);
    f.writeUInt32BE(10 + cid + body, 0);
    f.writeInt16BE(ri(0, 60), 4);
    f.writeInt16BE(ri(0, 12), 6);
    f.writeInt32BE(frames.length, 8);
    f.writeInt16BE(cid, 12);
    f[14 + cid] = body & 0xff;
    frames.push(f);
    total += f.length;
  }
  const stream = Buffer.concat(frames);
  const chunks = [];
  for (let o = 0; o < stream.length; ) {
    const n = Math.min(stream.length - o, ri(1024, 16 * 1024));
    chunks.push(stream.subarray(o, o + n));
    o += n;
  }
  return { frames: frames.length, chunks };
}

// The parse loops are written out per library (no shared polymorphic code),
// each the idiomatic use: bl.slice() and CompositeBuffer#toBuffer() both
// return a view when the body lies in one chunk and a copy otherwise.
function framesCB(CompositeBuffer, chunks) {
  const q = new CompositeBuffer();
  let acc = 0;
  let n = 0;
  for (const c of chunks) {
    q.append(c);
    while (q.length >= 4) {
      const size = q.readUInt32BE(0);
      if (q.length < 4 + size) break;
      const key = q.readInt16BE(4);
      const ver = q.readInt16BE(6);
      const corr = q.readInt32BE(8);
      const cid = q.readInt16BE(12);
      const body = q.toBuffer(14 + cid, 4 + size);
      acc = (acc + key + ver + corr + body.length + (body.length ? body[0] : 0)) | 0;
      n++;
      q.consume(4 + size);
    }
  }
  return [n, acc];
}

function framesBL(BufferList, chunks) {
  const q = new BufferList();
  let acc = 0;
  let n = 0;
  for (const c of chunks) {
    q.append(c);
    while (q.length >= 4) {
      const size = q.readUInt32BE(0);
      if (q.length < 4 + size) break;
      const key = q.readInt16BE(4);
      const ver = q.readInt16BE(6);
      const corr = q.readInt32BE(8);
      const cid = q.readInt16BE(12);
      const body = q.slice(14 + cid, 4 + size);
      acc = (acc + key + ver + corr + body.length + (body.length ? body[0] : 0)) | 0;
      n++;
      q.consume(4 + size);
    }
  }
  return [n, acc];
}

function framesMinCB(CompositeBuffer, chunks) {
  const q = new CompositeBuffer();
  let acc = 0;
  let n = 0;
  for (const c of chunks) {
    q.append(c);
    while (q.length >= 4) {
      const size = q.readUInt32BE(0);
      if (q.length < 4 + size) break;
      const body = q.toBuffer(4, 4 + size);
      acc = (acc + body.length + body[0]) | 0;
      n++;
      q.consume(4 + size);
    }
  }
  return [n, acc];
}

function framesMinBL(BufferList, chunks) {
  const q = new BufferList();
  let acc = 0;
  let n = 0;
  for (const c of chunks) {
    q.append(c);
    while (q.length >= 4) {
      const size = q.readUInt32BE(0);
      if (q.length < 4 + size) break;
      const body = q.slice(4, 4 + size);
      acc = (acc + body.length + body[0]) | 0;
      n++;
      q.consume(4 + size);
    }
  }
  return [n, acc];
}

function randomInput() {
  const ri = rng(0xbeef);
  const comps = Array.from({ length: 1000 }, (_, i) => Buffer.alloc(ri(1024, 16 * 1024), i & 0xff));
  const total = comps.reduce((a, b) => a + b.length, 0);
  const offs = new Float64Array(1 << 18);
  for (let i = 0; i < offs.length; i++) offs[i] = ri(0, total - 4);
  return { comps, offs };
}

function randomReads(q, offs) {
  let acc = 0;
  for (let i = 0; i < offs.length; i++) acc = (acc + q.readUInt32BE(offs[i])) | 0;
  return [offs.length, acc];
}

/** dist/index.js once the integrator exports issue 4 there; the module file until then. */
async function loadCompositeBuffer() {
  const index = await import('../dist/index.js').catch(() => ({}));
  if (typeof index.CompositeBuffer === 'function') return index.CompositeBuffer;
  return (await import('../dist/composite-buffer.js')).CompositeBuffer;
}

/** Repeats pass() for `seconds` after a warm-up; returns ns per operation (median of passes) and a checksum. */
function timed(pass, seconds) {
  const w0 = Date.now();
  let check;
  while (Date.now() - w0 < 300) check = pass();
  const per = [];
  const t0 = process.hrtime.bigint();
  const limit = BigInt(Math.round(seconds * 1e9));
  let ops = 0;
  let elapsed = 0n;
  while (elapsed < limit) {
    const t = process.hrtime.bigint();
    const [n] = pass();
    const now = process.hrtime.bigint();
    per.push(Number(now - t) / n);
    ops += n;
    elapsed = now - t0;
  }
  per.sort((a, b) => a - b);
  return { nsPerOp: per[per.length >> 1], opsPerSec: ops / (Number(elapsed) / 1e9), passes: per.length, check: check[1], count: check[0] };
}

async function child(scenario, impl, seconds) {
  const BufferList = createRequire(import.meta.url)('bl').BufferList;
  const CompositeBuffer = await loadCompositeBuffer();
  let pass;
  if (scenario === 'frames' || scenario === 'frames-min') {
    const { chunks } = makeStream();
    const cb = scenario === 'frames' ? framesCB : framesMinCB;
    const bl = scenario === 'frames' ? framesBL : framesMinBL;
    pass = impl === 'CompositeBuffer' ? () => cb(CompositeBuffer, chunks) : () => bl(BufferList, chunks);
  } else if (scenario === 'random-u32') {
    const { comps, offs } = randomInput();
    const q = impl === 'CompositeBuffer' ? new CompositeBuffer(comps) : new BufferList(comps);
    pass = () => randomReads(q, offs);
  } else {
    throw new Error(`unknown scenario ${scenario}`);
  }
  process.stdout.write(JSON.stringify(timed(pass, seconds)) + '\n');
}

async function main() {
  const scenarios = ['frames', 'frames-min', 'random-u32'];
  const impls = ['CompositeBuffer', 'bl'];
  const blVersion = JSON.parse(fs.readFileSync(createRequire(import.meta.url).resolve('bl/package.json'), 'utf8')).version;
  // Every (scenario, library) in its own process, runs interleaved.
  const cells = scenarios.flatMap((s) => impls.map((impl) => `${s}/${impl}`));
  const byCell = await locked(() =>
    interleave(runs, cells, (cell) => {
      const [s, impl] = cell.split('/');
      return runSelf(import.meta.url, ['--child', s, '--impl', impl, '--seconds', String(seconds)]);
    }),
  );
  const results = {};
  for (const cell of cells) {
    const [s, impl] = cell.split('/');
    (results[s] ??= {})[impl] = byCell[cell];
  }
  const summary = {};
  const rows = [];
  for (const s of scenarios) {
    const checks = new Set(impls.flatMap((i) => results[s][i].map((r) => `${r.count}/${r.check}`)));
    if (checks.size !== 1) throw new Error(`${s}: the libraries disagree: ${[...checks].join(', ')}`);
    summary[s] = {};
    for (const impl of impls) summary[s][impl] = { nsPerOp: spread(results[s][impl].map((r) => r.nsPerOp)), opsPerSec: spread(results[s][impl].map((r) => r.opsPerSec)) };
    // Speed against the peer: bl's time per operation over ours.
    summary[s].speedup = ratio(summary[s].bl.nsPerOp.median, summary[s].CompositeBuffer.nsPerOp.median);
    for (const impl of impls) {
      const ns = summary[s][impl].nsPerOp;
      rows.push([
        s,
        impl === 'bl' ? `bl ${blVersion}` : 'zcopy CompositeBuffer',
        `${fmt(ns.median, 0)} [${fmt(ns.min, 0)}-${fmt(ns.max, 0)}]`,
        fmt(summary[s][impl].opsPerSec.median / 1e6, 2),
        impl === 'bl' ? '1.00x' : fmtRatio(summary[s].bl.nsPerOp.median, summary[s].CompositeBuffer.nsPerOp.median),
      ]);
    }
  }
  const m = machineInfo();
  const header = `CompositeBuffer vs bl ${blVersion}; ${runs} runs x ${seconds} s per (scenario, library), each in its own process.\n` +
    `Node ${m.node}, ${m.cpus} x ${m.cpuModel ?? 'cpu'}, Linux ${m.kernel}. ns per frame (frames) or per read (random-u32).`;
  const text = `${header}\n\n${table(['scenario', 'library', 'ns/op median [min-max]', 'M ops/s', 'speed vs bl'], rows)}\n`;
  console.log(text);
  writeResults('composite', {
    bench: 'composite', issue: 4, date: new Date().toISOString(), node: m.node, kernel: m.kernel, cpus: m.cpus,
    command: commandLine(import.meta.url),
    config: { runs, seconds, bl: blVersion }, runs: results, summary, table: text,
  });
}

if (argv.child) await child(argv.child, argv.impl, seconds);
else await main();
