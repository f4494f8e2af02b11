// Path security: thousands of hostile request paths (fixed seed) against a
// real server over raw sockets. None may serve a byte from outside the root,
// a hidden file, or a symlink target outside the root; none may crash the
// server (5xx) or redirect off-site.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { resolveRequestPath, serveStatic } from '../src/http/index.js';
import { tmpDir, withTimeout } from './helpers.js';
import { listen, type Listening } from './http-helpers.js';

const base = tmpDir('zcopy-sec-');
const root = path.join(base, 'www', 'root');
const SECRET = `OUTSIDE-SECRET-${process.pid}`;
const HIDDEN = `HIDDEN-SECRET-${process.pid}`;
const PUBLIC = new Map<string, string>();
let l: Listening;
let listed: Listening;

/** xorshift32: the same hostile paths on every run. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
}

const FRAGMENTS = [
  '..', '.', '...', '....', '%2e%2e', '%2E%2E', '%2e.', '.%2e', '%2e', '..%2f', '%2f..', '..%2F', '..%5c', '%5c..', '%5C',
  '..\\', '\\..', '\\', '%252e%252e', '%252f', '%255c', '%25', '%2500', '%00', '.%00.', '%c0%ae%c0%ae', '%c0%af',
  '%e0%80%ae', '%u002e', '%uff0e', '..;', ';/..', ';', '//', '/', '%2f', '%2F', '%09', '%0d%0a', '%20', '~', '%7e',
  'a.txt', 'sub', 'index.html', 'secret.txt', 'www', 'root', 'etc', 'passwd', 'link-out.txt', 'dir-out', 'link-in.txt',
  '.hidden', '.git', 'config', '%2ehidden', '%', '%%', '%zz', '%2', '%C3%BC', '%ff', '*', ':', 'C:', 'file:', '?x=..',
  '#..', '&', '=', '@', '%40', '+', '%2B', '..%00', '.%2e%2f', '%2e%2e%5c',
  // Symlinks to hidden things and to `<root> (deleted)` (issue 8 items 13, 14).
  'link-hidden', 'git-link', 'link-deleted', 'root%20(deleted)',
];
const SEPARATORS = ['/', '/', '/', '', '%2f', '\\', '%5c', '//', '/./'];

function hostilePaths(n: number, seed: number): string[] {
  const r = rng(seed);
  const pick = <T>(a: T[]): T => a[Math.floor(r() * a.length)]!;
  const out = new Set<string>();
  // Classics first.
  for (const p of [
    '/../secret.txt', '/..%2fsecret.txt', '/%2e%2e/secret.txt', '/%2e%2e%2fsecret.txt', '/..%5csecret.txt', '/%252e%252e/secret.txt',
    '/....//....//secret.txt', '/..\\..\\secret.txt', '/sub/../../secret.txt', '/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
    '/../../../../../../../../etc/passwd', '/link-out.txt', '/dir-out/secret.txt', '/dir-out/www/root/.hidden', '/.hidden',
    '/%2ehidden', '/sub/%2e%2e/.hidden', '/a.txt%00.png', '/a.txt%2500', '//../secret.txt', '/%c0%ae%c0%ae/secret.txt',
    '/link-hidden', '/git-link/config', '/link-deleted', '/sub/git-link/config', '/sub/git-link/',
  ]) {
    out.add(p);
  }
  while (out.size < n) {
    let p = '';
    const k = 1 + Math.floor(r() * 8);
    for (let i = 0; i < k; i++) p += pick(SEPARATORS) + pick(FRAGMENTS);
    if (r() < 0.2) p += '/';
    out.add(p.startsWith('/') ? p : '/' + p);
  }
  return [...out];
}

/** One request per connection (Connection: close): survives parser-level rejections. */
function fetchRaw(target: string, server: Listening = l): Promise<{ head: string; status: number; body: Buffer; raw: Buffer }> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const sock = server.connect();
      const chunks: Buffer[] = [];
      sock.on('data', (d: Buffer) => chunks.push(d));
      sock.on('error', reject);
      sock.on('close', () => {
        const raw = Buffer.concat(chunks);
        const end = raw.indexOf('\r\n\r\n');
        const head = raw.subarray(0, end < 0 ? raw.length : end).toString('latin1');
        resolve({ head, status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), body: end < 0 ? Buffer.alloc(0) : raw.subarray(end + 4), raw });
      });
      sock.write(`GET ${target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    }),
    10_000,
    `GET ${target}`,
  );
}

before(async () => {
  fs.mkdirSync(path.join(root, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(base, 'secret.txt'), SECRET);
  fs.writeFileSync(path.join(base, 'www', 'secret.txt'), SECRET);
  for (const [name, body] of [
    ['a.txt', 'PUBLIC-A'],
    ['sub/index.html', 'PUBLIC-SUB-INDEX'],
    ['index.html', 'PUBLIC-ROOT-INDEX'],
    ['sub/secret.txt', 'PUBLIC-NOT-SO-SECRET'],
  ] as const) {
    fs.writeFileSync(path.join(root, name), body);
    PUBLIC.set(body, name);
  }
  fs.writeFileSync(path.join(root, '.hidden'), HIDDEN);
  fs.mkdirSync(path.join(root, '.git'));
  fs.writeFileSync(path.join(root, '.git', 'config'), HIDDEN);
  fs.symlinkSync(path.join(base, 'secret.txt'), path.join(root, 'link-out.txt'));
  fs.symlinkSync(base, path.join(root, 'dir-out'));
  fs.symlinkSync(path.join(root, 'a.txt'), path.join(root, 'link-in.txt'));
  // Issue 8 item 14: symlinks to a dotfile and into a hidden directory.
  fs.symlinkSync('.hidden', path.join(root, 'link-hidden'));
  fs.symlinkSync('.git', path.join(root, 'git-link'));
  fs.symlinkSync('../.git', path.join(root, 'sub', 'git-link'));
  // Issue 8 item 13: a file whose real path is exactly `<root> (deleted)`.
  fs.writeFileSync(`${root} (deleted)`, SECRET);
  fs.symlinkSync(`${root} (deleted)`, path.join(root, 'link-deleted'));
  l = await listen(http.createServer(serveStatic(root)));
  listed = await listen(http.createServer(serveStatic(root, { listing: true, index: false })));
});

after(async () => {
  await l.close();
  await listed.close();
  fs.rmSync(base, { recursive: true, force: true });
});

describe('hostile paths', () => {
  it('resolveRequestPath: 20000 paths, every accepted one stays inside the root', () => {
    let accepted = 0;
    for (const p of hostilePaths(20_000, 0x5eed)) {
      const r = resolveRequestPath(p);
      if (!r.ok) {
        assert.ok(r.status === 400 || r.status === 403, p);
        continue;
      }
      accepted++;
      for (const s of r.segments) {
        assert.ok(s !== '..' && s !== '.' && s !== '' && !s.includes('/') && !s.includes('\\') && !s.includes('\0'), `${p} -> ${JSON.stringify(r.segments)}`);
      }
      const full = path.resolve(root, ...r.segments);
      assert.ok(full === root || full.startsWith(root + path.sep), `${p} escapes to ${full}`);
    }
    assert.ok(accepted > 1000, `a fair share of paths is well-formed (${accepted})`);
  });

  it('3000 paths over HTTP: nothing outside the root, nothing hidden, no 5xx, no off-site redirect', async () => {
    const paths = hostilePaths(3000, 0xc0ffee);
    const statuses = new Map<number, number>();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < paths.length) {
        const p = paths[next++]!;
        const r = await fetchRaw(p);
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        const text = r.raw.toString('latin1');
        assert.ok(!text.includes(SECRET), `${p} leaked a file outside the root`);
        assert.ok(!text.includes(HIDDEN), `${p} leaked a hidden file`);
        assert.ok(!text.includes('root:x:0:'), `${p} leaked /etc/passwd`);
        assert.ok([200, 301, 400, 403, 404].includes(r.status), `${p} -> ${r.status}`);
        if (r.status === 200) assert.ok(PUBLIC.has(r.body.toString()), `${p} served something unexpected: ${r.body.subarray(0, 40).toString()}`);
        if (r.status === 301) {
          const loc = /\r\nLocation: ([^\r]*)/i.exec(r.head)?.[1] ?? '';
          assert.match(loc, /^\/(?![/\\])/, `${p} redirects off-site: ${loc}`);
        }
        if ([400, 403, 404].includes(r.status) && r.body.length > 0) {
          // Our error pages are fixed text: nothing from the request in them.
          const text = { 400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found' }[r.status as 400 | 403 | 404];
          assert.ok(r.body.toString().includes(`<pre>${text}</pre>`) && r.body.length < 200, `${p}: unexpected error page`);
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    const counted = [...statuses.values()].reduce((a, b) => a + b, 0);
    assert.equal(counted, paths.length);
    assert.ok((statuses.get(200) ?? 0) > 0, 'some legitimate paths were served');
    assert.ok((statuses.get(400) ?? 0) + (statuses.get(403) ?? 0) > 0, 'traversal attempts were refused');
  });

  it('1000 paths with listings on: no listing names what would be refused', async () => {
    // Names that may only appear in a listing if they would be served.
    const REFUSED = ['link-out.txt', 'dir-out', 'link-hidden', 'git-link', 'link-deleted', '.hidden', '.git'];
    const paths = hostilePaths(1000, 0x11571);
    let listings = 0;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < paths.length) {
        const p = paths[next++]!;
        const r = await fetchRaw(p, listed);
        assert.ok([200, 301, 400, 403, 404].includes(r.status), `${p} -> ${r.status}`);
        const text = r.raw.toString('latin1');
        assert.ok(!text.includes(SECRET) && !text.includes(HIDDEN), `${p} leaked`);
        if (r.status === 200 && r.body.includes('<title>Index of ')) {
          listings++;
          for (const name of REFUSED) assert.ok(!r.body.includes(`>${name}`), `${p}: the listing names ${name}`);
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    assert.ok(listings > 0, 'some listings were rendered');
  });
});
