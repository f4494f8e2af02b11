// CRC-32C (issue 9): known vectors on the native routines (SSE4.2 and the
// slicing-by-8 table) and on the JS fallback, agreement on random input, and
// measured throughput printed (not asserted: the machine is shared).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { native } from '../src/native.js';
import { crc32c, crc32cImplementation } from '../src/kafka/storage/index.js';
import { crc32cJs } from '../src/crc32c.js';
import * as zcopy from '../src/index.js';
import { MODE, NATIVE, seededBytes } from './helpers.js';

type Fn = (b: Uint8Array, s: number, e: number, seed: number) => number;
const routines: Array<[string, Fn]> = [
  ['crc32c()', (b, s, e, seed) => crc32c(b, s, e, seed)],
  ['js', crc32cJs],
];
if (native !== null && typeof native.crc32c === 'function') {
  routines.push(['native', native.crc32c as Fn]);
  routines.push(['native table', native.crc32cTable as Fn]);
}

// RFC 3720 (iSCSI) appendix B.4 and the common check value.
const VECTORS: Array<[string, Buffer, number]> = [
  ['"123456789"', Buffer.from('123456789'), 0xe3069283],
  ['empty', Buffer.alloc(0), 0],
  ['32 x 0x00', Buffer.alloc(32, 0), 0x8a9136aa],
  ['32 x 0xff', Buffer.alloc(32, 0xff), 0x62a8ab43],
  ['0..31', Buffer.from(Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e],
  ['31..0', Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c],
];

describe(`kafka storage CRC-32C (${MODE})`, () => {
  test('crc32c is public API: zcopy exports the routine the broker uses', () => {
    assert.equal(zcopy.crc32c, crc32c);
    assert.equal(zcopy.crc32cImplementation, crc32cImplementation);
    assert.equal(zcopy.crc32c(Buffer.from('123456789')), 0xe3069283);
  });

  test('the implementation matches the path', () => {
    if (NATIVE) assert.ok(crc32cImplementation === 'sse4.2' || crc32cImplementation === 'table', crc32cImplementation);
    else assert.equal(crc32cImplementation, 'js');
    console.log(`# crc32c implementation: ${crc32cImplementation}; routines tested: ${routines.map((r) => r[0]).join(', ')}`);
  });

  for (const [name, fn] of routines) {
    test(`known vectors: ${name}`, () => {
      for (const [what, buf, want] of VECTORS) assert.equal(fn(buf, 0, buf.length, 0), want, what);
      // A long input (crosses every unrolled path) and an unaligned window.
      const big = Buffer.alloc(4096 + 3);
      Buffer.from('123456789').copy(big, 3);
      assert.equal(fn(big, 3, 12, 0), 0xe3069283);
    });
  }

  test('all routines agree on random data, any alignment, and chain through seed', () => {
    const data = seededBytes(70_000, 9);
    for (let i = 0; i < 200; i++) {
      const s = (i * 7919) % 1000;
      const e = s + ((i * 104729) % 60_000);
      const want = crc32cJs(data, s, e, 0);
      for (const [name, fn] of routines) assert.equal(fn(data, s, e, 0), want, `${name} [${s}, ${e})`);
      const mid = s + Math.floor((e - s) / 3);
      for (const [name, fn] of routines) assert.equal(fn(data, mid, e, fn(data, s, mid, 0)), want, `${name} chained`);
    }
  });

  test('bad arguments are refused', () => {
    assert.throws(() => crc32c(Buffer.alloc(4), 2, 1), RangeError);
    assert.throws(() => crc32c(Buffer.alloc(4), 0, 5), RangeError);
    assert.throws(() => crc32c('abc' as unknown as Buffer), TypeError);
    if (native !== null && typeof native.crc32c === 'function') assert.ok((native.crc32c as Fn)(Buffer.alloc(4), 0, 5, 0) < 0, 'the C range check');
  });

  test('throughput (printed, not asserted)', () => {
    const buf = seededBytes(16 << 20, 3);
    const mbps = (fn: Fn, rounds: number): number => {
      fn(buf, 0, buf.length, 0);
      const t = process.hrtime.bigint();
      for (let i = 0; i < rounds; i++) fn(buf, 0, buf.length, 0);
      return (rounds * buf.length) / 1e6 / (Number(process.hrtime.bigint() - t) / 1e9);
    };
    const rows = routines.map(([name, fn]) => `${name} ${mbps(fn, name === 'js' ? 2 : 8).toFixed(0)} MB/s`);
    console.log(`# crc32c throughput over 16 MiB: ${rows.join(', ')}`);
  });
});
