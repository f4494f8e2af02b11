// The same transfer with zero copy: the kernel moves the file's pages from
// the page cache to the socket (sendfile(2), Java's FileChannel.transferTo).
// No byte enters JavaScript; the event loop stays free while the peer reads.
//   npm run examples:build     (once), then, with receiver.js running:
//   node dist-examples/zero-copy-send.js FILE [port]
import net from 'node:net';
import { sendFile, stats, capabilities } from 'zcopy';

const [file, port = '9000'] = process.argv.slice(2);
if (!file) throw new Error('usage: zero-copy-send FILE [port]');

const socket = net.connect(Number(port), '127.0.0.1');
await new Promise((resolve) => socket.once('connect', resolve));
const start = process.hrtime.bigint();
const sent = await sendFile(socket, file, { mechanism: 'sendfile' });
socket.end();
const { bytesZeroCopy, bytesCopied, fallbacks } = stats();
console.log(`sent ${sent} bytes in ${(Number(process.hrtime.bigint() - start) / 1e9).toFixed(3)} s`);
console.log(`zero-copy bytes: ${bytesZeroCopy}, copied bytes: ${bytesCopied}`, capabilities().native ? '' : `(portable path: ${capabilities().reason})`, fallbacks);
