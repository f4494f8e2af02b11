#!/usr/bin/env node
// A peer server for the HTTP benchmark, as their users run them:
//   node bench/http/peer.mjs express ROOT (PORT | unix:PATH)   Express 5 + serve-static
//   node bench/http/peer.mjs fastify ROOT (PORT | unix:PATH)   Fastify 5 + @fastify/static
//   node bench/http/peer.mjs sirv ROOT (PORT | unix:PATH)      sirv 3 on node:http
//   node bench/http/peer.mjs memory ROOT (PORT | unix:PATH)    node:http answering every file of
//                                                              ROOT from a Buffer (the Node ceiling)
// Prints "ready <port or path>" once listening; exits on SIGTERM.
import http from 'node:http';
import { BenchUsageError, options } from '../lib.mjs';

const KINDS = ['express', 'fastify', 'sirv', 'memory'];
const [kind, root, where] = options(import.meta.url, {}, {
  positionals: 3,
  check: (_, p) => {
    if (p.length < 3 || !KINDS.includes(p[0])) throw new BenchUsageError('usage: peer.mjs express|fastify|sirv|memory ROOT PORT|unix:PATH');
    return p;
  },
});
const unix = where.startsWith('unix:') ? where.slice(5) : undefined;
const port = unix ? undefined : Number(where);

/** Listens, says where, and closes every connection on SIGTERM. */
async function serve(server, listen = () => new Promise((r) => (unix ? server.listen(unix, r) : server.listen(port, '127.0.0.1', r))), close = () => new Promise((r) => server.close(r))) {
  await listen();
  console.log(`ready ${unix ?? server.address().port}`);
  process.once('SIGTERM', () => {
    server.closeAllConnections();
    close().then(() => process.exit(0));
  });
}

if (kind === 'express') {
  const { default: express } = await import('express');
  const { default: serveStatic } = await import('serve-static');
  const app = express();
  app.use(serveStatic(root));
  await serve(http.createServer(app));
} else if (kind === 'fastify') {
  const { default: Fastify } = await import('fastify');
  const { default: fastifyStatic } = await import('@fastify/static');
  const app = Fastify({ logger: false });
  await app.register(fastifyStatic, { root, prefix: '/' });
  await serve(app.server, () => app.listen(unix ? { path: unix } : { port, host: '127.0.0.1' }), () => app.close());
} else if (kind === 'sirv') {
  const { default: sirv } = await import('sirv');
  const handle = sirv(root, { dev: false, etag: true });
  await serve(
    http.createServer((req, res) =>
      handle(req, res, () => {
        res.statusCode = 404;
        res.end();
      }),
    ),
  );
} else {
  const { readdirSync, readFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const bodies = new Map(readdirSync(root).map((n) => [`/${n}`, readFileSync(join(root, n))]));
  await serve(
    http.createServer((req, res) => {
      const b = bodies.get(req.url);
      if (!b) {
        res.statusCode = 404;
        return res.end();
      }
      res.setHeader('Content-Type', 'application/octet-stream');
      res.setHeader('Content-Length', b.length);
      res.end(b);
    }),
  );
}
