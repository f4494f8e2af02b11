// bench/receive: network -> disk. A C sender writes SIZE bytes; each
// receiver stores them in a file: receiveFile (zcopy), the stream pipe
// Node users write (socket.pipe(fs.createWriteStream())), and two C
// references (splice, read/write, and splice on a non-blocking socket as an
// event loop drives it). Unix socket and loopback TCP, page cache
// absorbing the writes or fsync at the end. Each run is its own processes;
// the receivers take turns run by run (round robin, so a slow spell of the
// shared machine hits all of them); median of RUNS; receiver CPU per GiB
// from its own rusage/cpuUsage; wake-ups = the receiver's voluntary context
// switches (all its threads). Before every run, bench/receive/warm touches
// 1.25 x SIZE of memory and frees it (see warm.c: on a VM with free page
// reporting the page cache otherwise allocates from host-reclaimed pages,
// 5-15x slower, at random); --no-warm skips it.
//
//   node bench/receive/index.mjs [--size 1g] [--runs 5] [--fsync] [--json out.json]
//     [--receivers receiveFile,C splice] [--transports unix,tcp] [--no-warm]
//     [--compare-dist DIR]...   (other builds, shown as 'receiveFile (B)', '(C)', ...)
// Opt-in receivers (only by name in --receivers): 'C splice nb lowat 64k',
// 'C splice nb lowat 256k', 'C splice nb lowat 1m'. 'vs best C' is against
// the better of 'C splice' and 'C read/write' (the references).
//
// Needs `npm run build` (dist/, or ZCOPY_DIST=<a tsc --outDir build>) and a
// C compiler. Prints a table; ratios are against the stream pipe and the
// better C receiver.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '64m' },
    runs: { type: 'string', default: '3' },
    fsync: { type: 'boolean' },
    json: { type: 'string' },
    dir: { type: 'string' },
    receivers: { type: 'string' },
    transports: { type: 'string', default: 'unix,tcp' },
    'no-warm': { type: 'boolean' },
    // A second build of zcopy (a tsc --outDir of other sources, with its
    // own build/Release/zcopy.node beside it) measured in the same run as
    // 'receiveFile (B)': before/after figures of a change.
    'compare-dist': { type: 'string', multiple: true },
  },
});
const units = { k: 1024, m: 1024 ** 2, g: 1024 ** 3 };
const m = /^(\d+)([kmg]?)$/i.exec(values.size);
if (!m) throw new Error(`bad --size ${values.size}`);
const SIZE = Number(m[1]) * (units[m[2].toLowerCase()] ?? 1);
const RUNS = Number(values.runs);
const work = fs.mkdtempSync(path.join(values.dir ?? os.tmpdir(), 'zcopy-bench-recv-'));
const bin = path.join(work, 'bin');
fs.mkdirSync(bin);
for (const n of ['sender', 'receiver', 'warm']) execFileSync('cc', ['-O2', '-o', path.join(bin, n), path.join(here, `${n}.c`)], { stdio: 'inherit' });

const allReceivers = {
  receiveFile: (addr, out) => [process.execPath, [path.join(here, 'node-receiver.mjs'), 'zcopy', addr, out]],
  'stream pipe': (addr, out) => [process.execPath, [path.join(here, 'node-receiver.mjs'), 'pipe', addr, out]],
  'C splice': (addr, out) => [path.join(bin, 'receiver'), ['splice', addr, out]],
  'C read/write': (addr, out) => [path.join(bin, 'receiver'), ['rw', addr, out]],
  // splice driven as zcopy must drive it (the socket is Node's, O_NONBLOCK):
  // SPLICE_F_NONBLOCK and poll(2) on EAGAIN. What an event loop can reach.
  'C splice nb': (addr, out) => [path.join(bin, 'receiver'), ['splice-nb', addr, out]],
  // The same after SO_RCVLOWAT (64 KiB, 256 KiB, 1 MiB): poll(2) on a TCP
  // socket reports readable only once that much is queued, so fewer,
  // fuller passes. Opt-in (--receivers); Unix sockets ignore it for poll.
  'C splice nb lowat 64k': (addr, out) => [path.join(bin, 'receiver'), ['splice-nb-lowat:65536', addr, out]],
  'C splice nb lowat 256k': (addr, out) => [path.join(bin, 'receiver'), ['splice-nb-lowat:262144', addr, out]],
  'C splice nb lowat 1m': (addr, out) => [path.join(bin, 'receiver'), ['splice-nb-lowat:1048576', addr, out]],
};
// Shown only when asked for by name.
const optIn = new Set(['C splice nb lowat 64k', 'C splice nb lowat 256k', 'C splice nb lowat 1m']);
// Repeatable: the builds are shown as 'receiveFile (B)', '(C)', ...
for (const [i, dir] of (values['compare-dist'] ?? []).entries()) {
  const distB = path.resolve(dir);
  allReceivers[`receiveFile (${String.fromCharCode(66 + i)})`] = (addr, out) => [process.execPath, [path.join(here, 'node-receiver.mjs'), 'zcopy', addr, out], { ZCOPY_DIST: distB }];
}
const wanted = values.receivers?.split(',') ?? Object.keys(allReceivers).filter((k) => !optIn.has(k));
const unknown = wanted.filter((k) => !(k in allReceivers));
if (unknown.length) {
  console.error(`unknown receiver(s): ${unknown.join(', ')}; known: ${Object.keys(allReceivers).join(', ')}`);
  process.exit(2);
}
const receivers = Object.fromEntries(Object.entries(allReceivers).filter(([k]) => wanted.includes(k)));
const transports = values.transports.split(',');

let port = 23000 + (process.pid % 1000) * 10;
function once(transport, make) {
  const addr = transport === 'unix' ? `unix:${path.join(work, 'r.sock')}` : `127.0.0.1:${port++}`;
  const out = path.join(work, 'out.bin');
  const [cmd, args, env] = make(addr, out);
  if (!values['no-warm']) execFileSync(path.join(bin, 'warm'), [String(Math.ceil(SIZE * 1.25))]);
  if (values.fsync) args.push('fsync');
  return new Promise((resolve, reject) => {
    const rc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
    let text = '';
    let started = false;
    rc.stdout.on('data', (d) => {
      text += d;
      if (!started && text.includes('ready\n')) {
        started = true;
        const s = spawn(path.join(bin, 'sender'), [addr, String(SIZE)], { stdio: 'inherit' });
        s.on('exit', (c) => c !== 0 && reject(new Error(`sender exit ${c}`)));
      }
    });
    // 'close', not 'exit': the last stdout bytes may arrive after 'exit'.
    rc.on('close', (c) => {
      fs.rmSync(out, { force: true });
      const line = text.split('\n').find((l) => l.startsWith('{'));
      if (c !== 0 || !line) return reject(new Error(`receiver exit ${c}`));
      const r = JSON.parse(line);
      if (r.bytes !== SIZE) return reject(new Error(`received ${r.bytes} of ${SIZE}`));
      resolve(r);
    });
  });
}

const REFERENCES = ['C splice', 'C read/write'];
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results = [];
const gib = SIZE / 1024 ** 3;
for (const transport of transports) {
  const runs = Object.fromEntries(Object.keys(receivers).map((k) => [k, []]));
  for (let i = 0; i < RUNS; i++) {
    for (const [name, make] of Object.entries(receivers)) runs[name].push(await once(transport, make));
  }
  for (const name of Object.keys(receivers)) {
    const rs = runs[name];
    const mibs = rs.map((r) => SIZE / 1024 ** 2 / (r.ms / 1000));
    const cpu = rs.map((r) => (r.userMs + r.sysMs) / gib);
    const wakeups = rs.map((r) => r.wakeups / gib);
    results.push({ transport, receiver: name, mibPerSec: median(mibs), spread: [Math.min(...mibs), Math.max(...mibs)], cpuMsPerGiB: median(cpu), wakeupsPerGiB: median(wakeups), runs: rs });
  }
}
console.log(`bench/receive: ${(SIZE / 1024 ** 2).toFixed(0)} MiB, ${RUNS} runs, ${values.fsync ? 'fsync at the end' : 'page cache absorbs the writes'}, memory ${values['no-warm'] ? 'NOT warmed' : 'warmed'} before each run (${os.cpus().length} CPUs, Linux ${os.release()})`);
console.log('transport  receiver               MiB/s (min-max)     CPU ms/GiB  wake-ups/GiB  vs pipe (speed, CPU)  vs best C');
const ratio = (a, b) => (b ? `${(a / b).toFixed(2)}x` : '-');
for (const r of results) {
  const pipe = results.find((x) => x.transport === r.transport && x.receiver === 'stream pipe');
  // The references: the better of blocking C splice and C read/write.
  const bestC = Math.max(0, ...results.filter((x) => x.transport === r.transport && REFERENCES.includes(x.receiver)).map((x) => x.mibPerSec));
  console.log(
    `${r.transport.padEnd(10)} ${r.receiver.padEnd(22)} ${r.mibPerSec.toFixed(0).padStart(6)} (${r.spread.map((x) => x.toFixed(0)).join('-')})`.padEnd(59) +
      `${r.cpuMsPerGiB.toFixed(0).padStart(10)}  ${r.wakeupsPerGiB.toFixed(0).padStart(12)}  ` +
      `${ratio(r.mibPerSec, pipe?.mibPerSec)}, ${ratio(r.cpuMsPerGiB, pipe?.cpuMsPerGiB)}`.padEnd(22) +
      ratio(r.mibPerSec, bestC),
  );
}
if (values.json) fs.writeFileSync(values.json, JSON.stringify({ size: SIZE, runs: RUNS, fsync: !!values.fsync, warm: !values['no-warm'], results }, null, 2));
fs.rmSync(work, { recursive: true, force: true });
