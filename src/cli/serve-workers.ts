/**
 * `zcopy serve --workers N|auto`: one server per core with node:cluster.
 *
 * The primary forks the workers with the same arguments, waits until each
 * listens (they share one listening socket through the primary: Node 20's
 * node:net has no SO_REUSEPORT), prints one serving line, and on
 * SIGINT/SIGTERM tells every worker to shut down gracefully (each one
 * finishes its in-flight responses, bounded by --shutdown-timeout) and exits
 * 0 once all have. The log is aggregated on the shared stdout: each request
 * line is one write(2) below PIPE_BUF (4096 bytes, paths are capped at 300
 * characters), so lines of different workers never interleave, and each
 * ends with `worker=PID`.
 *
 * @module
 */
import cluster, { type Worker } from 'node:cluster';
import os from 'node:os';
import { invalid } from './common.js';

const SHUTDOWN = 'zcopy-serve:shutdown';

/** Parses `--workers`: a count (1 = no cluster) or `auto` (one per core). */
export function parseWorkers(v: string): number {
  if (v === 'auto') return Math.max(1, os.availableParallelism());
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 1024) throw invalid(`invalid --workers '${v}': expected a count (1-1024) or auto`);
  return Number(v);
}

/** True in a worker of `zcopy serve --workers`. */
export const isServeWorker = cluster.isWorker && process.env.ZCOPY_SERVE_WORKER !== undefined;

/** In a worker: the suffix of its log lines. */
export const workerTag = isServeWorker ? ` worker=${process.pid}` : '';

/**
 * In a worker, before its signal handlers: the primary's shutdown message
 * becomes one SIGTERM for the worker's own graceful shutdown, unless a
 * signal already started it (Ctrl-C on a terminal reaches every process of
 * the group: the message must not count as a second, forcing signal). Once
 * shutdown began, the IPC channel no longer keeps the worker alive, so it
 * exits when its last connection is done.
 */
export function setUpWorker(): void {
  if (!isServeWorker) return;
  let begun = false;
  const began = (): void => {
    begun = true;
    process.channel?.unref();
  };
  process.on('SIGINT', began);
  process.on('SIGTERM', began);
  process.on('message', (m: unknown) => {
    if (m !== SHUTDOWN || begun) return;
    began();
    process.emit('SIGTERM', 'SIGTERM');
  });
}

/** In a worker: tells the primary where it serves (it prints the one serving line). */
export function reportListening(line: string): void {
  process.send?.({ zcopyServe: line });
}

/**
 * The primary: forks `n` workers running `zcopy serve` with the same
 * arguments, one after the other (the first clears a stale Unix socket
 * before the others listen on it), and resolves with the exit code once
 * all have stopped after SIGINT/SIGTERM (0 when every worker exited 0).
 */
export async function runPrimary(n: number, shutdownTimeout: number): Promise<number> {
  const workers = new Set<Worker>();
  let stopping = false;
  let failed = false;
  let where = '';
  const fork = (first: boolean): Promise<Worker> =>
    new Promise((resolve, reject) => {
      const w = cluster.fork({ ZCOPY_SERVE_WORKER: first ? 'first' : 'rest' });
      workers.add(w);
      const onMessage = (m: unknown): void => {
        const line = (m as { zcopyServe?: unknown } | null)?.zcopyServe;
        if (typeof line !== 'string') return;
        where = line;
        w.removeListener('message', onMessage);
        w.removeListener('exit', onEarlyExit);
        resolve(w);
      };
      const onEarlyExit = (code: number | null): void => reject(Object.assign(new Error(`worker ${w.process.pid} exited with ${code} before listening`), { exitCode: code }));
      w.on('message', onMessage);
      w.once('exit', onEarlyExit);
      w.once('exit', (code, signal) => {
        workers.delete(w);
        if (code !== 0) failed = true;
        if (!stopping) process.stderr.write(`zcopy serve: worker ${w.process.pid} exited (${signal ?? code}); ${workers.size} left\n`);
      });
    });
  const killAll = (): void => {
    for (const w of workers) w.process.kill('SIGKILL');
  };
  try {
    await fork(true);
    await Promise.all(Array.from({ length: n - 1 }, () => fork(false)));
  } catch (err) {
    killAll();
    const code = (err as { exitCode?: number | null }).exitCode;
    return typeof code === 'number' && code > 0 ? code : 1;
  }
  process.stdout.write(where.replace(/\n$/, '') + `\nzcopy serve: ${n} workers (${[...workers].map((w) => w.process.pid).join(', ')})\n`);
  return new Promise<number>((resolve) => {
    let force: NodeJS.Timeout | undefined;
    const onSignal = (sig: NodeJS.Signals): void => {
      if (stopping) {
        // A second signal: workers close everything at once.
        for (const w of workers) w.process.kill(sig);
        return;
      }
      stopping = true;
      process.stdout.write(`zcopy serve: ${sig}, stopping ${workers.size} workers (up to ${shutdownTimeout} ms)\n`);
      for (const w of workers) if (w.isConnected()) w.send(SHUTDOWN);
      // Each worker enforces the timeout itself; this only catches one that hangs.
      force = setTimeout(() => {
        failed = true;
        killAll();
      }, shutdownTimeout + 5000);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const check = (): void => {
      if (workers.size > 0) return;
      clearTimeout(force);
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
      process.stdout.write(`zcopy serve: stopped\n`);
      resolve(failed || !stopping ? 1 : 0);
    };
    cluster.on('exit', () => setImmediate(check));
  });
}
