// Which mechanism `mechanism: 'auto'` picks, and why. The table is the
// evidence of bench/core (docs/benchmarks.md): change it only with numbers.
export type Mechanism = 'auto' | 'sendfile' | 'splice' | 'copy';
export type ConcreteMechanism = Exclude<Mechanism, 'auto'>;
/** What the socket is: a Unix socket, TCP to this host, or TCP elsewhere. */
export type Transport = 'unix' | 'tcp-loopback' | 'tcp';

export const MECHANISMS: readonly Mechanism[] = ['auto', 'sendfile', 'splice', 'copy'];

/**
 * The choice of `auto` per transport, from bench/core's C references on a
 * 2-core Linux 6.18 machine, 1 GiB page-cached file (docs/benchmarks.md):
 *
 *   transport   sendfile        splice          1 MiB copy loop
 *   unix        8.3 GB/s 0.07   8.6 GB/s 0.07   3.2 GB/s 0.27   (GB/s, CPU s/GB)
 *   loopback    1.5 GB/s 0.64   1.6 GB/s 0.57   2.9 GB/s 0.33
 *
 * - unix: sendfile. Page references move to the receiver's queue; the only
 *   copy left is the receiver's own read: 2.6x the copy loop at 1/4 the CPU.
 * - tcp-loopback: copy. Loopback TCP has no NIC to gather from pages, and
 *   its page-fragment path costs more than one memcpy of a 1 MiB buffer
 *   that stays in L2: the copy moves ~1.9x more at ~half the CPU.
 * - tcp (a real NIC): sendfile, as nginx does: the user-space copy and its
 *   cache traffic disappear and the NIC gathers from the page cache. Not
 *   measurable on this machine (no network but loopback).
 */
export const AUTO: Readonly<Record<Transport, ConcreteMechanism>> = {
  unix: 'sendfile',
  tcp: 'sendfile',
  'tcp-loopback': 'copy',
};

export function chooseMechanism(requested: Mechanism, transport: Transport, off: { sendfile: boolean; splice: boolean }): ConcreteMechanism {
  let m: ConcreteMechanism = requested === 'auto' ? AUTO[transport] : requested;
  if (m === 'sendfile' && off.sendfile) m = off.splice ? 'copy' : 'splice';
  if (m === 'splice' && off.splice) m = off.sendfile ? 'copy' : 'sendfile';
  return m;
}
