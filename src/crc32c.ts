/**
 * CRC-32C (Castagnoli), the checksum of Kafka record batches, iSCSI and
 * ext4 metadata: the addon's routine
 * (SSE4.2 crc32 instruction or a slicing-by-8 table, native/crc32c.c) when it
 * loads, a slicing-by-8 JS implementation otherwise (ZCOPY_FORCE_FALLBACK=1,
 * no addon).
 *
 * @module
 */
import { native } from './native.js';

type NativeCrc = (buf: Uint8Array, start: number, end: number, seed: number) => number;

const nativeCrc: NativeCrc | undefined = typeof native?.crc32c === 'function' ? (native.crc32c as NativeCrc) : undefined;
const nativeImpl: string | undefined = typeof native?.crc32cImpl === 'function' ? (native.crc32cImpl as () => string)() : undefined;

/** Below this many bytes the N-API call costs more than the JS loop saves. */
const NATIVE_MIN = 64;

const T = buildTables();

function buildTables(): Int32Array[] {
  const t: Int32Array[] = [];
  for (let k = 0; k < 8; k++) t.push(new Int32Array(256));
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[0]![i] = c;
  }
  for (let i = 0; i < 256; i++) {
    let c = t[0]![i]!;
    for (let k = 1; k < 8; k++) {
      c = t[0]![c & 0xff]! ^ (c >>> 8);
      t[k]![i] = c;
    }
  }
  return t;
}

/**
 * The JS slicing-by-8 routine (what the portable path uses). Exported for
 * tests and the measurement in test output.
 *
 * @internal
 */
export function crc32cJs(buf: Uint8Array, start: number, end: number, seed = 0): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = T as [Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array];
  let crc = ~seed;
  let i = start;
  const stop8 = end - 7;
  while (i < stop8) {
    const a = crc ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
    crc =
      t7[a & 0xff]! ^
      t6[(a >>> 8) & 0xff]! ^
      t5[(a >>> 16) & 0xff]! ^
      t4[a >>> 24]! ^
      t3[buf[i + 4]!]! ^
      t2[buf[i + 5]!]! ^
      t1[buf[i + 6]!]! ^
      t0[buf[i + 7]!]!;
    i += 8;
  }
  while (i < end) crc = t0[(crc ^ buf[i++]!) & 0xff]! ^ (crc >>> 8);
  return ~crc >>> 0;
}

/**
 * Which routine {@link crc32c} uses: `'sse4.2'` or `'table'` (native), or
 * `'js'` (portable path).
 */
export const crc32cImplementation: 'sse4.2' | 'table' | 'js' = nativeCrc !== undefined ? (nativeImpl === 'sse4.2' ? 'sse4.2' : 'table') : 'js';

/**
 * CRC-32C of `buf[start, end)`; `seed` continues a previous result (0 to
 * start). Throws `RangeError` for a range outside `buf`.
 *
 * @example
 * ```ts
 * crc32c(Buffer.from('123456789')) === 0xe3069283;
 * ```
 */
export function crc32c(buf: Uint8Array, start = 0, end: number = buf.length, seed = 0): number {
  if (!(buf instanceof Uint8Array)) throw new TypeError('crc32c: buf must be a Buffer or Uint8Array');
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end < start || end > buf.length) {
    throw new RangeError(`crc32c: range [${start}, ${end}) is outside a buffer of ${buf.length} bytes`);
  }
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new RangeError(`crc32c: seed must be a uint32, got ${seed}`);
  if (nativeCrc !== undefined && end - start >= NATIVE_MIN) {
    const r = nativeCrc(buf, start, end, seed);
    if (r >= 0) return r;
  }
  return crc32cJs(buf, start, end, seed);
}
