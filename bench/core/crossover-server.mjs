// Request-response server for the small-file crossover, run in its own
// process by bench/core/index.mjs and driven by bench/core/c/rr-client.c.
//
//   node bench/core/crossover-server.mjs buffered|zcopy FILE
//
// Each 1-byte request on a keep-alive connection gets an HTTP-like head
// followed by the whole file. The file is opened once (both modes), the
// socket has TCP_NODELAY like Node's HTTP server.
//   buffered: fs.read the body into a fresh buffer behind the head, one
//             socket.write (what a server does below a sendfile threshold)
//   zcopy:    socket.write(head), then sendFile(socket, fd, { offset: 0, length })
// Prints {"port":P,"responseBytes":N} when listening; on stdin EOF it
// prints {"requests":..,"cpuUsPerRequest":..,"stats":..} and exits.
import fs from 'node:fs';
import net from 'node:net';
import { BenchUsageError, options } from '../lib.mjs';

const [mode, file] = options(import.meta.url, {}, {
  positionals: 2,
  check: (_, [m, f]) => {
    if ((m !== 'buffered' && m !== 'zcopy') || !f) throw new BenchUsageError('usage: crossover-server.mjs buffered|zcopy FILE');
    return [m, f];
  },
});
const zcopy = mode === 'zcopy' ? await import('../../dist/index.js') : null;
const fd = fs.openSync(file, 'r');
const size = fs.fstatSync(fd).size;
const head = Buffer.from(
  'HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n' +
    `Content-Length: ${size}\r\nLast-Modified: Mon, 24 Nov 2025 00:00:00 GMT\r\n` +
    'Connection: keep-alive\r\n\r\n',
);

function readFull(buf, at, len) {
  return new Promise((resolve, reject) => {
    const step = (done) => {
      if (done === len) return resolve();
      fs.read(fd, buf, at + done, len - done, done, (err, n) => {
        if (err) return reject(err);
        if (n === 0) return reject(new Error('file shrank'));
        step(done + n);
      });
    };
    step(0);
  });
}

async function respond(sock) {
  if (zcopy) {
    sock.write(head);
    await zcopy.sendFile(sock, fd, { offset: 0, length: size });
  } else {
    const buf = Buffer.allocUnsafe(head.length + size);
    head.copy(buf, 0);
    await readFull(buf, head.length, size);
    sock.write(buf);
  }
}

let requests = 0;
let cpu0 = null;
const server = net.createServer((sock) => {
  sock.setNoDelay(true);
  let owed = 0;
  let busy = false;
  const serve = async () => {
    busy = true;
    try {
      while (owed > 0) {
        owed--;
        await respond(sock);
        requests++;
      }
    } catch (err) {
      console.error(err);
      sock.destroy();
    }
    busy = false;
  };
  sock.on('data', (chunk) => {
    owed += chunk.length;
    cpu0 ??= process.cpuUsage();
    if (!busy) serve();
  });
  sock.on('error', () => {});
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port, responseBytes: head.length + size }) + '\n');
});
process.stdin.resume();
process.stdin.on('end', () => {
  // CPU from the first request on: server start-up is not part of it.
  const cpu = process.cpuUsage(cpu0 ?? undefined);
  const out = { requests, cpuUsPerRequest: requests ? (cpu.user + cpu.system) / requests : null };
  if (zcopy) out.stats = zcopy.stats();
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(0);
});
