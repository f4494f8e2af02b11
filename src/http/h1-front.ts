/**
 * @internal The HTTP/1.1 front of `zcopy serve`: a connection's
 * requests are read here first, and the plainest of them, a GET or HEAD of
 * a small regular file with nothing conditional about it, is answered here
 * with the same status line, headers and body node:http would send, in one
 * write, without an IncomingMessage, a ServerResponse or their events.
 *
 * Why: node:http's per-request objects cost more than the file work once
 * the open-file cache holds the file. node:http answering from a Buffer
 * stayed at 0.69-0.75x nginx at 64 KiB; the front answers 1.72x the 64 KiB
 * requests of the same server through node:http, 0.98x nginx with
 * open_file_cache (docs/benchmarks.md, "HTTP/1.1 front").
 *
 * What is answered here is deliberately narrow; everything else goes to
 * node:http, which keeps every rule it has: the first request that is not
 * plain (another method or version, a body, Range, a conditional, Upgrade,
 * Expect, `Connection` other than keep-alive, no or several Host headers,
 * a byte outside the strict grammar below, a head over 8 KiB) hands the
 * connection over, with that request's bytes and everything after them,
 * and node:http serves it from then on. So a request node:http would refuse
 * or read differently (request smuggling lives in such differences) is
 * never read here: the grammar accepted is a strict subset of llhttp's, and
 * a request without Content-Length and Transfer-Encoding ends at its empty
 * line for both. A lookup that is not a small whole file (404, redirect,
 * listing, a body sent zero-copy) hands over too, before any byte of that
 * response.
 *
 * @module
 */
import http from 'node:http';
import type net from 'node:net';
import type { Stats } from 'node:fs';
import { bufferedBody, releasePooled, type BufferedBody } from './body.js';
import { wholeFileHead } from './serve-file.js';
import { kStaticRoot, StaticRoot, type Lookup, type StaticHandler } from './serve-static.js';
import type { AnyRequest } from './response.js';
import type { OpenedFile } from './open.js';

/** A head longer than this is left to node:http (whose limit is 16 KiB). */
export const FRONT_HEAD_MAX = 8 * 1024;

/** Bytes of whole responses (head + cached body) kept built (see H1Front.wholeResponse). */
export const WHOLE_BYTES = 16 * 1024 * 1024;

/** What one answered request did, for the access log. */
export interface FrontResponse {
  method: string;
  url: string;
  status: number;
  bytes: number;
  transfer?: 'buffered';
  error?: Error;
}

export interface H1FrontOptions {
  /** Headers every response carries ahead of the file's, as `res.setHeader` before the handler would put them (`zcopy serve --cors`). */
  headers?: ReadonlyArray<readonly [string, string]>;
  /** Called when a request will be answered here, before any I/O; its value is given back to onResponse. */
  onRequest?: () => unknown;
  /** Called once per request answered here: its bytes went to the kernel, or the connection failed first. */
  onResponse?: (ctx: unknown, r: FrontResponse) => void;
}

const CR = 13;
const LF = 10;
const SP = 32;
const COLON = 58;
const HTAB = 9;

/** RFC 9110 tchar: a header name. */
const TCHAR = new Uint8Array(256);
/** The request-target bytes accepted here: RFC 3986 pchar, '/', '?' (no '#', no byte llhttp might read otherwise). */
const TARGET = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  const ch = String.fromCharCode(c);
  const alnum = /[A-Za-z0-9]/.test(ch);
  if (alnum || "!#$%&'*+-.^_`|~".includes(ch)) TCHAR[c] = 1;
  if (alnum || "-._~!$&'()*+,;=:@/?%".includes(ch)) TARGET[c] = 1;
}

/** Header names whose presence hands the request to node:http. */
const NOT_PLAIN = new Set(['content-length', 'transfer-encoding', 'upgrade', 'expect', 'range', 'if-range', 'if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since', 'http2-settings', 'proxy-connection']);

const INCOMPLETE = 0;
const OTHER = 1;

/** What a batch of answers left to do. */
const DONE = 0;
const MORE = 1;
const WAIT = 2;
const HANDOVER = 3;

/** How long a partial request may stay with the front before node:http takes the connection (and applies its headersTimeout). */
export const PARTIAL_MS = 1_000;
/** Reads a partial request may take before node:http takes the connection (each one re-parses the head from its start). */
const PARTIAL_READS = 16;

/** A plain request found at the start of a buffer: its method, target and length. */
interface Plain {
  method: 'GET' | 'HEAD';
  url: string;
  end: number;
}

const VERSION = Buffer.from('HTTP/1.1\r\n', 'latin1');

/**
 * Reads one request from `buf` at `at`: a {@link Plain} request, INCOMPLETE
 * (every byte so far fits the grammar and the head is still shorter than
 * FRONT_HEAD_MAX), or OTHER (for node:http: at the first byte that does not
 * fit, so a malformed request gets node:http's answer as soon as it would).
 */
export function parsePlain(buf: Buffer, at: number, headMax = FRONT_HEAD_MAX): Plain | typeof INCOMPLETE | typeof OTHER {
  const len = buf.length;
  const lim = Math.min(len, at + headMax);
  const more = (): typeof INCOMPLETE | typeof OTHER => (len - at >= headMax ? OTHER : INCOMPLETE);
  let i = at;
  const word = buf[i] === 72 ? 'HEAD ' : 'GET ';
  for (let k = 0; k < word.length; k++) {
    if (i + k >= lim) return more();
    if (buf[i + k] !== word.charCodeAt(k)) return OTHER;
  }
  const method = word === 'GET ' ? 'GET' : 'HEAD';
  i += word.length;
  // The target: '/' then strict bytes, one SP, then exactly HTTP/1.1 CRLF.
  if (i >= lim) return more();
  if (buf[i] !== 47) return OTHER;
  const t0 = i;
  while (i < lim && TARGET[buf[i]!] === 1) i++;
  if (i >= lim) return more();
  if (buf[i] !== SP) return OTHER;
  const url = buf.toString('latin1', t0, i);
  i++;
  for (let k = 0; k < VERSION.length; k++) {
    if (i + k >= lim) return more();
    if (buf[i + k] !== VERSION[k]) return OTHER;
  }
  i += VERSION.length;
  // Header lines up to the empty line: name ':' OWS value OWS CRLF.
  let hosts = 0;
  for (;;) {
    if (i >= lim) return more();
    if (buf[i] === CR) {
      if (i + 1 >= lim) return more();
      if (buf[i + 1] !== LF) return OTHER;
      i += 2;
      break;
    }
    const n0 = i;
    while (i < lim && TCHAR[buf[i]!] === 1) i++;
    if (i >= lim) return more();
    if (i === n0 || buf[i] !== COLON) return OTHER;
    const nameEnd = i;
    i++;
    const v0 = i;
    for (; i < lim; i++) {
      const c = buf[i]!;
      if (c === CR) break;
      if (c < SP ? c !== HTAB : c > 126) return OTHER;
    }
    if (i + 1 >= lim) return more();
    if (buf[i + 1] !== LF) return OTHER;
    const name = buf.toString('latin1', n0, nameEnd).toLowerCase();
    if (name === 'host') hosts++;
    else if (name === 'connection') {
      if (buf.toString('latin1', v0, i).trim().toLowerCase() !== 'keep-alive') return OTHER;
    } else if (NOT_PLAIN.has(name)) return OTHER;
    i += 2;
  }
  // node:http answers 400 to an HTTP/1.1 request without Host.
  if (hosts !== 1) return OTHER;
  return { method, url, end: i };
}

const EMPTY_HEADERS = Object.freeze({}) as AnyRequest['headers'];

/** The Date header, built once a second (node:http caches its own the same way). */
let dateAt = -1;
let dateValue = '';
function dateHeader(): string {
  const now = Date.now();
  const sec = now - (now % 1000);
  if (sec !== dateAt) {
    dateAt = sec;
    dateValue = new Date(sec).toUTCString();
  }
  return dateValue;
}

/**
 * The front of one node:http server. {@link H1Front.install}
 * puts it in place of the server's own 'connection' listener.
 */
export class H1Front {
  readonly #server: http.Server;
  readonly #root: StaticRoot;
  readonly #nodeListener: (socket: net.Socket) => void;
  readonly #o: H1FrontOptions;
  readonly #conns = new Set<FrontConn>();
  /** The head bytes of the last responses, per Stats object (the cache reuses one while the file is unchanged). */
  readonly #heads = new WeakMap<Stats, { typeName: string; head: string }>();
  #draining = false;
  #tail = '';
  #tailDate = '';
  #tailKa = -1;
  readonly #whole = new Map<Buffer, { head: string; tail: string; buf: Buffer }>();
  #wholeBytes = 0;
  /** Requests answered here (`prebuilt`: of them, one write of a prebuilt head + cached body), and connections handed to node:http. */
  readonly counts = { answered: 0, prebuilt: 0, handedOver: 0 };

  private constructor(server: http.Server, root: StaticRoot, nodeListener: (socket: net.Socket) => void, o: H1FrontOptions) {
    this.#server = server;
    this.#root = root;
    this.#nodeListener = nodeListener;
    this.#o = o;
  }

  /**
   * Puts the front before `server` for `handler` (a serveStatic
   * handler). Undefined when the handler's options leave nothing for it:
   * precompressed variants (negotiated per request), a `headers` hook, no
   * open-file cache.
   */
  static install(server: http.Server, handler: StaticHandler, o: H1FrontOptions = {}): H1Front | undefined {
    const root = (handler as unknown as { [kStaticRoot]?: StaticRoot })[kStaticRoot];
    if (root === undefined || root.cache === undefined || root.encodings.length > 0 || root.options.headers !== undefined) return undefined;
    const listeners = server.listeners('connection') as Array<(socket: net.Socket) => void>;
    // node:http's own listener is the one its constructor added first.
    const nodeListener = listeners[0];
    if (nodeListener === undefined) return undefined;
    const fp = new H1Front(server, root, nodeListener, o);
    server.removeListener('connection', nodeListener);
    server.prependListener('connection', (socket: net.Socket) => fp.#accept(socket));
    return fp;
  }

  /** Connections the front still reads. */
  get connections(): number {
    return this.#conns.size;
  }

  /** Shutting down: idle connections close now, busy ones once their response is out. */
  closeIdleConnections(): void {
    this.#draining = true;
    for (const c of this.#conns) c.closeIfIdle();
  }

  closeAllConnections(): void {
    this.#draining = true;
    for (const c of [...this.#conns]) c.socket.destroy();
  }

  get draining(): boolean {
    return this.#draining;
  }

  #accept(socket: net.Socket): void {
    // A socket node:http already owns (emitted by someone else) stays there.
    if ((socket as { parser?: unknown }).parser) return this.#nodeListener.call(this.#server, socket);
    const c = new FrontConn(this, socket);
    this.#conns.add(c);
  }

  /** @internal */
  forget(c: FrontConn): void {
    this.#conns.delete(c);
  }

  /** @internal Gives `socket` to node:http with the bytes not read here yet. */
  handOver(c: FrontConn, rest: Buffer | undefined, ended: boolean): void {
    this.#conns.delete(c);
    this.counts.handedOver++;
    const socket = c.socket;
    if (socket.destroyed) return;
    this.#nodeListener.call(this.#server, socket);
    // node:http's parser now reads the socket's handle itself; these bytes
    // came before anything it will read, and go to it first, in this tick.
    if (rest !== undefined && rest.length > 0) socket.emit('data', rest);
    if (ended) socket.emit('end');
    socket.resume();
  }

  /** @internal The lookup of a request target (sync on a cache hit). */
  lookup(method: string, url: string): Lookup | Promise<Lookup> {
    return this.#root.lookup({ method, url, headers: EMPTY_HEADERS } as AnyRequest, url, url);
  }

  /**
   * @internal The status line and headers of a 200 for `file` up to (not
   * including) Date, or undefined when it is not one this path sends. The
   * same string object while the file's Stats object is (see wholeResponse).
   */
  headFor(l: Lookup, method: string): string | undefined {
    if (l.kind !== 'file' || l.encoding !== undefined || l.vary) return undefined;
    const stat = l.file.stat;
    if (!stat.isFile()) return undefined;
    const o = this.#root.options;
    // A body the general path sends zero-copy (or from the body cache where it would be copied) is not for here.
    if (method !== 'HEAD' && stat.size >= o.sendfileThreshold) return undefined;
    let h = this.#heads.get(stat);
    if (h === undefined || h.typeName !== l.typeName) {
      const pairs = wholeFileHead(o, { typeName: l.typeName }, stat);
      let head = 'HTTP/1.1 200 OK\r\n';
      for (const [k, v] of this.#o.headers ?? []) head += `${k}: ${v}\r\n`;
      for (let k = 0; k < pairs.length; k += 2) head += `${pairs[k]}: ${pairs[k + 1]}\r\n`;
      h = { typeName: l.typeName, head };
      this.#heads.set(stat, h);
    }
    return h.head;
  }

  /** @internal The rest of the head after headFor's: Date (once a second, as node:http), Connection, Keep-Alive. The same string object within a second. */
  headTail(): string {
    const date = dateHeader();
    const ka = this.#server.keepAliveTimeout;
    if (date !== this.#tailDate || ka !== this.#tailKa) {
      this.#tailDate = date;
      this.#tailKa = ka;
      this.#tail = `Date: ${date}\r\nConnection: keep-alive\r\n${ka ? `Keep-Alive: timeout=${Math.floor(ka / 1000)}\r\n` : ''}\r\n`;
    }
    return this.#tail;
  }

  /**
   * @internal Head and a body-cache body in one buffer, built once per
   * second (the Date) and per file version, so a hit is one write of one
   * buffer. Bounded by WHOLE_BYTES (oldest built first out); a body the
   * cache dropped leaves with its entry's next rebuild or eviction.
   */
  wholeResponse(head: string, tail: string, body: Buffer): Buffer | undefined {
    const w = this.#whole.get(body);
    if (w !== undefined && w.head === head && w.tail === tail) return w.buf;
    const hl = head.length + tail.length;
    const need = hl + body.length;
    if (w !== undefined) {
      this.#wholeBytes -= w.buf.length;
      this.#whole.delete(body);
    }
    // Oldest built first out, but nothing built in this second (its Date):
    // a hot set larger than the budget would otherwise rebuild on every
    // hit. What does not fit goes out as head + body (writev) instead.
    for (const [k, v] of this.#whole) {
      if (this.#wholeBytes + need <= WHOLE_BYTES || v.tail === tail) break;
      this.#wholeBytes -= v.buf.length;
      this.#whole.delete(k);
    }
    if (this.#wholeBytes + need > WHOLE_BYTES) return undefined;
    const buf = Buffer.allocUnsafeSlow(hl + body.length);
    buf.write(head, 0, 'latin1');
    buf.write(tail, head.length, 'latin1');
    body.copy(buf, hl);
    this.#whole.set(body, { head, tail, buf });
    this.#wholeBytes += buf.length;
    return buf;
  }

  /**
   * The longest head read here: 8 KiB, or less when node:http's own limit
   * (`maxHeaderSize`, `--max-http-header-size`) is lower, so a head it
   * would refuse (431) always reaches it.
   */
  get headMax(): number {
    return Math.min(FRONT_HEAD_MAX, (this.#server as { maxHeaderSize?: number }).maxHeaderSize || http.maxHeaderSize);
  }

  get sendTimeout(): number {
    return this.#root.options.sendTimeout;
  }

  get keepAliveTimeout(): number {
    return this.#server.keepAliveTimeout;
  }

  get hooks(): H1FrontOptions {
    return this.#o;
  }
}

/**
 * Unflushed response bytes a connection may have before the front stops
 * reading its requests (node:http stops at its highWaterMark, 16 KiB, plus
 * the response under way). Bodies are mostly the body cache's shared
 * buffers, so this bounds little memory of its own.
 */
export const FRONT_WRITE_BUDGET = 128 * 1024;

/** One connection while the front reads it. */
class FrontConn {
  readonly socket: net.Socket;
  readonly #fp: H1Front;
  /** Bytes received and not yet answered. */
  #buf: Buffer | undefined;
  /** Waiting for a lookup or a read. */
  #busy = false;
  /** Waiting for the socket to drain (more than FRONT_WRITE_BUDGET unflushed). */
  #draining = false;
  #ended = false;
  #gone = false;
  /** The socket's inactivity timer: the shorter of the keep-alive and send timeouts (0: none). */
  readonly #tick: number;
  /** The timer's current length (a remainder after it fired). */
  #armed = 0;
  /** How long the connection has been without activity, as far as fired timers tell. */
  #quietMs = 0;
  #timedOut = false;
  #lastFlushed = 0;
  /** Responses written (numbered), and the last one known to be in the kernel. */
  #seq = 0;
  #flushedSeq = 0;
  /** Reads that left a partial request (a client trickling its head hands over at PARTIAL_READS). */
  #partialReads = 0;
  /** Passed over once by closeIfIdle (no byte read yet). */
  #graced = false;
  /** Hands a partial request over after PARTIAL_MS. */
  #partial: NodeJS.Timeout | undefined;

  constructor(fp: H1Front, socket: net.Socket) {
    this.#fp = fp;
    this.socket = socket;
    for (const [event, fn] of this.#listeners) socket.on(event, fn);
    const ka = fp.keepAliveTimeout;
    const st = fp.sendTimeout;
    this.#tick = ka > 0 && st > 0 ? Math.min(ka, st) : ka > 0 ? ka : st;
    // One timer for both timeouts, never re-armed on the hot path: node
    // refreshes it on every read and write; 'timeout' says which applies.
    if (this.#tick > 0) this.#arm(this.#tick);
  }

  /** Bytes of this connection in the kernel (or beyond): written, less what the stream and libuv still queue. */
  #flushedBytes(): number {
    const s = this.socket as net.Socket & { _handle?: { writeQueueSize?: number } | null };
    return s.bytesWritten - s.writableLength - (s._handle?.writeQueueSize ?? 0);
  }

  /** Every response written so far is in the kernel: their callbacks (due on the next tick) report success even if the socket is destroyed before. */
  #markFlushed(): void {
    const s = this.socket as net.Socket & { _handle?: { writeQueueSize?: number } | null };
    if (s.writableLength === 0 && !((s._handle?.writeQueueSize ?? 0) > 0)) this.#flushedSeq = this.#seq;
  }

  #arm(ms: number): void {
    this.#armed = ms;
    this.socket.setTimeout(ms);
  }

  /** Activity: the quiet time starts again (the timer itself was refreshed by node). */
  #active(): void {
    this.#quietMs = 0;
    if (this.#armed !== this.#tick && this.#tick > 0) this.#arm(this.#tick);
  }

  /** Every listener the front puts on its socket: one list, so the hand-over removes exactly what the constructor added. */
  get #listeners(): ReadonlyArray<readonly [string, (...args: unknown[]) => void]> {
    return [
      ['data', this.#onData as (...args: unknown[]) => void],
      ['end', this.#onEnd],
      ['error', this.#onError],
      ['close', this.#onClose],
      ['timeout', this.#onTimeout],
      ['drain', this.#onDrain],
    ];
  }

  #onData = (d: Buffer): void => {
    this.#active();
    this.#buf = this.#buf === undefined || this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d]);
    if (!this.#busy && !this.#draining) this.#pump();
  };

  #onEnd = (): void => {
    this.#ended = true;
    if (!this.#busy && !this.#draining) this.#pump();
  };

  #onError = (): void => {
    // 'close' follows; the write callbacks log what did not go out.
  };

  #onClose = (): void => {
    this.#gone = true;
    this.#clearPartial();
    this.#fp.forget(this);
  };

  /**
   * No read or write for one more timer period. Bytes still to go to a
   * client that takes none: the send timeout. A lookup under way: not the
   * client's doing. Idle: the keep-alive timeout plus a second, as node:http
   * does (a client reusing the connection just at the advertised timeout
   * does not race the close).
   */
  #onTimeout = (): void => {
    const socket = this.socket;
    // node swallows a timeout while a queued write moves; a write that
    // moved between two timeouts is progress too (as SendTimer counts it).
    const flushed = this.#flushedBytes();
    if (flushed !== this.#lastFlushed) {
      this.#lastFlushed = flushed;
      this.#quietMs = 0;
    }
    // A lookup under way is not the client's silence.
    if (this.#busy) return this.#arm(this.#tick);
    const quiet = (this.#quietMs += this.#armed);
    const st = this.#fp.sendTimeout;
    if (socket.writableLength > 0) {
      if (st > 0 && quiet >= st) {
        this.#timedOut = true;
        socket.destroy();
        return;
      }
      return this.#arm(st > 0 ? Math.min(this.#tick, st - quiet) : this.#tick);
    }
    const ka = this.#fp.keepAliveTimeout;
    if (ka === 0) return this.#arm(this.#tick);
    const limit = ka + 1_000;
    if (quiet < limit) return this.#arm(Math.min(this.#tick, limit - quiet));
    if (this.#buf !== undefined && this.#buf.length > 0) return this.#handOver();
    socket.destroy();
  };

  #onDrain = (): void => {
    if (!this.#draining) return;
    this.#draining = false;
    this.socket.resume();
    this.#pump();
  };

  /**
   * Answers the complete plain requests in the buffer, in order, in batches
   * (one cork each) while less than FRONT_WRITE_BUDGET is unflushed; then
   * waits for the drain, for more bytes, or for a lookup, or hands over.
   */
  #pump(): void {
    for (;;) {
      if (this.#gone || this.socket.destroyed) return;
      const next = this.#batch();
      // The batch's writes are uncorked here, before any hand-over: node:http
      // may destroy the socket at once (a 400), which would drop them.
      if (next === HANDOVER) return this.#handOver();
      if (next === WAIT) return;
      const socket = this.socket;
      if (socket.writableLength > FRONT_WRITE_BUDGET) {
        // No more requests read until the client took the lot ('drain').
        this.#draining = true;
        socket.pause();
        return;
      }
      if (next === MORE) continue;
      break;
    }
    this.#idle();
  }

  /** One batch of answers under one cork: MORE (the budget stopped it), DONE (no complete request left), WAIT or HANDOVER. */
  #batch(): number {
    const socket = this.socket;
    const buf = this.#buf;
    let at = 0;
    let corked = false;
    let next = DONE;
    try {
      while (buf !== undefined && at < buf.length) {
        // A failed read destroyed it: the rest is never answered.
        if (socket.destroyed) return WAIT;
        const p = parsePlain(buf, at, this.#fp.headMax);
        if (p === INCOMPLETE) break;
        if (p === OTHER) {
          next = HANDOVER;
          break;
        }
        this.#clearPartial();
        const l = this.#fp.lookup(p.method, p.url);
        if (!('kind' in l)) {
          // A miss: the cache opens the file (threadpool); the connection waits.
          this.#wait(l.then((l2) => this.#answer(p, l2)), p.end - at);
          next = WAIT;
          break;
        }
        if (!corked) {
          socket.cork();
          corked = true;
        }
        const r = this.#answer(p, l);
        if (r === false) {
          next = HANDOVER;
          break;
        }
        if (r !== true) {
          this.#wait(r, p.end - at);
          next = WAIT;
          break;
        }
        at = p.end;
        if (socket.writableLength > FRONT_WRITE_BUDGET) {
          next = MORE;
          break;
        }
      }
      this.#buf = buf === undefined || at >= buf.length ? undefined : buf.subarray(at);
    } finally {
      if (corked) socket.uncork();
    }
    return next;
  }

  /** No complete request left: a partial one gets PARTIAL_MS to complete; after a FIN the connection ends; a server shutting down closes it. */
  #idle(): void {
    const socket = this.socket;
    if (this.#buf !== undefined && this.#buf.length > 0) {
      if (this.#ended) return this.#handOver();
      // Not refreshed by more bytes of it: a client sending its head a byte
      // at a time goes to node:http (and its headersTimeout) within
      // PARTIAL_MS, or after PARTIAL_READS reads (each re-parses the head).
      if (++this.#partialReads > PARTIAL_READS) return this.#handOver();
      this.#partial ??= setTimeout(() => this.#handOver(), PARTIAL_MS).unref();
      return;
    }
    this.#clearPartial();
    // After the responses already queued.
    if (this.#ended) socket.end();
    else if (this.#fp.draining && socket.writableLength === 0) {
      this.#markFlushed();
      socket.destroy();
    }
  }

  #clearPartial(): void {
    this.#partialReads = 0;
    if (this.#partial === undefined) return;
    clearTimeout(this.#partial);
    this.#partial = undefined;
  }

  /**
   * Waits for a lookup or a read; the socket is not read meanwhile. The
   * request is the first `length` bytes of the buffer: dropped once
   * answered, handed to node:http with the rest otherwise.
   */
  #wait(p: Promise<boolean>, length: number): void {
    this.#busy = true;
    this.socket.pause();
    p.then(
      (answered) => {
        this.#busy = false;
        if (this.#gone) return;
        this.#active();
        if (!answered) return this.#handOver();
        const b = this.#buf!;
        this.#buf = b.length > length ? b.subarray(length) : undefined;
        this.socket.resume();
        this.#pump();
      },
      () => {
        this.#busy = false;
        this.socket.destroy();
      },
    );
  }

  /**
   * Answers one request from its lookup: true once written, false when it
   * is not one this path answers (nothing written: the caller hands over),
   * or a promise of either while its body is read.
   */
  #answer(p: Plain, l: Lookup): boolean | Promise<boolean> {
    if (this.#gone || this.socket.destroyed) {
      StaticRoot.discard(l);
      return true;
    }
    const head = this.#fp.headFor(l, p.method);
    if (head === undefined) {
      StaticRoot.discard(l);
      return false;
    }
    const file = (l as { file: OpenedFile & { body?: Buffer } }).file;
    const size = file.stat.size;
    const ctx = this.#fp.hooks.onRequest?.();
    if (p.method === 'HEAD' || size === 0) {
      file.close();
      this.#write(head + this.#fp.headTail(), undefined, ctx, { method: p.method, url: p.url, status: 200, bytes: 0 });
      return true;
    }
    let got: BufferedBody | Promise<BufferedBody>;
    try {
      got = bufferedBody(file, { status: 200, contentLength: size, parts: [{ start: 0, length: size }] });
    } catch (err) {
      return this.#failed(file, p, ctx, err as Error);
    }
    if ('buf' in got) {
      const r: FrontResponse = { method: p.method, url: p.url, status: 200, bytes: size, transfer: 'buffered' };
      const whole = got.pooled === undefined && got.buf === file.body ? this.#fp.wholeResponse(head, this.#fp.headTail(), got.buf) : undefined;
      if (whole !== undefined) this.#writeWhole(whole, ctx, r);
      else this.#write(head + this.#fp.headTail(), got, ctx, r);
      file.close();
      return true;
    }
    return got.then(
      (g) => {
        file.close();
        if (this.#gone || this.socket.destroyed) {
          if (g.pooled) releasePooled(g.pooled);
          this.#fp.hooks.onResponse?.(ctx, { method: p.method, url: p.url, status: 200, bytes: 0, error: Object.assign(new Error('connection closed before the response started'), { code: 'ZCOPY_ERR_SOCKET_CLOSED' }) });
          return true;
        }
        // The body came after a wait: the Date is taken now.
        this.#write(head + this.#fp.headTail(), g, ctx, { method: p.method, url: p.url, status: 200, bytes: size, transfer: 'buffered' });
        return true;
      },
      (err: unknown) => this.#failed(file, p, ctx, err as Error),
    );
  }

  /** A read failed (I/O error, file truncated under it): the connection cannot be trusted, as on the general path. */
  #failed(file: OpenedFile, p: Plain, ctx: unknown, err: Error): true {
    file.close();
    this.#fp.hooks.onResponse?.(ctx, { method: p.method, url: p.url, status: 200, bytes: 0, error: err });
    this.#markFlushed();
    this.socket.destroy();
    return true;
  }

  /**
   * Writes one response; once its last byte is in the kernel (or the
   * connection failed first) it is logged, and its pooled buffer goes back
   * to the pool (after a failure a write may still hold it: left to the GC).
   */
  #write(head: string, got: BufferedBody | undefined, ctx: unknown, r: FrontResponse): void {
    const socket = this.socket;
    const done = this.#done(ctx, r, got?.pooled);
    if (got === undefined) socket.write(head, 'latin1', done);
    else {
      socket.cork();
      socket.write(head, 'latin1');
      socket.write(got.buf, done);
      socket.uncork();
    }
  }

  /** A whole response (H1Front.wholeResponse) in one write. */
  #writeWhole(buf: Buffer, ctx: unknown, r: FrontResponse): void {
    this.#fp.counts.prebuilt++;
    this.socket.write(buf, this.#done(ctx, r, undefined));
  }

  /** The write callback of a response: logs it, returns its pooled buffer. */
  #done(ctx: unknown, r: FrontResponse, pooled: Buffer | undefined): (err?: Error | null) => void {
    this.#fp.counts.answered++;
    const socket = this.socket;
    const seq = ++this.#seq;
    return (err?: Error | null): void => {
      if (!this.#gone) this.#active();
      // node calls back without an error for a write the destroy cancelled;
      // one seen in the kernel before the destroy succeeded.
      if (err || (socket.destroyed && seq > this.#flushedSeq)) {
        r.error = this.#timedOut
          ? Object.assign(new Error(`no byte accepted by the client for ${this.#fp.sendTimeout} ms`), { code: 'ZCOPY_ERR_TIMEOUT' })
          : Object.assign(new Error('connection closed before the response was sent'), { code: 'ZCOPY_ERR_SOCKET_CLOSED' });
      } else if (pooled !== undefined) releasePooled(pooled);
      this.#fp.hooks.onResponse?.(ctx, r);
    };
  }

  /** node:http reads this connection from now on. */
  #handOver(): void {
    if (this.#gone) return;
    this.#gone = true;
    const socket = this.socket;
    for (const [event, fn] of this.#listeners) socket.removeListener(event, fn);
    socket.setTimeout(0);
    this.#clearPartial();
    // node:http may answer a 400 and destroy the socket in this tick.
    this.#markFlushed();
    // Responses written here and still in the socket's buffer go out
    // before node:http's (one stream); their write callbacks log them.
    let rest = this.#buf;
    this.#buf = undefined;
    // Bytes read while paused, after those.
    for (let c: Buffer | null; (c = socket.read() as Buffer | null) !== null; ) rest = rest === undefined ? c : Buffer.concat([rest, c]);
    this.#fp.handOver(this, rest, this.#ended);
  }

  /**
   * Shutdown: closes the connection if nothing is under way on it. One that
   * has not read a byte yet is given one sweep (zcopy serve sweeps every
   * 50 ms): a client's first request may be in the kernel already, behind
   * the signal in the same loop iteration, and is then answered.
   */
  closeIfIdle(): void {
    if (this.#gone || this.#busy || this.#draining) return;
    if (this.#buf !== undefined && this.#buf.length > 0) return;
    if (this.socket.writableLength > 0) return;
    if (this.socket.bytesRead === 0 && !this.#graced) {
      this.#graced = true;
      return;
    }
    this.#markFlushed();
    this.socket.destroy();
  }
}
