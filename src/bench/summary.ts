/**
 * Turns the raw runs of `zcopy bench` into per-mechanism figures: medians
 * and ranges over the runs, per GiB, baseline subtracted, each figure with
 * how it was obtained.
 *
 * @module
 */
import type { ChildFigures } from './child.js';
import { mechanismByName, type BenchTransport } from './mechanisms.js';
import type { BenchRaw, RunRecord } from './run.js';
import type { TraceCounts } from './trace.js';

/**
 * How a figure was obtained:
 * - `traced`: counted by the kernel's tracepoints (perf record), window-cut;
 * - `kernel`: a kernel counter the process read (getrusage, /proc/self/io);
 * - `program`: counted by the program itself (the C loops' own syscall and
 *   byte counts, zcopy's stats());
 * - `inferred`: from syscall semantics (what a read() or write() copies),
 *   not counted by anyone.
 */
export type Source = 'traced' | 'kernel' | 'program' | 'inferred';

/** A figure over the runs; value null = not available (and `why`). */
export interface Figure {
  median: number | null;
  min: number | null;
  max: number | null;
  n: number;
  source: Source | null;
  why?: string;
}

/** One mechanism on one transport. */
export interface MechanismSummary {
  transport: BenchTransport;
  mechanism: string;
  label: string;
  how: string;
  /** Runs that succeeded / were tried. */
  ok: number;
  tried: number;
  errors: string[];
  /** Throughput and CPU were measured while perf traced the processes. */
  timedUnderTrace: boolean;
  gbps: Figure;
  cpuSender: Figure;
  cpuReceiver: Figure;
  syscallsSender: Figure;
  syscallsReceiver: Figure;
  /** Per GiB, by syscall name (sender / receiver), from the best source. */
  syscallsByType: { sender: Record<string, number> | null; receiver: Record<string, number> | null; source: Source | null };
  /** All page faults of both processes per GiB (getrusage). */
  faults: Figure;
  /** User-mode page faults (tracer only): the ones that are mode switches. */
  userFaults: Figure;
  modeSwitches: Figure;
  schedVoluntary: Figure;
  schedInvoluntary: Figure;
  copies: { senderKToU: Figure; senderUToK: Figure; kernel: Figure; receiverKToU: Figure };
  /** Bytes moved without passing through user memory (sendfile/splice/copy_file_range), per byte. */
  pageRefs: Figure;
  /** Every timed run's sender read 0 bytes from disk (/proc/PID/io read_bytes). */
  pageCacheHit: boolean | null;
  readBytes: number | null;
}

const GIB = 2 ** 30;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Median, min and max of the finite values, tagged with their source; none -> not available. */
export function figure(values: (number | null | undefined)[], source: Source | null, why?: string): Figure {
  const v = values.filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
  if (!v.length || source === null) return { median: null, min: null, max: null, n: 0, source: null, why: why ?? 'not measured' };
  return { median: median(v), min: Math.min(...v), max: Math.max(...v), n: v.length, source };
}

const sum = (r: Record<string, number> | undefined | null): number => Object.values(r ?? {}).reduce((a, b) => a + b, 0);

function diffCalls(a: Record<string, number>, b: Record<string, number> | undefined, scale: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of new Set([...Object.keys(a), ...Object.keys(b ?? {})])) {
    const v = ((a[k] ?? 0) - (b?.[k] ?? 0)) * scale;
    if (Math.round(v) !== 0) out[k] = v;
  }
  return out;
}

type Proc = 'sender' | 'sink';

/** The zcopy stats() bytes that went through user memory (copy paths). */
function zcopyUserBytes(f: ChildFigures | undefined): number | null {
  const s = f?.zcopyStats as { bytesCopied?: number } | undefined;
  return typeof s?.bytesCopied === 'number' ? s.bytesCopied : null;
}
function zcopyZeroCopyBytes(f: ChildFigures | undefined): number | null {
  const s = f?.zcopyStats as { bytesZeroCopy?: number } | undefined;
  return typeof s?.bytesZeroCopy === 'number' ? s.bytesZeroCopy : null;
}

/** Summarises one mechanism's runs. */
export function summarize(raw: BenchRaw, transport: BenchTransport, name: string): MechanismSummary {
  const mech = mechanismByName(name)!;
  const mine = raw.runs.filter((r) => r.transport === transport && r.mechanism === name);
  const ok = (kind: RunRecord['kind']): RunRecord[] => mine.filter((r) => r.kind === kind && !r.error && r.sender);
  let baseline = ok('baseline')[0];
  let timed = ok('run');
  const traced = ok('traced')[0];
  const tracedBase = ok('traced-baseline')[0];
  const timedUnderTrace = timed.length === 0 && traced !== undefined;
  if (timedUnderTrace) {
    timed = [traced];
    baseline = tracedBase;
  }
  const errors = mine.filter((r) => r.error).map((r) => `${r.kind} ${r.index}: ${r.error}`);
  const size = raw.meta.size;
  const perGiB = GIB / size;
  const hasSink = transport !== 'file';

  const base = (p: Proc, f: (c: ChildFigures) => number): number => {
    const b = baseline?.[p];
    return b ? f(b) : 0;
  };
  const per = (p: Proc, f: (c: ChildFigures) => number): number[] =>
    // Below zero is baseline noise (the run did less of it than the empty
    // run): it counts as 0.
    timed.filter((r) => r[p]).map((r) => Math.max(0, f(r[p]!) - base(p, f)) * perGiB);

  const cpu = (c: ChildFigures): number => c.userS + c.sysS;
  const faultsOf = (c: ChildFigures): number => c.minflt + c.majflt;
  const traceOf = (p: Proc): [TraceCounts | undefined, TraceCounts | undefined] =>
    [p === 'sender' ? traced?.trace?.sender : traced?.trace?.sink, p === 'sender' ? tracedBase?.trace?.sender : tracedBase?.trace?.sink];
  const traceOk = (p: Proc): boolean => {
    const [t, b] = traceOf(p);
    return !!t && !!b && t.window && b.window && !t.lost;
  };

  // Syscalls: traced, else the C loops' own counts (sender) / the C sink's.
  const syscalls = (p: Proc): { fig: Figure; byType: Record<string, number> | null; source: Source | null } => {
    if (p === 'sink' && !hasSink) return { fig: figure([], null, 'no receiver process'), byType: null, source: null };
    if (traceOk(p)) {
      const [t, b] = traceOf(p);
      const byType = diffCalls(t!.syscalls, b!.syscalls, perGiB);
      return { fig: figure([Math.max(0, sum(t!.syscalls) - sum(b!.syscalls)) * perGiB], 'traced'), byType, source: 'traced' };
    }
    const self = timed.filter((r) => r[p]?.syscalls);
    if (self.length && self.length === timed.length) {
      const byType = diffCalls(self[0]![p]!.syscalls!, baseline?.[p]?.syscalls, perGiB);
      return { fig: figure(per(p, (c) => sum(c.syscalls)), 'program'), byType, source: 'program' };
    }
    return { fig: figure([], null, 'a Node process cannot count its own syscalls: needs --trace (root + perf)'), byType: null, source: null };
  };
  const sS = syscalls('sender');
  const sR = syscalls('sink');

  // Page faults, all of them (getrusage: user- and kernel-mode, e.g. the
  // faults of write() copying out of a fresh mapping), and the user-mode
  // ones the tracer saw, which are the ones that switch modes.
  const rusageFaults = (): Figure => {
    const s = per('sender', faultsOf);
    const k = hasSink ? per('sink', faultsOf) : s.map(() => 0);
    return figure(s.map((x, i) => x + (k[i] ?? 0)), 'kernel');
  };
  const userFaultFig = (): Figure => {
    if (traceOk('sender') && traceOf('sender')[0]!.faults !== null && (!hasSink || traceOk('sink'))) {
      const v = (['sender', 'sink'] as Proc[]).filter((p) => p === 'sender' || hasSink)
        .map((p) => Math.max(0, (traceOf(p)[0]!.faults ?? 0) - (traceOf(p)[1]!.faults ?? 0)) * perGiB);
      return figure([v.reduce((a, b) => a + b, 0)], 'traced');
    }
    return figure([], null, 'user-mode faults are only told apart by the tracer');
  };
  const faults = rusageFaults();
  const userFaults = userFaultFig();
  // Without the tracer, all faults stand in for the user-mode ones (an upper bound).
  const modeFaults = userFaults.median !== null ? userFaults : faults;
  const modeSwitches = sS.fig.median !== null && (!hasSink || sR.fig.median !== null) && modeFaults.median !== null
    ? figure([2 * (sS.fig.median + (sR.fig.median ?? 0)) + modeFaults.median], sS.source === 'traced' ? 'traced' : 'program')
    : figure([], null, 'needs syscall counts of both processes');

  const sched = (f: (c: ChildFigures) => number): Figure => {
    const s = per('sender', f);
    const k = hasSink ? per('sink', f) : s.map(() => 0);
    return figure(s.map((x, i) => x + (k[i] ?? 0)), 'kernel');
  };

  // Copies per byte.
  const perByte = (bytes: number | null | undefined): number | null => (typeof bytes === 'number' ? bytes / size : null);
  let senderKToU: Figure;
  let senderUToK: Figure;
  let pageRefs: Figure;
  if (traceOk('sender')) {
    const [t, b] = traceOf('sender');
    senderKToU = figure([perByte(t!.kToU - b!.kToU)], 'traced');
    senderUToK = figure([perByte(t!.uToK - b!.uToK)], 'traced');
    // A splice through a pipe returns each byte twice (file -> pipe, pipe ->
    // socket): what went by the in-kernel path is at most what arrived.
    pageRefs = figure([perByte(Math.min(size, t!.moved - b!.moved))], 'traced');
  } else if (mech.kind === 'c') {
    senderKToU = figure(timed.map((r) => perByte(r.sender!.userCopies?.kToU)), 'program');
    senderUToK = figure(timed.map((r) => perByte(r.sender!.userCopies?.uToK)), 'program');
    pageRefs = figure(timed.map((r) => perByte(r.sender!.bytes - (r.sender!.userCopies?.uToK ?? 0))), 'program');
  } else if (mech.kind === 'zcopy') {
    senderKToU = figure(timed.map((r) => perByte(zcopyUserBytes(r.sender))), 'program');
    senderUToK = figure(timed.map((r) => perByte(zcopyUserBytes(r.sender))), 'program');
    pageRefs = figure(timed.map((r) => perByte(zcopyZeroCopyBytes(r.sender))), 'program');
  } else if (name === 'node-pipe') {
    // fs.read() copies into a Buffer, socket.write() copies out of it.
    senderKToU = figure(timed.map((r) => perByte(r.sender!.bytes)), 'inferred');
    senderUToK = figure(timed.map((r) => perByte(r.sender!.bytes)), 'inferred');
    pageRefs = figure(timed.map(() => 0), 'inferred');
  } else {
    const why = 'libuv picks the syscall at run time: needs --trace';
    senderKToU = figure([], null, why);
    senderUToK = figure([], null, why);
    pageRefs = figure([], null, why);
  }
  let kernel: Figure;
  if (transport !== 'file') {
    kernel = figure([], null, 'no file destination');
  } else if (traceOk('sender') && traceOf('sender')[0]!.kernelFileCopy !== null) {
    const [t, b] = traceOf('sender');
    kernel = figure([perByte((t!.kernelFileCopy ?? 0) - (b!.kernelFileCopy ?? 0))], 'traced');
  } else {
    kernel = figure([], null, raw.meta.trace.used ? `no ext4 page-cache write tracepoint for ${raw.meta.filesystem}` : 'the kernel\'s own page-cache copy is only visible with --trace (ext4)');
  }
  let receiverKToU: Figure;
  if (!hasSink) {
    receiverKToU = figure([], null, 'no receiver process');
  } else if (traceOk('sink') && traceOf('sink')[0]!.skbCopied !== null) {
    const [t, b] = traceOf('sink');
    receiverKToU = figure([perByte(t!.skbCopied! - b!.skbCopied!)], 'traced');
  } else {
    receiverKToU = figure(timed.map((r) => perByte(r.sink?.userCopies?.kToU)), 'program');
  }

  const reads = timed.map((r) => r.sender!.readBytes);
  const known = reads.filter((x): x is number => x !== null);
  return {
    transport,
    mechanism: name,
    label: mech.label,
    how: mech.how,
    ok: timed.length,
    tried: mine.filter((r) => r.kind === (timedUnderTrace ? 'traced' : 'run')).length,
    errors,
    timedUnderTrace,
    gbps: figure(timed.map((r) => size / 1e9 / r.sender!.wallS), 'program'),
    cpuSender: figure(per('sender', cpu), 'kernel'),
    cpuReceiver: hasSink ? figure(per('sink', cpu), 'kernel') : figure([], null, 'no receiver process'),
    syscallsSender: sS.fig,
    syscallsReceiver: sR.fig,
    syscallsByType: { sender: sS.byType, receiver: sR.byType, source: sS.source },
    faults,
    userFaults,
    modeSwitches,
    schedVoluntary: sched((c) => c.nvcsw),
    schedInvoluntary: sched((c) => c.nivcsw),
    copies: { senderKToU, senderUToK, kernel, receiverKToU },
    pageRefs,
    pageCacheHit: known.length === 0 ? null : known.every((x) => x === 0),
    readBytes: known.length ? Math.max(...known) : null,
  };
}

/** Every mechanism of every transport, in run order. */
export function summarizeAll(raw: BenchRaw): MechanismSummary[] {
  return raw.meta.transports.flatMap((t) => (raw.meta.mechanisms[t] ?? []).map((m) => summarize(raw, t, m)));
}
