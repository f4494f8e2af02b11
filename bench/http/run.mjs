#!/usr/bin/env node
// HTTP static file serving benchmark (issues 3 and 11).
//
// Servers (each its own process, all started once, measured in turn):
//   zcopy            `zcopy serve` (mechanism auto)
//   zcopy-sendfile   `zcopy serve --mechanism sendfile` (TCP only; auto already picks sendfile on Unix sockets)
//   zcopy-node-http  `zcopy serve --node-http` (no HTTP/1.1 front: every request through node:http;
//                    only when --servers names it)
//   express          Express 5 + serve-static 2 (what Node users run today)
//   fastify          Fastify 5 + @fastify/static 8
//   nginx            Debian nginx, worker_processes 1; sendfile on; tcp_nopush on; open_file_cache off
//   nginx-ofc        the same with open_file_cache max=1000 (valid 60s, nginx's default)
//   sirv             sirv 3 on node:http
//   memory           node:http answering from a Buffer (the single-process Node ceiling)
// Pinning (issue 11): with BENCH_WORKERS=1 (default) every server runs on
// CPU 1 and the client on CPU 0 (taskset); BENCH_WORKERS=2 runs zcopy serve
// --workers 2 against nginx worker_processes 2, unpinned.
// p99 at a fixed rate (BENCH_RATE req/s, default 5000; wrk with a
// per-request delay, bench/http/report.lua with RATE_DELAY_MS: wrk2 is not in Debian) for 4 KiB.
// Load: keep-alive GETs from C clients on the other core: over loopback TCP
// both wrk and bench/http/http-load.c (built here with cc; 1 MiB reads: wrk
// reads 8 KiB at a time and saturates its core on large bodies before a
// sendfile server does), over a Unix socket http-load (wrk has no Unix
// sockets). Targets are judged on http-load; wrk rows are shown beside them.
// Files: 4 KiB, 1 MiB, 64 MiB (page-cached by a warm-up). Several runs per
// cell, median and spread, server CPU (user+sys from /proc) per GB.
//
// Run it under the shared lock:
//   flock /tmp/zcopy-bench.lock node bench/http/run.mjs [--seconds 3] [--runs 3]
//     [--sizes 4KiB,64KiB,1MiB,64MiB] [--transports tcp,unix] [--workers 1]
//     [--rate 5000] [--servers zcopy,zcopy-sendfile,zcopy-node-http,express,fastify,nginx,nginx-ofc,sirv,memory]
// Each option also reads its environment alias (as before): BENCH_SECONDS,
// BENCH_RUNS, BENCH_SIZES, BENCH_TRANSPORTS, BENCH_WORKERS, BENCH_RATE,
// BENCH_SERVERS; an option given wins. ZCOPY_DIST: the build to test
// (default dist/). Writes bench/results/http-<stamp>.json.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import {
  BenchUsageError, benchDir, canPin, commandLine, compileC, cpuOfPid, fmt, fmtSpread, freePort, interleave, median, onStop, options, parseCount,
  parseSeconds, pinned as pinTo, ratio, repoRoot, spread, stopAll, track, waitConnectable, waitLine, writeResults,
} from '../lib.mjs';

const HERE = join(benchDir, 'http');
const DIST = process.env.ZCOPY_DIST ? resolve(process.env.ZCOPY_DIST) : join(repoRoot, 'dist');
const ALL_SIZES = [
  { name: '4KiB', bytes: 4096, conns: 32 },
  { name: '64KiB', bytes: 64 * 1024, conns: 16 },
  { name: '1MiB', bytes: 1 << 20, conns: 8 },
  { name: '64MiB', bytes: 64 << 20, conns: 2 },
];
const ALL_SERVERS = ['zcopy', 'zcopy-sendfile', 'zcopy-node-http', 'express', 'fastify', 'nginx', 'nginx-ofc', 'sirv', 'memory'];
const ALIASES = { seconds: 'BENCH_SECONDS', runs: 'BENCH_RUNS', sizes: 'BENCH_SIZES', transports: 'BENCH_TRANSPORTS', workers: 'BENCH_WORKERS', rate: 'BENCH_RATE', servers: 'BENCH_SERVERS' };
/** [value, label]: the option, else its BENCH_* alias, else undefined (the label names what was wrong). */
const pick = (v, name) => (v[name] !== undefined ? [v[name], name] : [process.env[ALIASES[name]], ALIASES[name]]);
const list = ([v, label], known) => {
  if (v === undefined) return known;
  const xs = v.split(',');
  const unknown = xs.filter((x) => !known.includes(x));
  if (unknown.length) throw new BenchUsageError(`invalid ${label.startsWith('BENCH_') ? label : `--${label}`} '${unknown.join(',')}': expected a comma-separated list of ${known.join(', ')}`);
  return xs;
};
const orDefault = ([v, label], dflt) => [v ?? dflt, label];
// BENCH_SIZES=1MiB,64MiB / BENCH_TRANSPORTS=tcp narrow a run (the published table uses all).
const { SECONDS, RUNS, SIZES, TRANSPORTS, WORKERS, RATE, ONLY } = options(import.meta.url, Object.fromEntries(Object.keys(ALIASES).map((k) => [k, { type: 'string' }])), {
  check: (v) => {
    const sizes = list(pick(v, 'sizes'), ALL_SIZES.map((x) => x.name));
    const servers = pick(v, 'servers');
    return {
      // Whole seconds: wrk takes no fractions.
      SECONDS: Math.max(1, Math.round(parseSeconds(...orDefault(pick(v, 'seconds'), '3')))),
      RUNS: parseCount(...orDefault(pick(v, 'runs'), '3')),
      SIZES: ALL_SIZES.filter((x) => sizes.includes(x.name)),
      TRANSPORTS: list(pick(v, 'transports'), ['tcp', 'unix']),
      WORKERS: parseCount(...orDefault(pick(v, 'workers'), '1')),
      RATE: parseCount(...orDefault(pick(v, 'rate'), '5000'), 100),
      ONLY: servers[0] === undefined ? undefined : list(servers, ALL_SERVERS),
    };
  },
});
const WARMUP = SECONDS >= 3 ? 2 : 1; // whole seconds: wrk takes no fractions

const work = mkdtempSync(join(os.tmpdir(), 'zcopy-bench-http-'));
const files = join(work, 'files');
mkdirSync(files);
// nginx workers (and zcopy serve --workers) are the master's children:
// killing the master alone would orphan them, so their pids are recorded
// too. Every server is track()ed: Ctrl-C, an error or the end kills what
// is left and removes the scratch folder.
const workerPids = new Set();
const killPid = (pid, sig) => {
  try {
    process.kill(pid, sig);
  } catch {}
};
onStop(() => {
  for (const pid of workerPids) killPid(pid, 'SIGKILL');
  rmSync(work, { recursive: true, force: true });
});
process.once('exit', stopAll);
const skipped = {};

function log(s) {
  process.stderr.write(s + '\n');
}

// ---- tools ------------------------------------------------------------------

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).status === 0;
}

// One process (and its client) per CPU, as issue 11 measures: the server on
// CPU 1, the client on CPU 0. Workers mode is unpinned.
const PIN = WORKERS === 1 && canPin();
if (WORKERS === 1 && !PIN) skipped['pinning'] = os.cpus().length < 2 ? 'fewer than 2 CPUs' : 'taskset missing (util-linux)';
const pinned = (cpu, cmd, args) => pinTo(PIN ? cpu : null, cmd, args);

let aptUpdated = false;
function aptInstall(pkgs) {
  if (process.getuid?.() !== 0) return 'not root: cannot apt-get install';
  if (!aptUpdated) {
    const u = spawnSync('apt-get', ['update', '-qq'], { encoding: 'utf8' });
    if (u.status !== 0) return `apt-get update failed: ${(u.stderr || '').trim().split('\n').pop()}`;
    aptUpdated = true;
  }
  const r = spawnSync('apt-get', ['install', '-y', '-qq', ...pkgs], { encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  return r.status === 0 ? undefined : `apt-get install ${pkgs.join(' ')} failed: ${(r.stderr || '').trim().split('\n').pop()}`;
}

function ensure(cmd, pkgs) {
  if (have(cmd)) return undefined;
  log(`installing ${pkgs.join(' ')} (Debian) for ${cmd}...`);
  const err = aptInstall(pkgs);
  if (err) return err;
  return have(cmd) ? undefined : `${cmd} still missing after installing ${pkgs.join(' ')}`;
}

const wrkMissing = ensure('wrk', ['wrk']);
const nginxBin = existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';
const nginxMissing = have('nginx') || existsSync('/usr/sbin/nginx') ? undefined : ensure('nginx', ['nginx-light']) && ensure('nginx', ['nginx']);
const ccMissing = ensure('cc', ['gcc']);
let httpLoad;
if (!ccMissing) {
  try {
    httpLoad = compileC(join(HERE, 'http-load.c'), 'http-load');
  } catch (err) {
    skipped['http-load client'] = `cc failed: ${err.message}`;
  }
} else skipped['http-load client'] = ccMissing;
if (wrkMissing) skipped['wrk client'] = wrkMissing;

if (!existsSync(join(DIST, 'cli', 'main.js'))) {
  console.error(`zcopy is not built at ${DIST} (run \`npm run build\`, or set ZCOPY_DIST)`);
  process.exit(1);
}

// ---- fixtures ---------------------------------------------------------------

for (const s of SIZES) writeFileSync(join(files, `${s.name}.bin`), randomBytes(s.bytes));

/** A process and its children (nginx workers, zcopy serve --workers): all count for CPU, all are killed. */
function withChildren(child) {
  return () => {
    try {
      const kids = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
      for (const k of kids) workerPids.add(k);
      return [child.pid, ...kids];
    } catch {
      return [child.pid];
    }
  };
}

/** Spawns a server on CPU 1; resolves with its `ready` line's address once it prints one. */
async function startProcess(name, cmd, args, pattern, parse) {
  const child = track(spawn(...pinned(1, cmd, args), { stdio: ['ignore', 'pipe', 'pipe'] }));
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  try {
    return { child, addr: parse(await waitLine(child, pattern)) };
  } catch (e) {
    throw new Error(`${name} did not start: ${e.message}: ${err}`);
  }
}

let zsock = 0;
async function startZcopy(transport, extra = []) {
  const where = transport === 'tcp' ? ['--port', '0'] : ['--socket', join(work, `zcopy-${zsock++}.sock`)];
  if (WORKERS > 1) extra = [...extra, '--workers', String(WORKERS)];
  const { child, addr } = await startProcess('zcopy serve', process.execPath, [join(DIST, 'cli', 'main.js'), 'serve', files, '--quiet', ...where, ...extra], 'zcopy serve: serving ', (l) => {
    const m = / at (http:\/\/127\.0\.0\.1:(\d+)\/|unix:(\S+))/.exec(l);
    return m[2] ? Number(m[2]) : m[3];
  });
  // Workers are the primary's children: count their CPU too.
  return { pids: withChildren(child), addr, child };
}

async function startPeer(kind, transport) {
  const where = transport === 'tcp' ? '0' : `unix:${join(work, `${kind}.sock`)}`;
  const { child, addr } = await startProcess(kind, process.execPath, [join(HERE, 'peer.mjs'), kind, files, where], 'ready ', (l) => {
    const a = /^ready (\S+)/.exec(l)[1];
    return /^\d+$/.test(a) ? Number(a) : a;
  });
  return { pids: [child.pid], addr, child };
}

let nginxVersion = '';
async function startNginx(transport, openFileCache = false) {
  const dir = join(work, `nginx-${transport}${openFileCache ? '-ofc' : ''}`);
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  const port = await freePort();
  const sock = join(work, `nginx${openFileCache ? '-ofc' : ''}.sock`);
  const listen = transport === 'tcp' ? `listen 127.0.0.1:${port};` : `listen unix:${sock};`;
  const conf = `
worker_processes ${WORKERS};
daemon off;
user root;
pid ${dir}/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000000;
  ${openFileCache ? 'open_file_cache max=1000; open_file_cache_valid 60s;' : 'open_file_cache off;'}
  keepalive_timeout 65;
  default_type application/octet-stream;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  server { ${listen} root ${files}; }
}
`;
  writeFileSync(join(dir, 'nginx.conf'), conf);
  const child = track(spawn(...pinned(1, nginxBin, ['-p', dir, '-c', join(dir, 'nginx.conf')]), { stdio: ['ignore', 'ignore', 'pipe'] }));
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  try {
    await waitConnectable(transport === 'tcp' ? { port } : { path: sock });
  } catch (e) {
    throw new Error(`nginx: ${e.message}: ${err}`);
  }
  nginxVersion ||= spawnSync(nginxBin, ['-v'], { encoding: 'utf8' }).stderr.trim();
  // The worker is a child of the master: count both.
  const pids = withChildren(child);
  pids();
  return { pids, addr: transport === 'tcp' ? port : sock, child };
}

// ---- measurement --------------------------------------------------------------

/** user+sys seconds of the live processes among `pids`. */
function cpuSeconds(pids) {
  let t = 0;
  for (const pid of typeof pids === 'function' ? pids() : pids) {
    try {
      t += cpuOfPid(pid);
    } catch {}
  }
  return t;
}

/** Children's user+sys seconds, from the shell's `times` after the client exits. */
function parseTimes(out) {
  const m = /(\d+)m([\d.]+)s (\d+)m([\d.]+)s\s*$/.exec(out.trim());
  return m ? Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) * 60 + Number(m[4]) : NaN;
}

function runClient(client, addr, path, conns, seconds, rateDelayMs) {
  // Through sh so that `times` reports the client's own CPU (is it the bottleneck?).
  const [cmd, args] =
    client === 'wrk'
      ? ['wrk', ['-t1', `-c${conns}`, `-d${seconds}s`, '--timeout', '10s', '-s', join(HERE, 'report.lua'), `http://127.0.0.1:${addr}${path}`]]
      : [httpLoad, [typeof addr === 'number' ? `127.0.0.1:${addr}` : `unix:${addr}`, path, String(conns), String(seconds)]];
  const argv = pinned(0, cmd, args).flat();
  const env = rateDelayMs !== undefined ? { ...process.env, RATE_DELAY_MS: String(rateDelayMs) } : process.env;
  const r = spawnSync('sh', ['-c', '"$@"; s=$?; times; exit $s', 'sh', ...argv], { encoding: 'utf8', env });
  const clientCpu = parseTimes(r.stdout);
  if (client === 'wrk') {
    const m = /WRKJSON (\{.*\})/.exec(r.stdout);
    if (!m) throw new Error(`wrk failed: ${r.stdout} ${r.stderr}`);
    const j = JSON.parse(m[1]);
    return { requests: j.requests, errors: j.errors + j.status_errors, seconds: j.seconds, clientCpu, p50: j.p50_ms, p99: j.p99_ms, p999: j.p999_ms };
  }
  if (r.status !== 0) throw new Error(`http-load failed: ${r.stderr}`);
  const j = JSON.parse(r.stdout.trim().split('\n')[0]);
  return { requests: j.requests, errors: j.errors, seconds: j.seconds, clientCpu };
}

// ---- the run ------------------------------------------------------------------

const started = Date.now();
const results = [];
const latency = [];
const caps = await import(join(DIST, 'index.js')).then((m) => m.capabilities());

for (const transport of TRANSPORTS) {
  const clients = [...(httpLoad ? ['http-load'] : []), ...(transport === 'tcp' && !wrkMissing ? ['wrk'] : [])];
  if (clients.length === 0) continue;
  const servers = [];
  const add = async (name, start) => {
    try {
      servers.push({ name, ...(await start()) });
    } catch (e) {
      skipped[`${name} (${transport})`] = e.message.split('\n')[0];
    }
  };
  const want = (name) => ONLY === undefined || ONLY.includes(name);
  if (want('zcopy')) await add('zcopy', () => startZcopy(transport));
  if (transport === 'tcp' && want('zcopy-sendfile')) await add('zcopy-sendfile', () => startZcopy(transport, ['--mechanism', 'sendfile']));
  if (ONLY?.includes('zcopy-node-http')) await add('zcopy-node-http', () => startZcopy(transport, ['--node-http']));
  // Single-process peers are only compared in the one-process table.
  if (WORKERS === 1) {
    for (const peer of ['express', 'fastify', 'sirv', 'memory']) if (want(peer)) await add(peer, () => startPeer(peer, transport));
  }
  if (nginxMissing) skipped['nginx'] = nginxMissing;
  else {
    if (want('nginx')) await add('nginx', () => startNginx(transport));
    if (want('nginx-ofc')) await add('nginx-ofc', () => startNginx(transport, true));
  }
  const byName = Object.fromEntries(servers.map((s) => [s.name, s]));

  for (const size of SIZES) {
    const path = `/${size.name}.bin`;
    for (const client of clients) {
      for (const s of servers) runClient(client, s.addr, path, size.conns, WARMUP);
      // Rotate the order so no server always goes first.
      const cell = await interleave(RUNS, servers.map((s) => s.name), (name) => {
        const s = byName[name];
        const c0 = cpuSeconds(s.pids);
        const r = runClient(client, s.addr, path, size.conns, SECONDS);
        const c1 = cpuSeconds(s.pids);
        const bytes = r.requests * size.bytes;
        return {
          reqPerSec: r.requests / r.seconds,
          mbPerSec: bytes / r.seconds / 1e6,
          cpuSecPerGB: bytes > 0 ? (c1 - c0) / (bytes / 1e9) : NaN,
          cpuUtil: (c1 - c0) / r.seconds,
          clientUtil: r.clientCpu / r.seconds,
          errors: r.errors,
        };
      }, { rotate: true });
      for (const s of servers) {
        const runs = cell[s.name];
        const mb = spread(runs.map((x) => x.mbPerSec)) ?? { median: NaN, min: NaN, max: NaN };
        const row = {
          transport,
          client,
          size: size.name,
          server: s.name,
          connections: size.conns,
          runs,
          reqPerSec: median(runs.map((x) => x.reqPerSec)),
          mbPerSec: mb.median,
          mbPerSecMin: mb.min,
          mbPerSecMax: mb.max,
          cpuSecPerGB: median(runs.map((x) => x.cpuSecPerGB)),
          cpuUtil: median(runs.map((x) => x.cpuUtil)),
          clientUtil: median(runs.map((x) => x.clientUtil)),
          errors: runs.reduce((a, x) => a + x.errors, 0),
        };
        results.push(row);
        log(`${transport}/${client} ${size.name} ${s.name}: ${fmt(row.reqPerSec, 0)} req/s ${fmt(row.mbPerSec, 0)} MB/s cpu ${fmt(row.cpuSecPerGB, 3)} s/GB client ${fmt(row.clientUtil * 100, 0)}%`);
      }
    }
  }
  // p99 at a fixed request rate, 4 KiB (wrk over TCP only).
  if (transport === 'tcp' && !wrkMissing && SIZES.some((x) => x.name === '4KiB')) {
    const conns = 10;
    const delay = Math.max(1, Math.round((conns * 1000) / RATE));
    for (const s of servers) {
      if (!['zcopy', 'nginx', 'nginx-ofc', 'memory'].includes(s.name)) continue;
      const runs = [];
      for (let run = 0; run < RUNS; run++) runs.push(runClient('wrk', s.addr, '/4KiB.bin', conns, SECONDS, delay));
      const row = { transport, client: 'wrk-rate', size: '4KiB', server: s.name, connections: conns, targetRate: Math.round((conns * 1000) / delay), runs, reqPerSec: median(runs.map((x) => x.requests / x.seconds)), p50: median(runs.map((x) => x.p50)), p99: median(runs.map((x) => x.p99)), p999: median(runs.map((x) => x.p999)), errors: runs.reduce((a, x) => a + x.errors, 0) };
      latency.push(row);
      log(`tcp/wrk-rate 4KiB ${s.name}: ${fmt(row.reqPerSec, 0)} req/s (target ${row.targetRate}) p50 ${fmt(row.p50, 3)} ms p99 ${fmt(row.p99, 3)} ms`);
    }
  }
  // Stop this transport's servers: SIGTERM, wait (bounded) for each to
  // exit, then SIGKILL what is left, nginx workers included.
  await Promise.all(
    servers.map(
      (s) =>
        new Promise((done) => {
          if (s.child.exitCode !== null || s.child.signalCode !== null) return done();
          const t = setTimeout(done, 5000);
          s.child.once('exit', () => {
            clearTimeout(t);
            done();
          });
          killPid(s.child.pid, 'SIGTERM');
        }),
    ),
  );
  for (const s of servers) killPid(s.child.pid, 'SIGKILL');
  for (const pid of workerPids) killPid(pid, 'SIGKILL');
  workerPids.clear();
}

// ---- report -------------------------------------------------------------------

const get = (t, size, server, client = 'http-load') => results.find((r) => r.transport === t && r.size === size && r.server === server && r.client === client);

const lines = [];
lines.push(`HTTP file serving, ${os.cpus().length} cores, Linux ${os.release()}, Node ${process.version}, ${nginxVersion || 'nginx: n/a'}`);
lines.push(`zcopy native: ${caps.native}${caps.native ? ` (auto: loopback TCP ${caps.auto['tcp-loopback']}, Unix ${caps.auto.unix})` : ` (${caps.reason})`}; ${RUNS} runs x ${SECONDS}s per cell, median [min-max]`);
lines.push('');
lines.push(`Workers: ${WORKERS}${WORKERS === 1 ? (PIN ? ' (server on CPU 1, client on CPU 0)' : ' (unpinned)') : ' (zcopy serve --workers, nginx worker_processes; unpinned)'}`);
lines.push('');
lines.push('| transport | client | file | server | conns | req/s | MB/s [min-max] | server CPU s/GB | server CPU | client CPU | x serve-static | x nginx (ofc on) | x nginx (ofc off) | x memory | errors |');
lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const r of results) {
  const ss = get(r.transport, r.size, 'express', r.client);
  const ng = get(r.transport, r.size, 'nginx', r.client);
  const ngo = get(r.transport, r.size, 'nginx-ofc', r.client);
  const mem = get(r.transport, r.size, 'memory', r.client);
  lines.push(
    `| ${r.transport} | ${r.client} | ${r.size} | ${r.server} | ${r.connections} | ${fmt(r.reqPerSec, 0)} | ${fmtSpread({ median: r.mbPerSec, min: r.mbPerSecMin, max: r.mbPerSecMax }, 0)} | ${fmt(r.cpuSecPerGB, 3)} | ${fmt(r.cpuUtil * 100, 0)}% | ${fmt(r.clientUtil * 100, 0)}% | ${fmt(ratio(r.mbPerSec, ss?.mbPerSec), 2)} | ${fmt(ratio(r.mbPerSec, ngo?.mbPerSec), 2)} | ${fmt(ratio(r.mbPerSec, ng?.mbPerSec), 2)} | ${fmt(ratio(r.mbPerSec, mem?.mbPerSec), 2)} | ${r.errors} |`,
  );
}
if (latency.length) {
  lines.push('');
  lines.push(`Latency at a fixed rate, 4 KiB, loopback TCP, wrk with a per-request delay (closed loop; bench/http/report.lua with RATE_DELAY_MS), median of ${RUNS} runs:`);
  lines.push('');
  lines.push('| server | conns | target req/s | achieved req/s | p50 ms | p99 ms | p99.9 ms | errors |');
  lines.push('|---|---|---|---|---|---|---|---|');
  for (const r of latency) lines.push(`| ${r.server} | ${r.connections} | ${r.targetRate} | ${fmt(r.reqPerSec, 0)} | ${fmt(r.p50, 3)} | ${fmt(r.p99, 3)} | ${fmt(r.p999, 3)} | ${r.errors} |`);
}

const targets = [];
const check = (label, value, min) => targets.push({ label, value, min, met: Number.isFinite(value) ? value >= min : null });
// Issue 11 (one process against nginx with 1 worker; judged on http-load).
for (const t of TRANSPORTS) {
  const z = (size) => get(t, size, 'zcopy');
  check(`${t} 4KiB zcopy / node:http from memory >= 0.7`, ratio(z('4KiB')?.reqPerSec, get(t, '4KiB', 'memory')?.reqPerSec), 0.7);
  check(`${t} 4KiB zcopy / nginx (open_file_cache off) >= 0.75`, ratio(z('4KiB')?.reqPerSec, get(t, '4KiB', 'nginx')?.reqPerSec), 0.75);
  check(`${t} 64KiB zcopy / nginx (open_file_cache on) >= 0.8`, ratio(z('64KiB')?.reqPerSec, get(t, '64KiB', 'nginx-ofc')?.reqPerSec), 0.8);
  check(`${t} 1MiB zcopy / nginx (open_file_cache on) >= 1.0`, ratio(z('1MiB')?.reqPerSec, get(t, '1MiB', 'nginx-ofc')?.reqPerSec), 1.0);
  check(`${t} 64MiB zcopy / nginx (open_file_cache on) >= 1.1`, ratio(z('64MiB')?.reqPerSec, get(t, '64MiB', 'nginx-ofc')?.reqPerSec), 1.1);
}
for (const t of TRANSPORTS) {
  const z = (size) => get(t, size, 'zcopy');
  check(`${t} 64MiB zcopy / serve-static >= ${t === 'tcp' ? 1.5 : 3}`, ratio(z('64MiB')?.mbPerSec, get(t, '64MiB', 'express')?.mbPerSec), t === 'tcp' ? 1.5 : 3);
  check(`${t} 64MiB zcopy / nginx >= 0.9`, ratio(z('64MiB')?.mbPerSec, get(t, '64MiB', 'nginx')?.mbPerSec), 0.9);
  check(`${t} 1MiB zcopy / serve-static >= 1.3`, ratio(z('1MiB')?.mbPerSec, get(t, '1MiB', 'express')?.mbPerSec), 1.3);
  check(`${t} 4KiB zcopy / serve-static >= 1.0`, ratio(z('4KiB')?.reqPerSec, get(t, '4KiB', 'express')?.reqPerSec), 1.0);
}
lines.push('');
lines.push('Targets (issues 11 and 3), judged on the http-load client (wrk saturates on large bodies):');
for (const x of targets) lines.push(`- ${x.label}: ${fmt(x.value, 2)} ${x.met === null ? 'NOT MEASURED' : x.met ? 'met' : 'MISSED'}`);
if (Object.keys(skipped).length) {
  lines.push('');
  lines.push('Skipped:');
  for (const [k, v] of Object.entries(skipped)) lines.push(`- ${k}: ${v}`);
}
lines.push('');
// The command as given, with the BENCH_* aliases that were set.
const command = `${Object.values(ALIASES).filter((k) => process.env[k]).map((k) => `${k}=${process.env[k]} `).join('')}${commandLine(import.meta.url)}`;
lines.push(`Wall time ${((Date.now() - started) / 1000).toFixed(0)} s. Command: ${command}`);
const text = lines.join('\n');
console.log(text);

writeResults('http', { date: new Date().toISOString(), command, node: process.version, kernel: os.release(), cpus: os.cpus().length, nginx: nginxVersion, capabilities: caps, seconds: SECONDS, runs: RUNS, workers: WORKERS, pinned: PIN, rate: RATE, results, latency, targets, skipped }, { text });
