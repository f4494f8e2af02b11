// What every API handler receives: the request, and the broker it runs in.
import type { FdRange } from '../send-parts.js';
import type { LogConfig, LogManager } from './storage/index.js';
import type { GroupCoordinator } from './coordinator.js';
import type { ProducerIds } from './producer-ids.js';
import type { Reader } from './protocol/codec.js';
import { Writer } from './protocol/codec.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export type LogFn = (level: LogLevel, message: string) => void;

/** The broker as its API handlers see it. */
export interface BrokerCore {
  readonly logs: LogManager;
  readonly coordinator: GroupCoordinator;
  readonly producerIds: ProducerIds;
  readonly nodeId: number;
  readonly clusterId: string;
  readonly numPartitions: number;
  readonly autoCreateTopics: boolean;
  readonly topicDefaults: Partial<LogConfig>;
  /** host/port put in Metadata and FindCoordinator answers. */
  advertised(): { host: string; port: number };
  /** Creates `topic` with numPartitions if auto-creation is on; resolves with a Kafka error code (0: it exists now). */
  autoCreate(topic: string): Promise<number>;
  log: LogFn;
}

export interface Request {
  readonly apiKey: number;
  readonly apiVersion: number;
  readonly correlationId: number;
  readonly clientId: string | null;
  /** Positioned at the request body. */
  readonly body: Reader;
  /** Aborts when the connection closes (long polls stop waiting). */
  readonly signal: AbortSignal;
  /** A connection label for logs. */
  readonly connection: string;
  /** The peer's address (DescribeGroups' client_host). */
  readonly clientHost: string;
}

/** A response body: parts sent in order after the size and header; release() runs after the send. */
export interface Reply {
  parts: Array<Buffer | FdRange>;
  release?: () => void;
}

/** The response body written by `w`, with no file regions. */
export function reply(w: Writer): Reply {
  return { parts: w.parts() };
}

export type Handler = (req: Request, core: BrokerCore) => Promise<Reply | null> | Reply | null;

export { Writer };
