// copyFile: kernel copies with a fallback chain, ranges, errors.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { copyFile, resetStats, stats } from '../src/index.js';
import { NATIVE, makeFile, settledFds, sha, tmpDir } from './helpers.js';

const dir = tmpDir();
let src: { path: string; data: Buffer };
before(() => {
  src = makeFile(dir, 'src.bin', 9 * 1024 * 1024 + 77, 31);
  fs.chmodSync(src.path, 0o640);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('whole file to a new path: same bytes, same mode, kernel path when native', async () => {
  resetStats();
  const dest = path.join(dir, 'copy.bin');
  assert.equal(await copyFile(src.path, dest), src.data.length);
  assert.equal(sha(fs.readFileSync(dest)), sha(src.data));
  assert.equal(fs.statSync(dest).mode & 0o777, 0o640);
  const s = stats();
  if (NATIVE) {
    assert.equal(s.bytesZeroCopy, src.data.length, 'FICLONE or copy_file_range');
    assert.equal(s.bytesCopied, 0);
  } else {
    assert.equal(s.bytesByPath.portable, src.data.length);
  }
});

test('ranges: srcOffset, destOffset and length into an existing file', async () => {
  const dest = path.join(dir, 'range.bin');
  fs.writeFileSync(dest, Buffer.alloc(4096, 0x2e));
  const n = await copyFile(src.path, dest, { srcOffset: 1_000_001, destOffset: 100, length: 3_000_000 });
  assert.equal(n, 3_000_000);
  const out = fs.readFileSync(dest);
  assert.equal(out.length, 100 + 3_000_000);
  assert.ok(out.subarray(0, 100).equals(Buffer.alloc(100, 0x2e)), 'bytes before destOffset kept');
  assert.ok(out.subarray(100).equals(src.data.subarray(1_000_001, 4_000_001)));
});

test('fd and FileHandle arguments are left open', async () => {
  const inFd = fs.openSync(src.path, 'r');
  const out = await fs.promises.open(path.join(dir, 'fh.bin'), 'w');
  const before = await settledFds();
  assert.equal(await copyFile(inFd, out, { length: 12345 }), 12345);
  assert.equal(await settledFds(), before);
  await out.close();
  fs.closeSync(inFd);
  assert.ok(fs.readFileSync(path.join(dir, 'fh.bin')).equals(src.data.subarray(0, 12345)));
});

test('falls back through the chain (cross-filesystem copy to /dev/shm)', async (t) => {
  if (!fs.existsSync('/dev/shm')) return t.skip('no /dev/shm on this machine');
  const dest = path.join('/dev/shm', `zcopy-test-${process.pid}.bin`);
  try {
    assert.equal(await copyFile(src.path, dest), src.data.length);
    assert.equal(sha(fs.readFileSync(dest)), sha(src.data));
  } finally {
    fs.rmSync(dest, { force: true });
  }
});

test('errors: out of range, directory, same file, missing source, bad options', async () => {
  await assert.rejects(copyFile(src.path, path.join(dir, 'x'), { length: src.data.length + 1 }), { code: 'ZCOPY_ERR_OUT_OF_RANGE' });
  await assert.rejects(copyFile(src.path, path.join(dir, 'x'), { srcOffset: src.data.length + 1 }), { code: 'ZCOPY_ERR_OUT_OF_RANGE' });
  await assert.rejects(copyFile(dir, path.join(dir, 'y')), { code: 'EISDIR' });
  await assert.rejects(copyFile(src.path, dir), { code: 'EISDIR' });
  await assert.rejects(copyFile(path.join(dir, 'nope'), path.join(dir, 'z')), { code: 'ENOENT' });
  const fd = fs.openSync(src.path, 'r+');
  await assert.rejects(copyFile(src.path, fd, { destOffset: 0 }), { code: 'ZCOPY_ERR_INVALID_FILE' });
  fs.closeSync(fd);
  assert.equal(sha(fs.readFileSync(src.path)), sha(src.data), 'source untouched');
  assert.throws(() => copyFile(src.path, path.join(dir, 'w'), { length: -1 }), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => copyFile(src.path, path.join(dir, 'w'), { srcOffset: 0.5 }), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => copyFile(123.5, path.join(dir, 'w')), { code: 'ERR_OUT_OF_RANGE' });
});

test('zero-length copy creates an empty destination', async () => {
  const dest = path.join(dir, 'empty.bin');
  assert.equal(await copyFile(src.path, dest, { length: 0 }), 0);
  assert.equal(fs.statSync(dest).size, 0);
});
