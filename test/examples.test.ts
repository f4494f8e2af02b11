// The two classic programs in examples/ run, and deliver the same bytes.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { makeFile, sha, tmpDir, withTimeout } from './helpers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const examples = path.join(here, '..', 'examples');
const dir = tmpDir();
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function run(script: string, args: string[]): { out: Promise<string>; child: ReturnType<typeof spawn> } {
  const child = spawn(process.execPath, [path.join(examples, script), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  return { child, out: new Promise((resolve) => child.once('exit', () => resolve(out))) };
}

test('traditional and zero-copy senders deliver identical bytes to the receiver', { timeout: 60_000 }, async () => {
  const file = makeFile(dir, 'example.bin', 3 * 1024 * 1024 + 1, 41);
  const receiver = spawn(process.execPath, [path.join(examples, 'receiver.js'), '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    let log = '';
    receiver.stdout!.setEncoding('utf8').on('data', (d: string) => (log += d));
    // The receiver prints its port; port 0 keeps tests off fixed ports.
    const port = await withTimeout(
      new Promise<string>((resolve) => {
        const check = (): void => {
          const m = /127\.0\.0\.1:(\d+)/.exec(log);
          if (m) resolve(m[1]!);
          else setTimeout(check, 10);
        };
        check();
      }),
      10_000,
      'receiver start',
    );
    for (const script of ['traditional-send.js', 'zero-copy-send.js']) {
      const before = log.split('\n').filter((l) => l.startsWith('received')).length;
      const { out } = run(script, [file.path, port]);
      assert.match(await withTimeout(out, 30_000, script), new RegExp(`sent ${file.data.length} bytes`));
      await withTimeout(
        new Promise<void>((resolve) => {
          const check = (): void => (log.split('\n').filter((l) => l.startsWith('received')).length > before ? resolve() : void setTimeout(check, 10));
          check();
        }),
        10_000,
        'receiver report',
      );
    }
    const lines = log.split('\n').filter((l) => l.startsWith('received'));
    assert.equal(lines.length, 2);
    for (const l of lines) assert.ok(l.includes(`received ${file.data.length} bytes`) && l.endsWith(sha(file.data)), l);
  } finally {
    receiver.kill();
  }
});
