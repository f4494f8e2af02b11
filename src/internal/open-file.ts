// Turns a FileLike into an fd for the duration of an operation. zcopy closes
// only what it opened itself: a caller's fd or FileHandle stays open.
import { open } from 'node:fs/promises';
import { systemError } from '../errors.js';
import type { FileLike } from './validate.js';

export interface OpenedFile {
  fd: number;
  path?: string;
  close(): Promise<void>;
}

export async function openFile(file: FileLike, flags: string | number = 'r', mode?: number): Promise<OpenedFile> {
  if (typeof file === 'number') return { fd: file, close: async () => {} };
  if (typeof file !== 'string') {
    if (file.fd < 0) throw systemError(-9, 'read');
    return { fd: file.fd, close: async () => {} };
  }
  const handle = await open(file, flags, mode);
  return { fd: handle.fd, path: file, close: () => handle.close() };
}
