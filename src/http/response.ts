/**
 * Small responses that are not files: errors, redirects, listings. Their
 * bodies are built in full (they are tiny) and sent with one `end()`.
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import { STATUS_CODES } from 'node:http';
import { escapeHtml } from './headers.js';

/** A request of node:http, node:https or the http2 compat API. */
export type AnyRequest = IncomingMessage | Http2ServerRequest;
/** A response of node:http, node:https or the http2 compat API. */
export type AnyResponse = ServerResponse | Http2ServerResponse;

/** What a call served: the CLI logs it, tests assert on it. */
/** How a response's file bytes went out (see {@link ServeResult.transfer}). */
export type TransferPath = 'sendfile' | 'splice' | 'copy' | 'portable' | 'buffered';

export interface ServeResult {
  /** The status sent (or that would have been, for a connection destroyed early). */
  status: number;
  /** Body bytes that reached the socket (0 for HEAD, 304, or an abort before the body). */
  bytes: number;
  /** Of `bytes`, those that went zero-copy (sendfile/splice). */
  bytesZeroCopy: number;
  /** The file served, when one was. */
  path?: string;
  /**
   * How the file's bytes went out, when some did: `'sendfile'` / `'splice'`
   * (zero-copy), `'copy'` (the native copy loop, auto's choice on loopback
   * TCP), `'portable'` (copied through JavaScript: TLS, HTTP/2, no addon)
   * or `'buffered'` (one write with the head: a small body, or a larger one
   * from the body cache where it would be copied anyway, see serveStatic's
   * `openFileCache`).
   */
  transfer?: TransferPath;
  /** Set when the response could not be completed (the connection was destroyed). */
  error?: Error;
}

/** The headers this module's file responses may set; errors clear them. */
export const REPRESENTATION_HEADERS = ['content-type', 'content-length', 'content-encoding', 'content-range', 'etag', 'last-modified', 'cache-control', 'accept-ranges', 'content-disposition'];

function page(title: string, body: string): string {
  return `<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>${title}</title>\n</head>\n<body>\n${body}\n</body>\n</html>\n`;
}

/** True when the response can still get a status line and headers. */
export function canRespond(res: AnyResponse): boolean {
  return !res.headersSent && !res.writableEnded && !(res as { destroyed?: boolean }).destroyed;
}

/**
 * Sends a small HTML error page. The page says only the status text: it never
 * echoes the request path, so nothing the client sent lands in HTML.
 */
export function sendError(req: AnyRequest, res: AnyResponse, status: number, extra?: Record<string, string>, note?: string): ServeResult {
  if (!canRespond(res)) {
    res.destroy();
    return { status, bytes: 0, bytesZeroCopy: 0 };
  }
  for (const h of REPRESENTATION_HEADERS) res.removeHeader(h);
  const text = STATUS_CODES[status] ?? 'Error';
  const doc = Buffer.from(page(escapeHtml(text), `<pre>${escapeHtml(text)}</pre>${note ? `<p>${escapeHtml(note)}</p>` : ''}`));
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Content-Length', doc.length);
  res.setHeader('Content-Security-Policy', "default-src 'none'");
  res.setHeader('X-Content-Type-Options', 'nosniff');
  if (extra) for (const [k, v] of Object.entries(extra)) res.setHeader(k, v);
  const head = req.method === 'HEAD';
  (res as ServerResponse).end(head ? undefined : doc);
  return { status, bytes: head ? 0 : doc.length, bytesZeroCopy: 0 };
}

/**
 * Re-encodes a still-encoded path for a Location header: leading slashes
 * collapse to one (so `//evil.example/` cannot become a protocol-relative
 * redirect), and bytes outside visible ASCII are percent-encoded.
 */
export function safeLocation(rawPath: string): string {
  const collapsed = rawPath.replace(/^\/+/, '/');
  return collapsed.replace(/[^\x21-\x7e]|[<>"`\\^{}|]/g, (c) =>
    [...Buffer.from(c, 'utf8')].map((b) => '%' + b.toString(16).toUpperCase().padStart(2, '0')).join(''),
  );
}

/** 301 to `location` (already safe for a header), with a short HTML body. */
export function sendRedirect(req: AnyRequest, res: AnyResponse, location: string): ServeResult {
  if (!canRespond(res)) return { status: 301, bytes: 0, bytesZeroCopy: 0 };
  const href = escapeHtml(location);
  const doc = Buffer.from(page('Redirecting', `<pre>Redirecting to <a href="${href}">${href}</a></pre>`));
  res.statusCode = 301;
  res.setHeader('Location', location);
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Content-Length', doc.length);
  res.setHeader('Content-Security-Policy', "default-src 'none'");
  res.setHeader('X-Content-Type-Options', 'nosniff');
  const head = req.method === 'HEAD';
  (res as ServerResponse).end(head ? undefined : doc);
  return { status: 301, bytes: head ? 0 : doc.length, bytesZeroCopy: 0 };
}

/** 200 with a small HTML document (a directory listing). */
export function sendHtml(req: AnyRequest, res: AnyResponse, html: string): ServeResult {
  if (!canRespond(res)) return { status: 200, bytes: 0, bytesZeroCopy: 0 };
  const doc = Buffer.from(html);
  res.statusCode = 200;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Content-Length', doc.length);
  res.setHeader('Cache-Control', 'no-cache');
  res.setHeader('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'");
  res.setHeader('X-Content-Type-Options', 'nosniff');
  const head = req.method === 'HEAD';
  (res as ServerResponse).end(head ? undefined : doc);
  return { status: 200, bytes: head ? 0 : doc.length, bytesZeroCopy: 0 };
}

/** A page, exported for the listing. */
export { page as htmlPage };
