/**
 * Kafka's log layout on disk, built on zcopy's public API (issue 9, storage
 * half). SKELETON: types and signatures of the contract in
 * /tmp/zcopy-kafka-interface.md; the implementation lands next.
 *
 * @module
 */

export interface LogConfig {
  segmentBytes: number;
  segmentMs: number;
  retentionMs: number;
  retentionBytes: number;
  flushIntervalMessages: number;
  flushIntervalMs: number;
  indexIntervalBytes: number;
  maxMessageBytes: number;
  retentionCheckIntervalMs: number;
}

export const DEFAULT_LOG_CONFIG: LogConfig = Object.freeze({
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

export const ErrorCode = Object.freeze({
  NONE: 0,
  OFFSET_OUT_OF_RANGE: 1,
  CORRUPT_MESSAGE: 2,
  UNKNOWN_TOPIC_OR_PARTITION: 3,
  MESSAGE_TOO_LARGE: 10,
  INVALID_TOPIC_EXCEPTION: 17,
  TOPIC_ALREADY_EXISTS: 36,
  INVALID_PARTITIONS: 37,
  OUT_OF_ORDER_SEQUENCE_NUMBER: 45,
  DUPLICATE_SEQUENCE_NUMBER: 46,
  INVALID_PRODUCER_EPOCH: 47,
  UNKNOWN_PRODUCER_ID: 59,
  INVALID_RECORD: 87,
} as const);

export interface AppendResult {
  errorCode: number;
  baseOffset: number;
  logAppendTimeMs: number;
  logStartOffset: number;
  recordErrors?: Array<{ batchIndex: number; message: string }>;
}

export interface FileSlice {
  fd: number;
  position: number;
  length: number;
  release(): void;
}

export interface ReadResult {
  errorCode: number;
  highWatermark: number;
  logStartOffset: number;
  lastStableOffset: number;
  slices: FileSlice[];
  bytes: number;
}

export interface TopicInfo {
  name: string;
  partitions: number;
  config: Partial<LogConfig>;
}

export class KafkaStorageError extends Error {
  readonly errorCode: number;
  constructor(errorCode: number, message: string) {
    super(message);
    this.name = 'KafkaStorageError';
    this.errorCode = errorCode;
  }
}

const notYet = (): never => {
  throw new Error('not yet');
};

export class PartitionLog {
  readonly topic: string = '';
  readonly partition: number = 0;
  get logStartOffset(): number {
    return notYet();
  }
  get logEndOffset(): number {
    return notYet();
  }
  get highWatermark(): number {
    return notYet();
  }
  append(records: Buffer, now?: number): Promise<AppendResult> {
    return notYet();
  }
  read(offset: number, maxBytes: number, minOneMessage: boolean): ReadResult {
    return notYet();
  }
  offsetForTimestamp(ts: number): { offset: number; timestamp: number } {
    return notYet();
  }
  onAppend(listener: () => void): () => void {
    return notYet();
  }
}

export class LogManager {
  static open(dataDir: string, config?: Partial<LogConfig>): Promise<LogManager> {
    return notYet();
  }
  readonly recovered: boolean = false;
  topics(): TopicInfo[] {
    return notYet();
  }
  topic(name: string): TopicInfo | undefined {
    return notYet();
  }
  partition(topic: string, partition: number): PartitionLog | undefined {
    return notYet();
  }
  createTopic(name: string, partitions: number, config?: Partial<LogConfig>): Promise<void> {
    return notYet();
  }
  deleteTopic(name: string): Promise<void> {
    return notYet();
  }
  enforceRetention(now?: number): Promise<void> {
    return notYet();
  }
  flush(): Promise<void> {
    return notYet();
  }
  close(timeoutMs?: number): Promise<void> {
    return notYet();
  }
  commitOffsets(group: string, entries: Array<{ topic: string; partition: number; offset: number; metadata: string | null }>): Promise<void> {
    return notYet();
  }
  fetchOffset(group: string, topic: string, partition: number): { offset: number; metadata: string | null } | undefined {
    return notYet();
  }
  groups(): string[] {
    return notYet();
  }
}

export function crc32c(buf: Uint8Array, start?: number, end?: number): number {
  return notYet();
}
