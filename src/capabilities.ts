/**
 * What this process can do, and why not where it can't.
 *
 * @module
 */
import { release } from 'node:os';
import { native, nativeReason } from './native.js';
import { latchedOff } from './internal/transfer.js';
import { chooseMechanism, type ConcreteMechanism, type Transport } from './internal/mechanism.js';

/** The answer of {@link capabilities}. */
export interface Capabilities {
  /** The native addon is loaded and in use. */
  native: boolean;
  /** Why `native` is false. */
  reason?: string;
  /** sendfile(2) file -> socket. */
  sendfile: boolean;
  /** splice(2) through a pipe. */
  splice: boolean;
  /** copy_file_range(2) file -> file. */
  copyFileRange: boolean;
  /** mmap(2) as Buffers (mapFile). */
  mmap: boolean;
  /** `process.platform`. */
  platform: string;
  /** Kernel release (`os.release()`). */
  kernel: string;
  /** Node.js version. */
  node: string;
  /**
   * What a transfer with `mechanism: 'auto'` would really use per transport
   * now: the native mechanism (a mechanism found missing at run time, such as
   * sendfile failing with ENOSYS, is replaced as the engine replaces it), or
   * `'portable'` (Node reads and writes, no zero-copy) without the addon.
   */
  auto: Record<Transport, ConcreteMechanism | 'portable'>;
}

/**
 * Reports what zcopy can do here. Never throws: without the addon every
 * API still works through the portable (copying) path, and `reason` says why.
 *
 * @example
 * ```ts
 * const caps = capabilities();
 * if (!caps.native) console.warn('zcopy: portable path:', caps.reason);
 * ```
 */
export function capabilities(): Capabilities {
  const off = latchedOff();
  const has = native !== null;
  const caps: Capabilities = {
    native: has,
    sendfile: has && !off.sendfile,
    splice: has && !off.splice && typeof native?.splice === 'function',
    copyFileRange: has && typeof native?.copyFileRangeAsync === 'function',
    mmap: has && typeof native?.mmap === 'function',
    platform: process.platform,
    kernel: release(),
    node: process.version,
    auto: { unix: 'portable', 'tcp-loopback': 'portable', tcp: 'portable' },
  };
  // The engine's own choice (src/internal/transfer.ts), not the table alone.
  if (has) for (const t of ['unix', 'tcp-loopback', 'tcp'] as const) caps.auto[t] = chooseMechanism('auto', t, off);
  if (!has) caps.reason = nativeReason;
  return caps;
}
