// The traditional way to send a file: read it into a buffer, write the
// buffer to the socket, repeat. Every byte crosses the kernel/user boundary
// twice (read() copies it into JavaScript memory, write() copies it back)
// with two context switches per chunk.
//   npm run examples:build     (once), then, with receiver.js running:
//   node dist-examples/traditional-send.js FILE [port]
import net from 'node:net';
import { open } from 'node:fs/promises';

const [file, port = '9000'] = process.argv.slice(2);
if (!file) throw new Error('usage: traditional-send FILE [port]');

const socket = net.connect(Number(port), '127.0.0.1');
await new Promise((resolve) => socket.once('connect', resolve));
const fh = await open(file, 'r');
const buffer = Buffer.allocUnsafe(64 * 1024);
let sent = 0;
const start = process.hrtime.bigint();
for (;;) {
  const { bytesRead } = await fh.read(buffer, 0, buffer.length, sent);
  if (bytesRead === 0) break;
  // Wait for the write to complete before reusing the buffer.
  await new Promise<void>((resolve, reject) => socket.write(buffer.subarray(0, bytesRead), (err) => (err ? reject(err) : resolve())));
  sent += bytesRead;
}
socket.end();
await fh.close();
console.log(`sent ${sent} bytes in ${(Number(process.hrtime.bigint() - start) / 1e9).toFixed(3)} s (read + write loop)`);
