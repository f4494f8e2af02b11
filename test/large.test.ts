// Sizes: > 2 GiB in one call, offsets past 4 GiB, on a sparse file, to a
// reader in another process (so this loop only sends).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { sendFile, stats, resetStats } from '../src/index.js';
import { NATIVE, tmpDir, withTimeout } from './helpers.js';

const GiB = 1024 ** 3;
const dir = tmpDir();
const file = path.join(dir, 'sparse.bin');
const SIZE = 5 * GiB;
// Markers written into the holes, so the reader can prove each landed at
// the right place.
const markers: Array<[number, Buffer]> = [
  [4 * GiB - 3, Buffer.from('<4GiB-boundary>')],
  [2 * GiB + 7, Buffer.from('<2GiB+7>')],
  [SIZE - 9, Buffer.from('<the-end>')],
];

before(() => {
  const fd = fs.openSync(file, 'w');
  fs.ftruncateSync(fd, SIZE);
  for (const [pos, b] of markers) fs.writeSync(fd, b, 0, b.length, pos);
  fs.closeSync(fd);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A child process that counts bytes and records where non-zero bytes are. */
const READER = `
const net = require('net');
const srv = net.createServer((s) => {
  let n = 0; const found = []; let zero = Buffer.alloc(1 << 20);
  s.on('data', (d) => {
    if (zero.length < d.length) zero = Buffer.alloc(d.length);
    // memcmp against zeroes; scan byte by byte only a chunk with data in it.
    if (zero.compare(d, 0, d.length, 0, d.length) !== 0) {
      for (let i = 0; i < d.length; i++) {
        if (d[i] === 0) continue;
        let e = i; while (e < d.length && d[e] !== 0) e++;
        const last = found[found.length - 1];
        const text = d.subarray(i, e).toString();
        // A marker split across two reads continues the previous one.
        if (last && last[0] + last[1].length === n + i) last[1] += text;
        else found.push([n + i, text]);
        i = e;
      }
    }
    n += d.length;
  });
  s.on('end', () => { process.stdout.write(JSON.stringify({ n, found })); s.end(); srv.close(); });
});
srv.listen(0, '127.0.0.1', () => process.stdout.write(String(srv.address().port) + '\\n'));
`;

async function sendRange(offset: number, length: number): Promise<{ n: number; found: Array<[number, string]>; sent: number }> {
  const child = spawn(process.execPath, ['-e', READER], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8');
  const port = await withTimeout(
    new Promise<number>((resolve) => {
      child.stdout.on('data', (d: string) => {
        out += d;
        const nl = out.indexOf('\n');
        if (nl >= 0 && !Number.isNaN(Number(out.slice(0, nl)))) resolve(Number(out.slice(0, nl)));
      });
    }),
    10_000,
    'reader start',
  );
  const sock = net.connect(port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  const sent = await withTimeout(sendFile(sock, file, { offset, length }), 180_000, 'large sendFile');
  sock.end();
  await withTimeout(new Promise((r) => child.once('exit', r)), 60_000, 'reader exit');
  sock.destroy();
  const json = JSON.parse(out.slice(out.indexOf('\n') + 1)) as { n: number; found: Array<[number, string]> };
  return { ...json, sent };
}

test('a range longer than 2 GiB that crosses the 4 GiB offset', { timeout: 240_000 }, async () => {
  resetStats();
  const offset = 2 * GiB;
  const length = 2 * GiB + 64 * 1024 * 1024; // > 0x7ffff000: several sendfile calls
  const r = await sendRange(offset, length);
  assert.equal(r.sent, length);
  assert.equal(r.n, length);
  assert.deepEqual(
    r.found,
    markers.filter(([p]) => p >= offset && p < offset + length).sort((a, b) => a[0] - b[0]).map(([p, b]) => [p - offset, b.toString()]),
  );
  if (NATIVE) assert.equal(stats().bytesByPath.portable, 0);
});

test('the last bytes of a 5 GiB file, at an offset past 4 GiB', { timeout: 60_000 }, async () => {
  const offset = SIZE - 1024 * 1024;
  const r = await sendRange(offset, 1024 * 1024);
  assert.equal(r.n, 1024 * 1024);
  assert.deepEqual(r.found, [[1024 * 1024 - 9, '<the-end>']]);
});
