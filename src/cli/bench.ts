// `zcopy bench`: the zero-copy analysis, measured on this machine (issue 10).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { OPTIONS, help, invalid, parseChoice, parseCount, parseOptions, parseSize as parseSizeOption } from './common.js';
import { MECHANISMS, TRANSPORTS, type BenchTransport } from '../bench/mechanisms.js';

const HELP = `Usage: zcopy bench [options]

Measures how each way of moving a page-cached file costs on this machine:
C read/write, mmap+write, sendfile, splice (and copy_file_range for files),
Node's stream pipe / fs.copyFile, and zcopy's own paths. Each mechanism runs
as its own sender process against a C sink process, pinned to one CPU.

Options:
  --transport T      unix | tcp | file | all (default unix; a list: unix,file)
  --size N           file size: 1GiB, 256MiB, 64KiB, ... (default 1GiB)
  --runs N           timed runs per mechanism (default 5)
  --mechanisms LIST  comma-separated, from: ${MECHANISMS.map((m) => m.name).join(', ')}
                     (${MECHANISMS.filter((m) => m.optIn).map((m) => m.name).join(', ')}: only when named here;
                     they show what the send buffer does, zcopy asking for 4 MiB on Unix sockets)
  --json FILE        write every raw figure and the summaries as JSON to FILE
                     (the table still goes to stdout)
  --svg FILE         write the charts and copy diagrams as SVG
  --trace MODE       auto: count syscalls and copies in the kernel with perf
                     tracepoints when root and perf are available; off: only
                     what the programs count themselves (default auto)
  --cpus LIST        CPU for sender and sink ("1"), one each ("0,1"), or
                     "none" (default: the last CPU, both)
  --dir DIR          where the data file (kept for the next run) and sockets
                     go (default ${path.join(os.tmpdir(), 'zcopy-bench')})
  --quick            a first look in < 30 s: 64 MiB, 1 run, fewer mechanisms
  -h, --help         this help

Sizes take a byte count or 64KiB, 256MiB, 1GiB (binary units).
Exit status: 0 done, 1 a mechanism failed every run, 2 usage error.

Without perf: apt-get install linux-perf (Debian; linux-tools-$(uname -r) on
Ubuntu), then run as root. The bench never installs anything itself.
`;

const QUICK_MECHANISMS = ['c-read-write', 'c-mmap-write', 'c-sendfile', 'c-splice', 'c-copy-file-range', 'node-pipe', 'node-copyfile', 'zcopy-auto', 'zcopy-portable', 'zcopy-copyfile'];

/** --size of `zcopy bench`: 1GiB, 512MiB, 64k or a plain byte count, from 4 KiB to 1 TiB. */
export function parseSize(s: string): number {
  return parseSizeOption(s, '--size', 4096, 2 ** 40);
}

function parseCpus(s: string | undefined): [number, number] | null {
  const n = os.cpus().length;
  if (s === undefined) return [n - 1, n - 1];
  if (s === 'none') return null;
  const list = s.split(',').map((x) => x.trim());
  if (list.length > 2 || list.some((c) => !/^\d+$/.test(c) || Number(c) >= Math.min(n, 53))) {
    throw invalid(`invalid --cpus '${s}': expected one or two CPU numbers below ${n} (0,1), or none`);
  }
  return [Number(list[0]), Number(list[1] ?? list[0])];
}

/** A comma-separated list whose every item is one of `choices` (`all` for all of them where `all`). */
function parseList<C extends string>(text: string, label: string, choices: readonly C[], all = false): C[] {
  if (all && text === 'all') return [...choices];
  const items = text.split(',').map((t) => t.trim()).filter(Boolean);
  if (items.length === 0) throw invalid(`invalid ${label} '${text}': expected a comma-separated list`);
  const parsed: string[] = items.map((t) => parseChoice(t, label, all ? ([...choices, 'all'] as C[]) : choices));
  return parsed.includes('all') ? [...choices] : (parsed as C[]);
}

/** `zcopy bench [options]`: runs the bench, prints the report; resolves with the exit code. */
export async function benchCommand(argv: string[]): Promise<number> {
  const { values } = parseOptions('bench', argv, {
    transport: { type: 'string' },
    size: { type: 'string' },
    runs: { type: 'string' },
    mechanisms: { type: 'string' },
    // A file here: the table stays on stdout, the JSON goes beside it.
    json: { type: 'string' },
    svg: { type: 'string' },
    trace: { type: 'string' },
    cpus: { type: 'string' },
    dir: { type: 'string' },
    quick: { type: 'boolean', default: false },
    help: { ...OPTIONS.help, default: false },
  });
  if (values.help) return help(HELP);
  const quick = values.quick!;
  const tspec = values.transport ?? 'unix';
  const transports: BenchTransport[] = parseList(tspec, '--transport', TRANSPORTS, true);
  let mechanisms: string[] | null = null;
  if (values.mechanisms !== undefined) {
    mechanisms = parseList(values.mechanisms, '--mechanisms', MECHANISMS.map((m) => m.name));
  } else if (quick) {
    mechanisms = QUICK_MECHANISMS;
  }
  const runs = values.runs === undefined ? (quick ? 1 : 5) : parseCount(values.runs, '--runs', 1, 100);
  const trace = parseChoice(values.trace ?? 'auto', '--trace', ['auto', 'off'] as const);
  const size = values.size !== undefined ? parseSize(values.size) : quick ? 64 * 2 ** 20 : 2 ** 30;
  const cpus = parseCpus(values.cpus);
  const dir = path.resolve(values.dir ?? path.join(os.tmpdir(), 'zcopy-bench'));
  // Every option is checked (exit 2) before the platform and the engine are.
  if (process.platform !== 'linux') throw new Error('zcopy bench measures Linux syscalls: run it on Linux');
  const { mechanismsFor } = await import('../bench/run.js');
  if (transports.every((t) => mechanismsFor(t, mechanisms).length === 0)) {
    throw invalid(`--mechanisms: none of them applies to --transport ${tspec}`);
  }

  const { benchBinding } = await import('../bench/binding.js');
  const { binding, reason } = benchBinding();
  if (!binding) throw new Error(`zcopy bench needs the native addon: ${reason}`);

  // Progress on stderr: one line per step, elapsed time on each; on a
  // terminal the line is rewritten in place and its clock ticks every
  // second, elsewhere a "still running" line comes every 15 s without news,
  // so a long step never looks hung.
  const tty = process.stderr.isTTY;
  const t0 = Date.now();
  const secs = (): string => `${Math.round((Date.now() - t0) / 1000)} s`;
  let current = '';
  let shown = 0;
  let lastAt = Date.now();
  const show = (): void => {
    const l = `zcopy bench: ${current}  (elapsed ${secs()})`.slice(0, (process.stderr.columns ?? 100) - 1);
    process.stderr.write(`\r${l.padEnd(shown)}`);
    shown = l.length;
  };
  const progress = (line: string, final = false): void => {
    lastAt = Date.now();
    if (tty && !final) {
      current = line;
      show();
      return;
    }
    if (tty && shown) process.stderr.write('\n');
    shown = 0;
    process.stderr.write(`zcopy bench: ${line}${final ? '' : `  (elapsed ${secs()})`}\n`);
  };
  const ticker = setInterval(() => {
    if (tty && current) show();
    else if (!tty && Date.now() - lastAt >= 15_000) {
      lastAt = Date.now();
      process.stderr.write(`zcopy bench: still running (elapsed ${secs()})\n`);
    }
  }, 1000);
  ticker.unref();
  const { runBench, stopChildren } = await import('../bench/run.js');
  // Stopped early: take the sinks, senders and perf down too.
  const onSignal = (sig: NodeJS.Signals): void => {
    stopChildren();
    process.stderr.write(`\nzcopy bench: stopped (${sig})\n`);
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const { summarizeAll } = await import('../bench/summary.js');
  const { formatReport } = await import('../bench/report.js');
  let raw;
  try {
    raw = await runBench({ transports, size, runs, mechanisms, trace, cpus, dir, timeTraced: quick, progress });
  } finally {
    clearInterval(ticker);
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
  raw.meta.command = `zcopy bench ${argv.join(' ')}`.trim();
  const sums = summarizeAll(raw);
  process.stdout.write(`${formatReport(raw, sums)}\n`);
  if (values.json) {
    fs.writeFileSync(values.json, `${JSON.stringify({ ...raw, summary: sums }, null, 2)}\n`);
    process.stderr.write(`zcopy bench: wrote ${values.json}\n`);
  }
  if (values.svg) {
    const { renderSvg } = await import('../bench/svg.js');
    fs.writeFileSync(values.svg, renderSvg(raw, sums));
    process.stderr.write(`zcopy bench: wrote ${values.svg}\n`);
  }
  const failed = sums.filter((s) => s.ok === 0);
  return failed.length ? 1 : 0;
}
