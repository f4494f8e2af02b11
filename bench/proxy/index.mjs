// Issue 5 benchmark: bytes through a TCP proxy, from a C sender process to a
// C receiver process, over loopback TCP and over Unix sockets (both sides).
//
//   node bench/proxy/index.mjs [--runs 5] [--size 1g] [--streams 100]
//        [--stream-size 10m] [--transports tcp,unix] [--peers a,b,...] [--quick]
//
// Peers (each its own process, all started once per transport and measured
// in turn, run after run, so drift hits them alike):
//   direct        sender -> receiver, no proxy: the ceiling
//   zcopy         `zcopy proxy` (dist/cli/main.js), mechanism auto
//   zcopy-splice  `zcopy proxy --mechanism splice` (socket -> pipe -> socket)
//   zcopy-copy    `zcopy proxy --mechanism copy` (native recv/send, one buffer)
//   node-pipe     a Node proxy doing client.pipe(up); up.pipe(client)
//   haproxy       HAProxy from Debian (mode tcp, nbthread 1, option splice-auto),
//                 installed with apt-get if missing; skipped with a reason if it can't be
// Scenarios: one stream of --size (1 GiB), and --streams concurrent streams of
// --stream-size (100 x 10 MiB). Reported: throughput (GB/s, 1e9 bytes) and
// the proxy process's CPU (user+sys seconds per GB), median [min-max] of
// --runs runs, each block of runs under /tmp/zcopy-bench.lock, each run after
// the machine is quiet.
// Writes bench/results/proxy-<stamp>.json and bench/results/proxy-latest.json.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  benchDir, commandLine, compileC, cpuOfPid, fmtRatio, fmtSize, fmtSpread, freePort, interleave, jsonChild, locked,
  machineInfo, onStop, options, parseCount, parseSize, repoRoot, spread, table, track, waitConnectable, waitLine,
  waitQuiet, writeResults,
} from '../lib.mjs';

const { RUNS, SIZE, STREAMS, STREAM_SIZE, TRANSPORTS, PEERS } = options(import.meta.url, {
  runs: { type: 'string' },
  size: { type: 'string' },
  streams: { type: 'string' },
  'stream-size': { type: 'string' },
  transports: { type: 'string', default: 'tcp,unix' },
  peers: { type: 'string', default: 'direct,zcopy,zcopy-splice,zcopy-copy,node-pipe,haproxy' },
  quick: { type: 'boolean', default: false },
}, {
  check: (v) => ({
    RUNS: parseCount(v.runs ?? (v.quick ? 2 : 5), 'runs'),
    SIZE: parseSize(v.size ?? (v.quick ? '256m' : '1g'), 'size'),
    STREAMS: parseCount(v.streams ?? (v.quick ? 20 : 100), 'streams'),
    STREAM_SIZE: parseSize(v['stream-size'] ?? (v.quick ? '8m' : '10m'), 'stream-size'),
    TRANSPORTS: v.transports.split(','),
    PEERS: v.peers.split(','),
  }),
});

const here = path.join(benchDir, 'proxy');

// Every process this bench starts is tracked (lib.mjs), so an interrupted
// run leaves none behind, nor its scratch folder.
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'zcopy-bench-proxy-'));
onStop(() => fs.rmSync(work, { recursive: true, force: true }));

const buildProxyC = (name) => compileC(path.join(here, `${name}.c`), `proxy-${name}`);

/** A Unix socket path, or TCP port 0 (the listener reports the port it got). */
function address(transport, name) {
  return transport === 'unix' ? { path: path.join(work, `${name}.sock`) } : { port: 0 };
}

const asCli = (a) => (a.path ? `unix:${a.path}` : `127.0.0.1:${a.port}`);
const asTag = (a) => (a.path ? `unix:${a.path}` : `tcp:${a.port}`);

function haproxyBinary() {
  const have = spawnSync('haproxy', ['-v'], { encoding: 'utf8' });
  if (have.status === 0) return { bin: 'haproxy', version: have.stdout.split('\n')[0] };
  console.log('haproxy: not installed; trying apt-get install -y haproxy ...');
  const upd = spawnSync('apt-get', ['update', '-qq'], { encoding: 'utf8', timeout: 180_000 });
  const inst = spawnSync('apt-get', ['install', '-y', '-qq', 'haproxy'], { encoding: 'utf8', timeout: 300_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  const again = spawnSync('haproxy', ['-v'], { encoding: 'utf8' });
  if (again.status === 0) return { bin: 'haproxy', version: again.stdout.split('\n')[0] };
  const why = (inst.stderr || upd.stderr || inst.error?.message || 'unknown').trim().split('\n').pop();
  return { skip: `haproxy unavailable (apt-get install failed: ${why})` };
}

/** Starts one proxy peer; resolves with { pid, stop } or { skip }. */
async function startPeer(peer, transport, target, hap) {
  const listen = address(transport, peer);
  let child;
  if (peer.startsWith('zcopy')) {
    // ZCOPY_DIST: a build elsewhere (e.g. tsc --outDir) without touching dist/.
    const cli = path.join(process.env.ZCOPY_DIST ? path.resolve(process.env.ZCOPY_DIST) : path.join(repoRoot, 'dist'), 'cli', 'main.js');
    if (!fs.existsSync(cli)) return { skip: 'dist/ not built (run npm run build)' };
    const mech = peer === 'zcopy' ? 'auto' : peer.slice('zcopy-'.length);
    child = track(spawn(process.execPath, [cli, 'proxy', '-q', '--listen', asCli(listen), '--target', asCli(target), '--mechanism', mech], { stdio: ['ignore', 'pipe', 'inherit'] }));
    const banner = await waitLine(child, 'zcopy proxy:');
    if (!listen.path) listen.port = Number(/^zcopy proxy: 127\.0\.0\.1:(\d+) /.exec(banner)[1]);
  } else if (peer === 'node-pipe') {
    child = track(spawn(process.execPath, [path.join(here, 'node-pipe-proxy.mjs'), asTag(listen), asTag(target)], { stdio: ['ignore', 'pipe', 'inherit'] }));
    const ready = await waitLine(child, 'ready');
    if (!listen.path) listen.port = Number(ready.split(' ')[1]);
  } else if (peer === 'haproxy') {
    if (hap.skip) return { skip: hap.skip };
    if (!listen.path) listen.port = await freePort();
    const cfg = path.join(work, `haproxy-${transport}.cfg`);
    const bind = listen.path ? listen.path : `127.0.0.1:${listen.port}`;
    const server = target.path ? target.path : `127.0.0.1:${target.port}`;
    fs.writeFileSync(
      cfg,
      [
        'global',
        '  nbthread 1',
        '  maxconn 4096',
        'defaults',
        '  mode tcp',
        '  option splice-auto',
        '  timeout connect 5s',
        '  timeout client 120s',
        '  timeout server 120s',
        'listen bench',
        `  bind ${bind}`,
        `  server upstream ${server}`,
        '',
      ].join('\n'),
    );
    child = track(spawn(hap.bin, ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] }));
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    try {
      await waitConnectable(listen);
    } catch (e) {
      child.kill('SIGKILL');
      return { skip: `haproxy did not start: ${err.trim().split('\n').pop() ?? e.message}` };
    }
  } else {
    throw new Error(`unknown peer ${peer}`);
  }
  return {
    listen,
    pid: child.pid,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', resolve);
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 3000).unref();
      }),
  };
}

async function send(sender, a, bytes, streams) {
  const argv = a.path ? ['unix', a.path, String(bytes), String(streams)] : ['tcp', '127.0.0.1', String(a.port), String(bytes), String(streams)];
  const [r] = await jsonChild(sender, argv, { timeoutMs: 120_000 }).done();
  if (!r || r.bytes !== bytes * streams) throw new Error(`sender moved ${r?.bytes} bytes, expected ${bytes * streams}`);
  return r;
}

async function main() {
  const sender = buildProxyC('sender');
  const receiverBin = buildProxyC('receiver');
  const hap = PEERS.includes('haproxy') ? haproxyBinary() : { skip: 'not requested' };
  const scenarios = [
    { name: `1 x ${fmtSize(SIZE)}`, bytes: SIZE, streams: 1 },
    { name: `${STREAMS} x ${fmtSize(STREAM_SIZE)}`, bytes: STREAM_SIZE, streams: STREAMS },
  ];
  const results = [];
  const skipped = {};
  for (const transport of TRANSPORTS) {
    const target = address(transport, 'receiver');
    const recv = track(spawn(receiverBin, transport === 'unix' ? ['unix', target.path] : ['tcp', String(target.port)], { stdio: ['ignore', 'pipe', 'inherit'] }));
    const ready = await waitLine(recv, 'ready');
    if (!target.path) target.port = Number(ready.split(' ')[1]);
    const peers = {};
    try {
      for (const peer of PEERS) {
        if (peer === 'direct') {
          peers[peer] = { listen: target, pid: null, stop: async () => {} };
          continue;
        }
        const p = await startPeer(peer, transport, target, hap);
        if (p.skip) {
          skipped[peer] = p.skip;
          console.log(`${peer}: skipped: ${p.skip}`);
        } else peers[peer] = p;
      }
      // Warm-up: JIT, pipe pool, page allocator.
      for (const p of Object.values(peers)) await send(sender, p.listen, 64 << 20, 2);
      for (const sc of scenarios) {
        const names = Object.keys(peers);
        // One lock for the whole block (every run of every peer, a minute or
        // two): benchmarks that hold the lock for long runs would otherwise
        // starve one that takes it run by run.
        const runs = await locked(() =>
          interleave(RUNS, names, async (name) => {
            const p = peers[name];
            await waitQuiet({ maxWaitS: 8 });
            const c0 = p.pid ? cpuOfPid(p.pid) : 0;
            const t0 = process.hrtime.bigint();
            await send(sender, p.listen, sc.bytes, sc.streams);
            const s = Number(process.hrtime.bigint() - t0) / 1e9;
            const cpu = p.pid ? cpuOfPid(p.pid) - c0 : NaN;
            const gb = (sc.bytes * sc.streams) / 1e9;
            return { gbps: gb / s, cpuPerGB: cpu / gb };
          }, { each: (name, run) => name === names[names.length - 1] && process.stdout.write(`${transport} ${sc.name}: run ${run}/${RUNS}\r`) }),
        );
        process.stdout.write('\n');
        for (const [name, rs] of Object.entries(runs)) {
          const r = { gbps: rs.map((x) => x.gbps), cpuPerGB: rs.map((x) => x.cpuPerGB) };
          results.push({ transport, scenario: sc.name, bytes: sc.bytes * sc.streams, streams: sc.streams, peer: name, gbps: spread(r.gbps), cpuPerGB: spread(r.cpuPerGB), raw: r });
        }
      }
    } finally {
      for (const p of Object.values(peers)) await p.stop();
      recv.kill('SIGTERM');
    }
  }

  const rows = [];
  for (const r of results) {
    const base = (peer) => results.find((x) => x.transport === r.transport && x.scenario === r.scenario && x.peer === peer);
    const node = base('node-pipe');
    const hp = base('haproxy');
    const ratio = fmtRatio;
    rows.push([
      r.transport,
      r.scenario,
      r.peer,
      fmtSpread(r.gbps),
      r.peer === 'direct' ? '-' : fmtSpread(r.cpuPerGB),
      r.peer.startsWith('zcopy') ? ratio(r.gbps?.median, node?.gbps?.median) : '',
      r.peer.startsWith('zcopy') ? ratio(r.cpuPerGB?.median, node?.cpuPerGB?.median) : '',
      r.peer.startsWith('zcopy') ? ratio(r.gbps?.median, hp?.gbps?.median) : '',
    ]);
  }
  const header = ['transport', 'scenario', 'peer', 'GB/s median [min-max]', 'proxy CPU s/GB', 'vs node-pipe GB/s', 'vs node-pipe CPU', 'vs haproxy GB/s'];
  const text = table(header, rows);
  console.log(`\nproxy benchmark: ${RUNS} runs each, ${os.cpus().length} cores, kernel ${os.release()}, Node ${process.version}${hap.version ? `, ${hap.version}` : ''}\n`);
  console.log(text);
  for (const [k, v] of Object.entries(skipped)) console.log(`skipped ${k}: ${v}`);
  const m = machineInfo();
  const out = {
    date: new Date().toISOString(),
    command: commandLine(import.meta.url),
    machine: { cores: m.cpus, kernel: m.kernel, node: m.node, haproxy: hap.version ?? null },
    runs: RUNS,
    skipped,
    results,
    table: text,
  };
  console.log('');
  writeResults('proxy', out, { latest: true });
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => fs.rmSync(work, { recursive: true, force: true }));
