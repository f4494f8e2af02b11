// `zcopy serve` as a child process: URL on stdout, one log line per request,
// options, Unix socket, graceful shutdown on SIGTERM/SIGINT with a timeout.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { capabilities } from '../src/index.js';
import { makeFile, sha, tmpDir, withTimeout } from './helpers.js';
import { collectResponses, req, request, until } from './http-helpers.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const caps = capabilities();
const root = tmpDir('zcopy-cli-');
let big: { path: string; data: Buffer };
const children: ChildProcess[] = [];

interface Cli {
  child: ChildProcess;
  url: string;
  port: number;
  lines: string[];
  stderr: () => string;
  exited: Promise<number | null>;
}

async function startCli(args: string[], expectUrl = true): Promise<Cli> {
  const child = spawn(process.execPath, [MAIN, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
  children.push(child);
  const lines: string[] = [];
  let err = '';
  let partial = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    partial += d;
    const parts = partial.split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    err += d;
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let url = '';
  if (expectUrl) {
    await withTimeout(
      Promise.race([
        until(() => lines.some((l) => / at (http:\/\/|unix:)/.test(l)), 15_000, 'the serving line'),
        exited.then((c) => {
          throw new Error(`zcopy serve exited ${c}: ${err}`);
        }),
      ]),
      16_000,
      'zcopy serve start',
    );
    url = / at (\S+)/.exec(lines.find((l) => / at (http:\/\/|unix:)/.test(l))!)![1]!;
  }
  const port = url.startsWith('http') ? Number(new URL(url).port) : 0;
  return { child, url, port, lines, stderr: () => err, exited };
}

const logLines = (c: Cli): string[] => c.lines.filter((l) => /^(GET|HEAD|POST|OPTIONS) /.test(l));

before(() => {
  big = makeFile(root, 'big.bin', 32 * 1024 * 1024, 41);
  fs.writeFileSync(path.join(root, 'a.txt'), 'hello cli\n');
  fs.writeFileSync(path.join(root, '.hidden'), 'dot');
  fs.mkdirSync(path.join(root, 'dir'));
  fs.writeFileSync(path.join(root, 'dir', '<i>&"x.txt'), 'z'.repeat(2560));
});

after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  fs.rmSync(root, { recursive: true, force: true });
});

describe('zcopy serve', () => {
  it('--port 0 prints the real URL; one log line per request; SIGINT exits 0', async () => {
    const c = await startCli([root, '--port', '0']);
    assert.match(c.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    assert.ok(c.port > 0);
    const r = await fetch(`${c.url}a.txt`);
    assert.equal(await r.text(), 'hello cli\n');
    assert.equal((await fetch(`${c.url}missing`)).status, 404);
    await until(() => logLines(c).length >= 2, 5000, 'two log lines');
    assert.match(logLines(c)[0]!, /^GET \/a\.txt 200 10 \d+\.\d{2}ms path=buffered$/);
    assert.match(logLines(c)[1]!, /^GET \/missing 404 \d+ \d+\.\d{2}ms path=-$/);
    c.child.kill('SIGINT');
    assert.equal(await withTimeout(c.exited, 10_000, 'exit'), 0);
  });

  it('--socket: serves over a Unix socket, logs zero-copy, removes the socket on SIGTERM', async () => {
    const sock = path.join(os.tmpdir(), `zc-cli-${process.pid}.sock`);
    const c = await startCli([root, '--socket', sock]);
    assert.equal(c.url, `unix:${sock}`);
    const r = await request({ socketPath: sock }, { path: '/big.bin' });
    assert.equal(sha(r.body), sha(big.data));
    await until(() => logLines(c).length >= 1, 5000, 'log line');
    const via = caps.native ? caps.auto.unix : 'portable';
    assert.match(logLines(c)[0]!, new RegExp(`^GET /big\\.bin 200 ${big.data.length} \\d+\\.\\d{2}ms path=${via}$`));
    c.child.kill('SIGTERM');
    assert.equal(await withTimeout(c.exited, 10_000, 'exit'), 0);
    assert.equal(fs.existsSync(sock), false);
  });

  it('first impression: the start lines say the transfer path and why; the log says the path a body took', async () => {
    const c = await startCli([root, '--port', '0']);
    const banner = c.lines.find((l) => /^zcopy serve: (native|portable) path/.test(l));
    assert.ok(banner, `a transfer-path line in ${JSON.stringify(c.lines)}`);
    if (caps.native) {
      assert.match(banner, new RegExp(`^zcopy serve: native path: loopback TCP: ${caps.auto['tcp-loopback']} \\(`));
      if (caps.auto['tcp-loopback'] === 'copy') assert.match(banner, /loopback TCP: copy \(native copy loop: measured ~1\.9x faster than sendfile on loopback/);
      assert.match(banner, /bodies under 256 KiB: one buffered write$/);
    } else {
      assert.match(banner, /^zcopy serve: portable path \(bytes copied through JavaScript, no zero-copy\): /);
    }
    const r = await request({ host: '127.0.0.1', port: c.port }, { path: '/big.bin' });
    assert.equal(sha(r.body), sha(big.data));
    await until(() => logLines(c).length >= 1, 5000, 'log line');
    const via = caps.native ? caps.auto['tcp-loopback'] : 'portable';
    assert.match(logLines(c)[0]!, new RegExp(`^GET /big\\.bin 200 ${big.data.length} \\d+\\.\\d{2}ms path=${via}$`));
    c.child.kill('SIGTERM');
    assert.equal(await withTimeout(c.exited, 10_000, 'exit'), 0);
  });

  it('first impression: GET / of a folder without index.html (listing off) says how to list it; --list lists it', async () => {
    const c = await startCli([root, '--port', '0']);
    const r = await fetch(c.url);
    assert.equal(r.status, 404);
    assert.match(await r.text(), /<p>This directory has no index\.html and listing is off: restart zcopy serve with --list to list directories\.<\/p>/);
    // A missing file gets the bare 404, without the hint.
    const miss = await fetch(`${c.url}missing`);
    assert.equal(miss.status, 404);
    assert.doesNotMatch(await miss.text(), /--list/);
    c.child.kill('SIGTERM');
    assert.equal(await withTimeout(c.exited, 10_000, 'exit'), 0);
    const l = await startCli([root, '--port', '0', '--list']);
    const listed = await fetch(l.url);
    assert.equal(listed.status, 200);
    assert.match(await listed.text(), /a\.txt/);
    l.child.kill('SIGTERM');
    assert.equal(await withTimeout(l.exited, 10_000, 'exit'), 0);
  });

  it('--list --cors --max-age --dotfiles allow', async () => {
    const c = await startCli([root, '--port', '0', '--list', '--cors', '--max-age', '60', '--dotfiles', 'allow']);
    const l = await fetch(`${c.url}dir/`);
    assert.equal(l.status, 200);
    assert.equal(l.headers.get('access-control-allow-origin'), '*');
    const html = await l.text();
    assert.ok(html.includes('&lt;i&gt;&amp;&quot;x.txt'), 'name escaped');
    assert.ok(!html.includes('<i>'), 'no raw markup from names');
    assert.ok(html.includes('2.5 KiB'), 'human size');
    const f = await fetch(`${c.url}a.txt`);
    assert.equal(f.headers.get('cache-control'), 'public, max-age=60');
    assert.equal(f.headers.get('access-control-allow-origin'), '*');
    assert.equal(await (await fetch(`${c.url}.hidden`)).text(), 'dot');
    const pre = await fetch(`${c.url}a.txt`, { method: 'OPTIONS', headers: { Origin: 'http://example.com', 'Access-Control-Request-Method': 'GET' } });
    assert.equal(pre.status, 204);
    assert.match(pre.headers.get('access-control-allow-methods')!, /GET/);
    c.child.kill('SIGTERM');
    assert.equal(await withTimeout(c.exited, 10_000, 'exit'), 0);
  });

  it('--quiet: no request log', async () => {
    const c = await startCli([root, '--port', '0', '--quiet']);
    await (await fetch(`${c.url}a.txt`)).text();
    await (await fetch(`${c.url}missing`)).text();
    c.child.kill('SIGTERM');
    assert.equal(await withTimeout(c.exited, 10_000, 'exit'), 0);
    assert.deepEqual(logLines(c), []);
  });

  it('SIGTERM finishes an in-flight response, then exits 0', async () => {
    const c = await startCli([root, '--port', '0']);
    const sock = net.connect(c.port, '127.0.0.1');
    const col = collectResponses(sock, ['GET'], 1);
    sock.write(req('GET', '/big.bin'));
    await until(() => col.received() > 0, 10_000, 'first bytes');
    sock.pause();
    c.child.kill('SIGTERM');
    await until(() => c.lines.some((l) => l.includes('SIGTERM, finishing in-flight')), 10_000, 'shutdown notice');
    sock.resume();
    const x = await col.done;
    assert.equal(sha(x.responses[0]!.body), sha(big.data));
    assert.equal(await withTimeout(c.exited, 15_000, 'exit'), 0);
    sock.destroy();
  });

  it('--shutdown-timeout bounds the wait for a stalled client', async () => {
    const c = await startCli([root, '--port', '0', '--shutdown-timeout', '300']);
    const sock = net.connect(c.port, '127.0.0.1');
    sock.on('error', () => {});
    let got = 0;
    sock.on('data', (d: Buffer) => {
      got += d.length;
    });
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    sock.write(req('GET', '/big.bin'));
    await until(() => got > 0, 10_000, 'first bytes');
    sock.pause();
    const t0 = Date.now();
    c.child.kill('SIGTERM');
    assert.equal(await withTimeout(c.exited, 10_000, 'exit'), 0);
    assert.ok(Date.now() - t0 >= 250, 'waited for the timeout');
    assert.ok(c.lines.some((l) => l.includes('shutdown timeout')));
    sock.resume();
    await withTimeout(closed, 10_000, 'client connection closed');
    assert.ok(got < big.data.length);
  });

  it('bad arguments: exit 2 for options, 1 for a missing root', async () => {
    const a = await startCli([root, '--dotfiles', 'maybe'], false);
    assert.equal(await withTimeout(a.exited, 10_000, 'exit'), 2);
    assert.match(a.stderr(), /dotfiles/);
    const b = await startCli([path.join(root, 'does-not-exist'), '--port', '0'], false);
    assert.equal(await withTimeout(b.exited, 10_000, 'exit'), 1);
    const h = await startCli(['--help'], false);
    assert.equal(await withTimeout(h.exited, 10_000, 'exit'), 0);
    assert.ok(h.lines.some((l) => l.includes('--socket')));
  });
});
