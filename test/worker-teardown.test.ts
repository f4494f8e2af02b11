// Worker threads that end while zcopy waits (issue 8, item 1).
//
// A worker that is terminate()d or calls process.exit() while a transfer
// waits for writability tears its environment down with zcopy's poll handles
// still open. Their close callbacks used to run after the addon was unloaded
// and the whole process died with SIGSEGV. Each round here runs in a child
// process, so a crash shows as the child's exit signal instead of killing the
// test runner. The child's main thread never loads zcopy (as in an app that
// uses it only in workers), so the addon really is unmapped when a worker
// ends; it also plays the stalled peers, and checks that every connection the
// worker had really closes (a dup zcopy kept would hold it open) and that the
// process has no more fds after the rounds than before.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { NATIVE, makeFile, tmpDir, withTimeout } from './helpers.js';

const dir = tmpDir('zcopy-worker-');
const lib = pathToFileURL(path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'src', 'index.js')).href;
const nativeLib = pathToFileURL(path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'src', 'native.js')).href;
let big: string;
let script: string;

// The child: main thread = stalled peers + the round driver; worker = zcopy.
const CHILD = String.raw`
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import net from 'node:net';

if (isMainThread) {
  const [scenario, endHow, roundsArg, file] = process.argv.slice(2);
  const rounds = Number(roundsArg);
  // Stalled peers: accept, never read. 'source' also writes without end.
  const held = [];
  const sink = net.createServer((s) => { s.pause(); held.push(s); });
  const source = net.createServer((s) => {
    held.push(s);
    const chunk = Buffer.alloc(1 << 20, 120);
    const pump = () => { while (!s.destroyed && s.write(chunk)); };
    s.on('drain', pump);
    s.on('error', () => {});
    pump();
  });
  await new Promise((r) => sink.listen(0, '127.0.0.1', r));
  await new Promise((r) => source.listen(0, '127.0.0.1', r));
  const ports = { sink: sink.address().port, source: source.address().port };
  const deadline = (ms, what) => new Promise((_, rej) => setTimeout(() => rej(new Error('timed out: ' + what)), ms).unref());
  let waited = 0;
  const fs = await import('node:fs');
  const fds = () => fs.readdirSync('/proc/self/fd').length;
  let fds0 = 0;
  for (let i = 0; i < rounds; i++) {
    // After one warm-up round: a worker's first start opens fds that stay
    // (libuv's threadpool, the inspector), later rounds must not add any.
    if (i === 1) fds0 = fds();
    const how = endHow === 'mixed' ? (i % 2 ? 'exit' : 'terminate') : endHow;
    held.length = 0;
    const w = new Worker(new URL(import.meta.url), { workerData: { scenario, how, ports, file, lib: ${JSON.stringify('LIB')}, nativeLib: ${JSON.stringify('NATIVELIB')} } });
    const clients = [];
    let real = false;
    const exited = new Promise((resolve, reject) => {
      w.on('error', reject);
      w.on('exit', resolve);
      w.on('message', (m) => {
        if (m.proxyPort) {
          // A stalled client of the worker's proxy.
          const c = net.connect(m.proxyPort, '127.0.0.1');
          c.on('error', () => {});
          c.pause();
          clients.push(c);
        }
        if (m.waiting) {
          real ||= m.real;
          if (how === 'terminate') w.terminate();
        }
      });
    });
    await Promise.race([exited, deadline(20000, 'round ' + i + ' (' + scenario + '/' + how + ')')]);
    if (real) waited++;
    // Every connection of the worker must close: drain what is buffered
    // and wait for the end (a dup kept open would stall it forever).
    const socks = [...held, ...clients];
    await Promise.race([
      Promise.all(socks.map((s) => new Promise((r) => {
        if (s.destroyed) return r();
        s.on('close', r);
        s.on('end', () => s.destroy());
        s.on('error', () => s.destroy());
        s.resume();
      }))),
      deadline(20000, 'connections of round ' + i + ' to close (' + socks.length + ')'),
    ]);
  }
  sink.close();
  source.close();
  await new Promise((r) => setTimeout(r, 50));
  console.log('rounds ' + rounds + ' waited ' + waited + ' fds ' + (fds() - fds0));
} else {
  const { scenario, how, ports, file } = workerData;
  const z = await import(workerData.lib);
  const { native } = await import(workerData.nativeLib);
  let signalled = false;
  const ready = (real) => {
    if (signalled) return;
    signalled = true;
    parentPort.postMessage({ waiting: true, real });
    if (how === 'exit') process.exit(0);
  };
  // Waiting: a writability wait began (or, without the addon, a moment of
  // backpressure: the portable path has nothing native to tear down).
  const whenWaiting = (key = 'waits') => {
    const t = setInterval(() => {
      if (z.stats()[key] > 0) { clearInterval(t); ready(true); }
    }, 2);
    setTimeout(() => { clearInterval(t); ready(false); }, native ? 5000 : 100);
  };
  const connect = (port) => new Promise((r) => { const s = net.connect(port, '127.0.0.1', () => r(s)); s.on('error', () => {}); });
  if (scenario.startsWith('sendfile-')) {
    const s = await connect(ports.sink);
    z.sendFile(s, file, { mechanism: scenario.slice(9) }).catch(() => {});
    whenWaiting();
  } else if (scenario === 'cold') {
    // Chunks that are not in the page cache run on the threadpool.
    const fs = await import('node:fs');
    const fd = fs.openSync(file, 'r');
    // Written back first, or the kernel cannot drop the pages.
    fs.fdatasyncSync(fd);
    if (native) native.fadvise(fd, 0, 0, 4);
    const s = await connect(ports.sink);
    z.sendFile(s, fd, { mechanism: 'sendfile' }).catch(() => {});
    whenWaiting('threadpoolChunks');
  } else if (scenario === 'splice') {
    const from = await connect(ports.source);
    const to = await connect(ports.sink);
    z.splice(from, to).catch(() => {});
    whenWaiting();
  } else if (scenario === 'proxy') {
    const proxy = z.createProxy({ target: { host: '127.0.0.1', port: ports.source } });
    proxy.listen(0, '127.0.0.1', () => parentPort.postMessage({ proxyPort: proxy.address().port }));
    whenWaiting();
  } else if (scenario === 'mmap') {
    if (native) {
      const m = await z.mapFile(file);
      globalThis.views = [m.subarray(0, 4096), m.subarray(1 << 20, 2 << 20), m.buffer.subarray(0, 10)];
    }
    const s = await connect(ports.sink);
    z.sendFile(s, file, { mechanism: 'copy' }).catch(() => {});
    whenWaiting();
  }
}
`;

interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
}

function runChild(scenario: string, how: string, rounds: number): Promise<ChildResult> {
  const child = spawn(process.execPath, [script, scenario, how, String(rounds), big], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return withTimeout(
    new Promise<ChildResult>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, out }))),
    120_000,
    `child ${scenario}/${how}`,
  ).catch((err: Error) => {
    child.kill('SIGKILL');
    throw err;
  });
}

before(() => {
  big = makeFile(dir, 'big.bin', 48 * 1024 * 1024, 3).path;
  script = path.join(dir, 'child.mjs');
  fs.writeFileSync(script, CHILD.replace('"LIB"', JSON.stringify(lib)).replace('"NATIVELIB"', JSON.stringify(nativeLib)));
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const SCENARIOS: Array<[string, string]> = [
  ['sendfile-sendfile', 'sendFile (sendfile) to a stalled reader'],
  ['sendfile-copy', 'sendFile (native copy) to a stalled reader'],
  ['sendfile-splice', 'sendFile (file -> pipe -> socket) to a stalled reader'],
  ['cold', 'sendFile with threadpool chunks in flight'],
  ['splice', 'splice() between sockets, stalled'],
  ['proxy', 'createProxy with a stalled client'],
  ['mmap', 'a mapped file with live views, and a stalled sendFile'],
];

// Bounded: each round is a worker start, a stall and a teardown.
const ROUNDS = NATIVE ? 6 : 2;

describe(`worker teardown mid-wait (${NATIVE ? 'native' : 'portable'})`, () => {
  for (const [scenario, what] of SCENARIOS) {
    for (const how of ['terminate', 'exit']) {
      test(`${what}: ${how} x${ROUNDS}, the process survives and the connections close`, async () => {
        const r = await runChild(scenario, how, ROUNDS);
        assert.equal(r.signal, null, `child killed by ${r.signal}:\n${r.out}`);
        assert.equal(r.code, 0, `child exit code ${r.code}:\n${r.out}`);
        const m = /rounds (\d+) waited (\d+) fds (-?\d+)/.exec(r.out);
        assert.ok(m, r.out);
        console.log(`# ${scenario}/${how}: ${m[0]}`);
        assert.equal(Number(m[1]), ROUNDS);
        // With the addon, the worker really was inside a native wait (not
        // just timed out waiting for one) when it ended.
        if (NATIVE) assert.ok(Number(m[2]) > 0, `no round reached a native wait: ${r.out}`);
        // Nothing a worker's transfers opened survives it (dups, pipes, epoll).
        assert.ok(Number(m[3]) <= 1, `${m[3]} fds more in the process after ${ROUNDS - 1} rounds`);
      });
    }
  }
});
