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
//   node bench/receive/loop-delay.mjs [--size 1g] [--runs 3] [--json out.json] [--no-drop] [--dir DIR]
// Results: --json FILE, else bench/results/receive-loop-delay-<stamp>.json.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { commandLine, fmt, median, options, parseCount, parseSize, table, track, writeResults } from '../lib.mjs';
import { cBin, commonSpec, dist, scratch, warm } from './common.mjs';

const { values, SIZE, RUNS } = options(import.meta.url, { ...commonSpec('1g', '3'), 'no-drop': { type: 'boolean' } }, {
  check: (v) => ({ values: v, SIZE: parseSize(v.size), RUNS: parseCount(v.runs, 'runs') }),
});
const { receiveFile, stats } = await import(pathToFileURL(path.join(dist, 'index.js')).href);
const work = scratch(values.dir, 'zcopy-bench-delay-');
const senderBin = cBin('sender');

const canDrop = !values['no-drop'] && process.getuid?.() === 0 && fs.existsSync('/proc/sys/vm/drop_caches');

async function once(mechanism, cache) {
  if (cache === 'drop_caches') {
    execFileSync('sync');
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3\n');
  } else {
    warm(SIZE);
  }
  const out = path.join(work, 'out.bin');
  const server = net.createServer({ pauseOnConnect: true });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const sender = track(spawn(senderBin, [`127.0.0.1:${server.address().port}`, String(SIZE)], { stdio: 'inherit' }));
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
for (const cache of cases) {
  for (const mechanism of ['auto', 'copy']) {
    const runs = [];
    for (let i = 0; i < RUNS; i++) runs.push(await once(mechanism, cache));
    results.push({ cache, mechanism, runs });
  }
}
const worst = (rs, k) => Math.max(...rs.map((r) => r[k]));
const med = (rs, f) => median(rs.map(f));
const rows = results.map(({ cache, mechanism, runs: rs }) => [
  cache,
  mechanism,
  fmt(med(rs, (x) => SIZE / 1024 ** 2 / (x.ms / 1000)), 0),
  fmt(med(rs, (x) => x.p50), 1),
  `${fmt(med(rs, (x) => x.p99), 1)} (${fmt(worst(rs, 'p99'), 1)})`,
  fmt(worst(rs, 'max'), 1),
  fmt(med(rs, (x) => x.ticksPerSec), 0),
  worst(rs, 'p99') < 20 ? 'met' : 'MISSED',
]);
const text =
  `bench/receive/loop-delay: receiveFile of ${(SIZE / 1024 ** 2).toFixed(0)} MiB over loopback TCP, ${RUNS} runs (${os.cpus().length} CPUs, Linux ${os.release()})${canDrop ? '' : ' (drop_caches case skipped: needs root, or --no-drop)'}\n` +
  table(['cache', 'mechanism', 'MiB/s', 'p50 ms', 'p99 ms (worst run)', 'max ms', '1 ms ticks/s', 'target p99 < 20 ms'], rows);
console.log(text);
const command = commandLine(import.meta.url);
writeResults('receive-loop-delay', { date: new Date().toISOString(), command, size: SIZE, runs: RUNS, results }, { file: values.json, text: `${command}\n${text}` });
