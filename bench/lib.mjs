// The benchmark harness every scenario under bench/ uses (docs/benchmarks.md):
//
//   options     parseArgs with --help from the script's header comment, sizes
//               (16m, 1GiB), counts, and errors in plain words (exit 2)
//   processes   jsonChild (a child speaking JSON lines), runChild (its one
//               result), track/stopAll (nothing left behind on Ctrl-C),
//               waitLine, waitConnectable, freePort, pinned (taskset)
//   repeating   locked (/tmp/zcopy-bench.lock), waitQuiet, interleave
//               (runs x scenarios, order rotated run by run)
//   statistics  median, spread, ratio; fmt, fmtSpread, fmtRatio, fmtSize,
//               table; xorshift32 (the same input in every process)
//   machine     cpuOfPid, machineBusy, machineBusyAll, machineInfo
//   files       ensureFile (a data file of random bytes), warmFile, compileC
//               and buildC (C peers in bench/.build), writeResults (JSON and
//               the table, bench/results/<name>-<stamp>.json)
//
// Each scenario runs in its own process, several runs, median and spread, a
// peer measured in the same run and reported as a ratio, the command beside
// the figure (STYLE.md, Benchmarks).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

export const benchDir = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(benchDir, '..');
export const buildDir = path.join(benchDir, '.build');
export const resultsDir = path.join(benchDir, 'results');
export const LOCK = process.env.ZCOPY_BENCH_LOCK ?? '/tmp/zcopy-bench.lock';

// ===================================================================== options

/** A usage error: `options()` prints it after the script's name and exits 2. */
export class BenchUsageError extends Error {}

const SIZE_UNITS = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** How a message names a value: `--size` for an option, `TOTAL_BYTES` for an argument. */
const said = (label) => (/^[A-Z]/.test(label) ? label : `--${label}`);

/**
 * Parses a size like 16m, 512MiB, 1g, 64k or a plain byte count (binary
 * units, as `zcopy` options take them).
 */
export function parseSize(s, label = 'size') {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?\s*$/i.exec(String(s));
  const n = m ? Math.round(Number(m[1]) * SIZE_UNITS[(m[2] ?? '').toLowerCase()]) : NaN;
  if (!Number.isSafeInteger(n)) throw new BenchUsageError(`invalid ${said(label)} '${s}': expected a size such as 65536, 64k, 16m, 256MiB or 1g`);
  return n;
}

/** A whole number >= min (runs, streams, connections). */
export function parseCount(s, label, min = 1) {
  const n = Number(s);
  if (!/^\d+$/.test(String(s)) || n < min) throw new BenchUsageError(`invalid ${said(label)} '${s}': expected a whole number >= ${min}`);
  return n;
}

/** A number of seconds > 0 (0.5, 2). */
export function parseSeconds(s, label = 'seconds') {
  const n = Number(s);
  if (!/^\d+(\.\d+)?$/.test(String(s)) || !(n > 0)) throw new BenchUsageError(`invalid ${said(label)} '${s}': expected seconds > 0 such as 0.5 or 2`);
  return n;
}

/** The leading `//` comment of a script: its --help. */
export function headerOf(file) {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const start = lines[0]?.startsWith('#!') ? 1 : 0;
  const end = lines.findIndex((l, i) => i >= start && !l.startsWith('//'));
  return lines.slice(start, end < 0 ? undefined : end).map((l) => l.replace(/^\/\/ ?/, '')).join('\n');
}

/**
 * parseArgs for a bench script (`script`: its import.meta.url): strict, no
 * positionals unless `positionals` says how many; `--help`/`-h` prints the
 * header comment and exits 0; a mistake prints one line and exits 2.
 * `check(values, positionals)` may validate further and throw
 * BenchUsageError (parseSize, parseCount and parseSeconds do).
 */
export function options(script, spec, { argv = process.argv.slice(2), positionals = 0, check } = {}) {
  const file = fileURLToPath(script);
  const name = path.relative(repoRoot, file);
  try {
    const r = parseArgs({ args: argv, options: { ...spec, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
    if (r.values.help) {
      process.stdout.write(`${headerOf(file)}\n`);
      process.exit(0);
    }
    if (r.positionals.length > positionals) throw new BenchUsageError(`unexpected argument '${r.positionals[positionals]}' (${name} --help)`);
    const checked = check ? check(r.values, r.positionals) : undefined;
    return checked ?? r;
  } catch (err) {
    if (!(err instanceof BenchUsageError) && !String(err.code).startsWith('ERR_PARSE_ARGS_')) throw err;
    process.stderr.write(`${name}: ${err instanceof BenchUsageError ? err.message : `${plainParseError(err)} (${name} --help)`}\n`);
    process.exit(2);
  }
}

/** node:util parseArgs errors in plain words, as `zcopy` says them (src/cli/common.ts). */
function plainParseError(err) {
  const msg = String(err.message);
  const opt = /'(?:-\w, )?(--?[\w-]+)/.exec(msg)?.[1] ?? '';
  if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown option '${opt}'`;
  if (/does not take an argument/.test(msg)) return `option ${opt} takes no value`;
  if (/argument missing|ambiguous/.test(msg)) return `option ${opt} needs a value`;
  return msg.split('\n')[0];
}

/** The command line that produced a figure, for the results beside it. */
export function commandLine(script, argv = process.argv.slice(2), { lock = true } = {}) {
  const rel = path.relative(repoRoot, fileURLToPath(script));
  return `${lock ? `flock ${LOCK} ` : ''}node ${rel} ${argv.join(' ')}`.trim();
}

// =================================================================== processes

const tracked = new Set();
const stopCallbacks = [];
let handlersInstalled = false;

function installStopHandlers() {
  if (handlersInstalled) return;
  handlersInstalled = true;
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => {
      stopAll();
      process.exit(130);
    });
  }
}

/**
 * Registers a child process so an interrupted bench (SIGINT/SIGTERM) kills
 * it rather than leaving it running. Returns the child.
 */
export function track(child) {
  installStopHandlers();
  tracked.add(child);
  child.once('exit', () => tracked.delete(child));
  return child;
}

/** Runs `fn` at SIGINT/SIGTERM, after the tracked children are killed (scratch folders). */
export function onStop(fn) {
  installStopHandlers();
  stopCallbacks.push(fn);
}

/** Kills every tracked child now and runs the onStop callbacks. */
export function stopAll() {
  for (const c of tracked) c.kill('SIGKILL');
  for (const f of stopCallbacks.splice(0)) f();
}

/**
 * A child process whose stdout is JSON lines. `next()` resolves with the next
 * parsed line (rejects on exit or timeout); `done()` with all remaining lines
 * once the process exited successfully.
 */
export function jsonChild(cmd, args, { timeoutMs = 180_000, env } = {}) {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: env ?? process.env });
  track(child);
  const lines = [];
  const waiters = [];
  let stderr = '';
  let exit = null;
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const rl = createInterface({ input: child.stdout });
  rl.on('line', (line) => {
    let v;
    try {
      v = JSON.parse(line);
    } catch {
      stderr += `(non-JSON stdout) ${line}\n`;
      return;
    }
    const w = waiters.shift();
    if (w) w.resolve(v);
    else lines.push(v);
  });
  const closed = new Promise((resolve) => {
    child.once('close', (code, signal) => {
      exit = { code, signal };
      for (const w of waiters.splice(0)) w.reject(failure());
      resolve();
    });
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const failure = () => new Error(`${path.basename(cmd)} ${args.join(' ')}: exit ${exit?.code ?? exit?.signal}${stderr ? `\n${stderr.trim()}` : ''}`);
  return {
    child,
    next() {
      if (lines.length) return Promise.resolve(lines.shift());
      if (exit) return Promise.reject(failure());
      return new Promise((resolve, reject) => waiters.push({ resolve, reject }));
    },
    async done() {
      await closed;
      clearTimeout(timer);
      if (exit.code !== 0) throw failure();
      return lines.splice(0);
    },
    async kill() {
      clearTimeout(timer);
      if (!exit) child.kill('SIGTERM');
      await closed;
    },
    get stderr() {
      return stderr;
    },
  };
}

/** Runs a child that prints one JSON result line and exits 0; resolves with that result. */
export async function runChild(cmd, args, opts) {
  const [r] = await jsonChild(cmd, args, opts).done();
  if (r === undefined) throw new Error(`${path.basename(cmd)} ${args.join(' ')}: no result line`);
  return r;
}

/** Runs this same script again as a child scenario (`node <script> ...args`); its one JSON result. */
export function runSelf(script, args, opts) {
  return runChild(process.execPath, [fileURLToPath(script), ...args], opts);
}

/** Resolves with the first stdout line of `child` that contains `pattern`. */
export function waitLine(child, pattern, ms = 15_000) {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout });
    const timer = setTimeout(() => reject(new Error(`no '${pattern}' within ${ms} ms`)), ms);
    rl.on('line', (l) => {
      if (l.includes(pattern)) {
        clearTimeout(timer);
        rl.removeAllListeners('line');
        resolve(l);
      }
    });
    child.once('exit', (code) => reject(new Error(`exited (${code}) before '${pattern}'`)));
  });
}

/** Resolves once something accepts on `a` ({ path } or { port[, host] }), polling every 100 ms up to `ms`. */
export async function waitConnectable(a, ms = 10_000) {
  const t0 = Date.now();
  for (;;) {
    const ok = await new Promise((resolve) => {
      const c = net.connect(a.path ? { path: a.path } : { host: a.host ?? '127.0.0.1', port: a.port });
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() - t0 > ms) throw new Error(`nothing listening on ${JSON.stringify(a)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A free loopback port, for a peer that cannot report one it picked (HAProxy, nginx). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

let tasksetOk;
/** Can processes be pinned to CPUs here (taskset present, 2+ CPUs)? */
export function canPin() {
  tasksetOk ??= os.cpus().length >= 2 && spawnSync('taskset', ['-c', '0', 'true']).status === 0;
  return tasksetOk;
}

/**
 * [cmd, args] that run `cmd args` pinned to `cpu` with taskset when
 * canPin(), unchanged otherwise (or when cpu is null).
 */
export function pinned(cpu, cmd, args) {
  return cpu != null && canPin() ? ['taskset', ['-c', String(cpu), cmd, ...args]] : [cmd, args];
}

// =================================================================== repeating

// True when an ancestor of this process (e.g. `flock LOCK npm run bench`)
// already holds the lock: taking it again from a child would deadlock.
function ancestorHoldsLock() {
  let st;
  try {
    st = fs.statSync(LOCK);
  } catch {
    return false;
  }
  const holders = new Set();
  for (const line of fs.readFileSync('/proc/locks', 'utf8').split('\n')) {
    const f = line.trim().split(/\s+/);
    // "1: FLOCK ADVISORY WRITE <pid> <maj>:<min>:<inode> 0 EOF"
    if (f[1] !== 'FLOCK' || !f[5]) continue;
    if (Number(f[5].split(':')[2]) === st.ino) holders.add(Number(f[4]));
  }
  for (let pid = process.ppid; pid > 1; ) {
    if (holders.has(pid)) return true;
    let stat;
    try {
      stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return false;
    }
    pid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  }
  return false;
}

let inherited = null;

/**
 * Takes /tmp/zcopy-bench.lock (shared by every benchmark on the machine) and
 * returns a release function. A `flock` child holds it for as long as its
 * stdin stays open, so a crash of this process releases it too.
 */
export async function acquireLock() {
  inherited ??= ancestorHoldsLock();
  if (inherited) return async () => {};
  const holder = spawn('flock', [LOCK, 'sh', '-c', 'echo locked; exec cat >/dev/null'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const rl = createInterface({ input: holder.stdout });
  await new Promise((resolve, reject) => {
    rl.once('line', resolve);
    holder.once('exit', (code) => reject(new Error(`flock exited with ${code}`)));
  });
  rl.close();
  return async () => {
    const exited = new Promise((resolve) => holder.once('exit', resolve));
    holder.stdin.end();
    await exited;
  };
}

/** Seconds spent waiting for the lock (other benchmarks holding it). */
export const lockStats = { waitS: 0, acquired: 0 };

/** Runs fn while holding the benchmark lock. */
export async function locked(fn) {
  const t0 = Date.now();
  const release = await acquireLock();
  lockStats.waitS += (Date.now() - t0) / 1000;
  lockStats.acquired++;
  try {
    return await fn();
  } finally {
    await release();
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits (holding the lock, so no other benchmark starts) until the machine
 * is quiet: other processes, such as test suites that do not take the lock,
 * use less than `maxCores` over a 300 ms window. Gives up after `maxWaitS`.
 * Resolves with { waitedS, cores } (cores: the last window's load).
 */
export async function waitQuiet({ maxCores = 0.2, maxWaitS = 20 } = {}) {
  const t0 = Date.now();
  let cores;
  for (;;) {
    const b0 = machineBusyAll();
    const w0 = Date.now();
    await sleep(300);
    cores = (machineBusyAll() - b0) / ((Date.now() - w0) / 1000);
    if (cores < maxCores || (Date.now() - t0) / 1000 >= maxWaitS) break;
    await sleep(700);
  }
  return { waitedS: (Date.now() - t0) / 1000, cores };
}

/**
 * Runs `fn(name, run)` for every scenario name, `runs` times, interleaved:
 * run 1 does every name, then run 2, ..., so drift over time hits every
 * scenario alike; with `rotate` the order shifts by one each run so no
 * scenario always follows the same one. Resolves with { name: [results] }
 * (fn's resolved values, in run order). `each(name, run, result)` sees
 * every result as it comes (progress lines).
 */
export async function interleave(runs, names, fn, { rotate = false, each } = {}) {
  const out = Object.fromEntries(names.map((n) => [n, []]));
  for (let run = 1; run <= runs; run++) {
    const order = rotate ? names.map((_, i) => names[(i + run - 1) % names.length]) : names;
    for (const name of order) {
      const r = await fn(name, run);
      out[name].push(r);
      each?.(name, run, r);
    }
  }
  return out;
}

// ================================================================== statistics

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** {median, min, max, n} of the finite values, or null. */
export function spread(xs) {
  const v = xs.filter((x) => Number.isFinite(x));
  if (!v.length) return null;
  return { median: median(v), min: Math.min(...v), max: Math.max(...v), n: v.length };
}

/** A spread divided by `d` (units: ops/s -> M ops/s), or null. */
export function scaleSpread(s, d) {
  return s && { ...s, median: s.median / d, min: s.min / d, max: s.max / d };
}

/** a / b when both are finite and b > 0 (medians of a scenario and its peer), else null. */
export function ratio(a, b) {
  return Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : null;
}

export function fmt(x, digits = 2) {
  return x == null || !Number.isFinite(x) ? '-' : x.toFixed(digits);
}

export function fmtSpread(s, digits = 2) {
  return s ? `${fmt(s.median, digits)} [${fmt(s.min, digits)}-${fmt(s.max, digits)}]` : '-';
}

/** `1.23x` for a / b, `-` when either is missing. */
export function fmtRatio(a, b, digits = 2) {
  const r = ratio(a, b);
  return r === null ? '-' : `${fmt(r, digits)}x`;
}

export function fmtSize(n) {
  if (n >= 1 << 30 && n % (1 << 30) === 0) return `${n / (1 << 30)} GiB`;
  if (n >= 1 << 20 && n % (1 << 20) === 0) return `${n / (1 << 20)} MiB`;
  if (n >= 1 << 10 && n % (1 << 10) === 0) return `${n / (1 << 10)} KiB`;
  return `${n} B`;
}

/** Renders rows (arrays of strings) as an aligned text table. */
export function table(header, rows) {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => String(r[i]).length)));
  const line = (r) => r.map((c, i) => String(c).padEnd(widths[i])).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/**
 * xorshift32: the same pseudo-random sequence in every process (and in a C
 * peer with the same three shifts on a uint32_t), so each scenario of a
 * bench reads the same offsets or builds the same input. Returns next():
 * the next value, a uint32.
 */
export function xorshift32(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

// ===================================================================== machine

let clkTck;
/** user+sys CPU seconds of a process so far (/proc/PID/stat). */
export function cpuOfPid(pid) {
  clkTck ??= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100;
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / clkTck;
}

function procStat() {
  return fs.readFileSync('/proc/stat', 'latin1').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
}

/** CPU-seconds all CPUs spent on anything but idle and I/O wait, from /proc/stat. */
export function machineBusyAll() {
  const f = procStat();
  return (f.reduce((a, b) => a + b, 0) - f[3] - (f[4] ?? 0)) / 100;
}

/**
 * CPU-seconds the machine spent running processes: user, nice, system, irq,
 * softirq (zcb__machine_busy in core/c/common.h, so Node and C senders
 * count alike).
 */
export function machineBusy() {
  const f = procStat();
  return (f[0] + f[1] + f[2] + (f[5] ?? 0) + (f[6] ?? 0)) / 100;
}

/** What the results say about the machine. */
export function machineInfo() {
  return {
    node: process.version,
    kernel: os.release(),
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
  };
}

// ======================================================================= files

/**
 * Makes `file` `size` bytes of random data (or the first `size` bytes of
 * `from`) unless it already has that size; written beside and renamed, so
 * an interrupted run never leaves a short file behind.
 */
export function ensureFile(file, size, from, { log = console.log } = {}) {
  if (fs.existsSync(file) && fs.statSync(file).size === size) return file;
  log(`creating ${file} (${fmtSize(size)})`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  const buf = Buffer.allocUnsafe(Math.min(size, 1 << 20));
  const src = from ? fs.openSync(from, 'r') : null;
  for (let at = 0; at < size; at += buf.length) {
    const n = Math.min(buf.length, size - at);
    if (src !== null) fs.readSync(src, buf, 0, n, at);
    else randomFillSync(buf, 0, n);
    fs.writeSync(fd, buf, 0, n);
  }
  if (src !== null) fs.closeSync(src);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
  return file;
}

/** Reads the whole file so every page is in the page cache. */
export function warmFile(file) {
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(8 << 20);
  let pos = 0;
  let n;
  while ((n = fs.readSync(fd, buf, 0, buf.length, pos)) > 0) pos += n;
  fs.closeSync(fd);
}

/**
 * Compiles the C file `src` with `cc -O2 -Wall -Wextra` into
 * bench/.build/<name> when the binary is older than `src` or any of
 * `deps` (headers). Built beside, then renamed: a running copy keeps its
 * old inode. Returns the binary's path.
 */
export function compileC(src, name, { deps = [], flags = [] } = {}) {
  fs.mkdirSync(buildDir, { recursive: true });
  const bin = path.join(buildDir, name);
  const newest = Math.max(...[src, ...deps].map((f) => fs.statSync(f).mtimeMs));
  if (!fs.existsSync(bin) || fs.statSync(bin).mtimeMs < newest) {
    const tmp = `${bin}.${process.pid}.tmp`;
    execFileSync('cc', ['-O2', '-Wall', '-Wextra', ...flags, '-o', tmp, src], { stdio: 'inherit' });
    fs.renameSync(tmp, bin);
  }
  return bin;
}

/** Compiles bench/core/c/<name>.c (with common.h) for each name; { name: binary }. */
export function buildC(names) {
  const dir = path.join(benchDir, 'core', 'c');
  const header = path.join(dir, 'common.h');
  return Object.fromEntries(names.map((name) => [name, compileC(path.join(dir, `${name}.c`), name, { deps: [header] })]));
}

/** A file-name-safe time stamp: 2026-11-29T08-00-00-000Z. */
export function stamp(date = new Date()) {
  return (typeof date === 'string' ? date : date.toISOString()).replace(/[:.]/g, '-');
}

/**
 * Writes a bench's results: `data` as JSON to `file` (default
 * bench/results/<name>-<stamp of `date`>.json), `text` (the table, with the command
 * on its first line) beside it as .txt when given, and a copy as
 * <name>-latest.json with `latest`. Prints and returns the path.
 */
export function writeResults(name, data, { file, text, latest = false, date = data.date ?? new Date(), log = console.log } = {}) {
  const out = file ?? path.join(resultsDir, `${name}-${stamp(date)}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const json = `${JSON.stringify(data, null, 2)}\n`;
  fs.writeFileSync(out, json);
  if (text !== undefined) fs.writeFileSync(out.replace(/\.json$/, '') + '.txt', text.endsWith('\n') ? text : `${text}\n`);
  if (latest) fs.writeFileSync(path.join(path.dirname(out), `${name}-latest.json`), json);
  log(`wrote ${path.relative(process.cwd(), out)}`);
  return out;
}
