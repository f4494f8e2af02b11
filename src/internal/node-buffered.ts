// Bytes Node already read from a socket, taken before the kernel moves the
// rest behind its back (splice, receiveFile): they come first.
import type net from 'node:net';

/** Takes what Node has buffered from `s`, up to `max` bytes (the rest stays). */
export function takeBuffered(s: net.Socket, max: number): Buffer | undefined {
  if (s.readableLength === 0 || max <= 0) return undefined;
  let chunk = s.read() as Buffer | string | null;
  if (chunk === null) return undefined;
  if (typeof chunk === 'string') chunk = Buffer.from(chunk, (s.readableEncoding ?? 'utf8') as BufferEncoding);
  if (chunk.length > max) {
    s.unshift(chunk.subarray(max));
    chunk = chunk.subarray(0, max);
  }
  return chunk;
}
