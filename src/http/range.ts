/**
 * `Range: bytes=...` parsing (RFC 9110 section 14).
 *
 * The parser never throws and its work is bounded by the header's length.
 * It distinguishes what the server must answer differently:
 *
 *  - `ignore`: no usable Range (absent, another unit, malformed, or too many
 *    parts after coalescing): the server answers 200 with the whole
 *    representation, as RFC 9110 section 14.2 allows ("MAY ignore").
 *  - `unsatisfiable`: well-formed, but no range overlaps the representation:
 *    416 with `Content-Range: bytes *\/size`.
 *  - `ranges`: one or more satisfiable ranges, clamped to the size, with
 *    overlapping and adjacent ones coalesced so a tiny request cannot make
 *    the server send the same bytes many times.
 *
 * @module
 */

/** One satisfiable range; `end` is inclusive, as in `Content-Range`. */
export interface ByteRange {
  start: number;
  end: number;
}

/** The outcome of {@link parseRange}. */
export type RangeResult =
  | { kind: 'ignore'; reason: 'absent' | 'unit' | 'malformed' | 'too-many' | 'empty-representation' }
  | { kind: 'unsatisfiable' }
  | { kind: 'ranges'; ranges: ByteRange[] };

/** Default cap on the parts of a multipart/byteranges response (after coalescing). */
export const DEFAULT_MAX_RANGES = 50;

/**
 * Parses a Range header against a representation of `size` bytes.
 *
 * @param header - the raw header value (or undefined when absent)
 * @param size - the representation's length in bytes
 * @param maxRanges - above this many parts (after coalescing), the header is ignored
 *
 * @example
 * ```ts
 * parseRange('bytes=0-99,-100', 1000);
 * // { kind: 'ranges', ranges: [{ start: 0, end: 99 }, { start: 900, end: 999 }] }
 * ```
 */
export function parseRange(header: string | undefined, size: number, maxRanges = DEFAULT_MAX_RANGES): RangeResult {
  if (header === undefined) return { kind: 'ignore', reason: 'absent' };
  const eq = header.indexOf('=');
  if (eq < 0) return { kind: 'ignore', reason: 'malformed' };
  // The unit is a token compared case-insensitively; OWS is not allowed
  // around '=' by the grammar, but trimming costs nothing and is lenient.
  if (header.slice(0, eq).trim().toLowerCase() !== 'bytes') return { kind: 'ignore', reason: 'unit' };
  // A zero-length representation has no satisfiable byte range worth a 206:
  // answer 200 with the empty body (RFC 9110 lets a server ignore Range).
  if (size === 0) return { kind: 'ignore', reason: 'empty-representation' };

  const ranges: ByteRange[] = [];
  let specs = 0;
  const body = header.slice(eq + 1);
  let pos = 0;
  while (pos <= body.length) {
    let comma = body.indexOf(',', pos);
    if (comma < 0) comma = body.length;
    const spec = trimOws(body.slice(pos, comma));
    pos = comma + 1;
    // Empty list elements are allowed by the list grammar (RFC 9110 5.6.1).
    if (spec.length === 0) continue;
    specs++;
    const dash = spec.indexOf('-');
    if (dash < 0) return { kind: 'ignore', reason: 'malformed' };
    const a = spec.slice(0, dash);
    const b = spec.slice(dash + 1);
    if (a.length === 0) {
      // suffix-range: the last N bytes.
      const n = digits(b);
      if (n === undefined) return { kind: 'ignore', reason: 'malformed' };
      if (n === 0) continue; // unsatisfiable on its own
      ranges.push({ start: n >= size ? 0 : size - n, end: size - 1 });
      continue;
    }
    const first = digits(a);
    if (first === undefined) return { kind: 'ignore', reason: 'malformed' };
    let last: number;
    if (b.length === 0) {
      last = size - 1;
    } else {
      const l = digits(b);
      if (l === undefined) return { kind: 'ignore', reason: 'malformed' };
      // last-pos < first-pos makes the whole header invalid (14.1.1).
      if (l < first) return { kind: 'ignore', reason: 'malformed' };
      last = Math.min(l, size - 1);
    }
    if (first >= size) continue; // unsatisfiable on its own
    ranges.push({ start: first, end: last });
  }
  if (specs === 0) return { kind: 'ignore', reason: 'malformed' };
  if (ranges.length === 0) return { kind: 'unsatisfiable' };
  const merged = coalesce(ranges);
  if (merged.length > maxRanges) return { kind: 'ignore', reason: 'too-many' };
  return { kind: 'ranges', ranges: merged };
}

/**
 * Merges overlapping or adjacent ranges (RFC 9110 14.2 lets a server
 * coalesce). Ranges that neither overlap nor touch keep the client's order.
 */
export function coalesce(ranges: ByteRange[]): ByteRange[] {
  if (ranges.length < 2) return ranges;
  const sorted = ranges.map((r, i) => ({ ...r, i })).sort((x, y) => x.start - y.start || x.end - y.end);
  let touching = false;
  for (let k = 1; k < sorted.length; k++) {
    if (sorted[k]!.start <= sorted[k - 1]!.end + 1) {
      touching = true;
      break;
    }
  }
  if (!touching) return ranges;
  const out: ByteRange[] = [];
  for (const r of sorted) {
    const top = out[out.length - 1];
    if (top && r.start <= top.end + 1) {
      if (r.end > top.end) top.end = r.end;
    } else {
      out.push({ start: r.start, end: r.end });
    }
  }
  return out;
}

function trimOws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && (s.charCodeAt(a) === 32 || s.charCodeAt(a) === 9)) a++;
  while (b > a && (s.charCodeAt(b - 1) === 32 || s.charCodeAt(b - 1) === 9)) b--;
  return s.slice(a, b);
}

/**
 * A run of ASCII digits as a number; undefined for anything else. Values past
 * 2^53 saturate (they can only mean "past the end" for any real file).
 */
function digits(s: string): number | undefined {
  if (s.length === 0) return undefined;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return undefined;
  }
  if (s.length > 15) {
    const n = Number(s);
    return n > Number.MAX_SAFE_INTEGER ? Number.MAX_SAFE_INTEGER : n;
  }
  return Number(s);
}
