/**
 * Log configuration, named after Kafka's broker/topic settings.
 *
 * @module
 */
import { ErrorCode, KafkaStorageError } from './errors.js';

export interface LogConfig {
  /** segment.bytes: roll the active segment before it would exceed this. Default 1 GiB. */
  segmentBytes: number;
  /** segment.ms: roll a segment whose first batch is older than this. Default 7 days. */
  segmentMs: number;
  /** retention.ms: delete segments whose newest record is older. -1 = unlimited. Default 7 days. */
  retentionMs: number;
  /** retention.bytes: delete oldest segments while the partition is larger. -1 = unlimited (default). */
  retentionBytes: number;
  /** log.flush.interval.messages: fsync after this many records. Default Infinity (page cache only). */
  flushIntervalMessages: number;
  /** log.flush.interval.ms: fsync data older than this. Default Infinity. */
  flushIntervalMs: number;
  /** index.interval.bytes: bytes between offset/time index entries. Default 4096. */
  indexIntervalBytes: number;
  /** message.max.bytes: largest accepted batch. Default 1048588. */
  maxMessageBytes: number;
  /** log.retention.check.interval.ms. Default 300000. */
  retentionCheckIntervalMs: number;
}

/** Kafka's defaults. */
export const DEFAULT_LOG_CONFIG: Readonly<LogConfig> = Object.freeze({
  segmentBytes: 1024 * 1024 * 1024,
  segmentMs: 7 * 24 * 3600 * 1000,
  retentionMs: 7 * 24 * 3600 * 1000,
  retentionBytes: -1,
  flushIntervalMessages: Infinity,
  flushIntervalMs: Infinity,
  indexIntervalBytes: 4096,
  maxMessageBytes: 1048588,
  retentionCheckIntervalMs: 300000,
});

const MIN: Record<keyof LogConfig, number> = {
  segmentBytes: 14, // Kafka's minimum: one record batch header fits
  segmentMs: 1,
  retentionMs: -1,
  retentionBytes: -1,
  flushIntervalMessages: 1,
  flushIntervalMs: 0,
  indexIntervalBytes: 0,
  maxMessageBytes: 0,
  retentionCheckIntervalMs: 1,
};

/**
 * Merges `overrides` over `base` and validates the result; throws
 * KafkaStorageError(INVALID_CONFIG) for an unknown key or a bad value.
 */
export function resolveConfig(base: Readonly<LogConfig>, overrides?: Partial<LogConfig>): LogConfig {
  const out: LogConfig = { ...base };
  if (overrides === undefined || overrides === null) return out;
  if (typeof overrides !== 'object') throw new KafkaStorageError(ErrorCode.INVALID_CONFIG, 'log config must be an object');
  for (const [k, v] of Object.entries(overrides)) {
    if (!(k in MIN)) throw new KafkaStorageError(ErrorCode.INVALID_CONFIG, `unknown log config '${k}'`);
    if (v === undefined) continue;
    const key = k as keyof LogConfig;
    // Kafka's "unlimited" is Long.MAX_VALUE (e.g. flush.messages): beyond
    // 2^53 a number is only "very large", so it means unlimited here.
    if (typeof v === 'number' && v > Number.MAX_SAFE_INTEGER) {
      out[key] = Infinity;
      continue;
    }
    if (typeof v !== 'number' || Number.isNaN(v) || (v !== Infinity && !Number.isSafeInteger(v)) || (v < MIN[key] && v !== -1) || (v === -1 && MIN[key] !== -1)) {
      throw new KafkaStorageError(ErrorCode.INVALID_CONFIG, `invalid value for log config '${k}': ${String(v)}`);
    }
    out[key] = v;
  }
  if (out.segmentBytes === Infinity) out.segmentBytes = 0x7fffffff;
  if (out.segmentBytes > 0x7fffffff) throw new KafkaStorageError(ErrorCode.INVALID_CONFIG, `segmentBytes must be <= 2147483647 (index positions are int32), got ${out.segmentBytes}`);
  return out;
}

/** The subset of `c` that differs from `base` (what a topic stores as its overrides). */
export function configOverrides(c: Partial<LogConfig>): Partial<LogConfig> {
  const out: Partial<LogConfig> = {};
  for (const [k, v] of Object.entries(c)) if (k in MIN && v !== undefined) (out as Record<string, number>)[k] = v as number;
  return out;
}
