// Hostile and careless peers against splice() and the proxy (issue 8):
// - item 5: a TCP urgent byte (MSG_OOB) must be forwarded, inline and in
//   order, with the bytes after it, and must not pin a core;
// - item 10: an idle proxied connection holds at most 3 fds natively (its
//   two sockets and one epoll set), so a proxy under `ulimit -n 256` serves
//   60+ clients at once;
// - item 9: `zcopy proxy` closes idle connections (default 10 min,
//   --idle-timeout) and logs why.
// The file runs twice (npm test): with the addon, and with
// ZCOPY_FORCE_FALLBACK=1 (the portable path).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createProxy, splice, type ProxyCloseInfo, type ProxyServer } from '../src/index.js';
import { maxIdleForLimit } from '../src/internal/pipe-pool.js';
import { NATIVE, once, seededBytes, sha, withTimeout } from './helpers.js';
import { connect, cpuOver, fdCount, halfOpenPair, listen, sleep, tmp, type Transport } from './splice-helpers.js';

const dir = tmp();
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const HAVE_PYTHON = spawnSync('python3', ['-c', 'import socket'], { stdio: 'ignore' }).status === 0;
const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'proxy.js');

// ---------------------------------------------------------------------------
// Item 5: urgent data

/** What the urgent-data peer sends: a run of bytes, the urgent byte, another run. */
const OOB_RUN = 100_000;
const OOB_BYTE = 0x21;
function oobPattern(n: number, k: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + k) & 0xff;
  return b;
}
const BEFORE = oobPattern(OOB_RUN, 3);
const AFTER = oobPattern(OOB_RUN, 5);

/**
 * The peer Node cannot be: Python connects to `addr`, sends BEFORE, one byte
 * with MSG_OOB (TCP's urgent pointer; a Unix socket's out-of-band byte since
 * Linux 5.15), then AFTER, prints 'sent', and keeps the connection open until
 * its stdin closes. It prints 'no-oob' instead where the kernel refuses
 * MSG_OOB on that socket.
 */
function urgentSender(addr: { port: number } | { path: string }): ChildProcess {
  const open =
    'path' in addr
      ? `s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\ns.connect(${JSON.stringify(addr.path)})`
      : `s = socket.create_connection(('127.0.0.1', ${addr.port}))\ns.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)`;
  const py = `
import socket, sys
${open}
def pat(n, k): return bytes(((i * 7 + k) & 0xff) for i in range(n))
s.sendall(pat(${OOB_RUN}, 3))
try:
    assert s.send(bytes([${OOB_BYTE}]), socket.MSG_OOB) == 1
except OSError:
    print('no-oob', flush=True)
    sys.exit(0)
s.sendall(pat(${OOB_RUN}, 5))
print('sent', flush=True)
sys.stdin.read()
s.close()
`;
  return spawn('python3', ['-c', py], { stdio: ['pipe', 'pipe', 'inherit'] });
}

/**
 * The bytes a forwarder must deliver. Natively zcopy sets SO_OOBINLINE, so
 * the urgent byte stays in the stream, in place (as HAProxy does). Node
 * alone (the portable path) reads without SO_OOBINLINE, and the kernel takes
 * the urgent byte out of the stream: every other byte still arrives. (The
 * same holds for a Unix socket's out-of-band byte.)
 */
const OOB_EXPECTED = NATIVE ? Buffer.concat([BEFORE, Buffer.from([OOB_BYTE]), AFTER]) : Buffer.concat([BEFORE, AFTER]);

/** Collects what `s` receives; `upTo(n)` resolves once n bytes are in. */
function collect(s: net.Socket): { chunks: Buffer[]; bytes(): number; upTo(n: number, ms: number, what: string): Promise<void>; end: Promise<void> } {
  const chunks: Buffer[] = [];
  let got = 0;
  let want = Infinity;
  let reached: (() => void) | undefined;
  s.on('data', (d: Buffer) => {
    chunks.push(d);
    got += d.length;
    if (got >= want) reached?.();
  });
  const end = new Promise<void>((r) => s.once('end', () => r()));
  s.resume();
  return {
    chunks,
    bytes: () => got,
    end,
    upTo(n, ms, what) {
      want = n;
      if (got >= n) return Promise.resolve();
      return withTimeout(new Promise<void>((r) => (reached = r)), ms, `${what} (${got} of ${n} bytes arrived)`);
    },
  };
}

/** Resolves with what the sender printed: 'sent', or 'no-oob'. */
function senderReady(py: ChildProcess): Promise<string> {
  return withTimeout(
    new Promise<string>((r, j) => {
      py.stdout!.once('data', (d: Buffer) => r(d.toString().trim()));
      py.once('exit', (c) => j(new Error(`python exited with ${c}`)));
    }),
    10_000,
    'python sent its bytes',
  );
}

describe(`reliability: TCP urgent data (${NATIVE ? 'native' : 'portable'})`, () => {
  const cases: Array<[Transport, 'auto' | 'splice' | 'copy']> = NATIVE
    ? [
        ['tcp', 'splice'],
        ['tcp', 'copy'],
        ['unix', 'splice'],
      ]
    : [
        ['tcp', 'auto'],
        ['unix', 'auto'],
      ];
  for (const [transport, mechanism] of cases) {
    test(`splice() ${transport} / ${mechanism}: every byte after an urgent (MSG_OOB) byte arrives in order (the urgent byte inline${NATIVE ? '' : ': no, Node drops it'}), at no CPU cost afterwards`, async (t) => {
      if (!HAVE_PYTHON) return t.skip('python3 is not installed: no peer that can send MSG_OOB');
      const srv = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
      const addr = await listen(srv, transport, dir);
      const accepted = once<net.Socket>(srv, 'connection');
      const py = urgentSender(addr);
      const from = await accepted;
      srv.close();
      const pair = await halfOpenPair('tcp', dir);
      const out = collect(pair.b);
      try {
        const moved = splice(from, pair.a, { mechanism });
        moved.catch(() => {});
        if ((await senderReady(py)) === 'no-oob') return t.skip(`this kernel refuses MSG_OOB on a ${transport} socket`);
        await out.upTo(OOB_EXPECTED.length, 10_000, 'the bytes after the urgent byte');
        // Nothing left to move: the forwarder waits, and a wait costs nothing.
        const cpu = await cpuOver(2_000);
        t.diagnostic(`CPU over 2 s idle after the urgent byte: ${cpu.toFixed(1)} ms`);
        assert.ok(cpu < 100, `the forwarder used ${cpu.toFixed(0)} ms CPU in 2 s of idle time`);
        py.stdin!.end();
        const n = await withTimeout(moved, 10_000, 'splice resolves at EOF');
        await withTimeout(out.end, 5_000, 'EOF forwarded');
        const all = Buffer.concat(out.chunks);
        assert.equal(all.length, OOB_EXPECTED.length);
        assert.equal(sha(all), sha(OOB_EXPECTED), 'every byte, in order');
        assert.equal(n, OOB_EXPECTED.length);
      } finally {
        py.kill('SIGKILL');
        from.destroy();
        pair.close();
      }
    });
  }

  test(`createProxy (${NATIVE ? "mechanism 'splice'" : 'portable'}): every byte after a client's urgent byte reaches the upstream${NATIVE ? ', the urgent byte inline' : ''}, and the proxy stays idle`, async (t) => {
    if (!HAVE_PYTHON) return t.skip('python3 is not installed: no peer that can send MSG_OOB');
    let upstream: ReturnType<typeof collect> | undefined;
    let arrived!: () => void;
    const connected = new Promise<void>((r) => (arrived = r));
    const be = net.createServer({ allowHalfOpen: true }, (s) => {
      upstream = collect(s);
      s.on('error', () => {});
      // Half-closed by the client: answer with our own end, and the proxy closes.
      s.once('end', () => s.end());
      arrived();
    });
    await new Promise<void>((r) => be.listen(0, '127.0.0.1', r));
    const proxy = createProxy({ target: { port: (be.address() as net.AddressInfo).port }, mechanism: NATIVE ? 'splice' : 'auto' });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const closing = once<ProxyCloseInfo>(proxy, 'proxyClose', 20_000);
    const py = urgentSender({ port: (proxy.address() as net.AddressInfo).port });
    try {
      await senderReady(py);
      await withTimeout(connected, 10_000, 'upstream connection');
      await upstream!.upTo(OOB_EXPECTED.length, 10_000, 'the bytes after the urgent byte at the upstream');
      const cpu = await cpuOver(2_000);
      t.diagnostic(`CPU over 2 s idle after the urgent byte: ${cpu.toFixed(1)} ms`);
      assert.ok(cpu < 100, `the proxy used ${cpu.toFixed(0)} ms CPU in 2 s of idle time`);
      py.stdin!.end();
      await withTimeout(upstream!.end, 10_000, 'EOF at the upstream');
      const all = Buffer.concat(upstream!.chunks);
      assert.equal(sha(all), sha(OOB_EXPECTED), 'every byte, in order');
      const info = await closing;
      assert.equal(info.up.bytes, OOB_EXPECTED.length);
      if (NATIVE) assert.equal(info.up.path, 'splice');
    } finally {
      py.kill('SIGKILL');
      proxy.closeAllConnections();
      proxy.close();
      be.close();
    }
  });
});

// ---------------------------------------------------------------------------
// Item 10: fds per idle connection

async function echoBackend(transport: Transport): Promise<{ server: net.Server; addr: { port: number } | { path: string }; sockets: Set<net.Socket> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.pipe(s);
  });
  const addr = await listen(server, transport, dir);
  return { server, addr, sockets };
}

/** Opens a client, sends `size` bytes and waits for all of them back; the connection then stays open, idle. */
async function echoOnce(addr: { port: number } | { path: string }, size: number, seed: number): Promise<net.Socket> {
  const c = connect(addr);
  c.on('error', () => {});
  const data = seededBytes(size, seed);
  const h = createHash('sha256');
  let got = 0;
  const back = new Promise<void>((resolve) => {
    const onData = (d: Buffer) => {
      h.update(d);
      if ((got += d.length) < size) return;
      c.off('data', onData);
      resolve();
    };
    c.on('data', onData);
  });
  await once(c, 'connect', 10_000);
  c.write(data);
  await withTimeout(back, 20_000, `echo of connection ${seed}`);
  assert.equal(h.digest('hex'), sha(data), `connection ${seed}: the echo is intact`);
  return c;
}

describe(`reliability: fds per proxied connection (${NATIVE ? 'native' : 'portable'})`, () => {
  const cases: Array<[Transport, 'auto' | 'splice' | 'copy']> = NATIVE
    ? [
        ['tcp', 'splice'],
        ['tcp', 'copy'],
        ['unix', 'auto'],
      ]
    : [['tcp', 'auto']];
  for (const [transport, mechanism] of cases) {
    test(`${transport} / ${mechanism}: an idle connection holds at most ${NATIVE ? 3 : 2} fds in the proxy`, async (t) => {
      const N = 40;
      const be = await echoBackend(transport);
      const proxy = createProxy({ target: be.addr, mechanism });
      const addr = await listen(proxy, transport, dir);
      const clients: net.Socket[] = [];
      try {
        // Warm-up (lazy modules, the process-wide scratch buffer) before the baseline.
        (await echoOnce(addr, 1000, 999)).destroy();
        await withTimeout(new Promise<void>((r) => (proxy.activeConnections === 0 ? r() : proxy.once('proxyClose', () => r()))), 5_000, 'warm-up close');
        const base = fdCount();
        for (let i = 0; i < N; i++) clients.push(await echoOnce(addr, 64 * 1024, i + 1));
        assert.equal(proxy.activeConnections, N);
        // Idle now: both directions of every connection wait for a byte.
        await sleep(50);
        const held = fdCount() - base;
        // This process also holds, per connection, the test's client and the
        // backend's accepted socket: 2 fds that are not the proxy's.
        const perConnection = held / N - 2;
        t.diagnostic(`${N} idle connections: ${perConnection.toFixed(2)} fds each in the proxy`);
        assert.ok(perConnection <= (NATIVE ? 3 : 2), `an idle proxied connection holds ${perConnection.toFixed(2)} fds in the proxy (${held} fds for ${N} connections, 2 of them the test's)`);
        // And they still work after idling.
        for (const [i, c] of clients.entries()) {
          const back = new Promise<Buffer>((r) => c.once('data', r));
          c.write(`ping ${i}`);
          assert.equal((await withTimeout(back, 5_000, `ping ${i}`)).toString(), `ping ${i}`);
        }
      } finally {
        for (const c of clients) c.destroy();
        proxy.closeAllConnections();
        await new Promise<void>((r) => proxy.close(() => r()));
        for (const s of be.sockets) s.destroy();
        be.server.close();
      }
    });
  }

  for (const mechanism of NATIVE ? (['splice', 'copy'] as const) : (['auto'] as const)) {
    test(`zcopy proxy --mechanism ${mechanism} under ulimit -n 256 serves 64 concurrent clients`, async (t) => {
      if (spawnSync('bash', ['-c', 'ulimit -n 256'], { stdio: 'ignore' }).status !== 0) return t.skip('bash cannot set ulimit -n 256 here');
      const N = 64;
      const be = await echoBackend('tcp');
      const code = `import(${JSON.stringify(CLI)}).then((m) => m.proxyCommand(process.argv.slice(1))).then((c) => { process.exitCode = c; })`;
      const port = (be.addr as { port: number }).port;
      const child = spawn('bash', ['-c', 'ulimit -n 256 && exec "$0" "$@"', process.execPath, '-e', code, '--', '--listen', '127.0.0.1:0', '--target', `127.0.0.1:${port}`, '--mechanism', mechanism], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (d) => (stderr += d));
      const lines: string[] = [];
      const rl = createInterface({ input: child.stdout! });
      const banner = withTimeout(new Promise<string>((r) => rl.on('line', (l) => (lines.push(l), /^zcopy proxy: 127/.test(l) && r(l)))), 15_000, 'the proxy banner');
      const clients: net.Socket[] = [];
      try {
        const listenPort = Number(/127\.0\.0\.1:(\d+)/.exec(await banner)![1]);
        const limit = /Max open files\s+(\d+)/.exec(fs.readFileSync(`/proc/${child.pid}/limits`, 'utf8'))?.[1];
        assert.equal(limit, '256', 'the proxy runs with 256 fds');
        // All open at once: each client keeps its connection after its echo.
        for (let i = 0; i < N; i++) clients.push(await echoOnce({ port: listenPort }, 32 * 1024, i + 1));
        const fds = fs.readdirSync(`/proc/${child.pid}/fd`).length;
        t.diagnostic(`${N} idle connections: the proxy holds ${fds} fds`);
        // Every one still answers, concurrently.
        await Promise.all(
          clients.map(async (c, i) => {
            const back = new Promise<Buffer>((r) => c.once('data', r));
            c.write(`ping ${i}`);
            assert.equal((await withTimeout(back, 10_000, `ping ${i}`)).toString(), `ping ${i}`);
          }),
        );
        assert.ok(lines.every((l) => !/reason=error/.test(l)), lines.join('\n'));
      } finally {
        for (const c of clients) c.destroy();
        child.kill('SIGKILL');
        for (const s of be.sockets) s.destroy();
        be.server.close();
      }
      assert.equal(stderr, '');
    });
  }
});

describe(`reliability: out of fds (${NATIVE ? 'native' : 'portable'})`, () => {
  test('the pipe pool keeps fewer idle pipes under a small fd limit (1/32 of it in fds, 2 to 64 pipes)', () => {
    assert.equal(maxIdleForLimit(256), 4);
    assert.equal(maxIdleForLimit(1024), 16);
    assert.equal(maxIdleForLimit(64), 2);
    assert.equal(maxIdleForLimit(1_048_576), 64);
    assert.equal(maxIdleForLimit(Infinity), 64);
  });

  test('splice() with no fd left for the epoll set moves the bytes on the portable path (fallback epoll-EMFILE)', async (t) => {
    if (!NATIVE) return t.skip('the portable path makes no epoll set');
    const index = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'index.js');
    // In a child under `ulimit -n 64`: two connected pairs, then every fd
    // left taken, then a splice between them.
    const code = `
      const net = await import('node:net');
      const fs = await import('node:fs');
      const { splice, stats } = await import(${JSON.stringify(index)});
      const pair = async () => {
        const srv = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
        await new Promise((r) => srv.listen(0, '127.0.0.1', r));
        const accepted = new Promise((r) => srv.once('connection', r));
        const c = net.connect({ port: srv.address().port, host: '127.0.0.1', allowHalfOpen: true });
        await new Promise((r) => c.once('connect', r));
        const s = await accepted;
        srv.close();
        return [c, s];
      };
      const [c1, s1] = await pair();
      const [s2, c2] = await pair();
      const fill = [];
      for (let i = 0; i < 1000; i++) {
        try { fill.push(fs.openSync('/dev/null', 'r')); } catch (e) { if (e.code === 'EMFILE') break; throw e; }
      }
      let got = 0;
      c2.on('data', (d) => (got += d.length));
      c2.resume();
      const ended = new Promise((r) => c2.once('end', r));
      const moved = splice(s1, s2, { mechanism: 'copy' });
      c1.end(Buffer.alloc(300000, 7));
      const n = await moved;
      await ended;
      for (const fd of fill) fs.closeSync(fd);
      console.log(JSON.stringify({ n, got, filled: fill.length, fallbacks: stats().fallbacks }));
      process.exit(0);
    `;
    const child = spawn('bash', ['-c', 'ulimit -n 64 && exec "$0" "$@"', process.execPath, '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    try {
      const status = await withTimeout(new Promise<number | null>((r) => child.once('exit', (c) => r(c))), 20_000, 'the child');
      assert.equal(status, 0, stderr);
    } finally {
      child.kill('SIGKILL');
    }
    const out = JSON.parse(stdout.trim().split('\n').pop()!) as { n: number; got: number; filled: number; fallbacks: Record<string, number> };
    assert.ok(out.filled > 0, 'fds were taken');
    assert.equal(out.n, 300_000);
    assert.equal(out.got, 300_000);
    assert.equal(out.fallbacks['epoll-EMFILE'], 1, JSON.stringify(out.fallbacks));
  });
});

// ---------------------------------------------------------------------------
// Item 9: idle timeout of `zcopy proxy`

function runCli(args: string[]): { child: ChildProcess; line(re: RegExp, ms?: number): Promise<string>; exited: Promise<number | null>; stderr(): string } {
  const code = `import(${JSON.stringify(CLI)}).then((m) => m.proxyCommand(process.argv.slice(1))).then((c) => { process.exitCode = c; })`;
  const child = spawn(process.execPath, ['-e', code, '--', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const waiters: Array<[RegExp, (l: string) => void]> = [];
  createInterface({ input: child.stdout! }).on('line', (l) => {
    lines.push(l);
    for (const w of [...waiters]) if (w[0].test(l)) (waiters.splice(waiters.indexOf(w), 1), w[1](l));
  });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  return {
    child,
    line: (re, ms = 15_000) => withTimeout(new Promise<string>((r) => (lines.find((l) => re.test(l)) ? r(lines.find((l) => re.test(l))!) : waiters.push([re, r]))), ms, `a line like ${re}`),
    exited: new Promise<number | null>((r) => child.once('exit', (c) => r(c))),
    stderr: () => err,
  };
}

describe(`reliability: zcopy proxy idle timeout (${NATIVE ? 'native' : 'portable'})`, () => {
  test('--idle-timeout closes a connection idle that long and logs reason=idle-timeout', async () => {
    const be = await echoBackend('tcp');
    const cli = runCli(['--listen', '127.0.0.1:0', '--target', `127.0.0.1:${(be.addr as { port: number }).port}`, '--idle-timeout', '400ms']);
    try {
      const banner = await cli.line(/^zcopy proxy: 127\.0\.0\.1:\d+ -> /);
      assert.match(banner, /idle timeout 400 ms/);
      const c = await echoOnce({ port: Number(/127\.0\.0\.1:(\d+)/.exec(banner)![1]) }, 10_000, 1);
      const t0 = Date.now();
      const closed = withTimeout(new Promise<void>((r) => (c.once('end', r), c.once('close', r))), 5_000, 'the client sees the close');
      const log = await cli.line(/reason=idle-timeout/, 5_000);
      await closed;
      const after = Date.now() - t0;
      assert.ok(after >= 300 && after < 3_000, `closed ${after} ms after the last byte`);
      assert.match(log, /^1 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+ up=10000 down=10000 [\d.]+ms path=\w+\/\w+ reason=idle-timeout( fallback=\S+)?$/);
      c.destroy();
    } finally {
      cli.child.kill('SIGKILL');
      for (const s of be.sockets) s.destroy();
      be.server.close();
    }
  });

  test('the default idle timeout is 10 minutes; --idle-timeout 0 turns it off; durations parse', async () => {
    for (const [args, want] of [
      [[], 'idle timeout 600000 ms'],
      [['--idle-timeout', '0'], 'no idle timeout'],
      [['--idle-timeout', '5m'], 'idle timeout 300000 ms'],
      [['--idle-timeout', '1500'], 'idle timeout 1500 ms'],
    ] as const) {
      const cli = runCli(['--listen', '127.0.0.1:0', '--target', '127.0.0.1:9', ...args]);
      try {
        const banner = await cli.line(/^zcopy proxy: 127\.0\.0\.1:\d+ -> /);
        assert.ok(banner.includes(want), `${args.join(' ') || '(no option)'}: ${banner}`);
        cli.child.kill('SIGTERM');
        assert.equal(await withTimeout(cli.exited, 10_000, 'exit'), 0, cli.stderr());
      } finally {
        cli.child.kill('SIGKILL');
      }
    }
  });
});
