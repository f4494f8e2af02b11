// The broker: a TCP (or TLS) listener speaking Kafka's protocol over the
// storage in ./storage and the coordinator in ./coordinator.ts.
//
// Per connection: length-prefixed frames (size checked against
// socket.request.max.bytes before anything is buffered), one request in
// flight, pipelined requests queued (the socket is paused when the queue is
// long), responses in order. A response is sent with sendParts: header bytes
// and file regions, so Fetch data goes page cache -> socket by sendfile. A
// request that cannot be parsed, an unknown API key or an unsupported version
// closes the connection, as Kafka's SocketServer does; nothing a peer sends
// can throw out of here.
import net from 'node:net';
import tls from 'node:tls';
import fs from 'node:fs';
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { sendParts, partsLength, type FdRange } from '../send-parts.js';
import { DEFAULT_LOG_CONFIG, LogManager, type LogConfig } from './storage/index.js';
import { GroupCoordinator } from './coordinator.js';
import { ProducerIds } from './producer-ids.js';
import { ProtocolError, Reader } from './protocol/codec.js';
import { ApiKey, VERSION_BY_KEY } from './protocol/api-keys.js';
import { E, errorCodeOf } from './protocol/errors.js';
import type { BrokerCore, Handler, LogFn, LogLevel, Reply, Request } from './context.js';
import { apiVersions } from './apis/api-versions.js';
import { metadata } from './apis/metadata.js';
import { produce } from './apis/produce.js';
import { fetch } from './apis/fetch.js';
import { listOffsets } from './apis/list-offsets.js';
import { createTopics, deleteTopics, initProducerId } from './apis/admin.js';
import { describeGroups, findCoordinator, heartbeat, joinGroup, leaveGroup, listGroups, offsetCommit, offsetFetch, syncGroup } from './apis/groups.js';

const HANDLERS = new Map<number, Handler>([
  [ApiKey.ApiVersions, apiVersions],
  [ApiKey.Metadata, metadata],
  [ApiKey.Produce, produce],
  [ApiKey.Fetch, fetch],
  [ApiKey.ListOffsets, listOffsets],
  [ApiKey.CreateTopics, createTopics],
  [ApiKey.DeleteTopics, deleteTopics],
  [ApiKey.InitProducerId, initProducerId],
  [ApiKey.FindCoordinator, findCoordinator],
  [ApiKey.JoinGroup, joinGroup],
  [ApiKey.SyncGroup, syncGroup],
  [ApiKey.Heartbeat, heartbeat],
  [ApiKey.LeaveGroup, leaveGroup],
  [ApiKey.OffsetCommit, offsetCommit],
  [ApiKey.OffsetFetch, offsetFetch],
  [ApiKey.DescribeGroups, describeGroups],
  [ApiKey.ListGroups, listGroups],
]);

/** Options of {@link createBroker}; names follow Kafka's broker settings. */
export interface BrokerOptions {
  /** log.dirs: where topic-partition directories live. Required. */
  dataDir: string;
  /** Interface to listen on. Default '127.0.0.1'. */
  host?: string;
  /** Port; 0 picks a free one (see address()). Default 9092. */
  port?: number;
  /** node.id / broker.id. Default 1. */
  nodeId?: number;
  /** num.partitions for auto-created topics. Default 1. */
  numPartitions?: number;
  /** segment.bytes. Default 1 GiB. */
  segmentBytes?: number;
  /** segment.ms. Default 7 days. */
  segmentMs?: number;
  /** retention.ms; -1 unlimited. Default 7 days. */
  retentionMs?: number;
  /** retention.bytes per partition; -1 unlimited (default). */
  retentionBytes?: number;
  /** log.retention.check.interval.ms. Default 5 minutes. */
  retentionCheckIntervalMs?: number;
  /** auto.create.topics.enable. Default true. */
  autoCreateTopicsEnable?: boolean;
  /** log.flush.interval.ms: fsync at least this often. Default: never (page cache, like Kafka). */
  logFlushIntervalMs?: number;
  /** log.flush.interval.messages: fsync after this many messages. Default: never. */
  logFlushIntervalMessages?: number;
  /** message.max.bytes: largest record batch accepted. Default 1048588. */
  messageMaxBytes?: number;
  /** socket.request.max.bytes: larger size prefixes close the connection. Default 100 MiB. */
  socketRequestMaxBytes?: number;
  /** advertised.listeners: 'PLAINTEXT://host:port' (or 'host:port'), what clients are told to connect to. Default: the listening address. */
  advertisedListeners?: string;
  /** A TLS listener: Fetch then takes zcopy's portable path, as Kafka's SslTransportLayer copies. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Receives log lines; default: none. */
  logger?: LogFn;
  /** Lowest level passed to logger. Default 'info'. */
  logLevel?: LogLevel;
  /**
   * Benchmarks only, the Node baselines (what a Node broker does without
   * zcopy): 'buffer' reads each partition's record bytes into one Buffer and
   * writes the response with socket.write (a response built in memory);
   * 'stream' reads them in 1 MiB Buffers and writes each with socket.write,
   * waiting for 'drain' (stream.pipe's backpressure). Default 'zerocopy'.
   */
  fetchMode?: 'zerocopy' | 'buffer' | 'stream';
  /**
   * How Fetch record bytes go file -> socket (zcopy's `mechanism`): 'auto'
   * (default: sendfile to a remote peer; on loopback TCP a native copy loop,
   * which moves more bytes per second there at a higher CPU cost),
   * 'sendfile', 'splice' or 'copy'. TLS connections always copy.
   */
  fetchMechanism?: 'auto' | 'sendfile' | 'splice' | 'copy';
}

/** A running broker. */
export interface Broker extends EventEmitter {
  /** Starts accepting connections. */
  listen(): Promise<void>;
  /** Where it listens (after listen()). */
  address(): { host: string; port: number };
  /** Stops accepting, lets in-flight responses finish (up to timeoutMs), flushes and closes the log cleanly. */
  close(timeoutMs?: number): Promise<void>;
  /** Open connections. */
  readonly connections: number;
  /** The storage (topics, partitions, offsets). */
  readonly logs: LogManager;
  /** The group coordinator (describe() for tests and tools). */
  readonly coordinator: GroupCoordinator;
}

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };
const MAX_QUEUED = 64;

function positive(name: string, v: number | undefined, min = 1): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || Number.isNaN(v) || v < min) throw Object.assign(new RangeError(`options.${name} must be a number >= ${min}`), { code: 'ERR_OUT_OF_RANGE' });
  return v;
}

function parseListener(s: string): { host: string; port: number } {
  const m = /^(?:[A-Za-z_]+:\/\/)?(\[[^\]]+\]|[^:/]+):(\d+)$/.exec(s.trim().split(',')[0]!);
  if (!m || Number(m[2]) > 65535) throw Object.assign(new TypeError(`options.advertisedListeners: expected PLAINTEXT://host:port, got '${s}'`), { code: 'ERR_INVALID_ARG_VALUE' });
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

/**
 * Opens (or creates) the data directory and returns a broker ready to
 * listen().
 *
 * @example
 * ```ts
 * import { createBroker } from 'zcopy/kafka';
 * const broker = await createBroker({ dataDir: '/var/lib/zcopy-kafka', port: 9092 });
 * await broker.listen();
 * console.log(broker.address());
 * ```
 */
export async function createBroker(options: BrokerOptions): Promise<Broker> {
  if (typeof options !== 'object' || options === null || typeof options.dataDir !== 'string' || options.dataDir === '') {
    throw Object.assign(new TypeError('options.dataDir must be a non-empty string'), { code: 'ERR_INVALID_ARG_TYPE' });
  }
  const config: Partial<LogConfig> = {};
  const set = <K extends keyof LogConfig>(k: K, v: number | undefined): void => {
    if (v !== undefined) config[k] = v;
  };
  set('segmentBytes', positive('segmentBytes', options.segmentBytes, 64));
  set('segmentMs', positive('segmentMs', options.segmentMs));
  set('retentionMs', positive('retentionMs', options.retentionMs, -1));
  set('retentionBytes', positive('retentionBytes', options.retentionBytes, -1));
  set('retentionCheckIntervalMs', positive('retentionCheckIntervalMs', options.retentionCheckIntervalMs));
  set('flushIntervalMs', positive('logFlushIntervalMs', options.logFlushIntervalMs));
  set('flushIntervalMessages', positive('logFlushIntervalMessages', options.logFlushIntervalMessages));
  set('maxMessageBytes', positive('messageMaxBytes', options.messageMaxBytes));
  const numPartitions = positive('numPartitions', options.numPartitions) ?? 1;
  const maxRequest = positive('socketRequestMaxBytes', options.socketRequestMaxBytes, 64) ?? 100 * 1024 * 1024;
  const port = options.port ?? 9092;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw Object.assign(new RangeError('options.port must be 0..65535'), { code: 'ERR_OUT_OF_RANGE' });
  const advertisedFixed = options.advertisedListeners !== undefined ? parseListener(options.advertisedListeners) : undefined;
  if (options.fetchMechanism !== undefined && !['auto', 'sendfile', 'splice', 'copy'].includes(options.fetchMechanism)) {
    throw Object.assign(new TypeError(`options.fetchMechanism must be 'auto', 'sendfile', 'splice' or 'copy', got ${String(options.fetchMechanism)}`), { code: 'ERR_INVALID_ARG_VALUE' });
  }
  const level = LEVELS[options.logLevel ?? 'info'] ?? LEVELS.info;
  const sink = options.logger;
  const log: LogFn = (l, m) => {
    if (sink && LEVELS[l] >= level) sink(l, m);
  };

  const logs = await LogManager.open(options.dataDir, config);
  let producerIds: ProducerIds;
  try {
    producerIds = await ProducerIds.open(options.dataDir);
  } catch (err) {
    await logs.close();
    throw err;
  }
  if (logs.recovered) log('warn', `recovered ${options.dataDir} after an unclean shutdown`);
  return new KafkaBroker(options, logs, producerIds, log, numPartitions, maxRequest, port, advertisedFixed);
}

class KafkaBroker extends EventEmitter implements Broker, BrokerCore {
  readonly coordinator: GroupCoordinator;
  readonly nodeId: number;
  readonly clusterId = `zcopy-${randomUUID().slice(0, 8)}`;
  readonly autoCreateTopics: boolean;
  readonly topicDefaults = {};
  readonly server: net.Server;
  readonly #conns = new Set<Connection>();
  readonly #creating = new Map<string, Promise<number>>();
  #bound: { host: string; port: number } | undefined;
  #closing: Promise<void> | undefined;
  #seq = 0;

  constructor(
    readonly options: BrokerOptions,
    readonly logs: LogManager,
    readonly producerIds: ProducerIds,
    readonly log: LogFn,
    readonly numPartitions: number,
    readonly maxRequest: number,
    readonly port: number,
    readonly advertisedFixed: { host: string; port: number } | undefined,
  ) {
    super();
    this.nodeId = options.nodeId ?? 1;
    this.autoCreateTopics = options.autoCreateTopicsEnable ?? true;
    this.coordinator = new GroupCoordinator(logs, (m) => log('info', m));
    const onSocket = (s: net.Socket): void => this.#accept(s);
    this.server = options.tls ? tls.createServer({ cert: options.tls.cert, key: options.tls.key }, onSocket) : net.createServer(onSocket);
    if (options.tls) {
      (this.server as tls.Server).on('tlsClientError', (err, s) => {
        log('info', `tls handshake failed: ${err.message}`);
        s.destroy();
      });
    }
    this.server.on('error', (err) => this.emit('error', err));
  }

  get connections(): number {
    return this.#conns.size;
  }

  listen(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const fail = (err: Error): void => reject(err);
      this.server.once('error', fail);
      this.server.listen(this.port, this.options.host ?? '127.0.0.1', () => {
        this.server.removeListener('error', fail);
        const a = this.server.address() as net.AddressInfo;
        this.#bound = { host: a.address, port: a.port };
        this.log('info', `listening on ${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}${this.options.tls ? ' (TLS)' : ''}`);
        resolve();
      });
    });
  }

  address(): { host: string; port: number } {
    if (!this.#bound) throw Object.assign(new Error('the broker is not listening'), { code: 'ERR_SERVER_NOT_RUNNING' });
    return { ...this.#bound };
  }

  advertised(): { host: string; port: number } {
    if (this.advertisedFixed) return this.advertisedFixed;
    const a = this.#bound ?? { host: this.options.host ?? '127.0.0.1', port: this.port };
    const host = a.host === '0.0.0.0' || a.host === '::' ? '127.0.0.1' : a.host;
    return { host, port: a.port };
  }

  autoCreate(topic: string): Promise<number> {
    if (this.logs.topic(topic)) return Promise.resolve(E.NONE);
    if (!this.autoCreateTopics) return Promise.resolve(E.UNKNOWN_TOPIC_OR_PARTITION);
    let p = this.#creating.get(topic);
    if (!p) {
      p = this.logs
        .createTopic(topic, this.numPartitions, this.topicDefaults)
        .then(
          () => {
            this.log('info', `auto-created topic ${topic} (${this.numPartitions} partition(s))`);
            return E.NONE as number;
          },
          (err: unknown) => {
            const code = errorCodeOf(err);
            if (code === E.TOPIC_ALREADY_EXISTS) return E.NONE;
            if (code === E.UNKNOWN_SERVER_ERROR) this.log('warn', `auto-create ${topic}: ${(err as Error).message}`);
            return code;
          },
        )
        .finally(() => this.#creating.delete(topic));
      this.#creating.set(topic, p);
    }
    return p;
  }

  #accept(socket: net.Socket): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    const c = new Connection(this, socket, ++this.#seq);
    this.#conns.add(c);
    void c.finished.then(() => {
      this.#conns.delete(c);
      this.emit('connectionClose', c.info());
    });
  }

  dispatch(req: Request): Promise<Reply | null> | Reply | null {
    return HANDLERS.get(req.apiKey)!(req, this);
  }

  close(timeoutMs = 5000): Promise<void> {
    this.#closing ??= (async () => {
      // Stop accepting now; the server's callback comes once every
      // connection is gone.
      const stopped = new Promise<void>((r) => this.server.close(() => r()));
      // In-flight responses finish; idle connections and long polls end now.
      const deadline = Date.now() + timeoutMs;
      await Promise.all([...this.#conns].map((c) => c.drainAndClose(deadline)));
      await stopped;
      this.coordinator.close();
      await this.logs.close(timeoutMs);
      this.log('info', 'stopped: log flushed, clean-shutdown marker written');
    })();
    return this.#closing;
  }
}

class Connection {
  readonly #chunks: Buffer[] = [];
  #buffered = 0;
  #need = -1;
  readonly #queue: Buffer[] = [];
  #busy = false;
  #paused = false;
  #closing = false;
  #dropped = false;
  #finish!: () => void;
  /** Resolves once the socket is closed and no request of it is running. */
  readonly finished = new Promise<void>((r) => (this.#finish = r));
  readonly #ac = new AbortController();
  readonly label: string;
  requests = 0;
  bytesOut = 0;
  readonly opened = Date.now();
  readonly remote: string;

  constructor(
    readonly broker: KafkaBroker,
    readonly socket: net.Socket,
    readonly id: number,
  ) {
    this.remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
    this.label = `conn ${id}`;
    broker.log('info', `${this.label} ${this.remote} connected`);
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.#onData(d));
    socket.on('error', (err: NodeJS.ErrnoException) => broker.log('debug', `${this.label} ${err.code ?? err.message}`));
    socket.once('close', () => {
      // Requests already received still run (an acks=0 produce followed by
      // a close must be appended, as Kafka does); their answers are dropped.
      // Long polls end now.
      this.#ac.abort();
      this.#pump();
      this.#checkFinished();
      broker.log('info', `${this.label} ${this.remote} closed after ${this.requests} request(s), ${this.bytesOut} bytes out`);
    });
  }

  info(): { id: number; remote: string; requests: number; bytesOut: number } {
    return { id: this.id, remote: this.remote, requests: this.requests, bytesOut: this.bytesOut };
  }

  #fatal(why: string): void {
    this.broker.log('warn', `${this.label} ${this.remote}: ${why}; closing`);
    this.#dropped = true;
    this.#queue.length = 0;
    this.#chunks.length = 0;
    this.#buffered = 0;
    this.socket.destroy();
  }

  #take(n: number): Buffer {
    // A private copy unless one chunk holds the whole frame: Produce appends
    // rewrite batch headers in place inside the frame.
    const first = this.#chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const c = this.#chunks[0]!;
        const k = Math.min(c.length, n - at);
        c.copy(out, at, 0, k);
        at += k;
        if (k === c.length) this.#chunks.shift();
        else this.#chunks[0] = c.subarray(k);
      }
    }
    this.#buffered -= n;
    return out;
  }

  #onData(d: Buffer): void {
    if (this.socket.destroyed || this.#closing) return;
    this.#chunks.push(d);
    this.#buffered += d.length;
    for (;;) {
      if (this.#need < 0) {
        if (this.#buffered < 4) break;
        const size = this.#take(4).readInt32BE(0);
        if (size < 0) return this.#fatal(`negative request size ${size}`);
        if (size > this.broker.maxRequest) return this.#fatal(`request size ${size} is larger than socket.request.max.bytes (${this.broker.maxRequest})`);
        if (size < 8) return this.#fatal(`request size ${size} is too small for a header`);
        this.#need = size;
      }
      if (this.#buffered < this.#need) break;
      this.#queue.push(this.#take(this.#need));
      this.#need = -1;
    }
    if (this.#queue.length >= MAX_QUEUED && !this.#paused) {
      this.#paused = true;
      this.socket.pause();
    }
    this.#pump();
  }

  #checkFinished(): void {
    if (this.socket.destroyed && !this.#busy && (this.#queue.length === 0 || this.#dropped)) this.#finish();
  }

  #pump(): void {
    if (this.#busy || this.#dropped) return this.#checkFinished();
    const frame = this.#queue.shift();
    if (!frame) {
      if (this.#closing && !this.socket.destroyed) this.socket.destroySoon();
      return this.#checkFinished();
    }
    this.#busy = true;
    if (this.#paused && this.#queue.length < MAX_QUEUED / 2 && !this.#closing) {
      this.#paused = false;
      this.socket.resume();
    }
    this.#serve(frame).then(
      () => {
        this.#busy = false;
        this.#pump();
      },
      (err: unknown) => {
        this.#busy = false;
        this.#dropped = true;
        this.#queue.length = 0;
        this.broker.log('error', `${this.label}: ${(err as Error)?.stack ?? String(err)}`);
        this.socket.destroy();
        this.#checkFinished();
      },
    );
  }

  async #serve(frame: Buffer): Promise<void> {
    const r = new Reader(frame);
    let apiKey: number;
    let apiVersion: number;
    let correlationId: number;
    let clientId: string | null;
    try {
      apiKey = r.int16();
      apiVersion = r.int16();
      correlationId = r.int32();
      clientId = r.nullableString();
    } catch (err) {
      return this.#fatal(`bad request header: ${(err as Error).message}`);
    }
    this.requests++;
    const spec = VERSION_BY_KEY.get(apiKey);
    if (!spec) return this.#fatal(`unknown API key ${apiKey}`);
    if (apiKey === ApiKey.ApiVersions) {
      // v3+ is flexible: its request header has tagged fields. The body of an
      // unsupported higher version is not read (answered in the v0 layout).
      if (apiVersion >= 3 && apiVersion <= spec.max) {
        try {
          r.taggedFields();
        } catch (err) {
          return this.#fatal(`bad ApiVersions header: ${(err as Error).message}`);
        }
      }
    } else if (apiVersion < spec.min || apiVersion > spec.max) {
      return this.#fatal(`unsupported ${spec.name} version ${apiVersion} (supported ${spec.min}..${spec.max})`);
    }
    this.broker.log('debug', `${this.label} ${spec.name} v${apiVersion} correlation ${correlationId}`);
    let reply: Reply | null;
    try {
      reply = await this.broker.dispatch({ apiKey, apiVersion, correlationId, clientId, body: r, signal: this.#ac.signal, connection: this.label, clientHost: `/${this.socket.remoteAddress ?? ''}` });
    } catch (err) {
      if (err instanceof ProtocolError || err instanceof RangeError) return this.#fatal(`malformed ${spec.name} v${apiVersion}: ${(err as Error).message}`);
      throw err;
    }
    if (reply === null) return; // acks=0, or the connection closed during a long poll
    try {
      if (this.socket.destroyed) return;
      const head = Buffer.allocUnsafe(8);
      const parts = reply.parts;
      head.writeInt32BE(4 + partsLength(parts), 0);
      head.writeInt32BE(correlationId, 4);
      const mode = this.broker.options.fetchMode;
      const send = mode === 'stream' ? writeThroughBuffers : mode === 'buffer' ? writeReadWhole : sendParts;
      const sent = await send(this.socket, [head, ...parts], { mechanism: this.broker.options.fetchMechanism ?? 'auto' }).catch((err: Error & { code?: string }) => {
        this.broker.log('debug', `${this.label} response ${spec.name} not sent: ${err.code ?? err.message}`);
        return 0;
      });
      this.bytesOut += sent;
    } finally {
      reply.release?.();
    }
  }

  /**
   * Graceful close: nothing more is read; the requests already received are
   * answered (a long poll at once, with what it has), then the socket ends.
   */
  drainAndClose(deadline: number): Promise<void> {
    this.#closing = true;
    const timer = setTimeout(() => this.socket.destroy(), Math.max(0, deadline - Date.now()));
    this.#ac.abort();
    this.#pump();
    return this.finished.finally(() => clearTimeout(timer));
  }
}

const BUFFER_MODE_CHUNK = 1024 * 1024;

/**
 * The 'buffer' fetch mode of the benchmark: each file range read whole into
 * one Buffer, then the response written with socket.write (sendParts given
 * only Buffers writes them with socket.write).
 */
async function writeReadWhole(socket: net.Socket | tls.TLSSocket, parts: Array<Buffer | FdRange>, _options?: unknown): Promise<number> {
  const out: Buffer[] = [];
  for (const p of parts) {
    if (Buffer.isBuffer(p)) {
      out.push(p);
      continue;
    }
    const b = Buffer.allocUnsafe(p.length);
    for (let at = 0; at < p.length; ) {
      const n = await new Promise<number>((res, rej) => fs.read(p.fd, b, at, p.length - at, p.offset + at, (err, k) => (err ? rej(err) : res(k))));
      if (n === 0) {
        socket.destroy();
        throw Object.assign(new Error('segment truncated during fetch'), { code: 'ZCOPY_ERR_FILE_TRUNCATED' });
      }
      at += n;
    }
    out.push(b);
  }
  return sendParts(socket, out);
}

/**
 * The 'stream' fetch mode of the benchmark: file ranges are read with fs.read
 * into 1 MiB Buffers and written with socket.write, waiting for 'drain' when
 * the socket's buffer is full (stream.pipe's backpressure, with larger chunks
 * than a ReadStream's 64 KiB). A failure after the first write leaves the
 * response short: the socket is destroyed so the client cannot misread the
 * next response.
 */
async function writeThroughBuffers(socket: net.Socket | tls.TLSSocket, parts: Array<Buffer | FdRange>, _options?: unknown): Promise<number> {
  let sent = 0;
  const write = async (b: Buffer): Promise<void> => {
    if (socket.destroyed) throw Object.assign(new Error('socket closed'), { code: 'ERR_STREAM_DESTROYED' });
    sent += b.length;
    if (socket.write(b)) return;
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        socket.off('drain', done).off('close', closed);
        if (err) reject(err);
        else resolve();
      };
      const closed = (): void => done(Object.assign(new Error('socket closed'), { code: 'ERR_STREAM_DESTROYED' }));
      socket.on('drain', done).on('close', closed);
    });
  };
  try {
    for (const p of parts) {
      if (Buffer.isBuffer(p)) {
        await write(p);
        continue;
      }
      for (let at = 0; at < p.length; ) {
        const b = Buffer.allocUnsafe(Math.min(BUFFER_MODE_CHUNK, p.length - at));
        const n = await new Promise<number>((res, rej) => fs.read(p.fd, b, 0, b.length, p.offset + at, (err, k) => (err ? rej(err) : res(k))));
        if (n === 0) throw Object.assign(new Error('segment truncated during fetch'), { code: 'ZCOPY_ERR_FILE_TRUNCATED' });
        at += n;
        await write(n === b.length ? b : b.subarray(0, n));
      }
    }
  } catch (err) {
    socket.destroy();
    throw err;
  }
  return sent;
}

export { DEFAULT_LOG_CONFIG };
