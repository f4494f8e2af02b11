// One Node sender scenario, run in its own process by bench/core/index.mjs.
//
//   node bench/core/node-sender.mjs IMPL ADDR FILE [--wait-go] [--chunk-size N]
//
// IMPL: zcopy-auto | zcopy-sendfile | zcopy-splice | zcopy-copy
//       | node-pipe (fs.createReadStream(file).pipe(socket))
//       | node-rwloop (fs.read into one reused 1 MiB buffer, socket.write,
//         await the write callback before reusing the buffer)
// ADDR: tcp:PORT (127.0.0.1) or unix:PATH.
//
// After the last byte the sender ends the socket and waits for the receiver
// to close it, so the wall time covers delivery. It measures wall time,
// process.cpuUsage() (all threads, the threadpool included) and event-loop
// delay (monitorEventLoopDelay, 1 ms resolution), and prints one JSON line.
// With --wait-go it connects, prints {"ready":true} and waits for a line on
// stdin before starting (the harness drops the page cache in between).
import fs from 'node:fs';
import net from 'node:net';
import { once } from 'node:events';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { BenchUsageError, machineBusy, options, parseSize } from '../lib.mjs';

const { impl, addr, file, waitGo, chunkSize } = options(
  import.meta.url,
  { 'wait-go': { type: 'boolean' }, 'chunk-size': { type: 'string' } },
  {
    positionals: 3,
    check: (v, [impl, addr, file]) => {
      if (!file) throw new BenchUsageError('usage: node-sender.mjs IMPL tcp:PORT|unix:PATH FILE [--wait-go] [--chunk-size N]');
      return { impl, addr, file, waitGo: v['wait-go'] === true, chunkSize: v['chunk-size'] ? parseSize(v['chunk-size'], 'chunk-size') : undefined };
    },
  },
);

const zcopy = impl.startsWith('zcopy-') ? await import('../../dist/index.js') : null;
const size = fs.statSync(file).size;

function connect() {
  const opts = addr.startsWith('tcp:')
    ? { host: '127.0.0.1', port: Number(addr.slice(4)) }
    : { path: addr.slice(5) };
  return net.connect(opts);
}

const sock = connect();
await once(sock, 'connect');
// The receiver never sends data; flowing mode lets 'end'/'close' arrive.
sock.resume();
const closed = new Promise((resolve, reject) => {
  sock.once('close', resolve);
  sock.once('error', reject);
});

if (waitGo) {
  process.stdout.write('{"ready":true}\n');
  const rl = createInterface({ input: process.stdin });
  await once(rl, 'line');
  rl.close();
}

async function sendZcopy(mechanism) {
  const options = { mechanism };
  if (chunkSize) options.chunkSize = chunkSize;
  const n = await zcopy.sendFile(sock, file, options);
  sock.end();
  return n;
}

async function sendPipe() {
  const rs = fs.createReadStream(file);
  rs.pipe(sock);
  await once(rs, 'end');
  return rs.bytesRead;
}

function readAt(fd, buf, len, pos) {
  return new Promise((resolve, reject) => {
    fs.read(fd, buf, 0, len, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

function write(buf) {
  return new Promise((resolve, reject) => {
    sock.write(buf, (err) => (err ? reject(err) : resolve()));
  });
}

async function sendRwLoop() {
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(1 << 20);
  let pos = 0;
  try {
    for (;;) {
      const n = await readAt(fd, buf, buf.length, pos);
      if (n === 0) break;
      // The callback fires once libuv has handed the bytes to the kernel,
      // so the buffer can be reused; it also paces us like 'drain' would.
      await write(n === buf.length ? buf : buf.subarray(0, n));
      pos += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  sock.end();
  return pos;
}

// machineBusy(): CPU-seconds the machine spent running processes
// (zcb__machine_busy in c/common.h): the harness subtracts sender and
// receiver from the difference to see competing processes.
const eld = monitorEventLoopDelay({ resolution: 1 });
if (zcopy) zcopy.resetStats();
const busy0 = machineBusy();
const ru0 = process.resourceUsage();
const cpu0 = process.cpuUsage();
const t0 = process.hrtime.bigint();
eld.enable();

let bytes;
switch (impl) {
  case 'zcopy-auto': bytes = await sendZcopy('auto'); break;
  case 'zcopy-sendfile': bytes = await sendZcopy('sendfile'); break;
  case 'zcopy-splice': bytes = await sendZcopy('splice'); break;
  case 'zcopy-copy': bytes = await sendZcopy('copy'); break;
  case 'node-pipe': bytes = await sendPipe(); break;
  case 'node-rwloop': bytes = await sendRwLoop(); break;
  default:
    console.error(`unknown impl: ${impl}`);
    process.exit(2);
}
const tSent = process.hrtime.bigint();
await closed;
const t1 = process.hrtime.bigint();
eld.disable();
const cpu = process.cpuUsage(cpu0);
const ru1 = process.resourceUsage();
const busy1 = machineBusy();

const ms = (ns) => (Number.isFinite(ns) ? ns / 1e6 : null);
const out = {
  impl,
  bytes,
  expected: size,
  wallS: Number(t1 - t0) / 1e9,
  sentS: Number(tSent - t0) / 1e9,
  userS: cpu.user / 1e6,
  sysS: cpu.system / 1e6,
  machineBusyS: busy1 - busy0,
  eld: {
    samples: eld.count,
    p50Ms: eld.count ? ms(eld.percentile(50)) : null,
    p99Ms: eld.count ? ms(eld.percentile(99)) : null,
    maxMs: eld.count ? ms(eld.max) : null,
  },
  ctxSwitches: {
    voluntary: ru1.voluntaryContextSwitches - ru0.voluntaryContextSwitches,
    involuntary: ru1.involuntaryContextSwitches - ru0.involuntaryContextSwitches,
  },
};
if (zcopy) {
  out.stats = zcopy.stats();
  out.native = zcopy.capabilities().native;
}
process.stdout.write(JSON.stringify(out) + '\n');
