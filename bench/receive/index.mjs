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
//     [--dir DIR] [--compare-dist DIR]...   (other builds, shown as 'receiveFile (B)', '(C)', ...)
// Opt-in receivers (only by name in --receivers): 'C splice nb lowat 64k',
// 'C splice nb lowat 256k', 'C splice nb lowat 1m'. 'vs best C' is against
// the better of 'C splice' and 'C read/write' (the references).
// Defaults: --size 64m --runs 3. Results: --json FILE, else
// bench/results/receive-<stamp>.json (and the table beside it, .txt).
//
// Needs `npm run build` (dist/, or ZCOPY_DIST=<a tsc --outDir build>) and a
// C compiler. Prints a table; ratios are against the stream pipe and the
// better C receiver.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BenchUsageError, commandLine, fmt, fmtRatio, fmtSpread, freePort, interleave, jsonChild, options, parseCount, parseSize, spread, table, track, writeResults } from '../lib.mjs';
import { cBin, commonSpec, here, scratch, warm } from './common.mjs';

// A second build of zcopy (a tsc --outDir of other sources, with its own
// build/Release/zcopy.node beside it) is measured in the same run as
// 'receiveFile (B)': before/after figures of a change.
const node = (mode, env) => (addr, out) => [process.execPath, [path.join(here, 'node-receiver.mjs'), mode, addr, out], env];
const c = (mode) => (addr, out) => [cBin('receiver'), [mode, addr, out]];
const allReceivers = {
  receiveFile: node('zcopy'),
  'stream pipe': node('pipe'),
  'C splice': c('splice'),
  'C read/write': c('rw'),
  // splice driven as zcopy must drive it (the socket is Node's, O_NONBLOCK):
  // SPLICE_F_NONBLOCK and poll(2) on EAGAIN. What an event loop can reach.
  'C splice nb': c('splice-nb'),
  // The same after SO_RCVLOWAT (64 KiB, 256 KiB, 1 MiB): poll(2) on a TCP
  // socket reports readable only once that much is queued, so fewer,
  // fuller passes. Opt-in (--receivers); Unix sockets ignore it for poll.
  'C splice nb lowat 64k': c('splice-nb-lowat:65536'),
  'C splice nb lowat 256k': c('splice-nb-lowat:262144'),
  'C splice nb lowat 1m': c('splice-nb-lowat:1048576'),
};
// Shown only when asked for by name.
const optIn = new Set(['C splice nb lowat 64k', 'C splice nb lowat 256k', 'C splice nb lowat 1m']);

const list = (v, known, label) => {
  const xs = v.split(',');
  const unknown = xs.filter((x) => !known.includes(x));
  if (unknown.length) throw new BenchUsageError(`invalid --${label} '${unknown.join(',')}': expected a comma-separated list of ${known.join(', ')}`);
  return xs;
};
const { values, SIZE, RUNS, receivers, transports } = options(
  import.meta.url,
  {
    ...commonSpec('64m', '3'),
    fsync: { type: 'boolean' },
    receivers: { type: 'string' },
    transports: { type: 'string', default: 'unix,tcp' },
    'no-warm': { type: 'boolean' },
    'compare-dist': { type: 'string', multiple: true },
  },
  {
    check: (v) => {
      // Repeatable: the builds are shown as 'receiveFile (B)', '(C)', ...
      for (const [i, dir] of (v['compare-dist'] ?? []).entries()) {
        allReceivers[`receiveFile (${String.fromCharCode(66 + i)})`] = node('zcopy', { ZCOPY_DIST: path.resolve(dir) });
      }
      const wanted = v.receivers ? list(v.receivers, Object.keys(allReceivers), 'receivers') : Object.keys(allReceivers).filter((k) => !optIn.has(k));
      return {
        values: v,
        SIZE: parseSize(v.size),
        RUNS: parseCount(v.runs, 'runs'),
        receivers: Object.fromEntries(Object.entries(allReceivers).filter(([k]) => wanted.includes(k))),
        transports: list(v.transports, ['unix', 'tcp'], 'transports'),
      };
    },
  },
);
const work = scratch(values.dir, 'zcopy-bench-recv-');
const senderBin = cBin('sender');

/** One receive: the receiver listens ({"ready":true}), the C sender sends SIZE, the receiver's JSON line. */
async function once(transport, make) {
  const addr = transport === 'unix' ? `unix:${path.join(work, 'r.sock')}` : `127.0.0.1:${await freePort()}`;
  const out = path.join(work, 'out.bin');
  const [cmd, args, env] = make(addr, out);
  if (!values['no-warm']) warm(SIZE);
  if (values.fsync) args.push('fsync');
  const rc = jsonChild(cmd, args, { env: { ...process.env, ...env } });
  let senderFailed;
  try {
    await rc.next();
    const sender = track(spawn(senderBin, [addr, String(SIZE)], { stdio: 'inherit' }));
    sender.once('exit', (code) => {
      if (code === 0) return;
      senderFailed = new Error(`sender exit ${code}`);
      rc.child.kill('SIGKILL');
    });
    const [r] = await rc.done();
    if (r?.bytes !== SIZE) throw new Error(`received ${r?.bytes} of ${SIZE}`);
    return r;
  } catch (err) {
    throw senderFailed ?? err;
  } finally {
    fs.rmSync(out, { force: true });
  }
}

const REFERENCES = ['C splice', 'C read/write'];
const results = [];
const gib = SIZE / 1024 ** 3;
for (const transport of transports) {
  const runs = await interleave(RUNS, Object.keys(receivers), (name) => once(transport, receivers[name]));
  for (const name of Object.keys(receivers)) {
    const rs = runs[name];
    const mib = spread(rs.map((r) => SIZE / 1024 ** 2 / (r.ms / 1000)));
    const cpu = spread(rs.map((r) => (r.userMs + r.sysMs) / gib));
    const wakeups = spread(rs.map((r) => r.wakeups / gib));
    results.push({ transport, receiver: name, mibPerSec: mib.median, spread: [mib.min, mib.max], cpuMsPerGiB: cpu.median, wakeupsPerGiB: wakeups.median, runs: rs });
  }
}
const title = `bench/receive: ${(SIZE / 1024 ** 2).toFixed(0)} MiB, ${RUNS} runs, ${values.fsync ? 'fsync at the end' : 'page cache absorbs the writes'}, memory ${values['no-warm'] ? 'NOT warmed' : 'warmed'} before each run (${os.cpus().length} CPUs, Linux ${os.release()})`;
const rows = results.map((r) => {
  const pipe = results.find((x) => x.transport === r.transport && x.receiver === 'stream pipe');
  // The references: the better of blocking C splice and C read/write.
  const bestC = Math.max(0, ...results.filter((x) => x.transport === r.transport && REFERENCES.includes(x.receiver)).map((x) => x.mibPerSec));
  return [
    r.transport,
    r.receiver,
    fmtSpread({ median: r.mibPerSec, min: r.spread[0], max: r.spread[1] }, 0),
    fmt(r.cpuMsPerGiB, 0),
    fmt(r.wakeupsPerGiB, 0),
    `${fmtRatio(r.mibPerSec, pipe?.mibPerSec)}, ${fmtRatio(r.cpuMsPerGiB, pipe?.cpuMsPerGiB)}`,
    fmtRatio(r.mibPerSec, bestC),
  ];
});
const text = `${title}\n${table(['transport', 'receiver', 'MiB/s [min-max]', 'CPU ms/GiB', 'wake-ups/GiB', 'vs pipe (speed, CPU)', 'vs best C'], rows)}`;
console.log(text);
const command = commandLine(import.meta.url);
writeResults('receive', { date: new Date().toISOString(), command, size: SIZE, runs: RUNS, fsync: !!values.fsync, warm: !values['no-warm'], results }, { file: values.json, text: `${command}\n${text}` });
