/**
 * Kernel-counted figures for `zcopy bench --trace`: each bench child runs
 * under `perf record` with a short list of tracepoints (a long list slows
 * every task on the machine), and the record is cut to the child's window
 * by its marker syscalls (fstat of MARK_BEGIN / MARK_END).
 *
 * What each tracepoint gives (docs/zero-copy-explained.md):
 *  - raw_syscalls:sys_enter/sys_exit: syscalls by type; the return value of
 *    a read-family call is bytes copied kernel -> user, of a write-family
 *    call bytes copied user -> kernel, of sendfile/splice/copy_file_range
 *    bytes moved without a trip through user memory;
 *  - exceptions:page_fault_user: user page faults (mode switches too);
 *  - skb:skb_copy_datagram_iovec: the receiver's copy out of socket buffers;
 *  - sock:sock_send_length: bytes queued on a socket, split by the syscall
 *    in progress (write family: copied; sendfile/splice: page references);
 *  - ext4:ext4_da_write_end: page-cache writes; inside copy_file_range,
 *    sendfile or splice they are the kernel's own copy (file -> file).
 *
 * @module
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';

/** fstat() of these fds (EBADF, harmless) marks a child's window for the tracer. */
export const MARK_BEGIN = 0x7ffffff0;
export const MARK_END = 0x7ffffff1;

const REQUIRED = ['raw_syscalls:sys_enter', 'raw_syscalls:sys_exit'];
const OPTIONAL = ['exceptions:page_fault_user', 'skb:skb_copy_datagram_iovec', 'sock:sock_send_length', 'ext4:ext4_da_write_end'];

/** Whether kernel tracing can be used here, and how. */
export interface TraceSupport {
  available: boolean;
  /** Why not, or what is missing; a line the user can act on. */
  reason?: string;
  perf?: string;
  events: string[];
}

function tracefsHas(event: string): boolean {
  const [sys, name] = event.split(':');
  return ['/sys/kernel/tracing/events', '/sys/kernel/debug/tracing/events'].some((d) => fs.existsSync(path.join(d, sys!, name!)));
}

/**
 * Detects `perf` with syscall tracepoints (root, or perf_event_paranoid
 * -1). Probes with a real `perf record` of `true`, which also mounts tracefs.
 */
export function detectTrace(): TraceSupport {
  const hint = 'install perf (Debian/Ubuntu: apt-get install linux-perf, or linux-tools-$(uname -r)) and run as root';
  const v = spawnSync('perf', ['--version'], { encoding: 'utf8' });
  if (v.error || v.status !== 0) return { available: false, reason: `perf not found: ${hint}`, events: [] };
  const perf = v.stdout.trim();
  let paranoid = 2;
  try {
    paranoid = Number(fs.readFileSync('/proc/sys/kernel/perf_event_paranoid', 'utf8'));
  } catch {
    // Unknown: the probe decides.
  }
  if (process.getuid?.() !== 0 && paranoid > -1) {
    return { available: false, reason: `tracepoints need root (or kernel.perf_event_paranoid = -1; it is ${paranoid})`, perf, events: [] };
  }
  const tmp = path.join(os.tmpdir(), `zcopy-trace-probe-${process.pid}.data`);
  const probe = spawnSync('perf', ['record', '-q', '-o', tmp, '-e', REQUIRED.join(','), '--', 'true'], { encoding: 'utf8', timeout: 30_000 });
  fs.rmSync(tmp, { force: true });
  if (probe.status !== 0) {
    return { available: false, reason: `perf record of raw_syscalls failed: ${(probe.stderr || probe.error?.message || '').trim().split('\n')[0]}`, perf, events: [] };
  }
  return { available: true, perf, events: [...REQUIRED, ...OPTIONAL.filter(tracefsHas)] };
}

/** The command line that runs argv under perf record into `out`. */
export function perfWrap(support: TraceSupport, out: string, argv: string[]): string[] {
  return ['perf', 'record', '-o', out, '-m', '2048', '-e', support.events.join(','), '--', ...argv];
}

/** One process's window, as the kernel counted it. */
export interface TraceCounts {
  /** Syscalls entered in the window, by name. */
  syscalls: Record<string, number>;
  /** User page faults (null: tracepoint missing). */
  faults: number | null;
  /** Bytes returned by read-family syscalls: copied kernel -> user. */
  kToU: number;
  /** Bytes returned by write-family syscalls: copied user -> kernel. */
  uToK: number;
  /** Bytes returned by sendfile/splice/tee/copy_file_range: moved without user memory. */
  moved: number;
  /** Receive copies out of socket buffers (null: tracepoint missing). */
  skbCopied: number | null;
  /** sock_send_length inside a write-family call (copied) / any other call (page references). */
  sockSendCopied: number | null;
  sockSendRefs: number | null;
  /** ext4 page-cache writes inside a non-write syscall: the kernel's own copy (null: not ext4 or tracepoint missing). */
  kernelFileCopy: number | null;
  /** Both markers were seen (else the record did not cover the window). */
  window: boolean;
  /** perf said it lost events. */
  lost: boolean;
}

const READ = new Set(['read', 'pread64', 'readv', 'preadv', 'preadv2', 'recvfrom', 'recvmsg', 'recvmmsg']);
const WRITE = new Set(['write', 'pwrite64', 'writev', 'pwritev', 'pwritev2', 'sendto', 'sendmsg', 'sendmmsg']);
const MOVE = new Set(['sendfile', 'sendfile64', 'splice', 'tee', 'copy_file_range']);

let names: Map<number, string> | null = null;
/** Syscall numbers -> names from the installed kernel headers, or a built-in x86_64 list. */
export function syscallNames(): Map<number, string> {
  if (names) return names;
  names = new Map();
  const headers = os.arch() === 'x64'
    ? ['/usr/include/x86_64-linux-gnu/asm/unistd_64.h', '/usr/include/asm/unistd_64.h']
    : ['/usr/include/asm-generic/unistd.h'];
  for (const h of headers) {
    try {
      for (const m of fs.readFileSync(h, 'utf8').matchAll(/^#define __NR(?:3264)?_(\w+)\s+(\d+)\s*$/gm)) {
        if (!names.has(Number(m[2]))) names.set(Number(m[2]), m[1]!);
      }
      if (names.size) break;
    } catch {
      // Try the next one.
    }
  }
  // Older headers lack newer calls (cachestat): fill the gaps.
  if (os.arch() === 'x64') {
    const x64: Record<number, string> = {
      0: 'read', 1: 'write', 3: 'close', 5: 'fstat', 7: 'poll', 8: 'lseek', 9: 'mmap', 10: 'mprotect', 11: 'munmap', 12: 'brk',
      13: 'rt_sigaction', 14: 'rt_sigprocmask', 16: 'ioctl', 17: 'pread64', 18: 'pwrite64', 19: 'readv', 20: 'writev', 28: 'madvise',
      32: 'dup', 39: 'getpid', 40: 'sendfile', 44: 'sendto', 45: 'recvfrom', 46: 'sendmsg', 47: 'recvmsg', 48: 'shutdown', 72: 'fcntl',
      202: 'futex', 213: 'epoll_create', 221: 'fadvise64', 228: 'clock_gettime', 232: 'epoll_wait', 233: 'epoll_ctl', 257: 'openat',
      262: 'newfstatat', 275: 'splice', 276: 'tee', 281: 'epoll_pwait', 284: 'eventfd', 290: 'eventfd2', 291: 'epoll_create1',
      293: 'pipe2', 295: 'preadv', 296: 'pwritev', 326: 'copy_file_range', 327: 'preadv2', 328: 'pwritev2', 332: 'statx',
      441: 'epoll_pwait2', 451: 'cachestat',
    };
    for (const [k, v] of Object.entries(x64)) if (!names.has(Number(k))) names.set(Number(k), v);
  }
  return names;
}

const nameOf = (nr: number): string => syscallNames().get(nr) ?? `nr_${nr}`;

/** An empty count for a process seen in the record. */
function emptyCounts(support: TraceSupport, lost: boolean): TraceCounts {
  const has = (e: string): boolean => support.events.includes(e);
  return {
    syscalls: {},
    faults: has('exceptions:page_fault_user') ? 0 : null,
    kToU: 0,
    uToK: 0,
    moved: 0,
    skbCopied: has('skb:skb_copy_datagram_iovec') ? 0 : null,
    sockSendCopied: has('sock:sock_send_length') ? 0 : null,
    sockSendRefs: has('sock:sock_send_length') ? 0 : null,
    kernelFileCopy: null,
    window: false,
    lost,
  };
}

/**
 * Reads a perf.data file covering many bench children and counts, for each
 * process, the events between its own markers. `perf script` lines look like
 * `  1234/1240  raw_syscalls:sys_enter: NR 0 (3, 7f.., 20000, ...)`.
 * Returns counts by pid, for the processes whose window began.
 */
export async function parseTrace(support: TraceSupport, file: string): Promise<Map<number, TraceCounts>> {
  let lost = false;
  const begin = MARK_BEGIN.toString(16);
  const end = MARK_END.toString(16);
  const procs = new Map<number, { c: TraceCounts; state: 'in' | 'after' }>();
  const inflight = new Map<number, string>();
  const child = spawn('perf', ['script', '-i', file, '-F', 'pid,tid,event,trace'], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr!.on('data', (d: Buffer) => {
    if (/lost/i.test(d.toString())) lost = true;
  });
  const rl = createInterface({ input: child.stdout! });
  for await (const line of rl) {
    const m = /^\s*(\d+)\/(\d+)\s+([\w:]+):\s*(.*)$/.exec(line);
    if (!m) continue;
    const pid = Number(m[1]);
    const tid = Number(m[2]);
    const ev = m[3]!;
    const body = m[4]!;
    let p = procs.get(pid);
    if (ev === 'raw_syscalls:sys_enter') {
      const e = /^NR (\d+) \(([0-9a-f]+)/.exec(body);
      if (!e) continue;
      if (!p) {
        if (e[2] === begin) procs.set(pid, { c: emptyCounts(support, lost), state: 'in' });
        continue;
      }
      if (p.state === 'after') continue;
      if (e[2] === end) {
        p.state = 'after';
        p.c.window = true;
        continue;
      }
      const name = nameOf(Number(e[1]));
      p.c.syscalls[name] = (p.c.syscalls[name] ?? 0) + 1;
      inflight.set(tid, name);
      continue;
    }
    if (!p || p.state !== 'in') continue;
    const c = p.c;
    if (ev === 'raw_syscalls:sys_exit') {
      const x = /^NR (\d+) = (-?\d+)/.exec(body);
      inflight.delete(tid);
      if (!x) continue;
      const ret = Number(x[2]);
      if (ret <= 0) continue;
      const name = nameOf(Number(x[1]));
      if (READ.has(name)) c.kToU += ret;
      else if (WRITE.has(name)) c.uToK += ret;
      else if (MOVE.has(name)) c.moved += ret;
    } else if (ev === 'exceptions:page_fault_user') {
      c.faults! += 1;
    } else if (ev === 'skb:skb_copy_datagram_iovec') {
      const len = /len=(\d+)/.exec(body);
      if (len) c.skbCopied! += Number(len[1]);
    } else if (ev === 'sock:sock_send_length') {
      const len = /length = (\d+)/.exec(body);
      const n = len ? Number(len[1]) : 0;
      if (n > 0) {
        if (WRITE.has(inflight.get(tid) ?? '')) c.sockSendCopied! += n;
        else c.sockSendRefs! += n;
      }
    } else if (ev === 'ext4:ext4_da_write_end') {
      const copied = /copied (\d+)/.exec(body);
      const during = inflight.get(tid) ?? '';
      c.kernelFileCopy ??= 0;
      if (copied && !WRITE.has(during)) c.kernelFileCopy += Number(copied[1]);
    }
  }
  await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('close', r)));
  const out = new Map<number, TraceCounts>();
  for (const [pid, p] of procs) out.set(pid, { ...p.c, lost });
  return out;
}
