// bench/receive/loop-delay.mjs: is the event loop free while receiveFile
// writes SIZE (default 1 GiB) to disk? A C sender (bench/receive/sender.c)
// writes to this process over loopback TCP; perf_hooks'
// monitorEventLoopDelay (1 ms resolution) covers the whole receive; a 1 ms
// interval timer runs meanwhile, as a server's timers would. Cases, each
// RUNS times:
//   cached        the page cache absorbs the writes (memory warmed first, see warm.c)
//   drop_caches   `echo 3 > /proc/sys/vm/drop_caches` (root) right before the run
// for the kernel path (auto: splice) and the portable path (mechanism 'copy').
// Issue 13's target: p99 < 20 ms.
//
//   node bench/receive/loop-delay.mjs [--size 1g] [--runs 3] [--json out.json] [--no-drop]
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '1g' },
    runs: { type: 'string', default: '3' },
    json: { type: 'string' },
    dir: { type: 'string' },
    'no-drop': { type: 'boolean' },
  },
});
const units = { k: 1024, m: 1024 ** 2, g: 1024 ** 3 };
const m = /^(\d+)([kmg]?)$/i.exec(values.size);
if (!m) throw new Error(`bad --size ${values.size}`);
const SIZE = Number(m[1]) * (units[m[2].toLowerCase()] ?? 1);
const RUNS = Number(values.runs);
const dist = process.env.ZCOPY_DIST ? path.resolve(process.env.ZCOPY_DIST) : path.join(here, '..', '..', 'dist');
const { receiveFile, stats } = await import(pathToFileURL(path.join(dist, 'index.js')).href);
const work = fs.mkdtempSync(path.join(values.dir ?? os.tmpdir(), 'zcopy-bench-delay-'));
const bin = path.join(work, 'bin');
fs.mkdirSync(bin);
for (const n of ['sender', 'warm']) execFileSync('cc', ['-O2', '-o', path.join(bin, n), path.join(here, `${n}.c`)], { stdio: 'inherit' });

const canDrop = !values['no-drop'] && process.getuid?.() === 0 && fs.existsSync('/proc/sys/vm/drop_caches');

async function once(mechanism, cache) {
  if (cache === 'drop_caches') {
    execFileSync('sync');
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3\n');
  } else {
    execFileSync(path.join(bin, 'warm'), [String(Math.ceil(SIZE * 1.25))]);
  }
  const out = path.join(work, 'out.bin');
  const server = net.createServer({ pauseOnConnect: true });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const sender = spawn(path.join(bin, 'sender'), [`127.0.0.1:${server.address().port}`, String(SIZE)], { stdio: 'inherit' });
  const sock = await new Promise((r) => server.once('connection', r));
  server.close();
  const h = monitorEventLoopDelay({ resolution: 1 });
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const before = stats().bytesByPath;
  const t0 = performance.now();
  h.enable();
  const n = await receiveFile(sock, out, { mechanism });
  h.disable();
  const ms = performance.now() - t0;
  clearInterval(timer);
  const after = stats().bytesByPath;
  sock.destroy();
  await new Promise((r) => (sender.exitCode === null ? sender.once('exit', r) : r()));
  fs.rmSync(out, { force: true });
  if (n !== SIZE) throw new Error(`received ${n} of ${SIZE}`);
  return {
    ms,
    p50: h.percentile(50) / 1e6,
    p99: h.percentile(99) / 1e6,
    max: h.max / 1e6,
    ticksPerSec: ticks / (ms / 1000),
    spliced: after.splice - before.splice,
    portable: after.portable - before.portable,
  };
}

const results = [];
const cases = canDrop ? ['cached', 'drop_caches'] : ['cached'];
try {
  for (const cache of cases) {
    for (const mechanism of ['auto', 'copy']) {
      const runs = [];
      for (let i = 0; i < RUNS; i++) runs.push(await once(mechanism, cache));
      results.push({ cache, mechanism, runs });
    }
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
const worst = (rs, k) => Math.max(...rs.map((r) => r[k]));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`bench/receive/loop-delay: receiveFile of ${(SIZE / 1024 ** 2).toFixed(0)} MiB over loopback TCP, ${RUNS} runs (${os.cpus().length} CPUs, Linux ${os.release()})${canDrop ? '' : ' (drop_caches case skipped: needs root, or --no-drop)'}`);
console.log('cache        mechanism  MiB/s    p50 ms  p99 ms (worst run)  max ms  1 ms ticks/s  target p99 < 20 ms');
for (const r of results) {
  const p99 = r.runs.map((x) => x.p99);
  console.log(
    `${r.cache.padEnd(12)} ${r.mechanism.padEnd(10)} ${median(r.runs.map((x) => SIZE / 1024 ** 2 / (x.ms / 1000))).toFixed(0).padStart(5)}  ` +
      `${median(r.runs.map((x) => x.p50)).toFixed(1).padStart(7)}  ${median(p99).toFixed(1).padStart(6)} (${worst(r.runs, 'p99').toFixed(1)})`.padEnd(28) +
      `${worst(r.runs, 'max').toFixed(1).padStart(8)}  ${median(r.runs.map((x) => x.ticksPerSec)).toFixed(0).padStart(12)}  ${worst(r.runs, 'p99') < 20 ? 'met' : 'MISSED'}`,
  );
}
if (values.json) fs.writeFileSync(values.json, JSON.stringify({ size: SIZE, runs: RUNS, results }, null, 2));
