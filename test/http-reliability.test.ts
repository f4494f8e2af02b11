// Issue 8, HTTP serving under hostile or careless clients: HTTP/2 streams
// reset mid-body (item 3), aborts behind a middleware that wraps write/end
// (item 6), a pipelined flood on one connection (item 8), and clients that
// stop reading (item 9, the send timeout). Each asserts what must hold: the
// server alive, every response's promise settled, fds back at baseline,
// bounded memory.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import zlib from 'node:zlib';
import { serveFile, serveStatic, type ServeResult } from '../src/http/index.js';
import { makeFile, MODE, openFds, rng, settledFds, sha, tmpDir, withTimeout } from './helpers.js';
import { listen, ResponseParser, req, until } from './http-helpers.js';

const HTTP_INDEX = pathToFileURL(fileURLToPath(new URL('../src/http/index.js', import.meta.url))).href;
const CLI_MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const root = tmpDir('zcopy-rel-');
let big: { path: string; data: Buffer };
let large: { path: string; data: Buffer };
let small: { path: string; data: Buffer };
const children: ChildProcess[] = [];

before(() => {
  big = makeFile(root, 'big.bin', 4 * 1024 * 1024 + 7, 81);
  large = makeFile(root, 'large.bin', 512 * 1024, 82);
  small = makeFile(root, 'small.bin', 64 * 1024, 83);
});

after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  fs.rmSync(root, { recursive: true, force: true });
});

function fdsOf(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

/** Settles to true/false, never rejects: how many of `ps` are still pending after they had `ms`. */
async function pendingAfter(ps: Array<Promise<unknown>>, ms: number): Promise<number> {
  let settled = 0;
  await withTimeout(
    Promise.all(ps.map((p) => p.then(() => settled++, () => settled++))),
    ms,
    'every response promise to settle',
  ).catch(() => {});
  return ps.length - settled;
}

// ---- item 3 (and item 6 for HTTP/2 multipart): streams reset mid-body -----

/**
 * An HTTP/2 server in a child process, so a crash (SIGSEGV) fails the test
 * instead of killing the runner. `/__stats` answers how many handler
 * promises are still pending.
 */
const H2_CHILD = `
import http2 from 'node:http2';
const { serveStatic } = await import(process.env.ZC_HTTP_INDEX);
const handler = serveStatic(process.env.ZC_ROOT, { sendTimeout: 0, openFileCache: false }); // per-response fds are measured
let pending = 0, settled = 0, errors = 0;
const server = http2.createServer((req, res) => {
  if (req.url === '/__stats') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ pending, settled, errors }));
    return;
  }
  pending++;
  handler(req, res).then((r) => { pending--; settled++; if (r.error) errors++; }, () => { pending--; settled++; errors++; });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
`;

async function startH2Child(): Promise<{ child: ChildProcess; port: number; exited: Promise<string> }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', H2_CHILD], {
    env: { ...process.env, ZC_HTTP_INDEX: HTTP_INDEX, ZC_ROOT: root },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<string>((r) => child.once('exit', (code, sig) => r(`exit code ${code} signal ${sig} ${err}`)));
  const port = await withTimeout(
    Promise.race([
      new Promise<number>((r) => child.stdout!.once('data', (d: Buffer) => r(Number(String(d).trim())))),
      exited.then((why) => {
        throw new Error(`h2 server child died at start: ${why}`);
      }),
    ]),
    15_000,
    'h2 child start',
  );
  return { child, port, exited };
}

function h2get(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: Buffer }> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const s = session.request(headers);
      const chunks: Buffer[] = [];
      let h: http2.IncomingHttpHeaders = {};
      s.on('response', (hh) => (h = hh));
      s.on('data', (d: Buffer) => chunks.push(d));
      s.on('end', () => resolve({ status: Number(h[':status']), headers: h, body: Buffer.concat(chunks) }));
      s.on('error', reject);
      s.end();
    }),
    30_000,
    `h2 GET ${String(headers[':path'])}`,
  );
}

describe(`HTTP/2 streams reset mid-body (issue 8 items 3 and 6) [${MODE}]`, () => {
  it('200 streams cancelled at random offsets (whole file, one range, multipart): server alive, every response settled, fds back to baseline', async () => {
    const { child, port, exited } = await startH2Child();
    let died: string | undefined;
    void exited.then((why) => (died = why));
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    try {
      // Warm up (lazy modules, the pool), then take the baseline.
      const first = await h2get(session, { ':path': '/big.bin' });
      assert.equal(sha(first.body), sha(big.data));
      const baseline = fdsOf(child.pid!);

      const rand = rng(8003);
      const N = 200;
      const shapes = ['whole', 'range', 'whole', 'range', 'multipart'] as const;
      const closed: Array<Promise<void>> = [];
      let cancelled = 0;
      for (let i = 0; i < N; i++) {
        const shape = shapes[i % shapes.length]!;
        const headers: http2.OutgoingHttpHeaders = { ':path': '/big.bin' };
        if (shape === 'range') headers.range = 'bytes=1000-3999999';
        if (shape === 'multipart') headers.range = 'bytes=0-1499999,2000000-3999999';
        // Cancel after 1 B..3 MB: mid-body for every shape (the shortest,
        // multipart, is 3.5 MB).
        const limit = 1 + Math.floor(rand() * 3_000_000);
        const s = session.request(headers);
        let got = 0;
        s.on('data', (d: Buffer) => {
          got += d.length;
          if (got >= limit && !s.closed && !s.destroyed) {
            cancelled++;
            s.close(http2.constants.NGHTTP2_CANCEL);
          }
        });
        s.on('error', () => {});
        s.end();
        closed.push(new Promise<void>((r) => s.once('close', () => r())));
      }
      await withTimeout(
        Promise.race([
          Promise.all(closed),
          exited.then((why) => {
            throw new Error(`the HTTP/2 server died: ${why}`);
          }),
        ]),
        60_000,
        'all 200 streams closed',
      );
      if (cancelled < N) {
        // Streams also close when the session drops: was it a crash?
        const why = await withTimeout(exited, 5000, 'the server to exit').catch(() => undefined);
        assert.fail(`only ${cancelled} of ${N} streams were cancelled mid-body; the server ${why ? `died: ${why}` : 'is alive'}`);
      }
      assert.equal(died, undefined, `server died: ${died}`);

      // Alive and correct: a normal request still works, in full.
      const again = await h2get(session, { ':path': '/big.bin', range: 'bytes=5-1048580' });
      assert.equal(again.status, 206);
      assert.equal(sha(again.body), sha(big.data.subarray(5, 1048581)));

      // Every handler promise settled; the fds came back.
      await until(() => died !== undefined || fdsOf(child.pid!) <= baseline, 10_000, `server fds back to ${baseline}`).catch(() => {});
      assert.equal(died, undefined, `server died: ${died}`);
      const stats = await h2get(session, { ':path': '/__stats' });
      const st = JSON.parse(stats.body.toString()) as { pending: number; settled: number; errors: number };
      assert.equal(st.pending, 0, `handler promises still pending: ${stats.body}`);
      assert.ok(st.settled >= N + 2, `settled ${st.settled}`);
      assert.ok(st.errors >= N * 0.9, `most cancelled responses report an error (${st.errors})`);
      assert.ok(fdsOf(child.pid!) <= baseline, `server fds ${fdsOf(child.pid!)} vs baseline ${baseline}`);
    } finally {
      session.destroy();
      child.kill('SIGKILL');
    }
  });
});

// ---- item 6: aborts behind a middleware that wraps write/end -------------

/**
 * What compression() does to a response, minus the negotiation: write/end
 * replaced by a gzip stream whose output goes to the real write, 'drain'
 * listeners routed to the gzip stream, the gzip stream paused while the
 * real write says "full" and resumed on the response's own 'drain'.
 */
function gzipWrap(res: ServerResponse): void {
  const gz = zlib.createGzip({ level: 1 });
  const write = res.write.bind(res) as (c: Buffer) => boolean;
  const end = res.end.bind(res) as () => ServerResponse;
  const on = res.on.bind(res);
  let started = false;
  const head = (): void => {
    if (started) return;
    started = true;
    res.removeHeader('Content-Length');
    res.setHeader('Content-Encoding', 'gzip');
  };
  gz.on('data', (d: Buffer) => {
    if (!write(d)) gz.pause();
  });
  gz.on('end', () => end());
  on('drain', () => gz.resume());
  res.write = function (chunk: Buffer): boolean {
    head();
    return gz.write(chunk);
  } as typeof res.write;
  res.end = function (chunk?: Buffer): ServerResponse {
    head();
    if (chunk) gz.write(chunk);
    gz.end();
    return res;
  } as typeof res.end;
  res.on = function (ev: string, fn: (...a: unknown[]) => void) {
    if (ev === 'drain') {
      gz.on(ev, fn);
      return res;
    }
    return on(ev, fn);
  } as typeof res.on;
}

describe(`aborted downloads behind a write/end wrapper (issue 8 item 6) [${MODE}]`, () => {
  it('200 clients abort mid-body: every response settles, fds back to baseline', async () => {
    const handler = serveStatic(root, { sendTimeout: 0 });
    const results: Array<Promise<ServeResult>> = [];
    const server = http.createServer((rq: IncomingMessage, rs: ServerResponse) => {
      gzipWrap(rs);
      results.push(handler(rq, rs));
    });
    const l = await listen(server);
    try {
      // A complete download through the wrapper first: it works, and warms up.
      const whole = await withTimeout(
        new Promise<Buffer>((resolve, reject) => {
          http.get(`${l.url}/big.bin`, { agent: false }, (r) => {
            const chunks: Buffer[] = [];
            r.on('data', (d: Buffer) => chunks.push(d));
            r.on('end', () => resolve(zlib.gunzipSync(Buffer.concat(chunks))));
            r.on('error', reject);
          }).on('error', reject);
        }),
        30_000,
        'a full gzip download',
      );
      assert.equal(sha(whole), sha(big.data));
      await results[0];
      const baseline = await settledFds();

      const rand = rng(8006);
      const N = 200;
      let next = 0;
      const one = async (): Promise<void> => {
        const i = next++;
        const limit = 1 + Math.floor(rand() * 1_000_000);
        const extra: Record<string, string> = i % 4 === 1 ? { Range: 'bytes=0-99999,200000-3999999' } : {};
        await withTimeout(
          new Promise<void>((resolve) => {
            const sock = l.connect();
            let got = 0;
            sock.on('data', (d: Buffer) => {
              got += d.length;
              if (got >= limit) sock.destroy();
            });
            sock.on('error', () => {});
            sock.on('close', () => resolve());
            sock.write(req('GET', '/big.bin', extra));
          }),
          30_000,
          `abort ${i}`,
        );
      };
      const workers = Array.from({ length: 20 }, async () => {
        while (next < N) await one();
      });
      await Promise.all(workers);
      assert.equal(results.length, N + 1);
      const pending = await pendingAfter(results, 20_000);
      assert.equal(pending, 0, `${pending} of ${N} aborted responses never settled`);
      const fds = await settledFds();
      assert.ok(fds <= baseline + 2, `fds ${fds} vs baseline ${baseline}: file fds leaked`);
    } finally {
      await l.close();
    }
  });
});

// ---- item 8: a pipelined flood on one connection --------------------------

describe(`pipelined flood on one connection (issue 8 item 8) [${MODE}]`, () => {
  it('2000 pipelined GETs, not read: fds and memory stay bounded; then all 2000 answers, correct and in order', async () => {
    const handler = serveStatic(root, { sendTimeout: 0, openFileCache: false }); // per-response fds are measured (the open-file cache holds its own)
    let calls = 0;
    const results: Array<Promise<ServeResult>> = [];
    const server = http.createServer((rq, rs) => {
      calls++;
      results.push(handler(rq, rs));
    });
    let conn: net.Socket | undefined;
    server.on('connection', (s: net.Socket) => (conn = s));
    const l = await listen(server);
    const client = l.connect();
    try {
      await new Promise<void>((r) => client.once('connect', () => r()));
      client.pause();
      const N = 2000;
      const expected: Buffer[] = [];
      let text = '';
      for (let i = 0; i < N; i++) {
        // Distinct ranges so that order is checked byte by byte: 3 of 4
        // below the 256 KiB threshold (buffered), 1 of 4 above (zero-copy).
        if (i % 4 === 3) {
          const len = 270 * 1024;
          expected.push(large.data.subarray(i, i + len));
          text += req('GET', '/large.bin', { Range: `bytes=${i}-${i + len - 1}` });
        } else {
          const len = 40 * 1024;
          expected.push(small.data.subarray(i, i + len));
          text += req('GET', '/small.bin', { Range: `bytes=${i}-${i + len - 1}` });
        }
      }
      const baseFds = await settledFds();
      const baseMem = process.memoryUsage().arrayBuffers;
      let peakFds = baseFds;
      let peakMem = baseMem;
      const sample = (): void => {
        peakFds = Math.max(peakFds, openFds());
        peakMem = Math.max(peakMem, process.memoryUsage().arrayBuffers);
      };
      client.write(text);
      // Watch until the server has stalled on the unread socket: no new
      // request dispatched and no byte written for 25 samples in a row.
      let lastKey = '';
      let still = 0;
      await until(
        () => {
          sample();
          const key = `${calls}/${conn?.bytesWritten ?? 0}`;
          still = key === lastKey && calls > 0 ? still + 1 : 0;
          lastKey = key;
          return still >= 25;
        },
        30_000,
        'the server to stall on the unread connection',
      );
      sample();
      const held = peakFds - baseFds;
      const heldMiB = (peakMem - baseMem) / 1048576;
      process.stdout.write(`# pipelined flood (${MODE}): ${calls} of ${N} requests dispatched while stalled, peak +${held} fds, +${heldMiB.toFixed(1)} MiB of buffers\n`);
      assert.ok(held < 20, `the server held ${held} fds for one pipelining connection`);
      // The cap: reading stopped with 16 responses queued, so only what one
      // read had brought in was dispatched, not the whole flood.
      assert.ok(calls < N, `the server kept reading: all ${calls} requests dispatched while none could be answered`);
      assert.ok(heldMiB < 24, `the server held ${heldMiB.toFixed(1)} MiB of buffers for one pipelining connection`);

      // Now read everything: all 2000, correct and in order.
      const parser = new ResponseParser(Array(N).fill('GET'));
      await withTimeout(
        new Promise<void>((resolve, reject) => {
          client.on('data', (d: Buffer) => {
            try {
              parser.push(d);
            } catch (err) {
              reject(err);
              return;
            }
            if (parser.responses.length >= N) resolve();
          });
          client.on('close', () => reject(new Error(`connection closed after ${parser.responses.length} responses`)));
          client.resume();
        }),
        120_000,
        `${N} responses`,
      );
      for (let i = 0; i < N; i++) {
        const r = parser.responses[i]!;
        assert.equal(r.status, 206, `response ${i}`);
        if (!r.body.equals(expected[i]!)) assert.fail(`response ${i}: body differs (${r.body.length} vs ${expected[i]!.length} bytes)`);
      }
      const pending = await pendingAfter(results, 10_000);
      assert.equal(pending, 0);
      assert.ok((await settledFds()) <= baseFds, 'fds back to baseline');
    } finally {
      client.destroy();
      await l.close();
    }
  });

  it('Fastify plugin: 200 pipelined GETs, unread, hold no fds; then all answered in order', async () => {
    const { default: Fastify } = await import('fastify');
    const app = Fastify();
    await app.register(import('../src/http/fastify.js'), { root, prefix: '/static/', sendTimeout: 0 });
    let conn: net.Socket | undefined;
    app.server.on('connection', (c: net.Socket) => (conn = c));
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as net.AddressInfo).port;
    const client = net.connect(port, '127.0.0.1');
    try {
      await new Promise<void>((r) => client.once('connect', () => r()));
      client.pause();
      const N = 200;
      const baseFds = await settledFds();
      let peak = baseFds;
      client.write(req('GET', '/static/large.bin').repeat(N));
      let last = -1;
      let still = 0;
      await until(
        () => {
          peak = Math.max(peak, openFds());
          const w = conn?.bytesWritten ?? 0;
          still = w === last && w > 0 ? still + 1 : 0;
          last = w;
          return still >= 25;
        },
        30_000,
        'the server to stall',
      );
      assert.ok(peak - baseFds < 20, `held ${peak - baseFds} fds`);
      const parser = new ResponseParser(Array(N).fill('GET'));
      await withTimeout(
        new Promise<void>((resolve, reject) => {
          client.on('data', (d: Buffer) => {
            parser.push(d);
            if (parser.responses.length >= N) resolve();
          });
          client.on('close', () => reject(new Error(`closed after ${parser.responses.length}`)));
          client.resume();
        }),
        60_000,
        `${N} responses`,
      );
      const want = sha(large.data);
      for (let i = 0; i < N; i++) assert.equal(sha(parser.responses[i]!.body), want, `response ${i}`);
    } finally {
      client.destroy();
      await app.close();
    }
  });

  /**
   * `n` pipelined GETs of `target` on one connection that reads nothing,
   * closed once all are dispatched: every response settles, the queued
   * ones never served (499, no bytes); the first cut short of `cutAt`.
   */
  async function closeBeforeTurn(options: Parameters<typeof serveStatic>[1], target: string, n: number, cutAt?: number): Promise<void> {
    const handler = serveStatic(root, options);
    const results: Array<Promise<ServeResult>> = [];
    const server = http.createServer((rq, rs) => results.push(handler(rq, rs)));
    const l = await listen(server);
    try {
      const client = l.connect();
      client.on('error', () => {});
      client.pause();
      client.write(req('GET', target).repeat(n));
      await until(() => results.length === n, 10_000, `${n} dispatched`);
      client.destroy();
      const pending = await pendingAfter(results, 10_000);
      assert.equal(pending, 0);
      const all = await Promise.all(results);
      if (cutAt !== undefined) assert.ok(all[0]!.bytes < cutAt, 'the first was cut by the close');
      assert.ok(all.slice(1).every((r) => r.status === 499 && r.bytes === 0), 'queued ones were never served');
    } finally {
      await l.close();
    }
  }

  it('the same with default options: a body the cache does not keep (12 MiB) stays in flight; the queued ones settle unserved', async () => {
    const huge = makeFile(root, 'huge-pipelined.bin', 12 * 1024 * 1024, 83);
    try {
      await closeBeforeTurn({ sendTimeout: 0 }, '/' + path.basename(huge.path), 20, huge.data.length);
    } finally {
      fs.rmSync(huge.path, { force: true });
    }
  });

  it('a pipelined request whose connection closes before its turn opens nothing and settles', async () => {
    // No body cache, and 12 MiB: over loopback the socket buffers can
    // absorb a cached body in one write, or even 4 MiB sent in chunks (a
    // portable-path CI run did), and then the first response finishes and
    // the second gets its turn before the close; this test needs the first
    // in flight.
    const huge = makeFile(root, 'huge-pipelined-2.bin', 12 * 1024 * 1024, 84);
    try {
      await closeBeforeTurn({ sendTimeout: 0, openFileCache: { bodyBytes: 0 } }, '/' + path.basename(huge.path), 50);
    } finally {
      fs.rmSync(huge.path, { force: true });
    }
  });
});

// ---- item 9: the send timeout ----------------------------------------------

async function stalledDownload(l: Awaited<ReturnType<typeof listen>>, target: string): Promise<net.Socket> {
  const client = l.connect();
  client.on('error', () => {});
  await new Promise<void>((r) => client.once('connect', () => r()));
  // Do not read: the socket buffers fill and the server can send no more.
  client.pause();
  client.write(req('GET', target));
  return client;
}

describe(`send timeout (issue 8 item 9) [${MODE}]`, () => {
  let bigger: { path: string; data: Buffer };
  before(() => {
    // Larger than loopback socket buffers can absorb.
    bigger = makeFile(root, 'bigger.bin', 24 * 1024 * 1024, 89);
  });

  for (const how of ['direct', 'wrapped'] as const) {
    it(`a client that stops reading is cut after sendTimeout (${how === 'direct' ? 'zero-copy path' : 'streamed path, write/end wrapped'}): connection destroyed, fds back`, async () => {
      const handler = serveStatic(root, { sendTimeout: 300 });
      const results: Array<Promise<ServeResult>> = [];
      const conns: net.Socket[] = [];
      const server = http.createServer((rq, rs) => {
        if (how === 'wrapped') {
          // A pass-through wrapper: the streamed path, no compression.
          const write = rs.write.bind(rs) as (c: Buffer) => boolean;
          const end = rs.end.bind(rs) as (c?: Buffer) => ServerResponse;
          rs.write = ((c: Buffer) => write(c)) as typeof rs.write;
          rs.end = ((c?: Buffer) => end(c)) as typeof rs.end;
        }
        results.push(handler(rq, rs));
      });
      server.on('connection', (s: net.Socket) => conns.push(s));
      const l = await listen(server);
      try {
        const baseline = await settledFds();
        const started = performance.now();
        const client = await stalledDownload(l, '/bigger.bin');
        await until(() => results.length === 1, 10_000, 'the request');
        const r = await withTimeout(results[0]!, 15_000, 'the send timeout');
        const took = performance.now() - started;
        assert.equal((r.error as { code?: string } | undefined)?.code, 'ZCOPY_ERR_TIMEOUT', `error: ${r.error?.message}`);
        assert.ok(r.bytes < bigger.data.length, 'the body was cut');
        assert.ok(took >= 300, `fired after ${took.toFixed(0)} ms`);
        assert.ok(conns[0]!.destroyed, 'the server destroyed the connection');
        client.destroy();
        const fds = await settledFds();
        assert.ok(fds <= baseline, `fds ${fds} vs baseline ${baseline}`);
      } finally {
        await l.close();
      }
    });
  }

  it('a stop-and-go reader whose pauses are shorter than sendTimeout is not cut', async () => {
    // 2 s against 250 ms pauses: margin for a loaded machine.
    const handler = serveStatic(root, { sendTimeout: 2000 });
    const results: Array<Promise<ServeResult>> = [];
    const server = http.createServer((rq, rs) => results.push(handler(rq, rs)));
    const l = await listen(server);
    try {
      const client = await stalledDownload(l, '/bigger.bin');
      const parser = new ResponseParser(['GET']);
      // Read ~2 MiB, stop for 250 ms, again: every stall is shorter than
      // the timeout, and each burst frees enough socket buffer for the
      // server's next write.
      let burst = 0;
      let timer: NodeJS.Timeout | undefined;
      client.on('data', (d: Buffer) => {
        parser.push(d);
        burst += d.length;
        if (burst >= 2 << 20) {
          burst = 0;
          client.pause();
          timer = setTimeout(() => client.resume(), 250);
        }
      });
      client.resume();
      try {
        await until(() => parser.responses.length === 1 || client.destroyed || client.readableEnded, 60_000, 'the whole body');
      } finally {
        clearTimeout(timer);
        client.destroy();
      }
      const r = await withTimeout(results[0]!, 5000, 'result');
      assert.equal(r.error, undefined, `cut: ${r.error?.message}`);
      assert.equal(parser.responses.length, 1);
      assert.equal(sha(parser.responses[0]!.body), sha(bigger.data));
    } finally {
      await l.close();
    }
  });

  it('HTTP/2: a stream its client stops reading is reset after sendTimeout; the session and fds survive', async () => {
    const handler = serveStatic(root, { sendTimeout: 300, openFileCache: false }); // per-response fds are measured
    const results: Array<Promise<ServeResult>> = [];
    const server = http2.createServer((rq, rs) => results.push(handler(rq, rs)));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    try {
      await h2get(session, { ':path': '/small.bin' });
      await results[0];
      const baseline = await settledFds();
      const s = session.request({ ':path': '/big.bin' });
      s.on('error', () => {});
      // Never read: flow control stops the stream at its window.
      s.pause();
      s.end();
      await until(() => results.length === 2, 10_000, 'the request');
      const r = await withTimeout(results[1]!, 15_000, 'the send timeout');
      assert.equal((r.error as { code?: string } | undefined)?.code, 'ZCOPY_ERR_TIMEOUT');
      await withTimeout(new Promise<void>((res) => (s.closed ? res() : s.once('close', () => res()))), 5000, 'stream reset');
      assert.equal(s.rstCode, http2.constants.NGHTTP2_CANCEL);
      const again = await h2get(session, { ':path': '/small.bin' });
      assert.equal(sha(again.body), sha(small.data));
      assert.ok((await settledFds()) <= baseline, 'fds back');
    } finally {
      session.destroy();
      await new Promise((r) => server.close(r));
    }
  });

  it('sendTimeout is validated; serveFile takes it too', async () => {
    assert.throws(() => serveStatic(root, { sendTimeout: -1 }), { code: 'ERR_INVALID_ARG_VALUE' });
    assert.throws(() => serveStatic(root, { sendTimeout: 'soon' }), { code: 'ERR_INVALID_ARG_VALUE' });
    assert.throws(() => serveStatic(root, { sendTimeout: true as unknown as number }), { code: 'ERR_INVALID_ARG_TYPE' });
    serveStatic(root, { sendTimeout: '30s' });
    serveStatic(root, { sendTimeout: 0 });
    const results: Array<Promise<ServeResult>> = [];
    const server = http.createServer((rq, rs) => results.push(serveFile(rq, rs, path.join(root, 'bigger.bin'), { sendTimeout: '250ms' })));
    const l = await listen(server);
    try {
      const client = await stalledDownload(l, '/');
      await until(() => results.length === 1, 10_000, 'the request');
      const r = await withTimeout(results[0]!, 15_000, 'the send timeout');
      assert.equal((r.error as { code?: string } | undefined)?.code, 'ZCOPY_ERR_TIMEOUT');
      client.destroy();
    } finally {
      await l.close();
    }
  });
});

describe(`zcopy serve --send-timeout (issue 8 item 9) [${MODE}]`, () => {
  async function startServe(args: string[]): Promise<{ child: ChildProcess; port: number; lines: string[]; exited: Promise<number | null> }> {
    const child = spawn(process.execPath, [CLI_MAIN, 'serve', root, '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    const lines: string[] = [];
    let partial = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      partial += d;
      const parts = partial.split('\n');
      partial = parts.pop()!;
      lines.push(...parts);
    });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    await until(() => lines.some((x) => / at http:\/\//.test(x)) || child.exitCode !== null, 15_000, 'the serving line');
    if (child.exitCode !== null) return { child, port: 0, lines: [...lines, err], exited };
    const port = Number(/:(\d+)\/$/.exec(lines.find((x) => / at http:\/\//.test(x))!)![1]);
    return { child, port, lines, exited };
  }

  it('a non-reading client is cut after --send-timeout 400ms, logged with the reason; fds back', async () => {
    const s = await startServe(['--send-timeout', '400ms']);
    try {
      const l = { connect: () => net.connect(s.port, '127.0.0.1') } as Awaited<ReturnType<typeof listen>>;
      // Warm up, then the baseline.
      const warm = await stalledDownload(l, '/small.bin');
      warm.resume();
      await new Promise<void>((r) => warm.once('data', () => r()));
      warm.destroy();
      await until(() => s.lines.some((x) => x.startsWith('GET /small.bin 200')), 5000, 'warm-up log line');
      let base = fdsOf(s.child.pid!);
      for (let i = 0; i < 50 && fdsOf(s.child.pid!) !== base; i++) base = fdsOf(s.child.pid!);
      const client = await stalledDownload(l, '/bigger.bin');
      await until(() => s.lines.some((x) => x.startsWith('GET /bigger.bin')), 15_000, 'the timeout log line');
      const line = s.lines.find((x) => x.startsWith('GET /bigger.bin'))!;
      assert.match(line, / error=ZCOPY_ERR_TIMEOUT$/);
      client.destroy();
      await until(() => fdsOf(s.child.pid!) <= base, 5000, `server fds back to ${base}`);
    } finally {
      s.child.kill('SIGKILL');
    }
  });

  it('--send-timeout accepts 30s, 5m, 1500ms, plain ms and 0; refuses junk with exit 2', async () => {
    for (const v of ['30s', '5m', '1500ms', '2500', '0']) {
      const s = await startServe(['--send-timeout', v]);
      assert.ok(s.port > 0, `--send-timeout ${v}: ${s.lines.join('\n')}`);
      s.child.kill('SIGKILL');
    }
    const bad = await startServe(['--send-timeout', 'soon']);
    assert.equal(await withTimeout(bad.exited, 10_000, 'exit'), 2);
  });
});
