// The pure parts of the HTTP layer: Range parsing and coalescing,
// preconditions, request-path resolution, Accept-Encoding, durations.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { evaluatePreconditions, ifRangeAllows, parseRange, resolveRequestPath } from '../src/http/index.js';
import { acceptedEncodings, appendVary, humanSize, parseDuration } from '../src/http/headers.js';

describe('parseRange', () => {
  it('single, open, suffix and clamped ranges', () => {
    assert.deepEqual(parseRange('bytes=0-9', 100), { kind: 'ranges', ranges: [{ start: 0, end: 9 }] });
    assert.deepEqual(parseRange('bytes=90-', 100), { kind: 'ranges', ranges: [{ start: 90, end: 99 }] });
    assert.deepEqual(parseRange('bytes=-10', 100), { kind: 'ranges', ranges: [{ start: 90, end: 99 }] });
    assert.deepEqual(parseRange('bytes=-1000', 100), { kind: 'ranges', ranges: [{ start: 0, end: 99 }] });
    assert.deepEqual(parseRange('bytes=50-123456789012345678901234567890', 100), { kind: 'ranges', ranges: [{ start: 50, end: 99 }] });
    assert.deepEqual(parseRange(' bytes=\t1-2 , ,5-6 ', 100), { kind: 'ranges', ranges: [{ start: 1, end: 2 }, { start: 5, end: 6 }] });
  });

  it('unsatisfiable vs ignored', () => {
    assert.deepEqual(parseRange('bytes=100-', 100), { kind: 'unsatisfiable' });
    assert.deepEqual(parseRange('bytes=-0', 100), { kind: 'unsatisfiable' });
    assert.deepEqual(parseRange('bytes=99999999999999999999-', 100), { kind: 'unsatisfiable' });
    for (const h of ['bytes=5-4', 'bytes=a-b', 'bytes=1', 'bytes=', 'bytes=,', 'bytes=-', 'bytes=+1-2', 'bytes=1-2,x', 'bytes 1-2', 'bytes=1.5-2']) {
      assert.equal(parseRange(h, 100).kind, 'ignore', h);
    }
    assert.deepEqual(parseRange('pages=1-2', 100), { kind: 'ignore', reason: 'unit' });
    assert.deepEqual(parseRange(undefined, 100), { kind: 'ignore', reason: 'absent' });
    assert.deepEqual(parseRange('bytes=0-', 0), { kind: 'ignore', reason: 'empty-representation' });
  });

  it('coalesces overlapping and adjacent ranges; keeps order otherwise; caps parts', () => {
    assert.deepEqual(parseRange('bytes=10-19,0-9', 100), { kind: 'ranges', ranges: [{ start: 0, end: 19 }] });
    assert.deepEqual(parseRange('bytes=50-59,0-9', 100), { kind: 'ranges', ranges: [{ start: 50, end: 59 }, { start: 0, end: 9 }] });
    assert.deepEqual(parseRange('bytes=0-50,-60,20-30', 100), { kind: 'ranges', ranges: [{ start: 0, end: 99 }] });
    const many = 'bytes=' + Array.from({ length: 51 }, (_, i) => `${i * 3}-${i * 3}`).join(',');
    assert.deepEqual(parseRange(many, 1000), { kind: 'ignore', reason: 'too-many' });
    assert.equal(parseRange(many, 1000, 51).kind, 'ranges');
    // 10 000 copies of the whole file collapse to one range.
    const r = parseRange('bytes=' + Array(10000).fill('0-').join(','), 1 << 30);
    assert.deepEqual(r, { kind: 'ranges', ranges: [{ start: 0, end: (1 << 30) - 1 }] });
  });
});

describe('preconditions', () => {
  const v = { etag: '"abc"', lastModified: Date.parse('Sun, 06 Nov 2022 08:49:37 GMT') };
  const lm = 'Sun, 06 Nov 2022 08:49:37 GMT';
  it('RFC 9110 13.2.2 order', () => {
    assert.equal(evaluatePreconditions({}, 'GET', v), 'proceed');
    assert.equal(evaluatePreconditions({ 'if-match': '"x"' }, 'GET', v), 412);
    assert.equal(evaluatePreconditions({ 'if-match': '"x", "abc"' }, 'GET', v), 'proceed');
    assert.equal(evaluatePreconditions({ 'if-match': 'W/"abc"' }, 'GET', v), 412);
    assert.equal(evaluatePreconditions({ 'if-unmodified-since': 'Sat, 05 Nov 2022 00:00:00 GMT' }, 'GET', v), 412);
    assert.equal(evaluatePreconditions({ 'if-unmodified-since': 'garbage' }, 'GET', v), 'proceed');
    assert.equal(evaluatePreconditions({ 'if-none-match': 'W/"abc"' }, 'GET', v), 304);
    assert.equal(evaluatePreconditions({ 'if-none-match': '"abc"' }, 'DELETE', v), 412);
    assert.equal(evaluatePreconditions({ 'if-modified-since': lm }, 'GET', v), 304);
    assert.equal(evaluatePreconditions({ 'if-modified-since': lm }, 'POST', v), 'proceed');
    assert.equal(evaluatePreconditions({ 'if-modified-since': `${lm}, ${lm}` }, 'GET', v), 'proceed', 'a list is not a date');
    assert.equal(evaluatePreconditions({ 'if-none-match': '"zzz"', 'if-modified-since': lm }, 'GET', v), 'proceed');
    assert.equal(evaluatePreconditions({ 'if-none-match': '*' }, 'GET', {}), 304);
    assert.equal(evaluatePreconditions({ 'if-match': '"abc"' }, 'GET', {}), 412, 'no current ETag');
  });
  it('If-Range', () => {
    assert.equal(ifRangeAllows({}, v), true);
    assert.equal(ifRangeAllows({ 'if-range': '"abc"' }, v), true);
    assert.equal(ifRangeAllows({ 'if-range': 'W/"abc"' }, v), false);
    assert.equal(ifRangeAllows({ 'if-range': lm }, v), true);
    assert.equal(ifRangeAllows({ 'if-range': 'Sun, 06 Nov 2022 08:49:38 GMT' }, v), false);
    assert.equal(ifRangeAllows({ 'if-range': lm }, { etag: '"abc"' }), false);
  });
});

describe('resolveRequestPath', () => {
  it('decodes once and refuses traversal in every disguise', () => {
    assert.deepEqual(resolveRequestPath('/a/b%20c.txt?x=../..#y'), { ok: true, segments: ['a', 'b c.txt'], trailingSlash: false, hidden: false, rawPath: '/a/b%20c.txt' });
    assert.deepEqual(resolveRequestPath('//a/./b/'), { ok: true, segments: ['a', 'b'], trailingSlash: true, hidden: false, rawPath: '//a/./b/' });
    assert.equal((resolveRequestPath('http://evil/a.txt') as { segments: string[] }).segments[0], 'a.txt');
    for (const p of ['/..', '/../x', '/a/%2e%2e/b', '/a/..%2fb', '/%2f..', '/.%2e/x', '/%2E%2E']) {
      assert.deepEqual(resolveRequestPath(p).ok, false, p);
      assert.equal((resolveRequestPath(p) as { status: number }).status, 403, p);
    }
    for (const p of ['/a%00b', '/a\\b', '/%5c..', '/%252e%252e/x', '/a%252fb', '/%E0%A4%A', '/%c0%ae', '*', 'x/y', '/a%2500']) {
      assert.equal((resolveRequestPath(p) as { status: number }).status, 400, p);
    }
    assert.equal((resolveRequestPath('/a/.env') as { hidden: boolean }).hidden, true);
    assert.equal((resolveRequestPath('/.well-known/x') as { hidden: boolean }).hidden, true);
    assert.equal((resolveRequestPath('/a.b/c') as { hidden: boolean }).hidden, false);
  });
});

describe('headers helpers', () => {
  it('Accept-Encoding, Vary, sizes, durations', () => {
    assert.deepEqual(acceptedEncodings('gzip, br', ['br', 'gzip']), ['br', 'gzip']);
    assert.deepEqual(acceptedEncodings('br;q=0.1, gzip;q=0.9', ['br', 'gzip']), ['gzip', 'br']);
    assert.deepEqual(acceptedEncodings('br;q=0, *', ['br', 'gzip']), ['gzip']);
    assert.deepEqual(acceptedEncodings('identity', ['br', 'gzip']), []);
    assert.deepEqual(acceptedEncodings(undefined, ['br']), []);
    assert.equal(appendVary(undefined, 'Accept-Encoding'), 'Accept-Encoding');
    assert.equal(appendVary('Origin, accept-encoding', 'Accept-Encoding'), 'Origin, accept-encoding');
    assert.equal(appendVary('*', 'Accept-Encoding'), '*');
    assert.equal(humanSize(1023), '1023 B');
    assert.equal(humanSize(1536), '1.5 KiB');
    assert.equal(humanSize(64 * 1024 * 1024), '64 MiB');
    assert.equal(parseDuration('2h'), 7_200_000);
    assert.equal(parseDuration(1500), 1500);
    assert.equal(parseDuration('soon'), undefined);
  });
});
