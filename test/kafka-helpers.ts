// Shared by the broker tests: a raw Kafka protocol client (to send exactly
// the bytes a test needs, malformed ones included), a RecordBatch v2
// builder, a broker in a temp dir, and kcat discovery.
import net from 'node:net';
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createBroker, type Broker, type BrokerOptions } from '../src/kafka/index.js';
import { Reader, Writer } from '../src/kafka/protocol/codec.js';
import { tmpDir, withTimeout } from './helpers.js';

export { Reader, Writer };

export async function startBroker(opts: Partial<BrokerOptions> = {}): Promise<{ broker: Broker; dir: string; port: number; stop(): Promise<void> }> {
  const dir = opts.dataDir ?? tmpDir('zcopy-kafka-');
  const broker = await createBroker({ host: '127.0.0.1', port: 0, ...opts, dataDir: dir });
  await broker.listen();
  return {
    broker,
    dir,
    port: broker.address().port,
    async stop() {
      await broker.close(2000);
      if (!opts.dataDir) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// CRC-32C (Castagnoli), a plain table version: the tests' own reference.
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
export function crc32c(buf: Uint8Array, start = 0, end = buf.length): number {
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function zigzag(v: number): number {
  return v >= 0 ? v * 2 : -v * 2 - 1;
}

/** A RecordBatch v2 (uncompressed) holding `values`, base offset 0. */
export function recordBatch(values: Array<Buffer | string>, opts: { timestamp?: number; key?: string; producerId?: number; producerEpoch?: number; baseSequence?: number } = {}): Buffer {
  const ts = opts.timestamp ?? Date.now();
  const recs = values.map((v, i) => {
    const value = Buffer.isBuffer(v) ? v : Buffer.from(v);
    const body = new Writer();
    body.int8(0);
    body.uvarint(zigzag(0)); // timestamp delta
    body.uvarint(zigzag(i)); // offset delta
    if (opts.key === undefined) body.uvarint(zigzag(-1));
    else body.uvarint(zigzag(Buffer.byteLength(opts.key))).raw(Buffer.from(opts.key));
    body.uvarint(zigzag(value.length)).raw(value).uvarint(0); // no headers
    const rest = body.toBuffer();
    return new Writer().uvarint(zigzag(rest.length)).raw(rest).toBuffer();
  });
  const records = Buffer.concat(recs);
  const h = Buffer.alloc(61);
  h.writeBigInt64BE(0n, 0);
  h.writeInt32BE(61 - 12 + records.length, 8);
  h.writeInt32BE(-1, 12);
  h.writeInt8(2, 16);
  h.writeInt16BE(0, 21);
  h.writeInt32BE(values.length - 1, 23);
  h.writeBigInt64BE(BigInt(ts), 27);
  h.writeBigInt64BE(BigInt(ts), 35);
  h.writeBigInt64BE(BigInt(opts.producerId ?? -1), 43);
  h.writeInt16BE(opts.producerEpoch ?? -1, 51);
  h.writeInt32BE(opts.baseSequence ?? -1, 53);
  h.writeInt32BE(values.length, 57);
  const batch = Buffer.concat([h, records]);
  batch.writeUInt32BE(crc32c(batch, 21) >>> 0, 17);
  return batch;
}

/** A raw protocol client: requests framed by hand, responses matched in order. */
export class RawClient {
  readonly socket: net.Socket;
  #corr = 0;
  #chunks: Buffer[] = [];
  #buffered = 0;
  readonly #waiting: Array<{ corr: number; resolve: (r: Reader) => void; reject: (e: Error) => void }> = [];
  readonly closed: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => this.#onData(d));
    this.closed = new Promise((r) => socket.once('close', () => r()));
    socket.on('error', () => {});
    socket.once('close', () => {
      for (const w of this.#waiting.splice(0)) w.reject(Object.assign(new Error('connection closed'), { code: 'ECONNCLOSED' }));
    });
  }

  static connect(port: number): Promise<RawClient> {
    return withTimeout(
      new Promise<RawClient>((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1', () => resolve(new RawClient(s)));
        s.once('error', reject);
      }),
      5000,
      'connect',
    );
  }

  #onData(d: Buffer): void {
    this.#chunks.push(d);
    this.#buffered += d.length;
    for (;;) {
      if (this.#buffered < 4) return;
      let all = Buffer.concat(this.#chunks);
      const size = all.readInt32BE(0);
      if (all.length < 4 + size) {
        this.#chunks = [all];
        return;
      }
      const frame = all.subarray(4, 4 + size);
      all = all.subarray(4 + size);
      this.#chunks = all.length ? [all] : [];
      this.#buffered = all.length;
      const corr = frame.readInt32BE(0);
      const w = this.#waiting.shift();
      if (!w) continue;
      if (w.corr !== corr) w.reject(new Error(`response out of order: expected correlation ${w.corr}, got ${corr}`));
      else w.resolve(new Reader(frame, 4));
    }
  }

  /** The request frame for apiKey/version with `body` (header v1, or v2 with `flexible`). */
  frame(apiKey: number, version: number, body: Buffer, flexible = false): { corr: number; bytes: Buffer } {
    const corr = ++this.#corr;
    const h = new Writer();
    h.int16(apiKey).int16(version).int32(corr).nullableString('raw-test');
    if (flexible) h.uvarint(0);
    const head = h.toBuffer();
    const size = Buffer.alloc(4);
    size.writeInt32BE(head.length + body.length);
    return { corr, bytes: Buffer.concat([size, head, body]) };
  }

  /** Sends a request; resolves with a Reader at the response body. */
  request(apiKey: number, version: number, body: Buffer | Writer, opts: { flexible?: boolean; noResponse?: boolean } = {}): Promise<Reader> {
    const b = body instanceof Writer ? body.toBuffer() : body;
    const f = this.frame(apiKey, version, b, opts.flexible);
    const p = opts.noResponse
      ? Promise.resolve(new Reader(Buffer.alloc(0)))
      : new Promise<Reader>((resolve, reject) => this.#waiting.push({ corr: f.corr, resolve, reject }));
    this.socket.write(f.bytes);
    return withTimeout(p, 20_000, `response to api ${apiKey} v${version}`);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

// Request bodies the tests use.
export function produceBody(topic: string, partition: number, records: Buffer, acks = 1): Writer {
  const w = new Writer();
  w.nullableString(null).int16(acks).int32(5000);
  w.int32(1).string(topic).int32(1).int32(partition).bytes(records);
  return w;
}

export function fetchBody(topics: Array<{ topic: string; partitions: Array<{ partition: number; offset: number; maxBytes: number }> }>, opts: { maxWait?: number; minBytes?: number; maxBytes?: number } = {}): Writer {
  const w = new Writer();
  w.int32(-1).int32(opts.maxWait ?? 0).int32(opts.minBytes ?? 0).int32(opts.maxBytes ?? 50 * 1024 * 1024).int8(0);
  w.array(topics, (w, t) => {
    w.string(t.topic);
    w.array(t.partitions, (w, p) => w.int32(p.partition).int64(p.offset).int32(p.maxBytes));
  });
  return w;
}

/** Parses a Fetch v4 response. */
export function parseFetchV4(r: Reader): Array<{ topic: string; partitions: Array<{ partition: number; error: number; hw: number; records: Buffer }> }> {
  r.int32();
  return r.array((r) => ({
    topic: r.string(),
    partitions: r.array((r) => {
      const partition = r.int32();
      const error = r.int16();
      const hw = r.int64();
      r.int64();
      r.array((r) => [r.int64(), r.int64()]);
      return { partition, error, hw, records: r.bytes() };
    }),
  }));
}

/** Batch boundaries in a records blob: [baseOffset, lastOffset, length] each (a partial tail is dropped). */
export function batches(records: Buffer): Array<{ base: number; last: number; length: number }> {
  const out = [];
  let at = 0;
  while (at + 61 <= records.length) {
    const len = records.readInt32BE(at + 8) + 12;
    if (at + len > records.length) break;
    const base = Number(records.readBigInt64BE(at));
    out.push({ base, last: base + records.readInt32BE(at + 23), length: len });
    at += len;
  }
  return out;
}

let kcatChecked: string | null | undefined;
/** The kcat binary, installed with apt-get when missing (as root); null with a printed reason otherwise. */
export function kcat(): string | null {
  if (kcatChecked !== undefined) return kcatChecked;
  const which = (): string | null => {
    const r = spawnSync('sh', ['-c', 'command -v kcat || command -v kafkacat'], { encoding: 'utf8' });
    return r.status === 0 ? r.stdout.trim() : null;
  };
  let bin = which();
  if (!bin && process.getuid?.() === 0) {
    spawnSync('sh', ['-c', 'apt-get update -qq && apt-get install -y -qq kcat'], { stdio: 'ignore', timeout: 180_000 });
    bin = which();
  }
  if (!bin) console.log('# kcat tests skipped: kcat is not installed and could not be installed with apt-get');
  kcatChecked = bin;
  return bin;
}
