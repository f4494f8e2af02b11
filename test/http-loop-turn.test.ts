// The open-file cache checks the file system once per event-loop turn
// (issue 11): a body-cache hit in a turn whose first hit already fstat'ed
// the file makes no syscall, the root is fstat'ed and stat'ed once per
// turn, and the next turn checks again, so a change made before a request
// was sent is always seen (read-your-writes). The root's path is compared
// with the watched root on each of those checks: a directory *above* the
// root renamed away (`mv /srv/app /srv/app.old; mkdir -p /srv/app/public`)
// is seen by the next request, not at the next revalidation.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { setImmediate as nextImmediate } from 'node:timers/promises';
import { after, describe, it } from 'node:test';
import { serveStatic, type StaticHandler } from '../src/http/index.js';
import { loopTurn, OpenFileCache } from '../src/http/open-file-cache.js';
import { isOpened, openResolved, type OpenedFile } from '../src/http/open.js';
import { native } from '../src/native.js';
import { MODE, NATIVE, tmpDir } from './helpers.js';
import { agedPast, listen, request, shortRacyMargin, type Listening } from './http-helpers.js';

const base = fs.realpathSync(tmpDir('zcopy-turn-'));
const servers: Listening[] = [];
const RACY_MS = 50;

shortRacyMargin(RACY_MS);
const aged = (...files: string[]): Promise<void> => agedPast(RACY_MS, ...files);

after(async () => {
  for (const l of servers) await l.close();
  fs.rmSync(base, { recursive: true, force: true });
});

async function serve(root: string, validMs: number): Promise<{ l: Listening; h: StaticHandler }> {
  const h = serveStatic(root, { openFileCache: { max: 10, validMs } });
  const l = await listen(http.createServer((q, s) => void h(q, s)));
  servers.push(l);
  return { l, h };
}

async function text(l: Listening, p: string): Promise<{ status: number; text: string }> {
  const r = await request(l.target, { path: p });
  return { status: r.status, text: r.body.toString() };
}

function write(p: string, body: string): void {
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, body);
}

/** Resolves after at least one more poll phase (two loop iterations: an immediate runs in the check phase of the current one). */
async function nextPoll(): Promise<void> {
  await nextImmediate();
  await nextImmediate();
}


describe(`open-file cache: one file-system check per loop turn (issue 11) [${MODE}]`, () => {
  it('loopTurn() moves once per poll phase (the addon counts them), not within one; without the addon every call differs', async () => {
    const a = loopTurn();
    if (!NATIVE) {
      assert.notEqual(loopTurn(), a, 'no counter: every hit checks');
      return;
    }
    assert.equal(loopTurn(), a);
    await Promise.resolve();
    assert.equal(loopTurn(), a, 'a microtask is the same turn');
    await nextPoll();
    const b = loopTurn();
    assert.ok(b > a, `a later poll phase has a larger number (${a} -> ${b})`);
    // A number read in a timer or an immediate (a handler run late) is
    // never the number of the poll phase that reads the next requests.
    const inTimer = await new Promise<number>((r) => setTimeout(() => r(loopTurn()), 2));
    const inImmediate = await new Promise<number>((r) => setImmediate(() => r(loopTurn())));
    const poll = await new Promise<number>((r) => {
      const srv = http.createServer((q, res) => {
        const n = loopTurn();
        res.end();
        srv.close();
        r(n);
      });
      srv.listen(0, '127.0.0.1', () => {
        const { port } = srv.address() as { port: number };
        http.get({ host: '127.0.0.1', port, agent: false }, (res) => res.resume());
      });
    });
    assert.ok(poll > inTimer && poll > inImmediate, `a request read later is under a later number (timer ${inTimer}, immediate ${inImmediate}, request ${poll})`);
  });

  it('a body-cache hit makes no fstat in a turn already checked; the next turn checks again and sees a change', async (t) => {
    if (!NATIVE) return t.skip('the cheap fstat and the watched root are the addon\'s (portable path: a Stats per hit)');
    const root = path.join(base, 'turns');
    const p = path.join(root, 'a.txt');
    write(p, 'AAAA');
    await aged(p);
    const cache = new OpenFileCache(10, 60_000, 1 << 20, root);
    const opened = await openResolved(p, true);
    assert.ok(isOpened(opened));
    const key = root + '\0' + p;
    const first = cache.insert(key, opened as OpenedFile) as OpenedFile & { offerBody?: (b: Buffer, at: number) => void };
    assert.ok(first.offerBody, 'a small file may be kept');
    first.offerBody(fs.readFileSync(p), Date.now());
    first.close();
    assert.equal(cache.bodyCounts.stored, 1);

    const real = native!.fstatId!;
    let calls = 0;
    native!.fstatId = (fd: number, out: Uint8Array) => {
      calls++;
      return real(fd, out);
    };
    try {
      await nextPoll();
      const hit = (): OpenedFile & { body?: Buffer } => {
        const c = cache.lookup(key);
        assert.ok(c !== undefined && 'file' in c, 'a hit');
        return c.file as OpenedFile & { body?: Buffer };
      };
      const h1 = hit();
      assert.equal(h1.body?.toString(), 'AAAA');
      assert.ok(calls >= 2, `the turn's first hit checks the file and the root (${calls} fstat)`);
      const before = calls;
      for (let i = 0; i < 10; i++) {
        const h = hit();
        assert.equal(h.body?.toString(), 'AAAA');
        h.close();
      }
      assert.equal(calls, before, 'no fstat for ten more hits in the same turn');
      h1.close();

      // Rewritten in place (same size): the next turn's hit sees it.
      fs.writeFileSync(p, 'BBBB');
      await nextPoll();
      const n0 = calls;
      const h2 = hit();
      assert.ok(calls > n0, 'a new turn checks the file again');
      assert.equal(h2.body, undefined, 'the old body is not sent for the new bytes');
      assert.equal(h2.stat.size, 4);
      assert.equal(cache.bodyCounts.dropped, 1);
      h2.close();
    } finally {
      native!.fstatId = real;
      cache.clear();
    }
  });

  it('read-your-writes over HTTP: each request after a rewrite, a rename over it or a delete gets the file as it is now', async () => {
    const root = path.join(base, 'ryw');
    const p = path.join(root, 'f.txt');
    write(p, 'v0');
    await aged(p);
    const { l, h } = await serve(root, 60_000);
    assert.equal((await text(l, '/f.txt')).text, 'v0');
    assert.equal((await text(l, '/f.txt')).text, 'v0');
    assert.ok(h.openFileCache!.bodyCounts.stored >= 1, 'served from the body cache');
    for (let i = 1; i <= 20; i++) {
      // Each round: a rewrite in place (same size), then the request at once.
      fs.writeFileSync(p, `v${i % 10}`);
      assert.equal((await text(l, '/f.txt')).text, `v${i % 10}`, `round ${i}`);
    }
    write(p + '.new', 'renamed');
    fs.renameSync(p + '.new', p);
    assert.equal((await text(l, '/f.txt')).text, 'renamed');
    fs.unlinkSync(p);
    assert.equal((await text(l, '/f.txt')).status, 404);
  });

  it('a directory above the root renamed away and a new tree made at its path: the next request is served from the new tree', async () => {
    const app = path.join(base, 'above', 'app');
    const root = path.join(app, 'public');
    write(path.join(root, 'index.txt'), 'old tree');
    write(path.join(root, 'gone.txt'), 'only in the old tree');
    await aged(path.join(root, 'gone.txt'));
    // A validMs far beyond the test: only the per-turn root check can see it.
    const { l, h } = await serve(root, 600_000);
    for (let i = 0; i < 3; i++) {
      assert.equal((await text(l, '/index.txt')).text, 'old tree');
      assert.equal((await text(l, '/gone.txt')).text, 'only in the old tree');
    }
    assert.ok(h.openFileCache!.counts.hits >= 4, 'cached');
    fs.renameSync(app, app + '.old');
    write(path.join(root, 'index.txt'), 'new tree');
    assert.equal((await text(l, '/index.txt')).text, 'new tree');
    assert.equal((await text(l, '/gone.txt')).status, 404, 'a file of the old tree is not served from its old fd');
    // And with nothing at the old path any more: 404, not the old files.
    fs.renameSync(app, app + '.newer');
    assert.equal((await text(l, '/index.txt')).status, 404);
  });
});
