// `zcopy proxy`: forward TCP (or Unix socket) connections with splice(2).
import net from 'node:net';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { capabilities } from '../capabilities.js';
import { createProxy, type ProxyCloseInfo, type ProxyTarget } from '../proxy.js';
import type { SpliceMechanism } from '../splice.js';
import { clearSocketPath, invalid, parseDuration, untilStopped } from './common.js';

const HELP = `Usage: zcopy proxy --target <host:port | unix:path> [options]

Forwards every connection to the target, both directions inside the kernel
(splice(2) through a pipe, or a native copy where that measures faster).

Options:
  -l, --listen <addr>           where to accept: host:port, port, or unix:<path>
                                (default 127.0.0.1:9000; a bare port listens on
                                loopback only: an open relay is never the default)
  -t, --target <addr>           where to connect: host:port or unix:<path>
      --max-connections <n>     close connections beyond n as they arrive
      --idle-timeout <time>     close a connection with no byte either way for
                                this long (default 10m; 0: never; ms, or 30s, 5m)
      --connect-timeout <time>  give up connecting upstream (default 10s)
      --mechanism <m>           auto (default), splice or copy
      --shutdown-timeout <time> on SIGINT/SIGTERM, let open connections finish
                                this long before closing them (default 5s)
  -q, --quiet                   no per-connection log
  -h, --help                    this help

Each connection is logged on stdout when it closes:
  <id> <client> -> <target> up=<bytes> down=<bytes> <ms>ms path=<up>/<down> reason=<why> [error=<code>]
`;

/**
 * Default --idle-timeout: a connection with no byte either way for this long
 * is closed (HAProxy configurations typically set `timeout client` in
 * minutes). A proxy without one keeps a vanished peer's connection, and its
 * fds, forever. 0 turns it off.
 */
export const DEFAULT_IDLE_TIMEOUT = '10m';

function parseCount(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 2 ** 31 - 1) throw invalid(`invalid --${name} '${v}' (a whole number >= 1)`);
  return Number(v);
}

type Address = { host: string; port: number } | { path: string };

/** host:port, [v6]:port, a bare port (loopback), or unix:<path>. */
export function parseAddress(name: string, v: string, defaultHost: string | undefined): Address {
  if (v.startsWith('unix:')) {
    const p = v.slice(5);
    if (p.length === 0) throw invalid(`--${name} '${v}': empty socket path`);
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
    if (i <= 0 || v.indexOf(':') !== i) throw invalid(`--${name} '${v}': expected host:port, [ipv6]:port or unix:<path>`);
    host = v.slice(0, i);
    port = v.slice(i + 1);
  }
  const n = Number(port);
  if (!/^\d+$/.test(port) || n > 65535 || (n === 0 && name === 'target')) throw invalid(`--${name} '${v}': invalid port`);
  host ??= defaultHost;
  if (host === undefined) throw invalid(`--${name} '${v}': a host is required`);
  return { host, port: n };
}

function show(a: Address | net.AddressInfo | string | null): string {
  if (a === null) return '?';
  if (typeof a === 'string') return `unix:${a}`;
  if ('path' in a) return `unix:${a.path}`;
  const host = 'address' in a ? a.address : a.host;
  return host.includes(':') ? `[${host}]:${a.port}` : `${host}:${a.port}`;
}

function logLine(c: ProxyCloseInfo): string {
  const client = c.remoteAddress !== undefined ? show({ host: c.remoteAddress, port: c.remotePort ?? 0 }) : 'unix';
  const err = c.error ? ` error=${(c.error as { code?: string }).code ?? c.error.name}` : '';
  const fb = c.up.fallback || c.down.fallback ? ` fallback=${c.up.fallback ?? '-'}/${c.down.fallback ?? '-'}` : '';
  return `${c.id} ${client} -> ${c.target} up=${c.up.bytes} down=${c.down.bytes} ${c.duration.toFixed(1)}ms path=${c.up.path}/${c.down.path} reason=${c.reason}${fb}${err}\n`;
}

/**
 * Runs `zcopy proxy`. Resolves with the exit code once the proxy has shut
 * down (SIGINT/SIGTERM: stop accepting, let open connections finish for
 * --shutdown-timeout, then close the rest; a second signal closes at once).
 */
export async function proxyCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      listen: { type: 'string', short: 'l', default: '127.0.0.1:9000' },
      target: { type: 'string', short: 't' },
      'max-connections': { type: 'string' },
      'idle-timeout': { type: 'string', default: DEFAULT_IDLE_TIMEOUT },
      'connect-timeout': { type: 'string' },
      mechanism: { type: 'string', default: 'auto' },
      'shutdown-timeout': { type: 'string', default: '5s' },
      quiet: { type: 'boolean', short: 'q', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length > 0) throw invalid(`unexpected argument '${positionals[0]}' (see zcopy proxy --help)`);
  if (values.target === undefined) {
    process.stderr.write(`zcopy proxy: --target is required\n\n${HELP}`);
    return 2;
  }
  const listen = parseAddress('listen', values.listen, '127.0.0.1');
  const target = parseAddress('target', values.target, '127.0.0.1') as ProxyTarget;
  const mechanism = values.mechanism as SpliceMechanism;
  if (!['auto', 'splice', 'copy'].includes(mechanism)) throw invalid(`invalid --mechanism '${values.mechanism}' (auto, splice or copy)`);
  const shutdownTimeout = parseDuration(values['shutdown-timeout'], '--shutdown-timeout');
  const idleTimeout = parseDuration(values['idle-timeout'], '--idle-timeout');
  const connectTimeout = values['connect-timeout'] === undefined ? undefined : parseDuration(values['connect-timeout'], '--connect-timeout');

  const proxy = createProxy({
    target,
    maxConnections: parseCount('max-connections', values['max-connections']),
    idleTimeout,
    connectTimeout,
    mechanism,
  });
  if (!values.quiet) proxy.on('proxyClose', (c: ProxyCloseInfo) => process.stdout.write(logLine(c)));
  // Whoever read the log went away: keep forwarding rather than die of EPIPE.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
  });

  const socketPath = 'path' in listen ? listen.path : undefined;
  try {
    if (socketPath !== undefined) await clearSocketPath(socketPath, `--listen unix:${socketPath}`);
    await new Promise<void>((done, fail) => {
      proxy.once('error', fail);
      if (socketPath !== undefined) proxy.listen(socketPath, () => done());
      else proxy.listen((listen as { port: number }).port, (listen as { host: string }).host, () => done());
    });
  } catch (err) {
    process.stderr.write(`zcopy proxy: cannot listen: ${(err as Error).message}\n`);
    return 1;
  }
  proxy.on('error', (err) => process.stderr.write(`zcopy proxy: ${err.message}\n`));

  const caps = capabilities();
  const how = caps.native ? `kernel forwarding (mechanism ${mechanism})` : `portable path: ${caps.reason}`;
  const idle = idleTimeout > 0 ? `idle timeout ${idleTimeout} ms` : 'no idle timeout';

  // The signal handlers go in before the banner: whoever waits for the
  // banner may signal at once (stdout to a pipe is synchronous).
  const stopped = untilStopped({
    name: 'zcopy proxy',
    socketPath,
    timeout: shutdownTimeout,
    begin(sig, finish) {
      process.stdout.write(`zcopy proxy: ${sig}, ${proxy.activeConnections} open connection(s), closing within ${shutdownTimeout} ms\n`);
      // close() stops accepting now and calls back when the last connection is gone.
      proxy.close(() => {
        // The server counts client sockets; a connection is logged once its upstream has closed too.
        if (proxy.activeConnections === 0) finish();
        else proxy.on('proxyClose', () => proxy.activeConnections === 0 && finish());
      });
    },
    forceClose: () => proxy.closeAllConnections(),
  });
  process.stdout.write(`zcopy proxy: ${show(proxy.address())} -> ${show(target as Address)}, ${how}, ${idle}\n`);
  return stopped;
}
