/**
 * Runs `zcopy bench`: for each transport and mechanism, a no-data baseline,
 * N timed runs and (when tracing) a traced run and a traced baseline, each
 * one sender process against one sink process, pinned, with the file warm.
 *
 * @module
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ChildFigures } from './child.js';
import { MECHANISMS, mechanismByName, type BenchMechanism, type BenchTransport } from './mechanisms.js';
import { detectTrace, parseTrace, perfWrap, type TraceCounts, type TraceSupport } from './trace.js';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'child.js');

/** Options of {@link runBench}, validated by the CLI. */
export interface BenchOptions {
  transports: BenchTransport[];
  /** File size in bytes. */
  size: number;
  runs: number;
  /** Mechanism names; null = all that apply. */
  mechanisms: string[] | null;
  trace: 'auto' | 'off';
  /** [senderCpu, sinkCpu], or null for no pinning. */
  cpus: [number, number] | null;
  /** Where the data file, sockets and copies go. */
  dir: string;
  /**
   * When tracing works, skip the untraced runs and take throughput and CPU
   * from the traced run (--quick: one set of runs instead of two).
   */
  timeTraced?: boolean;
  /** Progress lines (stderr in the CLI). */
  progress?: (line: string, final?: boolean) => void;
}

/** One sender/sink pair's run. */
export interface RunRecord {
  transport: BenchTransport;
  mechanism: string;
  /** baseline: an empty file; run: timed; traced: under perf (counts only). */
  kind: 'baseline' | 'run' | 'traced' | 'traced-baseline';
  index: number;
  sender?: ChildFigures;
  sink?: ChildFigures;
  trace?: { sender: TraceCounts; sink?: TraceCounts };
  error?: string;
}

/** Everything a bench run produced, as written to --json. */
export interface BenchRaw {
  meta: {
    date: string;
    command: string;
    machine: { kernel: string; cpus: number; cpuModel?: string; memGiB: number; node: string; arch: string };
    size: number;
    runs: number;
    transports: BenchTransport[];
    mechanisms: Record<BenchTransport, string[]>;
    placement: string;
    cpus: [number, number] | null;
    trace: { requested: 'auto' | 'off'; used: boolean; reason?: string; perf?: string; events: string[] };
    dir: string;
    filesystem: string;
    elapsedS: number;
    skipped: { mechanism: string; transport: BenchTransport; reason: string }[];
  };
  runs: RunRecord[];
}

const FS_TYPES: Record<number, string> = {
  0xef53: 'ext4', 0x01021994: 'tmpfs', 0x9123683e: 'btrfs', 0x58465342: 'xfs', 0x794c7630: 'overlayfs', 0x6969: 'nfs', 0x2fc12fc1: 'zfs',
};

function filesystem(dir: string): string {
  try {
    const t = fs.statfsSync(dir).type;
    return FS_TYPES[t] ?? `0x${t.toString(16)}`;
  } catch {
    return 'unknown';
  }
}

/** Mechanisms of a transport, in the table's order. */
export function mechanismsFor(transport: BenchTransport, only: string[] | null): BenchMechanism[] {
  return MECHANISMS.filter((m) => m.transports.includes(transport) && (only === null ? !m.optIn : only.includes(m.name)));
}

/** Every child process running now (sinks, senders, perf). */
const live = new Set<ChildProcess>();

function track(child: ChildProcess): ChildProcess {
  live.add(child);
  child.once('close', () => live.delete(child));
  return child;
}

/**
 * Kills every child still running (the CLI calls it on SIGINT/SIGTERM).
 * Children also die with their parent (PR_SET_PDEATHSIG); perf does not, so
 * it must be killed here, and its driver follows it.
 */
export function stopChildren(): void {
  for (const c of live) c.kill('SIGKILL');
}

/** A child whose stdout is JSON lines. */
function jsonChild(argv: string[], env: NodeJS.ProcessEnv, timeoutMs: number) {
  const child = track(spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env }));
  const lines: unknown[] = [];
  const waiters: ((v: unknown) => void)[] = [];
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    if (stderr.length < 64 * 1024) stderr += d.toString();
  });
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      return;
    }
    const w = waiters.shift();
    if (w) w(v);
    else lines.push(v);
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const exited = new Promise<number | string>((resolve) => {
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      for (const w of waiters.splice(0)) w(undefined);
      resolve(code ?? signal ?? 'unknown');
    });
    child.once('error', (err) => {
      stderr += err.message;
    });
  });
  const fail = (what: string): Error => new Error(`${what}${stderr.trim() ? `: ${stderr.trim().split('\n').filter((l) => !l.startsWith('[ perf record')).slice(-3).join(' | ')}` : ''}`);
  return {
    next(): Promise<unknown> {
      if (lines.length) return Promise.resolve(lines.shift());
      return new Promise((resolve) => waiters.push(resolve));
    },
    async result(): Promise<unknown> {
      const code = await exited;
      if (code !== 0) throw fail(`exit ${code}`);
      const last = lines.pop();
      if (last === undefined) throw fail('no result');
      return last;
    },
    kill(): void {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
    get stderr(): string {
      return stderr;
    },
    exited,
  };
}

function childEnv(mech?: BenchMechanism): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.ZCOPY_FORCE_FALLBACK;
  return { ...env, ...(mech?.env ?? {}) };
}

function ensureDataFile(file: string, size: number, progress: (l: string) => void): void {
  if (fs.existsSync(file) && fs.statSync(file).size === size) return;
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  const buf = Buffer.allocUnsafe(Math.min(size, 1 << 20) || 1);
  try {
    for (let at = 0; at < size; at += buf.length) {
      const n = Math.min(buf.length, size - at);
      randomFillSync(buf, 0, n);
      fs.writeSync(fd, buf, 0, n);
      if ((at & ((256 << 20) - 1)) === 0) progress(`creating ${file}: ${Math.round((at / size) * 100)}%`);
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

/** Reads the file once so its pages are cached (each run checks read_bytes). */
function warm(file: string): void {
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(1 << 20);
  try {
    while (fs.readSync(fd, buf, 0, buf.length, null) > 0) {
      // Reading is the point.
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** One sender/sink pair (under perf when the calling process is). */
async function runPair(opts: PairOptions, transport: BenchTransport, mech: BenchMechanism, file: string, id: string): Promise<Omit<RunRecord, 'kind' | 'index'>> {
  const size = fs.statSync(file).size;
  // Generous: 20 MB/s plus start-up, so a stuck run ends instead of hanging.
  const timeoutMs = 60_000 + (size / 20e6) * 1000;
  const mask = (cpu: number | undefined): string => (cpu === undefined ? '0' : String(2 ** cpu));
  const node = process.execPath;
  const cleanup: string[] = [];
  let sink: ReturnType<typeof jsonChild> | null = null;
  let sender: ReturnType<typeof jsonChild> | null = null;
  try {
    let addr: string;
    if (transport === 'file') {
      addr = path.join(opts.dir, `dest-${id}.bin`);
      cleanup.push(addr);
    } else {
      const listen = transport === 'unix' ? path.join(opts.dir, `sink-${id}.sock`) : '0';
      if (transport === 'unix') cleanup.push(listen);
      sink = jsonChild([node, CHILD, 'sink', transport, listen, mask(opts.cpus?.[1])], childEnv(), timeoutMs);
      const first = (await sink.next()) as { listening?: string } | undefined;
      if (!first?.listening) throw new Error(`sink did not start: ${await sink.result().then(() => 'no address', (e: Error) => e.message)}`);
      addr = first.listening;
    }
    sender = jsonChild([node, CHILD, 'send', mech.name, transport, addr, file, String(size), mask(opts.cpus?.[0])], childEnv(mech), timeoutMs);
    // If either side fails, the other must not wait forever for it.
    const sErr = sender.result().catch((e: Error) => {
      sink?.kill();
      throw new Error(`sender: ${e.message}`);
    });
    const kErr = sink?.result().catch((e: Error) => {
      sender?.kill();
      throw new Error(`sink: ${e.message}`);
    });
    const [s, k] = await Promise.all([sErr, kErr]);
    const rec: Omit<RunRecord, 'kind' | 'index'> = { transport, mechanism: mech.name, sender: s as ChildFigures, ...(k ? { sink: k as ChildFigures } : {}) };
    if (rec.sender!.bytes !== size || (rec.sink && rec.sink.bytes !== size)) {
      throw new Error(`moved ${rec.sender!.bytes} bytes, sink got ${rec.sink?.bytes ?? '-'}, expected ${size}`);
    }
    if (transport === 'file' && fs.statSync(addr).size !== size) throw new Error(`destination has ${fs.statSync(addr).size} bytes, expected ${size}`);
    return rec;
  } finally {
    sender?.kill();
    sink?.kill();
    await Promise.all([sender?.exited, sink?.exited]);
    for (const f of cleanup) fs.rmSync(f, { force: true });
    // A file destination: its dirty pages are dropped with it; sync so the
    // next run does not pay for this one's writeback.
    if (transport === 'file') spawnSync('sync', { timeout: 60_000 });
  }
}

/** What a pair needs to know (also sent to the traced driver as JSON). */
interface PairOptions {
  dir: string;
  cpus: [number, number] | null;
}

/** What the traced driver runs: per mechanism, a baseline pair and a data pair. */
interface DriverSpec extends PairOptions {
  transport: BenchTransport;
  mechanisms: string[];
  data: string;
  empty: string;
  /** The bench's pid: perf outlives a killed bench, so the driver checks it between pairs. */
  owner: number;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

type Line = { progress: string } | { record: RunRecord };

/**
 * The traced section, in the `driver` child that runs under one perf
 * record: every pair it starts is traced, and one perf start-up (about a
 * second) is paid per transport instead of per process. Prints JSON lines.
 */
export async function driveTraced(spec: DriverSpec): Promise<void> {
  const put = (l: Line): void => {
    process.stdout.write(`${JSON.stringify(l)}\n`);
  };
  let n = 0;
  for (const name of spec.mechanisms) {
    const mech = mechanismByName(name)!;
    for (const kind of ['traced-baseline', 'traced'] as const) {
      if (!alive(spec.owner)) process.exit(1);
      put({ progress: `${mech.name.padEnd(17)} ${kind}` });
      const file = kind === 'traced' ? spec.data : spec.empty;
      if (kind === 'traced' && n === 1) warm(spec.data);
      try {
        put({ record: { ...(await runPair(spec, spec.transport, mech, file, `${process.pid}-${++n}`)), kind, index: kind === 'traced' ? 1 : 0 } });
      } catch (err) {
        put({ record: { transport: spec.transport, mechanism: name, kind, index: 0, error: (err as Error).message } });
      }
    }
  }
}

/** Runs the driver under perf record, then attributes the counts to each record by pid. */
async function runTraced(trace: TraceSupport, spec: DriverSpec, say: (l: string) => void): Promise<RunRecord[]> {
  const out = path.join(spec.dir, `trace-${process.pid}-${spec.transport}.data`);
  const argv = perfWrap(trace, out, [process.execPath, CHILD, 'driver', JSON.stringify(spec)]);
  const records: RunRecord[] = [];
  try {
    const child = track(spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv() }));
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => {
      if (stderr.length < 64 * 1024) stderr += d.toString();
    });
    const rl = createInterface({ input: child.stdout! });
    rl.on('line', (line) => {
      try {
        const l = JSON.parse(line) as Line;
        if ('progress' in l) say(l.progress);
        else records.push(l.record);
      } catch {
        // Not ours.
      }
    });
    const code = await new Promise<number | string>((resolve) => child.once('close', (c, sig) => resolve(c ?? sig ?? 'unknown')));
    if (code !== 0) throw new Error(`perf record exited with ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
    say('reading the trace (perf script)');
    const counts = await parseTrace(trace, out);
    for (const r of records) {
      if (r.error || !r.sender) continue;
      const s = counts.get(r.sender.pid);
      const k = r.sink ? counts.get(r.sink.pid) : undefined;
      if (s) r.trace = { sender: s, ...(k ? { sink: k } : {}) };
      else r.error = 'the trace has no window for this run';
    }
    return records;
  } finally {
    fs.rmSync(out, { force: true });
    fs.rmSync(`${out}.old`, { force: true });
  }
}

/**
 * Runs the bench and returns every raw figure. Figures of a failed run are
 * replaced by its error; the rest goes on.
 */
export async function runBench(opts: BenchOptions): Promise<BenchRaw> {
  const t0 = Date.now();
  const say = opts.progress ?? ((): void => {});
  const elapsed = (): string => `${Math.round((Date.now() - t0) / 1000)} s`;
  fs.mkdirSync(opts.dir, { recursive: true });
  let trace: TraceSupport | null = null;
  let traceReason: string | undefined;
  if (opts.trace === 'auto') {
    const t = detectTrace();
    if (t.available) trace = t;
    else traceReason = t.reason;
  } else {
    traceReason = '--trace off';
  }
  const data = path.join(opts.dir, `data-${opts.size}.bin`);
  const empty = path.join(opts.dir, 'empty.bin');
  ensureDataFile(data, opts.size, say);
  fs.writeFileSync(empty, '');
  let runId = 0;
  const timedRuns = trace && opts.timeTraced ? 0 : opts.runs;
  const runs: RunRecord[] = [];
  const mechanisms = {} as Record<BenchTransport, string[]>;
  const skipped: BenchRaw['meta']['skipped'] = [];
  for (const transport of opts.transports) {
    const mechs = mechanismsFor(transport, opts.mechanisms);
    mechanisms[transport] = mechs.map((m) => m.name);
    for (const name of opts.mechanisms ?? []) {
      if (!mechs.some((m) => m.name === name)) skipped.push({ mechanism: name, transport, reason: `does not apply to ${transport}` });
    }
    const steps = mechs.length * (timedRuns + (timedRuns > 0 ? 1 : 0));
    let step = 0;
    let warmed = false;
    const one = async (mech: BenchMechanism, kind: RunRecord['kind'], index: number): Promise<void> => {
      step++;
      const what = kind === 'run' ? `run ${index}/${timedRuns}` : kind;
      say(`[${transport}] ${mech.name.padEnd(17)} ${what.padEnd(15)} step ${step}/${steps}`);
      const file = kind.endsWith('baseline') ? empty : data;
      // Reading 1 GiB costs about as much as a run: warm once, then again
      // only after a run that found pages missing (its row says MISS).
      if (file === data && !warmed) {
        warm(data);
        warmed = true;
      }
      try {
        const rec = await runPair(opts, transport, mech, file, `${process.pid}-${++runId}`);
        if ((rec.sender?.readBytes ?? 0) > 0) warmed = false;
        runs.push({ ...rec, kind, index });
      } catch (err) {
        const msg = (err as Error).message;
        runs.push({ transport, mechanism: mech.name, kind, index, error: msg });
        say(`[${transport}] ${mech.name} ${what}: ERROR ${msg}`, true);
      }
    };
    if (timedRuns > 0) for (const mech of mechs) await one(mech, 'baseline', 0);
    // Run-major order, rotated, so no mechanism always follows the same one.
    for (let r = 1; r <= timedRuns; r++) {
      for (let i = 0; i < mechs.length; i++) await one(mechs[(i + r - 1) % mechs.length]!, 'run', r);
    }
    if (trace && mechs.length) {
      const spec: DriverSpec = { dir: opts.dir, cpus: opts.cpus, transport, mechanisms: mechs.map((m) => m.name), data, empty, owner: process.pid };
      say(`[${transport}] traced runs under perf record (kernel counts)`);
      try {
        runs.push(...(await runTraced(trace, spec, (l) => say(`[${transport}] ${l}`))));
      } catch (err) {
        say(`[${transport}] tracing failed: ${(err as Error).message}`, true);
        for (const m of mechs) runs.push({ transport, mechanism: m.name, kind: 'traced', index: 1, error: (err as Error).message });
      }
    }
  }
  say(`done in ${elapsed()}`, true);
  const cpus = os.cpus();
  const placement = opts.cpus === null
    ? 'not pinned (--cpus none): the scheduler places sender and sink'
    : opts.cpus[0] === opts.cpus[1]
      ? `sender and sink pinned to CPU ${opts.cpus[0]} (all their threads)`
      : `sender pinned to CPU ${opts.cpus[0]}, sink to CPU ${opts.cpus[1]}`;
  return {
    meta: {
      date: new Date(t0).toISOString(),
      command: '',
      machine: { kernel: os.release(), cpus: cpus.length, cpuModel: cpus[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version, arch: os.arch() },
      size: opts.size,
      runs: timedRuns || 1,
      transports: opts.transports,
      mechanisms,
      placement,
      cpus: opts.cpus,
      trace: { requested: opts.trace, used: trace !== null, ...(traceReason ? { reason: traceReason } : {}), ...(trace?.perf ? { perf: trace.perf } : {}), events: trace?.events ?? [] },
      dir: opts.dir,
      filesystem: filesystem(opts.dir),
      elapsedS: (Date.now() - t0) / 1000,
      skipped,
    },
    runs,
  };
}
