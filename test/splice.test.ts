// splice(from, to): bytes both ways, half-close, ordering, stops, resets,
// aborts, CPU while stalled, and fds. The file runs twice (npm test): with
// the addon, and with ZCOPY_FORCE_FALLBACK=1 (the portable path).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { splice, stats, resetStats } from '../src/index.js';
import { AUTO_SPLICE } from '../src/splice.js';
import { NATIVE, once, seededBytes, sha, withTimeout } from './helpers.js';
import { closed, connect, cpuOver, fdCount, fdsBackTo, halfOpenPair, listen, readWithStalls, rng, sleep, tmp, writeRandom, type Transport } from './splice-helpers.js';

const dir = tmp();
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const TRANSPORTS: Transport[] = ['tcp', 'unix'];
const MECHS = NATIVE ? (['auto', 'splice', 'copy'] as const) : (['auto'] as const);

/**
 * c1 <-> s1 ==splice==> s2 <-> c2, and back: a relay made of two pairs, the
 * shape of a proxy. Returns both splice promises.
 */
async function relay(transport: Transport, opts: { mechanism?: 'auto' | 'splice' | 'copy'; signal?: AbortSignal } = {}) {
  const p1 = await halfOpenPair(transport, dir);
  const p2 = await halfOpenPair(transport, dir);
  const c1 = p1.a;
  const s1 = p1.b;
  const s2 = p2.a;
  const c2 = p2.b;
  const up = splice(s1, s2, { mechanism: opts.mechanism, signal: opts.signal });
  const down = splice(s2, s1, { mechanism: opts.mechanism, signal: opts.signal });
  // Keep a rejection from counting as unhandled before a test awaits it.
  up.catch(() => {});
  down.catch(() => {});
  return {
    c1,
    s1,
    s2,
    c2,
    up,
    down,
    close() {
      p1.close();
      p2.close();
    },
  };
}

describe(`splice: bytes (${NATIVE ? 'native' : 'portable'})`, () => {
  for (const transport of TRANSPORTS) {
    for (const mechanism of MECHS) {
      test(`${transport} / ${mechanism}: both directions arrive intact with random writes and reader stalls at both ends`, async () => {
        resetStats();
        const r = rng(transport === 'tcp' ? 11 : 12);
        const A = seededBytes(6 * 1024 * 1024 + 333, 21);
        const B = seededBytes(5 * 1024 * 1024 + 77, 22);
        const x = await relay(transport, { mechanism });
        try {
          const gotB = readWithStalls(x.c1, rng(1));
          const gotA = readWithStalls(x.c2, rng(2));
          await withTimeout(Promise.all([writeRandom(x.c1, A, r), writeRandom(x.c2, B, rng(3))]), 60_000, 'writers');
          const [a, b] = await Promise.all([gotA, gotB]);
          assert.equal(a.bytes, A.length);
          assert.equal(a.sha, sha(A));
          assert.equal(b.bytes, B.length);
          assert.equal(b.sha, sha(B));
          assert.equal(await x.up, A.length);
          assert.equal(await x.down, B.length);
          const s = stats();
          if (NATIVE) {
            // The native path really moved the bytes (pauseOnConnect: Node buffered none).
            // auto follows the measured table (both ends are the same transport here).
            const m = mechanism === 'auto' ? AUTO_SPLICE[transport === 'unix' ? 'unix' : 'tcp-loopback'] : mechanism;
            const path = m === 'copy' ? 'nativeCopy' : 'splice';
            assert.equal(s.bytesByPath[path], A.length + B.length, `bytes by ${path}`);
            assert.equal(s.bytesByPath.portable, 0);
            assert.ok(s.waits > 0, 'waited for readiness');
          } else {
            assert.equal(s.bytesByPath.portable, A.length + B.length);
            assert.equal(s.fallbacks.forced, 2);
          }
        } finally {
          x.close();
        }
      });
    }
  }

  test('half-close: the client ends, the server still replies, then ends too', async () => {
    const x = await relay('tcp');
    try {
      const request = seededBytes(300_000, 5);
      const reply = seededBytes(2_000_000, 6);
      // The "server" (c2) answers only after its request side reached EOF.
      const chunks: Buffer[] = [];
      x.c2.on('data', (d: Buffer) => chunks.push(d));
      x.c2.once('end', () => {
        assert.ok(Buffer.concat(chunks).equals(request));
        x.c2.end(reply);
      });
      x.c2.resume();
      const got = readWithStalls(x.c1, rng(4));
      x.c1.end(request);
      const r = await got;
      assert.equal(r.sha, sha(reply));
      assert.equal(await withTimeout(x.up, 10_000, 'up'), request.length);
      assert.equal(await withTimeout(x.down, 10_000, 'down'), reply.length);
    } finally {
      x.close();
    }
  });

  test('unix: a peer that writes and close()s at once still has every byte delivered', async () => {
    // A Unix socket whose peer closed reports EPOLLHUP on our end: the other
    // direction, waiting to read, must not take that for a reset.
    const x = await relay('unix');
    try {
      const data = seededBytes(4 * 1024 * 1024, 13);
      const got = readWithStalls(x.c2, rng(14), { stallProb: 0.2, stallMs: 10 });
      x.c1.write(data, () => x.c1.destroy());
      const r = await got;
      assert.equal(r.bytes, data.length);
      assert.equal(r.sha, sha(data));
      assert.equal(await withTimeout(x.up, 10_000, 'up'), data.length);
    } finally {
      x.close();
    }
  });

  test('end: false leaves `to` open after EOF', async () => {
    const p1 = await halfOpenPair('tcp', dir);
    const p2 = await halfOpenPair('tcp', dir);
    try {
      const data = seededBytes(100_000, 9);
      const chunks: Buffer[] = [];
      p2.b.on('data', (d: Buffer) => chunks.push(d));
      p2.b.resume();
      const done = splice(p1.b, p2.a, { end: false });
      p1.a.end(data);
      assert.equal(await withTimeout(done, 10_000, 'splice'), data.length);
      assert.equal(p2.a.writableEnded, false);
      // Still writable, and the bytes come after the spliced ones.
      p2.a.end(Buffer.from('tail'));
      await once(p2.b, 'end');
      assert.ok(Buffer.concat(chunks).equals(Buffer.concat([data, Buffer.from('tail')])));
    } finally {
      p1.close();
      p2.close();
    }
  });
});

describe(`splice: what Node already holds (${NATIVE ? 'native' : 'portable'})`, () => {
  test('bytes Node already read (readableLength) are forwarded first', async () => {
    resetStats();
    const p1 = await halfOpenPair('tcp', dir);
    const p2 = await halfOpenPair('tcp', dir);
    try {
      const head = seededBytes(50_000, 1);
      const rest = seededBytes(3_000_000, 2);
      // Let Node read the head into its buffer without anyone consuming it.
      p1.b.on('readable', function onReadable() {
        if (p1.b.readableLength >= head.length) p1.b.off('readable', onReadable);
      });
      p1.a.write(head);
      await withTimeout(
        new Promise<void>((r) => {
          const check = () => (p1.b.readableLength >= head.length ? r() : p1.b.once('readable', check));
          check();
        }),
        10_000,
        'Node buffering the head',
      );
      p1.b.removeAllListeners('readable');
      assert.equal(p1.b.readableLength, head.length, 'Node holds the head');
      const got = readWithStalls(p2.b, rng(5));
      const done = splice(p1.b, p2.a);
      p1.a.end(rest);
      const r = await got;
      assert.equal(r.sha, sha(Buffer.concat([head, rest])));
      assert.equal(await done, head.length + rest.length);
      const s = stats();
      // The head went through Node; everything after it through the kernel.
      if (NATIVE) {
        assert.equal(s.bytesByPath.portable, head.length);
        assert.equal(s.bytesByPath.splice + s.bytesByPath.nativeCopy, rest.length);
      } else {
        assert.equal(s.bytesByPath.portable, head.length + rest.length);
      }
    } finally {
      p1.close();
      p2.close();
    }
  });

  test("Node's reading stays stopped: resume() and 'data' listeners during a splice see nothing", async (t) => {
    if (!NATIVE) return t.skip('on the portable path Node itself reads `from`');
    resetStats();
    const p1 = await halfOpenPair('tcp', dir);
    const p2 = await halfOpenPair('tcp', dir);
    try {
      const data = seededBytes(4_000_000, 3);
      const got = readWithStalls(p2.b, rng(6));
      const done = splice(p1.b, p2.a, { mechanism: 'splice' });
      let stolen = 0;
      // What a careless caller might do while the kernel owns the socket.
      p1.b.on('data', (d: Buffer) => (stolen += d.length));
      p1.b.resume();
      await writeRandom(p1.a, data.subarray(0, 2_000_000), rng(7));
      p1.b.resume();
      p1.b.read(0);
      await once(p1.a, 'finish');
      const r = await got;
      assert.equal(stolen, 0, "no bytes reached Node's 'data' listeners");
      assert.equal(r.sha, sha(data.subarray(0, 2_000_000)));
      assert.equal(await done, 2_000_000);
      assert.equal(stats().bytesByPath.splice, 2_000_000);
    } finally {
      p1.close();
      p2.close();
    }
  });

  test('length: stops after exactly that many bytes; the rest stays readable through Node', async () => {
    for (const mechanism of MECHS) {
      const p1 = await halfOpenPair('tcp', dir);
      const p2 = await halfOpenPair('tcp', dir);
      try {
        const data = seededBytes(1_500_000, 8);
        const n = 1_000_001;
        const chunks: Buffer[] = [];
        p2.b.on('data', (d: Buffer) => chunks.push(d));
        p2.b.resume();
        const done = splice(p1.b, p2.a, { length: n, mechanism });
        p1.a.end(data);
        assert.equal(await withTimeout(done, 10_000, 'splice'), n);
        assert.equal(p2.a.writableEnded, false, 'no EOF was seen: `to` stays open');
        p2.a.end();
        await once(p2.b, 'end');
        assert.ok(Buffer.concat(chunks).equals(data.subarray(0, n)), `${mechanism}: first ${n} bytes`);
        // Node reads the remainder, as if nothing happened.
        const rest: Buffer[] = [];
        p1.b.on('data', (d: Buffer) => rest.push(d));
        p1.b.resume();
        await withTimeout(once(p1.b, 'end'), 10_000, 'remainder');
        assert.ok(Buffer.concat(rest).equals(data.subarray(n)), `${mechanism}: remainder through Node`);
      } finally {
        p1.close();
        p2.close();
      }
    }
  });

  test("Node's pending writes on `to` go first; writes made during the splice go after", async () => {
    const p1 = await halfOpenPair('unix', dir);
    const p2 = await halfOpenPair('unix', dir);
    try {
      const before = seededBytes(3_000_000, 10); // more than a socket buffer: still pending in Node
      const body = seededBytes(2_000_000, 11);
      const later = Buffer.from('written-during-the-splice');
      p2.a.write(before);
      assert.ok(p2.a.writableLength > 0, 'Node still buffers the first write');
      const got = readWithStalls(p2.b, rng(12));
      const done = splice(p1.b, p2.a);
      p2.a.write(later);
      p1.a.end(body);
      const r = await got;
      assert.equal(r.sha, sha(Buffer.concat([before, body, later])));
      assert.equal(await done, body.length);
    } finally {
      p1.close();
      p2.close();
    }
  });
});

describe(`splice: one direction, as in docs/proxy.md (${NATIVE ? 'native' : 'portable'})`, () => {
  // A server with Node's defaults (no allowHalfOpen) forwards what a client
  // sends, one way. splice() consumes `from` as pipe() does: at EOF 'end' is
  // emitted, Node ends the client's socket, and the client learns it. The
  // native path used to leave 'end' unemitted, and the client connection open.
  for (const transport of TRANSPORTS) {
    for (const end of [true, false]) {
      test(`${transport}, end: ${end}: EOF from the client ends its connection, ${end ? 'and half-closes' : 'not'} the upstream`, async () => {
        const base = fdCount();
        const up = await halfOpenPair(transport, dir);
        const srv = net.createServer();
        const addr = await listen(srv, transport, dir);
        const spliced = new Promise<{ n: number; fromEnded: Promise<void>; fromClosed: Promise<void> }>((resolve, reject) => {
          srv.once('connection', (s: net.Socket) => {
            s.on('error', () => {});
            const fromEnded = once<void>(s, 'end', 5_000);
            const fromClosed = closed(s);
            splice(s, up.a, { end }).then((n) => resolve({ n, fromEnded, fromClosed }), reject);
          });
        });
        const client = connect(addr);
        try {
          const body = seededBytes(300_000, 12);
          const chunks: Buffer[] = [];
          let upEnded = false;
          const gotAll = new Promise<void>((r) => {
            let n = 0;
            up.b.on('data', (d: Buffer) => {
              chunks.push(d);
              if ((n += d.length) >= body.length) r();
            });
          });
          const upEnd = new Promise<void>((r) => up.b.once('end', () => ((upEnded = true), r())));
          up.b.resume();
          const clientEnd = once(client, 'end', 5_000);
          client.resume();
          client.end(body);
          const r = await withTimeout(spliced, 10_000, 'splice');
          assert.equal(r.n, body.length);
          await withTimeout(gotAll, 10_000, 'the body upstream');
          await withTimeout(r.fromEnded, 5_000, "'end' on from");
          await withTimeout(clientEnd, 5_000, 'the client sees its connection ended');
          await r.fromClosed;
          if (end) await withTimeout(upEnd, 5_000, 'upstream EOF');
          else {
            // Nothing to wait for: give a wrongly sent FIN time to arrive.
            await sleep(100);
            assert.equal(upEnded, false, 'end: false leaves the upstream open');
          }
          assert.equal(sha(Buffer.concat(chunks)), sha(body));
        } finally {
          client.destroy();
          up.close();
          srv.close();
        }
        const now = await fdsBackTo(base);
        assert.equal(now, base, `fds before ${base}, after ${now}`);
      });
    }
  }
});

describe(`splice: failures (${NATIVE ? 'native' : 'portable'})`, () => {
  for (const side of ['from', 'to'] as const) {
    test(`a reset of the ${side} side's peer rejects promptly and closes both sides`, async () => {
      const x = await relay('tcp');
      try {
        x.c1.resume();
        x.c2.resume();
        x.c1.write(seededBytes(100_000, 1));
        await withTimeout(
          new Promise<void>((r) => {
            let n = 0;
            x.c2.on('data', (d: Buffer) => (n += d.length) >= 100_000 && r());
          }),
          10_000,
          'first bytes',
        );
        const victim = side === 'from' ? x.c1 : x.c2;
        const other = side === 'from' ? x.c2 : x.c1;
        other.on('error', () => {});
        const t0 = Date.now();
        victim.resetAndDestroy();
        // The direction reading the reset side sees ECONNRESET; the other one the close.
        const reading = side === 'from' ? x.up : x.down;
        const err = (await withTimeout(reading.then(() => null, (e: unknown) => e), 5_000, 'rejection')) as NodeJS.ErrnoException | null;
        assert.ok(err, 'the splice rejected');
        assert.equal(err.code, 'ECONNRESET');
        await withTimeout((side === 'from' ? x.down : x.up).then(() => assert.fail('resolved'), () => {}), 5_000, 'other direction');
        // The other peer learns it: EOF (or a reset), not silence.
        await withTimeout(new Promise<void>((r) => (other.readableEnded || other.destroyed ? r() : (other.once('end', r), other.once('close', r)))), 5_000, 'other peer sees the close');
        assert.ok(x.s1.destroyed && x.s2.destroyed, 'both proxy-side sockets destroyed');
        assert.ok(Date.now() - t0 < 3_000, 'promptly');
      } finally {
        x.close();
      }
    });
  }

  test('signal aborts: AbortError, both sockets destroyed, bytesTransferred reported', async () => {
    const ac = new AbortController();
    const x = await relay('tcp', { signal: ac.signal });
    try {
      x.c1.write(seededBytes(200_000, 1));
      x.c2.resume();
      let n = 0;
      await withTimeout(new Promise<void>((r) => x.c2.on('data', (d: Buffer) => (n += d.length) >= 200_000 && r())), 10_000, 'bytes');
      ac.abort();
      const err = (await withTimeout(x.up.then(() => null, (e: unknown) => e), 5_000, 'abort')) as Error & { code?: string; bytesTransferred?: number };
      assert.equal(err?.name, 'AbortError');
      assert.equal(err.bytesTransferred, 200_000);
      assert.ok(x.s1.destroyed && x.s2.destroyed, 'both sockets destroyed');
      await withTimeout(Promise.all([once(x.c1, 'end'), once(x.c2, 'end')]), 5_000, 'peers see EOF');
    } finally {
      x.close();
    }
  });

  test('an already aborted signal rejects before any byte moves', async () => {
    const p1 = await halfOpenPair('tcp', dir);
    const p2 = await halfOpenPair('tcp', dir);
    try {
      const err = await splice(p1.b, p2.a, { signal: AbortSignal.abort() }).then(() => null, (e: Error) => e);
      assert.equal(err?.name, 'AbortError');
    } finally {
      p1.close();
      p2.close();
    }
  });

  test('destroying a socket mid-splice rejects with ZCOPY_ERR_SOCKET_CLOSED', async () => {
    const x = await relay('unix');
    try {
      x.c1.write('hello');
      const first = once(x.c2, 'data', 5_000);
      x.c2.resume();
      await first;
      x.s2.destroy();
      const err = (await withTimeout(x.up.then(() => null, (e: unknown) => e), 5_000, 'reject')) as { code?: string };
      assert.equal(err?.code, 'ZCOPY_ERR_SOCKET_CLOSED');
      assert.ok(x.s1.destroyed, 'the other socket is destroyed too');
      await withTimeout(once(x.c1, 'end'), 5_000, 'c1 sees EOF');
    } finally {
      x.close();
    }
  });

  test('argument errors throw synchronously', async () => {
    const p = await halfOpenPair('tcp', dir);
    try {
      assert.throws(() => splice({} as net.Socket, p.b), { code: 'ERR_INVALID_ARG_TYPE' });
      assert.throws(() => splice(p.a, 'x' as unknown as net.Socket), { code: 'ERR_INVALID_ARG_TYPE' });
      assert.throws(() => splice(p.a, p.b, { length: -1 }), { code: 'ERR_OUT_OF_RANGE' });
      assert.throws(() => splice(p.a, p.b, { length: 1.5 }), { code: 'ERR_OUT_OF_RANGE' });
      assert.throws(() => splice(p.a, p.b, { end: 'yes' as unknown as boolean }), { code: 'ERR_INVALID_ARG_TYPE' });
      assert.throws(() => splice(p.a, p.b, { mechanism: 'sendfile' as 'auto' }), { code: 'ERR_INVALID_ARG_VALUE' });
      assert.throws(() => splice(p.a, p.b, { signal: {} as AbortSignal }), { code: 'ERR_INVALID_ARG_TYPE' });
    } finally {
      p.close();
    }
  });
});

describe(`splice: resources (${NATIVE ? 'native' : 'portable'})`, () => {
  for (const mechanism of NATIVE ? (['splice', 'copy'] as const) : (['auto'] as const)) test(`${mechanism}: a stalled reader costs ~0 CPU, also after its peer half-closed`, async () => {
    const x = await relay('tcp', { mechanism });
    try {
      const data = seededBytes(24 * 1024 * 1024, 3);
      // c2 does not read: the relay fills every buffer and must wait.
      x.c2.pause();
      x.c1.write(data);
      await sleep(300);
      const stalled = await cpuOver(500);
      // c2 half-closes while still not reading: s2 now reports EPOLLRDHUP,
      // which must not wake the wait for writability over and over.
      x.c2.end();
      await sleep(100);
      const halfClosed = await cpuOver(500);
      assert.ok(stalled < 60, `stalled relay used ${stalled.toFixed(1)} ms CPU in 500 ms`);
      assert.ok(halfClosed < 60, `stalled relay after half-close used ${halfClosed.toFixed(1)} ms CPU in 500 ms`);
      const got = readWithStalls(x.c2, rng(9));
      x.c1.end();
      const r = await got;
      assert.equal(r.sha, sha(data));
    } finally {
      x.close();
    }
  });

  test('no fd leak over 200 spliced connections (sequential and concurrent, with resets)', async () => {
    const base = fdCount();
    const one = async (i: number) => {
      const x = await relay(i % 2 ? 'unix' : 'tcp');
      x.c1.resume();
      x.c2.resume();
      if (i % 10 === 0) {
        // TCP only: resetAndDestroy() needs a TCP handle.
        x.c1.write('bye');
        x.c1.resetAndDestroy();
        x.c2.on('error', () => {});
        // Node may read a reset that follows data as EOF: end the other side too.
        x.c2.end();
      } else {
        x.c1.end(seededBytes(20_000 + i, i));
        x.c2.end(seededBytes(10_000, i));
      }
      await withTimeout(Promise.allSettled([x.up, x.down]), 10_000, `relay ${i}`);
      x.close();
      await Promise.all([closed(x.c1), closed(x.c2), closed(x.s1), closed(x.s2)]);
    };
    for (let i = 0; i < 50; i++) await one(i);
    for (let b = 0; b < 3; b++) await Promise.all(Array.from({ length: 50 }, (_, i) => one(50 + b * 50 + i)));
    const now = await fdsBackTo(base);
    assert.equal(now, base, `fds before ${base}, after ${now}`);
  });

  test('TLS sockets take the portable path with reason "tls"', async (t) => {
    if (spawnSync('openssl', ['version']).status !== 0) return t.skip('openssl is not installed: cannot make a test certificate');
    const tls = await import('node:tls');
    const key = path.join(dir, 'key.pem');
    const cert = path.join(dir, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' });
    resetStats();
    const data = seededBytes(1_000_000, 4);
    const plain = await halfOpenPair('tcp', dir);
    const srv = tls.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert), allowHalfOpen: true }, (s) => {
      void splice(s, plain.a).catch(() => {});
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    try {
      const got = readWithStalls(plain.b, rng(3));
      const c = tls.connect({ port: (srv.address() as net.AddressInfo).port, host: '127.0.0.1', rejectUnauthorized: false });
      await once(c, 'secureConnect');
      c.end(data);
      const r = await got;
      assert.equal(r.sha, sha(data));
      assert.equal(stats().fallbacks[NATIVE ? 'tls' : 'forced'], 1);
      assert.equal(stats().bytesByPath.portable, data.length);
      c.destroy();
    } finally {
      srv.close();
      plain.close();
    }
  });
});
