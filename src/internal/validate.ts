// Argument validation shared by the transfer APIs. Everything here throws
// synchronously, before any I/O.
import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import net from 'node:net';
import { invalidArgType, invalidArgValue, outOfRange, systemError, ZcopyError } from '../errors.js';

/** A file argument: a path, an open fd, or a FileHandle. */
export type FileLike = string | number | FileHandle;

export function isFileHandle(v: unknown): v is FileHandle {
  return typeof v === 'object' && v !== null && typeof (v as FileHandle).fd === 'number' && typeof (v as FileHandle).stat === 'function' && typeof (v as FileHandle).close === 'function';
}

export function validateFd(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) throw outOfRange(name, 'an integer >= 0 and <= 2147483647', v);
  return v;
}

export function validateFile(name: string, v: unknown): FileLike {
  if (typeof v === 'string') {
    if (v.length === 0) throw invalidArgValue(name, v, 'must be a non-empty path');
    if (v.includes('\u0000')) throw invalidArgValue(name, v, 'must be a string without null bytes');
    return v;
  }
  if (typeof v === 'number') return validateFd(name, v);
  if (v instanceof URL) throw invalidArgType(name, 'of type string, number or FileHandle (convert a URL with fileURLToPath)', v);
  if (isFileHandle(v)) {
    if (v.fd < 0) throw Object.assign(new Error(`The "${name}" FileHandle is closed`), { code: 'EBADF' });
    return v;
  }
  throw invalidArgType(name, 'of type string, number or an instance of FileHandle', v);
}

export function validateTarget(name: string, v: unknown): net.Socket | number {
  if (typeof v === 'number') return validateFd(name, v);
  if (v instanceof net.Socket) return v;
  if (v instanceof net.Server) throw invalidArgType(name, 'a connected net.Socket or a socket fd (got a listening net.Server)', v);
  throw invalidArgType(name, 'an instance of net.Socket or a socket fd', v);
}

/**
 * Why a raw fd cannot be a transfer target, or undefined when it is a
 * socket: checked before the native/portable split, so both paths refuse a
 * regular file, a pipe or a tty alike (the portable path would otherwise
 * write into them). One fstat, no I/O.
 */
export function targetFdError(fd: number): Error | undefined {
  let st: fs.Stats;
  try {
    st = fs.fstatSync(fd);
  } catch (err) {
    return systemError(-Math.abs((err as NodeJS.ErrnoException).errno ?? 9), 'fstat', undefined, 0);
  }
  if (st.isSocket()) return undefined;
  const kind = st.isFile() ? 'a regular file' : st.isFIFO() ? 'a pipe' : st.isDirectory() ? 'a directory' : st.isCharacterDevice() ? 'a character device' : st.isBlockDevice() ? 'a block device' : 'not a socket';
  return new ZcopyError('ZCOPY_ERR_INVALID_TARGET', `target fd ${fd} is ${kind}, not a socket (a raw fd target must be a connected stream socket)`, { bytesTransferred: 0 });
}

export function validatePositiveInt(name: string, v: unknown, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number') throw invalidArgType(name, 'of type number', v);
  if (!Number.isSafeInteger(v) || v < min || v > max) throw outOfRange(name, `an integer >= ${min} and <= ${max}`, v);
  return v;
}

export function validateSignal(name: string, v: unknown): AbortSignal | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'object' || v === null || typeof (v as AbortSignal).aborted !== 'boolean' || typeof (v as AbortSignal).addEventListener !== 'function') {
    throw invalidArgType(name, 'an instance of AbortSignal', v);
  }
  return v as AbortSignal;
}

export function validateOneOf<T extends string>(name: string, v: unknown, allowed: readonly T[]): T | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw invalidArgValue(name, v, `must be one of: ${allowed.map((a) => `'${a}'`).join(', ')}`);
  }
  return v as T;
}

export function validateObject(name: string, v: unknown): Record<string, unknown> {
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalidArgType(name, 'of type object', v);
  return v as Record<string, unknown>;
}
