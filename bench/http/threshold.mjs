#!/usr/bin/env node
// Where does a zero-copy body start to beat one buffered write of head + body?
// Measures serveStatic with sendfileThreshold = 0 (head write, then the
// core's transfer) against sendfileThreshold = Infinity (read into a buffer,
// one write) for several file sizes, over loopback TCP and a Unix socket,
// with the C client bench/http/http-load.c (8 keep-alive connections).
//
//   flock /tmp/zcopy-bench.lock node bench/http/threshold.mjs
// Knobs: BENCH_SECONDS (2), BENCH_RUNS (3), BENCH_SIZES (bytes, comma-separated),
// BENCH_OFC=0 (open-file cache off; default on, as serveStatic ships),
// ZCOPY_DIST (default dist/).
// Both servers use serveStatic's defaults otherwise, so the buffered side
// is the issue 11 fast path (cached fd, preadv2 RWF_NOWAIT read on the
// loop, one writev of head + body) and the transfer side corks the head
// with its first bytes. Servers run on CPU 1, the client on CPU 0
// (taskset, when there are 2 CPUs). The table ends with the crossover per
// transport: the smallest size from which the transfer wins.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, '..', '..');
const DIST = process.env.ZCOPY_DIST ? resolve(process.env.ZCOPY_DIST) : join(REPO, 'dist');

if (process.argv[2] === '--server') {
  // Child: node threshold.mjs --server ROOT THRESHOLD (PORT|unix:PATH)
  const [root, threshold, where] = process.argv.slice(3);
  const { serveStatic } = await import(pathToFileURL(join(DIST, 'http', 'index.js')).href);
  const http = await import('node:http');
  const handler = serveStatic(root, { sendfileThreshold: threshold === 'inf' ? Number.MAX_SAFE_INTEGER : Number(threshold), ...(process.env.BENCH_OFC === '0' ? { openFileCache: false } : {}) });
  const server = http.createServer((q, s) => void handler(q, s));
  const unix = where.startsWith('unix:') ? where.slice(5) : undefined;
  await new Promise((r) => (unix ? server.listen(unix, r) : server.listen(Number(where), '127.0.0.1', r)));
  console.log(`ready ${unix ?? server.address().port}`);
  process.once('SIGTERM', () => process.exit(0));
} else {
  const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
  const RUNS = Number(process.env.BENCH_RUNS ?? 3);
  const SIZES = process.env.BENCH_SIZES ? process.env.BENCH_SIZES.split(',').map(Number) : [4096, 16384, 65536, 131072, 262144, 524288, 1048576];
  const PIN = os.cpus().length >= 2 && spawnSync('sh', ['-c', 'command -v taskset']).status === 0;
  const pin = (cpu, cmd, args) => (PIN ? ['taskset', ['-c', String(cpu), cmd, ...args]] : [cmd, args]);
  const work = mkdtempSync(join(os.tmpdir(), 'zcopy-threshold-'));
  const children = new Set();
  process.on('exit', () => {
    for (const c of children) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {}
    }
    rmSync(work, { recursive: true, force: true });
  });
  mkdirSync(join(REPO, 'bench', '.build'), { recursive: true });
  const load = join(REPO, 'bench', '.build', 'http-load');
  const cc = spawnSync('cc', ['-O2', '-o', load, join(HERE, 'http-load.c')], { encoding: 'utf8' });
  if (cc.status !== 0) {
    console.error(`cannot build http-load: ${cc.error?.message ?? cc.stderr}`);
    process.exit(1);
  }
  for (const n of SIZES) writeFileSync(join(work, `${n}.bin`), randomBytes(n));
  const TICK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
  const cpu = (pid) => {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / TICK;
  };
  const start = (threshold, transport) =>
    new Promise((res, rej) => {
      const where = transport === 'tcp' ? '0' : `unix:${join(work, `${threshold}.sock`)}`;
      const [cmd, args] = pin(1, process.execPath, [fileURLToPath(import.meta.url), '--server', work, threshold, where]);
      const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
      children.add(child);
      child.stdout.on('data', (d) => {
        const m = /ready (\S+)/.exec(String(d));
        if (m) res({ child, target: transport === 'tcp' ? `127.0.0.1:${m[1]}` : `unix:${m[1]}` });
      });
      child.once('exit', (c) => rej(new Error(`server exited ${c}`)));
    });
  const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
  const rows = [];
  for (const transport of ['tcp', 'unix']) {
    const servers = { transfer: await start('0', transport), buffered: await start('inf', transport) };
    for (const size of SIZES) {
      const res = { transfer: [], buffered: [] };
      for (const [name, s] of Object.entries(servers)) spawnSync(load, [s.target, `/${size}.bin`, '8', '1']);
      for (let run = 0; run < RUNS; run++) {
        for (const name of run % 2 ? ['buffered', 'transfer'] : ['transfer', 'buffered']) {
          const s = servers[name];
          const c0 = cpu(s.child.pid);
          const r = JSON.parse(spawnSync(...pin(0, load, [s.target, `/${size}.bin`, '8', String(SECONDS)]), { encoding: 'utf8' }).stdout);
          const c1 = cpu(s.child.pid);
          res[name].push({ rps: r.requests / r.seconds, usPerReq: ((c1 - c0) / r.requests) * 1e6 });
        }
      }
      const row = { transport, size, transfer: { rps: median(res.transfer.map((x) => x.rps)), usPerReq: median(res.transfer.map((x) => x.usPerReq)) }, buffered: { rps: median(res.buffered.map((x) => x.rps)), usPerReq: median(res.buffered.map((x) => x.usPerReq)) } };
      rows.push(row);
      process.stderr.write(`${transport} ${size}: transfer ${row.transfer.rps.toFixed(0)} req/s ${row.transfer.usPerReq.toFixed(0)} us CPU/req, buffered ${row.buffered.rps.toFixed(0)} req/s ${row.buffered.usPerReq.toFixed(0)} us CPU/req\n`);
    }
    for (const s of Object.values(servers)) s.child.kill('SIGTERM');
  }
  console.log(`sendfileThreshold crossover (open-file cache ${process.env.BENCH_OFC === '0' ? 'off' : 'on'}${PIN ? ', server on CPU 1, client on CPU 0' : ''}), ${os.cpus().length} cores, Linux ${os.release()}, Node ${process.version}; ${RUNS} runs x ${SECONDS}s, median; 8 keep-alive connections (http-load)`);
  console.log('');
  console.log('| transport | file | transfer req/s | transfer CPU us/req | buffered req/s | buffered CPU us/req | transfer / buffered (req/s) |');
  console.log('|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.transport} | ${r.size >= 1048576 ? r.size / 1048576 + ' MiB' : r.size / 1024 + ' KiB'} | ${r.transfer.rps.toFixed(0)} | ${r.transfer.usPerReq.toFixed(0)} | ${r.buffered.rps.toFixed(0)} | ${r.buffered.usPerReq.toFixed(0)} | ${(r.transfer.rps / r.buffered.rps).toFixed(2)} |`);
  }
  console.log('');
  for (const t of ['tcp', 'unix']) {
    const first = rows.filter((r) => r.transport === t).find((r, i, all) => all.slice(i).every((x) => x.transfer.rps >= x.buffered.rps));
    console.log(`crossover ${t}: ${first ? `transfer wins from ${first.size} bytes on` : 'buffered wins at every size measured'} (default sendfileThreshold ${262144})`);
  }
  mkdirSync(join(REPO, 'bench', 'results'), { recursive: true });
  const out = join(REPO, 'bench', 'results', `http-threshold-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(out, JSON.stringify({ node: process.version, kernel: os.release(), seconds: SECONDS, runs: RUNS, rows }, null, 2));
  console.log(`\nJSON: ${out}`);
}
