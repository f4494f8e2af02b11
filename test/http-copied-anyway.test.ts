// Where a body would be copied anyway (loopback TCP under `auto`, TLS, no
// addon), serveStatic sends one held in the body cache from memory even at
// or above sendfileThreshold (issue 11, 1 MiB): one write of head + body
// instead of a read of the file and a write. Zero copy stays where it is
// zero copy (a Unix socket, a mechanism asked for), concurrent first
// requests read the body for the cache once, and a changed file is never
// sent from its old body.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { serveStatic, type ServeResult, type ServeStaticOptions, type StaticHandler } from '../src/http/index.js';
import { bufferedReads } from '../src/http/body.js';
import { bodyCacheTuning } from '../src/http/open-file-cache.js';
import { makeFile, MODE, NATIVE, sha, tmpDir } from './helpers.js';
import { agedPast, listen, request, shortRacyMargin, type Listening } from './http-helpers.js';

const base = fs.realpathSync(tmpDir('zcopy-anyway-'));
const servers: Listening[] = [];
const RACY_MS = 50;
const MiB = 1024 * 1024;

shortRacyMargin(RACY_MS);
const aged = (...files: string[]): Promise<void> => agedPast(RACY_MS, ...files);

after(async () => {
  for (const l of servers) await l.close();
  fs.rmSync(base, { recursive: true, force: true });
});

async function serve(root: string, options: ServeStaticOptions | undefined, transport: 'tcp' | 'unix' = 'tcp'): Promise<{ l: Listening; h: StaticHandler; results: Array<Promise<ServeResult>> }> {
  const h = serveStatic(root, options);
  const results: Array<Promise<ServeResult>> = [];
  const l = await listen(http.createServer((q, s) => results.push(h(q, s))), transport);
  servers.push(l);
  return { l, h, results };
}


function root(name: string): string {
  const d = path.join(base, name);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

describe(`bodies above the threshold from the body cache where they are copied anyway (issue 11) [${MODE}]`, () => {
  it('loopback TCP, auto: a 1 MiB body is read once for the cache, then sent from memory with the headers of the zero-copy path', async () => {
    const r = root('tcp');
    const f = makeFile(r, 'm.bin', MiB + 3, 11);
    await aged(f.path);
    const s = await serve(r, undefined);
    const plain = await serve(r, { openFileCache: false });
    const ref = await request(plain.l.target, { path: '/m.bin' });
    const first = await request(s.l.target, { path: '/m.bin' });
    assert.equal(sha(first.body), sha(f.data));
    assert.equal((await s.results[0])!.transfer, 'buffered');
    assert.equal(s.h.openFileCache!.bodyCounts.stored, 1);
    const m0 = bufferedReads.memory;
    for (let i = 0; i < 4; i++) {
      const x = await request(s.l.target, { path: '/m.bin' });
      assert.equal(sha(x.body), sha(f.data));
      assert.deepEqual({ ...x.headers, date: '' }, { ...ref.headers, date: '' }, 'the same headers as without the cache');
    }
    assert.equal(bufferedReads.memory - m0, 4, 'four responses from memory');
    const all = await Promise.all(s.results);
    assert.ok(all.every((x) => x.status === 200 && x.bytes === MiB + 3 && x.bytesZeroCopy === 0 && x.transfer === 'buffered'));
    // Rewritten in place (same size): the next request gets the new bytes.
    const next = Buffer.alloc(MiB + 3, 7);
    fs.writeFileSync(f.path, next);
    const y = await request(s.l.target, { path: '/m.bin' });
    assert.equal(sha(y.body), sha(next));
  });

  it('without the addon every body is copied, so a Unix socket gets the cached body too', async (t) => {
    if (NATIVE) return t.skip('with the addon a Unix socket is zero copy (next test)');
    const r = root('portable-unix');
    const f = makeFile(r, 'p.bin', MiB, 14);
    await aged(f.path);
    const s = await serve(r, undefined, 'unix');
    for (let i = 0; i < 3; i++) assert.equal(sha((await request(s.l.target, { path: '/p.bin' })).body), sha(f.data));
    const all = await Promise.all(s.results);
    assert.ok(all.every((x) => x.transfer === 'buffered' && x.bytes === MiB), JSON.stringify(all.map((x) => x.transfer)));
    assert.equal(s.h.openFileCache!.bodyCounts.stored, 1);
  });

  it('a mechanism asked for, a Unix socket, or a file written just now: not from memory (zero copy where it is zero copy)', async (t) => {
    if (!NATIVE) return t.skip('no addon: every body is copied (the portable path), so the cache is used');
    const r = root('zc');
    const f = makeFile(r, 'z.bin', MiB, 12);
    await aged(f.path);
    const asked = await serve(r, { mechanism: 'sendfile' });
    const unix = await serve(r, undefined, 'unix');
    for (const s of [asked, unix]) {
      for (let i = 0; i < 3; i++) assert.equal(sha((await request(s.l.target, { path: '/z.bin' })).body), sha(f.data));
      const all = await Promise.all(s.results);
      assert.ok(all.every((x) => x.bytesZeroCopy === MiB && x.transfer === 'sendfile'), JSON.stringify(all.map((x) => x.transfer)));
      assert.equal(s.h.openFileCache!.bodyCounts.stored, 0);
    }
    // Just written (racily clean rule): sent by the copy loop, not kept.
    bodyCacheTuning.racyMs = 60_000;
    const fresh = await serve(r, undefined);
    for (let i = 0; i < 2; i++) assert.equal(sha((await request(fresh.l.target, { path: '/z.bin' })).body), sha(f.data));
    assert.ok((await Promise.all(fresh.results)).every((x) => x.transfer === 'copy'));
    assert.equal(fresh.h.openFileCache!.bodyCounts.stored, 0);
  });

  it('a body read only to be cached never evicts another: past the budget it is sent as before, every cached body stays', async () => {
    const r = root('budget');
    const files = ['a', 'b', 'c', 'd', 'e'].map((n, i) => makeFile(r, `${n}.bin`, MiB, 20 + i));
    await aged(files[4]!.path);
    const s = await serve(r, { openFileCache: { bodyBytes: 4 * MiB } });
    for (const f of files) assert.equal(sha((await request(s.l.target, { path: '/' + path.basename(f.path) })).body), sha(f.data));
    const c = s.h.openFileCache!;
    assert.equal(c.bodyCounts.stored, 4, 'four fit');
    assert.equal(c.bodyCounts.dropped, 0, 'none evicted');
    assert.ok(c.bodyTotal <= 4 * MiB);
    const all = await Promise.all(s.results);
    assert.deepEqual(all.map((x) => x.transfer === 'buffered'), [true, true, true, true, false], 'the fifth goes the usual way');
    // And the fifth again: still not read into memory.
    const again = await request(s.l.target, { path: '/e.bin' });
    assert.equal(sha(again.body), sha(files[4]!.data));
    assert.notEqual((await s.results[5])!.transfer, 'buffered');
  });

  it('concurrent first requests read the body for the cache once; the others are not held in memory', async () => {
    const r = root('conc');
    const f = makeFile(r, 'c.bin', 2 * MiB, 13);
    await aged(f.path);
    const s = await serve(r, undefined);
    const reads0 = bufferedReads.nowait + bufferedReads.pool;
    const bodies = await Promise.all(Array.from({ length: 8 }, () => request(s.l.target, { path: '/c.bin' })));
    for (const b of bodies) assert.equal(sha(b.body), sha(f.data));
    assert.equal(s.h.openFileCache!.bodyCounts.stored, 1, 'kept once');
    assert.equal(bufferedReads.nowait + bufferedReads.pool - reads0, 1, 'one whole-body read, not one per request');
    const all = await Promise.all(s.results);
    assert.ok(all.every((x) => x.status === 200 && x.bytes === 2 * MiB));
  });
});
