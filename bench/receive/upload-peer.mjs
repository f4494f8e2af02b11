// The peer servers of bench/receive/upload.mjs: PUT /NAME stores the body
// as ROOT/NAME, the way their users write it:
//   express   Express 5, req.pipe(fs.createWriteStream()) with stream.pipeline
//   fastify   Fastify 5, a content-type parser that leaves the body unread,
//             request.raw piped into fs.createWriteStream()
//   express-receiveBody   Express 5 with zcopy/http's receiveBody (the library in a framework)
// Prints "ready PORT"; exits on SIGTERM.
//
//   node bench/receive/upload-peer.mjs express|fastify|express-receiveBody ROOT
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';
import { BenchUsageError, options } from '../lib.mjs';
import { dist } from './common.mjs';

const [kind, root] = options(import.meta.url, {}, {
  positionals: 2,
  check: (_, p) => {
    if (p.length < 2 || !['express', 'fastify', 'express-receiveBody'].includes(p[0])) throw new BenchUsageError('usage: upload-peer.mjs express|fastify|express-receiveBody ROOT');
    return p;
  },
});
const target = (url) => path.join(root, path.basename(decodeURIComponent(url.split('?')[0])));
const toFile = (req, file) => pipeline(req, fs.createWriteStream(file));

let server;
if (kind === 'express' || kind === 'express-receiveBody') {
  const { default: express } = await import('express');
  const app = express();
  let store = toFile;
  if (kind === 'express-receiveBody') {
    const { receiveBody } = await import(pathToFileURL(path.join(dist, 'http', 'index.js')).href);
    store = (req, file) => receiveBody(req, file);
  }
  app.put('/:name', async (req, res) => {
    try {
      await store(req, target(req.url));
      res.status(201).end();
    } catch (err) {
      res.status(500).end(String(err));
    }
  });
  server = http.createServer(app);
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
} else {
  const { default: Fastify } = await import('fastify');
  const app = Fastify({ logger: false, bodyLimit: 2 ** 31 });
  // Leave the body unread: the handler streams it.
  app.addContentTypeParser('*', (req, payload, done) => done(null));
  app.put('/:name', async (request, reply) => {
    await toFile(request.raw, target(request.url));
    reply.code(201).send();
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  server = app.server;
}
console.log(`ready ${server.address().port}`);
process.once('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
