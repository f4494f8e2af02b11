// What the long-running subcommands (serve, proxy) share: option errors,
// Unix socket paths, and a graceful shutdown on SIGINT/SIGTERM.
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import net from 'node:net';

/** An option value error, with the code main.ts maps to exit status 2. */
export function invalid(message: string): Error {
  return Object.assign(new Error(message), { code: 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' });
}

/**
 * Removes a stale Unix socket file at `path`; refuses a live one or a file
 * that is not a socket. `label` names the option in messages.
 */
export async function clearSocketPath(path: string, label: string): Promise<void> {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw invalid(`${label}: exists and is not a socket`);
  const live = await new Promise<boolean>((done) => {
    const c = net.connect(path);
    c.once('connect', () => {
      c.destroy();
      done(true);
    });
    c.once('error', () => done(false));
  });
  if (live) throw Object.assign(new Error(`${label}: another server is listening there`), { code: 'EADDRINUSE' });
  unlinkSync(path);
}

export interface StopOptions {
  /** Prefix of the log lines ('zcopy serve'). */
  name: string;
  /** A Unix socket file to remove once stopped. */
  socketPath?: string;
  /** How long the first signal waits before forceClose(). */
  timeout: number;
  /**
   * The first signal: stop accepting, log, and call `finish` when the last
   * connection is gone. Returns a cleanup to run at the end (or nothing).
   */
  begin(sig: NodeJS.Signals, finish: () => void): (() => void) | void;
  /** A second signal, or the timeout: close every connection now. */
  forceClose(): void;
  /** A line to log when the timeout forces the close. */
  timeoutMessage?: string;
}

/**
 * Resolves with exit code 0 once a SIGINT/SIGTERM has been handled and the
 * server has finished: in-flight work gets `timeout` ms, a second signal
 * cuts it short.
 */
export function untilStopped(o: StopOptions): Promise<number> {
  return new Promise<number>((done) => {
    let closing = false;
    let finished = false;
    let force: NodeJS.Timeout | undefined;
    let cleanup: (() => void) | void;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      clearTimeout(force);
      cleanup?.();
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
      if (o.socketPath !== undefined && existsSync(o.socketPath)) {
        try {
          unlinkSync(o.socketPath);
        } catch {
          // Already gone.
        }
      }
      process.stdout.write(`${o.name}: stopped\n`);
      done(0);
    };
    function onSignal(sig: NodeJS.Signals): void {
      if (closing) {
        // A second signal: do not wait any longer.
        o.forceClose();
        return;
      }
      closing = true;
      cleanup = o.begin(sig, finish);
      force = setTimeout(() => {
        if (o.timeoutMessage) process.stdout.write(`${o.name}: ${o.timeoutMessage}\n`);
        o.forceClose();
      }, o.timeout);
    }
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses a duration option: `1500ms`, `30s`, `5m`, `1h`, or plain
 * milliseconds (`1500`). `0` means "no timeout" to the callers that accept
 * it. Throws an option value error (exit status 2) naming `label`.
 *
 * @example parseDuration('30s', '--send-timeout') // 30000
 */
export function parseDuration(text: string, label: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/i.exec(text);
  if (!m) throw invalid(`${label}: expected a duration such as 1500ms, 30s, 5m or plain milliseconds, got '${text}'`);
  const ms = Math.round(Number(m[1]) * DURATION_UNITS[(m[2] ?? 'ms').toLowerCase()]!);
  if (!Number.isSafeInteger(ms) || ms > 2_147_483_647) throw invalid(`${label}: ${text} is too long (max 24.8 days)`);
  return ms;
}
