// FileRegion: resumable, reference-counted file ranges.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { FileRegion, resetStats } from '../src/index.js';
import { NATIVE, collect, hashStream, makeFile, settledFds, sha, socketPair, tmpDir, withTimeout } from './helpers.js';

const dir = tmpDir();
let file: { path: string; data: Buffer };
before(() => {
  file = makeFile(dir, 'region.bin', 12 * 1024 * 1024 + 5, 21);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('transferTo sends exactly [position, position+count) and reports it', async () => {
  const region = new FileRegion(file.path, 1000, 5 * 1024 * 1024);
  const pair = await socketPair('unix', dir);
  try {
    const got = collect(pair.client);
    resetStats();
    assert.equal(await region.transferTo(pair.server), 5 * 1024 * 1024);
    assert.equal(region.transferred, 5 * 1024 * 1024);
    assert.equal(await region.transferTo(pair.server), 0, 'nothing left');
    pair.server.end();
    assert.ok((await got).equals(file.data.subarray(1000, 1000 + 5 * 1024 * 1024)));
    if (NATIVE) assert.equal(region.bytesZeroCopy, 5 * 1024 * 1024, 'unix socket: sendfile');
    else assert.equal(region.bytesZeroCopy, 0);
  } finally {
    region.release();
    await pair.close();
  }
});

test('an aborted transfer resumes where it stopped, on another socket', async () => {
  const region = new FileRegion(file.path, 0, file.data.length);
  const a = await socketPair('tcp');
  const b = await socketPair('tcp');
  try {
    a.client.pause();
    const ac = new AbortController();
    const first = region.transferTo(a.server, { signal: ac.signal });
    const outcome = first.then(() => null, (e: unknown) => e);
    await new Promise((r) => setTimeout(r, 80));
    ac.abort();
    assert.equal(((await withTimeout(outcome, 5000, 'abort')) as Error).name, 'AbortError');
    const partial = region.transferred;
    assert.ok(partial > 0 && partial < file.data.length, `partial progress ${partial}`);
    a.server.destroy();
    const got = hashStream(b.client);
    const rest = await region.transferTo(b.server);
    b.server.end();
    assert.equal(rest, file.data.length - partial);
    assert.equal(region.transferred, file.data.length);
    assert.equal((await got).sha, sha(file.data.subarray(partial)));
  } finally {
    region.release();
    await a.close();
    await b.close();
  }
});

test('reference counting: retain/release, release to zero closes the file it opened', async () => {
  const before = await settledFds();
  const region = new FileRegion(file.path, 0, 10);
  const pair = await socketPair('tcp');
  const got = collect(pair.client);
  await region.transferTo(pair.server);
  pair.server.end();
  assert.ok((await got).equals(file.data.subarray(0, 10)));
  await pair.close();
  assert.equal(await settledFds(), before + 1, 'the region holds its file open');
  assert.equal(region.retain().refCnt, 2);
  assert.equal(region.release(), false);
  assert.equal(region.release(), true);
  assert.equal(region.refCnt, 0);
  assert.equal(await settledFds(), before, 'released: file closed');
  assert.throws(() => region.release(), { code: 'ZCOPY_ERR_RELEASED' });
  assert.throws(() => region.retain(), { code: 'ZCOPY_ERR_RELEASED' });
  const p2 = await socketPair('tcp');
  await assert.rejects(region.transferTo(p2.server), { code: 'ZCOPY_ERR_RELEASED' });
  await p2.close();
});

test('a caller fd is not closed by release; concurrent transferTo is refused', async () => {
  const fd = fs.openSync(file.path, 'r');
  const region = new FileRegion(fd, 0, file.data.length);
  const pair = await socketPair('tcp');
  try {
    const got = hashStream(pair.client);
    const p = region.transferTo(pair.server);
    await assert.rejects(region.transferTo(pair.server), { code: 'ZCOPY_ERR_BUSY' });
    await p;
    pair.server.end();
    assert.equal((await got).sha, sha(file.data));
    region.release();
    assert.equal(fs.fstatSync(fd).size, file.data.length, 'fd still open');
  } finally {
    fs.closeSync(fd);
    await pair.close();
  }
});

test('constructor validates synchronously; a range past EOF rejects before any byte', async () => {
  assert.throws(() => new FileRegion(file.path, -1, 1), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => new FileRegion(file.path, 0, 0.5), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => new FileRegion(file.path, 0, undefined as never), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => new FileRegion(null as never, 0, 1), { code: 'ERR_INVALID_ARG_TYPE' });
  const region = new FileRegion(file.path, 10, file.data.length);
  const pair = await socketPair('tcp');
  // transferTo takes sendFile's options, checked the same way (issue 10: sendBufferSize).
  assert.throws(() => region.transferTo(pair.server, { sendBufferSize: -1 }), { code: 'ERR_OUT_OF_RANGE' });
  await assert.rejects(region.transferTo(pair.server), { code: 'ZCOPY_ERR_OUT_OF_RANGE' });
  assert.equal(region.transferred, 0);
  region.release();
  await pair.close();
});
