/**
 * The bench's view of the addon: the blocking measurement loops of
 * native/bench.c. They run only in bench child processes.
 *
 * @module
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { native, nativeReason, packageRoot } from '../native.js';

/** What a measurement loop returns: bytes moved and its syscalls by name. */
export interface LoopCounts {
  bytes: number;
  syscalls: Record<string, number>;
}

/** native/bench.c. Each function returns counts or a negative errno. */
export interface BenchBinding {
  benchReadWrite(inFd: number, outFd: number, chunk: number): LoopCounts | number;
  benchMmapWrite(inFd: number, outFd: number, length: number, chunk: number): LoopCounts | number;
  benchSendfile(inFd: number, outFd: number, length: number): LoopCounts | number;
  benchSplice(inFd: number, outFd: number, length: number, pipeSize: number): LoopCounts | number;
  benchCopyFileRange(inFd: number, outFd: number, length: number, chunk: number): LoopCounts | number;
  benchSink(fd: number, bufSize: number): LoopCounts | number;
  benchFinish(sockFd: number): LoopCounts | number;
  /** kind 0 = Unix (path), 1 = TCP 127.0.0.1 (port); listen 1 = bind+listen, 0 = connect. */
  benchSocket(kind: number, path: Uint8Array, port: number, listen: number): number;
  benchLocalPort(fd: number): number;
  benchAccept(fd: number): number;
  benchPin(cpuMask: number): number;
  /** PR_SET_PDEATHSIG(SIGKILL); returns the parent pid seen after arming. */
  benchDieWithParent(): number;
  /** SO_SNDBUF after asking for `bytes` (native/io.c, zcopy's own shim). */
  sendBuffer(fd: number, bytes: number): number;
}

/**
 * The bench loops, or why they are missing. ZCOPY_FORCE_FALLBACK=1 switches
 * the LIBRARY to its portable path (src/native.ts then loads nothing), but
 * the bench still needs its own C loops and pinning in that process (the
 * "zcopy portable" mechanism runs with it set), so it loads the same file
 * itself when the library did not.
 */
export function benchBinding(): { binding: BenchBinding | null; reason?: string } {
  let b: Record<string, unknown> | null = native as unknown as Record<string, unknown> | null;
  if (b === null) {
    const file = join(packageRoot, 'build', 'Release', 'zcopy.node');
    if (process.platform !== 'linux') return { binding: null, reason: nativeReason ?? `not Linux (${process.platform})` };
    if (!existsSync(file)) return { binding: null, reason: `the native addon was not built (${file} is missing)` };
    try {
      b = createRequire(import.meta.url)(file) as Record<string, unknown>;
    } catch (err) {
      return { binding: null, reason: `the native addon failed to load: ${(err as Error).message}` };
    }
  }
  if (typeof b.benchReadWrite !== 'function') {
    return { binding: null, reason: 'the native addon has no bench loops (rebuild it: npm run build:native)' };
  }
  return { binding: b as unknown as BenchBinding };
}
