/**
 * CompositeBuffer: many Buffers read as one, without concatenating them
 * (Netty's `CompositeByteBuf`; in Node, what `bl` does with a linear scan
 * and an allocation per read).
 *
 * Components live in an array with their running start offsets. A read
 * finds its component with a last-hit cache (consecutive reads hit the same
 * or the next component) and otherwise a binary search, so random access is
 * O(log n) in the number of components. Reads inside one component go
 * straight to that Buffer; the rare read that straddles a boundary gathers
 * its bytes into one preallocated scratch buffer, so no read allocates.
 * `consume()` drops fully-read components by moving a head index and
 * compacts the arrays only when the dead prefix outweighs the live part:
 * amortized O(1), never an `Array#shift` per call.
 *
 * Pure TypeScript: identical with or without the native addon.
 *
 * @module
 */
import { invalidArgType, outOfRange } from './errors.js';

/** Gathering writes are capped at this many buffers (Linux IOV_MAX). */
export const IOV_MAX = 1024;

/** Straddling reads gather into this; JS is single-threaded, so one suffices. */
const SCRATCH = Buffer.allocUnsafeSlow(8);
/** Placeholder for consumed slots: keeps the array's element kind stable. */
const DEAD = Buffer.alloc(0);

/** What `write()` needs from a stream (a `net.Socket`, any `Writable`). */
export interface CorkableWritable {
  write(chunk: Buffer, callback?: (err?: Error | null) => void): boolean;
  cork(): void;
  uncork(): void;
}

/**
 * A sequence of Buffers addressed as one. Appending never copies;
 * reads, `slice`, `indexOf` and `consume` work across component boundaries.
 *
 * @example
 * ```ts
 * const cb = new CompositeBuffer();
 * socket.on('data', (chunk) => {
 *   cb.append(chunk);
 *   while (cb.length >= 4 && cb.length >= 4 + cb.readUInt32BE(0)) {
 *     const n = cb.readUInt32BE(0);
 *     handle(cb.toBuffer(4, 4 + n)); // zero-copy unless the frame spans chunks
 *     cb.consume(4 + n);
 *   }
 * });
 * ```
 */
export class CompositeBuffer {
  #bufs: Buffer[] = [];
  /** #starts[i]: internal position of the first byte of #bufs[i]. */
  #starts: number[] = [];
  /** #ends[i]: #starts[i] + #bufs[i].length (saves a typed-array length load per lookup). */
  #ends: number[] = [];
  /** #abs[i], #offs[i]: #bufs[i].buffer and .byteOffset, read once at append: toBuffer() makes a view per frame. */
  #abs: ArrayBufferLike[] = [];
  #offs: number[] = [];
  /** First live component: those before it were consumed. */
  #head = 0;
  /** Internal position of logical byte 0. */
  #base = 0;
  /** Internal position one past the last byte. */
  #end = 0;
  /** Component of the last lookup. */
  #last = 0;
  /** Where #locate found the bytes: a component (or SCRATCH) and an index. */
  #rb: Buffer = DEAD;
  #ri = 0;

  /** Starts with `buffers` as components (no copy). */
  constructor(buffers?: Iterable<Uint8Array>) {
    if (buffers !== undefined) {
      if (buffers === null || typeof (buffers as Iterable<Uint8Array>)[Symbol.iterator] !== 'function') {
        throw invalidArgType('buffers', 'an iterable of Buffer or Uint8Array', buffers);
      }
      for (const b of buffers) this.append(b);
    }
  }

  /** Total bytes. */
  get length(): number {
    return this.#end - this.#base;
  }

  /** Number of components (the first may be partly consumed). */
  get componentCount(): number {
    return this.#bufs.length - this.#head;
  }

  /**
   * Appends `buf` as a component, without copying (the CompositeBuffer
   * keeps a reference: do not modify `buf` afterwards unless you mean to
   * change the composite's bytes). A CompositeBuffer argument appends its
   * components. Empty buffers are skipped. Returns `this`.
   */
  append(buf: Uint8Array | CompositeBuffer): this {
    if (buf instanceof CompositeBuffer) {
      for (const b of buf.components()) this.#push(b);
      return this;
    }
    if (!(buf instanceof Uint8Array)) throw invalidArgType('buf', 'an instance of Buffer, Uint8Array or CompositeBuffer', buf);
    if (buf.length === 0) return this;
    this.#push(Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength));
    return this;
  }

  #push(b: Buffer): void {
    this.#bufs.push(b);
    this.#abs.push(b.buffer);
    this.#offs.push(b.byteOffset);
    this.#starts.push(this.#end);
    this.#end += b.length;
    this.#ends.push(this.#end);
  }

  /** Index of the component holding internal position `pos` (which must be in range). */
  #find(pos: number): number {
    const starts = this.#starts;
    const ends = this.#ends;
    let i = this.#last;
    if (pos >= starts[i]!) {
      if (pos < ends[i]!) return i;
      // Sequential access: the next component is the likely one.
      i++;
      if (i < ends.length && pos < ends[i]!) {
        this.#last = i;
        return i;
      }
    }
    let lo = this.#head;
    let hi = ends.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (starts[mid]! <= pos) lo = mid;
      else hi = mid - 1;
    }
    this.#last = lo;
    return lo;
  }

  /** Checks a read of `width` bytes at `offset`; returns its internal position. */
  #check(offset: unknown, width: number): number {
    if (typeof offset !== 'number') {
      if (offset === undefined) return this.#check(0, width);
      throw invalidArgType('offset', 'of type number', offset);
    }
    if (!(offset >= 0 && offset <= this.#end - this.#base - width) || Math.floor(offset) !== offset) {
      throw outOfRange('offset', `an integer >= 0 and <= ${this.#end - this.#base - width}`, offset);
    }
    return this.#base + offset;
  }

  /** Copies `width` bytes starting at byte r of component i (and on) into SCRATCH. */
  #gather(i: number, r: number, width: number): void {
    let b = this.#bufs[i]!;
    for (let k = 0; k < width; k++) {
      if (r === b.length) {
        b = this.#bufs[++i]!;
        r = 0;
      }
      SCRATCH[k] = b[r++]!;
    }
  }

  /**
   * Points #rb/#ri at `width` contiguous bytes equal to those at `offset`:
   * the component itself, or SCRATCH when they straddle components.
   */
  #locate(offset: unknown, width: number): void {
    const pos = this.#check(offset, width);
    const i = this.#find(pos);
    const b = this.#bufs[i]!;
    const r = pos - this.#starts[i]!;
    if (r + width <= b.length) {
      this.#rb = b;
      this.#ri = r;
      return;
    }
    this.#gather(i, r, width);
    this.#rb = SCRATCH;
    this.#ri = 0;
  }

  // The 1-, 2- and 4-byte reads are what parsers call per frame: they read
  // the component's bytes directly instead of going through #locate.

  readUInt8(offset?: number): number {
    const pos = this.#check(offset, 1);
    const i = this.#find(pos);
    return this.#bufs[i]![pos - this.#starts[i]!]!;
  }
  readInt8(offset?: number): number {
    const v = this.readUInt8(offset);
    return v > 127 ? v - 256 : v;
  }
  readUInt16LE(offset?: number): number {
    const pos = this.#check(offset, 2);
    const i = this.#find(pos);
    const b = this.#bufs[i]!;
    const r = pos - this.#starts[i]!;
    if (r + 2 <= b.length) return b[r]! | (b[r + 1]! << 8);
    this.#gather(i, r, 2);
    return SCRATCH[0]! | (SCRATCH[1]! << 8);
  }
  readUInt16BE(offset?: number): number {
    const pos = this.#check(offset, 2);
    const i = this.#find(pos);
    const b = this.#bufs[i]!;
    const r = pos - this.#starts[i]!;
    if (r + 2 <= b.length) return (b[r]! << 8) | b[r + 1]!;
    this.#gather(i, r, 2);
    return (SCRATCH[0]! << 8) | SCRATCH[1]!;
  }
  readInt16LE(offset?: number): number {
    const v = this.readUInt16LE(offset);
    return (v << 16) >> 16;
  }
  readInt16BE(offset?: number): number {
    const v = this.readUInt16BE(offset);
    return (v << 16) >> 16;
  }
  readUInt32LE(offset?: number): number {
    const pos = this.#check(offset, 4);
    const i = this.#find(pos);
    const b = this.#bufs[i]!;
    const r = pos - this.#starts[i]!;
    if (r + 4 <= b.length) return (b[r]! | (b[r + 1]! << 8) | (b[r + 2]! << 16)) + b[r + 3]! * 0x1000000;
    this.#gather(i, r, 4);
    return SCRATCH.readUInt32LE(0);
  }
  readUInt32BE(offset?: number): number {
    const pos = this.#check(offset, 4);
    const i = this.#find(pos);
    const b = this.#bufs[i]!;
    const r = pos - this.#starts[i]!;
    if (r + 4 <= b.length) return b[r]! * 0x1000000 + ((b[r + 1]! << 16) | (b[r + 2]! << 8) | b[r + 3]!);
    this.#gather(i, r, 4);
    return SCRATCH.readUInt32BE(0);
  }
  readInt32LE(offset?: number): number {
    return this.readUInt32LE(offset) | 0;
  }
  readInt32BE(offset?: number): number {
    return this.readUInt32BE(offset) | 0;
  }
  readBigUInt64LE(offset?: number): bigint {
    this.#locate(offset, 8);
    return this.#rb.readBigUInt64LE(this.#ri);
  }
  readBigUInt64BE(offset?: number): bigint {
    this.#locate(offset, 8);
    return this.#rb.readBigUInt64BE(this.#ri);
  }
  readBigInt64LE(offset?: number): bigint {
    this.#locate(offset, 8);
    return this.#rb.readBigInt64LE(this.#ri);
  }
  readBigInt64BE(offset?: number): bigint {
    this.#locate(offset, 8);
    return this.#rb.readBigInt64BE(this.#ri);
  }
  readFloatLE(offset?: number): number {
    this.#locate(offset, 4);
    return this.#rb.readFloatLE(this.#ri);
  }
  readFloatBE(offset?: number): number {
    this.#locate(offset, 4);
    return this.#rb.readFloatBE(this.#ri);
  }
  readDoubleLE(offset?: number): number {
    this.#locate(offset, 8);
    return this.#rb.readDoubleLE(this.#ri);
  }
  readDoubleBE(offset?: number): number {
    this.#locate(offset, 8);
    return this.#rb.readDoubleBE(this.#ri);
  }
  /** Unsigned integer of `byteLength` (1-6) bytes, little-endian. */
  readUIntLE(offset: number, byteLength: number): number {
    this.#locate(offset, checkByteLength(byteLength));
    return this.#rb.readUIntLE(this.#ri, byteLength);
  }
  /** Unsigned integer of `byteLength` (1-6) bytes, big-endian. */
  readUIntBE(offset: number, byteLength: number): number {
    this.#locate(offset, checkByteLength(byteLength));
    return this.#rb.readUIntBE(this.#ri, byteLength);
  }
  /** Signed integer of `byteLength` (1-6) bytes, little-endian. */
  readIntLE(offset: number, byteLength: number): number {
    this.#locate(offset, checkByteLength(byteLength));
    return this.#rb.readIntLE(this.#ri, byteLength);
  }
  /** Signed integer of `byteLength` (1-6) bytes, big-endian. */
  readIntBE(offset: number, byteLength: number): number {
    this.#locate(offset, checkByteLength(byteLength));
    return this.#rb.readIntBE(this.#ri, byteLength);
  }

  /** Range of the last #range call, as internal positions (fields, not a tuple: no allocation). */
  #from = 0;
  #to = 0;

  /** Validates a [start, end) range (defaults: the whole composite) into #from/#to. */
  #range(start: unknown, end: unknown): void {
    const len = this.#end - this.#base;
    const s = start === undefined ? 0 : start;
    const e = end === undefined ? len : end;
    if (typeof s !== 'number') throw invalidArgType('start', 'of type number', s);
    if (typeof e !== 'number') throw invalidArgType('end', 'of type number', e);
    if (!(s >= 0 && s <= len) || Math.floor(s) !== s) throw outOfRange('start', `an integer >= 0 and <= ${len}`, s);
    if (!(e >= s && e <= len) || Math.floor(e) !== e) throw outOfRange('end', `an integer >= ${s} and <= ${len}`, e);
    this.#from = this.#base + s;
    this.#to = this.#base + e;
  }

  /**
   * A CompositeBuffer over `[start, end)` sharing this one's memory (no
   * bytes are copied; its components are views of these). Later `append`
   * or `consume` on either does not affect the other.
   */
  slice(start?: number, end?: number): CompositeBuffer {
    this.#range(start, end);
    const from = this.#from;
    const to = this.#to;
    const out = new CompositeBuffer();
    if (from === to) return out;
    const bufs = this.#bufs;
    const starts = this.#starts;
    for (let i = this.#find(from); i < bufs.length && starts[i]! < to; i++) {
      const b = bufs[i]!;
      const s = starts[i]!;
      const a = from > s ? from - s : 0;
      const z = to - s < b.length ? to - s : b.length;
      out.#push(a === 0 && z === b.length ? b : b.subarray(a, z));
    }
    return out;
  }

  /**
   * The bytes of `[start, end)` as one Buffer. When the range lies inside
   * one component this is a zero-copy `subarray` of it (it shares memory);
   * only a range spanning components is copied into a new Buffer.
   */
  toBuffer(start?: number, end?: number): Buffer {
    this.#range(start, end);
    const from = this.#from;
    const to = this.#to;
    if (from === to) return Buffer.alloc(0);
    const bufs = this.#bufs;
    const starts = this.#starts;
    let i = this.#find(from);
    let b = bufs[i]!;
    let r = from - starts[i]!;
    if (to <= this.#ends[i]!) {
      if (r === 0 && to - from === b.length) return b;
      // Buffer.from(arrayBuffer, offset, length) is a cheaper view than
      // subarray(), which goes through the species constructor.
      return Buffer.from(this.#abs[i]!, this.#offs[i]! + r, to - from);
    }
    const out = Buffer.allocUnsafe(to - from);
    let o = 0;
    for (;;) {
      const n = Math.min(b.length - r, to - from - o);
      // set() of a plain Uint8Array view is V8's memmove, without the
      // argument handling of Buffer#copy.
      out.set(new Uint8Array(b.buffer, b.byteOffset + r, n), o);
      o += n;
      if (o === out.length) return out;
      b = bufs[++i]!;
      r = 0;
    }
  }

  /** `toBuffer(start, end).toString(encoding)`. */
  toString(encoding: BufferEncoding = 'utf8', start?: number, end?: number): string {
    return this.toBuffer(start, end).toString(encoding);
  }

  /**
   * Position of the first occurrence of `value` at or after `from`, or -1.
   * Multi-byte needles are found across component boundaries. A string is
   * searched as UTF-8, a number as one byte. A negative `from` counts from
   * the end.
   */
  indexOf(value: Uint8Array | string | number, from = 0): number {
    let needle: Uint8Array;
    if (typeof value === 'string') needle = Buffer.from(value, 'utf8');
    else if (typeof value === 'number') {
      if (!Number.isInteger(value) || value < 0 || value > 255) throw outOfRange('value', 'an integer >= 0 and <= 255', value);
      needle = Buffer.of(value);
    } else if (value instanceof Uint8Array) needle = value;
    else throw invalidArgType('value', 'of type string, number, Buffer or Uint8Array', value);
    if (typeof from !== 'number' || !Number.isInteger(from)) throw invalidArgType('from', 'an integer', from);
    const len = this.#end - this.#base;
    if (from < 0) from = Math.max(0, len + from);
    if (from > len) from = len;
    const m = needle.length;
    if (m === 0) return from;
    if (m > len - from) return -1;
    const bufs = this.#bufs;
    const starts = this.#starts;
    let pos = this.#base + from;
    for (let i = this.#find(pos); i < bufs.length; i++) {
      const b = bufs[i]!;
      const s = starts[i]!;
      const r = pos - s;
      const hit = b.indexOf(needle, r);
      if (hit !== -1) return s + hit - this.#base;
      // Matches starting in b that end in a later component start within
      // the last m-1 bytes of b; any whole match in b would come earlier.
      for (let k = Math.max(r, b.length - m + 1); k < b.length; k++) {
        if (s + k + m > this.#end) return -1;
        if (this.#matches(i, k, needle)) return s + k - this.#base;
      }
      pos = s + b.length;
    }
    return -1;
  }

  #matches(i: number, r: number, needle: Uint8Array): boolean {
    let b = this.#bufs[i]!;
    for (let k = 0; k < needle.length; k++) {
      if (r === b.length) {
        b = this.#bufs[++i]!;
        r = 0;
      }
      if (b[r++] !== needle[k]) return false;
    }
    return true;
  }

  /**
   * Drops `n` bytes from the front. Components read entirely are released
   * (the CompositeBuffer no longer references them). Amortized O(1).
   */
  consume(n: number): this {
    if (typeof n !== 'number') throw invalidArgType('n', 'of type number', n);
    const len = this.#end - this.#base;
    if (!Number.isInteger(n) || n < 0 || n > len) throw outOfRange('n', `an integer >= 0 and <= ${len}`, n);
    if (n === len) {
      // Common in protocol parsers: everything read. Start over cheaply.
      this.#bufs = [];
      this.#abs = [];
      this.#offs = [];
      this.#starts = [];
      this.#ends = [];
      this.#head = this.#base = this.#end = this.#last = 0;
      return this;
    }
    const base = (this.#base += n);
    const bufs = this.#bufs;
    const abs = this.#abs;
    const ends = this.#ends;
    let h = this.#head;
    while (ends[h]! <= base) {
      bufs[h] = DEAD;
      abs[h++] = DEAD.buffer;
    }
    this.#head = h;
    if (this.#last < h) this.#last = h;
    if (h >= 32 && h * 2 >= bufs.length) this.#compact();
    return this;
  }

  /** Moves the live components to the front, rebasing positions to keep them small. */
  #compact(): void {
    const h = this.#head;
    const origin = this.#starts[h]!;
    this.#bufs.splice(0, h);
    this.#abs.splice(0, h);
    this.#offs.splice(0, h);
    const starts = this.#starts;
    const ends = this.#ends;
    starts.splice(0, h);
    ends.splice(0, h);
    for (let i = 0; i < starts.length; i++) {
      starts[i]! -= origin;
      ends[i]! -= origin;
    }
    this.#base -= origin;
    this.#end -= origin;
    this.#last -= h;
    this.#head = 0;
  }

  /**
   * The live components in order, as a new array (the first is a subarray
   * when it was partly consumed). No bytes are copied.
   */
  components(): Buffer[] {
    const out: Buffer[] = [];
    const bufs = this.#bufs;
    for (let i = this.#head; i < bufs.length; i++) {
      const skip = this.#base - this.#starts[i]!;
      out.push(skip > 0 ? bufs[i]!.subarray(skip) : bufs[i]!);
    }
    return out;
  }

  /**
   * Writes every component to `stream` as gathering writes: the stream is
   * corked while up to {@link IOV_MAX} components are queued, so a
   * `net.Socket` hands them to one writev(2) per batch; nothing is
   * concatenated. `callback` runs once all of them were flushed (or with
   * the error). Returns what the last `stream.write` returned (false: wait
   * for `'drain'`). The CompositeBuffer is not consumed.
   *
   * @example
   * ```ts
   * if (!response.write(socket)) await once(socket, 'drain');
   * ```
   */
  write(stream: CorkableWritable, callback?: (err?: Error | null) => void): boolean {
    if (stream === null || typeof stream !== 'object' || typeof stream.write !== 'function' || typeof stream.cork !== 'function' || typeof stream.uncork !== 'function') {
      throw invalidArgType('stream', 'a Writable stream (with write, cork and uncork)', stream);
    }
    if (callback !== undefined && typeof callback !== 'function') throw invalidArgType('callback', 'of type function', callback);
    const parts = this.components();
    if (parts.length === 0) {
      if (callback) process.nextTick(callback, null);
      return true;
    }
    let ok = true;
    for (let i = 0; i < parts.length; i += IOV_MAX) {
      const end = Math.min(parts.length, i + IOV_MAX);
      stream.cork();
      try {
        for (let j = i; j < end; j++) ok = stream.write(parts[j]!, j === parts.length - 1 ? callback : undefined);
      } finally {
        stream.uncork();
      }
    }
    return ok;
  }
}

function checkByteLength(n: unknown): number {
  if (typeof n !== 'number') throw invalidArgType('byteLength', 'of type number', n);
  if (!Number.isInteger(n) || n < 1 || n > 6) throw outOfRange('byteLength', 'an integer >= 1 and <= 6', n);
  return n;
}
