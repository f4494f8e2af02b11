// Filesystem races and symlinks under serveStatic (issue 8 items 13-16):
// the " (deleted)" suffix of /proc links, dotfiles reached through symlinks,
// directory listings (read through the checked fd, entries lstat'ed, what
// would be refused not described, bounded cost), and a root that is a
// symlink switched by a deploy.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { serveStatic, type ServeStaticOptions } from '../src/http/index.js';
import { realPathOf } from '../src/http/open.js';
import { StaticRoot } from '../src/http/serve-static.js';
import { settledFds, tmpDir, withTimeout } from './helpers.js';
import { listen, request, type Listening } from './http-helpers.js';

const base = fs.realpathSync(tmpDir('zcopy-fss-'));
const SECRET = `OUTSIDE-SECRET-${process.pid}`;
const HIDDEN = `HIDDEN-SECRET-${process.pid}`;
const servers: Listening[] = [];

async function serve(root: string, options?: ServeStaticOptions): Promise<Listening> {
  const l = await listen(http.createServer(serveStatic(root, options)));
  servers.push(l);
  return l;
}

async function get(l: Listening, p: string, headers?: Record<string, string>): Promise<{ status: number; text: string; headers: http.IncomingHttpHeaders }> {
  const r = await request(l.target, { path: p, headers });
  return { status: r.status, text: r.body.toString('latin1'), headers: r.headers };
}

function write(p: string, body: string | Buffer): void {
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, body);
}

after(async () => {
  for (const l of servers) await l.close();
  fs.rmSync(base, { recursive: true, force: true });
});

describe('item 13: " (deleted)" in /proc/self/fd links', () => {
  const root = path.join(base, 'd13', 'www');
  const root2 = path.join(base, 'd13', 'site');
  let l: Listening;
  let l2: Listening;
  before(async () => {
    fs.mkdirSync(root, { recursive: true });
    write(path.join(root, 'a.txt'), 'PUBLIC-A');
    // A file whose real path is exactly `<root> (deleted)`, and a directory
    // `<root2> (deleted)`: stripping the suffix blindly made both "inside".
    write(`${root} (deleted)`, SECRET);
    fs.symlinkSync(`${root} (deleted)`, path.join(root, 'evil'));
    fs.mkdirSync(root2);
    write(path.join(`${root2} (deleted)`, 'secret-name.txt'), SECRET);
    fs.symlinkSync(`${root2} (deleted)`, path.join(root2, 'evildir'));
    // A file inside the root really named "... (deleted)" is served.
    write(path.join(root, 'note (deleted)'), 'PUBLIC-NOTE');
    l = await serve(root, { listing: true });
    l2 = await serve(root2, { listing: true });
  });

  it('a symlink to the file `<root> (deleted)` is refused', async () => {
    const r = await get(l, '/evil');
    assert.equal(r.status, 403);
    assert.ok(!r.text.includes(SECRET));
  });

  it('a symlink to the directory `<root> (deleted)` is not listed', async () => {
    const r = await get(l2, '/evildir/');
    assert.equal(r.status, 403);
    assert.ok(!r.text.includes('secret-name.txt'));
    assert.equal((await get(l2, '/evildir/secret-name.txt')).status, 403);
  });

  it('a file inside the root literally named "x (deleted)" is served', async () => {
    const r = await get(l, '/note%20(deleted)');
    assert.equal(r.status, 200);
    assert.equal(r.text, 'PUBLIC-NOTE');
  });

  it('realPathOf: an unlinked file keeps its path; an unlinked name with another hard link is not proven', async () => {
    const p = path.join(root, 'gone.txt');
    write(p, 'x');
    const fd = fs.openSync(p, 'r');
    try {
      fs.unlinkSync(p);
      assert.equal(await realPathOf(fd, p, fs.fstatSync(fd)), p);
    } finally {
      fs.closeSync(fd);
    }
    const q = path.join(root, 'linked.txt');
    write(q, 'y');
    fs.linkSync(q, path.join(root, 'other-link.txt'));
    const fd2 = fs.openSync(q, 'r');
    try {
      fs.unlinkSync(q);
      const st = fs.fstatSync(fd2);
      assert.equal(st.nlink, 1);
      if (process.platform === 'linux') assert.equal(await realPathOf(fd2, q, st), undefined);
    } finally {
      fs.closeSync(fd2);
    }
  });
});

describe('item 14: dotfiles reached through symlinks', () => {
  const root = path.join(base, 'd14', 'www');
  const out = path.join(base, 'd14', 'outside');
  let ignore: Listening;
  let deny: Listening;
  let allow: Listening;
  let follow: Listening;
  before(async () => {
    write(path.join(root, '.env'), HIDDEN);
    write(path.join(root, '.git', 'config'), HIDDEN);
    write(path.join(root, '.p.gz'), HIDDEN);
    write(path.join(root, 'p.txt'), 'PUBLIC-P');
    write(path.join(root, 'a.txt'), 'PUBLIC-A');
    write(path.join(out, '.outside-dot'), HIDDEN);
    write(path.join(out, 'plain.txt'), 'OUTSIDE-PLAIN');
    fs.symlinkSync('.env', path.join(root, 'env-link'));
    fs.symlinkSync('.git', path.join(root, 'git-link'));
    fs.symlinkSync('.p.gz', path.join(root, 'p.txt.gz'));
    fs.mkdirSync(path.join(root, 'idx'));
    fs.symlinkSync('../.env', path.join(root, 'idx', 'index.html'));
    fs.symlinkSync(path.join(out, '.outside-dot'), path.join(root, 'out-dot'));
    fs.symlinkSync(path.join(out, 'plain.txt'), path.join(root, 'out-plain'));
    fs.symlinkSync('a.txt', path.join(root, 'a-link'));
    ignore = await serve(root, { listing: true, precompressed: true });
    deny = await serve(root, { dotfiles: 'deny', listing: true });
    allow = await serve(root, { dotfiles: 'allow', listing: true });
    follow = await serve(root, { followSymlinks: true, listing: true });
  });

  it("ignore: 404 for a symlink to a dotfile, into a hidden directory, as index file or precompressed variant", async () => {
    for (const p of ['/env-link', '/git-link/config', '/git-link/']) {
      const r = await get(ignore, p);
      assert.equal(r.status, 404, p);
      assert.ok(!r.text.includes(HIDDEN), p);
    }
    const idx = await get(ignore, '/idx/');
    assert.ok(!idx.text.includes(HIDDEN), 'index.html -> ../.env not served');
    assert.ok(!idx.text.includes('index.html'), 'nor listed');
    const p = await get(ignore, '/p.txt', { 'accept-encoding': 'gzip' });
    assert.equal(p.status, 200);
    assert.equal(p.text, 'PUBLIC-P');
    assert.equal(p.headers['content-encoding'], undefined);
    assert.equal((await get(ignore, '/a-link')).text, 'PUBLIC-A', 'a symlink to a plain file still works');
  });

  it('deny: 403 for the same', async () => {
    for (const p of ['/env-link', '/git-link/config']) {
      const r = await get(deny, p);
      assert.equal(r.status, 403, p);
      assert.ok(!r.text.includes(HIDDEN), p);
    }
  });

  it('allow: served', async () => {
    assert.equal((await get(allow, '/env-link')).text, HIDDEN);
    assert.equal((await get(allow, '/git-link/config')).text, HIDDEN);
  });

  it('followSymlinks: a target outside the root named like a dotfile is hidden; others are followed', async () => {
    const r = await get(follow, '/out-dot');
    assert.equal(r.status, 404);
    assert.ok(!r.text.includes(HIDDEN));
    assert.equal((await get(follow, '/env-link')).status, 404);
    assert.equal((await get(follow, '/out-plain')).text, 'OUTSIDE-PLAIN');
  });

  it('listings do not name symlinks to hidden files (unless allowed)', async () => {
    const r = await get(ignore, '/');
    assert.equal(r.status, 200);
    for (const name of ['env-link', 'git-link', 'p.txt.gz', 'out-dot', 'out-plain', '.env']) assert.ok(!r.text.includes(`>${name}`), name);
    assert.ok(r.text.includes('>a-link<'));
    const a = await get(allow, '/');
    for (const name of ['env-link', 'git-link/', '.env']) assert.ok(a.text.includes(`>${name}`), name);
    assert.ok(!a.text.includes('>out-dot'), 'outside the root: never described without followSymlinks');
  });
});

describe('item 15: directory listings', () => {
  const root = path.join(base, 'd15', 'www');
  const out = path.join(base, 'd15', 'outside');
  let l: Listening;
  before(async () => {
    write(path.join(root, 'list', 'a.txt'), 'PUBLIC-A');
    write(path.join(out, 'outside-name-1.bin'), Buffer.alloc(777_777));
    fs.utimesSync(path.join(out, 'outside-name-1.bin'), new Date('2001-02-03T04:05:00Z'), new Date('2001-02-03T04:05:00Z'));
    fs.symlinkSync(path.join(out, 'outside-name-1.bin'), path.join(root, 'list', 'out-link'));
    fs.symlinkSync(out, path.join(root, 'list', 'out-dir'));
    fs.symlinkSync('a.txt', path.join(root, 'list', 'in-link'));
    fs.symlinkSync('nowhere', path.join(root, 'list', 'dangling'));
    write(path.join(root, 'swap', 'inside-only.txt'), 'PUBLIC-SWAP');
    l = await serve(root, { listing: true });
  });

  it('symlinks leaving the root are not described (no name, size or time); inside ones are', async () => {
    const r = await get(l, '/list/');
    assert.equal(r.status, 200);
    assert.ok(r.text.includes('>a.txt<') && r.text.includes('>in-link<'), r.text);
    for (const s of ['out-link', 'out-dir', 'dangling', '759.5 KiB', '2001-02-03', 'outside-name']) assert.ok(!r.text.includes(s), s);
  });

  it('reads the checked directory, not its path again: a directory swapped for a symlink after the check', async () => {
    const s = new StaticRoot(root, { listing: true });
    const fdsBefore = await settledFds();
    const server = http.createServer(async (req, res) => {
      const lk = await s.lookup(req, req.url!, req.url!);
      // The race, made deterministic: between the check and the read, the
      // checked directory moves away and a symlink to the outside takes its name.
      fs.renameSync(path.join(root, 'swap'), path.join(root, 'swap.aside'));
      fs.symlinkSync(out, path.join(root, 'swap'));
      try {
        await s.respond(req, res, lk);
      } finally {
        fs.unlinkSync(path.join(root, 'swap'));
        fs.renameSync(path.join(root, 'swap.aside'), path.join(root, 'swap'));
      }
    });
    const l2 = await listen(server);
    servers.push(l2);
    const r = await get(l2, '/swap/');
    assert.equal(r.status, 200);
    assert.ok(!r.text.includes('outside-name'), 'listed the outside directory');
    assert.ok(r.text.includes('inside-only.txt'), r.text);
    await l2.close();
    servers.pop();
    assert.equal(await settledFds(), fdsBefore, 'the directory fd is closed');
  });

  it('a directory swapped for a symlink by another process, 1200 requests: never an outside listing', async () => {
    const flip = path.join(root, 'flip');
    write(path.join(flip, 'inside-only.txt'), 'PUBLIC-FLIP');
    // The swapper runs in its own process, so the swap really races the
    // server's open -> read window (bounded: at most 200,000 swaps).
    const code = `
      const fs = require('node:fs');
      const [d, out] = process.argv.slice(1);
      let stop = false, i = 0;
      process.stdin.on('end', () => { stop = true; }).resume();
      process.stdout.write('ready\\n');
      (function step() {
        for (let k = 0; k < 20 && i < 200000; k++, i++) {
          fs.renameSync(d, d + '.aside'); fs.symlinkSync(out, d);
          fs.unlinkSync(d); fs.renameSync(d + '.aside', d);
        }
        if (!stop && i < 200000) setImmediate(step); else process.exit(0);
      })();`;
    const child = spawn(process.execPath, ['-e', code, flip, out], { stdio: ['pipe', 'pipe', 'inherit'] });
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    await withTimeout(new Promise((r) => child.stdout.once('data', r)), 10_000, 'swapper ready');
    const statuses = new Map<number, number>();
    let leaks = 0;
    let next = 0;
    const N = 1200;
    try {
      const worker = async (): Promise<void> => {
        while (next < N) {
          const i = next++;
          const r = await get(l, i % 2 === 0 ? '/flip/' : '/flip/inside-only.txt');
          statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
          if (r.text.includes('outside-name') || (r.status === 200 && i % 2 === 1 && r.text !== 'PUBLIC-FLIP')) leaks++;
        }
      };
      await Promise.all(Array.from({ length: 8 }, worker));
    } finally {
      child.stdin.end();
      await withTimeout(exited, 10_000, 'swapper exit');
    }
    console.log(`# flip race: ${JSON.stringify(Object.fromEntries(statuses))}, outside listings: ${leaks}`);
    assert.equal(leaks, 0, 'an outside directory was listed');
    assert.deepEqual([...statuses.keys()].filter((c) => ![200, 403, 404].includes(c)), [], 'only 200, 403 or 404');
    assert.ok((statuses.get(200) ?? 0) > 0, 'some requests got the inside directory');
  });

  it('a 30,000-entry directory: at most listingLimit entries, a note, bounded CPU per listing', async () => {
    const big = path.join(root, 'big');
    fs.mkdirSync(big);
    for (let i = 0; i < 30_000; i++) fs.closeSync(fs.openSync(path.join(big, `f${String(i).padStart(5, '0')}.txt`), 'w'));
    const capped = await serve(root, { listing: true });
    const old = await serve(root, { listing: true, listingLimit: 10_000 });
    const cpu = async (srv: Listening): Promise<{ ms: number; rows: number; note: boolean }> => {
      const times: number[] = [];
      let rows = 0;
      let note = false;
      for (let k = 0; k < 3; k++) {
        const c0 = process.cpuUsage();
        const r = await get(srv, '/big/');
        const c = process.cpuUsage(c0);
        times.push((c.user + c.system) / 1000);
        assert.equal(r.status, 200);
        rows = r.text.split('<a href="./f').length - 1;
        note = /more entries are not listed: a listing reads at most \d+ entries/.test(r.text);
      }
      times.sort((a, b) => a - b);
      return { ms: times[1]!, rows, note };
    };
    const fdsBefore = await settledFds();
    const before10k = await cpu(old);
    const after1k = await cpu(capped);
    console.log(`# listing a 30,000-entry directory, CPU per listing (median of 3, whole process): listingLimit 10000 (the old cap): ${before10k.ms.toFixed(1)} ms; default listingLimit 1000: ${after1k.ms.toFixed(1)} ms`);
    assert.equal(after1k.rows, 1000);
    assert.ok(after1k.note);
    assert.equal(before10k.rows, 10_000);
    assert.ok(after1k.ms < before10k.ms, 'the cap costs less CPU');
    assert.equal(await settledFds(), fdsBefore, 'no fd left behind');
  });

  it('hidden names are skipped, but not scanned without bound', async () => {
    const hid = path.join(root, 'hid');
    fs.mkdirSync(hid);
    for (let i = 0; i < 5000; i++) fs.closeSync(fs.openSync(path.join(hid, `.h${i}`), 'w'));
    const small = await serve(root, { listing: true, listingLimit: 10 });
    const r = await get(small, '/hid/');
    assert.equal(r.status, 200);
    assert.ok(!r.text.includes('.h'), 'hidden names not shown');
    assert.match(r.text, /more entries are not listed/, 'stopped after max(4 x limit, 4096) names');
    const all = await serve(root, { listing: true, listingLimit: 10, dotfiles: 'allow' });
    assert.equal((await get(all, '/hid/')).text.split('<a href="./.h').length - 1, 10);
  });

  it('listingLimit is validated', () => {
    for (const bad of [0, -1, 1.5, Number.NaN, '10']) {
      assert.throws(() => serveStatic(root, { listingLimit: bad as number }), { code: /ERR_INVALID_ARG_(VALUE|TYPE)/ }, String(bad));
    }
  });
});

describe('item 16: a root that is a symlink switched by a deploy', () => {
  const dep = path.join(base, 'd16');
  const current = path.join(dep, 'current');
  let l: Listening;
  const switchTo = (rel: string): void => {
    // Atomic, as deploy tools do it: a new symlink renamed over the old one.
    fs.symlinkSync(rel, current + '.tmp');
    fs.renameSync(current + '.tmp', current);
  };
  before(async () => {
    write(path.join(dep, 'releases', 'v1', 'a.txt'), 'V1');
    write(path.join(dep, 'releases', 'v1', 'only-v1.txt'), 'ONLY-V1');
    write(path.join(dep, 'releases', 'v2', 'a.txt'), 'V2');
    write(path.join(dep, 'releases', 'v2', 'sub', 'index.html'), 'V2-SUB');
    fs.symlinkSync('../v1/only-v1.txt', path.join(dep, 'releases', 'v2', 'old.txt'));
    write(path.join(dep, 'secret.txt'), SECRET);
    fs.symlinkSync('../../secret.txt', path.join(dep, 'releases', 'v2', 'leak.txt'));
    fs.symlinkSync('releases/v1', current);
    l = await serve(current, { listing: true });
  });

  it('serves the new release at once after the switch, and the old one after switching back', async () => {
    assert.equal((await get(l, '/a.txt')).text, 'V1');
    switchTo('releases/v2');
    const r = await get(l, '/a.txt');
    assert.equal(r.status, 200, 'was 403 until restart');
    assert.equal(r.text, 'V2');
    assert.equal((await get(l, '/sub/')).text, 'V2-SUB');
    assert.ok((await get(l, '/')).text.includes('>sub/<'));
    switchTo('releases/v1');
    assert.equal((await get(l, '/a.txt')).text, 'V1');
    assert.equal((await get(l, '/only-v1.txt')).text, 'ONLY-V1');
  });

  it('never serves outside the current root, not even the first request after the switch', async () => {
    assert.equal((await get(l, '/a.txt')).text, 'V1', 'the cached root is v1');
    switchTo('releases/v2');
    // The old release is outside the current root now; the cached root
    // (v1, resolved a moment ago) must not make it look inside.
    const old = await get(l, '/old.txt');
    assert.equal(old.status, 403);
    assert.ok(!old.text.includes('ONLY-V1'));
    assert.equal((await get(l, '/a.txt')).text, 'V2');
    const leak = await get(l, '/leak.txt');
    assert.equal(leak.status, 403);
    assert.ok(!leak.text.includes(SECRET));
    assert.equal((await get(l, '/only-v1.txt')).status, 404);
  });
});
