/**
 * Representation metadata: ETag, Content-Type, Cache-Control, durations,
 * and the small HTML helpers error pages and listings share.
 *
 * @module
 */
import type { Stats } from 'node:fs';
import { extname } from 'node:path';
import mime from 'mime-types';

/**
 * A strong entity tag from the inode, size and modification time (in
 * microseconds) of an fstat of the very fd that is sent. Any rewrite that
 * changes the bytes changes the size or the mtime; a rename-over changes the
 * inode.
 */
export function etagFor(stat: Stats): string {
  // Memoized per Stats object: the open-file cache hands the same one to
  // every hit while the file is unchanged, and three hex conversions cost
  // more than the lookup.
  let t = etagCache.get(stat);
  if (t === undefined) {
    t = `"${stat.ino.toString(16)}-${stat.size.toString(16)}-${Math.round(stat.mtimeMs * 1000).toString(16)}"`;
    etagCache.set(stat, t);
  }
  return t;
}

const etagCache = new WeakMap<Stats, string>();

const dateCache = new Map<number, string>();

/**
 * The HTTP-date of a time in ms (`Last-Modified`), memoized per second:
 * formatting a Date costs more than the rest of a small response's headers.
 */
export function httpDate(ms: number): string {
  const s = Math.floor(ms / 1000);
  let d = dateCache.get(s);
  if (d === undefined) {
    d = new Date(s * 1000).toUTCString();
    if (dateCache.size >= 1024) dateCache.clear();
    dateCache.set(s, d);
  }
  return d;
}

const typeCache = new Map<string, string>();

/**
 * `Content-Type` for a file name, from the mime-types database, with a
 * charset for text types; `application/octet-stream` when unknown.
 */
export function contentTypeFor(name: string): string {
  const ext = extname(name).toLowerCase();
  let t = typeCache.get(ext);
  if (t === undefined) {
    t = (ext && mime.contentType(ext)) || 'application/octet-stream';
    if (typeCache.size < 1024) typeCache.set(ext, t);
  }
  return t;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000, y: 31_557_600_000 };

/**
 * Parses a duration: a number of milliseconds, or a string such as `'500ms'`,
 * `'30s'`, `'10m'`, `'2h'`, `'7d'`, `'1y'` (a bare numeric string is ms).
 * Returns undefined when it is not one.
 */
export function parseDuration(v: number | string): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? v : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)?\s*$/i.exec(v);
  if (!m) return undefined;
  return Number(m[1]) * UNITS[(m[2] ?? 'ms').toLowerCase()]!;
}

/** Longest max-age RFC 9111 suggests caches honour: one year, in seconds. */
const MAX_AGE_CAP_S = 31_536_000;

/** `Cache-Control` for a max age in ms, `immutable` optional. */
export function cacheControlFor(maxAgeMs: number, immutable: boolean): string {
  const s = Math.min(MAX_AGE_CAP_S, Math.floor(maxAgeMs / 1000));
  return `public, max-age=${s}${immutable ? ', immutable' : ''}`;
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]!);
}

/** A size for humans: `512 B`, `1.5 KiB`, `12 MiB`, `3.2 GiB`. */
export function humanSize(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = -1;
  do {
    v /= 1024;
    i++;
  } while (v >= 1024 && i < units.length - 1);
  return `${v >= 10 ? Math.round(v) : Math.round(v * 10) / 10} ${units[i]}`;
}

/** Adds `Accept-Encoding` (or another field) to a response's `Vary`. */
export function appendVary(current: string | number | string[] | undefined, field: string): string {
  const list = current === undefined ? '' : Array.isArray(current) ? current.join(', ') : String(current);
  if (list.trim() === '*') return '*';
  const names = list.split(',').map((s) => s.trim()).filter(Boolean);
  if (names.some((n) => n.toLowerCase() === field.toLowerCase())) return names.join(', ');
  names.push(field);
  return names.join(', ');
}

/**
 * The codings of `Accept-Encoding` among `offered`, best first (RFC 9110
 * 12.5.3): q=0 refuses; `*` covers codings not named; ties keep `offered`'s order.
 */
export function acceptedEncodings(header: string | string[] | undefined, offered: readonly string[]): string[] {
  if (header === undefined) return [];
  const value = Array.isArray(header) ? header.join(',') : header;
  const q = new Map<string, number>();
  let star: number | undefined;
  for (const item of value.split(',').slice(0, 64)) {
    const [name, ...params] = item.split(';');
    const coding = name!.trim().toLowerCase();
    if (!coding) continue;
    let weight = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*([0-9.]+)\s*$/i.exec(p);
      if (m) weight = Math.max(0, Math.min(1, Number(m[1]) || 0));
    }
    if (coding === '*') star = weight;
    else q.set(coding === 'x-gzip' ? 'gzip' : coding, weight);
  }
  return offered
    .map((c, i) => ({ c, i, w: q.get(c) ?? star ?? 0 }))
    .filter((e) => e.w > 0)
    .sort((a, b) => b.w - a.w || a.i - b.i)
    .map((e) => e.c);
}
