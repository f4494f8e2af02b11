// HTTP test fixtures: servers on port 0 / Unix sockets, a raw client that
// pipelines requests and parses responses byte-exactly, a multipart parser.
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { bodyCacheTuning } from '../src/http/open-file-cache.js';
import { withTimeout } from './helpers.js';

export interface Listening {
  server: net.Server;
  /** http://127.0.0.1:port (TCP only). */
  url: string;
  connect(): net.Socket;
  /** For http.request: { host, port } or { socketPath }. */
  target: { host: string; port: number } | { socketPath: string };
  close(): Promise<void>;
}

let seq = 0;

/** Listens on loopback TCP (port 0) or a fresh Unix socket path. */
export async function listen(server: net.Server, transport: 'tcp' | 'unix' = 'tcp'): Promise<Listening> {
  let socketPath: string | undefined;
  if (transport === 'unix') {
    socketPath = path.join(os.tmpdir(), `zc-http-${process.pid}-${seq++}.sock`);
    fs.rmSync(socketPath, { force: true });
    await new Promise<void>((r) => server.listen(socketPath, r));
  } else {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  }
  const port = transport === 'tcp' ? (server.address() as net.AddressInfo).port : 0;
  return {
    server,
    url: `http://127.0.0.1:${port}`,
    connect: () => (socketPath ? net.connect(socketPath) : net.connect(port, '127.0.0.1')),
    target: socketPath ? { socketPath } : { host: '127.0.0.1', port },
    async close() {
      (server as http.Server).closeAllConnections?.();
      await new Promise<void>((r) => server.close(() => r()));
      if (socketPath) fs.rmSync(socketPath, { force: true });
    },
  };
}

export interface RawResponse {
  status: number;
  reason: string;
  /** Lower-cased names; repeated fields joined with ', '. */
  headers: Record<string, string>;
  body: Buffer;
}

/**
 * Parses as many complete responses as `buf` holds. `methods[i]` is the
 * method of the i-th request (HEAD responses have no body). Returns the
 * responses and the bytes consumed.
 */
export function parseResponses(buf: Buffer, methods: string[]): { responses: RawResponse[]; used: number } {
  const responses: RawResponse[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const end = buf.indexOf('\r\n\r\n', pos, 'latin1');
    if (end < 0) break;
    const head = buf.subarray(pos, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3}) ?(.*)$/.exec(head[0]!);
    if (!m) throw new Error(`bad status line: ${JSON.stringify(head[0])}`);
    const headers: Record<string, string> = {};
    for (const line of head.slice(1)) {
      const c = line.indexOf(':');
      const k = line.slice(0, c).trim().toLowerCase();
      const v = line.slice(c + 1).trim();
      headers[k] = headers[k] !== undefined ? `${headers[k]}, ${v}` : v;
    }
    const status = Number(m[1]);
    const method = methods[responses.length] ?? 'GET';
    if (headers['transfer-encoding']) throw new Error('unexpected chunked response');
    const len = method === 'HEAD' || status === 304 || status === 204 || status < 200 ? 0 : Number(headers['content-length'] ?? NaN);
    if (Number.isNaN(len)) throw new Error(`response without Content-Length: ${head[0]}`);
    if (end + 4 + len > buf.length) break;
    responses.push({ status, reason: m[2]!, headers, body: buf.subarray(end + 4, end + 4 + len) });
    pos = end + 4 + len;
  }
  return { responses, used: pos };
}

export interface RawExchange {
  responses: RawResponse[];
  /** Bytes received after the last complete response. */
  rest: Buffer;
  /** The server closed the connection. */
  closed: boolean;
}

/**
 * An incremental response parser: feed bytes, get complete responses. Body
 * bytes are gathered per response without re-scanning (big bodies are cheap).
 */
export class ResponseParser {
  readonly responses: RawResponse[] = [];
  #buf: Buffer = Buffer.alloc(0);
  #cur: { status: number; reason: string; headers: Record<string, string>; need: number; parts: Buffer[] } | undefined;
  constructor(readonly methods: string[]) {}

  /** Bytes received after the last complete response (headers or a partial body). */
  get rest(): Buffer {
    return this.#cur ? Buffer.concat([...this.#cur.parts, this.#buf]) : this.#buf;
  }

  push(d: Buffer): void {
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, d]) : d;
    for (;;) {
      if (this.#cur) {
        const take = Math.min(this.#cur.need, this.#buf.length);
        if (take > 0) {
          this.#cur.parts.push(this.#buf.subarray(0, take));
          this.#cur.need -= take;
          this.#buf = this.#buf.subarray(take);
        }
        if (this.#cur.need > 0) return;
        const c = this.#cur;
        this.#cur = undefined;
        this.responses.push({ status: c.status, reason: c.reason, headers: c.headers, body: Buffer.concat(c.parts) });
        continue;
      }
      const end = this.#buf.indexOf('\r\n\r\n', 0, 'latin1');
      if (end < 0) return;
      const head = this.#buf.subarray(0, end).toString('latin1').split('\r\n');
      const m = /^HTTP\/1\.[01] (\d{3}) ?(.*)$/.exec(head[0]!);
      if (!m) throw new Error(`bad status line: ${JSON.stringify(head[0])}`);
      const headers: Record<string, string> = {};
      for (const line of head.slice(1)) {
        const c = line.indexOf(':');
        const k = line.slice(0, c).trim().toLowerCase();
        const v = line.slice(c + 1).trim();
        headers[k] = headers[k] !== undefined ? `${headers[k]}, ${v}` : v;
      }
      const status = Number(m[1]);
      const method = this.methods[this.responses.length] ?? 'GET';
      if (headers['transfer-encoding']) throw new Error('unexpected chunked response');
      const len = method === 'HEAD' || status === 304 || status === 204 || status < 200 ? 0 : Number(headers['content-length'] ?? NaN);
      if (Number.isNaN(len)) throw new Error(`response without Content-Length: ${head[0]}`);
      this.#cur = { status, reason: m[2]!, headers, need: len, parts: [] };
      this.#buf = this.#buf.subarray(end + 4);
    }
  }
}

/**
 * Reads responses from `sock` until `expect` have parsed or the server
 * closes. Listeners attach now; the caller may pause/resume the socket.
 * `received()` tells how many bytes arrived so far.
 */
export function collectResponses(sock: net.Socket, methods: string[], expect: number, ms = 30_000): { done: Promise<RawExchange>; received(): number } {
  let got = 0;
  const parser = new ResponseParser(methods);
  const done = withTimeout(
    new Promise<RawExchange>((resolve, reject) => {
      let finished = false;
      const finish = (closed: boolean): void => {
        if (finished) return;
        if (!closed && parser.responses.length < expect) return;
        finished = true;
        resolve({ responses: parser.responses, rest: parser.rest, closed });
      };
      sock.on('data', (d: Buffer) => {
        got += d.length;
        try {
          parser.push(d);
        } catch (err) {
          finished = true;
          reject(err);
          return;
        }
        finish(false);
      });
      sock.on('close', () => finish(true));
      sock.on('error', () => {});
    }),
    ms,
    `${expect} responses`,
  );
  return { done, received: () => got };
}

/**
 * Writes `requests` (raw HTTP) on one connection, all at once (pipelined),
 * and reads until `expect` responses parsed or the server closes.
 */
export async function rawExchange(connect: () => net.Socket, requests: string | Buffer, methods: string[], expect: number, ms = 30_000): Promise<RawExchange> {
  const sock = connect();
  const c = collectResponses(sock, methods, expect, ms);
  sock.write(requests);
  try {
    return await c.done;
  } finally {
    sock.destroy();
  }
}

/** A GET/HEAD request in raw HTTP/1.1. */
export function req(method: string, target: string, headers: Record<string, string> = {}): string {
  let s = `${method} ${target} HTTP/1.1\r\nHost: localhost\r\n`;
  for (const [k, v] of Object.entries(headers)) s += `${k}: ${v}\r\n`;
  return s + '\r\n';
}

export interface Part {
  headers: Record<string, string>;
  body: Buffer;
}

/** Parses a multipart/byteranges body strictly (RFC 2046 delimiters). */
export function parseMultipart(body: Buffer, contentType: string): Part[] {
  const m = /boundary=([^;]+)/.exec(contentType);
  if (!m) throw new Error(`no boundary in ${contentType}`);
  const delim = Buffer.from(`--${m[1]}`);
  const parts: Part[] = [];
  let pos = body.indexOf(delim);
  if (pos !== 0) throw new Error('body does not start with the boundary');
  for (;;) {
    pos += delim.length;
    if (body.subarray(pos, pos + 2).toString() === '--') {
      if (body.subarray(pos + 2).toString() !== '\r\n') throw new Error('junk after the closing boundary');
      return parts;
    }
    if (body.subarray(pos, pos + 2).toString() !== '\r\n') throw new Error('no CRLF after boundary');
    pos += 2;
    const hend = body.indexOf('\r\n\r\n', pos);
    const headers: Record<string, string> = {};
    for (const line of body.subarray(pos, hend).toString('latin1').split('\r\n')) {
      const c = line.indexOf(':');
      headers[line.slice(0, c).trim().toLowerCase()] = line.slice(c + 1).trim();
    }
    const cr = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(headers['content-range'] ?? '');
    if (!cr) throw new Error(`bad part Content-Range ${headers['content-range']}`);
    const len = Number(cr[2]) - Number(cr[1]) + 1;
    const start = hend + 4;
    parts.push({ headers, body: body.subarray(start, start + len) });
    pos = start + len;
    if (body.subarray(pos, pos + 2).toString() !== '\r\n') throw new Error('no CRLF before the next boundary');
    pos += 2;
    if (!body.subarray(pos, pos + delim.length).equals(delim)) throw new Error('expected a boundary');
  }
}

/** An http.request as a promise of { status, headers, body }. */
export function request(
  target: Listening['target'],
  opts: { method?: string; path: string; headers?: Record<string, string> },
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const r = http.request({ ...target, method: opts.method ?? 'GET', path: opts.path, headers: opts.headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      r.on('error', reject);
      r.end();
    }),
    30_000,
    `request ${opts.path}`,
  );
}

/** Polls `cond` every few ms until it holds; fails after `ms`. Never a fixed sleep. */
export async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Lowers the body cache's racily-clean margin to `ms` for every test of the
 * calling file (restored after each), so tests can cache files they just
 * wrote once {@link agedPast} says they are old enough.
 */
export function shortRacyMargin(ms: number): void {
  let saved = bodyCacheTuning.racyMs;
  beforeEach(() => {
    saved = bodyCacheTuning.racyMs;
    bodyCacheTuning.racyMs = ms;
  });
  afterEach(() => {
    bodyCacheTuning.racyMs = saved;
  });
}

/** Waits (bounded) until every file's last change is older than `ms` (the margin of {@link shortRacyMargin}). */
export async function agedPast(ms: number, ...files: string[]): Promise<void> {
  const newest = Math.max(...files.map((f) => fs.statSync(f).ctimeMs));
  const wait = newest + ms + 20 - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, Math.min(wait, 1000)));
  assert.ok(Date.now() - newest > ms, 'the files are old enough');
}
