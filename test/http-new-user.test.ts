// Issue 12, what a new user brings from serve-static: its option spellings
// (`maxage`, `setHeaders`), misspelt options (warned, not silently ignored),
// maxAge units, and a mounted directory requested without its slash
// (`app.use('/assets', h)` + `GET /assets` -> 301 /assets/).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import express from 'express';
import expressStatic from 'serve-static';
import { serveFile, serveStatic } from '../src/http/index.js';
import { tmpDir, withTimeout } from './helpers.js';
import { listen, request, type Listening } from './http-helpers.js';

const dir = tmpDir('zcopy-newuser-');
before(() => {
  fs.writeFileSync(path.join(dir, 'index.html'), '<a href="app.js">app</a>');
  fs.writeFileSync(path.join(dir, 'app.js'), 'console.log(1)');
  fs.mkdirSync(path.join(dir, 'sub'));
  fs.writeFileSync(path.join(dir, 'sub', 'index.html'), 'sub index');
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The warnings emitted while `fn` runs and the turn after it (emitWarning is asynchronous). */
async function warningsOf(fn: () => unknown): Promise<Array<Error & { code?: string }>> {
  const seen: Array<Error & { code?: string }> = [];
  const on = (w: Error & { code?: string }): void => {
    if (w.code === 'ZCOPY_UNKNOWN_OPTION') seen.push(w);
  };
  process.on('warning', on);
  try {
    fn();
    // 'warning' is emitted on process.nextTick; a macrotask later all are in.
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
  } finally {
    process.off('warning', on);
  }
  return seen;
}

async function serve(handler: http.RequestListener): Promise<Listening> {
  return listen(http.createServer(handler));
}

describe('serveStatic / serveFile options a serve-static user brings', () => {
  test("maxage (serve-static's spelling) is maxAge, in milliseconds, without a warning", async () => {
    let h!: ReturnType<typeof serveStatic>;
    const w = await warningsOf(() => (h = serveStatic(dir, { maxage: 10_000 } as never)));
    assert.deepEqual(w.map((e) => e.message), []);
    const l = await serve(h);
    try {
      const r = await request(l.target, { path: '/app.js' });
      assert.equal(r.status, 200);
      assert.equal(r.headers['cache-control'], 'public, max-age=10');
    } finally {
      await l.close();
    }
  });

  test("maxAge: a number is ms (3600 -> max-age=3), a duration string is what it says ('1h' -> 3600)", async () => {
    for (const [maxAge, want] of [[3600, 'public, max-age=3'], [3_600_000, 'public, max-age=3600'], ['1h', 'public, max-age=3600'], ['30s', 'public, max-age=30']] as const) {
      const l = await serve(serveStatic(dir, { maxAge }));
      try {
        assert.equal((await request(l.target, { path: '/app.js' })).headers['cache-control'], want, `maxAge ${JSON.stringify(maxAge)}`);
      } finally {
        await l.close();
      }
    }
  });

  test('setHeaders (serve-static) is headers: called with (res, path, stat) and may override defaults', async () => {
    const calls: string[] = [];
    const h = serveStatic(dir, {
      setHeaders: (res: http.ServerResponse, p: string, st: fs.Stats) => {
        calls.push(`${path.basename(p)}:${st.size}`);
        res.setHeader('Cache-Control', 'no-store');
        res.setHeader('X-Set', 'yes');
      },
    } as never);
    const l = await serve(h);
    try {
      const r = await request(l.target, { path: '/app.js' });
      assert.equal(r.headers['x-set'], 'yes');
      assert.equal(r.headers['cache-control'], 'no-store');
      assert.deepEqual(calls, ['app.js:14']);
    } finally {
      await l.close();
    }
  });

  test('an alias and its own name set to different values is an argument error', () => {
    assert.throws(() => serveStatic(dir, { maxAge: 1000, maxage: 2000 } as never), { code: 'ERR_INVALID_ARG_VALUE', message: /maxage.*maxAge/ });
  });

  test('an unknown option gets one ZCOPY_UNKNOWN_OPTION warning naming it and the closest known option', async () => {
    const w = await warningsOf(() => {
      serveStatic(dir, { maxAgee: 5, dotFiles: 'allow' } as never);
      serveStatic(dir, { maxAgee: 5 } as never); // the same option again: no second warning
    });
    assert.deepEqual(
      w.map((e) => e.message),
      ["serveStatic: unknown option 'maxAgee' is ignored (did you mean 'maxAge'?)", "serveStatic: unknown option 'dotFiles' is ignored (did you mean 'dotfiles'?)"],
    );
  });

  test("serve-static options zcopy does not have are named as such (extensions)", async () => {
    const w = await warningsOf(() => serveStatic(dir, { extensions: ['html'] } as never));
    assert.equal(w.length, 1);
    assert.match(w[0]!.message, /^serveStatic: unknown option 'extensions' is ignored \(zcopy does not try file extensions/);
  });

  test('every documented option of serveStatic is known (no warning)', async () => {
    const w = await warningsOf(() =>
      serveStatic(dir, {
        maxAge: '1h', immutable: true, cacheControl: true, etag: true, lastModified: true, acceptRanges: true, maxRanges: 10, sendfileThreshold: 0,
        mechanism: 'auto', sendTimeout: '30s', headers: () => {}, dotfiles: 'ignore', index: 'index.html', redirect: true, precompressed: false,
        followSymlinks: false, fallthrough: true, listing: false, listingLimit: 10, openFileCache: false,
      }),
    );
    assert.deepEqual(w, []);
  });

  test('serveFile: maxage and setHeaders accepted, an unknown option warned once', async () => {
    const file = path.join(dir, 'app.js');
    const l = await serve((req, res) => {
      void serveFile(req, res, file, { maxage: '2m', setHeaders: (r: http.ServerResponse) => r.setHeader('X-F', '1'), lastModifed: false } as never);
    });
    try {
      const results = await withTimeout(
        (async () => {
          const seen: Array<Error & { code?: string }> = [];
          const on = (w: Error & { code?: string }): void => void (w.code === 'ZCOPY_UNKNOWN_OPTION' && seen.push(w));
          process.on('warning', on);
          try {
            const a = await request(l.target, { path: '/' });
            const b = await request(l.target, { path: '/' });
            await new Promise((r) => setImmediate(r));
            return { a, b, seen };
          } finally {
            process.off('warning', on);
          }
        })(),
        10_000,
        'requests',
      );
      assert.equal(results.a.headers['cache-control'], 'public, max-age=120');
      assert.equal(results.a.headers['x-f'], '1');
      assert.ok(results.a.headers['last-modified'], 'the misspelt lastModifed is ignored');
      assert.deepEqual(results.seen.map((e) => e.message), ["serveFile: unknown option 'lastModifed' is ignored (did you mean 'lastModified'?)"]);
      assert.equal(results.b.status, 200);
    } finally {
      await l.close();
    }
  });
});

describe('a mounted directory requested without its trailing slash', () => {
  /** Express with zcopy's and serve-static's handler mounted side by side on the same folder. */
  async function expressApp(): Promise<Listening> {
    const app = express();
    app.use('/assets', serveStatic(dir));
    app.use('/ref', expressStatic(dir));
    app.use((_req, res) => void res.status(404).send('express 404'));
    return listen(http.createServer(app));
  }

  test('Express: GET /assets -> 301 /assets/ (query kept), exactly as serve-static answers /ref', async () => {
    const l = await expressApp();
    try {
      for (const [mine, ref] of [['/assets', '/ref'], ['/assets?v=2', '/ref?v=2'], ['/assets/sub', '/ref/sub'], ['/assets/sub?x=1&y=2', '/ref/sub?x=1&y=2']]) {
        const a = await request(l.target, { path: mine! });
        const b = await request(l.target, { path: ref! });
        assert.equal(a.status, 301, mine);
        assert.equal(b.status, 301, ref);
        assert.equal(a.headers.location, b.headers.location!.replace('/ref', '/assets'), mine);
      }
      assert.equal((await request(l.target, { path: '/assets' })).headers.location, '/assets/');
      assert.equal((await request(l.target, { path: '/assets?v=2' })).headers.location, '/assets/?v=2');
      // With the slash: the index page, as before.
      const idx = await request(l.target, { path: '/assets/' });
      assert.equal(idx.status, 200);
      assert.equal(idx.body.toString(), '<a href="app.js">app</a>');
      assert.equal((await request(l.target, { path: '/assets/app.js' })).body.toString(), 'console.log(1)');
    } finally {
      await l.close();
    }
  });

  test('Express with redirect: false: GET /assets falls through (404 from Express), like serve-static', async () => {
    const app = express();
    app.use('/assets', serveStatic(dir, { redirect: false }));
    app.use((_req, res) => void res.status(404).send('express 404'));
    const l = await listen(http.createServer(app));
    try {
      const r = await request(l.target, { path: '/assets' });
      assert.equal(r.status, 404);
      assert.equal(r.body.toString(), 'express 404');
    } finally {
      await l.close();
    }
  });

  test('node:http: a directory without its slash is redirected, the root is served, no redirect loop', async () => {
    const l = await serve(serveStatic(dir));
    try {
      const root = await request(l.target, { path: '/' });
      assert.equal(root.status, 200);
      assert.equal(root.body.toString(), '<a href="app.js">app</a>');
      const sub = await request(l.target, { path: '/sub?x=1' });
      assert.equal(sub.status, 301);
      assert.equal(sub.headers.location, '/sub/?x=1');
      assert.equal((await request(l.target, { path: '/sub/' })).body.toString(), 'sub index');
    } finally {
      await l.close();
    }
  });

  test('node:http with a hand-made mount (req.url stripped, req.originalUrl kept, as Connect does)', async () => {
    const h = serveStatic(dir);
    const l = await serve((req, res) => {
      const original = req.url ?? '/';
      if (!original.startsWith('/m')) return void res.writeHead(404).end();
      const rest = original.slice(2);
      (req as { originalUrl?: string }).originalUrl = original;
      req.url = rest.startsWith('/') ? rest : '/' + rest;
      void h(req, res);
    });
    try {
      const r = await request(l.target, { path: '/m?q=1' });
      assert.equal(r.status, 301);
      assert.equal(r.headers.location, '/m/?q=1');
      const ok = await request(l.target, { path: '/m/' });
      assert.equal(ok.status, 200);
      assert.equal(ok.body.toString(), '<a href="app.js">app</a>');
    } finally {
      await l.close();
    }
  });
});

describe('the 404 of a directory without an index file', () => {
  test('library default: a bare 404; directoryHint adds its sentence (escaped), only for that case', async () => {
    const bare = fs.mkdtempSync(path.join(dir, 'noindex-'));
    fs.writeFileSync(path.join(bare, 'f.txt'), 'f');
    const plain = await serve(serveStatic(bare));
    try {
      const r = await request(plain.target, { path: '/' });
      assert.equal(r.status, 404);
      assert.doesNotMatch(r.body.toString(), /<p>/);
    } finally {
      await plain.close();
    }
    const hinted = await serve(serveStatic(bare, { directoryHint: 'use <--list>' }));
    try {
      const r = await request(hinted.target, { path: '/' });
      assert.equal(r.status, 404);
      assert.match(r.body.toString(), /<p>use &lt;--list&gt;<\/p>/);
      const miss = await request(hinted.target, { path: '/nope' });
      assert.equal(miss.status, 404);
      assert.doesNotMatch(miss.body.toString(), /--list/);
      assert.equal((await request(hinted.target, { path: '/f.txt' })).status, 200);
    } finally {
      await hinted.close();
    }
    assert.throws(() => serveStatic(bare, { directoryHint: 5 as never }), { code: 'ERR_INVALID_ARG_TYPE' });
  });
});
