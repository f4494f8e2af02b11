// The programs users copy run as documented: examples/ built by
// `npm run examples:build` and run from dist-examples/ as their headers say,
// and the README's two servers (a client leaving early must not crash the
// sendFile server; serveStatic's maxAge sends the max-age it says).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { makeFile, sha, tmpDir, withTimeout } from './helpers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// .test-build/test -> the repository root.
const root = path.resolve(here, '..', '..');
const built = path.join(root, 'dist-examples');
const dir = tmpDir();
// Programs outside the package could not import 'zcopy'; inside it they
// resolve it by its own name (package.json "exports"), as a user's would.
const snippets = fs.mkdtempSync(path.join(root, '.test-build', 'readme-'));
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.rmSync(snippets, { recursive: true, force: true });
});

/** Starts `node file args`, collecting stdout; resolves `waitFor` when a line matches. */
function start(file: string, args: string[] = []): { child: ChildProcess; out: () => string; waitFor: (re: RegExp, ms: number, what: string) => Promise<RegExpExecArray>; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [file, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    for (const w of waiters) w();
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
    for (const w of waiters) w();
  });
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const waitFor = (re: RegExp, ms: number, what: string): Promise<RegExpExecArray> => {
    let check!: () => void;
    const found = new Promise<RegExpExecArray>((resolve, reject) => {
      check = (): void => {
        const m = re.exec(out) ?? re.exec(err);
        if (m) resolve(m);
        else if (child.exitCode !== null) reject(new Error(`${what}: ${path.basename(file)} exited ${child.exitCode}\n${out}\n${err}`));
      };
      waiters.add(check);
      child.once('exit', check);
      check();
    });
    return withTimeout(found, ms, what).finally(() => waiters.delete(check));
  };
  return { child, out: () => out + err, waitFor, exit };
}

before(() => {
  // What the README says to run; a failed build fails every test below.
  const r = spawnSync('npm', ['run', 'examples:build'], { cwd: root, encoding: 'utf8', timeout: 180_000 });
  assert.equal(r.status, 0, `npm run examples:build: ${r.stdout}${r.stderr}`);
});

test('examples: traditional and zero-copy senders deliver identical bytes to the receiver (run from dist-examples/)', { timeout: 90_000 }, async () => {
  const file = makeFile(dir, 'example.bin', 3 * 1024 * 1024 + 1, 41);
  const receiver = start(path.join(built, 'receiver.js'), ['0']); // port 0 keeps tests off fixed ports
  const port = (await receiver.waitFor(/127\.0\.0\.1:(\d+)/, 15_000, 'receiver start'))[1]!;
  for (const [i, script] of ['traditional-send.js', 'zero-copy-send.js'].entries()) {
    const sender = start(path.join(built, script), [file.path, port]);
    assert.equal(await withTimeout(sender.exit, 30_000, script), 0, sender.out());
    assert.match(sender.out(), new RegExp(`sent ${file.data.length} bytes`));
    await receiver.waitFor(new RegExp(`(received [^\\n]*\\n[^]*){${i + 1}}`), 15_000, 'receiver report');
  }
  // A sender that dies mid-transfer (connection reset) is reported; the
  // receiver keeps serving.
  const c = net.connect(Number(port), '127.0.0.1');
  c.on('error', () => {});
  await withTimeout(new Promise((resolve) => c.once('connect', resolve)), 10_000, 'connect');
  c.write(Buffer.alloc(64 * 1024, 1), () => c.resetAndDestroy());
  await receiver.waitFor(/sender connection failed after \d+ bytes: read ECONNRESET/, 15_000, 'receiver reports the reset');
  const again = start(path.join(built, 'zero-copy-send.js'), [file.path, port]);
  assert.equal(await withTimeout(again.exit, 30_000, 'sender after a reset'), 0, again.out());
  await receiver.waitFor(/(received [^\n]*\n[^]*){3}/, 15_000, 'receiver report after a reset');
  const lines = receiver.out().split('\n').filter((l) => l.startsWith('received'));
  assert.equal(lines.length, 3);
  for (const l of lines) assert.ok(l.includes(`received ${file.data.length} bytes`) && l.endsWith(sha(file.data)), l);
  receiver.child.kill();
});

/** The README's ```ts blocks, in order. */
function readmeBlocks(): string[] {
  const md = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  return [...md.matchAll(/```ts\n([^]*?)```/g)].map((m) => m[1]!);
}

/** A README block with its path and port replaced, compiled to JavaScript as a user's build would. */
function compileSnippet(name: string, code: string, replace: [string | RegExp, string][]): string {
  for (const [from, to] of replace) {
    assert.ok(typeof from === 'string' ? code.includes(from) : from.test(code), `README block has ${from}`);
    code = code.replace(from, to);
  }
  const js = ts.transpileModule(code, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
  const file = path.join(snippets, `${name}.mjs`);
  fs.writeFileSync(file, js);
  return file;
}
const announce = ", function () { console.log('port ' + this.address().port); })";

test('README: the sendFile server survives clients that leave early, and keeps serving', { timeout: 90_000 }, async () => {
  const block = readmeBlocks().find((b) => b.includes('sendFile(socket'));
  assert.ok(block, 'README has the sendFile server');
  const file = makeFile(dir, 'video.mp4', 32 * 1024 * 1024, 7);
  const server = start(
    compileSnippet('send-file-server', block, [
      ["'/srv/video.mp4'", JSON.stringify(file.path)],
      [/\.listen\(9000, '127\.0\.0\.1'\)/, `.listen(0, '127.0.0.1'${announce}`],
    ]),
  );
  const port = Number((await server.waitFor(/port (\d+)/, 15_000, 'server start'))[1]);

  // Three clients leave early: a reset after the first bytes (ECONNRESET),
  // a close after the first bytes, a close before reading anything (EPIPE).
  for (const how of ['reset', 'end', 'immediate'] as const) {
    const c = net.connect(port, '127.0.0.1');
    c.on('error', () => {});
    const gone = new Promise<void>((resolve) => c.once('close', () => resolve()));
    if (how === 'immediate') c.once('connect', () => c.destroy());
    else c.once('data', () => (how === 'reset' ? c.resetAndDestroy() : c.destroy()));
    await withTimeout(gone, 15_000, `client ${how}`);
  }
  // Then a client that stays gets the whole file, from the same process.
  const c = net.connect(port, '127.0.0.1');
  const hash = createHash('sha256');
  let bytes = 0;
  c.on('data', (d: Buffer) => {
    bytes += d.length;
    hash.update(d);
  });
  await withTimeout(new Promise<void>((resolve, reject) => c.once('end', resolve).once('error', reject)), 60_000, 'full download');
  c.destroy();
  assert.equal(bytes, file.data.length);
  assert.equal(hash.digest('hex'), sha(file.data));
  assert.equal(server.child.exitCode, null, `the server must still run:\n${server.out()}`);
  server.child.kill();
  await server.exit;
});

test("README: serveStatic's maxAge sends the max-age it shows", { timeout: 60_000 }, async () => {
  const block = readmeBlocks().find((b) => b.includes('serveStatic('));
  assert.ok(block, 'README has the serveStatic server');
  const expected = /Cache-Control: (.+)$/m.exec(block)?.[1]?.trim();
  assert.ok(expected, 'the README says which Cache-Control it sends');
  const www = path.join(dir, 'www');
  fs.mkdirSync(www, { recursive: true });
  fs.writeFileSync(path.join(www, 'index.html'), '<h1>hi</h1>\n');
  const server = start(
    compileSnippet('serve-static', block, [
      ["'/srv/www'", JSON.stringify(www)],
      [/\.listen\(8080, '127\.0\.0\.1'\)/, `.listen(0, '127.0.0.1'${announce}`],
    ]),
  );
  const port = Number((await server.waitFor(/port (\d+)/, 15_000, 'server start'))[1]);
  const res = await withTimeout(
    new Promise<http.IncomingMessage>((resolve, reject) => http.get({ host: '127.0.0.1', port, path: '/index.html' }, resolve).on('error', reject)),
    15_000,
    'GET /index.html',
  );
  res.resume();
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers['cache-control'], expected);
  server.child.kill();
  await server.exit;
});
