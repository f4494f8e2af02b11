// Which mechanism `mechanism: 'auto'` picks, and why. The table is the
// evidence of bench/core (docs/benchmarks.md): change it only with numbers.
export type Mechanism = 'auto' | 'sendfile' | 'splice' | 'copy';
export type ConcreteMechanism = Exclude<Mechanism, 'auto'>;
/** What the socket is: a Unix socket, TCP to this host, or TCP elsewhere. */
export type Transport = 'unix' | 'tcp-loopback' | 'tcp';

export const MECHANISMS: readonly Mechanism[] = ['auto', 'sendfile', 'splice', 'copy'];

/**
 * The choice of `auto` per transport.
 * - unix: sendfile. Page references move into the receiver's queue; the
 *   only copy is the receiver's read.
 * - tcp (a real NIC): sendfile, as nginx does: no user-space copy, and the
 *   NIC can gather from the page cache.
 * - tcp-loopback: see AUTO_LOOPBACK below.
 */
export const AUTO: Readonly<Record<Transport, ConcreteMechanism>> = {
  unix: 'sendfile',
  tcp: 'sendfile',
  'tcp-loopback': 'sendfile',
};

export function chooseMechanism(requested: Mechanism, transport: Transport, off: { sendfile: boolean; splice: boolean }): ConcreteMechanism {
  let m: ConcreteMechanism = requested === 'auto' ? AUTO[transport] : requested;
  if (m === 'sendfile' && off.sendfile) m = off.splice ? 'copy' : 'splice';
  if (m === 'splice' && off.splice) m = off.sendfile ? 'copy' : 'sendfile';
  return m;
}
