/**
 * Conditional requests (RFC 9110 section 13): If-Match, If-Unmodified-Since,
 * If-None-Match, If-Modified-Since and If-Range, evaluated in the order of
 * section 13.2.2.
 *
 * @module
 */
import type { IncomingHttpHeaders } from 'node:http';

/** The validators of the selected representation. */
export interface Validators {
  /** The entity tag as sent in `ETag` (`"abc"` or `W/"abc"`), if any. */
  etag?: string;
  /** Last modification time in ms since the epoch, if known. */
  lastModified?: number;
}

/** What the preconditions decide: carry on, or answer 304 / 412 now. */
export type PreconditionResult = 'proceed' | 304 | 412;

interface EntityTag {
  weak: boolean;
  opaque: string;
}

/** Parses one entity tag (`"x"` or `W/"x"`); undefined if malformed. */
export function parseEntityTag(s: string): EntityTag | undefined {
  let weak = false;
  let v = s.trim();
  if (v.startsWith('W/')) {
    weak = true;
    v = v.slice(2);
  }
  if (v.length < 2 || v[0] !== '"' || v[v.length - 1] !== '"') return undefined;
  const opaque = v.slice(1, -1);
  if (opaque.includes('"')) return undefined;
  return { weak, opaque };
}

/**
 * Parses an If-Match / If-None-Match value: `*` or a list of entity tags.
 * Malformed members are skipped (they can match nothing).
 */
function parseTagList(value: string): '*' | EntityTag[] {
  if (value.trim() === '*') return '*';
  const out: EntityTag[] = [];
  // Entity tags cannot contain '"' or ',' outside quotes, so a quote-aware scan suffices.
  const re = /\s*(W\/)?"([^"]*)"\s*(?:,|$)/gy;
  let m: RegExpExecArray | null;
  let last = 0;
  while ((m = re.exec(value)) !== null && out.length < 256) {
    out.push({ weak: m[1] !== undefined, opaque: m[2]! });
    last = re.lastIndex;
    if (last >= value.length) break;
  }
  return out;
}

function strongMatch(a: EntityTag, b: EntityTag): boolean {
  return !a.weak && !b.weak && a.opaque === b.opaque;
}

function weakMatch(a: EntityTag, b: EntityTag): boolean {
  return a.opaque === b.opaque;
}

/** An HTTP-date as ms, or undefined when not a valid single date. */
export function parseHttpDate(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  // "more than one member" (a list) makes If-Modified-Since invalid.
  if (value.includes(',') && value.indexOf(',') !== value.lastIndexOf(',')) return undefined;
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : t;
}

const seconds = (ms: number): number => Math.floor(ms / 1000);

function header(h: IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name];
  if (v === undefined) return undefined;
  return Array.isArray(v) ? v.join(', ') : v;
}

/**
 * Evaluates the preconditions of a request for the selected representation,
 * in RFC 9110 section 13.2.2 order:
 *
 * 1. If-Match false -> 412.
 * 2. Without If-Match, If-Unmodified-Since false -> 412.
 * 3. If-None-Match false -> 304 for GET/HEAD, 412 otherwise.
 * 4. Without If-None-Match, for GET/HEAD, If-Modified-Since false -> 304.
 *
 * (Step 5, If-Range, is {@link ifRangeAllows}.)
 */
export function evaluatePreconditions(headers: IncomingHttpHeaders, method: string, v: Validators): PreconditionResult {
  const current = v.etag !== undefined ? parseEntityTag(v.etag) : undefined;
  const getOrHead = method === 'GET' || method === 'HEAD';

  const ifMatch = header(headers, 'if-match');
  if (ifMatch !== undefined) {
    const list = parseTagList(ifMatch);
    // '*' is true when a current representation exists (it does: we have a file).
    const ok = list === '*' || (current !== undefined && list.some((t) => strongMatch(t, current)));
    if (!ok) return 412;
  } else {
    const ius = parseHttpDate(header(headers, 'if-unmodified-since'));
    if (ius !== undefined && v.lastModified !== undefined && seconds(v.lastModified) > seconds(ius)) return 412;
  }

  const ifNoneMatch = header(headers, 'if-none-match');
  if (ifNoneMatch !== undefined) {
    const list = parseTagList(ifNoneMatch);
    const matched = list === '*' || (current !== undefined && list.some((t) => weakMatch(t, current)));
    if (matched) return getOrHead ? 304 : 412;
  } else if (getOrHead) {
    const ims = parseHttpDate(header(headers, 'if-modified-since'));
    if (ims !== undefined && v.lastModified !== undefined && seconds(v.lastModified) <= seconds(ims)) return 304;
  }
  return 'proceed';
}

/**
 * If-Range (RFC 9110 section 13.1.5): true when the Range header may be
 * honoured. An entity tag must match strongly; a date must equal the
 * representation's Last-Modified exactly. Anything else means "send it all".
 */
export function ifRangeAllows(headers: IncomingHttpHeaders, v: Validators): boolean {
  const value = header(headers, 'if-range');
  if (value === undefined) return true;
  const trimmed = value.trim();
  if (trimmed.startsWith('"') || trimmed.startsWith('W/')) {
    const tag = parseEntityTag(trimmed);
    const current = v.etag !== undefined ? parseEntityTag(v.etag) : undefined;
    return tag !== undefined && current !== undefined && strongMatch(tag, current);
  }
  const date = parseHttpDate(trimmed);
  return date !== undefined && v.lastModified !== undefined && seconds(date) === seconds(v.lastModified);
}
