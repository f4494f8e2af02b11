/**
 * The terminal report of `zcopy bench`: one table per transport, each
 * figure tagged with how it was obtained, and a footer that says so.
 *
 * @module
 */
import type { BenchRaw } from './run.js';
import type { Figure, MechanismSummary, Source } from './summary.js';

/** One-letter tags printed after each figure. */
export const TAG: Record<Source, string> = { traced: 'T', kernel: 'K', program: 'P', inferred: 'I' };

/** What the tags mean (the report's footer). */
export const LEGEND = [
  'T = counted by the kernel: tracepoints recorded with perf (one traced run, its window cut out by marker syscalls)',
  'K = a kernel counter the process read itself: getrusage (CPU, switches, faults), /proc/PID/io; GB/s: bytes / wall time (P)',
  'P = counted by the program: the C loops count each syscall they make and the bytes they read/write; zcopy counts its paths in stats()',
  'I = inferred from syscall semantics (a read() copies what it returns into user memory, a write() copies out of it), not counted',
  '- = not available here (the JSON says why)',
];

const TRANSPORT: Record<string, string> = { unix: 'Unix socket', tcp: 'loopback TCP', file: 'file -> file' };

/** A number for a table: thousands separated from 1,000, else `digits` decimals; '-' for none. */
export function fmtNum(x: number | null, digits = 2): string {
  if (x === null || !Number.isFinite(x)) return '-';
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString('en-US');
  return x.toFixed(digits);
}

/** Bytes as B / KiB / MiB / GiB when exact. */
export function fmtSize(n: number): string {
  for (const [u, s] of [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (n >= s && n % s === 0) return `${n / s} ${u}`;
  }
  return `${n} B`;
}

const tag = (f: Figure): string => (f.source ? TAG[f.source] : '');

function cell(f: Figure, digits = 2, range = true): string {
  if (f.median === null) return '-';
  const r = range && f.n > 1 ? ` [${fmtNum(f.min, digits)}-${fmtNum(f.max, digits)}]` : '';
  return `${fmtNum(f.median, digits)}${r} ${tag(f)}`;
}

function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const w = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => r.map((c, i) => (c ?? '').padEnd(w[i]!)).join('  ').trimEnd();
  return [line(header), line(w.map((n) => '-'.repeat(n))), ...rows.map(line)].join('\n');
}

function copiesCell(s: MechanismSummary): string {
  const c = s.copies;
  const parts = [c.senderKToU, c.senderUToK];
  if (s.transport === 'file') parts.push(c.kernel);
  else parts.push(c.receiverKToU);
  const v = parts.map((f) => (f.median === null ? '?' : fmtNum(f.median, f.median % 1 === 0 ? 0 : 2)));
  const tags = [...new Set(parts.map(tag).filter(Boolean))].join('');
  return `${v.join(' + ')} ${tags}`;
}

function topCalls(r: Record<string, number> | null, n = 6): string {
  if (!r) return '-';
  return Object.entries(r)
    .filter(([, v]) => v >= 0.5)
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, v]) => `${k} ${fmtNum(v, 0)}`)
    .join(', ') || '0';
}

/** The whole report as text. */
export function formatReport(raw: BenchRaw, sums: MechanismSummary[]): string {
  const m = raw.meta;
  const out: string[] = [];
  out.push(`zcopy bench: ${fmtSize(m.size)} page-cached file, ${m.runs} timed run(s) per mechanism, median [min-max]`);
  out.push(`machine: ${m.machine.cpus} CPUs (${m.machine.cpuModel ?? '?'}), Linux ${m.machine.kernel}, Node ${m.machine.node}; files on ${m.filesystem} (${m.dir})`);
  out.push(`placement: ${m.placement}`);
  out.push(m.trace.used
    ? `kernel tracing: on (${m.trace.perf}; events ${m.trace.events.join(', ')})`
    : `kernel tracing: off (${m.trace.reason}); syscalls of Node processes and the kernel's file copy are not available`);
  const lost = sums.filter((s) => raw.runs.some((r) => r.transport === s.transport && r.mechanism === s.mechanism && (r.trace?.sender.lost || r.trace?.sink?.lost)));
  if (lost.length) out.push(`perf lost events while tracing ${lost.map((s) => `${s.transport}/${s.mechanism}`).join(', ')}: their kernel counts are not used (program counts instead)`);
  if (m.skipped.length) out.push(`not run: ${m.skipped.map((x) => `${x.mechanism} on ${x.transport} (${x.reason})`).join('; ')}`);
  out.push('per GiB figures have a no-data baseline run (empty file, same processes) subtracted; CPU = user+sys of each process');
  for (const t of m.transports) {
    const rows = sums.filter((s) => s.transport === t);
    if (!rows.length) continue;
    const file = t === 'file';
    out.push('', `## ${TRANSPORT[t]}${file ? ' (the receiver is the destination file)' : ' -> C sink process (read() into a 128 KiB buffer)'}`, '');
    const header = ['mechanism', 'GB/s', file ? 'CPU s/GiB' : 'CPU s/GiB send + recv', file ? 'syscalls/GiB' : 'syscalls/GiB send, recv', 'mode sw/GiB', 'sched sw/GiB vol+invol', 'faults/GiB',
      file ? 'copies/B k>u + u>k + kernel' : 'copies/B send k>u + u>k + recv k>u', 'cache'];
    const body = rows.map((s) => [
      s.label + (s.timedUnderTrace ? ' *' : ''),
      cell(s.gbps),
      file ? cell(s.cpuSender, 3, false) : `${fmtNum(s.cpuSender.median, 3)} + ${fmtNum(s.cpuReceiver.median, 3)} ${tag(s.cpuSender)}`,
      file ? cell(s.syscallsSender, 0, false) : `${fmtNum(s.syscallsSender.median, 0)}, ${fmtNum(s.syscallsReceiver.median, 0)} ${tag(s.syscallsSender) || tag(s.syscallsReceiver)}`.trim(),
      cell(s.modeSwitches, 0, false),
      `${fmtNum(s.schedVoluntary.median, 0)} + ${fmtNum(s.schedInvoluntary.median, 0)} ${tag(s.schedVoluntary)}`,
      cell(s.faults, 0, false),
      copiesCell(s),
      s.pageCacheHit === null ? '?' : s.pageCacheHit ? 'hit' : `MISS (${fmtNum(s.readBytes, 0)} B read)`,
    ]);
    out.push(table(header, body));
    out.push('', 'sender syscalls per GiB by type:');
    for (const s of rows) out.push(`  ${s.label.padEnd(18)} ${topCalls(s.syscallsByType.sender)}`);
    const errs = rows.filter((s) => s.errors.length);
    for (const s of errs) out.push(`  ${s.label}: ${s.errors.length} failed run(s): ${s.errors[0]}`);
    if (rows.some((s) => s.timedUnderTrace)) out.push('  * GB/s and CPU measured while perf traced the run (slower than untraced)');
  }
  out.push('', 'mode switches = 2 x syscalls (sender + receiver) + user-mode page faults (all faults without the tracer: an upper bound)');
  out.push('sched sw = scheduler (context) switches of both processes; faults = all page faults of both, user- and kernel-mode (getrusage)');
  out.push('copies/B = bytes the CPU copied per byte delivered; "?" = not available without --trace');
  out.push('', ...LEGEND);
  return out.join('\n');
}
