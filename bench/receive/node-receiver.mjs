// The Node receivers of bench/receive: accept one connection on ADDR and
// write what arrives into OUT until EOF, with receiveFile (zcopy) or
// socket.pipe(fs.createWriteStream()) (pipe). Prints the same JSON lines as
// receiver.c: {"ready":true} once listening, then the result.
//
//   node bench/receive/node-receiver.mjs zcopy|pipe ADDR OUT [fsync]
//
// ADDR: unix:PATH or HOST:PORT. ZCOPY_DIST: a build elsewhere (tsc --outDir)
// instead of the repo's dist/.
import fs from 'node:fs';
import net from 'node:net';
import { pipeline } from 'node:stream/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { BenchUsageError, options, repoRoot } from '../lib.mjs';

const [mode, addr, out, fsyncArg] = options(import.meta.url, {}, {
  positionals: 4,
  check: (_, p) => {
    if (p.length < 3 || !['zcopy', 'pipe'].includes(p[0]) || (p[3] !== undefined && p[3] !== 'fsync')) {
      throw new BenchUsageError('usage: node-receiver.mjs zcopy|pipe ADDR OUT [fsync]');
    }
    return p;
  },
});
// After the options: a usage error needs no build.
const dist = process.env.ZCOPY_DIST ? path.resolve(process.env.ZCOPY_DIST) : path.join(repoRoot, 'dist');
const { receiveFile, stats } = await import(pathToFileURL(path.join(dist, 'index.js')).href);

const server = net.createServer({ pauseOnConnect: true });
if (addr.startsWith('unix:')) {
  fs.rmSync(addr.slice(5), { force: true });
  server.listen(addr.slice(5), ready);
} else {
  const i = addr.lastIndexOf(':');
  server.listen(Number(addr.slice(i + 1)), addr.slice(0, i), ready);
}
function ready() {
  process.stdout.write('{"ready":true}\n');
}
server.once('connection', async (sock) => {
  server.close();
  const cpu0 = process.cpuUsage();
  const ru0 = process.resourceUsage();
  const t0 = performance.now();
  let bytes;
  const fd = fs.openSync(out, 'w');
  if (mode === 'zcopy') {
    bytes = await receiveFile(sock, fd);
  } else {
    const ws = fs.createWriteStream('', { fd, autoClose: false });
    sock.resume();
    await pipeline(sock, ws);
    bytes = ws.bytesWritten;
  }
  if (fsyncArg === 'fsync') fs.fsyncSync(fd);
  fs.closeSync(fd);
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const ru = process.resourceUsage();
  // Sleeps of all the process's threads (loop and workers): wake-ups.
  const wakeups = ru.voluntaryContextSwitches - ru0.voluntaryContextSwitches;
  sock.destroy();
  const st = mode === 'zcopy' ? stats() : undefined;
  const extra = st ? { jobs: st.threadpoolChunks, waits: st.waits } : {};
  process.stdout.write(JSON.stringify({ bytes, ms: +ms.toFixed(1), userMs: cpu.user / 1e3, sysMs: cpu.system / 1e3, wakeups, ...extra }) + '\n');
});
