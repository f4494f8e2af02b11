// CreateTopics (19) v0-4, DeleteTopics (20) v0-3, InitProducerId (22) v0-1.
import type { LogConfig } from '../storage/index.js';
import { reply, type Handler, Writer } from '../context.js';
import { E, errorCodeOf } from '../protocol/errors.js';

/** Topic-level config names (Kafka's) -> LogConfig fields. */
const TOPIC_CONFIGS: Record<string, keyof LogConfig> = {
  'segment.bytes': 'segmentBytes',
  'segment.ms': 'segmentMs',
  'retention.ms': 'retentionMs',
  'retention.bytes': 'retentionBytes',
  'flush.messages': 'flushIntervalMessages',
  'flush.ms': 'flushIntervalMs',
  'index.interval.bytes': 'indexIntervalBytes',
  'max.message.bytes': 'maxMessageBytes',
};
/** Accepted and ignored: meaningful only with replication or compaction. */
const IGNORED_CONFIGS = new Set(['cleanup.policy', 'min.insync.replicas', 'compression.type', 'message.timestamp.type', 'unclean.leader.election.enable']);

export const createTopics: Handler = async (req, core) => {
  const v = req.apiVersion;
  const r = req.body;
  const topics = r.array((r) => ({
    name: r.string(),
    numPartitions: r.int32(),
    replicationFactor: r.int16(),
    assignments: r.array((r) => ({ index: r.int32(), brokers: r.array((r) => r.int32()) })),
    configs: r.array((r) => ({ name: r.string(), value: r.nullableString() })),
  }));
  r.int32(); // timeout_ms
  const validateOnly = v >= 1 ? r.bool() : false;

  const results: Array<{ name: string; error: number; message: string | null }> = [];
  for (const t of topics) {
    const fail = (error: number, message: string): void => void results.push({ name: t.name, error, message });
    let partitions = t.numPartitions === -1 ? core.numPartitions : t.numPartitions;
    if (t.assignments.length > 0) {
      if (t.numPartitions !== -1 || t.replicationFactor !== -1) {
        fail(E.INVALID_REQUEST, 'give either assignments or num_partitions/replication_factor');
        continue;
      }
      if (t.assignments.some((a) => a.brokers.length !== 1 || a.brokers[0] !== core.nodeId)) {
        fail(E.INVALID_REPLICA_ASSIGNMENT, `this single broker is node ${core.nodeId}`);
        continue;
      }
      partitions = t.assignments.length;
    }
    if (t.replicationFactor !== -1 && t.replicationFactor !== 1) {
      fail(E.INVALID_REPLICATION_FACTOR, `replication factor ${t.replicationFactor} is larger than the 1 available broker`);
      continue;
    }
    if (partitions < 1) {
      fail(E.INVALID_PARTITIONS, `number of partitions must be at least 1 (got ${partitions})`);
      continue;
    }
    const config: Partial<LogConfig> = {};
    let bad: string | undefined;
    for (const c of t.configs) {
      const key = TOPIC_CONFIGS[c.name];
      if (key === undefined) {
        if (!IGNORED_CONFIGS.has(c.name)) bad = `unknown topic config '${c.name}'`;
        continue;
      }
      const n = Number(c.value);
      if (c.value === null || !Number.isFinite(n)) bad = `invalid value for '${c.name}'`;
      else config[key] = n;
    }
    if (bad !== undefined) {
      fail(E.INVALID_CONFIG, bad);
      continue;
    }
    if (core.logs.topic(t.name)) {
      fail(E.TOPIC_ALREADY_EXISTS, `Topic '${t.name}' already exists.`);
      continue;
    }
    if (validateOnly) {
      results.push({ name: t.name, error: E.NONE, message: null });
      continue;
    }
    try {
      await core.logs.createTopic(t.name, partitions, { ...core.topicDefaults, ...config });
      core.log('info', `created topic ${t.name} (${partitions} partition(s))`);
      results.push({ name: t.name, error: E.NONE, message: null });
    } catch (err) {
      fail(errorCodeOf(err), (err as Error).message);
    }
  }

  const w = new Writer();
  if (v >= 2) w.int32(0);
  w.array(results, (w, t) => {
    w.string(t.name).int16(t.error);
    if (v >= 1) w.nullableString(t.message);
  });
  return reply(w);
};

export const deleteTopics: Handler = async (req, core) => {
  const v = req.apiVersion;
  const r = req.body;
  const names = r.array((r) => r.string());
  r.int32(); // timeout_ms
  const results: Array<{ name: string; error: number }> = [];
  for (const name of names) {
    try {
      if (!core.logs.topic(name)) throw Object.assign(new Error('unknown topic'), { errorCode: E.UNKNOWN_TOPIC_OR_PARTITION });
      await core.logs.deleteTopic(name);
      core.log('info', `deleted topic ${name}`);
      results.push({ name, error: E.NONE });
    } catch (err) {
      results.push({ name, error: errorCodeOf(err) });
    }
  }
  const w = new Writer();
  if (v >= 1) w.int32(0);
  w.array(results, (w, t) => w.string(t.name).int16(t.error));
  return reply(w);
};

export const initProducerId: Handler = async (req, core) => {
  const r = req.body;
  const transactionalId = r.nullableString();
  r.int32(); // transaction_timeout_ms
  const w = new Writer();
  w.int32(0);
  if (transactionalId !== null) {
    // Transactions are not implemented (docs/kafka.md).
    w.int16(E.INVALID_REQUEST).int64(-1).int16(-1);
    return reply(w);
  }
  const id = await core.producerIds.next();
  w.int16(E.NONE).int64(id).int16(0);
  return reply(w);
};
