// Helpers for the core benchmark: building the C programs, the machine-wide
// benchmark lock, child processes that speak JSON lines, and statistics.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const benchDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const repoRoot = path.resolve(benchDir, '..');
export const buildDir = path.join(benchDir, '.build');
export const LOCK = process.env.ZCOPY_BENCH_LOCK ?? '/tmp/zcopy-bench.lock';

/** Compiles bench/core/c/<name>.c with `cc -O2` into bench/.build/<name> when stale. */
export function buildC(names) {
  const src = path.join(benchDir, 'core', 'c');
  fs.mkdirSync(buildDir, { recursive: true });
  const header = fs.statSync(path.join(src, 'common.h')).mtimeMs;
  const out = {};
  for (const name of names) {
    const c = path.join(src, `${name}.c`);
    const bin = path.join(buildDir, name);
    const newest = Math.max(header, fs.statSync(c).mtimeMs);
    if (!fs.existsSync(bin) || fs.statSync(bin).mtimeMs < newest) {
      // Build beside, then rename: a running copy keeps its old inode.
      const tmp = `${bin}.${process.pid}.tmp`;
      execFileSync('cc', ['-O2', '-Wall', '-Wextra', '-o', tmp, c], { stdio: 'inherit' });
      fs.renameSync(tmp, bin);
    }
    out[name] = bin;
  }
  return out;
}

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

/**
 * A child process whose stdout is JSON lines. `next()` resolves with the next
 * parsed line (rejects on exit or timeout); `done()` with all remaining lines
 * once the process exited successfully.
 */
export function jsonChild(cmd, args, { timeoutMs = 180_000, env } = {}) {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: env ?? process.env });
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

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** {median, min, max} of the finite values, or null. */
export function spread(xs) {
  const v = xs.filter((x) => Number.isFinite(x));
  if (!v.length) return null;
  return { median: median(v), min: Math.min(...v), max: Math.max(...v), n: v.length };
}

export function fmt(x, digits = 2) {
  return x == null || !Number.isFinite(x) ? '-' : x.toFixed(digits);
}

export function fmtSpread(s, digits = 2) {
  return s ? `${fmt(s.median, digits)} [${fmt(s.min, digits)}-${fmt(s.max, digits)}]` : '-';
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

/** Parses a size like 1g, 512m, 64k or a plain byte count. */
export function parseSize(s) {
  const m = /^(\d+(?:\.\d+)?)([kmg]?)i?b?$/i.exec(String(s).trim());
  if (!m) throw new Error(`bad size: ${s}`);
  const mult = { '': 1, k: 1 << 10, m: 1 << 20, g: 1 << 30 }[m[2].toLowerCase()];
  return Math.round(Number(m[1]) * mult);
}

/** CPU-seconds all CPUs spent on anything but idle and I/O wait, from /proc/stat. */
export function machineBusyAll() {
  const f = fs.readFileSync('/proc/stat', 'latin1').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
  return (f.reduce((a, b) => a + b, 0) - f[3] - (f[4] ?? 0)) / 100;
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
