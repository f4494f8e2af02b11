#!/usr/bin/env node
// sendFile of one file N times back to back over loopback TCP to the C sink,
// with a given mechanism: the evidence for what `auto` picks on loopback TCP
// at small and large sizes. Run under the bench lock after `node bench/run.mjs
// core` built bench/.build/sink:
//   flock /tmp/zcopy-bench.lock node bench/core/size-sweep.mjs FILE sendfile|copy|splice [TOTAL_BYTES]
import net from 'node:net';
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { sendFile } from '../../dist/index.js';

const [file, mechanism = 'auto', totalArg = String(1 << 30)] = process.argv.slice(2);
if (!file) {
  console.error('usage: size-sweep.mjs FILE MECHANISM [TOTAL_BYTES]');
  process.exit(2);
}
const size = fs.statSync(file).size;
const reps = Math.max(1, Math.floor(Number(totalArg) / size));
const sinkPath = fileURLToPath(new URL('../.build/sink', import.meta.url));
const sink = spawn(sinkPath, ['tcp:0', '--expect', String(size * reps), '--conns', '1'], { stdio: ['ignore', 'pipe', 'inherit'] });
const port = await new Promise((resolve, reject) => {
  let buf = '';
  sink.stdout.on('data', (d) => {
    buf += d;
    const m = /"listening":"tcp:(\d+)"/.exec(buf);
    if (m) resolve(Number(m[1]));
  });
  sink.once('exit', () => reject(new Error('sink exited early')));
});
const socket = net.connect(port, '127.0.0.1');
await new Promise((r) => socket.once('connect', r));
const fd = fs.openSync(file, 'r');
const c0 = process.cpuUsage();
const t0 = performance.now();
for (let i = 0; i < reps; i++) await sendFile(socket, fd, { mechanism });
socket.end();
await new Promise((r) => sink.once('exit', r));
const secs = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(c0);
const gb = (size * reps) / 1e9;
console.log(JSON.stringify({ file, size, reps, mechanism, gbps: +(gb / secs).toFixed(3), cpuPerGB: +((cpu.user + cpu.system) / 1e6 / gb).toFixed(3), usPerTransfer: Math.round((secs / reps) * 1e6) }));
