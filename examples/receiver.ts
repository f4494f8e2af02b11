// A small receiver for the two sender examples: counts and hashes what
// arrives on 127.0.0.1:<port>, prints it, and waits for the next sender.
//   npm run examples:build     (once: compiles examples/ to dist-examples/)
//   node dist-examples/receiver.js 9000
import net from 'node:net';
import { createHash } from 'node:crypto';

const port = Number(process.argv[2] ?? 9000);
net
  .createServer((socket) => {
    const hash = createHash('sha256');
    let bytes = 0;
    const start = process.hrtime.bigint();
    socket.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      hash.update(chunk);
    });
    // A sender that dies mid-transfer resets the connection: report it, keep serving.
    socket.on('error', (err) => console.error(`sender connection failed after ${bytes} bytes: ${err.message}`));
    socket.on('end', () => {
      const secs = Number(process.hrtime.bigint() - start) / 1e9;
      console.log(`received ${bytes} bytes in ${secs.toFixed(3)} s, sha256 ${hash.digest('hex')}`);
    });
  })
  .listen(port, '127.0.0.1', function (this: net.Server) {
    console.log(`receiver listening on 127.0.0.1:${(this.address() as net.AddressInfo).port}`);
  });
