// The zcopy command line as a user meets it: one option vocabulary, usage
// errors in plain words with exit status 2, `zcopy info` telling what would
// really happen, output piped into `head` (EPIPE) not killing a server, the
// serving/banner line printed only once signals are handled, "stopped" after
// the last log line, the proxy banner and its refused connections.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { capabilities } from '../src/index.js';
import { spliceMechanismFor } from '../src/splice.js';
import { NATIVE, makeFile, sha, tmpDir, withTimeout } from './helpers.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const dir = tmpDir('zcopy-cli-opts-');
const children: ChildProcess[] = [];
let big: { path: string; data: Buffer };

before(() => {
  fs.writeFileSync(path.join(dir, 'a.txt'), 'hello\n');
  big = makeFile(dir, 'big.bin', 16 * 1024 * 1024, 7);
});
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Run {
  child: ChildProcess;
  lines: string[];
  stderr(): string;
  /** Resolves with the first stdout line matching `re`. */
  line(re: RegExp, ms?: number): Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function start(args: string[], env: NodeJS.ProcessEnv = process.env): Run {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  children.push(child);
  const lines: string[] = [];
  const waiters: [RegExp, (l: string) => void][] = [];
  let partial = '';
  let err = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    partial += d;
    const parts = partial.split('\n');
    partial = parts.pop()!;
    for (const l of parts) {
      lines.push(l);
      for (const w of [...waiters]) if (w[0].test(l)) (waiters.splice(waiters.indexOf(w), 1), w[1](l));
    }
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  const line = (re: RegExp, ms = 15_000) =>
    withTimeout(
      Promise.race([
        new Promise<string>((r) => {
          const l = lines.find((x) => re.test(x));
          if (l !== undefined) r(l);
          else waiters.push([re, r]);
        }),
        exited.then((x) => {
          throw new Error(`exited ${x.code ?? x.signal} before a line like ${re}: ${err}`);
        }),
      ]),
      ms,
      `a line like ${re}`,
    );
  return { child, lines, stderr: () => err, line, exited };
}

async function run(args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string; err: string }> {
  const r = start(args, env);
  const x = await withTimeout(r.exited, 15_000, `zcopy ${args.join(' ')}`);
  return { code: x.code, out: r.lines.join('\n'), err: r.stderr() };
}

const envWith = (extra: Record<string, string | undefined>): NodeJS.ProcessEnv => {
  const e = { ...process.env, ...extra };
  for (const k of Object.keys(e)) if (e[k] === undefined) delete e[k];
  return e;
};

function get(url: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

describe('zcopy info', () => {
  it('--help works, --json is documented, extra arguments and unknown options exit 2', async () => {
    const h = await run(['info', '--help']);
    assert.equal(h.code, 0, h.err);
    assert.match(h.out, /--json/);
    const top = await run(['--help']);
    assert.match(top.out, /info \[--json\]/);
    const extra = await run(['info', 'extra']);
    assert.equal(extra.code, 2);
    assert.match(extra.err, /^zcopy info: unexpected argument 'extra'/);
    const bad = await run(['info', '--jsn']);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /^zcopy info: unknown option '--jsn'/);
    assert.doesNotMatch(extra.err + bad.err, /ERR_PARSE_ARGS/);
  });

  it("capabilities().auto and `zcopy info` say 'portable' where no native mechanism would run", async () => {
    const caps = capabilities();
    for (const t of ['unix', 'tcp-loopback', 'tcp'] as const) {
      if (!caps.native) assert.equal(caps.auto[t], 'portable', `in-process auto.${t}`);
      else assert.notEqual(caps.auto[t], 'portable');
    }
    // Forced fallback: the portable path, whatever the addon could do.
    const forced = await run(['info', '--json'], envWith({ ZCOPY_FORCE_FALLBACK: '1' }));
    assert.equal(forced.code, 0, forced.err);
    const j = JSON.parse(forced.out) as { native: boolean; sendfile: boolean; auto: Record<string, string> };
    assert.equal(j.native, false);
    assert.equal(j.sendfile, false);
    assert.deepEqual(j.auto, { unix: 'portable', 'tcp-loopback': 'portable', tcp: 'portable' });
    const text = await run(['info'], envWith({ ZCOPY_FORCE_FALLBACK: '1' }));
    assert.match(text.out, /auto mechanism: +portable/);
    assert.doesNotMatch(text.out, /sendfile$/m);
    // With the addon (when it is built): the native choice.
    const plain = await run(['info', '--json'], envWith({ ZCOPY_FORCE_FALLBACK: undefined }));
    const p = JSON.parse(plain.out) as { native: boolean; auto: Record<string, string> };
    if (p.native) assert.equal(p.auto.unix, 'sendfile');
    else assert.equal(p.auto.unix, 'portable');
  });
});

describe('usage errors: plain words, exit status 2', () => {
  const cases: [string[], RegExp][] = [
    [['serve', dir, '-p', 'abc'], /^zcopy serve: invalid --port 'abc': expected 0-65535/],
    [['serve', dir, '--socket', path.join(dir, 's.sock'), '-p', '8081'], /^zcopy serve: --socket and --port cannot go together/],
    [['serve', dir, '--shutdown-timeout', 'soon'], /^zcopy serve: invalid --shutdown-timeout 'soon': expected a duration/],
    [['serve', dir, '--bogus'], /^zcopy serve: unknown option '--bogus'/],
    // A negative number is the option's value (parseArgs alone calls it a missing value).
    [['serve', dir, '-p', '-1'], /^zcopy serve: invalid --port '-1': expected 0-65535/],
    [['serve', dir, '--dotfiles', 'maybe'], /^zcopy serve: invalid --dotfiles 'maybe': expected ignore, deny or allow/],
    [['serve', dir, '-l'], /--listen needs a value \(-l is --listen; the directory listing is --list\)/],
    [['serve', '-l', dir], /-l is --listen; the directory listing is --list/],
    [['serve', dir, 'other'], /^zcopy serve: unexpected argument 'other'/],
    [['proxy'], /^zcopy proxy: --target is required/],
    [['proxy', '-t'], /^zcopy proxy: option --target needs a value/],
    [['proxy', '-t', '127.0.0.1:1', '-s', path.join(dir, 'p.sock'), '-p', '9001'], /--socket and --port cannot go together/],
    [['proxy', '-t', '127.0.0.1:1', '-l', '9001', '-p', '9002'], /--listen and --port cannot go together/],
    [['proxy', '-t', '127.0.0.1:1', '--mechanism', 'magic'], /invalid --mechanism 'magic': expected auto, splice or copy/],
    [['proxy', '-t', '127.0.0.1:1', '--max-connections', '0'], /invalid --max-connections '0': expected a whole number >= 1/],
    [['proxy', '-t', '127.0.0.1:0'], /invalid --target '127\.0\.0\.1:0': port expected 1-65535/],
    [['proxy', '-t', '127.0.0.1:1', '-q=yes'], /option -q takes no value|unknown option/],
    // send, recv, kafka and bench: the same parser, the same words.
    [['send'], /^zcopy send: missing FILE and ADDRESS \(zcopy send --help\)/],
    [['send', 'f.bin'], /^zcopy send: missing ADDRESS after FILE/],
    [['send', 'f.bin', 'nowhere'], /^zcopy send: invalid ADDRESS 'nowhere': expected host:port, \[ipv6\]:port, a port or unix:<path>/],
    [['send', 'f.bin', '127.0.0.1:0'], /^zcopy send: invalid ADDRESS '127\.0\.0\.1:0': port expected 1-65535/],
    [['send', 'f.bin', '127.0.0.1:1', 'extra'], /^zcopy send: unexpected argument 'extra' \(zcopy send --help\)/],
    [['send', 'f.bin', '127.0.0.1:1', '--bogus'], /^zcopy send: unknown option '--bogus' \(zcopy send --help\)/],
    [['send', 'f.bin', '127.0.0.1:1', '--name'], /^zcopy send: option --name needs a value/],
    [['send', 'f.bin', '127.0.0.1:1', '--name', '../x'], /^zcopy send: invalid --name '\.\.\/x': expected a safe file name/],
    [['recv'], /^zcopy recv: --listen ADDR \(or --port\/--socket\) is required/],
    [['recv', '-p', 'abc'], /^zcopy recv: invalid --port 'abc': expected 0-65535/],
    [['recv', '-l', 'nowhere'], /^zcopy recv: invalid --listen 'nowhere': expected host:port/],
    [['recv', '-l', '0', '-p', '0'], /^zcopy recv: --listen and --port cannot go together/],
    [['recv', '-s', path.join(dir, 'r.sock'), '-p', '0'], /^zcopy recv: --socket and --port cannot go together/],
    [['recv', '-l', '0', 'extra'], /^zcopy recv: unexpected argument 'extra' \(zcopy recv --help\)/],
    [['recv', '-l', '0', '--bogus'], /^zcopy recv: unknown option '--bogus'/],
    [['kafka'], /^zcopy kafka: --data is required: the data directory \(zcopy kafka --help\)/],
    [['kafka', '-d', dir, '-p', 'abc'], /^zcopy kafka: invalid --port 'abc': expected 0-65535/],
    [['kafka', '-d', dir, '-l', '0', '-p', '0'], /^zcopy kafka: --listen and --port cannot go together/],
    [['kafka', '-d', dir, '-s', path.join(dir, 'k.sock')], /^zcopy kafka: --socket: Kafka clients speak TCP/],
    [['kafka', '-d', dir, '-l', `unix:${path.join(dir, 'k.sock')}`], /^zcopy kafka: invalid --listen 'unix:.*': Kafka clients speak TCP/],
    [['kafka', '-d', dir, '--advertised', 'nohost'], /^zcopy kafka: invalid --advertised 'nohost': expected host:port or PLAINTEXT:\/\/host:port/],
    [['kafka', '-d', dir, '--log-level', 'loud'], /^zcopy kafka: invalid --log-level 'loud': expected debug, info, warn or error/],
    [['kafka', '-d', dir, '--segment-bytes', 'huge'], /^zcopy kafka: invalid --segment-bytes 'huge': expected a size such as 65536, 64KiB, 256MiB or 1GiB/],
    [['kafka', '-d', dir, '--segment-bytes', '10'], /^zcopy kafka: invalid --segment-bytes '10': expected a size at least 64 B/],
    [['kafka', '-d', dir, '--retention-ms', 'soon'], /^zcopy kafka: invalid --retention-ms 'soon': expected a duration/],
    [['kafka', '-d', dir, '--flush-ms', '0'], /^zcopy kafka: invalid --flush-ms '0': expected a duration of at least 1ms/],
    [['kafka', '-d', dir, '--partitions', '0'], /^zcopy kafka: invalid --partitions '0': expected a whole number >= 1/],
    [['kafka', '-d', dir, '--shutdown-timeout', 'soon'], /^zcopy kafka: invalid --shutdown-timeout 'soon': expected a duration/],
    [['kafka', '-d', dir, '--tls-cert', path.join(dir, 'a.txt')], /^zcopy kafka: --tls-cert and --tls-key go together/],
    [['kafka', '-d', dir, 'extra'], /^zcopy kafka: unexpected argument 'extra' \(zcopy kafka --help\)/],
    [['kafka', '-d', dir, '--bogus'], /^zcopy kafka: unknown option '--bogus'/],
    [['bench', '--size', 'lots'], /^zcopy bench: invalid --size 'lots': expected a size such as 65536, 64KiB, 256MiB or 1GiB/],
    [['bench', '--size', '1k'], /^zcopy bench: invalid --size '1k': expected a size from 4 KiB to 1 TiB/],
    [['bench', '--runs', '0'], /^zcopy bench: invalid --runs '0': expected a whole number from 1 to 100/],
    [['bench', '--transport', 'pigeon'], /^zcopy bench: invalid --transport 'pigeon': expected unix, tcp, file or all/],
    [['bench', '--mechanisms', 'c-nope'], /^zcopy bench: invalid --mechanisms 'c-nope': expected c-/],
    [['bench', '--trace', 'on'], /^zcopy bench: invalid --trace 'on': expected auto or off/],
    [['bench', '--cpus', '999'], /^zcopy bench: invalid --cpus '999': expected one or two CPU numbers/],
    [['bench', '--json'], /^zcopy bench: option --json needs a value/],
    [['bench', 'extra'], /^zcopy bench: unexpected argument 'extra' \(zcopy bench --help\)/],
    [['bench', '--bogus'], /^zcopy bench: unknown option '--bogus'/],
  ];
  for (const [args, re] of cases) {
    it(`zcopy ${args.map((a) => a.replace(dir, '<dir>')).join(' ')}`, async () => {
      const r = await run(args);
      assert.equal(r.code, 2, r.err);
      assert.match(r.err, re);
      assert.doesNotMatch(r.err, /ERR_PARSE_ARGS|ZCOPY_ERR_USAGE/);
      assert.equal(r.err.trim().split('\n').length, 1, `one line: ${r.err}`);
    });
  }

  it('every subcommand answers --help and -h on stdout with exit status 0', async () => {
    for (const cmd of ['info', 'serve', 'proxy', 'send', 'recv', 'kafka', 'bench']) {
      for (const flag of ['--help', '-h']) {
        const r = await run([cmd, flag]);
        assert.equal(r.code, 0, `${cmd} ${flag}: ${r.err}`);
        assert.match(r.out, new RegExp(`^Usage: zcopy ${cmd}`), `${cmd} ${flag}`);
        assert.match(r.out, /-h, --help/, `${cmd} ${flag} lists itself`);
        assert.equal(r.err, '', `${cmd} ${flag}: nothing on stderr`);
      }
    }
  });

  it('kafka takes -p/-H, sizes, durations and -1 like the other commands', async () => {
    const r = start([
      'kafka', '--data', path.join(dir, 'kafka-vocab'), '-H', '127.0.0.1', '-p', '0', '--segment-bytes', '1MiB',
      '--retention-ms', '7d', '--retention-bytes', '-1', '--flush-ms', '1s', '--message-max-bytes', '2m', '--log-level', 'warn',
      '--advertised', 'PLAINTEXT://localhost:9092',
    ]);
    try {
      const ready = await r.line(/^zcopy kafka: ready on /);
      assert.match(ready, /^zcopy kafka: ready on 127\.0\.0\.1:[1-9]\d*, data /);
      r.child.kill('SIGTERM');
      const x = await withTimeout(r.exited, 10_000, 'exit');
      assert.equal(x.code, 0, r.stderr());
    } finally {
      r.child.kill('SIGKILL');
    }
  });

  for (const how of ['tcp', 'unix'] as const) {
    it(`send and recv take the shared address spellings (${how === 'tcp' ? 'recv -p 0, send PORT' : 'recv -s PATH, send unix:PATH'})`, async () => {
      const out = path.join(dir, `recv-${how}`);
      fs.mkdirSync(out, { recursive: true });
      const sock = path.join(dir, `recv-${how}.sock`);
      const r = start(['recv', ...(how === 'tcp' ? ['-p', '0'] : ['-s', sock]), '-o', out, '-q']);
      try {
        const addr = /^listening on (\S+)$/.exec(await r.line(/^listening on /))![1]!;
        if (how === 'tcp') assert.match(addr, /^127\.0\.0\.1:[1-9]\d*$/);
        else assert.equal(addr, `unix:${sock}`);
        // A bare port is 127.0.0.1, as in every command.
        const to = how === 'tcp' ? addr.split(':')[1]! : addr;
        const s = await run(['send', big.path, to, '--name', 'copy.bin', '--verify', '-q']);
        assert.equal(s.code, 0, s.err);
        assert.equal((await withTimeout(r.exited, 10_000, 'recv exit')).code, 0, r.stderr());
        assert.equal(sha(fs.readFileSync(path.join(out, 'copy.bin'))), sha(big.data));
      } finally {
        r.child.kill('SIGKILL');
      }
    });
  }

  it('--shutdown-timeout takes durations in serve, proxy and kafka', async () => {
    for (const args of [
      ['serve', dir, '-p', '0', '--shutdown-timeout', '5s'],
      ['serve', dir, '-p', '0', '--shutdown-timeout', '1500ms'],
      ['proxy', '-t', '127.0.0.1:1', '-l', '0', '--shutdown-timeout', '1500ms'],
      ['proxy', '-t', '127.0.0.1:1', '-l', '0', '--shutdown-timeout', '2s'],
      ['kafka', '--data', path.join(dir, 'kafka'), '-l', '127.0.0.1:0', '--shutdown-timeout', '1500ms'],
    ]) {
      const r = start(args);
      await r.line(/^zcopy (serve: serving|proxy: 127|kafka: ready)/);
      r.child.kill('SIGTERM');
      const x = await withTimeout(r.exited, 10_000, 'exit');
      assert.equal(x.code, 0, `${args.join(' ')}: ${r.stderr()}`);
      if (args[0] === 'serve') assert.ok(r.lines.some((l) => l.includes('up to 5000 ms') || l.includes('up to 1500 ms')));
    }
  });
});

describe('output piped into a reader that goes away (zcopy serve | head -3)', () => {
  it('serve: EPIPE on stdout stops the log, not the server', async () => {
    const r = start(['serve', dir, '-p', '0']);
    const url = / at (http:\S+)/.exec(await r.line(/ at http:/))![1]!;
    await r.line(/^zcopy serve: (native|portable) path/);
    assert.equal((await get(`${url}a.txt`)).status, 200);
    await r.line(/^GET \/a\.txt 200/);
    // Three lines read: the reader goes away, as head -3 does.
    r.child.stdout!.destroy();
    for (let i = 0; i < 20; i++) {
      const g = await withTimeout(get(`${url}${i % 2 ? 'a.txt' : 'big.bin'}`), 10_000, `request ${i}`);
      assert.equal(g.status, 200);
      if (i % 2 === 0) assert.equal(sha(g.body), sha(big.data));
    }
    assert.equal(r.child.exitCode, null, `the server died: ${r.stderr()}`);
    r.child.kill('SIGTERM');
    const x = await withTimeout(r.exited, 10_000, 'exit');
    assert.equal(x.code, 0, r.stderr());
    assert.doesNotMatch(r.stderr(), /EPIPE/);
  });

  it('proxy: EPIPE on stdout stops the log, not the forwarding', async () => {
    const backend = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => {});
      s.pipe(s);
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
    const bport = (backend.address() as net.AddressInfo).port;
    const r = start(['proxy', '-t', `127.0.0.1:${bport}`, '-l', '0']);
    try {
      const port = Number(/127\.0\.0\.1:(\d+) -> /.exec(await r.line(/^zcopy proxy: /))![1]);
      const echo = async (i: number) => {
        const c = net.connect(port, '127.0.0.1');
        c.on('error', () => {});
        const chunks: Buffer[] = [];
        c.on('data', (d: Buffer) => chunks.push(d));
        const done = new Promise<void>((res) => c.once('close', () => res()));
        const msg = Buffer.from(`message ${i} `.repeat(1000));
        c.end(msg);
        await withTimeout(done, 10_000, `echo ${i}`);
        assert.equal(Buffer.concat(chunks).toString(), msg.toString());
      };
      await echo(0);
      await r.line(/^1 127\.0\.0\.1:\d+ -> /);
      r.child.stdout!.destroy();
      for (let i = 1; i <= 10; i++) await echo(i);
      assert.equal(r.child.exitCode, null, `the proxy died: ${r.stderr()}`);
      r.child.kill('SIGTERM');
      const x = await withTimeout(r.exited, 10_000, 'exit');
      assert.equal(x.code, 0, r.stderr());
    } finally {
      r.child.kill('SIGKILL');
      backend.close();
    }
  });
});

describe('signals and the order of lines', () => {
  it('serve: a SIGTERM sent the moment the serving line appears is handled (exit 0, not killed)', async () => {
    for (let i = 0; i < 5; i++) {
      const r = start(['serve', dir, '-p', '0']);
      // Kill from inside the 'data' handler: the earliest a reader can react.
      await new Promise<void>((res) => {
        r.child.stdout!.on('data', (d: string) => {
          if (/ at http:/.test(d) && r.child.exitCode === null) {
            r.child.kill('SIGTERM');
            res();
          }
        });
      });
      const x = await withTimeout(r.exited, 10_000, 'exit');
      assert.deepEqual(x, { code: 0, signal: null }, `run ${i}: ${r.stderr()}`);
    }
  });

  for (const stall of [false, true]) {
    it(`serve: "stopped" comes after the last request's log line (${stall ? 'a stalled client, closed by --shutdown-timeout' : 'the response finishes'})`, async () => {
      const r = start(['serve', dir, '-p', '0', '--shutdown-timeout', stall ? '300ms' : '10s']);
      const url = new URL(/ at (http:\S+)/.exec(await r.line(/ at http:/))![1]!);
      const socks: net.Socket[] = [];
      const closed: Promise<void>[] = [];
      const got = [0, 0, 0, 0];
      // Several responses in flight: the last one to settle decides.
      for (let i = 0; i < 4; i++) {
        const sock = net.connect(Number(url.port), '127.0.0.1');
        sock.on('error', () => {});
        sock.on('data', (d: Buffer) => (got[i]! += d.length));
        closed.push(new Promise<void>((res) => sock.once('close', () => res())));
        sock.write('GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
        socks.push(sock);
      }
      await withTimeout(
        new Promise<void>((res) => {
          // Every response under way (on a loaded machine the last accept can trail the first response).
          const t = setInterval(() => got.every((n) => n > 0) && (clearInterval(t), res()), 5);
        }),
        10_000,
        'first bytes of every response',
      );
      for (const s of socks) s.pause();
      r.child.kill('SIGTERM');
      await r.line(/SIGTERM, finishing/);
      if (!stall) for (const s of socks) s.resume();
      assert.equal((await withTimeout(r.exited, 15_000, 'exit')).code, 0);
      for (const s of socks) s.destroy();
      await withTimeout(Promise.all(closed), 10_000, 'client sockets closed');
      const logIdx = r.lines.map((l, i) => (/^GET \/big\.bin /.test(l) ? i : -1)).filter((i) => i >= 0);
      const stopIdx = r.lines.indexOf('zcopy serve: stopped');
      assert.equal(logIdx.length, 4, r.lines.join('\n'));
      assert.ok(stopIdx >= 0, r.lines.join('\n'));
      assert.ok(Math.max(...logIdx) < stopIdx, `a log line after "stopped":\n${r.lines.join('\n')}`);
      assert.equal(stopIdx, r.lines.length - 1);
    });
  }
});

describe('zcopy proxy: banner and refused connections', () => {
  it('the banner names the forwarding the engine would use, not "kernel forwarding"', async () => {
    const sock = path.join(os.tmpdir(), `zc-banner-${process.pid}.sock`);
    const setups: [string[], 'unix' | 'tcp-loopback', 'unix' | 'tcp-loopback', string][] = [
      [['-t', '127.0.0.1:1', '-l', '0'], 'tcp-loopback', 'tcp-loopback', 'auto'],
      [['-t', '127.0.0.1:1', '-l', '0', '--mechanism', 'splice'], 'tcp-loopback', 'tcp-loopback', 'splice'],
      [['-t', `unix:${sock}.up`, '-s', sock], 'unix', 'unix', 'auto'],
    ];
    for (const [args, client, target, mech] of setups) {
      const r = start(['proxy', ...args]);
      const banner = await r.line(/^zcopy proxy: /);
      r.child.kill('SIGTERM');
      await withTimeout(r.exited, 10_000, 'exit');
      assert.doesNotMatch(banner, /kernel forwarding/);
      const want = spliceMechanismFor(mech as 'auto', client, target);
      const words = { splice: /splice \(in the kernel\)/, nativeCopy: /native copy/, portable: /copied through Node/ }[want];
      assert.match(banner, words, `${args.join(' ')} (${NATIVE ? 'native' : 'portable'}): ${banner}`);
      if (!NATIVE) assert.match(banner, /copied through Node/);
    }
  });

  it('connections refused by --max-connections are logged', async () => {
    const backend = net.createServer((s) => s.on('error', () => {}));
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
    const bport = (backend.address() as net.AddressInfo).port;
    const r = start(['proxy', '-t', `127.0.0.1:${bport}`, '-l', '0', '--max-connections', '1']);
    try {
      const port = Number(/127\.0\.0\.1:(\d+) -> /.exec(await r.line(/^zcopy proxy: /))![1]);
      // The server counts the first connection once it has accepted it: wait
      // for the backend to see it (listening before connecting: the proxy may
      // reach the backend before this test's next turn).
      const forwarded = new Promise<void>((res) => backend.once('connection', () => res()));
      const held = net.connect(port, '127.0.0.1');
      held.on('error', () => {});
      await new Promise<void>((res) => held.once('connect', () => res()));
      await withTimeout(forwarded, 10_000, 'first connection forwarded');
      const refused = net.connect(port, '127.0.0.1');
      refused.on('error', () => {});
      await withTimeout(new Promise<void>((res) => refused.once('close', () => res())), 10_000, 'refused connection closed');
      const line = await r.line(/refused/);
      assert.match(line, /^- 127\.0\.0\.1:\d+ refused: max-connections 1 reached$/);
      held.destroy();
      r.child.kill('SIGTERM');
      assert.equal((await withTimeout(r.exited, 10_000, 'exit')).code, 0, r.stderr());
    } finally {
      r.child.kill('SIGKILL');
      backend.close();
    }
  });
});
