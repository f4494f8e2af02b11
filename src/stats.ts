/**
 * Process-wide counters that prove which path bytes took. Every transfer
 * function reports here; `stats()` returns a snapshot.
 *
 * @module
 */

/** Which mechanism moved some bytes. */
export type Path = 'sendfile' | 'splice' | 'copyFileRange' | 'ficlone' | 'nativeCopy' | 'portable' | 'buffered';

/** A snapshot of zcopy's counters since the process started (or `resetStats()`). */
export interface Stats {
  /** Bytes moved without passing through user space (sendfile, splice, copy_file_range, FICLONE). */
  bytesZeroCopy: number;
  /** Bytes copied through user-space memory (native copy loop, portable path, buffered writes). */
  bytesCopied: number;
  /** Bytes by mechanism. */
  bytesByPath: Record<Path, number>;
  /** Times a transfer took (or switched to) a copying path, by reason: 'tls', 'not-regular-file', 'no-native', 'forced', 'EINVAL', ... */
  fallbacks: Record<string, number>;
  /** Transfers started, by the mechanism they started with. */
  transfers: Record<Path, number>;
  /** Transfers that ended with an error (aborts included). */
  errors: number;
  /** Times a transfer waited for the socket to become writable (EAGAIN). */
  waits: number;
  /** Chunks sent on the threadpool because their pages were not cached. */
  threadpoolChunks: number;
}

const paths: Path[] = ['sendfile', 'splice', 'copyFileRange', 'ficlone', 'nativeCopy', 'portable', 'buffered'];
const zeroCopyPaths = new Set<Path>(['sendfile', 'splice', 'copyFileRange', 'ficlone']);

function zeroes(): Record<Path, number> {
  return Object.fromEntries(paths.map((p) => [p, 0])) as Record<Path, number>;
}

const state = {
  bytesByPath: zeroes(),
  transfers: zeroes(),
  fallbacks: Object.create(null) as Record<string, number>,
  errors: 0,
  waits: 0,
  threadpoolChunks: 0,
};

/** @internal */
export function countBytes(path: Path, n: number): void {
  if (n > 0) state.bytesByPath[path] += n;
}
/** @internal */
export function countTransfer(path: Path): void {
  state.transfers[path]++;
}
/** @internal */
export function countFallback(reason: string): void {
  state.fallbacks[reason] = (state.fallbacks[reason] ?? 0) + 1;
}
/** @internal */
export function countError(): void {
  state.errors++;
}
/** @internal */
export function countWait(): void {
  state.waits++;
}
/** @internal */
export function countThreadpoolChunk(): void {
  state.threadpoolChunks++;
}

/**
 * Returns a snapshot of the byte and fallback counters.
 *
 * @example
 * ```ts
 * await sendFile(socket, 'big.iso');
 * const s = stats();
 * console.log(s.bytesZeroCopy, s.bytesByPath.sendfile, s.fallbacks);
 * ```
 */
export function stats(): Stats {
  let zc = 0;
  let copied = 0;
  for (const p of paths) {
    if (zeroCopyPaths.has(p)) zc += state.bytesByPath[p];
    else copied += state.bytesByPath[p];
  }
  return {
    bytesZeroCopy: zc,
    bytesCopied: copied,
    bytesByPath: { ...state.bytesByPath },
    fallbacks: { ...state.fallbacks },
    transfers: { ...state.transfers },
    errors: state.errors,
    waits: state.waits,
    threadpoolChunks: state.threadpoolChunks,
  };
}

/** Resets every counter to zero (for tests and benchmarks). */
export function resetStats(): void {
  state.bytesByPath = zeroes();
  state.transfers = zeroes();
  state.fallbacks = Object.create(null) as Record<string, number>;
  state.errors = 0;
  state.waits = 0;
  state.threadpoolChunks = 0;
}
