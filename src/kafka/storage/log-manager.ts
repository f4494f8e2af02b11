/**
 * The data directory: every topic-partition's log, topic metadata, the
 * recovery-point checkpoint, the clean-shutdown marker, group offsets, and
 * the retention and flush timers.
 *
 * Layout of `dataDir`:
 * - `<topic>-<partition>/` per partition (see segment.ts, partition-log.ts)
 * - `topics.json`: topic names, partition counts and config overrides
 * - `recovery-point-offset-checkpoint`: per partition, the offset below
 *   which everything was fsynced (Kafka's file and format)
 * - `.kafka_cleanshutdown`: present only while the broker is stopped after
 *   a clean close
 * - `group-offsets.log`: committed consumer group offsets
 *
 * @module
 */
import { mkdir, readFile, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_LOG_CONFIG, configOverrides, resolveConfig, type LogConfig } from './config.js';
import { ErrorCode, KafkaStorageError } from './errors.js';
import { fsyncDir, writeFileAtomic } from './fs-util.js';
import { GroupOffsetStore } from './group-offsets.js';
import { PartitionLog, type PartitionHooks } from './partition-log.js';
import type { Segment } from './segment.js';

export const CLEAN_SHUTDOWN_FILE = '.kafka_cleanshutdown';
export const RECOVERY_CHECKPOINT_FILE = 'recovery-point-offset-checkpoint';
const TOPICS_FILE = 'topics.json';
const GROUP_OFFSETS_FILE = 'group-offsets.log';
const PARTITION_DIR_RE = /^(.+)-(\d+)$/;
const TOPIC_RE = /^[a-zA-Z0-9._-]{1,249}$/;
const MAX_PARTITIONS = 10000;

export interface TopicInfo {
  name: string;
  partitions: number;
  /** The topic's overrides of the manager's config. */
  config: Partial<LogConfig>;
}

interface Topic {
  name: string;
  overrides: Partial<LogConfig>;
  config: LogConfig;
  logs: PartitionLog[];
}

/** Kafka's rule for topic names; returns why a name is invalid, or undefined. */
export function topicNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return 'the topic name must be a string';
  if (name === '.' || name === '..') return `topic name '${name}' is not allowed`;
  if (!TOPIC_RE.test(name)) return `topic name '${name}' must be 1 to 249 characters of [a-zA-Z0-9._-]`;
  return undefined;
}

function encodeConfig(c: Partial<LogConfig>): Record<string, number | string> {
  const out: Record<string, number | string> = {};
  for (const [k, v] of Object.entries(c)) out[k] = v === Infinity ? 'Infinity' : (v as number);
  return out;
}

function decodeConfig(c: unknown): Partial<LogConfig> {
  const out: Record<string, number> = {};
  if (c !== null && typeof c === 'object') for (const [k, v] of Object.entries(c)) out[k] = v === 'Infinity' ? Infinity : Number(v);
  return out as Partial<LogConfig>;
}

/**
 * Opens a data directory and owns every partition log in it.
 *
 * @example
 * ```ts
 * const logs = await LogManager.open('/var/lib/zcopy-kafka', { segmentBytes: 64 << 20 });
 * await logs.createTopic('events', 3);
 * const r = await logs.partition('events', 0)!.append(recordsFromProduce);
 * await logs.close();
 * ```
 */
export class LogManager {
  readonly dataDir: string;
  /** True when the last shutdown was unclean and recovery ran at open. */
  readonly recovered: boolean;
  readonly config: LogConfig;
  #topics = new Map<string, Topic>();
  #groups!: GroupOffsetStore;
  #meta: Promise<unknown> = Promise.resolve();
  #checkpoint: Promise<unknown> = Promise.resolve();
  #checkpointQueued = false;
  #retentionTimer: NodeJS.Timeout | undefined;
  #flushTimer: NodeJS.Timeout | undefined;
  #flushPeriod = Infinity;
  #closing: Promise<void> | undefined;
  #hooks: PartitionHooks = { onRecoveryPoint: () => this.#scheduleCheckpoint() };
  /** Segments of deleted topics still held by slices. */
  #orphans = new Set<Segment>();

  private constructor(dataDir: string, config: LogConfig, recovered: boolean) {
    this.dataDir = dataDir;
    this.config = config;
    this.recovered = recovered;
  }

  /**
   * Opens (creates) `dataDir` and loads every topic-partition. After an
   * unclean shutdown (no clean-shutdown marker) it recovers each partition
   * from its recovery point: verifies CRCs, truncates a torn tail, rebuilds
   * the indexes. The marker is removed while running. Starts the retention
   * (and, when configured, flush) timers.
   */
  static async open(dataDir: string, config?: Partial<LogConfig>): Promise<LogManager> {
    if (typeof dataDir !== 'string' || dataDir === '') throw new TypeError('dataDir must be a non-empty string');
    const cfg = resolveConfig(DEFAULT_LOG_CONFIG, config);
    await mkdir(dataDir, { recursive: true });
    const names = await readdir(dataDir);
    const marker = join(dataDir, CLEAN_SHUTDOWN_FILE);
    const clean = names.includes(CLEAN_SHUTDOWN_FILE);
    const hadData = names.some((n) => n === TOPICS_FILE || PARTITION_DIR_RE.test(n));
    const mgr = new LogManager(dataDir, cfg, !clean && hadData);
    // Leftovers of an interrupted deleteTopic.
    for (const n of names) if (n.endsWith('-delete')) await rm(join(dataDir, n), { recursive: true, force: true });
    const recoveryPoints = clean ? new Map<string, number>() : await readCheckpoint(join(dataDir, RECOVERY_CHECKPOINT_FILE));
    const known = await readTopics(join(dataDir, TOPICS_FILE));
    for (const n of names) {
      const m = PARTITION_DIR_RE.exec(n);
      if (m === null || topicNameProblem(m[1]) !== undefined) continue;
      if (!(await stat(join(dataDir, n))).isDirectory()) continue;
      const t = known.get(m[1]!) ?? { partitions: 0, config: {} };
      t.partitions = Math.max(t.partitions, Number(m[2]) + 1);
      known.set(m[1]!, t);
    }
    const now = Date.now();
    try {
      for (const [name, t] of known) {
        const overrides = configOverrides(t.config);
        const tc = resolveConfig(cfg, overrides);
        const topic: Topic = { name, overrides, config: tc, logs: [] };
        for (let p = 0; p < t.partitions; p++) {
          const key = `${name} ${p}`;
          topic.logs.push(
            await PartitionLog.load(name, p, join(dataDir, `${name}-${p}`), tc, {
              clean,
              recoveryPoint: recoveryPoints.get(key) ?? -1,
              hooks: mgr.#hooks,
              now,
            }),
          );
        }
        mgr.#topics.set(name, topic);
      }
      mgr.#groups = await GroupOffsetStore.open(join(dataDir, GROUP_OFFSETS_FILE), cfg.flushIntervalMessages !== Infinity);
      await mgr.#writeTopics();
      await mgr.#writeCheckpoint();
      if (clean) {
        await unlink(marker);
        await fsyncDir(dataDir);
      }
    } catch (err) {
      for (const t of mgr.#topics.values()) for (const l of t.logs) await l.close().catch(() => {});
      throw err;
    }
    mgr.#startTimers();
    return mgr;
  }

  #startTimers(): void {
    if (this.#retentionTimer === undefined) {
      this.#retentionTimer = setInterval(() => {
        this.enforceRetention().catch(() => {});
      }, this.config.retentionCheckIntervalMs);
      this.#retentionTimer.unref();
    }
    let min = Infinity;
    for (const t of this.#topics.values()) min = Math.min(min, t.config.flushIntervalMs);
    min = Math.min(min, this.config.flushIntervalMs);
    if (min === Infinity || min >= this.#flushPeriod) return;
    this.#flushPeriod = min;
    if (this.#flushTimer !== undefined) clearInterval(this.#flushTimer);
    this.#flushTimer = setInterval(() => this.#flushDue(), Math.max(10, Math.min(min, 1000)));
    this.#flushTimer.unref();
  }

  #flushDue(): void {
    const now = Date.now();
    this.#groups.sync().catch(() => {});
    for (const t of this.#topics.values()) {
      for (const l of t.logs) {
        if (l.unflushedMessages > 0 && now - l.lastFlushMs >= l.config.flushIntervalMs) l.flush(now).catch(() => {});
      }
    }
  }

  #scheduleCheckpoint(): void {
    if (this.#checkpointQueued) return;
    this.#checkpointQueued = true;
    this.#checkpoint = this.#checkpoint.then(() => {
      this.#checkpointQueued = false;
      return this.#writeCheckpoint().catch(() => {});
    });
  }

  async #writeCheckpoint(): Promise<void> {
    const lines: string[] = [];
    for (const t of this.#topics.values()) for (const l of t.logs) lines.push(`${t.name} ${l.partition} ${l.recoveryPoint}`);
    await writeFileAtomic(join(this.dataDir, RECOVERY_CHECKPOINT_FILE), `0\n${lines.length}\n${lines.map((l) => l + '\n').join('')}`);
  }

  async #writeTopics(): Promise<void> {
    const topics: Record<string, { partitions: number; config: Record<string, number | string> }> = {};
    for (const t of this.#topics.values()) topics[t.name] = { partitions: t.logs.length, config: encodeConfig(t.overrides) };
    await writeFileAtomic(join(this.dataDir, TOPICS_FILE), JSON.stringify({ version: 1, topics }, null, 1) + '\n');
  }

  #lockMeta<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#meta.then(fn, fn);
    this.#meta = run.catch(() => {});
    return run;
  }

  #checkOpen(): void {
    if (this.#closing !== undefined) throw new KafkaStorageError(ErrorCode.KAFKA_STORAGE_ERROR, 'the log manager is closed');
  }

  /** Every topic, with its partition count and config overrides. */
  topics(): TopicInfo[] {
    return [...this.#topics.values()].map((t) => ({ name: t.name, partitions: t.logs.length, config: { ...t.overrides } }));
  }

  topic(name: string): TopicInfo | undefined {
    const t = this.#topics.get(name);
    return t === undefined ? undefined : { name: t.name, partitions: t.logs.length, config: { ...t.overrides } };
  }

  partition(topic: string, partition: number): PartitionLog | undefined {
    return this.#topics.get(topic)?.logs[partition];
  }

  /**
   * Creates a topic with `partitions` empty partitions. Rejects with
   * KafkaStorageError: TOPIC_ALREADY_EXISTS, INVALID_TOPIC_EXCEPTION,
   * INVALID_PARTITIONS, INVALID_CONFIG.
   */
  createTopic(name: string, partitions: number, config?: Partial<LogConfig>): Promise<void> {
    try {
      this.#checkOpen();
      const problem = topicNameProblem(name);
      if (problem !== undefined) throw new KafkaStorageError(ErrorCode.INVALID_TOPIC_EXCEPTION, problem);
      if (!Number.isSafeInteger(partitions) || partitions < 1 || partitions > MAX_PARTITIONS) {
        throw new KafkaStorageError(ErrorCode.INVALID_PARTITIONS, `partitions must be an integer from 1 to ${MAX_PARTITIONS}, got ${String(partitions)}`);
      }
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#lockMeta(async () => {
      this.#checkOpen();
      if (this.#topics.has(name)) throw new KafkaStorageError(ErrorCode.TOPIC_ALREADY_EXISTS, `topic '${name}' already exists`);
      const tc = resolveConfig(this.config, config);
      // Stored as resolved (a Long.MAX_VALUE "unlimited" becomes Infinity).
      const overrides: Partial<LogConfig> = {};
      for (const k of Object.keys(configOverrides(config ?? {})) as Array<keyof LogConfig>) overrides[k] = tc[k];
      const topic: Topic = { name, overrides, config: tc, logs: [] };
      const now = Date.now();
      try {
        for (let p = 0; p < partitions; p++) {
          topic.logs.push(await PartitionLog.load(name, p, join(this.dataDir, `${name}-${p}`), tc, { clean: true, recoveryPoint: -1, hooks: this.#hooks, now }));
        }
      } catch (err) {
        for (const l of topic.logs) await l.destroy().catch(() => {});
        throw err;
      }
      this.#topics.set(name, topic);
      await this.#writeTopics();
      this.#scheduleCheckpoint();
      this.#startTimers();
    });
  }

  /** Deletes a topic, its files and its committed offsets. Rejects with UNKNOWN_TOPIC_OR_PARTITION. */
  deleteTopic(name: string): Promise<void> {
    return this.#lockMeta(async () => {
      this.#checkOpen();
      const t = this.#topics.get(name);
      if (t === undefined) throw new KafkaStorageError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, `topic '${name}' does not exist`);
      this.#topics.delete(name);
      // Rename first: a crash mid-way must not resurrect the topic at open.
      const moved: string[] = [];
      for (const l of t.logs) {
        const to = `${l.dir}.${Date.now()}-delete`;
        await rename(l.dir, to).then(
          () => moved.push(to),
          () => {},
        );
      }
      await fsyncDir(this.dataDir);
      await this.#writeTopics();
      for (const l of t.logs) for (const s of await l.destroy()) this.#orphans.add(s);
      for (const d of moved) await rm(d, { recursive: true, force: true });
      await this.#groups.deleteTopic(name);
      this.#scheduleCheckpoint();
    });
  }

  /** Runs retention on every partition now (it also runs on the timer). */
  async enforceRetention(now: number = Date.now()): Promise<void> {
    if (this.#closing !== undefined) return;
    for (const t of [...this.#topics.values()]) for (const l of t.logs) await l.enforceRetention(now);
  }

  /** fsyncs every partition's unflushed data and indexes; checkpoints the recovery points. */
  async flush(): Promise<void> {
    if (this.#closing !== undefined) return;
    for (const t of [...this.#topics.values()]) for (const l of t.logs) await l.flush();
    await this.#groups.sync();
    this.#scheduleCheckpoint();
    await this.#checkpoint;
  }

  /**
   * Flushes, trims the indexes, writes the clean-shutdown marker and closes
   * the fds. Slices still held are waited for up to `timeoutMs` (default
   * 5000), then their fds are closed anyway. Idempotent.
   */
  close(timeoutMs = 5000): Promise<void> {
    if (this.#closing === undefined) this.#closing = this.#close(timeoutMs);
    return this.#closing;
  }

  async #close(timeoutMs: number): Promise<void> {
    clearInterval(this.#retentionTimer);
    clearInterval(this.#flushTimer);
    await this.#meta;
    const held: Segment[] = [...this.#orphans].filter((s) => !s.fdClosed);
    for (const t of this.#topics.values()) for (const l of t.logs) held.push(...(await l.close()));
    await this.#checkpoint;
    await this.#writeCheckpoint();
    await this.#groups.close();
    await writeFileAtomic(join(this.dataDir, CLEAN_SHUTDOWN_FILE), '');
    if (held.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      });
      await Promise.race([Promise.all(held.map((s) => s.whenClosed())), timeout]);
      clearTimeout(timer);
      for (const s of held) s.forceClose();
    }
  }

  /**
   * Stores committed offsets of `group`; they survive a restart. Kafka keeps
   * them in __consumer_offsets; here a checksummed append-only file in
   * dataDir, compacted on open, fsynced like the logs: per commit when
   * flushIntervalMessages is set, else on flush(), the flush timer and close.
   */
  commitOffsets(group: string, entries: Array<{ topic: string; partition: number; offset: number; metadata: string | null }>): Promise<void> {
    try {
      this.#checkOpen();
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#groups.commit(group, entries);
  }

  /** The committed offset of a group for a partition, or undefined when none. */
  fetchOffset(group: string, topic: string, partition: number): { offset: number; metadata: string | null } | undefined {
    return this.#groups.fetch(group, topic, partition);
  }

  /** Groups with committed offsets. */
  groups(): string[] {
    return this.#groups.groups();
  }
}

async function readCheckpoint(path: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return out;
  }
  const lines = text.split('\n');
  if (lines[0] !== '0') return out;
  const n = Number(lines[1]);
  for (let i = 0; i < n; i++) {
    const parts = (lines[2 + i] ?? '').split(' ');
    if (parts.length !== 3) return new Map();
    const off = Number(parts[2]);
    if (Number.isSafeInteger(off)) out.set(`${parts[0]} ${parts[1]}`, off);
  }
  return out;
}

async function readTopics(path: string): Promise<Map<string, { partitions: number; config: Partial<LogConfig> }>> {
  const out = new Map<string, { partitions: number; config: Partial<LogConfig> }>();
  try {
    const j = JSON.parse(await readFile(path, 'utf8')) as { topics?: Record<string, { partitions: number; config: unknown }> };
    for (const [name, t] of Object.entries(j.topics ?? {})) {
      if (topicNameProblem(name) === undefined && Number.isSafeInteger(t.partitions) && t.partitions > 0) out.set(name, { partitions: t.partitions, config: decodeConfig(t.config) });
    }
  } catch {
    // Missing or damaged: the partition directories tell the topics.
  }
  return out;
}
