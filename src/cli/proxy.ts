// `zcopy proxy`: forward TCP (or Unix socket) connections with splice(2).
import net from 'node:net';
import { capabilities } from '../capabilities.js';
import { createProxy, type ProxyCloseInfo, type ProxyTarget } from '../proxy/index.js';
import { spliceMechanismFor, type SpliceMechanism } from '../splice.js';
import {
  OPTIONS,
  clearSocketPath,
  err,
  isLoopbackHost,
  listenAddress,
  out,
  parseAddress,
  parseChoice,
  parseCount,
  parseDuration,
  parseOptions,
  untilStopped,
  type Address,
} from './common.js';

const HELP = `Usage: zcopy proxy --target <host:port | unix:path> [options]

Forwards every connection to the target, both directions inside the kernel
(splice(2) through a pipe, or a native copy where that measures faster).

Options:
  -l, --listen <addr>           where to accept: host:port, port, or unix:<path>
                                (default 127.0.0.1:9000; a bare port listens on
                                loopback only: an open relay is never the default)
  -p, --port <n>, -H, --host <addr>, -s, --socket <path>
                                the same as --listen, spelled as in zcopy serve
                                (not together with --listen; --socket not with -p/-H)
  -t, --target <addr>           where to connect: host:port or unix:<path>
      --max-connections <n>     close connections beyond n as they arrive (each
                                one is logged: refused ... max-connections)
      --idle-timeout <time>     close a connection with no byte either way for
                                this long (default 10m; 0: never; ms, or 30s, 5m)
      --connect-timeout <time>  give up connecting upstream (default 10s)
      --mechanism <m>           auto (default), splice or copy
      --shutdown-timeout <time> on SIGINT/SIGTERM, let open connections finish
                                this long before closing them (default 5s)
  -q, --quiet                   no per-connection log
  -h, --help                    this help

The first line says what forwarding each kind of client would use (splice in
the kernel, a native copy, or the portable path through Node), as the
engine decides it. Each connection is logged on stdout when it closes:
  <id> <client> -> <target> up=<bytes> down=<bytes> <ms>ms path=<up>/<down> reason=<why> [error=<code>]
and each one --max-connections turns away as it arrives:
  - <client> refused: max-connections <n> reached
Exit status: 0 after SIGINT/SIGTERM, 1 cannot listen, 2 usage error.
`;

/**
 * Default --idle-timeout: a connection with no byte either way for this long
 * is closed (HAProxy configurations typically set `timeout client` in
 * minutes). A proxy without one keeps a vanished peer's connection, and its
 * fds, forever. 0 turns it off.
 */
export const DEFAULT_IDLE_TIMEOUT = '10m';

type Kind = 'unix' | 'tcp-loopback' | 'tcp';

/**
 * What forwarding each kind of client would get, from the decision the
 * engine makes (splice.ts), for the banner: `splice` (both ways in the
 * kernel), `native copy`, or the portable path through Node.
 */
export function describeForwarding(listen: Address, target: Address, mechanism: SpliceMechanism): string {
  const caps = capabilities();
  if (!caps.native) return `copied through Node (${caps.reason})`;
  const kindOf = (a: Address): Kind[] =>
    'path' in a ? ['unix'] : isLoopbackHost(a.host) ? ['tcp-loopback'] : a.host === '0.0.0.0' || a.host === '::' ? ['tcp-loopback', 'tcp'] : ['tcp'];
  const name = { splice: 'splice (in the kernel)', nativeCopy: 'native copy', portable: 'portable copy' } as const;
  const label = { unix: 'Unix socket clients', 'tcp-loopback': 'loopback clients', tcp: 'remote clients' } as const;
  // A target given by name may resolve to loopback: its first address decides at connect time.
  const to = kindOf(target)[0]!;
  const parts = kindOf(listen).map((c) => {
    const up = spliceMechanismFor(mechanism, c, to);
    const down = spliceMechanismFor(mechanism, to, c);
    const how = up === down ? name[up] : `${name[up]} up, ${name[down]} down`;
    return { c, how };
  });
  const how = parts.length === 1 || parts.every((p) => p.how === parts[0]!.how) ? parts[0]!.how : parts.map((p) => `${label[p.c]}: ${p.how}`).join('; ');
  return `${how} (mechanism ${mechanism})`;
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
  const { values } = parseOptions('proxy', argv, {
    listen: OPTIONS.listen,
    port: OPTIONS.port,
    host: OPTIONS.host,
    socket: OPTIONS.socket,
    target: OPTIONS.target,
    'max-connections': { type: 'string' },
    'idle-timeout': { type: 'string', default: DEFAULT_IDLE_TIMEOUT },
    'connect-timeout': { type: 'string' },
    mechanism: { ...OPTIONS.mechanism, default: 'auto' },
    'shutdown-timeout': { ...OPTIONS['shutdown-timeout'], default: '5s' },
    quiet: { ...OPTIONS.quiet, default: false },
    help: { ...OPTIONS.help, default: false },
  });
  if (values.help) {
    out(HELP);
    return 0;
  }
  if (values.target === undefined) {
    err(`zcopy proxy: --target is required (zcopy proxy --help)\n`);
    return 2;
  }
  const listen = listenAddress(values, { host: '127.0.0.1', port: 9000 });
  const target = parseAddress('target', values.target, '127.0.0.1') as ProxyTarget;
  const mechanism = parseChoice(values.mechanism, '--mechanism', ['auto', 'splice', 'copy'] as const);
  const shutdownTimeout = parseDuration(values['shutdown-timeout'], '--shutdown-timeout');
  const idleTimeout = parseDuration(values['idle-timeout'], '--idle-timeout');
  const connectTimeout = values['connect-timeout'] === undefined ? undefined : parseDuration(values['connect-timeout'], '--connect-timeout');
  const maxConnections = values['max-connections'] === undefined ? undefined : parseCount(values['max-connections'], '--max-connections');

  const proxy = createProxy({
    target,
    maxConnections,
    idleTimeout,
    connectTimeout,
    mechanism,
  });
  if (!values.quiet) {
    proxy.on('proxyClose', (c: ProxyCloseInfo) => out(logLine(c)));
    // net.Server closes a connection beyond maxConnections as it arrives: say so.
    proxy.on('drop', (d?: { remoteAddress?: string; remotePort?: number }) => {
      const client = d?.remoteAddress !== undefined ? show({ host: d.remoteAddress, port: d.remotePort ?? 0 }) : 'unix';
      out(`- ${client} refused: max-connections ${maxConnections} reached\n`);
    });
  }

  const socketPath = 'path' in listen ? listen.path : undefined;
  try {
    if (socketPath !== undefined) await clearSocketPath(socketPath, `--listen unix:${socketPath}`);
    await new Promise<void>((done, fail) => {
      proxy.once('error', fail);
      if (socketPath !== undefined) proxy.listen(socketPath, () => done());
      else proxy.listen((listen as { port: number }).port, (listen as { host: string }).host, () => done());
    });
  } catch (e) {
    err(`zcopy proxy: cannot listen: ${(e as Error).message}\n`);
    return 1;
  }
  proxy.on('error', (e) => err(`zcopy proxy: ${e.message}\n`));

  const how = describeForwarding(listen, target as Address, mechanism);
  const idle = idleTimeout > 0 ? `idle timeout ${idleTimeout} ms` : 'no idle timeout';

  // The signal handlers go in before the banner: whoever waits for the
  // banner may signal at once (stdout to a pipe is synchronous).
  const stopped = untilStopped({
    name: 'zcopy proxy',
    socketPath,
    timeout: shutdownTimeout,
    begin(sig, finish) {
      out(`zcopy proxy: ${sig}, ${proxy.activeConnections} open connection(s), closing within ${shutdownTimeout} ms\n`);
      // close() stops accepting now and calls back when the last connection is gone.
      proxy.close(() => {
        // The server counts client sockets; a connection is logged once its upstream has closed too.
        if (proxy.activeConnections === 0) finish();
        else proxy.on('proxyClose', () => proxy.activeConnections === 0 && finish());
      });
    },
    forceClose: () => proxy.closeAllConnections(),
  });
  out(`zcopy proxy: ${show(proxy.address())} -> ${show(target as Address)}, ${how}, ${idle}\n`);
  return stopped;
}
