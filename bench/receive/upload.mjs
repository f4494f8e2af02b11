// bench/receive/upload.mjs: HTTP uploads to disk. A C client PUTs a SIZE
// body (Content-Length, loopback TCP, one connection per upload) to:
//   zcopy serve --upload   the CLI (receiveBody: socket -> pipe -> file, then rename)
//   express                Express 5, pipeline(req, fs.createWriteStream())
//   fastify                Fastify 5, pipeline(request.raw, fs.createWriteStream())
//   express-receiveBody    Express 5 with zcopy/http's receiveBody
// Each server is its own process, started once; uploads take turns run by
// run (round robin); the uploaded file is checked (size) and deleted after
// each run; memory is warmed before each run (see warm.c). Throughput is
// from connect to the end of the answer; server CPU is the server process's
// user+sys (/proc/PID/stat, all threads) over the upload, per GiB.
//
//   node bench/receive/upload.mjs [--size 256m] [--runs 5] [--json out.json] [--servers zcopy,express,...]
//
// Needs `npm run build` (or ZCOPY_DIST=<a tsc --outDir build>) and a C compiler.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '256m' },
    runs: { type: 'string', default: '5' },
    json: { type: 'string' },
    dir: { type: 'string' },
    servers: { type: 'string', default: 'zcopy,express,fastify,express-receiveBody' },
    'no-warm': { type: 'boolean' },
  },
});
const units = { k: 1024, m: 1024 ** 2, g: 1024 ** 3 };
const m = /^(\d+)([kmg]?)$/i.exec(values.size);
if (!m) throw new Error(`bad --size ${values.size}`);
const SIZE = Number(m[1]) * (units[m[2].toLowerCase()] ?? 1);
const RUNS = Number(values.runs);
const dist = process.env.ZCOPY_DIST ? path.resolve(process.env.ZCOPY_DIST) : path.join(here, '..', '..', 'dist');
const work = fs.mkdtempSync(path.join(values.dir ?? os.tmpdir(), 'zcopy-bench-upload-'));
const bin = path.join(work, 'bin');
fs.mkdirSync(bin);
for (const n of ['put-client', 'warm']) execFileSync('cc', ['-O2', '-o', path.join(bin, n), path.join(here, `${n}.c`)], { stdio: 'inherit' });
const TICK_MS = 1000 / Number(execFileSync('getconf', ['CLK_TCK']).toString().trim() || 100);

const commands = {
  zcopy: (root) => [process.execPath, [path.join(dist, 'cli', 'main.js'), 'serve', root, '--upload', '--max-upload-size', String(SIZE), '-q', '-l', '127.0.0.1:0']],
  express: (root) => [process.execPath, [path.join(here, 'upload-peer.mjs'), 'express', root]],
  fastify: (root) => [process.execPath, [path.join(here, 'upload-peer.mjs'), 'fastify', root]],
  'express-receiveBody': (root) => [process.execPath, [path.join(here, 'upload-peer.mjs'), 'express-receiveBody', root]],
};

function start(name) {
  const root = path.join(work, name);
  fs.mkdirSync(root);
  const [cmd, args] = commands[name](root);
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ZCOPY_DIST: dist } });
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (d) => {
      text += d;
      const mm = /ready (\d+)\n|at http:\/\/127\.0\.0\.1:(\d+)\//.exec(text);
      if (mm) {
        child.stdout.off('data', onData);
        child.stderr.off('data', onData);
        child.stdout.resume();
        child.stderr.resume();
        resolve({ name, child, root, port: Number(mm[1] ?? mm[2]) });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (c) => reject(new Error(`${name} exited (${c}) before it was ready: ${text}`)));
  });
}

function cpuMs(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) * TICK_MS;
}

let seq = 0;
async function once(s) {
  if (!values['no-warm']) execFileSync(path.join(bin, 'warm'), [String(Math.ceil(SIZE * 1.25))]);
  const name = `u${seq++}.bin`;
  const c0 = cpuMs(s.child.pid);
  const outText = execFileSync(path.join(bin, 'put-client'), [`127.0.0.1:${s.port}`, `/${name}`, String(SIZE)]).toString();
  const c1 = cpuMs(s.child.pid);
  const r = JSON.parse(outText);
  const file = path.join(s.root, name);
  const size = fs.statSync(file, { throwIfNoEntry: false })?.size;
  fs.rmSync(file, { force: true });
  if (r.status !== 201 && r.status !== 204) throw new Error(`${s.name}: status ${r.status}`);
  if (size !== SIZE) throw new Error(`${s.name}: stored ${size} of ${SIZE} bytes`);
  return { ms: r.ms, cpuMs: c1 - c0 };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const names = values.servers.split(',');
const servers = [];
try {
  for (const n of names) servers.push(await start(n));
  const runs = Object.fromEntries(names.map((n) => [n, []]));
  for (let i = 0; i < RUNS; i++) for (const s of servers) runs[s.name].push(await once(s));
  const gib = SIZE / 1024 ** 3;
  const results = names.map((n) => {
    const mbs = runs[n].map((r) => SIZE / 1e6 / (r.ms / 1000));
    return { server: n, mbPerSec: median(mbs), spread: [Math.min(...mbs), Math.max(...mbs)], cpuMsPerGiB: median(runs[n].map((r) => r.cpuMs / gib)), runs: runs[n] };
  });
  console.log(`bench/receive/upload: PUT ${(SIZE / 1024 ** 2).toFixed(0)} MiB over loopback TCP, ${RUNS} runs, median (${os.cpus().length} CPUs, Linux ${os.release()})`);
  console.log('server                MB/s (min-max)          server CPU ms/GiB   vs express   vs fastify');
  const get = (n) => results.find((r) => r.server === n);
  const ratio = (a, b) => (a && b ? `${(a / b).toFixed(2)}x` : '-');
  for (const r of results) {
    console.log(
      `${r.server.padEnd(21)} ${r.mbPerSec.toFixed(0).padStart(6)} (${r.spread.map((x) => x.toFixed(0)).join('-')})`.padEnd(46) +
        `${r.cpuMsPerGiB.toFixed(0).padStart(10)}   ${ratio(r.mbPerSec, get('express')?.mbPerSec).padStart(10)}   ${ratio(r.mbPerSec, get('fastify')?.mbPerSec).padStart(10)}`,
    );
  }
  if (values.json) fs.writeFileSync(values.json, JSON.stringify({ size: SIZE, runs: RUNS, warm: !values['no-warm'], results }, null, 2));
} finally {
  for (const s of servers) s.child.kill('SIGTERM');
  await Promise.all(servers.map((s) => (s.child.exitCode === null ? new Promise((r) => s.child.once('exit', r)) : null)));
  fs.rmSync(work, { recursive: true, force: true });
}
