/**
 * Kafka's log layout on disk, built on zcopy's public API (issue 9, the
 * storage half of `zcopy/kafka`): per topic-partition directories of
 * segments named by base offset, `.log` files holding record batches exactly
 * as produced, sparse memory-mapped offset and time indexes, idempotent
 * producer state, retention, flushing, crash recovery and durable group
 * offsets. See docs/kafka-storage.md.
 *
 * The broker (src/kafka/) reads FileSlices from here and sends them with
 * zcopy's sendfile path; nothing here touches sockets.
 *
 * @module
 */
export { DEFAULT_LOG_CONFIG, type LogConfig } from './config.js';
export { ErrorCode, KafkaStorageError } from './errors.js';
export { PartitionLog, type AppendResult, type FileSlice, type ReadResult } from './partition-log.js';
export { LogManager, topicNameProblem, CLEAN_SHUTDOWN_FILE, RECOVERY_CHECKPOINT_FILE, type TopicInfo } from './log-manager.js';
export { crc32c, crc32cImplementation } from '../../index.js';
