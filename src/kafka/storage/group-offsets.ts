/**
 * Durable consumer group offsets. Kafka keeps them in the compacted
 * `__consumer_offsets` topic; here a small append-only file in the data
 * directory, `group-offsets.log`, of checksummed records
 * (uint32 length | uint32 CRC-32C of the payload | JSON payload), compacted
 * (rewritten with the live entries only) on open. A torn or damaged record
 * ends the file: it and everything after it are cut.
 *
 * Like Kafka's offsets topic, a commit is acknowledged once written (it
 * survives a process crash: the page cache keeps it) and fsynced with the
 * log's flush policy: per commit when `log.flush.interval.messages` is set,
 * else on flush(), on the flush timer and on close. Kafka consumers (kafkajs)
 * may commit after every fetch; an fsync each time would throttle them.
 *
 * @module
 */
import * as fs from 'node:fs';
import { crc32c } from '../../index.js';
import { closeFd, fdatasyncFd, openFd, writeAll, writeFileAtomic } from './fs-util.js';

export interface OffsetEntry {
  topic: string;
  partition: number;
  offset: number;
  metadata: string | null;
}

type Payload = { g: string; o: Array<[string, number, number, string | null]> } | { dt: string };

function encode(p: Payload): Buffer {
  const body = Buffer.from(JSON.stringify(p));
  const rec = Buffer.allocUnsafe(8 + body.length);
  rec.writeUInt32BE(body.length, 0);
  rec.writeUInt32BE(crc32c(body), 4);
  body.copy(rec, 8);
  return rec;
}

export class GroupOffsetStore {
  readonly path: string;
  #fd: number;
  #size: number;
  #groups = new Map<string, Map<string, { offset: number; metadata: string | null }>>();
  #chain: Promise<unknown> = Promise.resolve();
  #closed = false;
  #dirty = false;
  #syncEachCommit: boolean;

  private constructor(path: string, fd: number, size: number, syncEachCommit: boolean) {
    this.path = path;
    this.#fd = fd;
    this.#size = size;
    this.#syncEachCommit = syncEachCommit;
  }

  static async open(path: string, syncEachCommit = false): Promise<GroupOffsetStore> {
    const groups = new Map<string, Map<string, { offset: number; metadata: string | null }>>();
    let data: Buffer = Buffer.alloc(0);
    try {
      data = await fs.promises.readFile(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    let pos = 0;
    while (pos + 8 <= data.length) {
      const len = data.readUInt32BE(pos);
      if (pos + 8 + len > data.length) break;
      const body = data.subarray(pos + 8, pos + 8 + len);
      if (crc32c(body) !== data.readUInt32BE(pos + 4)) break;
      let p: Payload;
      try {
        p = JSON.parse(body.toString('utf8')) as Payload;
      } catch {
        break;
      }
      apply(groups, p);
      pos += 8 + len;
    }
    // Compact: one record per group with its live entries.
    const parts: Buffer[] = [];
    for (const [g, m] of groups) {
      const o: Array<[string, number, number, string | null]> = [];
      for (const [k, v] of m) {
        const [topic, partition] = splitKey(k);
        o.push([topic, partition, v.offset, v.metadata]);
      }
      parts.push(encode({ g, o }));
    }
    const compacted = Buffer.concat(parts);
    await writeFileAtomic(path, compacted);
    const fd = await openFd(path, fs.constants.O_RDWR);
    const store = new GroupOffsetStore(path, fd, compacted.length, syncEachCommit);
    store.#groups = groups;
    return store;
  }

  #append(p: Payload): Promise<void> {
    const run = this.#chain.then(async () => {
      if (this.#closed) throw new Error('group offset store is closed');
      const rec = encode(p);
      try {
        await writeAll(this.#fd, rec, 0, rec.length, this.#size);
        if (this.#syncEachCommit) await fdatasyncFd(this.#fd);
        else this.#dirty = true;
      } catch (err) {
        await new Promise<void>((r) => fs.ftruncate(this.#fd, this.#size, () => r()));
        throw err;
      }
      this.#size += rec.length;
      apply(this.#groups, p);
    });
    this.#chain = run.catch(() => {});
    return run;
  }

  /** fdatasync of the commits written since the last one. */
  sync(): Promise<void> {
    const run = this.#chain.then(async () => {
      if (this.#closed || !this.#dirty) return;
      this.#dirty = false;
      await fdatasyncFd(this.#fd);
    });
    this.#chain = run.catch(() => {});
    return run;
  }

  /** Stores the offsets of `group` (written before it resolves; fsynced per the flush policy). */
  commit(group: string, entries: OffsetEntry[]): Promise<void> {
    if (typeof group !== 'string') return Promise.reject(new TypeError('group must be a string'));
    if (!Array.isArray(entries)) return Promise.reject(new TypeError('entries must be an array'));
    const o: Array<[string, number, number, string | null]> = [];
    for (const e of entries) {
      if (typeof e?.topic !== 'string' || !Number.isSafeInteger(e.partition) || !Number.isSafeInteger(e.offset) || (e.metadata !== null && e.metadata !== undefined && typeof e.metadata !== 'string')) {
        return Promise.reject(new TypeError(`invalid offset commit entry ${JSON.stringify(e)}`));
      }
      o.push([e.topic, e.partition, e.offset, e.metadata ?? null]);
    }
    if (o.length === 0) return Promise.resolve();
    return this.#append({ g: group, o });
  }

  /** Forgets every group's offsets for a deleted topic. */
  deleteTopic(topic: string): Promise<void> {
    return this.#append({ dt: topic });
  }

  fetch(group: string, topic: string, partition: number): { offset: number; metadata: string | null } | undefined {
    const v = this.#groups.get(group)?.get(key(topic, partition));
    return v === undefined ? undefined : { offset: v.offset, metadata: v.metadata };
  }

  groups(): string[] {
    return [...this.#groups.keys()];
  }

  async close(): Promise<void> {
    await this.sync();
    if (this.#closed) return;
    this.#closed = true;
    await closeFd(this.#fd);
  }
}

function key(topic: string, partition: number): string {
  return `${partition}\u0000${topic}`;
}

function splitKey(k: string): [string, number] {
  const i = k.indexOf('\u0000');
  return [k.slice(i + 1), Number(k.slice(0, i))];
}

function apply(groups: Map<string, Map<string, { offset: number; metadata: string | null }>>, p: Payload): void {
  if ('dt' in p) {
    for (const [g, m] of groups) {
      for (const k of [...m.keys()]) if (splitKey(k)[0] === p.dt) m.delete(k);
      if (m.size === 0) groups.delete(g);
    }
    return;
  }
  let m = groups.get(p.g);
  if (m === undefined) groups.set(p.g, (m = new Map()));
  for (const [topic, partition, offset, metadata] of p.o) m.set(key(topic, partition), { offset, metadata });
}

