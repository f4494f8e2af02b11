// A middleware in front of serveStatic that wraps res.end and keeps the
// chunk it is given (a response cache, a body logger) must get bytes of its
// own: the pooled buffers of the small-body path are reused for the next
// response once one finished, and the body cache's buffers are shared by
// every client (found in the issue 11 review: file A's kept chunk turned
// into file B's bytes).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { after, describe, it } from 'node:test';
import { serveStatic } from '../src/http/index.js';
import { MODE, tmpDir } from './helpers.js';
import { listen, request, type Listening } from './http-helpers.js';

const root = fs.realpathSync(tmpDir('zcopy-wrapped-'));
const servers: Listening[] = [];
after(async () => {
  for (const l of servers) await l.close();
  fs.rmSync(root, { recursive: true, force: true });
});

describe(`a wrapped res.end keeps its chunk (${MODE})`, () => {
  for (const openFileCache of [false, undefined] as const) {
    it(`the kept chunk still holds its own file's bytes after the next response (openFileCache ${openFileCache === false ? 'off' : 'default'})`, async () => {
      const size = 48 * 1024; // buffered (below the zero-copy threshold), one pool size class
      fs.writeFileSync(`${root}/a.bin`, Buffer.alloc(size, 'a'));
      fs.writeFileSync(`${root}/b.bin`, Buffer.alloc(size, 'b'));
      // Old enough for the body cache to keep them (its racily-clean margin).
      const old = new Date(Date.now() - 60_000);
      fs.utimesSync(`${root}/a.bin`, old, old);
      fs.utimesSync(`${root}/b.bin`, old, old);
      const h = serveStatic(root, openFileCache === false ? { openFileCache: false } : {});
      const kept: Buffer[] = [];
      const l = await listen(
        http.createServer((q, s) => {
          const end = s.end.bind(s) as (...a: unknown[]) => http.ServerResponse;
          s.end = ((chunk?: unknown, ...rest: unknown[]) => {
            if (Buffer.isBuffer(chunk) && chunk.length > 0) kept.push(chunk);
            return end(chunk, ...rest);
          }) as typeof s.end;
          void h(q, s);
        }),
      );
      servers.push(l);
      for (let round = 0; round < 3; round++) {
        for (const name of ['a', 'b']) {
          const r = await request(l.target, { path: `/${name}.bin` });
          assert.equal(r.status, 200);
          assert.ok(r.body.equals(Buffer.alloc(size, name)), `${name}.bin body`);
        }
      }
      assert.equal(kept.length, 6);
      kept.forEach((c, i) => assert.ok(c.equals(Buffer.alloc(size, i % 2 === 0 ? 'a' : 'b')), `kept chunk ${i} (${i % 2 === 0 ? 'a' : 'b'}.bin) was overwritten`));
      // A middleware that changes its chunk in place cannot change what the
      // next client gets.
      for (const c of kept) c.fill('x');
      const again = await request(l.target, { path: '/a.bin' });
      assert.ok(again.body.equals(Buffer.alloc(size, 'a')), 'a.bin after the kept chunks were overwritten');
    });
  }
});
