// bench/receive/upload.mjs: HTTP uploads to disk. A C client PUTs a SIZE
// body (Content-Length, loopback TCP, one connection per upload) to:
//   zcopy                  `zcopy serve --upload` (receiveBody: socket -> pipe -> file, then rename)
//   express                Express 5, pipeline(req, fs.createWriteStream())
//   fastify                Fastify 5, pipeline(request.raw, fs.createWriteStream())
//   express-receiveBody    Express 5 with zcopy/http's receiveBody
// Each server is its own process, started once; uploads take turns run by
// run (round robin); the uploaded file is checked (size) and deleted after
// each run; memory is warmed before each run (see warm.c). Throughput is
// from connect to the end of the answer; server CPU is the server process's
// user+sys (/proc/PID/stat, all threads) over the upload, per GiB.
//
//   node bench/receive/upload.mjs [--size 256m] [--runs 5] [--json out.json]
//     [--servers zcopy,express,fastify,express-receiveBody] [--no-warm] [--dir DIR]
// Results: --json FILE, else bench/results/receive-upload-<stamp>.json.
//
// Needs `npm run build` (or ZCOPY_DIST=<a tsc --outDir build>) and a C compiler.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BenchUsageError, commandLine, cpuOfPid, fmt, fmtRatio, fmtSpread, interleave, options, parseCount, parseSize, spread, table, track, waitLine, writeResults } from '../lib.mjs';
import { cBin, commonSpec, dist, here, scratch, warm } from './common.mjs';

const ALL = ['zcopy', 'express', 'fastify', 'express-receiveBody'];
const { values, SIZE, RUNS, names } = options(
  import.meta.url,
  { ...commonSpec('256m', '5'), servers: { type: 'string', default: ALL.join(',') }, 'no-warm': { type: 'boolean' } },
  {
    check: (v) => {
      const names = v.servers.split(',');
      const unknown = names.filter((n) => !ALL.includes(n));
      if (unknown.length) throw new BenchUsageError(`invalid --servers '${unknown.join(',')}': expected a comma-separated list of ${ALL.join(', ')}`);
      return { values: v, SIZE: parseSize(v.size), RUNS: parseCount(v.runs, 'runs'), names };
    },
  },
);
const work = scratch(values.dir, 'zcopy-bench-upload-');
const putClient = cBin('put-client');

const peer = (kind) => (root) => [process.execPath, [path.join(here, 'upload-peer.mjs'), kind, root], 'ready '];
const commands = {
  zcopy: (root) => [process.execPath, [path.join(dist, 'cli', 'main.js'), 'serve', root, '--upload', '--max-upload-size', String(SIZE), '-q', '-l', '127.0.0.1:0'], ' at http://127.0.0.1:'],
  express: peer('express'),
  fastify: peer('fastify'),
  'express-receiveBody': peer('express-receiveBody'),
};

/** Starts one server; resolves once its stdout says where it listens. */
async function start(name) {
  const root = path.join(work, name);
  fs.mkdirSync(root);
  const [cmd, args, ready] = commands[name](root);
  const child = track(spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ZCOPY_DIST: dist } }));
  const line = await waitLine(child, ready).catch((err) => {
    throw new Error(`${name}: ${err.message}`);
  });
  return { name, child, root, port: Number(/(?:ready |127\.0\.0\.1:)(\d+)/.exec(line)[1]) };
}

let seq = 0;
function once(s) {
  if (!values['no-warm']) warm(SIZE);
  const name = `u${seq++}.bin`;
  const c0 = cpuOfPid(s.child.pid);
  const outText = execFileSync(putClient, [`127.0.0.1:${s.port}`, `/${name}`, String(SIZE)]).toString();
  const c1 = cpuOfPid(s.child.pid);
  const r = JSON.parse(outText);
  const file = path.join(s.root, name);
  const size = fs.statSync(file, { throwIfNoEntry: false })?.size;
  fs.rmSync(file, { force: true });
  if (r.status !== 201 && r.status !== 204) throw new Error(`${s.name}: status ${r.status}`);
  if (size !== SIZE) throw new Error(`${s.name}: stored ${size} of ${SIZE} bytes`);
  return { ms: r.ms, cpuMs: (c1 - c0) * 1000 };
}

const servers = [];
try {
  for (const n of names) servers.push(await start(n));
  const byName = Object.fromEntries(servers.map((s) => [s.name, s]));
  const runs = await interleave(RUNS, names, (n) => once(byName[n]));
  const gib = SIZE / 1024 ** 3;
  const results = names.map((n) => {
    const mbs = spread(runs[n].map((r) => SIZE / 1e6 / (r.ms / 1000)));
    return { server: n, mbPerSec: mbs.median, spread: [mbs.min, mbs.max], cpuMsPerGiB: spread(runs[n].map((r) => r.cpuMs / gib)).median, runs: runs[n] };
  });
  const get = (n) => results.find((r) => r.server === n);
  const rows = results.map((r) => [
    r.server,
    fmtSpread({ median: r.mbPerSec, min: r.spread[0], max: r.spread[1] }, 0),
    fmt(r.cpuMsPerGiB, 0),
    fmtRatio(r.mbPerSec, get('express')?.mbPerSec),
    fmtRatio(r.mbPerSec, get('fastify')?.mbPerSec),
  ]);
  const text = `bench/receive/upload: PUT ${(SIZE / 1024 ** 2).toFixed(0)} MiB over loopback TCP, ${RUNS} runs, median (${os.cpus().length} CPUs, Linux ${os.release()})\n${table(['server', 'MB/s [min-max]', 'server CPU ms/GiB', 'vs express', 'vs fastify'], rows)}`;
  console.log(text);
  const command = commandLine(import.meta.url);
  writeResults('receive-upload', { date: new Date().toISOString(), command, size: SIZE, runs: RUNS, warm: !values['no-warm'], results }, { file: values.json, text: `${command}\n${text}` });
} finally {
  for (const s of servers) s.child.kill('SIGTERM');
  await Promise.all(servers.map((s) => (s.child.exitCode === null ? new Promise((r) => s.child.once('exit', r)) : null)));
}
