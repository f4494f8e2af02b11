// mapFile / MappedFile. Mapping needs the addon: with ZCOPY_FORCE_FALLBACK=1
// (the second `npm test` pass) mapFile must reject with
// ZCOPY_ERR_NATIVE_UNAVAILABLE and capabilities().mmap must be false; the
// native tests skip there with a reason. Processes that need --expose-gc or
// a second view of the file run as child processes.
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { open } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { native } from '../src/native.js';
import { capabilities } from '../src/capabilities.js';
import { mapFile, mmapError, MappedFile } from '../src/mapped-file.js';

const NATIVE = native !== null;
const modulePath = fileURLToPath(new URL('../src/mapped-file.js', import.meta.url));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zcopy-mmap-test-'));
let dataPath: string;
let data: Buffer;

before(() => {
  data = Buffer.alloc(3 * 4096 + 123);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 8)) & 0xff;
  dataPath = path.join(dir, 'data.bin');
  fs.writeFileSync(dataPath, data);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function needsNative(t: TestContext): boolean {
  if (!NATIVE) t.skip('mmap needs the native addon (portable path in use)');
  return NATIVE;
}

/** Number of mappings of `file` in this process. */
function mappingsOf(file: string): number {
  return fs.readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.endsWith(file)).length;
}

/** Turns the event loop until cond() holds; fails after `ms`. */
async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

function runChild(script: string, args: string[] = []): { status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [...args, '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 120_000 });
}

describe('mapFile without the addon', () => {
  test('rejects with ZCOPY_ERR_NATIVE_UNAVAILABLE; capabilities().mmap is false', async (t) => {
    if (NATIVE) {
      assert.equal(capabilities().mmap, true);
      t.skip('the addon is loaded (this case runs in the ZCOPY_FORCE_FALLBACK=1 pass)');
      return;
    }
    assert.equal(capabilities().mmap, false);
    await assert.rejects(mapFile(dataPath), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ZCOPY_ERR_NATIVE_UNAVAILABLE');
      assert.match(err.message, /mapFile needs the native addon/);
      assert.match(err.stack ?? '', /mapped-file\.test/, 'the stack points at the caller');
      return true;
    });
  });

  test('argument errors are thrown synchronously in both modes', () => {
    assert.throws(() => mapFile({} as unknown as string), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => mapFile(''), { code: 'ERR_INVALID_ARG_VALUE' });
    assert.throws(() => mapFile(dataPath, { offset: -1 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => mapFile(dataPath, { offset: 1.5 }), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => mapFile(dataPath, { length: 0 }), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => mapFile(dataPath, { mode: 'w' as 'r' }), { code: 'ERR_INVALID_ARG_VALUE' });
    assert.throws(() => mapFile(dataPath, { populate: 1 as unknown as boolean }), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => mapFile(dataPath, null as unknown as object), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => mapFile(-3), { code: 'ERR_OUT_OF_RANGE' });
  });

  test('MappedFile cannot be constructed directly', () => {
    const Ctor = MappedFile as unknown as new (...a: unknown[]) => unknown;
    assert.throws(() => new Ctor(Symbol('x'), null, 0, 1, 'r'), { name: 'TypeError', message: /mapFile/ });
  });
});

describe('mapFile: contents and ranges', () => {
  test('maps a path: the buffer holds the file bytes', async (t) => {
    if (!needsNative(t)) return;
    const m = await mapFile(dataPath);
    try {
      assert.ok(Buffer.isBuffer(m.buffer));
      assert.equal(m.length, data.length);
      assert.equal(m.offset, 0);
      assert.equal(m.mode, 'r');
      assert.deepEqual(m.buffer, data);
      assert.deepEqual(m.subarray(100, 200), data.subarray(100, 200));
    } finally {
      m.close();
    }
  });

  test('any offset works: unaligned offsets and lengths map the exact range', async (t) => {
    if (!needsNative(t)) return;
    for (const [offset, length] of [[1, 10], [4095, 2], [4096, 4096], [4097, 5000], [12345, data.length - 12345], [data.length - 1, 1]] as const) {
      const m = await mapFile(dataPath, { offset, length });
      try {
        assert.deepEqual(m.buffer, data.subarray(offset, offset + length), `offset ${offset} length ${length}`);
      } finally {
        m.close();
      }
    }
    const m = await mapFile(dataPath, { offset: 5000 });
    assert.equal(m.length, data.length - 5000, 'length defaults to the rest of the file');
    m.close();
  });

  test('accepts an fd and a FileHandle, and leaves them open', async (t) => {
    if (!needsNative(t)) return;
    const fd = fs.openSync(dataPath, 'r');
    const m1 = await mapFile(fd, { offset: 10, length: 20 });
    assert.deepEqual(m1.buffer, data.subarray(10, 30));
    m1.close();
    assert.doesNotThrow(() => fs.fstatSync(fd), 'the caller\'s fd stays open');
    fs.closeSync(fd);
    const fh = await open(dataPath, 'r');
    const m2 = await mapFile(fh);
    await fh.close(); // the mapping does not need the fd any more
    assert.deepEqual(m2.buffer, data);
    m2.close();
  });

  test('a path is opened and closed by mapFile: no fd leaks', async (t) => {
    if (!needsNative(t)) return;
    const before = fs.readdirSync('/proc/self/fd').length;
    for (let i = 0; i < 50; i++) (await mapFile(dataPath)).close();
    await assert.rejects(mapFile(dataPath, { offset: data.length }));
    assert.equal(fs.readdirSync('/proc/self/fd').length, before);
  });

  test('populate: true pre-faults on the threadpool and maps the same bytes', async (t) => {
    if (!needsNative(t)) return;
    const m = await mapFile(dataPath, { offset: 3, populate: true });
    assert.deepEqual(m.buffer, data.subarray(3));
    m.close();
  });

  test('advise() accepts every hint; bad hints and ranges throw synchronously', async (t) => {
    if (!needsNative(t)) return;
    const m = await mapFile(dataPath, { offset: 100 });
    try {
      for (const a of ['normal', 'sequential', 'random', 'willneed', 'dontneed'] as const) m.advise(a);
      m.advise('willneed', 5000, 10);
      assert.deepEqual(m.buffer, data.subarray(100), 'dontneed on a shared mapping keeps the file bytes');
      assert.throws(() => m.advise('fast' as 'random'), { code: 'ERR_INVALID_ARG_VALUE' });
      assert.throws(() => m.advise('random', 0, m.length + 1), { code: 'ERR_OUT_OF_RANGE' });
      assert.throws(() => m.subarray(5, 4), { code: 'ERR_OUT_OF_RANGE' });
    } finally {
      m.close();
    }
  });
});

describe('mapFile: clear errors', () => {
  test('missing file: ENOENT from open', async (t) => {
    if (!needsNative(t)) return;
    await assert.rejects(mapFile(path.join(dir, 'nope')), { code: 'ENOENT', syscall: 'open' });
  });

  test('directory (path or fd): ZCOPY_ERR_INVALID_FILE', async (t) => {
    if (!needsNative(t)) return;
    await assert.rejects(mapFile(dir), { code: 'ZCOPY_ERR_INVALID_FILE', message: /directory/ });
    await assert.rejects(mapFile(dir, { mode: 'rw' }), { code: 'ZCOPY_ERR_INVALID_FILE', message: /directory/ });
    const fd = fs.openSync(dir, 'r');
    try {
      await assert.rejects(mapFile(fd), { code: 'ZCOPY_ERR_INVALID_FILE', message: /directory/ });
    } finally {
      fs.closeSync(fd);
    }
  });

  test('zero-length file: ZCOPY_ERR_EMPTY_FILE', async (t) => {
    if (!needsNative(t)) return;
    const empty = path.join(dir, 'empty');
    fs.writeFileSync(empty, '');
    await assert.rejects(mapFile(empty), { code: 'ZCOPY_ERR_EMPTY_FILE' });
  });

  test('offset at or past EOF, or a range past EOF: ZCOPY_ERR_OUT_OF_RANGE', async (t) => {
    if (!needsNative(t)) return;
    await assert.rejects(mapFile(dataPath, { offset: data.length }), { code: 'ZCOPY_ERR_OUT_OF_RANGE' });
    await assert.rejects(mapFile(dataPath, { offset: 2 ** 40 }), { code: 'ZCOPY_ERR_OUT_OF_RANGE' });
    await assert.rejects(mapFile(dataPath, { offset: 10, length: data.length }), { code: 'ZCOPY_ERR_OUT_OF_RANGE', message: /has 12411 bytes/ });
  });

  test('write-only fd, or rw on a read-only fd: ZCOPY_ERR_INVALID_FILE', async (t) => {
    if (!needsNative(t)) return;
    const wfd = fs.openSync(dataPath, 'a');
    const rfd = fs.openSync(dataPath, 'r');
    try {
      await assert.rejects(mapFile(wfd), { code: 'ZCOPY_ERR_INVALID_FILE', message: /write-only/ });
      await assert.rejects(mapFile(rfd, { mode: 'rw' }), { code: 'ZCOPY_ERR_INVALID_FILE', message: /reading and writing/ });
      const m = await mapFile(rfd, { mode: 'private' }); // copy-on-write needs read access only
      m.close();
    } finally {
      fs.closeSync(wfd);
      fs.closeSync(rfd);
    }
  });

  test('an environment refusing external buffers maps to ZCOPY_ERR_EXTERNAL_BUFFERS', (t) => {
    if (!needsNative(t)) return;
    // Node itself never refuses (Electron's V8 sandbox does), so this checks
    // the translation of the addon's status, not the refusal.
    const status = native!.mmapConstants().E_NO_EXTERNAL_BUFFERS!;
    assert.ok(status < -4095, 'outside the errno range');
    const err = mmapError(status, 'mmap') as Error & { code: string };
    assert.equal(err.code, 'ZCOPY_ERR_EXTERNAL_BUFFERS');
    assert.match(err.message, /external ArrayBuffers/);
    assert.equal((mmapError(-13, 'mmap', '/x') as Error & { code: string }).code, 'EACCES');
  });

  test('errors carry the caller\'s stack', async (t) => {
    if (!needsNative(t)) return;
    await assert.rejects(mapFile(dataPath, { offset: data.length }), (err: Error) => {
      assert.match(err.stack ?? '', /mapped-file\.test/);
      return true;
    });
  });
});

describe('MappedFile.close(): detach semantics', () => {
  test('every view becomes zero-length, the memory is unmapped, close is idempotent', async (t) => {
    if (!needsNative(t)) return;
    const p = path.join(dir, 'detach.bin');
    fs.writeFileSync(p, data);
    const m = await mapFile(p);
    const buf = m.buffer;
    const sub = buf.subarray(10, 20);
    const u32 = new Uint32Array(buf.buffer, buf.byteOffset, 8);
    const dv = new DataView(buf.buffer);
    assert.equal(sub[0], data[10]);
    assert.equal(mappingsOf(p), 1);
    m.close();
    assert.equal(m.closed, true);
    assert.equal(buf.length, 0);
    assert.equal(sub.length, 0);
    assert.equal(u32.length, 0);
    assert.equal(dv.buffer.byteLength, 0);
    assert.equal(sub[0], undefined, 'reads see nothing, never unmapped memory');
    assert.throws(() => buf.readUInt32BE(0), { code: 'ERR_BUFFER_OUT_OF_BOUNDS' });
    assert.equal(m.buffer.length, 0);
    assert.equal(m.subarray().length, 0);
    assert.equal(m.length, data.length, 'length still says what was mapped');
    m.close();
    m[Symbol.dispose]();
    assert.throws(() => m.advise('random'), { code: 'ZCOPY_ERR_CLOSED' });
    await assert.rejects(m.sync(), { code: 'ZCOPY_ERR_CLOSED' });
    await until(() => mappingsOf(p) === 0, 'the munmap after close');
  });

  test('Symbol.dispose closes', async (t) => {
    if (!needsNative(t)) return;
    const m = await mapFile(dataPath);
    const b = m.buffer;
    m[Symbol.dispose]();
    assert.equal(b.length, 0);
  });

  test('external memory is accounted while mapped', async (t) => {
    if (!needsNative(t)) return;
    const p = path.join(dir, 'accounted.bin');
    // A sparse file: a 64 MiB Buffer written here would itself be external
    // memory, and a GC between the two readings would hide the mapping.
    fs.writeFileSync(p, '');
    fs.truncateSync(p, 64 << 20);
    const before = process.memoryUsage().external;
    const m = await mapFile(p);
    const during = process.memoryUsage().external;
    // Other external allocations may shrink meanwhile: allow 1 MiB of noise.
    assert.ok(during - before >= 63 << 20, `external grew by ${during - before}`);
    m.close();
    await until(() => process.memoryUsage().external - before < 16 << 20, 'the accounting to be released');
    fs.rmSync(p);
  });

  test('close() while sync() is in flight: sync still completes', async (t) => {
    if (!needsNative(t)) return;
    const p = path.join(dir, 'sync-close.bin');
    fs.writeFileSync(p, Buffer.alloc(1 << 20));
    const m = await mapFile(p, { mode: 'rw' });
    m.buffer.fill(7);
    const s = m.sync();
    m.close();
    await s;
    assert.ok(fs.readFileSync(p).every((x) => x === 7));
    await until(() => mappingsOf(p) === 0, 'the munmap once the job is done');
  });
});

describe('MappedFile modes', () => {
  test('rw: writes reach the file after sync(), seen by another process', async (t) => {
    if (!needsNative(t)) return;
    const p = path.join(dir, 'rw.bin');
    fs.writeFileSync(p, Buffer.alloc(10000, 0x2e));
    const m = await mapFile(p, { mode: 'rw', offset: 5000, length: 100 });
    m.buffer.write('written through the mapping', 3);
    await m.sync();
    m.close();
    const r = runChild(`import fs from 'node:fs'; process.stdout.write(fs.readFileSync(${JSON.stringify(p)}).subarray(5003, 5030).toString());`);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'written through the mapping');
  });

  test('rw: a mapping written in another process persists for this one', async (t) => {
    if (!needsNative(t)) return;
    const p = path.join(dir, 'rw-child.bin');
    fs.writeFileSync(p, Buffer.alloc(3 * 4096));
    const r = runChild(`
      import { mapFile } from ${JSON.stringify(modulePath)};
      const m = await mapFile(${JSON.stringify(p)}, { mode: 'rw', offset: 4097 });
      m.buffer.writeUInt32BE(0xdecafbad, 0);
      m.buffer.write('from the child', 100);
      await m.sync();
      m.close();
    `);
    assert.equal(r.status, 0, r.stderr);
    const m = await mapFile(p);
    try {
      assert.equal(m.buffer.readUInt32BE(4097), 0xdecafbad);
      assert.equal(m.buffer.subarray(4197, 4211).toString(), 'from the child');
    } finally {
      m.close();
    }
  });

  test('rw: two live mappings share the page cache', async (t) => {
    if (!needsNative(t)) return;
    const p = path.join(dir, 'shared.bin');
    fs.writeFileSync(p, Buffer.alloc(8192));
    const a = await mapFile(p, { mode: 'rw' });
    const b = await mapFile(p, { offset: 4096 });
    a.buffer.writeUInt16LE(0xbeef, 4096 + 7);
    assert.equal(b.buffer.readUInt16LE(7), 0xbeef);
    a.close();
    b.close();
  });

  test('private: writes stay in this process and never reach the file', async (t) => {
    if (!needsNative(t)) return;
    const p = path.join(dir, 'private.bin');
    fs.writeFileSync(p, data);
    const shared = await mapFile(p);
    const priv = await mapFile(p, { mode: 'private' });
    priv.buffer.fill(0x58, 0, 5000);
    await priv.sync();
    assert.equal(priv.buffer[10], 0x58);
    assert.equal(shared.buffer[10], data[10], 'another mapping sees the file, not the copy');
    priv.close();
    shared.close();
    assert.deepEqual(fs.readFileSync(p), data);
  });

  test('r: the kernel enforces read-only: a write kills the process (SIGSEGV), the file is intact', async (t) => {
    if (!needsNative(t)) return;
    const p = path.join(dir, 'readonly.bin');
    fs.writeFileSync(p, data);
    const r = runChild(`
      import { mapFile } from ${JSON.stringify(modulePath)};
      const m = await mapFile(${JSON.stringify(p)});
      console.log('mapped');
      m.buffer[0] = 1;
      console.log('survived');
    `);
    assert.equal(r.stdout.trim(), 'mapped');
    assert.equal(r.signal, 'SIGSEGV', `child exited with ${r.status} / ${r.signal}: ${r.stderr}`);
    assert.deepEqual(fs.readFileSync(p), data);
  });
});

describe('large files', () => {
  const FOUR_G = 2 ** 32;

  test('a sparse 6 GiB file mapped at an offset past 4 GiB', async (t) => {
    if (!needsNative(t)) return;
    const p = path.join(dir, 'sparse.bin');
    const fd = fs.openSync(p, 'w+');
    try {
      fs.ftruncateSync(fd, 6 * 2 ** 30);
      fs.writeSync(fd, Buffer.from('beyond four gigabytes'), 0, 21, FOUR_G + 12345);
      fs.writeSync(fd, Buffer.from('tail'), 0, 4, 6 * 2 ** 30 - 4);
    } finally {
      fs.closeSync(fd);
    }
    const m = await mapFile(p, { offset: FOUR_G + 12340, length: 100 });
    try {
      assert.equal(m.buffer.subarray(5, 26).toString(), 'beyond four gigabytes');
      assert.equal(m.buffer[0], 0, 'holes read as zeros');
    } finally {
      m.close();
    }

    // The whole 6 GiB file as one mapping: more than one Buffer can hold on
    // Node 20, so windows come from overlapping segments.
    const big = await mapFile(p);
    try {
      assert.equal(big.length, 6 * 2 ** 30);
      const max = (await import('node:buffer')).constants.MAX_LENGTH;
      if (big.length > max) {
        assert.throws(() => big.buffer, { code: 'ZCOPY_ERR_OUT_OF_RANGE', message: /subarray/ });
      } else {
        assert.equal(big.buffer.length, big.length);
      }
      assert.equal(big.subarray(FOUR_G + 12345, FOUR_G + 12366).toString(), 'beyond four gigabytes');
      assert.equal(big.subarray(big.length - 4).toString(), 'tail');
      // A window across a 2 GiB segment start.
      const w = big.subarray(2 ** 31 - 10, 2 ** 31 + 10);
      assert.equal(w.length, 20);
      const w2 = big.subarray(FOUR_G - 5, FOUR_G + 12400);
      assert.equal(w2.subarray(12350, 12371).toString(), 'beyond four gigabytes');
      big.advise('random', FOUR_G, 4096);
      const views = [w, w2];
      big.close();
      assert.ok(views.every((v) => v.length === 0), 'segments are detached too');
    } finally {
      big.close();
    }
    fs.rmSync(p);
  });
});

describe('GC and churn (child process with --expose-gc)', () => {
  test('thousands of map/close cycles and collected mappings: no crash, nothing left mapped', (t) => {
    if (!needsNative(t)) return;
    const p = path.join(dir, 'churn.bin');
    fs.writeFileSync(p, data);
    const r = runChild(
      `
      import fs from 'node:fs';
      import { mapFile } from ${JSON.stringify(modulePath)};
      const file = ${JSON.stringify(p)};
      const maps = () => fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.endsWith(file)).length;
      const ref = fs.readFileSync(file);
      const views = [];
      let bad = 0;
      // 1) map/close cycles, keeping views of closed mappings around.
      for (let i = 0; i < 3000; i++) {
        const m = await mapFile(file, { offset: i % 5000, length: 64 + (i % 300) });
        const v = m.buffer.subarray(1);
        if (m.buffer[0] !== ref[i % 5000]) bad++;
        m.close();
        if (v.length !== 0) bad++;
        if (i % 10 === 0) views.push(v);
        if (i % 500 === 0) globalThis.gc();
      }
      // 2) mappings never closed: the GC must unmap them. (In a function of
      // its own: a suspended async frame would keep its last mapping alive.)
      async function leak() {
        for (let i = 0; i < 1000; i++) {
          const m = await mapFile(file, { offset: i });
          if (m.buffer[0] !== ref[i]) bad++;
        }
      }
      await leak();
      // 3) closed views touched after GC: still empty, no crash.
      globalThis.gc();
      for (const v of views) if (v.length !== 0 || v[0] !== undefined) bad++;
      const deadline = Date.now() + 20000;
      while (maps() > 0 && Date.now() < deadline) {
        globalThis.gc();
        await new Promise((r) => setImmediate(r));
      }
      console.log(JSON.stringify({ bad, left: maps(), views: views.length }));
      `,
      ['--expose-gc'],
    );
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { bad: number; left: number; views: number };
    assert.deepEqual(out, { bad: 0, left: 0, views: 300 });
  });
});
