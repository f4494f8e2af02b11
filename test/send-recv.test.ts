// `zcopy send` / `zcopy recv`: bytes over TCP and a Unix socket, --verify,
// exit codes (mismatch, incomplete, usage), unsafe names refused, nothing
// left behind by a failed transfer. Runs with the addon and without.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeHeader } from '../src/cli/send.js';
import { seededBytes, sha, tmpDir, withTimeout } from './helpers.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const dir = tmpDir('zcopy-sr-');
const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) c.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Run {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  code: Promise<number>;
}

function run(args: string[]): Run {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
  children.add(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const code = withTimeout(
    new Promise<number>((resolve) => child.once('exit', (c, sig) => {
      children.delete(child);
      resolve(c ?? (sig ? 128 : 1));
    })),
    60_000,
    `zcopy ${args[0]} to exit`,
  );
  return { child, out: () => out, err: () => err, code };
}

/** Starts `zcopy recv` and resolves with the address it printed. */
async function recv(args: string[]): Promise<Run & { addr: string }> {
  const r = run(['recv', ...args]);
  const addr = await withTimeout(
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const m = /listening on (\S+)/.exec(r.out());
        if (m) {
          r.child.stdout!.off('data', check);
          resolve(m[1]!);
        }
      };
      r.child.stdout!.on('data', check);
      r.child.once('exit', () => reject(new Error(`recv exited: ${r.err()}`)));
    }),
    30_000,
    'recv to listen',
  );
  return { ...r, addr };
}

let seq = 0;
function outDir(): string {
  const d = path.join(dir, `out-${seq++}`);
  fs.mkdirSync(d);
  return d;
}

describe('zcopy send / zcopy recv', () => {
  for (const transport of ['tcp', 'unix'] as const) {
    test(`a file arrives whole over ${transport}, verified`, async () => {
      const src = path.join(dir, `data-${transport}.bin`);
      const data = seededBytes(6 * 1024 * 1024 + 11, 41);
      fs.writeFileSync(src, data);
      const out = outDir();
      const listen = transport === 'tcp' ? '127.0.0.1:0' : path.join(dir, `s-${seq}.sock`);
      const r = await recv(['--listen', listen, '--out', out, '--verify']);
      const s = run(['send', src, r.addr, '--verify']);
      assert.equal(await s.code, 0, s.err());
      assert.equal(await r.code, 0, r.err());
      assert.equal(sha(fs.readFileSync(path.join(out, path.basename(src)))), sha(data));
      assert.match(s.err(), /verified/);
      assert.deepEqual(fs.readdirSync(out), [path.basename(src)], 'no temporary file left');
    });
  }

  test('--out FILE stores under that name; an empty file works', async () => {
    const src = path.join(dir, 'empty.bin');
    fs.writeFileSync(src, '');
    const target = path.join(outDir(), 'renamed.bin');
    const r = await recv(['--listen', '127.0.0.1:0', '--out', target]);
    const s = run(['send', src, r.addr]);
    assert.equal(await s.code, 0, s.err());
    assert.equal(await r.code, 0, r.err());
    assert.equal(fs.statSync(target).size, 0);
  });

  /** A hand-made sender: header (+ body bytes), then close. */
  async function rawSend(addr: string, header: Buffer, body: Buffer): Promise<string> {
    const [host, port] = [addr.slice(0, addr.lastIndexOf(':')), Number(addr.slice(addr.lastIndexOf(':') + 1))];
    const c = net.connect(port, host);
    let reply = '';
    c.on('data', (d: Buffer) => (reply += d.toString()));
    c.on('error', () => {});
    c.write(header);
    c.end(body);
    await withTimeout(new Promise((r) => c.once('close', r)), 30_000, 'raw sender close');
    return reply;
  }

  for (const bad of ['../escape.bin', '/etc/passwd', '..', 'a/b', 'x\u0000y', '.']) {
    test(`an unsafe name is refused: ${JSON.stringify(bad)}`, async () => {
      const out = outDir();
      const r = await recv(['--listen', '127.0.0.1:0', '--out', out]);
      const reply = await rawSend(r.addr, encodeHeader(bad, 5, undefined), Buffer.from('hello'));
      assert.equal(await r.code, 1, r.err());
      assert.match(reply, /^ERR BAD_NAME/);
      assert.deepEqual(fs.readdirSync(out), []);
      assert.equal(fs.existsSync(path.join(dir, 'escape.bin')), false);
    });
  }

  test('a sender that stops early: exit 4, nothing left behind', async () => {
    const out = outDir();
    const r = await recv(['--listen', '127.0.0.1:0', '--out', out]);
    const reply = await rawSend(r.addr, encodeHeader('part.bin', 1_000_000, undefined), seededBytes(300_000, 42));
    assert.equal(await r.code, 4, r.err());
    assert.match(reply, /^ERR INCOMPLETE/);
    assert.deepEqual(fs.readdirSync(out), [], 'the partial file is removed');
  });

  test('a digest that does not match: exit 3, nothing stored', async () => {
    const out = outDir();
    const r = await recv(['--listen', '127.0.0.1:0', '--out', out, '--verify']);
    const body = seededBytes(100_000, 43);
    const reply = await rawSend(r.addr, encodeHeader('bad.bin', body.length, Buffer.alloc(32, 7)), body);
    assert.equal(await r.code, 3, r.err());
    assert.match(reply, /^ERR MISMATCH/);
    assert.deepEqual(fs.readdirSync(out), []);
  });

  test('--verify on the receiver without a digest from the sender: exit 3 for both', async () => {
    const src = path.join(dir, 'nodigest.bin');
    fs.writeFileSync(src, seededBytes(10_000, 44));
    const r = await recv(['--listen', '127.0.0.1:0', '--out', outDir(), '--verify']);
    const s = run(['send', src, r.addr]);
    assert.equal(await r.code, 3, r.err());
    assert.equal(await s.code, 3, s.err());
  });

  test('an existing file is not replaced without --force', async () => {
    const src = path.join(dir, 'exists.bin');
    fs.writeFileSync(src, 'new');
    const out = outDir();
    fs.writeFileSync(path.join(out, 'exists.bin'), 'old');
    const r = await recv(['--listen', '127.0.0.1:0', '--out', out]);
    const s = run(['send', src, r.addr]);
    assert.equal(await s.code, 1, s.err());
    assert.equal(await r.code, 1);
    assert.equal(fs.readFileSync(path.join(out, 'exists.bin'), 'utf8'), 'old');
  });

  test('usage errors exit 2; a refused connection exits 1', async () => {
    assert.equal(await run(['send', 'only-one-arg']).code, 2);
    assert.equal(await run(['recv']).code, 2);
    const src = path.join(dir, 'u.bin');
    fs.writeFileSync(src, 'x');
    // A port nothing listens on: bind one, close it, use it.
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    assert.equal(await run(['send', src, `127.0.0.1:${port}`]).code, 1);
  });
});
