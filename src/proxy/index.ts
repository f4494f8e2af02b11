/**
 * A TCP (and Unix socket) proxy whose bytes never pass through JavaScript:
 * every accepted connection is forwarded both ways with {@link splice}.
 *
 * @module
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { newProgress, spliceSockets, type SpliceMechanism, type SpliceProgress } from '../splice.js';
import { invalidArgType, invalidArgValue, ZcopyError } from '../errors.js';
import { validateObject, validateOneOf, validatePositiveInt } from '../internal/validate.js';
import type { Path } from '../stats.js';

/** Where a proxy connects: a TCP host and port, or a Unix socket path. */
export type ProxyTarget = { host?: string; port: number } | { path: string };

/** Options of {@link createProxy}. */
export interface ProxyOptions {
  /** The upstream, or a function choosing it per accepted socket. */
  target: ProxyTarget | ((socket: net.Socket) => ProxyTarget | Promise<ProxyTarget>);
  /** Connections beyond this are closed as they arrive (`net.Server#maxConnections`). */
  maxConnections?: number;
  /** Close a connection after this many ms without a byte either way. 0 (default): never. */
  idleTimeout?: number;
  /** Give up connecting upstream after this many ms. Default 10000; 0: never. */
  connectTimeout?: number;
  /** Native mechanism of both directions; default 'auto' (see splice()). */
  mechanism?: SpliceMechanism;
}

/** What a connection's events carry. */
export interface ProxyConnectionInfo {
  /** 1, 2, 3... per proxy. */
  id: number;
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  /** The upstream, as `host:port` or the socket path. */
  target: string;
}

/** One direction of a closed connection. */
export interface ProxyDirectionInfo {
  bytes: number;
  /** The path that moved the bulk ('splice', 'nativeCopy', or 'portable'). */
  path: Path | 'none';
  /** Bytes by path (bytes Node had already read count as 'portable'). */
  byPath: Partial<Record<Path, number>>;
  /** Why this direction left the native path, if it did ('tls', 'forced', 'splice-EINVAL', ...). */
  fallback?: string;
}

/** Why a proxied connection closed. */
export type ProxyCloseReason = 'done' | 'error' | 'idle-timeout' | 'connect-timeout' | 'connect-error' | 'client-closed' | 'shutdown';

/** The 'proxyClose' event's argument. */
export interface ProxyCloseInfo extends ProxyConnectionInfo {
  /** Client -> upstream. */
  up: ProxyDirectionInfo;
  /** Upstream -> client. */
  down: ProxyDirectionInfo;
  /** Milliseconds from accept to close. */
  duration: number;
  reason: ProxyCloseReason;
  /** The first error, when there was one. */
  error?: Error;
}

/**
 * The proxy: a `net.Server` that also emits, per connection,
 * `'proxyConnect'` (upstream connected, forwarding starts) and
 * `'proxyClose'` (both sockets closed, with bytes each way and the path they
 * took). (`'connection'` and `'close'` keep their `net.Server` meanings.)
 */
export interface ProxyServer extends net.Server {
  /** Connections being forwarded or connecting now. */
  readonly activeConnections: number;
  /** Destroys every open connection (each still emits 'proxyClose', reason 'shutdown'). */
  closeAllConnections(): void;
  on(event: 'proxyConnect', listener: (info: ProxyConnectionInfo) => void): this;
  on(event: 'proxyClose', listener: (info: ProxyCloseInfo) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
  once(event: 'proxyConnect', listener: (info: ProxyConnectionInfo) => void): this;
  once(event: 'proxyClose', listener: (info: ProxyCloseInfo) => void): this;
  once(event: string | symbol, listener: (...args: any[]) => void): this;
}

const MAX_MS = 2 ** 31 - 1;

/**
 * Creates a proxy that forwards every accepted connection to `target`, both
 * directions in the kernel (splice(2) or a native copy; TLS and
 * addon-less hosts take the portable path). Half-close is forwarded: when
 * one side ends, the other is shut down for writing and the reply still
 * flows. A reset or error on either side closes both.
 *
 * @example
 * ```ts
 * import { createProxy } from 'zcopy';
 * const proxy = createProxy({ target: { host: '127.0.0.1', port: 8080 }, idleTimeout: 60_000 });
 * proxy.on('proxyClose', (c) => console.log(c.id, c.up.bytes, c.down.bytes, c.up.path));
 * proxy.listen(9000, '127.0.0.1');
 * ```
 */
export function createProxy(options: ProxyOptions): ProxyServer {
  const o = validateObject('options', options);
  const target = o.target;
  if (typeof target !== 'function') validateTarget(target);
  const maxConnections = validatePositiveInt('options.maxConnections', o.maxConnections, 1, 2 ** 31 - 1);
  const idleTimeout = validatePositiveInt('options.idleTimeout', o.idleTimeout, 0, MAX_MS) ?? 0;
  const connectTimeout = validatePositiveInt('options.connectTimeout', o.connectTimeout, 0, MAX_MS) ?? 10_000;
  const mechanism = validateOneOf('options.mechanism', o.mechanism, ['auto', 'splice', 'copy'] as const) ?? 'auto';

  const open = new Set<Connection>();
  let seq = 0;
  // pauseOnConnect: Node never reads the client before the splice owns it.
  // allowHalfOpen: one side's EOF must not end the other; splice forwards it.
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }) as ProxyServer;
  if (maxConnections !== undefined) server.maxConnections = maxConnections;
  server.on('connection', (client: net.Socket) => {
    const conn = new Connection(++seq, client, server, { target: target as ProxyOptions['target'], idleTimeout, connectTimeout, mechanism }, open);
    open.add(conn);
    conn.start();
  });
  Object.defineProperty(server, 'activeConnections', { get: () => open.size });
  server.closeAllConnections = () => {
    for (const c of [...open]) c.shutdown('shutdown');
  };
  return server;
}

function validateTarget(t: unknown): ProxyTarget {
  if (typeof t !== 'object' || t === null) throw invalidArgType('options.target', 'an object { host, port } or { path }, or a function', t);
  const v = t as Record<string, unknown>;
  if (typeof v.path === 'string') {
    if (v.path.length === 0) throw invalidArgValue('options.target.path', v.path, 'must be a non-empty path');
    return { path: v.path };
  }
  const port = v.port;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw invalidArgValue('options.target.port', port, 'must be an integer from 1 to 65535');
  }
  if (v.host !== undefined && typeof v.host !== 'string') throw invalidArgType('options.target.host', 'of type string', v.host);
  return { host: (v.host as string | undefined) ?? '127.0.0.1', port };
}

function describeTarget(t: ProxyTarget): string {
  if ('path' in t) return t.path;
  const host = t.host ?? '127.0.0.1';
  return host.includes(':') ? `[${host}]:${t.port}` : `${host}:${t.port}`;
}

interface ConnOptions {
  target: ProxyOptions['target'];
  idleTimeout: number;
  connectTimeout: number;
  mechanism: SpliceMechanism;
}

const noop = () => {};

class Connection {
  readonly id: number;
  readonly client: net.Socket;
  upstream: net.Socket | undefined;
  readonly #server: ProxyServer;
  readonly #opts: ConnOptions;
  readonly #open: Set<Connection>;
  readonly #start = performance.now();
  readonly #up: SpliceProgress = newProgress();
  readonly #down: SpliceProgress = newProgress();
  #target = '?';
  #reason: ProxyCloseReason | undefined;
  #error: Error | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(id: number, client: net.Socket, server: ProxyServer, opts: ConnOptions, open: Set<Connection>) {
    this.id = id;
    this.client = client;
    this.#server = server;
    this.#opts = opts;
    this.#open = open;
  }

  info(): ProxyConnectionInfo {
    return { id: this.id, remoteAddress: this.client.remoteAddress, remotePort: this.client.remotePort, target: this.#target };
  }

  start(): void {
    const client = this.client;
    client.on('error', (err) => this.#fail(err));
    const clientClosed = new Promise<void>((r) => client.once('close', () => r()));
    client.once('close', () => {
      if (!this.upstream || this.upstream.connecting) this.shutdown('client-closed');
    });
    void this.#connect().then(
      () => this.#forward(),
      (err: Error) => {
        if (!this.upstream) this.#upstreamDone();
        this.#fail(err, this.#reason ?? 'connect-error');
        this.shutdown(this.#reason ?? 'connect-error');
      },
    );
    void Promise.all([clientClosed, this.#upstreamClosed]).then(() => this.#finish());
  }

  #upstreamDone!: () => void;
  readonly #upstreamClosed = new Promise<void>((r) => (this.#upstreamDone = r));

  async #connect(): Promise<void> {
    const t = this.#opts.target;
    const target = validateTarget(typeof t === 'function' ? await t(this.client) : t);
    this.#target = describeTarget(target);
    if (this.#closed || this.client.destroyed) throw new ZcopyError('ZCOPY_ERR_SOCKET_CLOSED', 'client closed before the upstream connected');
    const up = 'path' in target ? net.connect({ path: target.path, allowHalfOpen: true }) : net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
    this.upstream = up;
    // Paused before it connects: Node won't start reading it, the splice will.
    up.pause();
    up.on('error', (err) => this.#fail(err));
    up.once('close', () => this.#upstreamDone());
    await new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      if (this.#opts.connectTimeout > 0) {
        timer = setTimeout(() => {
          this.#reason = 'connect-timeout';
          reject(new ZcopyError('ZCOPY_ERR_TIMEOUT', `connect to ${this.#target} timed out after ${this.#opts.connectTimeout} ms`));
        }, this.#opts.connectTimeout);
      }
      up.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
      up.once('close', () => {
        clearTimeout(timer);
        reject(this.#error ?? new ZcopyError('ZCOPY_ERR_SOCKET_CLOSED', 'upstream closed before it connected'));
      });
    });
  }

  #forward(): void {
    const client = this.client;
    const up = this.upstream!;
    if (this.#closed || client.destroyed) {
      this.shutdown(this.#reason ?? 'client-closed');
      return;
    }
    this.#server.emit('proxyConnect', this.info());
    const req = { length: undefined, end: true, signal: undefined, mechanism: this.#opts.mechanism };
    const a = spliceSockets(client, up, req, this.#up);
    const b = spliceSockets(up, client, req, this.#down);
    a.catch((err: Error) => this.#fail(err));
    b.catch((err: Error) => this.#fail(err));
    if (this.#opts.idleTimeout > 0) this.#armIdle();
    void Promise.allSettled([a, b]).then(([ra, rb]) => {
      if (ra.status === 'fulfilled' && rb.status === 'fulfilled') {
        // Both sides reached EOF and were half-closed in turn: close each
        // socket once its FIN is queued.
        this.#reason ??= 'done';
        closeWhenFinished(client);
        closeWhenFinished(up);
      } else {
        this.shutdown('error');
      }
    });
  }

  #armIdle(): void {
    const ms = this.#opts.idleTimeout;
    const tick = () => {
      this.#timer = undefined;
      if (this.#closed) return;
      const idle = performance.now() - Math.max(this.#up.lastActive, this.#down.lastActive);
      if (idle >= ms) {
        this.shutdown('idle-timeout');
        return;
      }
      this.#timer = setTimeout(tick, Math.max(1, Math.ceil(ms - idle)));
      this.#timer.unref();
    };
    this.#timer = setTimeout(tick, ms);
    this.#timer.unref();
  }

  #fail(err: Error, reason?: ProxyCloseReason): void {
    // The first error is the cause; the rest are its echoes.
    if (this.#error === undefined && !(this.#reason && this.#reason !== 'error' && isClosedError(err))) this.#error = err;
    if (reason) this.#reason ??= reason;
  }

  /** Destroys both sockets; 'proxyClose' follows once both have closed. */
  shutdown(reason: ProxyCloseReason): void {
    this.#reason ??= reason;
    if (this.#closed) return;
    this.#closed = true;
    this.client.on('error', noop);
    this.client.destroy();
    if (this.upstream) {
      this.upstream.on('error', noop);
      this.upstream.destroy();
    }
  }

  #finish(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#open.delete(this);
    const reason = this.#reason ?? (this.#error ? 'error' : 'done');
    const info: ProxyCloseInfo = {
      ...this.info(),
      up: direction(this.#up),
      down: direction(this.#down),
      duration: performance.now() - this.#start,
      reason,
    };
    if (this.#error && reason !== 'done') info.error = this.#error;
    this.#server.emit('proxyClose', info);
  }
}

function isClosedError(err: Error): boolean {
  return (err as { code?: string }).code === 'ZCOPY_ERR_SOCKET_CLOSED' || err.name === 'AbortError';
}

function direction(p: SpliceProgress): ProxyDirectionInfo {
  let path: Path | 'none' = 'none';
  let best = 0;
  for (const [k, v] of Object.entries(p.byPath) as [Path, number][]) {
    if (v > best) {
      best = v;
      path = k;
    }
  }
  if (path === 'none' && p.path) path = p.path;
  const d: ProxyDirectionInfo = { bytes: p.bytes, path, byPath: { ...p.byPath } };
  if (p.fallback) d.fallback = p.fallback;
  return d;
}

/** Destroys `s` once Node has handed its FIN (the end() splice called) to the kernel. */
function closeWhenFinished(s: net.Socket): void {
  if (s.destroyed) return;
  s.on('error', noop);
  if (s.writableFinished || !s.writable) s.destroy();
  else s.once('finish', () => s.destroy());
}
