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
  await assert.rejects(copyFile(src.path, fd, { destOffset: 0 }), { code: 'ZCOPY_ERR_SAME_FILE' });
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

// Issue 8 item 2: the destination used to be opened with O_TRUNC before the
// same-file check, so copyFile(x, x) emptied x and then rejected.
test('same file under every spelling: refused with ZCOPY_ERR_SAME_FILE, contents intact', async () => {
  const sub = path.join(dir, 'same');
  fs.mkdirSync(path.join(sub, 'a'), { recursive: true });
  const x = makeFile(sub, 'x.bin', 256 * 1024 + 3, 77);
  fs.linkSync(x.path, path.join(sub, 'hard.bin'));
  fs.symlinkSync('x.bin', path.join(sub, 'sym.bin'));
  const cwd = process.cwd();
  process.chdir(sub);
  const fds: number[] = [];
  try {
    const fdW = fs.openSync(x.path, 'r+');
    const fdR = fs.openSync(x.path, 'r');
    fds.push(fdW, fdR);
    const fh = await fs.promises.open(x.path, 'r+');
    const cases: Array<[string, () => Promise<number>]> = [
      ['same path', () => copyFile(x.path, x.path)],
      ['./x', () => copyFile('x.bin', './x.bin')],
      ['a/../x', () => copyFile(x.path, `${sub}/a/../x.bin`)],
      ['relative a/../x', () => copyFile('./x.bin', 'a/../x.bin')],
      ['hard link', () => copyFile(x.path, path.join(sub, 'hard.bin'))],
      ['hard link as source', () => copyFile(path.join(sub, 'hard.bin'), x.path)],
      ['symlink', () => copyFile(x.path, path.join(sub, 'sym.bin'))],
      ['symlink as source', () => copyFile(path.join(sub, 'sym.bin'), x.path)],
      ['fd to the same file', () => copyFile(x.path, fdW)],
      ['fd to the same file with destOffset', () => copyFile(x.path, fdW, { destOffset: 10 })],
      ['fd source + path dest', () => copyFile(fdR, x.path)],
      ['fd source + symlink dest', () => copyFile(fdR, 'sym.bin')],
      ['fd source + fd dest', () => copyFile(fdR, fdW)],
      ['FileHandle dest', () => copyFile(x.path, fh)],
      ['range into the same file', () => copyFile(x.path, x.path, { srcOffset: 0, destOffset: 100, length: 10 })],
    ];
    for (const [name, call] of cases) {
      const err = await call().then(
        () => undefined,
        (e: unknown) => e,
      );
      // Contents first: before the fix the data was gone by the time it rejected.
      const now = fs.readFileSync(x.path);
      assert.equal(now.length, x.data.length, `${name}: size kept`);
      assert.equal(sha(now), sha(x.data), `${name}: bytes kept`);
      assert.equal((err as { code?: string } | undefined)?.code, 'ZCOPY_ERR_SAME_FILE', `${name}: ${String(err)}`);
    }
    await fh.close();
  } finally {
    process.chdir(cwd);
    for (const fd of fds) fs.closeSync(fd);
  }
});

test('a path destination is still truncated when it is another file', async () => {
  const dest = path.join(dir, 'longer.bin');
  fs.writeFileSync(dest, Buffer.alloc(src.data.length + 4096, 0x41));
  assert.equal(await copyFile(src.path, dest, { length: 1000 }), 1000);
  assert.ok(fs.readFileSync(dest).equals(src.data.subarray(0, 1000)));
});

// Issue 8 item 2: pwrite on an O_APPEND fd appends whatever the offset, so a
// destOffset was silently ignored.
test('destOffset on an O_APPEND fd is refused before any byte is written', async () => {
  const dest = path.join(dir, 'append.bin');
  fs.writeFileSync(dest, Buffer.from('HEAD'));
  const fd = fs.openSync(dest, 'a');
  const fh = await fs.promises.open(dest, 'a+');
  try {
    for (const d of [fd, fh]) {
      for (const destOffset of [0, 2, 4]) {
        await assert.rejects(copyFile(src.path, d, { destOffset, length: 100 }), { code: 'ZCOPY_ERR_INVALID_FILE', message: /append/ });
        assert.equal(fs.readFileSync(dest).toString(), 'HEAD', 'nothing written');
      }
    }
    // Without destOffset the bytes are appended, as the fd asks.
    assert.equal(await copyFile(src.path, fd, { length: 100 }), 100);
    const out = fs.readFileSync(dest);
    assert.ok(out.equals(Buffer.concat([Buffer.from('HEAD'), src.data.subarray(0, 100)])));
  } finally {
    fs.closeSync(fd);
    await fh.close();
  }
});
