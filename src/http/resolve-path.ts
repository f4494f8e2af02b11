/**
 * From a request target to path segments under a root, decoding once and
 * refusing anything that could climb out of the root.
 *
 * The rules, in order:
 *  1. Take the path of the request target (origin-form `/a/b?q`, or the path
 *     of an absolute-form `http://host/a/b`); anything else is a 400.
 *  2. Percent-decode exactly once; a malformed escape is a 400.
 *  3. After decoding: a NUL byte, a backslash, or a percent-escape of `.`,
 *     `/`, `\`, NUL or `%` (double encoding: `%252e%252e` decodes to
 *     `%2e%2e`) is a 400. These names have no business in a URL for a file
 *     and are the usual disguises of `..`.
 *  4. Split on `/`; empty and `.` segments collapse; a `..` segment is a 403
 *     (`..%2f`, `%2f..` and `%2e%2e` all become `..` at step 2).
 *  5. A segment starting with `.` makes the path hidden (dotfiles policy;
 *     serveStatic also judges the opened file's real path, so a symlink to
 *     a dotfile is hidden too).
 *
 * The caller joins the segments under the root and checks the result is
 * still inside it (and, after opening, that the real path is: symlinks).
 *
 * @module
 */

/** A request path that passed the checks. */
export interface ResolvedPath {
  ok: true;
  /** Decoded segments, none empty, `.` or `..`. */
  segments: string[];
  /** The decoded path ended with `/` (the client asked for a directory). */
  trailingSlash: boolean;
  /** Some segment starts with `.` (a dotfile or a hidden directory). */
  hidden: boolean;
  /** The request target's path as received, still percent-encoded. */
  rawPath: string;
}

/** A request path that was refused. */
export interface RefusedPath {
  ok: false;
  status: 400 | 403;
  /** Why, for logs (never the path itself). */
  reason: string;
}

/** Longest path (after decoding) worth looking up; Linux PATH_MAX is 4096. */
export const MAX_PATH_LENGTH = 4096;

const DOUBLE_ENCODED = /%(?:2e|2f|5c|00|25)/i;

/**
 * Extracts the still-encoded path of a request target: origin-form or
 * absolute-form. Returns undefined for asterisk-form, authority-form or junk.
 */
export function targetPath(url: string): string | undefined {
  let path: string;
  if (url.charCodeAt(0) === 47 /* / */) {
    path = url;
  } else {
    const m = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i.exec(url);
    if (!m) return undefined;
    path = url.slice(m[0].length);
    if (path.length === 0 || path[0] === '?' || path[0] === '#') path = '/' + path;
  }
  let end = path.length;
  const q = path.indexOf('?');
  if (q >= 0) end = q;
  const h = path.indexOf('#');
  if (h >= 0 && h < end) end = h;
  return path.slice(0, end);
}

/**
 * Checks and splits the path of a request target.
 *
 * @example
 * ```ts
 * resolveRequestPath('/docs/a%20b.txt?x=1');
 * // { ok: true, segments: ['docs', 'a b.txt'], trailingSlash: false, hidden: false, rawPath: '/docs/a%20b.txt' }
 * resolveRequestPath('/%2e%2e/etc/passwd'); // { ok: false, status: 403, ... }
 * ```
 */
export function resolveRequestPath(url: string): ResolvedPath | RefusedPath {
  const rawPath = targetPath(url);
  if (rawPath === undefined) return { ok: false, status: 400, reason: 'request target has no path' };
  let decoded: string;
  try {
    decoded = rawPath.includes('%') ? decodeURIComponent(rawPath) : rawPath;
  } catch {
    return { ok: false, status: 400, reason: 'malformed percent-encoding' };
  }
  if (decoded.length > MAX_PATH_LENGTH) return { ok: false, status: 400, reason: 'path too long' };
  if (decoded.includes('\0')) return { ok: false, status: 400, reason: 'NUL byte in path' };
  if (decoded.includes('\\')) return { ok: false, status: 400, reason: 'backslash in path' };
  if (decoded.includes('%') && DOUBLE_ENCODED.test(decoded)) return { ok: false, status: 400, reason: 'double-encoded path' };

  const parts = decoded.split('/');
  const segments: string[] = [];
  let hidden = false;
  for (const p of parts) {
    if (p === '' || p === '.') continue;
    if (p === '..') return { ok: false, status: 403, reason: "'..' segment in path" };
    if (p.charCodeAt(0) === 46 /* . */) hidden = true;
    segments.push(p);
  }
  return { ok: true, segments, trailingSlash: decoded.endsWith('/') || decoded.endsWith('/.'), hidden, rawPath };
}
