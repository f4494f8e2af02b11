// The Kafka wire codec: big-endian fixed-width integers, int16-prefixed
// strings, int32-prefixed bytes and arrays (the non-flexible versions), and
// the few compact/tagged forms ApiVersions v3 needs. A Reader never reads
// past its frame: any malformed field throws ProtocolError, which the
// connection answers by closing (what Kafka's SocketServer does with a
// request it cannot parse).

/** A request that cannot be parsed. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}

export class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start = 0,
    readonly end = buf.length,
  ) {
    this.pos = start;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number): number {
    if (n < 0 || this.pos + n > this.end) throw new ProtocolError(`truncated request: needs ${n} bytes at ${this.pos}, frame ends at ${this.end}`);
    const p = this.pos;
    this.pos += n;
    return p;
  }

  int8(): number {
    return this.buf.readInt8(this.need(1));
  }
  bool(): boolean {
    return this.int8() !== 0;
  }
  int16(): number {
    return this.buf.readInt16BE(this.need(2));
  }
  int32(): number {
    return this.buf.readInt32BE(this.need(4));
  }
  int64(): number {
    return Number(this.buf.readBigInt64BE(this.need(8)));
  }
  nullableString(): string | null {
    const n = this.int16();
    if (n === -1) return null;
    if (n < 0) throw new ProtocolError(`negative string length ${n}`);
    const p = this.need(n);
    return this.buf.toString('utf8', p, p + n);
  }
  string(): string {
    const s = this.nullableString();
    if (s === null) throw new ProtocolError('null where a string is required');
    return s;
  }
  /** int32-prefixed bytes, a view into the frame (no copy). */
  nullableBytes(): Buffer | null {
    const n = this.int32();
    if (n === -1) return null;
    if (n < 0) throw new ProtocolError(`negative bytes length ${n}`);
    const p = this.need(n);
    return this.buf.subarray(p, p + n);
  }
  bytes(): Buffer {
    return this.nullableBytes() ?? Buffer.alloc(0);
  }
  nullableArray<T>(item: (r: Reader) => T): T[] | null {
    const n = this.int32();
    if (n === -1) return null;
    // Each element takes at least one byte: a count beyond that is garbage.
    if (n < 0 || n > this.remaining) throw new ProtocolError(`bad array length ${n}`);
    const out = new Array<T>(n);
    for (let i = 0; i < n; i++) out[i] = item(this);
    return out;
  }
  array<T>(item: (r: Reader) => T): T[] {
    return this.nullableArray(item) ?? [];
  }

  // Compact forms (flexible versions).
  uvarint(): number {
    let v = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const b = this.buf.readUInt8(this.need(1));
      v += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return v;
    }
    throw new ProtocolError('varint too long');
  }
  compactNullableString(): string | null {
    const n = this.uvarint();
    if (n === 0) return null;
    const p = this.need(n - 1);
    return this.buf.toString('utf8', p, p + n - 1);
  }
  taggedFields(): void {
    const count = this.uvarint();
    if (count > this.remaining) throw new ProtocolError('bad tagged field count');
    for (let i = 0; i < count; i++) {
      this.uvarint();
      this.need(this.uvarint());
    }
  }
}

/** A growable big-endian writer; `cut()` turns what was written into a part. */
export class Writer {
  private buf: Buffer;
  private pos = 0;
  private readonly done: Buffer[] = [];
  private doneBytes = 0;

  constructor(size = 256) {
    this.buf = Buffer.allocUnsafe(size);
  }

  // Callers take the position first, then index this.buf: room() may
  // replace the buffer, and `this.buf.write(x, this.room(n))` would read the
  // old one before the argument runs.
  private room(n: number): number {
    if (this.pos + n > this.buf.length) {
      const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
      this.buf.copy(next, 0, 0, this.pos);
      this.buf = next;
    }
    const p = this.pos;
    this.pos += n;
    return p;
  }

  /** Bytes written so far (including cut parts). */
  get length(): number {
    return this.doneBytes + this.pos;
  }

  int8(v: number): this {
    const at = this.room(1);
    this.buf.writeInt8(v, at);
    return this;
  }
  bool(v: boolean): this {
    return this.int8(v ? 1 : 0);
  }
  int16(v: number): this {
    const at = this.room(2);
    this.buf.writeInt16BE(v, at);
    return this;
  }
  int32(v: number): this {
    const at = this.room(4);
    this.buf.writeInt32BE(v, at);
    return this;
  }
  int64(v: number): this {
    const at = this.room(8);
    this.buf.writeBigInt64BE(BigInt(v), at);
    return this;
  }
  nullableString(s: string | null | undefined): this {
    if (s === null || s === undefined) return this.int16(-1);
    const n = Buffer.byteLength(s);
    this.int16(n);
    const at = this.room(n);
    this.buf.write(s, at, 'utf8');
    return this;
  }
  string(s: string): this {
    return this.nullableString(s);
  }
  nullableBytes(b: Uint8Array | null | undefined): this {
    if (b === null || b === undefined) return this.int32(-1);
    this.int32(b.byteLength);
    const at = this.room(b.byteLength);
    this.buf.set(b, at);
    return this;
  }
  bytes(b: Uint8Array): this {
    return this.nullableBytes(b);
  }
  /** Bytes as they are, no length prefix. */
  raw(b: Uint8Array): this {
    const at = this.room(b.byteLength);
    this.buf.set(b, at);
    return this;
  }
  array<T>(items: readonly T[] | null, each: (w: Writer, item: T) => void): this {
    if (items === null) return this.int32(-1);
    this.int32(items.length);
    for (const it of items) each(this, it);
    return this;
  }
  uvarint(v: number): this {
    while (v >= 0x80) {
      const at = this.room(1);
      this.buf.writeUInt8((v & 0x7f) | 0x80, at);
      v = Math.floor(v / 128);
    }
    const at = this.room(1);
    this.buf.writeUInt8(v, at);
    return this;
  }
  compactArray<T>(items: readonly T[], each: (w: Writer, item: T) => void): this {
    this.uvarint(items.length + 1);
    for (const it of items) each(this, it);
    return this;
  }
  emptyTaggedFields(): this {
    return this.uvarint(0);
  }

  /** Ends the current buffer part (a file region goes next). */
  cut(): void {
    if (this.pos === 0) return;
    this.done.push(this.buf.subarray(0, this.pos));
    this.doneBytes += this.pos;
    this.buf = Buffer.allocUnsafe(Math.max(256, this.buf.length - this.pos));
    this.pos = 0;
  }

  /** Every part written, in order. */
  parts(): Buffer[] {
    this.cut();
    return this.done;
  }

  /** All bytes as one buffer (responses without file regions). */
  toBuffer(): Buffer {
    const parts = this.parts();
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }
}
