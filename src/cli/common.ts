// What the subcommands share: one option vocabulary and its validation,
// usage errors in plain words (exit status 2), a log that survives a closed
// pipe, Unix socket paths, and a graceful shutdown on SIGINT/SIGTERM.
//
// The vocabulary (docs/cli.md): every subcommand spells the same thing the
// same way. -h/--help, -q/--quiet, -l/--listen <addr> (where to accept:
// host:port, port, unix:<path>), -t/--target <addr>, -p/--port <n>,
// -H/--host <addr>, -s/--socket <path>, --mechanism <m>, --log-level <l>,
// --json, every time value (--shutdown-timeout, --idle-timeout, ...) a
// duration: 1500ms, 30s, 5m, 1h, 7d or plain milliseconds, and every byte
// count (--size, --segment-bytes, ...) a size: 65536, 64KiB, 256MiB, 1GiB.
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** Exit status of a usage error (an unknown option, a bad value, a missing argument). */
export const EXIT_USAGE = 2;

/**
 * A usage error: main.ts prints its message as it is, after the command's
 * name, and exits with status 2.
 */
export class UsageError extends Error {
  readonly code = 'ZCOPY_ERR_USAGE';
  readonly exitCode = EXIT_USAGE;
}

/** An option value error, in plain words: exit status 2. */
export function invalid(message: string): UsageError {
  return new UsageError(message);
}

/** Is `err` a usage error (ours, or one of node:util parseArgs)? */
export function isUsageError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return err instanceof UsageError || (typeof code === 'string' && (code === 'ZCOPY_ERR_USAGE' || code.startsWith('ERR_PARSE_ARGS_')));
}

/**
 * Rewrites an error of node:util parseArgs in plain words (its messages
 * carry advice about '--' that fits no zcopy command); anything else is
 * returned as it is.
 */
export function plainUsageError(err: unknown, command?: string): unknown {
  const e = err as { code?: string; message?: string };
  if (typeof e?.code !== 'string' || !e.code.startsWith('ERR_PARSE_ARGS_')) return err;
  const msg = String(e.message);
  const name = /'(?:-\w, )?(--?[\w-]+)/.exec(msg)?.[1] ?? '';
  const help = command ? ` (zcopy ${command} --help)` : '';
  let text: string;
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') text = `unknown option '${name}'${help}`;
  else if (e.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') text = `unexpected argument '${/'([^']*)'/.exec(msg)?.[1] ?? ''}'${help}`;
  else if (/does not take an argument/.test(msg)) text = `option ${name} takes no value${help}`;
  else if (/ambiguous/.test(msg)) {
    const v = /'(-[^']*)'\.?\s*$/.exec(msg.split('\n')[0] ?? '')?.[1];
    text = `option ${name} needs a value${v ? ` (to pass '${v}', write ${name}=${v})` : ''}${help}`;
  } else if (/argument missing/.test(msg)) text = `option ${name} needs a value${help}`;
  else text = `${msg}${help}`;
  return new UsageError(text);
}

/**
 * Options every subcommand spells the same way. Spread the ones a command
 * uses into its parseArgs options; validate their values with the parse*
 * functions below.
 */
export const OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  quiet: { type: 'boolean', short: 'q' },
  json: { type: 'boolean' },
  listen: { type: 'string', short: 'l' },
  target: { type: 'string', short: 't' },
  port: { type: 'string', short: 'p' },
  host: { type: 'string', short: 'H' },
  socket: { type: 'string', short: 's' },
  mechanism: { type: 'string' },
  'log-level': { type: 'string' },
  'shutdown-timeout': { type: 'string' },
} as const;

/** The values of --log-level, quietest last. */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevelName = (typeof LOG_LEVELS)[number];

/** --log-level: `invalid --log-level 'loud': expected debug, info, warn or error`. */
export function parseLogLevel(text: string, label = '--log-level'): LogLevelName {
  return parseChoice(text, label, LOG_LEVELS);
}

/**
 * The `--help` of a command: its text on stdout, exit status 0. Returns the
 * status so a command can `return help(HELP)`.
 */
export function help(text: string): number {
  out(text);
  return 0;
}

/**
 * node:util parseArgs with zcopy's errors: strict, and every mistake a
 * {@link UsageError} in plain words naming `command`'s help. At most
 * `maxPositionals` arguments besides options (default none).
 */
export function parseOptions<T extends ParseArgsConfig['options']>(
  command: string,
  argv: string[],
  options: T,
  maxPositionals = 0,
): ReturnType<typeof parseArgs<{ args: string[]; options: T; allowPositionals: true; strict: true }>> {
  let r;
  try {
    r = parseArgs({ args: negativeValues(argv, options ?? {}), options, allowPositionals: true, strict: true });
  } catch (err) {
    throw plainUsageError(err, command);
  }
  if (r.positionals.length > maxPositionals) {
    const extra = r.positionals[maxPositionals]!;
    throw new UsageError(`unexpected argument '${extra}' (zcopy ${command} --help)`);
  }
  return r;
}

/**
 * `--retention-bytes -1`: parseArgs takes a value starting with '-' for an
 * option and refuses it; a negative number after an option that takes a
 * value is that value (written `--retention-bytes=-1` for parseArgs).
 */
function negativeValues(argv: string[], options: NonNullable<ParseArgsConfig['options']>): string[] {
  const takesValue = (arg: string): string | undefined => {
    const long = /^--([^=]+)$/.exec(arg)?.[1];
    if (long !== undefined) return options[long]?.type === 'string' ? `--${long}` : undefined;
    const short = /^-(\w)$/.exec(arg)?.[1];
    const name = short === undefined ? undefined : Object.keys(options).find((k) => options[k]!.short === short);
    return name !== undefined && options[name]!.type === 'string' ? `--${name}` : undefined;
  };
  const outArgs: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      outArgs.push(...argv.slice(i));
      break;
    }
    const name = takesValue(arg);
    const next = argv[i + 1];
    if (name !== undefined && next !== undefined && /^-\d/.test(next)) {
      outArgs.push(`${name}=${next}`);
      i++;
    } else {
      outArgs.push(arg);
    }
  }
  return outArgs;
}

/** Two options that cannot go together: a usage error when both are given. */
export function exclusive(values: Record<string, unknown>, a: string, b: string): void {
  if (values[a] !== undefined && values[b] !== undefined) throw invalid(`--${a} and --${b} cannot go together`);
}

/** One of a fixed set of words: `invalid --mechanism 'magic': expected auto, splice or copy`. */
export function parseChoice<C extends string>(text: string, label: string, choices: readonly C[]): C {
  if ((choices as readonly string[]).includes(text)) return text as C;
  const list = choices.length > 1 ? `${choices.slice(0, -1).join(', ')} or ${choices[choices.length - 1]}` : choices[0];
  throw invalid(`invalid ${label} '${text}': expected ${list}`);
}

/** A TCP port: `invalid --port 'abc': expected 1-65535` (0, a free port, where `allowZero`). */
export function parsePort(text: string, label: string, allowZero = false): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n > 65535 || (n === 0 && !allowZero)) {
    throw invalid(`invalid ${label} '${text}': expected ${allowZero ? '0-65535 (0 picks a free port)' : '1-65535'}`);
  }
  return n;
}

/** A whole number in [min, max] (max 2^31-1 unless given): connection limits, counts, runs. */
export function parseCount(text: string, label: string, min = 1, max = 2 ** 31 - 1): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) {
    throw invalid(`invalid ${label} '${text}': expected a whole number ${max < 2 ** 31 - 1 ? `from ${min} to ${max}` : `>= ${min}`}`);
  }
  return n;
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** 4096 -> '4 KiB', 1073741824 -> '1 GiB', 1000 -> '1000 B' (exact, for messages). */
export function formatSize(n: number): string {
  for (const [u, name] of [['t', 'TiB'], ['g', 'GiB'], ['m', 'MiB'], ['k', 'KiB']] as const) {
    if (n >= SIZE_UNITS[u]! && n % SIZE_UNITS[u]! === 0) return `${n / SIZE_UNITS[u]!} ${name}`;
  }
  return `${n} B`;
}

/**
 * Parses a size option: a byte count (`65536`) or a number with a binary
 * unit, `k`/`m`/`g`/`t` with or without `iB`/`B` (`64KiB`, `256m`, `1GiB`,
 * `1.5g`: 1 KiB = 1024 bytes). Throws an option value error (exit status 2)
 * naming `label` when it is not a size or lies outside [min, max].
 *
 * @example parseSize('256MiB', '--size') // 268435456
 */
export function parseSize(text: string, label: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?\s*$/i.exec(text);
  const n = m ? Math.round(Number(m[1]) * SIZE_UNITS[(m[2] ?? '').toLowerCase()]!) : NaN;
  if (!Number.isSafeInteger(n)) throw invalid(`invalid ${label} '${text}': expected a size such as 65536, 64KiB, 256MiB or 1GiB`);
  if (n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `at least ${formatSize(min)}` : `from ${formatSize(min)} to ${formatSize(max)}`;
    throw invalid(`invalid ${label} '${text}': expected a size ${range}`);
  }
  return n;
}

/** A network address as the options take it. */
export type Address = { host: string; port: number } | { path: string };

/** How {@link parseAddress} reads a value beyond the common forms. */
export interface AddressOptions {
  /** Where connections go (port 0 refused): by default only for `target`. */
  connect?: boolean;
  /**
   * A value with a '/' and no `unix:` is a Unix socket path (`./s.sock`):
   * `zcopy send` and `zcopy recv` always took them that way.
   */
  slashIsPath?: boolean;
}

/**
 * Parses an address option: host:port, [ipv6]:port, a bare port (on
 * `defaultHost`: loopback, so an open relay is never a default), or
 * unix:<path>. `name` is the option's long name without dashes (messages
 * say `--name`), or an argument's name in capitals (`ADDRESS`, said as it
 * is); port 0 is refused for a `target` (or `opts.connect`).
 */
export function parseAddress(name: string, v: string, defaultHost: string | undefined, opts: AddressOptions = {}): Address {
  const label = /^[A-Z]/.test(name) ? name : `--${name.replace(/^-+/, '')}`;
  if (v.startsWith('unix:') || (opts.slashIsPath && v.includes('/'))) {
    const p = v.startsWith('unix:') ? v.slice(5) : v;
    if (p.length === 0) throw invalid(`invalid ${label} '${v}': empty socket path`);
    return { path: resolve(p) };
  }
  let host: string | undefined;
  let port: string;
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(v);
  if (v6) {
    host = v6[1]!;
    port = v6[2]!;
  } else if (/^\d+$/.test(v)) {
    port = v;
  } else {
    const i = v.lastIndexOf(':');
    if (i <= 0 || v.indexOf(':') !== i) {
      throw invalid(`invalid ${label} '${v}': expected host:port, [ipv6]:port, a port or unix:<path>${opts.slashIsPath ? " (or a path with a '/')" : ''}`);
    }
    host = v.slice(0, i);
    port = v.slice(i + 1);
  }
  const n = Number(port);
  const target = opts.connect ?? label === '--target';
  if (!/^\d+$/.test(port) || n > 65535 || (n === 0 && target)) throw invalid(`invalid ${label} '${v}': port expected ${target ? '1-65535' : '0-65535'}`);
  host ??= defaultHost;
  if (host === undefined) throw invalid(`invalid ${label} '${v}': a host is required`);
  return { host, port: n };
}

/**
 * Where a server listens, from the shared options: `-l/--listen <addr>`, or
 * `-p/--port` and `-H/--host`, or `-s/--socket <path>`. Mixing them is a
 * usage error (`--socket` with `--port` used to be silently ignored).
 */
export function listenAddress(
  values: { listen?: string; port?: string; host?: string; socket?: string },
  defaults: { host: string; port: number },
  opts: AddressOptions = {},
): Address {
  exclusive(values, 'listen', 'port');
  exclusive(values, 'listen', 'host');
  exclusive(values, 'listen', 'socket');
  exclusive(values, 'socket', 'port');
  exclusive(values, 'socket', 'host');
  if (values.listen !== undefined) return parseAddress('listen', values.listen, defaults.host, { ...opts, connect: false });
  if (values.socket !== undefined) {
    if (values.socket.length === 0) throw invalid(`invalid --socket '': expected a path`);
    return { path: resolve(values.socket.startsWith('unix:') ? values.socket.slice(5) : values.socket) };
  }
  const host = values.host ?? defaults.host;
  if (host.length === 0) throw invalid(`invalid --host '': expected an address`);
  return { host, port: values.port !== undefined ? parsePort(values.port, '--port', true) : defaults.port };
}

/** Is `host` a loopback address (or localhost)? */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || /^127\./.test(host) || host === '::1' || /^::ffff:127\./i.test(host);
}

// ---- output that survives a closed pipe ------------------------------------

let guarded = false;
const closedStream = new Set<NodeJS.WriteStream>();

/**
 * Once per process: an EPIPE on stdout or stderr (`zcopy serve | head -3`,
 * the reader went away) stops the writing to that stream, and the command
 * goes on serving. Without it the 'error' event of the stream, which nobody
 * listens for, kills the process.
 */
export function guardOutput(): void {
  if (guarded) return;
  guarded = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED') {
        closedStream.add(stream);
        return;
      }
      // Any other failure of our own output is not ours to hide.
      throw err;
    });
  }
}

/** Writes to stdout, unless its reader went away. */
export function out(text: string): void {
  guardOutput();
  if (closedStream.has(process.stdout) || process.stdout.destroyed) return;
  process.stdout.write(text);
}

/** Writes to stderr, unless its reader went away. */
export function err(text: string): void {
  guardOutput();
  if (closedStream.has(process.stderr) || process.stderr.destroyed) return;
  process.stderr.write(text);
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
      out(`${o.name}: stopped\n`);
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
        if (o.timeoutMessage) out(`${o.name}: ${o.timeoutMessage}\n`);
        o.forceClose();
      }, o.timeout);
    }
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** The longest timer Node keeps (2^31-1 ms, 24.8 days): the default bound of parseDuration. */
export const MAX_TIMER_MS = 2_147_483_647;

/**
 * Parses a duration option: `1500ms`, `30s`, `5m`, `1h`, `7d`, or plain
 * milliseconds (`1500`). `0` means "no timeout" to the callers that accept
 * it. At most `max` ms (a timer's limit unless given). Throws an option
 * value error (exit status 2) naming `label`.
 *
 * @example parseDuration('30s', '--send-timeout') // 30000
 */
export function parseDuration(text: string, label: string, max = MAX_TIMER_MS): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(text);
  if (!m) throw invalid(`invalid ${label} '${text}': expected a duration such as 1500ms, 30s, 5m, 1h, 7d or plain milliseconds`);
  const ms = Math.round(Number(m[1]) * DURATION_UNITS[(m[2] ?? 'ms').toLowerCase()]!);
  if (!Number.isSafeInteger(ms) || ms > max) {
    throw invalid(`invalid ${label} '${text}': too long (at most ${max === MAX_TIMER_MS ? '24.8 days' : `${max} ms`})`);
  }
  return ms;
}
