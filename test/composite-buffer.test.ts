// CompositeBuffer: every read, slice, toBuffer, indexOf and consume is checked
// against the same operation on Buffer.concat of the components, over random
// splits from a fixed seed (so a failure reproduces). Pure TypeScript: the
// file runs unchanged in both `npm test` passes (native and
// ZCOPY_FORCE_FALLBACK=1).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Writable } from 'node:stream';
import { CompositeBuffer, IOV_MAX } from '../src/composite-buffer.js';
import { rng } from './helpers.js';


function randInt(r: () => number, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo + 1));
}

function randomBytes(r: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (r() * 256) | 0;
  return b;
}

/**
 * Splits data into random pieces: many 1-3 byte pieces so that wide reads
 * straddle several boundaries, some plain Uint8Arrays, some views at an
 * offset inside a larger ArrayBuffer.
 */
function split(r: () => number, data: Buffer): Uint8Array[] {
  const parts: Uint8Array[] = [];
  let i = 0;
  while (i < data.length) {
    const n = Math.min(data.length - i, r() < 0.5 ? randInt(r, 1, 3) : randInt(r, 1, 40));
    const kind = r();
    if (kind < 0.2) {
      parts.push(new Uint8Array(data.subarray(i, i + n)));
    } else if (kind < 0.4) {
      const host = Buffer.alloc(n + 16, 0xee);
      data.copy(host, 7, i, i + n);
      parts.push(host.subarray(7, 7 + n));
    } else {
      parts.push(Buffer.from(data.subarray(i, i + n)));
    }
    i += n;
  }
  return parts;
}

const FIXED: Array<[string, number]> = [
  ['readUInt8', 1], ['readInt8', 1],
  ['readUInt16LE', 2], ['readUInt16BE', 2], ['readInt16LE', 2], ['readInt16BE', 2],
  ['readUInt32LE', 4], ['readUInt32BE', 4], ['readInt32LE', 4], ['readInt32BE', 4],
  ['readFloatLE', 4], ['readFloatBE', 4], ['readDoubleLE', 8], ['readDoubleBE', 8],
  ['readBigUInt64LE', 8], ['readBigUInt64BE', 8], ['readBigInt64LE', 8], ['readBigInt64BE', 8],
];
const VARIABLE = ['readUIntLE', 'readUIntBE', 'readIntLE', 'readIntBE'];

type Reader = Record<string, (offset: number, byteLength?: number) => number | bigint>;

/** Every read at every offset of cb equals the same read on ref. */
function checkAllReads(cb: CompositeBuffer, ref: Buffer, label: string): void {
  const c = cb as unknown as Reader;
  const b = ref as unknown as Reader;
  assert.equal(cb.length, ref.length, `${label}: length`);
  for (const [m, w] of FIXED) {
    for (let o = 0; o + w <= ref.length; o++) {
      const want = b[m]!.call(ref, o);
      const got = c[m]!.call(cb, o);
      if (!Object.is(got, want)) assert.fail(`${label}: ${m}(${o}) = ${String(got)}, Buffer says ${String(want)}`);
    }
  }
  for (const m of VARIABLE) {
    for (let w = 1; w <= 6; w++) {
      for (let o = 0; o + w <= ref.length; o++) {
        const want = b[m]!.call(ref, o, w);
        const got = c[m]!.call(cb, o, w);
        if (got !== want) assert.fail(`${label}: ${m}(${o}, ${w}) = ${String(got)}, Buffer says ${String(want)}`);
      }
    }
  }
}

describe('CompositeBuffer reads (property tests, seed 0x5eed)', () => {
  test('every read at every offset equals Buffer.concat, over 150 random splits', () => {
    const r = rng(0x5eed);
    for (let trial = 0; trial < 150; trial++) {
      const data = randomBytes(r, randInt(r, 0, 300));
      const parts = split(r, data);
      const cb = new CompositeBuffer();
      for (const p of parts) cb.append(p);
      checkAllReads(cb, Buffer.concat(parts), `trial ${trial} (${parts.length} parts)`);
    }
  });

  test('reads after consume(), in random steps, equal the remaining bytes', () => {
    const r = rng(0xc0ffee);
    for (let trial = 0; trial < 40; trial++) {
      const data = randomBytes(r, randInt(r, 50, 400));
      const cb = new CompositeBuffer(split(r, data));
      let consumed = 0;
      while (consumed < data.length) {
        const n = Math.min(data.length - consumed, randInt(r, 0, 37));
        cb.consume(n);
        consumed += n;
        const rest = data.subarray(consumed);
        assert.equal(cb.length, rest.length);
        for (let k = 0; k < 20 && rest.length >= 8; k++) {
          const o = randInt(r, 0, rest.length - 8);
          assert.equal(cb.readUInt32BE(o), rest.readUInt32BE(o));
          assert.equal(cb.readBigInt64LE(o), rest.readBigInt64LE(o));
          assert.equal(cb.readUInt16LE(o + 6), rest.readUInt16LE(o + 6));
        }
        assert.deepEqual(Buffer.concat(cb.components()), rest);
      }
      assert.equal(cb.length, 0);
      assert.equal(cb.componentCount, 0);
    }
  });

  test('out-of-range and invalid offsets throw like Buffer does', () => {
    const cb = new CompositeBuffer([Buffer.from([1, 2]), Buffer.from([3, 4, 5])]);
    assert.equal(cb.readUInt32BE(), 0x01020304);
    assert.equal(cb.readUInt32BE(1), 0x02030405);
    for (const bad of [2, -1, 0.5, NaN, Infinity]) {
      assert.throws(() => cb.readUInt32BE(bad), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }, String(bad));
    }
    assert.throws(() => cb.readUInt8('1' as unknown as number), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => cb.readUIntBE(0, 7), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => new CompositeBuffer().readUInt8(0), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => cb.append('abc' as unknown as Buffer), { code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => cb.consume(6), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => cb.consume(-1), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => cb.toBuffer(3, 2), { code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => cb.slice(0, 6), { code: 'ERR_OUT_OF_RANGE' });
  });
});

describe('CompositeBuffer views and copies', () => {
  test('slice() of random ranges reads like the same range of Buffer.concat', () => {
    const r = rng(42);
    for (let trial = 0; trial < 60; trial++) {
      const data = randomBytes(r, randInt(r, 1, 200));
      const cb = new CompositeBuffer(split(r, data));
      cb.consume(randInt(r, 0, Math.min(10, data.length)));
      const live = data.subarray(data.length - cb.length);
      const s = randInt(r, 0, live.length);
      const e = randInt(r, s, live.length);
      const view = cb.slice(s, e);
      checkAllReads(view, live.subarray(s, e), `slice trial ${trial}`);
      // A slice shares memory with the components: no byte was copied.
      for (const c of view.components()) {
        assert.ok(cb.components().some((p) => p.buffer === c.buffer), 'slice component is a view of a component');
      }
      // Appending to the slice leaves the parent alone.
      const before = cb.length;
      view.append(Buffer.from('x'));
      assert.equal(cb.length, before);
    }
  });

  test('toBuffer() is zero-copy inside one component and a copy across components', () => {
    // Own ArrayBuffers (Buffer.from(string) would share Node's 8 KiB pool).
    const a = Buffer.from(new TextEncoder().encode('0123456789').buffer);
    const b = Buffer.from(new TextEncoder().encode('abcdefghij').buffer);
    const cb = new CompositeBuffer([a, b]);
    const inside = cb.toBuffer(2, 8);
    assert.equal(inside.toString(), '234567');
    assert.equal(inside.buffer, a.buffer);
    assert.equal(inside.byteOffset, a.byteOffset + 2);
    a[2] = 0x41; // a shared view sees the change
    assert.equal(inside[0], 0x41);
    const second = cb.toBuffer(12, 20);
    assert.equal(second.buffer, b.buffer);
    const across = cb.toBuffer(5, 15);
    assert.equal(across.toString(), '56789abcde');
    a[5] = 0x5a; // a copy does not
    assert.equal(across.toString(), '56789abcde');
    a[5] = 0x35;
    assert.equal(cb.toBuffer().toString(), '01A3456789abcdefghij');
    assert.equal(cb.toBuffer(7, 7).length, 0);
    assert.equal(cb.toString('hex', 0, 2), '3031');
  });

  test('toBuffer() of random ranges equals Buffer.concat', () => {
    const r = rng(7);
    for (let trial = 0; trial < 200; trial++) {
      const data = randomBytes(r, randInt(r, 1, 300));
      const cb = new CompositeBuffer(split(r, data));
      const s = randInt(r, 0, data.length);
      const e = randInt(r, s, data.length);
      assert.deepEqual(cb.toBuffer(s, e), data.subarray(s, e));
    }
  });

  test('indexOf() finds needles across boundaries exactly where Buffer.indexOf does', () => {
    const r = rng(99);
    for (let trial = 0; trial < 150; trial++) {
      // A small alphabet makes partial matches at boundaries common.
      const data = Buffer.from(Array.from({ length: randInt(r, 1, 250) }, () => 97 + randInt(r, 0, 2)));
      const cb = new CompositeBuffer(split(r, data));
      for (let k = 0; k < 25; k++) {
        let needle: Buffer | string | number;
        const kind = r();
        if (kind < 0.6) {
          const at = randInt(r, 0, data.length - 1);
          needle = data.subarray(at, Math.min(data.length, at + randInt(r, 1, 9)));
        } else if (kind < 0.8) {
          needle = Array.from({ length: randInt(r, 1, 6) }, () => String.fromCharCode(97 + randInt(r, 0, 2))).join('');
        } else if (kind < 0.9) {
          needle = 97 + randInt(r, 0, 3);
        } else {
          needle = Buffer.alloc(0);
        }
        const from = randInt(r, -5, data.length + 2);
        const want = data.indexOf(needle, from);
        const got = cb.indexOf(needle, from);
        assert.equal(got, want, `trial ${trial}: indexOf(${JSON.stringify(needle.toString())}, ${from})`);
      }
    }
  });

  test('components() and append(CompositeBuffer) share the buffers', () => {
    const parts = [Buffer.from('ab'), Buffer.from('cd'), Buffer.from('ef')];
    const cb = new CompositeBuffer(parts);
    assert.deepEqual(cb.components(), parts);
    assert.equal(cb.components()[1], parts[1]);
    cb.consume(1);
    const cs = cb.components();
    assert.equal(cs[0]!.toString(), 'b');
    assert.equal(cs[0]!.buffer, parts[0]!.buffer);
    const other = new CompositeBuffer([Buffer.from('X')]).append(cb);
    assert.equal(other.toString(), 'Xbcdef');
    assert.equal(other.componentCount, 4);
    cb.append(cb); // appending itself doubles it
    assert.equal(cb.toString(), 'bcdefbcdef');
  });

  test('consume() in 1-byte steps over 20,000 components compacts and stays correct', () => {
    const data = randomBytes(rng(3), 20_000);
    const cb = new CompositeBuffer();
    for (let i = 0; i < data.length; i++) cb.append(data.subarray(i, i + 1));
    for (let i = 0; i < data.length - 4; i++) {
      assert.equal(cb.readUInt32LE(0), data.readUInt32LE(i));
      if (i % 997 === 0) assert.equal(cb.readUInt8(cb.length - 1), data[data.length - 1]);
      cb.consume(1);
      assert.equal(cb.componentCount, data.length - i - 1);
    }
  });
});

describe('CompositeBuffer lookup cost', () => {
  // Binary search makes a random read over 100,000 components cost about
  // log2(100000) / log2(100) = 2.5x one over 100 components; a linear scan
  // would cost ~1000x. The bound is loose so machine noise cannot fail it.
  test('random reads over 100,000 components are not linear in the count', () => {
    function timeReads(components: number): number {
      const cb = new CompositeBuffer();
      const piece = Buffer.alloc(16, 1);
      for (let i = 0; i < components; i++) cb.append(piece);
      const r = rng(5);
      const offsets = Array.from({ length: 50_000 }, () => randInt(r, 0, cb.length - 4));
      let best = Infinity;
      for (let run = 0; run < 5; run++) {
        const t = process.hrtime.bigint();
        let sum = 0;
        for (const o of offsets) sum += cb.readUInt32BE(o);
        best = Math.min(best, Number(process.hrtime.bigint() - t));
        assert.equal(sum, offsets.length * 0x01010101);
      }
      return best;
    }
    const small = timeReads(100);
    const large = timeReads(100_000);
    assert.ok(large / small < 25, `100,000 components: ${large} ns vs 100 components: ${small} ns`);
  });
});

describe('CompositeBuffer.write()', () => {
  async function loopback(): Promise<{ client: net.Socket; received: Promise<Buffer>; close(): void }> {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    const received = new Promise<Buffer>((resolve, reject) => {
      server.once('connection', (s) => {
        const chunks: Buffer[] = [];
        s.on('data', (c: Buffer) => chunks.push(c));
        s.on('end', () => resolve(Buffer.concat(chunks)));
        s.on('error', reject);
      });
    });
    const client = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      client.once('connect', resolve);
      client.once('error', reject);
    });
    return { client, received, close: () => { client.destroy(); server.close(); } };
  }

  function spyWritev(sock: net.Socket): number[] {
    const calls: number[] = [];
    const s = sock as unknown as { _writev: (chunks: unknown[], cb: unknown) => void };
    const orig = s._writev.bind(sock);
    s._writev = (chunks, cb) => {
      calls.push(chunks.length);
      orig(chunks, cb);
    };
    return calls;
  }

  test('1,000 components leave in one writev, bytes intact', async () => {
    const r = rng(11);
    const parts = Array.from({ length: 1000 }, () => randomBytes(r, randInt(r, 1, 64)));
    const cb = new CompositeBuffer(parts);
    const lb = await loopback();
    try {
      const calls = spyWritev(lb.client);
      await new Promise<void>((resolve, reject) => cb.write(lb.client, (err) => (err ? reject(err) : resolve())));
      lb.client.end();
      assert.deepEqual(await lb.received, Buffer.concat(parts));
      assert.deepEqual(calls, [1000]);
      assert.equal(cb.length, Buffer.concat(parts).length, 'write() does not consume');
    } finally {
      lb.close();
    }
  });

  test(`2,500 components are written in batches of at most IOV_MAX (${IOV_MAX})`, async () => {
    const r = rng(12);
    const parts = Array.from({ length: 2500 }, () => randomBytes(r, randInt(r, 1, 8)));
    const cb = new CompositeBuffer(parts);
    cb.consume(3);
    const lb = await loopback();
    try {
      const calls = spyWritev(lb.client);
      await new Promise<void>((resolve, reject) => cb.write(lb.client, (err) => (err ? reject(err) : resolve())));
      lb.client.end();
      assert.deepEqual(await lb.received, Buffer.concat(parts).subarray(3));
      // The socket was idle, so the first batch left on its own; later
      // batches may merge if that write was still pending.
      assert.equal(calls[0], IOV_MAX);
      assert.equal(calls.reduce((a, b) => a + b, 0), cb.componentCount);
      assert.ok(calls.length >= 2 && calls.length <= 3, `writev calls: ${calls.join(', ')}`);
    } finally {
      lb.close();
    }
  });

  test('works with any Writable; empty composite calls back', async () => {
    const got: Buffer[][] = [];
    const w = new Writable({
      writev(chunks, cb) {
        got.push(chunks.map((c) => c.chunk as Buffer));
        cb();
      },
      write(chunk: Buffer, _enc, cb) {
        got.push([chunk]);
        cb();
      },
    });
    const cb = new CompositeBuffer([Buffer.from('a'), Buffer.from('bc'), Buffer.from('def')]);
    await new Promise<void>((resolve, reject) => cb.write(w, (err) => (err ? reject(err) : resolve())));
    assert.deepEqual(got.map((g) => Buffer.concat(g).toString()), ['abcdef']);
    await new Promise<void>((resolve) => new CompositeBuffer().write(w, () => resolve()));
    assert.throws(() => cb.write({} as unknown as Writable), { code: 'ERR_INVALID_ARG_TYPE' });
  });
});
