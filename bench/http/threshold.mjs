#!/usr/bin/env node
// Where does a zero-copy body start to beat one buffered write of head + body?
// Measures serveStatic with sendfileThreshold = 0 (head write, then the
// core's transfer) against sendfileThreshold = Infinity (read into a buffer,
// one write) for several file sizes, over loopback TCP and a Unix socket,
// with the C client bench/http/http-load.c (8 keep-alive connections).
//
//   flock /tmp/zcopy-bench.lock node bench/http/threshold.mjs [--seconds 2] [--runs 3]
//     [--sizes 4096,16k,64k,...] [--no-ofc]
// Environment aliases (as before): BENCH_SECONDS, BENCH_RUNS, BENCH_SIZES
// (comma-separated), BENCH_OFC=0 (= --no-ofc: open-file cache off; default
// on, as serveStatic ships); ZCOPY_DIST (default dist/).
// Both servers use serveStatic's defaults otherwise, so the buffered side
// is the issue 11 fast path (cached fd, preadv2 RWF_NOWAIT read on the
// loop, one writev of head + body) and the transfer side corks the head
// with its first bytes. Servers run on CPU 1, the client on CPU 0
// (taskset, when there are 2 CPUs). The table ends with the crossover per
// transport: the smallest size from which the transfer wins. Writes
// bench/results/http-threshold-<stamp>.json.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  BenchUsageError, benchDir, canPin, commandLine, compileC, cpuOfPid, fmt, fmtSize, interleave, median, onStop, options, parseCount,
  parseSeconds, parseSize, pinned, ratio, repoRoot, stopAll, track, waitLine, writeResults,
} from '../lib.mjs';

const DIST = process.env.ZCOPY_DIST ? path.resolve(process.env.ZCOPY_DIST) : path.join(repoRoot, 'dist');
const env = process.env;
/** An option's value, else its BENCH_* alias, else the default; `label` names where it came from. */
const pick = (v, name, alias, dflt) => (v[name] !== undefined ? [v[name], name] : env[alias] !== undefined ? [env[alias], alias] : [dflt, name]);

const o = options(
  import.meta.url,
  { server: { type: 'boolean' }, seconds: { type: 'string' }, runs: { type: 'string' }, sizes: { type: 'string' }, 'no-ofc': { type: 'boolean' } },
  {
    positionals: 3,
    check: (v, p) => {
      const ofc = !(v['no-ofc'] || env.BENCH_OFC === '0');
      if (v.server) {
        // Child: node threshold.mjs --server ROOT THRESHOLD (PORT|unix:PATH) [--no-ofc]
        if (p.length < 3) throw new BenchUsageError('usage: threshold.mjs --server ROOT THRESHOLD PORT|unix:PATH');
        return { server: true, root: p[0], threshold: p[1], where: p[2], ofc };
      }
      if (p.length) throw new BenchUsageError(`unexpected argument '${p[0]}' (bench/http/threshold.mjs --help)`);
      const [sizes, sizesLabel] = pick(v, 'sizes', 'BENCH_SIZES', '4096,16384,65536,131072,262144,524288,1048576');
      return {
        SECONDS: parseSeconds(...pick(v, 'seconds', 'BENCH_SECONDS', '2')),
        RUNS: parseCount(...pick(v, 'runs', 'BENCH_RUNS', '3')),
        SIZES: sizes.split(',').map((s) => parseSize(s, sizesLabel)),
        ofc,
      };
    },
  },
);

if (o.server) {
  const { serveStatic } = await import(pathToFileURL(path.join(DIST, 'http', 'index.js')).href);
  const http = await import('node:http');
  const handler = serveStatic(o.root, { sendfileThreshold: o.threshold === 'inf' ? Number.MAX_SAFE_INTEGER : Number(o.threshold), ...(o.ofc ? {} : { openFileCache: false }) });
  const server = http.createServer((q, s) => void handler(q, s));
  const unix = o.where.startsWith('unix:') ? o.where.slice(5) : undefined;
  await new Promise((r) => (unix ? server.listen(unix, r) : server.listen(Number(o.where), '127.0.0.1', r)));
  console.log(`ready ${unix ?? server.address().port}`);
  process.once('SIGTERM', () => process.exit(0));
} else {
  const { SECONDS, RUNS, SIZES, ofc } = o;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'zcopy-threshold-'));
  onStop(() => fs.rmSync(work, { recursive: true, force: true }));
  process.once('exit', stopAll);
  let load;
  try {
    load = compileC(path.join(benchDir, 'http', 'http-load.c'), 'http-load');
  } catch (err) {
    console.error(`cannot build http-load: ${err.message}`);
    process.exit(1);
  }
  for (const n of SIZES) fs.writeFileSync(path.join(work, `${n}.bin`), randomBytes(n));
  const start = async (threshold, transport) => {
    const where = transport === 'tcp' ? '0' : `unix:${path.join(work, `${threshold}.sock`)}`;
    const child = track(spawn(...pinned(1, process.execPath, [fileURLToPath(import.meta.url), '--server', work, threshold, where, ...(ofc ? [] : ['--no-ofc'])]), { stdio: ['ignore', 'pipe', 'inherit'] }));
    const addr = /ready (\S+)/.exec(await waitLine(child, 'ready '))[1];
    return { child, target: transport === 'tcp' ? `127.0.0.1:${addr}` : `unix:${addr}` };
  };
  const summary = (rs) => ({ rps: median(rs.map((x) => x.rps)), usPerReq: median(rs.map((x) => x.usPerReq)) });
  const rows = [];
  for (const transport of ['tcp', 'unix']) {
    const servers = { transfer: await start('0', transport), buffered: await start('inf', transport) };
    for (const size of SIZES) {
      for (const s of Object.values(servers)) spawnSync(load, [s.target, `/${size}.bin`, '8', '1']);
      // Alternating order run by run (transfer first, then buffered first).
      const res = await interleave(RUNS, ['transfer', 'buffered'], (name) => {
        const s = servers[name];
        const c0 = cpuOfPid(s.child.pid);
        const r = JSON.parse(spawnSync(...pinned(0, load, [s.target, `/${size}.bin`, '8', String(SECONDS)]), { encoding: 'utf8' }).stdout);
        const c1 = cpuOfPid(s.child.pid);
        return { rps: r.requests / r.seconds, usPerReq: ((c1 - c0) / r.requests) * 1e6 };
      }, { rotate: true });
      const row = { transport, size, transfer: summary(res.transfer), buffered: summary(res.buffered) };
      rows.push(row);
      process.stderr.write(`${transport} ${size}: transfer ${fmt(row.transfer.rps, 0)} req/s ${fmt(row.transfer.usPerReq, 0)} us CPU/req, buffered ${fmt(row.buffered.rps, 0)} req/s ${fmt(row.buffered.usPerReq, 0)} us CPU/req\n`);
    }
    for (const s of Object.values(servers)) s.child.kill('SIGTERM');
  }
  const lines = [
    `sendfileThreshold crossover (open-file cache ${ofc ? 'on' : 'off'}${canPin() ? ', server on CPU 1, client on CPU 0' : ''}), ${os.cpus().length} cores, Linux ${os.release()}, Node ${process.version}; ${RUNS} runs x ${SECONDS}s, median; 8 keep-alive connections (http-load)`,
    '',
    '| transport | file | transfer req/s | transfer CPU us/req | buffered req/s | buffered CPU us/req | transfer / buffered (req/s) |',
    '|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.transport} | ${fmtSize(r.size)} | ${fmt(r.transfer.rps, 0)} | ${fmt(r.transfer.usPerReq, 0)} | ${fmt(r.buffered.rps, 0)} | ${fmt(r.buffered.usPerReq, 0)} | ${fmt(ratio(r.transfer.rps, r.buffered.rps), 2)} |`),
    '',
  ];
  for (const t of ['tcp', 'unix']) {
    const first = rows.filter((r) => r.transport === t).find((r, i, all) => all.slice(i).every((x) => x.transfer.rps >= x.buffered.rps));
    lines.push(`crossover ${t}: ${first ? `transfer wins from ${first.size} bytes on` : 'buffered wins at every size measured'} (default sendfileThreshold ${262144})`);
  }
  const text = lines.join('\n');
  console.log(text);
  const command = commandLine(import.meta.url);
  writeResults('http-threshold', { date: new Date().toISOString(), command, node: process.version, kernel: os.release(), seconds: SECONDS, runs: RUNS, ofc, rows }, { text: `${command}\n${text}` });
}
