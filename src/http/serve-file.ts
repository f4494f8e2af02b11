/**
 * serveFile: one file as an HTTP response, with the semantics of `send`
 * (conditionals, ranges, caching headers) and the body sent zero-copy.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { ZcopyError, type Mechanism } from '../index.js';
import { invalidArgType, invalidArgValue, outOfRange } from './validate.js';
import { canSendSmall, copiedAnyway, DEFAULT_SEND_TIMEOUT, DEFAULT_SENDFILE_THRESHOLD, responseTurn, sendBody, sendWholeSmall, type BodyFile, type BodyPart, type BodyPlan } from './body.js';
import { evaluatePreconditions, ifRangeAllows, type Validators } from './conditional.js';
import { appendVary, cacheControlFor, contentTypeFor, etagFor, httpDate, parseDuration } from './headers.js';
import { isOpened, openChecked, statusForError, type OpenedFile } from './open.js';
import { DEFAULT_MAX_RANGES, parseRange } from './range.js';
import { REPRESENTATION_HEADERS, sendError, type AnyRequest, type AnyResponse, type ServeResult } from './response.js';

export { DEFAULT_SEND_TIMEOUT, DEFAULT_SENDFILE_THRESHOLD };

/** Options shared by {@link serveFile} and `serveStatic`. */
export interface ServeFileOptions {
  /**
   * `Cache-Control: max-age`. A duration string is the clear spelling:
   * `'30s'`, `'10m'`, `'1h'`, `'7d'`, `'1y'` (capped at one year). A
   * **number is milliseconds**, as in serve-static and Express:
   * `maxAge: 3600` is 3.6 s and sends `max-age=3`; one hour is `3_600_000`
   * or `'1h'`. (The CLI's `--max-age 3600` is seconds: a command line
   * follows nginx and `serve`.) Default 0. serve-static's spelling `maxage`
   * is accepted too.
   */
  maxAge?: number | string;
  /** serve-static's spelling of {@link ServeFileOptions.maxAge}, accepted as it. */
  maxage?: number | string;
  /** Add `immutable` to Cache-Control (use with fingerprinted names). Default false. */
  immutable?: boolean;
  /** Send `Cache-Control` at all. Default true. */
  cacheControl?: boolean;
  /** Send a strong `ETag` (inode, size, mtime of the fd's fstat). Default true. */
  etag?: boolean;
  /** Send `Last-Modified`. Default true. */
  lastModified?: boolean;
  /** Honour `Range` and send `Accept-Ranges: bytes`. Default true. */
  acceptRanges?: boolean;
  /** Most parts in a multipart/byteranges response, after coalescing; more and the Range header is ignored (200). Default 50. */
  maxRanges?: number;
  /** Bodies shorter than this go out as one buffered write of head + body. Default 256 KiB (`DEFAULT_SENDFILE_THRESHOLD`, measured). */
  sendfileThreshold?: number;
  /**
   * How the body's file bytes move (zcopy's `mechanism`): `'auto'` (default)
   * lets the core choose per transport on its measured evidence.
   */
  mechanism?: Mechanism;
  /**
   * Destroy the connection (HTTP/2: reset the stream) when the client
   * accepts no byte of the response for this long while it is being sent:
   * ms, or a duration string (`'30s'`, `'5m'`); `0` disables. Default 60 s
   * (`DEFAULT_SEND_TIMEOUT`, nginx's `send_timeout`). The result's `error`
   * then has code `ZCOPY_ERR_TIMEOUT`.
   */
  sendTimeout?: number | string;
  /**
   * Called before the default headers are set (they are only set when absent,
   * so the hook can override any of them), with the path and the fstat of the
   * fd that will be sent.
   */
  headers?: (res: AnyResponse, path: string, stat: Stats) => void;
  /** serve-static's name of {@link ServeFileOptions.headers} (same arguments), accepted as it. */
  setHeaders?: (res: AnyResponse, path: string, stat: Stats) => void;
}

/** @internal The option names serveFile knows (aliases included), for the unknown-option warning. */
export const SERVE_FILE_KEYS: readonly string[] = [
  'maxAge', 'immutable', 'cacheControl', 'etag', 'lastModified', 'acceptRanges', 'maxRanges', 'sendfileThreshold', 'mechanism', 'sendTimeout', 'headers',
];

/** Spellings users bring from serve-static / send, mapped to zcopy's names. */
const ALIASES: Record<string, string> = { maxage: 'maxAge', setHeaders: 'headers' };

/** Options of serve-static / send that zcopy does not have, with what to do instead. */
const UNSUPPORTED: Record<string, string> = {
  extensions: "zcopy does not try file extensions (serve-static's extensions fallback): request the full name, or rewrite req.url before the handler",
  hidden: "send's old option; use dotfiles: 'allow' | 'deny' | 'ignore'",
  root: 'give the root as the first argument of serveStatic (serveFile takes an absolute path)',
  start: 'ranges come from the Range header',
  end: 'ranges come from the Range header',
};

/** Options already warned about in this process ("serveStatic:maxagee"): one warning each. */
const warned = new Set<string>();

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

/** The known name closest to `name` (case-insensitive edit distance). */
function closest(name: string, known: readonly string[]): string {
  const n = name.toLowerCase();
  let best = known[0]!;
  let bestD = Infinity;
  for (const k of known) {
    const d = editDistance(n, k.toLowerCase());
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best;
}

/**
 * @internal Maps serve-static's spellings to zcopy's (`maxage` -> `maxAge`,
 * `setHeaders` -> `headers`) and emits one process warning (code
 * `ZCOPY_UNKNOWN_OPTION`) per option name it does not know, naming the
 * closest known one: a misspelt option would otherwise be silently ignored.
 * Returns a new object; `o` is not modified.
 */
export function normalizeOptions<T extends object>(o: T, fn: string, known: readonly string[]): T {
  let out: Record<string, unknown> | undefined;
  for (const key of Object.keys(o)) {
    if (known.includes(key)) continue;
    const v = (o as Record<string, unknown>)[key];
    const alias = ALIASES[key];
    if (alias !== undefined) {
      const copy = (out ??= { ...(o as Record<string, unknown>) });
      delete copy[key];
      if (v === undefined) continue;
      const own = (o as Record<string, unknown>)[alias];
      if (own !== undefined && own !== v) throw invalidArgValue(`options.${key}`, v, `is serve-static's spelling of options.${alias}, which is set too: give one of them`);
      copy[alias] = v;
      continue;
    }
    if (warned.has(`${fn}:${key}`)) continue;
    warned.add(`${fn}:${key}`);
    const why = UNSUPPORTED[key] ?? `did you mean '${closest(key, [...known, ...Object.keys(ALIASES)])}'?`;
    process.emitWarning(`${fn}: unknown option '${key}' is ignored (${why})`, { code: 'ZCOPY_UNKNOWN_OPTION' });
  }
  return (out ?? o) as T;
}

/** Validated, defaulted options. */
export interface ResolvedServeFileOptions {
  maxAge: number;
  immutable: boolean;
  cacheControl: boolean;
  etag: boolean;
  lastModified: boolean;
  acceptRanges: boolean;
  maxRanges: number;
  sendfileThreshold: number;
  mechanism: Mechanism;
  sendTimeout: number;
  headers?: (res: AnyResponse, path: string, stat: Stats) => void;
}

const MECHANISMS: readonly Mechanism[] = ['auto', 'sendfile', 'splice', 'copy'];

function mechanismOf(v: unknown, name: string): Mechanism {
  if (v === undefined) return 'auto';
  if (typeof v !== 'string' || !(MECHANISMS as readonly string[]).includes(v)) throw invalidArgValue(name, v, "must be 'auto', 'sendfile', 'splice' or 'copy'");
  return v as Mechanism;
}

function bool(name: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw invalidArgType(name, 'of type boolean', v);
  return v;
}

/** @internal Validates ServeFileOptions (synchronously, before any I/O). */
export function resolveServeFileOptions(o: ServeFileOptions | undefined, prefix = 'options'): ResolvedServeFileOptions {
  if (o === undefined) o = {};
  if (typeof o !== 'object' || o === null) throw invalidArgType(prefix, 'of type object', o);
  let maxAge = 0;
  if (o.maxAge !== undefined) {
    if (typeof o.maxAge !== 'number' && typeof o.maxAge !== 'string') throw invalidArgType(`${prefix}.maxAge`, 'of type number or string', o.maxAge);
    const d = parseDuration(o.maxAge);
    if (d === undefined) throw invalidArgValue(`${prefix}.maxAge`, o.maxAge, "must be a duration in ms or a string like '1h'");
    maxAge = d;
  }
  let sendTimeout = DEFAULT_SEND_TIMEOUT;
  if (o.sendTimeout !== undefined) {
    if (typeof o.sendTimeout !== 'number' && typeof o.sendTimeout !== 'string') throw invalidArgType(`${prefix}.sendTimeout`, 'of type number or string', o.sendTimeout);
    const d = parseDuration(o.sendTimeout);
    // setTimeout's ceiling: longer would fire at once.
    if (d === undefined || d > 2_147_483_647) throw invalidArgValue(`${prefix}.sendTimeout`, o.sendTimeout, "must be a duration in ms (0 disables) or a string like '30s'");
    sendTimeout = Math.round(d);
  }
  const int = (name: keyof ServeFileOptions, dflt: number, min: number): number => {
    const v = o![name];
    if (v === undefined) return dflt;
    if (typeof v !== 'number') throw invalidArgType(`${prefix}.${name}`, 'of type number', v);
    if (!Number.isSafeInteger(v) || v < min) throw outOfRange(`${prefix}.${name}`, `an integer >= ${min}`, v);
    return v;
  };
  if (o.headers !== undefined && typeof o.headers !== 'function') throw invalidArgType(`${prefix}.headers`, 'of type function', o.headers);
  return {
    maxAge,
    immutable: bool(`${prefix}.immutable`, o.immutable, false),
    cacheControl: bool(`${prefix}.cacheControl`, o.cacheControl, true),
    etag: bool(`${prefix}.etag`, o.etag, true),
    lastModified: bool(`${prefix}.lastModified`, o.lastModified, true),
    acceptRanges: bool(`${prefix}.acceptRanges`, o.acceptRanges, true),
    maxRanges: int('maxRanges', DEFAULT_MAX_RANGES, 1),
    sendfileThreshold: int('sendfileThreshold', DEFAULT_SENDFILE_THRESHOLD, 0),
    mechanism: mechanismOf(o.mechanism, `${prefix}.mechanism`),
    sendTimeout,
    headers: o.headers,
  };
}

/** How the selected representation is encoded (precompressed variants). */
export interface Representation {
  /** Name used for Content-Type (the uncompressed file's name). */
  typeName: string;
  /** `br` / `gzip` for a precompressed variant. */
  encoding?: string;
  /** Add `Vary: Accept-Encoding` (precompressed serving is on). */
  vary?: boolean;
}

function singleHeader(res: AnyResponse, name: string): string | undefined {
  const v = res.getHeader(name);
  if (v === undefined) return undefined;
  return Array.isArray(v) ? v[0] : String(v);
}

/**
 * @internal Responds with an opened regular file. Its `close` (idempotent)
 * is called as soon as the body needs no more of it; the caller still closes
 * it after the returned promise settles (for the paths that never get there).
 */
export async function respondWithFile(req: AnyRequest, res: AnyResponse, file: BodyFile & { stat: Stats; path: string }, o: ResolvedServeFileOptions, rep: Representation): Promise<ServeResult> {
  const { stat } = file;
  const method = req.method ?? 'GET';
  if (o.headers === undefined) {
    const fast = respondWhole(req, res, file, o, rep);
    if (fast !== undefined) return fast;
  }

  if (o.headers) o.headers(res, file.path, stat);
  if (!res.hasHeader('Content-Type')) res.setHeader('Content-Type', contentTypeFor(rep.typeName));
  if (o.acceptRanges && !res.hasHeader('Accept-Ranges')) res.setHeader('Accept-Ranges', 'bytes');
  if (o.cacheControl && !res.hasHeader('Cache-Control')) res.setHeader('Cache-Control', cacheControlFor(o.maxAge, o.immutable));
  if (o.lastModified && !res.hasHeader('Last-Modified')) res.setHeader('Last-Modified', httpDate(stat.mtimeMs));
  if (o.etag && !res.hasHeader('ETag')) res.setHeader('ETag', etagFor(stat));
  if (rep.encoding) res.setHeader('Content-Encoding', rep.encoding);
  if (rep.vary) res.setHeader('Vary', appendVary(res.getHeader('Vary'), 'Accept-Encoding'));

  const lm = singleHeader(res, 'Last-Modified');
  const lmMs = lm !== undefined ? Date.parse(lm) : NaN;
  const validators: Validators = { etag: singleHeader(res, 'ETag'), lastModified: Number.isNaN(lmMs) ? undefined : lmMs };

  const pre = evaluatePreconditions(req.headers, method, validators);
  if (pre === 412) return { ...sendError(req, res, 412), path: file.path };
  if (pre === 304) {
    // A 304 carries the validators and caching fields, not the payload's.
    for (const h of ['content-type', 'content-length', 'content-encoding', 'content-range', 'accept-ranges']) res.removeHeader(h);
    res.statusCode = 304;
    res.end();
    return { status: 304, bytes: 0, bytesZeroCopy: 0, path: file.path };
  }

  const size = stat.size;
  let plan: BodyPlan = { status: 200, contentLength: size, parts: [{ start: 0, length: size }] };
  // Range is defined for GET only (RFC 9110 14.2); HEAD answers as a plain GET would.
  const rangeHeader = req.headers.range;
  if (o.acceptRanges && method === 'GET' && typeof rangeHeader === 'string' && ifRangeAllows(req.headers, validators)) {
    const r = parseRange(rangeHeader, size, o.maxRanges);
    if (r.kind === 'unsatisfiable') {
      return { ...sendError(req, res, 416, { 'Content-Range': `bytes */${size}` }), path: file.path };
    }
    if (r.kind === 'ranges') {
      if (r.ranges.length === 1) {
        const { start, end } = r.ranges[0]!;
        res.setHeader('Content-Range', `bytes ${start}-${end}/${size}`);
        plan = { status: 206, contentLength: end - start + 1, parts: [{ start, length: end - start + 1 }] };
      } else {
        plan = multipartPlan(res, r.ranges, size);
      }
    }
  }

  const out = await sendBody(req, res, file, plan, { threshold: o.sendfileThreshold, mechanism: o.mechanism, sendTimeout: o.sendTimeout });
  const result: ServeResult = { status: plan.status, bytes: out.bytes, bytesZeroCopy: out.bytesZeroCopy, path: file.path };
  if (out.transfer) result.transfer = out.transfer;
  if (out.error) result.error = out.error;
  return result;
}

/** The headers {@link respondWhole} sets: a response that has one of them already takes the general path (only-if-absent semantics). */
const WHOLE_HEADERS = new Set(['content-type', 'accept-ranges', 'cache-control', 'last-modified', 'etag', 'content-encoding', 'vary', 'content-length', 'content-range']);

/**
 * The common case in one step: a GET or HEAD of a whole small file with no
 * Range and no precondition, on a response nothing else set our headers
 * on, and no `headers` hook. The same status and headers as the general
 * path (same order), given to one writeHead instead of a setHeader and a
 * getHeader each, then the body in one write. Undefined: not that case.
 */
function respondWhole(req: AnyRequest, res: AnyResponse, file: BodyFile & { stat: Stats; path: string }, o: ResolvedServeFileOptions, rep: Representation): Promise<ServeResult> | undefined {
  const h = req.headers;
  if (h.range !== undefined || h['if-match'] !== undefined || h['if-none-match'] !== undefined || h['if-modified-since'] !== undefined || h['if-unmodified-since'] !== undefined) return undefined;
  const stat = file.stat;
  const size = stat.size;
  // A body at or above the threshold goes zero-copy, except where it would
  // be copied anyway (copiedAnyway): then one held in the body cache, or
  // read once to be kept there, is sent from memory.
  const big = size >= o.sendfileThreshold && req.method !== 'HEAD';
  if (big && (file.body === undefined && file.claimBody === undefined || !copiedAnyway(res, o.mechanism))) return undefined;
  if (!canSendSmall(res)) return undefined;
  const names = res.getHeaderNames();
  for (let i = 0; i < names.length; i++) if (WHOLE_HEADERS.has(names[i]!)) return undefined;
  if (big && file.body === undefined && !file.claimBody!()) return undefined;
  const head = wholeFileHead(o, rep, stat);
  return sendWholeSmall(req, res, file, size, head, { threshold: o.sendfileThreshold, mechanism: o.mechanism, sendTimeout: o.sendTimeout }).then((out) => {
    const result: ServeResult = { status: 200, bytes: out.bytes, bytesZeroCopy: 0, path: file.path };
    if (out.transfer) result.transfer = out.transfer;
    if (out.error) result.error = out.error;
    return result;
  });
}

/**
 * @internal The headers of a 200 for a whole file, in the order the general
 * path sets them (name, value, name, value...; Content-Length last): what
 * {@link respondWhole} and the HTTP/1.1 front (h1-front.ts) send.
 */
export function wholeFileHead(o: ResolvedServeFileOptions, rep: Representation, stat: Stats): Array<string | number> {
  const head: Array<string | number> = ['Content-Type', contentTypeFor(rep.typeName)];
  if (o.acceptRanges) head.push('Accept-Ranges', 'bytes');
  if (o.cacheControl) head.push('Cache-Control', cacheControlFor(o.maxAge, o.immutable));
  if (o.lastModified) head.push('Last-Modified', httpDate(stat.mtimeMs));
  if (o.etag) head.push('ETag', etagFor(stat));
  if (rep.encoding) head.push('Content-Encoding', rep.encoding);
  if (rep.vary) head.push('Vary', 'Accept-Encoding');
  head.push('Content-Length', stat.size);
  return head;
}

/** A multipart/byteranges body: part headers as buffers, file ranges between. */
function multipartPlan(res: AnyResponse, ranges: Array<{ start: number; end: number }>, size: number): BodyPlan {
  const boundary = randomBytes(12).toString('hex');
  const type = singleHeader(res, 'Content-Type') ?? 'application/octet-stream';
  const parts: BodyPart[] = [];
  let total = 0;
  for (let i = 0; i < ranges.length; i++) {
    const { start, end } = ranges[i]!;
    // The CRLF before each delimiter belongs to it (RFC 2046 5.1.1).
    const head = Buffer.from(`${i === 0 ? '' : '\r\n'}--${boundary}\r\nContent-Type: ${type}\r\nContent-Range: bytes ${start}-${end}/${size}\r\n\r\n`, 'latin1');
    parts.push({ head, start, length: end - start + 1 });
    total += head.length + end - start + 1;
  }
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1');
  total += tail.length;
  res.setHeader('Content-Type', `multipart/byteranges; boundary=${boundary}`);
  res.removeHeader('Content-Range');
  return { status: 206, contentLength: total, parts, tail };
}

/**
 * Serves one file as the response to `req`: GET and HEAD (others get 405
 * with `Allow`), conditionals (304/412), single and multipart ranges (206,
 * 416), `ETag` / `Last-Modified` / `Cache-Control` / `Content-Length`, and
 * the body zero-copy (sendfile) on plain HTTP/1.x, through the portable path
 * on HTTPS, and streamed through the response (with backpressure) on HTTP/2.
 * A pipelined request opens nothing until its response is the one being
 * written on the connection.
 *
 * The file is opened once and every header comes from an fstat of that fd.
 * The promise resolves once the response is done (never rejects for a
 * client that went away or a file truncated mid-send: the connection is
 * destroyed and `result.error` says why). A path must be absolute; a
 * `FileHandle` stays open (the caller owns it).
 *
 * @example
 * ```ts
 * import http from 'node:http';
 * import { serveFile } from 'zcopy/http';
 *
 * http.createServer((req, res) => {
 *   void serveFile(req, res, '/srv/releases/app.tar.gz', { maxAge: '1h' });
 * }).listen(8080, '127.0.0.1');
 * ```
 */
export function serveFile(req: AnyRequest, res: AnyResponse, file: string | FileHandle, options?: ServeFileOptions): Promise<ServeResult> {
  if (req === null || typeof req !== 'object' || typeof (req as { headers?: unknown }).headers !== 'object') throw invalidArgType('req', 'an http.IncomingMessage or Http2ServerRequest', req);
  if (res === null || typeof res !== 'object' || typeof (res as { setHeader?: unknown }).setHeader !== 'function') throw invalidArgType('res', 'an http.ServerResponse or Http2ServerResponse', res);
  if (typeof file === 'string') {
    if (!isAbsolute(file)) throw invalidArgValue('file', file, 'must be an absolute path (use serveStatic for request paths)');
    if (file.includes('\0')) throw invalidArgValue('file', file, 'must not contain null bytes');
  } else if (file === null || typeof file !== 'object' || typeof (file as FileHandle).fd !== 'number' || typeof (file as FileHandle).stat !== 'function') {
    throw invalidArgType('file', 'of type string or an instance of FileHandle', file);
  }
  if (options !== undefined && (typeof options !== 'object' || options === null)) throw invalidArgType('options', 'of type object', options);
  const o = resolveServeFileOptions(options === undefined ? undefined : normalizeOptions(options, 'serveFile', SERVE_FILE_KEYS));
  return serveFileAsync(req, res, file, o);
}

async function serveFileAsync(req: AnyRequest, res: AnyResponse, file: string | FileHandle, o: ResolvedServeFileOptions): Promise<ServeResult> {
  const method = req.method ?? 'GET';
  if (method !== 'GET' && method !== 'HEAD') return sendError(req, res, 405, { Allow: 'GET, HEAD' });
  const turn = responseTurn(req, res);
  if (turn !== true && !(await turn)) return notServed();
  let opened: OpenedFile;
  if (typeof file === 'string') {
    const r = await openChecked(file, undefined);
    if (!isOpened(r)) return sendError(req, res, r.status);
    opened = r;
  } else {
    let stat: Stats;
    try {
      stat = await file.stat();
    } catch (err) {
      return sendError(req, res, statusForError(err).status);
    }
    opened = { fd: file.fd, stat, path: `fd:${file.fd}`, close: () => {} };
  }
  try {
    if (!opened.stat.isFile()) return sendError(req, res, 404);
    return await respondWithFile(req, res, opened, o, { typeName: opened.path });
  } catch (err) {
    // A throwing headers() hook or a bug: answer 500 rather than reject
    // (callers often do `void serveFile(...)` in a request handler).
    return { ...sendError(req, res, 500), error: err as Error };
  } finally {
    opened.close();
  }
}

/**
 * @internal The result for a pipelined request whose connection closed
 * before its turn: nothing was opened or sent. 499 is nginx's "client
 * closed request" (logged, never sent).
 */
export function notServed(): ServeResult {
  return { status: 499, bytes: 0, bytesZeroCopy: 0, error: new ZcopyError('ZCOPY_ERR_SOCKET_CLOSED', 'connection closed before the response started', { bytesTransferred: 0 }) };
}

export { REPRESENTATION_HEADERS };
