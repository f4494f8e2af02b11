// A throwaway stand-in for src/kafka/storage used only while the real
// storage is being written: one file per partition, batches appended as
// received (base offset rewritten), no CRC, no indexes, no retention.
import fs from 'node:fs';
import path from 'node:path';

type Entry = { base: number; last: number; pos: number; len: number; maxTs: number };

class FakePartition {
  entries: Entry[] = [];
  end = 0;
  size = 0;
  listeners = new Set<() => void>();
  fd: number;
  constructor(readonly topic: string, readonly partition: number, file: string) {
    this.fd = fs.openSync(file, 'w+');
  }
  get logStartOffset(): number {
    return 0;
  }
  get logEndOffset(): number {
    return this.end;
  }
  get highWatermark(): number {
    return this.end;
  }
  async append(records: Buffer): Promise<{ errorCode: number; baseOffset: number; logAppendTimeMs: number; logStartOffset: number }> {
    const base = this.end;
    let at = 0;
    while (at + 61 <= records.length) {
      const len = records.readInt32BE(at + 8) + 12;
      records.writeBigInt64BE(BigInt(this.end), at);
      const last = this.end + records.readInt32BE(at + 23);
      this.entries.push({ base: this.end, last, pos: this.size + at, len, maxTs: Number(records.readBigInt64BE(at + 35)) });
      this.end = last + 1;
      at += len;
    }
    fs.writeSync(this.fd, records, 0, records.length, this.size);
    this.size += records.length;
    for (const l of [...this.listeners]) l();
    return { errorCode: 0, baseOffset: base, logAppendTimeMs: -1, logStartOffset: 0 };
  }
  read(offset: number, maxBytes: number, minOne: boolean) {
    const i = this.entries.findIndex((e) => e.last >= offset);
    const res = { errorCode: 0, highWatermark: this.end, logStartOffset: 0, lastStableOffset: this.end, slices: [] as Array<{ fd: number; position: number; length: number; release(): void }>, bytes: 0 };
    if (i < 0) return res;
    const pos = this.entries[i]!.pos;
    let len = Math.min(this.size - pos, maxBytes);
    if (minOne) len = Math.max(len, this.entries[i]!.len);
    res.slices.push({ fd: this.fd, position: pos, length: len, release() {} });
    res.bytes = len;
    return res;
  }
  offsetForTimestamp(ts: number) {
    if (ts === -1) return { offset: this.end, timestamp: -1 };
    if (ts === -2) return { offset: 0, timestamp: -1 };
    const e = this.entries.find((e) => e.maxTs >= ts);
    return e ? { offset: e.base, timestamp: e.maxTs } : { offset: -1, timestamp: -1 };
  }
  onAppend(l: () => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
}

export class FakeLogManager {
  recovered = false;
  parts = new Map<string, FakePartition[]>();
  offsets = new Map<string, { offset: number; metadata: string | null }>();
  constructor(readonly dir: string) {}
  static async open(dir: string): Promise<FakeLogManager> {
    fs.mkdirSync(dir, { recursive: true });
    return new FakeLogManager(dir);
  }
  topics() {
    return [...this.parts].map(([name, p]) => ({ name, partitions: p.length, config: {} }));
  }
  topic(name: string) {
    const p = this.parts.get(name);
    return p ? { name, partitions: p.length, config: {} } : undefined;
  }
  partition(t: string, p: number) {
    return this.parts.get(t)?.[p];
  }
  async createTopic(name: string, n: number): Promise<void> {
    if (this.parts.has(name)) throw Object.assign(new Error('exists'), { errorCode: 36 });
    if (!/^[A-Za-z0-9._-]+$/.test(name)) throw Object.assign(new Error('bad name'), { errorCode: 17 });
    this.parts.set(name, Array.from({ length: n }, (_, i) => new FakePartition(name, i, path.join(this.dir, `${name}-${i}.log`))));
  }
  async deleteTopic(name: string): Promise<void> {
    if (!this.parts.delete(name)) throw Object.assign(new Error('unknown'), { errorCode: 3 });
  }
  async enforceRetention(): Promise<void> {}
  async flush(): Promise<void> {}
  async close(): Promise<void> {
    for (const ps of this.parts.values()) for (const p of ps) fs.closeSync(p.fd);
    this.parts.clear();
  }
  async commitOffsets(group: string, entries: Array<{ topic: string; partition: number; offset: number; metadata: string | null }>): Promise<void> {
    for (const e of entries) this.offsets.set(`${group}\0${e.topic}\0${e.partition}`, { offset: e.offset, metadata: e.metadata });
  }
  fetchOffset(group: string, topic: string, partition: number) {
    return this.offsets.get(`${group}\0${topic}\0${partition}`);
  }
  groups(): string[] {
    return [...new Set([...this.offsets.keys()].map((k) => k.split('\0')[0]!))];
  }
}
