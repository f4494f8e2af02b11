// createProxy and `zcopy proxy`: bytes both ways, half-close, 1,000
// concurrent connections without an fd leak, resets, timeouts, limits, and
// the CLI. The file runs twice (npm test): with the addon, and with
// ZCOPY_FORCE_FALLBACK=1 (the portable path).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createProxy, stats, resetStats, type ProxyCloseInfo, type ProxyServer } from '../src/index.js';
import { NATIVE, once, seededBytes, sha, withTimeout } from './helpers.js';
import { connect, fdCount, fdsBackTo, listen, readWithStalls, rng, tmp, writeRandom, type Transport } from './splice-helpers.js';

const dir = tmp();
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const MECHS = NATIVE ? (['auto', 'splice', 'copy'] as const) : (['auto'] as const);

type Addr = { port: number } | { path: string };

/** A backend server; `handler` gets each connection (half-open capable). */
async function backend(transport: Transport, handler: (s: net.Socket) => void, backlog = 511): Promise<{ server: net.Server; addr: Addr; sockets: Set<net.Socket> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    handler(s);
  });
  if (transport === 'unix') {
    const addr = await listen(server, 'unix', dir);
    return { server, addr, sockets };
  }
  await new Promise<void>((r) => server.listen({ port: 0, host: '127.0.0.1', backlog }, r));
  return { server, addr: { port: (server.address() as net.AddressInfo).port }, sockets };
}

async function startProxy(transport: Transport, opts: Parameters<typeof createProxy>[0], backlog = 511): Promise<{ proxy: ProxyServer; addr: Addr; closes: ProxyCloseInfo[] }> {
  const proxy = createProxy(opts);
  const closes: ProxyCloseInfo[] = [];
  proxy.on('proxyClose', (i: ProxyCloseInfo) => closes.push(i));
  if (transport === 'unix') return { proxy, addr: await listen(proxy, 'unix', dir), closes };
  await new Promise<void>((r) => proxy.listen({ port: 0, host: '127.0.0.1', backlog }, r));
  return { proxy, addr: { port: (proxy.address() as net.AddressInfo).port }, closes };
}

function limitNoFile(): string {
  const m = /Max open files\s+(\d+|unlimited)/.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
  return m ? m[1]! : '?';
}

/** Resolves once `s` learns its connection is gone: EOF, a reset, or close. */
function gone(s: net.Socket, what = 'client sees the close'): Promise<void> {
  s.on('error', () => {});
  s.resume();
  if (s.readableEnded || s.destroyed) return Promise.resolve();
  return withTimeout(new Promise<void>((r) => (s.once('end', r), s.once('close', r))), 5_000, what);
}

function nextClose(proxy: ProxyServer, ms = 10_000): Promise<ProxyCloseInfo> {
  return once<ProxyCloseInfo>(proxy, 'proxyClose', ms);
}

/** Closes a server after destroying what is still connected (half-open peers never close by themselves). */
function close(server: net.Server & { closeAllConnections?: () => void }, sockets?: Set<net.Socket>): Promise<void> {
  server.closeAllConnections?.();
  for (const s of sockets ?? []) s.destroy();
  return withTimeout(new Promise((r) => server.close(() => r())), 10_000, 'server close');
}

describe(`proxy: bytes (${NATIVE ? 'native' : 'portable'})`, () => {
  for (const transport of ['tcp', 'unix'] as const) {
    for (const mechanism of MECHS) {
      test(`${transport} / ${mechanism}: both directions intact, random writes and reader stalls at both ends`, async () => {
        resetStats();
        const A = seededBytes(5 * 1024 * 1024 + 1, 31);
        const B = seededBytes(4 * 1024 * 1024 + 2, 32);
        const seen: Promise<{ bytes: number; sha: string }>[] = [];
        const be = await backend(transport, (s) => {
          seen.push(readWithStalls(s, rng(41)));
          void writeRandom(s, B, rng(42));
        });
        const { proxy, addr, closes } = await startProxy(transport, { target: be.addr, mechanism });
        try {
          const closing = nextClose(proxy, 60_000);
          const c = connect(addr);
          const got = readWithStalls(c, rng(43));
          await writeRandom(c, A, rng(44));
          const r = await got;
          assert.equal(r.bytes, B.length);
          assert.equal(r.sha, sha(B));
          const atBackend = await withTimeout(seen[0]!, 30_000, 'backend read');
          assert.equal(atBackend.sha, sha(A));
          const info = await closing;
          assert.equal(info.reason, 'done');
          assert.equal(info.up.bytes, A.length);
          assert.equal(info.down.bytes, B.length);
          assert.equal(info.error, undefined);
          if (NATIVE) {
            const want = mechanism === 'copy' ? 'nativeCopy' : mechanism === 'splice' ? 'splice' : info.up.path;
            assert.ok(want === 'splice' || want === 'nativeCopy', `native path, got ${want}`);
            assert.equal(info.up.path, want);
            assert.equal(info.down.path, want);
            assert.equal(stats().bytesByPath[want], A.length + B.length);
            assert.equal(stats().bytesByPath.portable, 0);
          } else {
            assert.equal(info.up.path, 'portable');
            assert.equal(info.up.fallback, 'forced');
            assert.equal(stats().bytesByPath.portable, A.length + B.length);
          }
          assert.equal(closes.length, 1);
        } finally {
          await close(proxy);
          await close(be.server, be.sockets);
        }
      });
    }
  }

  test('half-close: the client ends, the upstream still replies, then both close', async () => {
    const reply = seededBytes(3_000_000, 5);
    const be = await backend('tcp', (s) => {
      const chunks: Buffer[] = [];
      s.on('data', (d: Buffer) => chunks.push(d));
      // Reply only once the request side reached EOF: needs half-close forwarded.
      s.on('end', () => {
        s.write(createHash('sha256').update(Buffer.concat(chunks)).digest());
        s.end(reply);
      });
    });
    const { proxy, addr } = await startProxy('tcp', { target: be.addr });
    try {
      const request = seededBytes(1_000_000, 6);
      const closing = nextClose(proxy);
      const c = connect(addr);
      const chunks: Buffer[] = [];
      c.on('data', (d: Buffer) => chunks.push(d));
      c.end(request);
      await withTimeout(once(c, 'end'), 10_000, 'reply EOF');
      const all = Buffer.concat(chunks);
      assert.ok(all.subarray(0, 32).equals(createHash('sha256').update(request).digest()), 'upstream saw the whole request');
      assert.ok(all.subarray(32).equals(reply), 'the reply came back after the half-close');
      const info = await closing;
      assert.equal(info.reason, 'done');
      assert.equal(info.up.bytes, request.length);
      assert.equal(info.down.bytes, reply.length + 32);
      await gone(c);
    } finally {
      await close(proxy);
      await close(be.server, be.sockets);
    }
  });

  test('a target function and a Unix socket target', async () => {
    const be = await backend('unix', (s) => s.pipe(s));
    let asked = 0;
    const { proxy, addr } = await startProxy('tcp', {
      target: async (sock) => {
        asked++;
        assert.ok(sock instanceof net.Socket);
        return be.addr;
      },
    });
    try {
      const closing = nextClose(proxy);
      const c = connect(addr);
      const data = seededBytes(500_000, 7);
      const got = readWithStalls(c, rng(1));
      c.end(data);
      assert.equal((await got).sha, sha(data));
      const info = await closing;
      assert.equal(asked, 1);
      assert.equal(info.target, (be.addr as { path: string }).path);
    } finally {
      await close(proxy);
      await close(be.server, be.sockets);
    }
  });
});

describe(`proxy: scale and resources (${NATIVE ? 'native' : 'portable'})`, () => {
  test('1,000 concurrent connections through the proxy, every byte checked, no fd leak', async (t) => {
    const N = 1000;
    // Natively each connection holds 5 fds here (4 sockets and the
    // connection's epoll fd), 9 while both directions hold a pipe: the
    // process needs room for them all at once.
    const limit = limitNoFile();
    if (limit !== 'unlimited' && Number(limit) < 10 * N) return t.skip(`RLIMIT_NOFILE is ${limit}; 1,000 connections need up to ${9 * N} fds (ulimit -n 10000)`);
    const be = await backend('tcp', (s) => s.pipe(s), 2048);
    const { proxy, addr, closes } = await startProxy('tcp', { target: be.addr }, 2048);
    try {
      // Warm the process (lazy modules, the pipe pool) before the baseline.
      {
        const c = connect(addr);
        const done = nextClose(proxy);
        c.resume();
        c.end('warm-up');
        await withTimeout(once(c, 'end'), 10_000, 'warm-up');
        c.destroy();
        await done;
        closes.length = 0;
      }
      const base = fdCount();
      const r = rng(77);
      // Every client sends, then waits until all 1,000 have their echo back
      // before ending: at that barrier all connections are open at once.
      let echoed = 0;
      let allEchoed!: () => void;
      const barrier = new Promise<void>((resolve) => (allEchoed = resolve));
      let peak = 0;
      const one = async (i: number) => {
        const data = seededBytes(1024 + Math.floor(r() * 48 * 1024), i + 1);
        const c = connect(addr);
        c.on('error', () => {});
        const chunks: Buffer[] = [];
        let got = 0;
        const back = new Promise<void>((resolve) =>
          c.on('data', (d: Buffer) => {
            chunks.push(d);
            if ((got += d.length) === data.length) resolve();
          }),
        );
        await once(c, 'connect', 60_000);
        c.write(data);
        await back;
        if (++echoed === N) {
          peak = fs.readdirSync('/proc/self/fd').length;
          allEchoed();
        }
        await barrier;
        const ended = once(c, 'end', 60_000);
        c.end();
        await ended;
        c.destroy();
        const all = Buffer.concat(chunks);
        if (!all.equals(data)) throw new Error(`connection ${i}: ${all.length} bytes back, want ${data.length}`);
      };
      const allClosed = withTimeout(
        new Promise<void>((resolve) => {
          const check = () => closes.length >= N && resolve();
          proxy.on('proxyClose', check);
          check();
        }),
        90_000,
        'every proxyClose',
      );
      await withTimeout(Promise.all(Array.from({ length: N }, (_, i) => one(i))), 90_000, `${N} connections`);
      await allClosed;
      assert.equal(closes.length, N);
      assert.ok(closes.every((c) => c.reason === 'done'), `reasons: ${[...new Set(closes.map((c) => c.reason))].join(',')}`);
      t.diagnostic(`fds: base ${base}, at the barrier ${peak} (limit ${limitNoFile()})`);
      // Four sockets per connection (client, proxy in, proxy out, backend), all open at once.
      assert.ok(peak >= base + 4 * N, `the connections really overlapped (${peak} fds, base ${base})`);
      const now = await fdsBackTo(base);
      assert.equal(now, base, `fds before ${base}, after ${now}`);
      if (NATIVE) assert.ok(stats().bytesByPath.splice + stats().bytesByPath.nativeCopy > 0);
    } finally {
      await close(proxy);
      await close(be.server, be.sockets);
    }
  });
});

describe(`proxy: failures and limits (${NATIVE ? 'native' : 'portable'})`, () => {
  test('a client reset closes the upstream connection promptly', async () => {
    let upstream: net.Socket | undefined;
    let arrived!: () => void;
    const enough = new Promise<void>((r) => (arrived = r));
    const be = await backend('tcp', (s) => {
      upstream = s;
      let n = 0;
      s.on('data', (d: Buffer) => (n += d.length) >= 100_000 && arrived());
    });
    const { proxy, addr } = await startProxy('tcp', { target: be.addr });
    try {
      const closing = nextClose(proxy);
      const c = connect(addr);
      c.write(seededBytes(100_000, 1));
      await withTimeout(enough, 10_000, 'bytes at the backend');
      const t0 = Date.now();
      c.resetAndDestroy();
      // The backend is half-open capable: the proxy's close reaches it as EOF.
      await withTimeout(once(upstream!, 'end'), 5_000, 'upstream sees the close');
      const info = await closing;
      assert.ok(Date.now() - t0 < 3_000);
      assert.equal(info.reason, 'error');
      assert.ok(info.error, 'the error is reported');
      if (NATIVE) assert.equal((info.error as NodeJS.ErrnoException).code, 'ECONNRESET');
      assert.equal(info.up.bytes, 100_000);
    } finally {
      await close(proxy);
      await close(be.server, be.sockets);
    }
  });

  test('an upstream reset closes the client promptly', async () => {
    const be = await backend('tcp', (s) => {
      s.once('data', () => s.resetAndDestroy());
    });
    const { proxy, addr } = await startProxy('tcp', { target: be.addr });
    try {
      const closing = nextClose(proxy);
      const c = connect(addr);
      c.on('error', () => {});
      c.resume();
      c.write('hello');
      await gone(c);
      const info = await closing;
      assert.equal(info.reason, 'error');
    } finally {
      await close(proxy);
      await close(be.server, be.sockets);
    }
  });

  test('idleTimeout closes an idle connection, and not a trickling one', async () => {
    const be = await backend('tcp', (s) => s.pipe(s));
    const { proxy, addr } = await startProxy('tcp', { target: be.addr, idleTimeout: 300 });
    try {
      // Trickle: a byte every 100 ms for 900 ms, then go idle.
      const c = connect(addr);
      c.resume();
      const t0 = Date.now();
      const closing = nextClose(proxy);
      for (let i = 0; i < 9; i++) {
        c.write('x');
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(c.destroyed, false, 'still open while bytes flow');
      const info = await closing;
      const lived = Date.now() - t0;
      assert.equal(info.reason, 'idle-timeout');
      assert.ok(lived >= 1_100 && lived < 3_000, `closed after ${lived} ms`);
      assert.equal(info.up.bytes, 9);
      await gone(c);
    } finally {
      await close(proxy);
      await close(be.server, be.sockets);
    }
  });

  test('connectTimeout gives up on an upstream that never answers', async () => {
    // A listener whose process is stopped: its accept queue (backlog 1: two connections)
    // fills, and further SYNs are dropped, so connect() hangs.
    const child = spawn(process.execPath, ['-e', "const s=require('net').createServer().listen({port:0,host:'127.0.0.1',backlog:1},()=>console.log(s.address().port))"], { stdio: ['ignore', 'pipe', 'inherit'] });
    const line = await withTimeout(new Promise<string>((r) => createInterface({ input: child.stdout! }).once('line', r)), 10_000, 'child port');
    const port = Number(line);
    child.kill('SIGSTOP');
    const fillers: net.Socket[] = [];
    try {
      // Fill the queue until a connect no longer completes.
      for (let i = 0; i < 8; i++) {
        const s = net.connect(port, '127.0.0.1');
        s.on('error', () => {});
        fillers.push(s);
        const ok = await Promise.race([once(s, 'connect', 60_000).then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 300))]);
        if (!ok) break;
      }
      const { proxy, addr } = await startProxy('tcp', { target: { port }, connectTimeout: 400 });
      try {
        const closing = nextClose(proxy);
        const c = connect(addr);
        c.on('error', () => {});
        const t0 = Date.now();
        const info = await closing;
        assert.equal(info.reason, 'connect-timeout');
        assert.equal((info.error as { code?: string }).code, 'ZCOPY_ERR_TIMEOUT');
        assert.ok(Date.now() - t0 < 3_000);
        await gone(c);
      } finally {
        await close(proxy);
      }
    } finally {
      for (const s of fillers) s.destroy();
      child.kill('SIGKILL');
    }
  });

  test('a refused upstream closes the client with reason connect-error', async () => {
    const be = await backend('tcp', () => {});
    const port = (be.addr as { port: number }).port;
    await close(be.server, be.sockets);
    const { proxy, addr } = await startProxy('tcp', { target: { port } });
    try {
      const closing = nextClose(proxy);
      const c = connect(addr);
      c.on('error', () => {});
      const info = await closing;
      assert.equal(info.reason, 'connect-error');
      assert.equal((info.error as NodeJS.ErrnoException).code, 'ECONNREFUSED');
      await gone(c);
    } finally {
      await close(proxy);
    }
  });

  test('maxConnections: connections beyond the limit are closed on arrival', async () => {
    const be = await backend('tcp', (s) => s.pipe(s));
    const { proxy, addr, closes } = await startProxy('tcp', { target: be.addr, maxConnections: 2 });
    try {
      const open: net.Socket[] = [];
      for (let i = 0; i < 2; i++) {
        const c = connect(addr);
        const echoed = once(c, 'data');
        c.write('hi');
        await echoed;
        open.push(c);
      }
      assert.equal(proxy.activeConnections, 2);
      const extra = connect(addr);
      extra.on('error', () => {});
      extra.resume();
      await gone(extra, 'extra connection closed');
      assert.equal(proxy.activeConnections, 2);
      // The first two still work.
      const c0 = open[0]!;
      const again = once<Buffer>(c0, 'data');
      c0.write('again');
      assert.equal((await again).toString(), 'again');
      for (const c of open) c.end();
      await withTimeout(new Promise<void>((r) => (closes.length >= 2 ? r() : proxy.on('proxyClose', () => closes.length >= 2 && r()))), 5_000, 'closes');
      assert.equal(closes.length, 2);
    } finally {
      await close(proxy);
      await close(be.server, be.sockets);
    }
  });

  test('closeAllConnections() ends open connections with reason shutdown', async () => {
    const be = await backend('tcp', (s) => s.resume());
    const { proxy, addr } = await startProxy('tcp', { target: be.addr });
    try {
      const c = connect(addr);
      c.on('error', () => {});
      await withTimeout(once(proxy, 'proxyConnect'), 5_000, 'connected');
      const closing = nextClose(proxy);
      proxy.closeAllConnections();
      assert.equal((await closing).reason, 'shutdown');
      await gone(c);
    } finally {
      await close(proxy);
      await close(be.server, be.sockets);
    }
  });

  test('invalid options throw synchronously', () => {
    assert.throws(() => createProxy({} as never), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => createProxy({ target: { port: 0 } }), { code: 'ERR_INVALID_ARG_VALUE' });
    assert.throws(() => createProxy({ target: { port: 80 }, maxConnections: 0 }), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => createProxy({ target: { port: 80 }, idleTimeout: -1 }), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => createProxy({ target: { port: 80 }, mechanism: 'x' as 'auto' }), { code: 'ERR_INVALID_ARG_VALUE' });
  });
});

describe(`zcopy proxy CLI (${NATIVE ? 'native' : 'portable'})`, () => {
  test('forwards, logs one line per connection, and stops cleanly on SIGTERM', async () => {
    const be = await backend('tcp', (s) => s.pipe(s));
    const cli = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'proxy.js');
    const port = (be.addr as { port: number }).port;
    const code = `import(${JSON.stringify(cli)}).then((m) => m.proxyCommand(process.argv.slice(1))).then((c) => { process.exitCode = c; })`;
    const child = spawn(process.execPath, ['-e', code, '--', '--listen', '127.0.0.1:0', '--target', `127.0.0.1:${port}`, '--idle-timeout', '30s'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    const waiters: Array<[RegExp, (l: string) => void]> = [];
    createInterface({ input: child.stdout! }).on('line', (l) => {
      lines.push(l);
      for (const w of [...waiters]) if (w[0].test(l)) (waiters.splice(waiters.indexOf(w), 1), w[1](l));
    });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    const line = (re: RegExp) => withTimeout(new Promise<string>((r) => (lines.find((l) => re.test(l)) ? r(lines.find((l) => re.test(l))!) : waiters.push([re, r]))), 15_000, `a line like ${re}`);
    const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    try {
      const banner = await line(/^zcopy proxy: 127\.0\.0\.1:\d+ -> /);
      const listenPort = Number(/127\.0\.0\.1:(\d+)/.exec(banner)![1]);
      const c = connect({ port: listenPort });
      const data = seededBytes(200_000, 3);
      const got = readWithStalls(c, rng(5));
      c.end(data);
      assert.equal((await got).sha, sha(data));
      const log = await line(/ up=200000 down=200000 /);
      assert.match(log, /^1 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+ up=200000 down=200000 [\d.]+ms path=\w+\/\w+ reason=done/);
      assert.match(log, NATIVE ? /path=(splice|nativeCopy)\/(splice|nativeCopy)/ : /path=portable\/portable/);
      child.kill('SIGTERM');
      assert.equal(await withTimeout(exited, 10_000, 'exit'), 0, stderr);
      assert.ok(lines.some((l) => l === 'zcopy proxy: stopped'));
    } finally {
      child.kill('SIGKILL');
      await close(be.server, be.sockets);
    }
  });

  test('bad arguments exit non-zero with a message', async () => {
    const cli = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'proxy.js');
    const code = `import(${JSON.stringify(cli)}).then((m) => m.proxyCommand(process.argv.slice(1))).then((c) => { process.exitCode = c; }, (e) => { console.error(e.message); process.exitCode = 2; })`;
    for (const args of [[], ['--target', 'nohost'], ['--target', '127.0.0.1:1', '--idle-timeout', 'soon'], ['--target', '127.0.0.1:1', '--mechanism', 'magic']]) {
      const child = spawn(process.execPath, ['-e', code, '--', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      child.stderr!.on('data', (d) => (err += d));
      const status = await withTimeout(new Promise<number | null>((r) => child.once('exit', (c) => r(c))), 10_000, 'exit');
      assert.equal(status, 2, `${args.join(' ')}: ${err}`);
      assert.ok(err.length > 0, `${args.join(' ')}: a message`);
    }
  });
});
