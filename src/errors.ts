/**
 * Errors. System errors are built in one place, the way Node core's
 * `UVException` builds them; library errors carry stable `ZCOPY_ERR_*` codes
 * listed in docs/errors.md.
 *
 * @module
 */
import { getSystemErrorName } from 'node:util';
import { strerror } from './internal/strerror.js';

/** An error from a system call, shaped like Node's own (`fs`, `net`). */
export interface ZcopySystemError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
  /** Bytes that reached the target before the error, when known. */
  bytesTransferred?: number;
}

/**
 * Builds a Node-style system error from a negative (or positive) errno:
 * `code` 'EPIPE', `errno` -32, `syscall` 'sendfile', message
 * `EPIPE: broken pipe, sendfile`.
 */
export function systemError(errno: number, syscall: string, path?: string, bytesTransferred?: number): ZcopySystemError {
  const neg = errno > 0 ? -errno : errno;
  let code: string;
  try {
    code = getSystemErrorName(neg);
  } catch {
    code = `Unknown system error ${neg}`;
  }
  const desc = strerror(code);
  const err = new Error(`${code}: ${desc}, ${syscall}${path !== undefined ? ` '${path}'` : ''}`) as ZcopySystemError;
  err.code = code;
  err.errno = neg;
  err.syscall = syscall;
  if (path !== undefined) err.path = path;
  if (bytesTransferred !== undefined) err.bytesTransferred = bytesTransferred;
  return err;
}

/** Stable codes of zcopy's own errors (see docs/errors.md). */
export type ZcopyErrorCode =
  | 'ZCOPY_ERR_FILE_TRUNCATED'
  | 'ZCOPY_ERR_OUT_OF_RANGE'
  | 'ZCOPY_ERR_SOCKET_CLOSED'
  | 'ZCOPY_ERR_NOT_CONNECTED'
  | 'ZCOPY_ERR_INVALID_TARGET'
  | 'ZCOPY_ERR_INVALID_FILE'
  | 'ZCOPY_ERR_SAME_FILE'
  | 'ZCOPY_ERR_RELEASED'
  | 'ZCOPY_ERR_BUSY'
  | 'ZCOPY_ERR_NATIVE_UNAVAILABLE'
  | 'ZCOPY_ERR_EXTERNAL_BUFFERS'
  | 'ZCOPY_ERR_CLOSED'
  | 'ZCOPY_ERR_POOL'
  | 'ZCOPY_ERR_TIMEOUT'
  | 'ZCOPY_ERR_EMPTY_FILE'
  | 'ZCOPY_ERR_SHORT_READ'
  | 'ZCOPY_ERR_TOO_LARGE'
  | 'ZCOPY_ERR_BODY_CONSUMED'
  | (string & {});

/** An error of zcopy's own, with a stable `code`. */
export class ZcopyError extends Error {
  readonly code: ZcopyErrorCode;
  /** Bytes that reached the target before the error, when known. */
  bytesTransferred?: number;
  constructor(code: ZcopyErrorCode, message: string, options?: { cause?: unknown; bytesTransferred?: number }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'ZcopyError';
    this.code = code;
    if (options?.bytesTransferred !== undefined) this.bytesTransferred = options.bytesTransferred;
  }
}

/** The error an aborted `signal` rejects with, as Node's own APIs do. */
export function abortError(signal: AbortSignal | undefined): Error {
  const err = new Error('The operation was aborted', signal?.reason !== undefined ? { cause: signal.reason } : undefined) as Error & { code: string };
  err.name = 'AbortError';
  err.code = 'ABORT_ERR';
  return err;
}

/** A TypeError with Node's ERR_INVALID_ARG_TYPE shape. */
export function invalidArgType(name: string, expected: string, actual: unknown): TypeError & { code: string } {
  const err = new TypeError(`The "${name}" argument must be ${expected}. Received ${describe(actual)}`) as TypeError & { code: string };
  err.code = 'ERR_INVALID_ARG_TYPE';
  return err;
}

/** A RangeError with Node's ERR_OUT_OF_RANGE shape. */
export function outOfRange(name: string, range: string, actual: unknown): RangeError & { code: string } {
  const err = new RangeError(`The value of "${name}" is out of range. It must be ${range}. Received ${describe(actual)}`) as RangeError & { code: string };
  err.code = 'ERR_OUT_OF_RANGE';
  return err;
}

/** A TypeError with Node's ERR_INVALID_ARG_VALUE shape. */
export function invalidArgValue(name: string, actual: unknown, reason: string): TypeError & { code: string } {
  const err = new TypeError(`The argument '${name}' ${reason}. Received ${describe(actual)}`) as TypeError & { code: string };
  err.code = 'ERR_INVALID_ARG_VALUE';
  return err;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : `type number (${v})`;
  if (typeof v === 'string') return `type string (${JSON.stringify(v.length > 28 ? v.slice(0, 25) + '...' : v)})`;
  if (typeof v === 'bigint') return `type bigint (${v}n)`;
  if (typeof v === 'function') return `function ${v.name || '<anonymous>'}`;
  if (typeof v === 'object') return `an instance of ${(v as object).constructor?.name ?? 'Object'}`;
  return `type ${typeof v} (${String(v)})`;
}

/** Validates a non-negative safe integer argument; throws synchronously. */
export function validateOffset(name: string, v: unknown, allowUndefined = true): number | undefined {
  if (v === undefined && allowUndefined) return undefined;
  if (typeof v !== 'number') throw invalidArgType(name, 'of type number', v);
  if (!Number.isSafeInteger(v) || v < 0) throw outOfRange(name, `an integer >= 0 and <= ${Number.MAX_SAFE_INTEGER}`, v);
  return v;
}
