#!/usr/bin/env node
// sendFile of one file N times back to back over loopback TCP to the C sink,
// with a given mechanism: the evidence for what `auto` picks on loopback TCP
// at small and large sizes. Run under the bench lock after `node bench/run.mjs
// core` built bench/.build/sink:
//   flock /tmp/zcopy-bench.lock node bench/core/size-sweep.mjs FILE sendfile|copy|splice [TOTAL_BYTES]
import net from 'node:net';
import fs from 'node:fs';
import { BenchUsageError, buildC, jsonChild, options, parseSize } from '../lib.mjs';

const { file, mechanism, total } = options(import.meta.url, {}, {
  positionals: 3,
  check: (_, [file, mechanism = 'auto', total = String(1 << 30)]) => {
    if (!file) throw new BenchUsageError('usage: size-sweep.mjs FILE MECHANISM [TOTAL_BYTES]');
    return { file, mechanism, total: parseSize(total, 'TOTAL_BYTES') };
  },
});
// After the options: a usage error needs no build.
const { sendFile } = await import('../../dist/index.js');
const size = fs.statSync(file).size;
const reps = Math.max(1, Math.floor(total / size));
const { sink: sinkBin } = buildC(['sink']);
const sink = jsonChild(sinkBin, ['tcp:0', '--expect', String(size * reps), '--conns', '1'], { timeoutMs: 600_000 });
const port = Number(/^tcp:(\d+)$/.exec((await sink.next()).listening)[1]);
const socket = net.connect(port, '127.0.0.1');
await new Promise((r) => socket.once('connect', r));
const fd = fs.openSync(file, 'r');
const c0 = process.cpuUsage();
const t0 = performance.now();
for (let i = 0; i < reps; i++) await sendFile(socket, fd, { mechanism });
socket.end();
await sink.done();
const secs = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(c0);
const gb = (size * reps) / 1e9;
console.log(JSON.stringify({ file, size, reps, mechanism, gbps: +(gb / secs).toFixed(3), cpuPerGB: +((cpu.user + cpu.system) / 1e6 / gb).toFixed(3), usPerTransfer: Math.round((secs / reps) * 1e6) }));
