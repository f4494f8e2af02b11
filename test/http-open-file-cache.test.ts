// The open-file cache of serveStatic (issue 11): hits skip the open, and
// correctness holds under file changes: a file rewritten in place, replaced
// by a rename, deleted, moved out of the root or into a hidden directory,
// truncated between the headers and the read; a cached fd is never closed
// under a transfer in flight; the cache is bounded (LRU) and leaks nothing
// under 500 concurrent connections with aborts; a switched root is noticed
// at once whatever validMs is.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { serveStatic, type ServeResult, type ServeStaticOptions, type StaticHandler } from '../src/http/index.js';
import { stats } from '../src/index.js';
import { makeFile, MODE, NATIVE, openFds, settledFds, sha, tmpDir, withTimeout } from './helpers.js';
import { listen, req, request, until, type Listening } from './http-helpers.js';

const base = fs.realpathSync(tmpDir('zcopy-ofc-'));
const servers: Listening[] = [];

interface Srv {
  l: Listening;
  h: StaticHandler;
  results: Array<Promise<ServeResult>>;
}

async function serve(root: string, options?: ServeStaticOptions): Promise<Srv> {
  const h = serveStatic(root, options);
  const results: Array<Promise<ServeResult>> = [];
  const l = await listen(http.createServer((q, s) => results.push(h(q, s))));
  servers.push(l);
  return { l, h, results };
}

async function get(s: Srv, p: string, headers?: Record<string, string>): Promise<{ status: number; body: Buffer; text: string; etag: string | undefined; headers: http.IncomingHttpHeaders }> {
  const r = await request(s.l.target, { path: p, headers });
  return { status: r.status, body: r.body, text: r.body.toString('latin1'), etag: r.headers.etag, headers: r.headers };
}

function dir(p: string): string {
  fs.mkdirSync(p, { recursive: true });
  return p;
}

function write(p: string, body: string | Buffer): void {
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, body);
}

/** The ETag serveStatic derives from a stat (see headers.ts: etagFor). */
function etagOf(p: string): string {
  const st = fs.statSync(p);
  return `"${st.ino.toString(16)}-${st.size.toString(16)}-${Math.round(st.mtimeMs * 1000).toString(16)}"`;
}

after(async () => {
  for (const l of servers) await l.close();
  fs.rmSync(base, { recursive: true, force: true });
});

describe(`open-file cache (issue 11) [${MODE}]`, () => {
  it('a second request is a hit (no open); counts and size say so; off means no cache', async () => {
    const root = path.join(base, 'hits');
    write(path.join(root, 'a.txt'), 'AAAA');
    const s = await serve(root);
    assert.ok(s.h.openFileCache, 'on by default');
    assert.equal((await get(s, '/a.txt')).text, 'AAAA');
    const c0 = { ...s.h.openFileCache.counts };
    for (let i = 0; i < 5; i++) assert.equal((await get(s, '/a.txt')).text, 'AAAA');
    assert.equal(s.h.openFileCache.counts.hits - c0.hits, 5);
    assert.equal(s.h.openFileCache.counts.misses, c0.misses);
    assert.equal(s.h.openFileCache.size, 1);
    const off = await serve(root, { openFileCache: false });
    assert.equal(off.h.openFileCache, undefined);
    assert.equal((await get(off, '/a.txt')).text, 'AAAA');
  });

  it('a file rewritten in place: new bytes with their own ETag at once (fresh fstat per hit)', async () => {
    const root = path.join(base, 'inplace');
    const p = path.join(root, 'f.txt');
    write(p, 'version-1');
    const s = await serve(root, { openFileCache: { max: 10, validMs: 60_000 } });
    const r1 = await get(s, '/f.txt');
    assert.equal(r1.text, 'version-1');
    // Same inode, other size and mtime.
    fs.writeFileSync(p, 'version-2, longer');
    fs.utimesSync(p, new Date(), new Date(Date.now() + 5000));
    const r2 = await get(s, '/f.txt');
    assert.equal(r2.text, 'version-2, longer');
    assert.equal(r2.etag, etagOf(p));
    assert.notEqual(r2.etag, r1.etag);
    assert.equal(Number(r2.headers['content-length']), 17);
  });

  it('a file replaced by a rename over it, or deleted: served fresh at once (nlink 0), whatever validMs', async () => {
    const root = path.join(base, 'replace');
    const p = path.join(root, 'r.txt');
    write(p, 'OLD');
    const s = await serve(root, { openFileCache: { max: 10, validMs: 60_000 } });
    assert.equal((await get(s, '/r.txt')).text, 'OLD');
    assert.equal((await get(s, '/r.txt')).text, 'OLD');
    write(p + '.tmp', 'NEW-BYTES');
    fs.renameSync(p + '.tmp', p);
    const r = await get(s, '/r.txt');
    assert.equal(r.text, 'NEW-BYTES');
    assert.equal(r.etag, etagOf(p));
    // Renamed away (the old inode keeps a name elsewhere): its fd's real path moved.
    fs.renameSync(p, path.join(root, 'r.old'));
    write(p, 'THIRD');
    assert.equal((await get(s, '/r.txt')).text, 'THIRD');
    fs.unlinkSync(p);
    assert.equal((await get(s, '/r.txt')).status, 404);
  });

  it('a path that names another inode while the old one lives on: fresh once validMs passed, never an old ETag with new bytes', async () => {
    const root = path.join(base, 'valid');
    const p = path.join(root, 'v.txt');
    write(path.join(root, 'one.txt'), 'FIRST');
    write(path.join(root, 'two.txt'), 'SECOND!');
    fs.symlinkSync('one.txt', p);
    const s = await serve(root, { openFileCache: { max: 10, validMs: 300 } });
    const first = await get(s, '/v.txt');
    assert.equal(first.text, 'FIRST');
    // A re-pointed symlink: the cached inode is untouched (same name, still
    // linked), so a hit cannot see the change; the revalidation's stat of
    // the path does. (A rename, a delete, a move are seen at once: above.)
    fs.symlinkSync('two.txt', p + '.tmp');
    fs.renameSync(p + '.tmp', p);
    const newTag = etagOf(path.join(root, 'two.txt'));
    const seen = new Map<string, string>();
    const t0 = Date.now();
    let fresh = false;
    for (let i = 0; i < 400 && !fresh; i++) {
      const r = await get(s, '/v.txt');
      assert.equal(r.status, 200);
      // Each ETag always comes with the same bytes.
      const prev = seen.get(r.etag!);
      if (prev !== undefined) assert.equal(prev, r.text, 'one ETag, two bodies');
      seen.set(r.etag!, r.text);
      if (r.text === 'SECOND!') {
        assert.equal(r.etag, newTag);
        fresh = true;
      } else {
        assert.equal(r.text, 'FIRST');
        assert.equal(r.etag, first.etag);
        await new Promise((res) => setTimeout(res, 10));
      }
    }
    assert.ok(fresh, 'served fresh after validMs');
    assert.ok(Date.now() - t0 < 5000);
    assert.ok(s.h.openFileCache!.counts.revalidations >= 1);
  });

  it('symlink and dotfile checks stay as strict: a cached file moved into a hidden directory or out of the root is refused at once', async () => {
    const root = path.join(base, 'strict', 'www');
    const out = path.join(base, 'strict', 'outside');
    write(path.join(root, 'h.txt'), 'WILL-BE-HIDDEN');
    write(path.join(root, 'o.txt'), 'WILL-BE-OUTSIDE');
    fs.mkdirSync(path.join(root, '.secret'));
    fs.mkdirSync(out, { recursive: true });
    const s = await serve(root, { openFileCache: { max: 10, validMs: 60_000 } });
    assert.equal((await get(s, '/h.txt')).status, 200);
    assert.equal((await get(s, '/o.txt')).status, 200);
    // The same inodes, now reached through symlinks to a hidden place and
    // to the outside.
    fs.renameSync(path.join(root, 'h.txt'), path.join(root, '.secret', 'h.txt'));
    fs.symlinkSync('.secret/h.txt', path.join(root, 'h.txt'));
    fs.renameSync(path.join(root, 'o.txt'), path.join(out, 'o.txt'));
    fs.symlinkSync(path.join(out, 'o.txt'), path.join(root, 'o.txt'));
    const h = await get(s, '/h.txt');
    assert.equal(h.status, 404);
    assert.ok(!h.text.includes('WILL-BE-HIDDEN'));
    const o = await get(s, '/o.txt');
    assert.equal(o.status, 403);
    assert.ok(!o.text.includes('WILL-BE-OUTSIDE'));
  });

  it('a root switched by a deploy is followed at once with a long validMs (item 16 with the cache)', async () => {
    const dep = path.join(base, 'deploy');
    write(path.join(dep, 'releases', 'v1', 'a.txt'), 'V1');
    write(path.join(dep, 'releases', 'v2', 'a.txt'), 'V2');
    const current = path.join(dep, 'current');
    fs.symlinkSync('releases/v1', current);
    const s = await serve(current, { openFileCache: { max: 10, validMs: 60_000 } });
    assert.equal((await get(s, '/a.txt')).text, 'V1');
    assert.equal((await get(s, '/a.txt')).text, 'V1');
    fs.symlinkSync('releases/v2', current + '.tmp');
    fs.renameSync(current + '.tmp', current);
    assert.equal((await get(s, '/a.txt')).text, 'V2');
    fs.symlinkSync('releases/v1', current + '.tmp');
    fs.renameSync(current + '.tmp', current);
    assert.equal((await get(s, '/a.txt')).text, 'V1');
  });

  it('a root without symlinks replaced by renames: the new one is served at once (no root stat needed)', async () => {
    const top = dir(path.join(base, 'plainroot'));
    const www = path.join(top, 'www');
    write(path.join(www, 'p.txt'), 'OLD-ROOT');
    const s = await serve(www, { openFileCache: { max: 10, validMs: 60_000 } });
    assert.equal((await get(s, '/p.txt')).text, 'OLD-ROOT');
    assert.equal((await get(s, '/p.txt')).text, 'OLD-ROOT');
    fs.renameSync(www, path.join(top, 'www.old'));
    write(path.join(www, 'p.txt'), 'NEW-ROOT');
    assert.equal((await get(s, '/p.txt')).text, 'NEW-ROOT');
    // And replaced by a symlink to a release: followed at once too.
    write(path.join(top, 'rel', 'p.txt'), 'REL-ROOT');
    fs.renameSync(www, path.join(top, 'www.old2'));
    fs.symlinkSync('rel', www);
    assert.equal((await get(s, '/p.txt')).text, 'REL-ROOT');
  });

  for (const [name, size] of [
    ['buffered', 4096],
    ['zero-copy', 1024 * 1024],
  ] as const) {
    it(`${name} body of a cached file truncated after its headers: ZCOPY_ERR_FILE_TRUNCATED, the connection closes, never desynced`, async () => {
      const root = dir(path.join(base, `trunc-${name}`));
      const f = makeFile(root, 't.bin', size, 7);
      let truncate = false;
      const s = await serve(root, {
        sendfileThreshold: 256 * 1024,
        // Runs after the fstat and before any body byte is read.
        headers: () => {
          if (truncate) fs.truncateSync(f.path, size / 2);
        },
      });
      assert.equal(sha((await get(s, '/t.bin')).body), sha(f.data));
      truncate = true;
      const sock = s.l.connect();
      const chunks: Buffer[] = [];
      sock.on('data', (d: Buffer) => chunks.push(d));
      sock.on('error', () => {});
      const closed = new Promise<void>((r) => sock.once('close', () => r()));
      sock.write(req('GET', '/t.bin') + req('GET', '/t.bin'));
      await withTimeout(closed, 10_000, 'connection closed');
      const all = Buffer.concat(chunks);
      const r = await s.results[1]!;
      // The core checks a region against the fd's size before its first
      // byte (OUT_OF_RANGE) and finds EOF mid-way (FILE_TRUNCATED): either
      // way the connection is destroyed.
      const codes = name === 'buffered' ? ['ZCOPY_ERR_FILE_TRUNCATED'] : ['ZCOPY_ERR_FILE_TRUNCATED', 'ZCOPY_ERR_OUT_OF_RANGE'];
      assert.ok(codes.includes((r.error as { code?: string } | undefined)?.code ?? ''), String(r.error));
      const second = all.indexOf('HTTP/1.1', 10);
      assert.equal(second, -1, 'no second response on a desynced connection');
      const headEnd = all.indexOf('\r\n\r\n');
      assert.ok(headEnd < 0 || all.length - headEnd - 4 < size, 'the body is short');
      for (const later of await Promise.all(s.results.slice(2))) assert.equal(later.bytes, 0, 'the pipelined request was never answered');
    });
  }

  it('a cached fd is not closed under a transfer in flight (clear, delete, eviction), and closes after it', async () => {
    const root = dir(path.join(base, 'inflight'));
    const f = makeFile(root, 'big.bin', 8 * 1024 * 1024, 9);
    makeFile(root, 'other.bin', 100, 10);
    // No body cache: this is about the fd. Over loopback (or without the
    // addon) a file old enough would be kept in memory and sent as one write
    // the socket buffers may absorb whole, leaving no transfer in flight.
    const s = await serve(root, { openFileCache: { max: 1, validMs: 60_000, bodyBytes: 0 } });
    assert.equal(sha((await get(s, '/big.bin')).body), sha(f.data));
    const fds0 = await settledFds();
    const sock = s.l.connect();
    sock.on('error', () => {});
    const chunks: Buffer[] = [];
    let got = 0;
    sock.on('data', (d: Buffer) => {
      chunks.push(d);
      got += d.length;
    });
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    let serverSock: net.Socket | undefined;
    s.l.server.once('connection', (c: net.Socket) => {
      serverSock = c;
    });
    const waits0 = stats().waits;
    sock.write(req('GET', '/big.bin', { Connection: 'close' }));
    await until(() => got > 0, 10_000, 'first bytes');
    sock.pause();
    // The transfer is under way and waiting for the paused reader.
    await until(() => (NATIVE ? stats().waits > waits0 : (serverSock?.writableLength ?? 0) > 0), 10_000, 'a full send buffer');
    // Everything that drops the entry, while the body is in flight.
    fs.unlinkSync(f.path);
    assert.equal((await get(s, '/other.bin')).status, 200); // evicts big.bin (max 1)
    s.h.openFileCache!.clear();
    sock.resume();
    await withTimeout(closed, 30_000, 'body done');
    const all = Buffer.concat(chunks);
    const body = all.subarray(all.indexOf('\r\n\r\n') + 4);
    assert.equal(sha(body), sha(f.data), 'the whole body, from the original inode');
    const r = await s.results[1]!;
    assert.equal(r.error, undefined);
    await until(() => openFds() <= fds0 - 1, 10_000, 'the fd of big.bin closed once the transfer finished');
  });

  it('bounded: max entries (LRU), each one fd (and one for the root); clear() gives them back', async () => {
    const root = path.join(base, 'lru');
    for (let i = 0; i < 12; i++) write(path.join(root, `f${i}.txt`), `F${i}`);
    const s = await serve(root, { openFileCache: { max: 4, validMs: 60_000 } });
    const fds0 = await settledFds();
    for (let i = 0; i < 12; i++) assert.equal((await get(s, `/f${i}.txt`)).text, `F${i}`);
    assert.equal(s.h.openFileCache!.size, 4);
    // One fd per entry, and (with the addon) one of the root, watched while any entry is cached.
    assert.equal(await settledFds(), fds0 + 4 + (NATIVE ? 1 : 0));
    // The most recent four are hits; the first is gone.
    const c = { ...s.h.openFileCache!.counts };
    for (let i = 8; i < 12; i++) await get(s, `/f${i}.txt`);
    assert.equal(s.h.openFileCache!.counts.hits - c.hits, 4);
    await get(s, '/f0.txt');
    assert.equal(s.h.openFileCache!.counts.misses - c.misses, 1);
    s.h.openFileCache!.clear();
    assert.equal(await settledFds(), fds0);
  });

  it('precompressed siblings that do not exist are remembered for validMs; one created later is served after it', async () => {
    const root = path.join(base, 'pre');
    write(path.join(root, 'app.js'), 'PLAIN');
    const s = await serve(root, { precompressed: true, openFileCache: { max: 10, validMs: 200 } });
    const ae = { 'Accept-Encoding': 'br, gzip' };
    assert.equal((await get(s, '/app.js', ae)).text, 'PLAIN');
    const c = { ...s.h.openFileCache!.counts };
    assert.equal((await get(s, '/app.js', ae)).text, 'PLAIN');
    assert.equal(s.h.openFileCache!.counts.misses, c.misses, 'no open of app.js, app.js.br or app.js.gz');
    write(path.join(root, 'app.js.gz'), 'GZ-BYTES');
    let r = await get(s, '/app.js', ae);
    for (let i = 0; i < 100 && r.headers['content-encoding'] !== 'gzip'; i++) {
      await new Promise((res) => setTimeout(res, 10));
      r = await get(s, '/app.js', ae);
    }
    assert.equal(r.headers['content-encoding'], 'gzip');
    assert.equal(r.text, 'GZ-BYTES');
  });

  it('500 concurrent connections, half aborted mid-body: all settle, no unhandled error, fds back after clear()', async () => {
    const root = dir(path.join(base, 'many'));
    const files = [makeFile(root, 's.bin', 4096, 1), makeFile(root, 'm.bin', 300 * 1024, 2), makeFile(root, 'l.bin', 2 * 1024 * 1024, 3)];
    const s = await serve(root);
    await get(s, '/s.bin');
    s.h.openFileCache!.clear();
    const fds0 = await settledFds();
    const N = 500;
    let ok = 0;
    const jobs = Array.from({ length: N }, (_, i) =>
      withTimeout(
        new Promise<void>((resolve) => {
          const f = files[i % 3]!;
          const sock = net.connect((s.l.server.address() as net.AddressInfo).port, '127.0.0.1');
          let got = 0;
          const chunks: Buffer[] = [];
          sock.on('error', () => {});
          sock.on('close', () => resolve());
          sock.on('data', (d: Buffer) => {
            got += d.length;
            if (i % 2 === 1 && got > 1000) sock.destroy();
            else chunks.push(d);
          });
          sock.on('end', () => {
            const all = Buffer.concat(chunks);
            if (sha(all.subarray(all.indexOf('\r\n\r\n') + 4)) === sha(f.data)) ok++;
          });
          sock.write(req('GET', '/' + path.basename(f.path), { Connection: 'close' }));
        }),
        60_000,
        `connection ${i}`,
      ),
    );
    await Promise.all(jobs);
    const results = await withTimeout(Promise.all(s.results.slice(1)), 30_000, 'every response settled');
    assert.equal(results.length, N);
    assert.ok(ok >= N / 2 - 5, `${ok} whole bodies of ${N / 2} read to the end`);
    assert.ok(s.h.openFileCache!.size <= 3);
    s.h.openFileCache!.clear();
    await until(() => openFds() <= fds0, 10_000, `fds back to ${fds0}`);
  });

  it('openFileCache is validated', () => {
    const root = path.join(base, 'hits');
    for (const bad of [1, 'yes', { max: -1 }, { max: 1.5 }, { validMs: -1 }, { validMs: Number.NaN }, null]) {
      assert.throws(() => serveStatic(root, { openFileCache: bad as never }), { code: 'ERR_INVALID_ARG_VALUE' }, JSON.stringify(bad));
    }
    serveStatic(root, { openFileCache: { max: 0 } });
    serveStatic(root, { openFileCache: false });
  });
});
