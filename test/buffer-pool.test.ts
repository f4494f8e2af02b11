// BufferPool: reuse, reference counts, misuse errors and leak reports. Pure
// TypeScript: the file runs unchanged in both `npm test` passes.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BufferPool, chunkPool } from '../src/buffer-pool.js';

const poolModule = fileURLToPath(new URL('../src/buffer-pool.js', import.meta.url));

describe('BufferPool', () => {
  test('acquire() gives size-byte buffers and reuses released ones', () => {
    const pool = new BufferPool({ size: 4096, max: 4 });
    const a = pool.acquire();
    assert.ok(Buffer.isBuffer(a));
    assert.equal(a.length, 4096);
    assert.equal(a.buffer.byteLength, 4096, 'each pooled buffer owns its ArrayBuffer');
    const b = pool.acquire();
    assert.notEqual(a.buffer, b.buffer);
    pool.release(a);
    assert.equal(pool.acquire(), a, 'the released buffer comes back');
    const s = pool.stats();
    assert.deepEqual(s, { size: 4096, max: 4, idle: 0, outstanding: 2, created: 2, reused: 1, leaked: 0 });
  });

  test('reference counting: retain() adds holders, the last release() returns it', () => {
    const pool = new BufferPool({ size: 1024 });
    const b = pool.acquire();
    assert.equal(pool.refCount(b), 1);
    assert.equal(pool.retain(b), b);
    assert.equal(pool.refCount(b), 2);
    pool.release(b);
    assert.equal(pool.stats().idle, 0, 'still held once');
    pool.release(b.subarray(10, 20)); // a view of a pooled buffer counts as it
    assert.equal(pool.refCount(b), 0);
    assert.equal(pool.stats().idle, 1);
    assert.equal(pool.stats().outstanding, 0);
  });

  test('misuse throws ZCOPY_ERR_POOL: double release, foreign buffer, retain after release', () => {
    const pool = new BufferPool({ size: 512 });
    const other = new BufferPool({ size: 512 });
    const b = pool.acquire();
    pool.release(b);
    assert.throws(() => pool.release(b), { name: 'ZcopyError', code: 'ZCOPY_ERR_POOL', message: /double release/ });
    assert.throws(() => pool.retain(b), { code: 'ZCOPY_ERR_POOL', message: /already released/ });
    assert.throws(() => pool.release(Buffer.alloc(512)), { code: 'ZCOPY_ERR_POOL', message: /does not belong/ });
    assert.throws(() => other.release(pool.acquire()), { code: 'ZCOPY_ERR_POOL', message: /does not belong/ });
    assert.equal(pool.refCount(Buffer.alloc(1)), -1);
    assert.throws(() => pool.release('x' as unknown as Buffer), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  });

  test('keeps at most max idle buffers; the rest are forgotten', () => {
    const pool = new BufferPool({ size: 256, max: 2 });
    const bufs = Array.from({ length: 5 }, () => pool.acquire());
    for (const b of bufs) pool.release(b);
    assert.equal(pool.stats().idle, 2);
    assert.equal(pool.refCount(bufs[0]!), 0, 'kept');
    assert.equal(pool.refCount(bufs[4]!), -1, 'dropped: no longer the pool\'s');
    assert.throws(() => pool.release(bufs[4]!), { code: 'ZCOPY_ERR_POOL' });
    pool.clear();
    assert.equal(pool.stats().idle, 0);
  });

  test('options are validated', () => {
    assert.throws(() => new BufferPool({ size: 0 }), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => new BufferPool({ size: 1.5 }), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => new BufferPool({ max: -1 }), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => new BufferPool({ size: '1' as unknown as number }), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => new BufferPool({ debug: 'yes' as unknown as boolean }), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.equal(new BufferPool().size, 64 * 1024);
  });

  test('debug mode poisons released buffers', () => {
    const pool = new BufferPool({ size: 64, debug: () => {} });
    const b = pool.acquire();
    b.fill(1);
    pool.release(b);
    assert.ok(b.every((x) => x === 0xdb));
  });

  test('chunkPool() shares one pool per size class, 64 KiB to 1 MiB', () => {
    assert.equal(chunkPool(1).size, 64 * 1024);
    assert.equal(chunkPool(64 * 1024).size, 64 * 1024);
    assert.equal(chunkPool(64 * 1024 + 1).size, 128 * 1024);
    assert.equal(chunkPool(300_000).size, 512 * 1024);
    assert.equal(chunkPool(1 << 20).size, 1 << 20);
    assert.equal(chunkPool(16 << 20).size, 1 << 20);
    assert.equal(chunkPool(100_000), chunkPool(128 * 1024));
    const p = chunkPool(256 * 1024);
    const b = p.acquire();
    p.release(b);
    assert.equal(p.acquire(), b);
    p.release(b);
  });
});

describe('BufferPool leak reports (child process with --expose-gc)', () => {
  // The child acquires buffers, releases some, drops the rest, collects
  // garbage until the FinalizationRegistry has reported (bounded), and
  // prints what it saw.
  const script = `
    import { BufferPool } from ${JSON.stringify(poolModule)};
    const leaks = [];
    const warnings = [];
    process.on('warning', (w) => warnings.push({ code: w.code, message: w.message }));
    const pool = new BufferPool({ size: 1024, debug: (l) => leaks.push(l) });
    const noisy = new BufferPool({ size: 2048, debug: true });
    function leakSome() {
      for (let i = 0; i < 3; i++) pool.acquire();          // leaked
      const kept = pool.acquire(); pool.release(kept);      // released: not a leak
      const held = pool.acquire(); pool.retain(held); pool.release(held); pool.release(held);
      noisy.acquire();                                      // leaked, reported as a warning
    }
    leakSome();
    const deadline = Date.now() + 10000;
    while ((leaks.length < 3 || warnings.length < 1) && Date.now() < deadline) {
      globalThis.gc();
      await new Promise((r) => setImmediate(r));
    }
    await new Promise((r) => setImmediate(r));
    console.log(JSON.stringify({ leaks: leaks.map((l) => ({ size: l.size, site: /leakSome/.test(l.stack) })), warnings, stats: pool.stats() }));
  `;

  test('buffers collected without release() are reported with their acquire stack', () => {
    const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
      leaks: Array<{ size: number; site: boolean }>;
      warnings: Array<{ code: string; message: string }>;
      stats: { leaked: number; outstanding: number };
    };
    assert.equal(out.leaks.length, 3);
    assert.ok(out.leaks.every((l) => l.size === 1024 && l.site), JSON.stringify(out.leaks));
    assert.equal(out.stats.leaked, 3);
    assert.equal(out.stats.outstanding, 0);
    assert.equal(out.warnings.length, 1);
    assert.equal(out.warnings[0]!.code, 'ZCOPY_POOL_LEAK');
    assert.match(out.warnings[0]!.message, /2048-byte BufferPool buffer was garbage-collected without release/);
  });
});
