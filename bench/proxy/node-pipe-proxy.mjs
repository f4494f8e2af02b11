// The reference a Node user writes today: a TCP proxy with a.pipe(b) both
// ways. Usage: node node-pipe-proxy.mjs <listen> <target>, each tcp:PORT
// (127.0.0.1; 0: any free port) or unix:PATH. Prints "ready <port|path>".
import fs from 'node:fs';
import net from 'node:net';

function addr(s) {
  return s.startsWith('unix:') ? { path: s.slice(5) } : { host: '127.0.0.1', port: Number(s.slice(4)) };
}
const [listen, target] = process.argv.slice(2).map(addr);
const server = net.createServer({ allowHalfOpen: true }, (client) => {
  const up = net.connect({ ...target, allowHalfOpen: true });
  client.pipe(up);
  up.pipe(client);
  const close = () => {
    client.destroy();
    up.destroy();
  };
  client.on('error', close);
  up.on('error', close);
  let ended = 0;
  const done = () => ++ended === 2 && close();
  client.on('end', () => up.once('finish', done));
  up.on('end', () => client.once('finish', done));
});
if (listen.path) fs.rmSync(listen.path, { force: true });
server.listen(listen.path ? listen.path : { host: listen.host, port: listen.port }, () => {
  const a = server.address();
  console.log(`ready ${typeof a === 'string' ? a : a.port}`);
});
process.on('SIGTERM', () => process.exit(0));
