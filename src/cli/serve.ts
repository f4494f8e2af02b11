/**
 * `zcopy serve [root]`: a folder over HTTP, bodies sent with sendfile.
 *
 * @module
 */
import { statSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { resolve } from 'node:path';
import { capabilities, type Mechanism } from '../index.js';
import type { Transport } from '../internal/mechanism.js';
import { DEFAULT_SENDFILE_THRESHOLD, serveStatic, type ServeStaticOptions } from '../http/index.js';
import type { ServeResult } from '../http/index.js';
import { OPTIONS, clearSocketPath, err as errLine, invalid, listenAddress, out, parseChoice, parseDuration, parseOptions, untilStopped } from './common.js';
import { createUploadHandler, parseUploadSize } from '../http/upload.js';
import { H1Front } from '../http/h1-front.js';
import { isServeWorker, parseWorkers, reportListening, runPrimary, setUpWorker, workerTag } from './serve-workers.js';

const HELP = `Usage: zcopy serve [root] [options]

Serves the files under root (default: the current directory) over HTTP/1.1,
sending bodies zero-copy (sendfile) where the platform allows.

Options:
  -p, --port <n>            TCP port (default 8080; 0 picks a free one)
  -H, --host <addr>         address to listen on (default 127.0.0.1)
  -s, --socket <path>       listen on a Unix socket instead of TCP (not with -p/-H)
  -l, --listen <addr>       host:port, port or unix:<path>: the same in one option,
                            as zcopy proxy takes it (not with -p/-H/-s)
  -c, --max-age <duration>  Cache-Control max-age: seconds, or 30s, 10m, 2h, 7d (default 0)
      --dotfiles <policy>   ignore (404, default) | deny (403) | allow
      --list                HTML listing for directories without index.html
                            (-l is --listen, as in every zcopy command)
      --cors                send Access-Control-Allow-Origin: * (and answer preflights)
      --precompressed       serve name.br / name.gz when the client accepts them
      --follow-symlinks     follow symlinks that leave the root (default: refuse them)
      --mechanism <m>       auto (default) | sendfile | splice | copy: how file bytes
                            move (auto picks per transport from measurements)
      --send-timeout <duration>  destroy a connection whose client accepts no
                            byte for this long while a response is sent:
                            30s, 5m, 1500ms or plain ms; 0 disables (default 60s)
      --shutdown-timeout <duration>  on SIGINT/SIGTERM, wait this long for
                            in-flight responses before closing connections:
                            5s, 1500ms or plain ms (default 10s)
      --upload              accept PUT /path: the body is stored under root (zero
                            copy), via a temporary file renamed when complete;
                            201 created, 204 replaced (off by default)
      --max-upload-size <n> largest upload: bytes, or 10k, 100m, 2g (default 1g)
      --node-http           answer every request through node:http (no HTTP/1.1 front;
                            see docs/http.md)
      --workers <n|auto>    serve with n processes (auto: one per core) sharing the
                            port (node:cluster); one log on stdout, each line
                            ending worker=PID (default 1)
  -q, --quiet               no per-request log
  -h, --help                this help

Each request is logged on stdout as:
  METHOD PATH STATUS BYTES MS path=P [error=CODE]
where P is how the file's bytes went out: sendfile or splice (zero-copy),
copy (native copy loop: auto's choice on loopback TCP, measured faster there),
portable (copied through JavaScript), buffered (small body, one write), or -
(no file body: 404, 304, HEAD). The start lines say which path each
transport takes and why. (error=ZCOPY_ERR_TIMEOUT: the send timeout closed
the connection.)
Exit status: 0 after SIGINT/SIGTERM, 1 cannot serve or listen, 2 usage error.
`;

/** Escapes control characters so a request path cannot forge log lines. */
function logSafe(s: string): string {
  const t = s.length > 300 ? s.slice(0, 300) + '...' : s;
  return t.replace(/[\x00-\x20\x7f-\x9f"]/g, (c) => '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0'));
}

/** A max-age argument: bare numbers are seconds, else a duration (30s, 2h, 7d). */
function parseMaxAge(v: string): number {
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)$/i.exec(v.trim());
  if (!m) throw invalid(`invalid --max-age '${v}': expected seconds, or a duration such as 30s, 10m, 2h, 7d`);
  const unit: Record<string, number> = { ms: 1, s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7, w: 6.048e8, y: 3.15576e10 };
  return Number(m[1]) * unit[m[2]!.toLowerCase()]!;
}

/**
 * Runs `zcopy serve`. Resolves with the exit code once the server has shut
 * down (SIGINT/SIGTERM: in-flight responses finish, bounded by
 * --shutdown-timeout), or with a non-zero code when it cannot start.
 */
export async function serveCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseServeOptions(argv, {
      port: OPTIONS.port,
      host: OPTIONS.host,
      socket: OPTIONS.socket,
      listen: OPTIONS.listen,
      'max-age': { type: 'string', short: 'c', default: '0' },
      dotfiles: { type: 'string', default: 'ignore' },
      list: { type: 'boolean', default: false },
      cors: { type: 'boolean', default: false },
      precompressed: { type: 'boolean', default: false },
      'follow-symlinks': { type: 'boolean', default: false },
      mechanism: { ...OPTIONS.mechanism, default: 'auto' },
      'send-timeout': { type: 'string', default: '60s' },
      'shutdown-timeout': { ...OPTIONS['shutdown-timeout'], default: '10s' },
      quiet: { ...OPTIONS.quiet, default: false },
      help: { ...OPTIONS.help, default: false },
      upload: { type: 'boolean', default: false },
      'max-upload-size': { type: 'string', default: '1g' },
      workers: { type: 'string', default: '1' },
      'node-http': { type: 'boolean', default: false },
  });
  if (values.help) {
    out(HELP);
    return 0;
  }
  const root = resolve(positionals[0] ?? '.');
  try {
    if (!statSync(root).isDirectory()) {
      process.stderr.write(`zcopy serve: ${root} is not a directory\n`);
      return 1;
    }
  } catch (err) {
    process.stderr.write(`zcopy serve: cannot serve ${root}: ${(err as Error).message}\n`);
    return 1;
  }
  const listen = listenAddress(values, { host: '127.0.0.1', port: 8080 });
  const dotfiles: ServeStaticOptions['dotfiles'] = parseChoice(values.dotfiles!, '--dotfiles', ['ignore', 'deny', 'allow'] as const);
  const shutdownTimeout = parseDuration(values['shutdown-timeout']!, '--shutdown-timeout');
  const sendTimeout = parseDuration(values['send-timeout']!, '--send-timeout');
  const mechanism: Mechanism = parseChoice(values.mechanism!, '--mechanism', ['auto', 'sendfile', 'splice', 'copy'] as const);
  const quiet = values.quiet!;
  const cors = values.cors!;
  const workers = parseWorkers(values.workers!);
  // Every core: the primary forks the workers and only supervises.
  if (workers > 1 && !isServeWorker) return runPrimary(workers, shutdownTimeout);
  setUpWorker();

  const handler = serveStatic(root, {
    maxAge: parseMaxAge(values['max-age']!),
    dotfiles,
    listing: values.list!,
    // `zcopy serve .` on a folder without index.html: say how to list it.
    directoryHint: values.list ? undefined : 'This directory has no index.html and listing is off: restart zcopy serve with --list to list directories.',
    precompressed: values.precompressed!,
    followSymlinks: values['follow-symlinks']!,
    mechanism,
    sendTimeout,
  });

  // Requests whose log line is still to come: "stopped" is written after the last one.
  let unlogged = 0;
  let allLogged: (() => void) | undefined;
  const logLine = (method: string | undefined, url: string | undefined, status: number, bytes: number | undefined, transfer: string | undefined, error: Error | undefined, started: bigint): void => {
    if (!quiet) {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const err = error ? ` error=${logSafe((error as { code?: string }).code ?? error.name)}` : '';
      // How the file's bytes went out; '-' when no file body was sent (404, 304, HEAD).
      out(`${method} ${logSafe(url ?? '')} ${status} ${bytes ?? 0} ${ms.toFixed(2)}ms path=${transfer ?? '-'}${err}${workerTag}\n`);
    }
    if (--unlogged === 0) allLogged?.();
  };
  const log = (req: http.IncomingMessage, r: ServeResult | undefined, status: number, started: bigint): void => logLine(req.method, req.url, status, r?.bytes, r?.transfer, r?.error, started);

  const upload = values.upload ? createUploadHandler(root, { maxBytes: parseUploadSize(values['max-upload-size']!), dotfiles, followSymlinks: values['follow-symlinks']! }) : undefined;
  const server = http.createServer((req, res) => {
    const started = quiet ? 0n : process.hrtime.bigint();
    // Every path below logs the request exactly once.
    unlogged++;
    if (upload && req.method === 'PUT') {
      void upload(req, res).then((r) => log(req, r, r.status, started));
      return;
    }
    if (cors) {
      res.setHeader('Access-Control-Allow-Origin', '*');
      res.setHeader('Access-Control-Expose-Headers', 'Content-Length, Content-Range, Accept-Ranges, ETag, Last-Modified');
      if (req.method === 'OPTIONS') {
        res.setHeader('Access-Control-Allow-Methods', 'GET, HEAD');
        res.setHeader('Access-Control-Allow-Headers', 'Range, If-Range, If-None-Match, If-Modified-Since, If-Match, If-Unmodified-Since');
        res.setHeader('Access-Control-Max-Age', '86400');
        res.statusCode = 204;
        res.end();
        log(req, { status: 204, bytes: 0, bytesZeroCopy: 0 }, 204, started);
        return;
      }
    }
    handler(req, res).then(
      (r) => log(req, r, r.status, started),
      // serveStatic never rejects; this only guards against a bug.
      (err: unknown) => {
        if (!res.headersSent) {
          res.statusCode = 500;
          res.end();
        } else res.destroy();
        log(req, { status: 500, bytes: 0, bytesZeroCopy: 0, error: err as Error }, 500, started);
      },
    );
  });
  // Slow clients are fine (transfers wait on the socket); dead ones are not.
  server.keepAliveTimeout = 5_000;

  // Plain GET/HEAD of small cached files answered below node:http
  // (src/http/h1-front.ts); everything else is node:http's.
  const corsHeaders: Array<[string, string]> = cors
    ? [
        ['Access-Control-Allow-Origin', '*'],
        ['Access-Control-Expose-Headers', 'Content-Length, Content-Range, Accept-Ranges, ETag, Last-Modified'],
      ]
    : [];
  const fast = values['node-http']
    ? undefined
    : H1Front.install(server, handler, {
        headers: corsHeaders,
        onRequest: () => {
          unlogged++;
          return quiet ? 0n : process.hrtime.bigint();
        },
        onResponse: (started, r) => logLine(r.method, r.url, r.status, r.bytes, r.transfer, r.error, started as bigint),
      });

  const socketPath = 'path' in listen ? listen.path : undefined;
  const port = 'port' in listen ? listen.port : 0;
  const host = 'host' in listen ? listen.host : undefined;
  try {
    if (socketPath !== undefined && process.env.ZCOPY_SERVE_WORKER !== 'rest') await clearSocketPath(socketPath, `--socket ${socketPath}`);
    await new Promise<void>((done, fail) => {
      server.once('error', fail);
      if (socketPath !== undefined) server.listen(socketPath, () => done());
      else server.listen(port, host, () => done());
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    errLine(`zcopy serve: cannot listen: ${e.message}\n`);
    return 1;
  }
  server.on('error', (err) => errLine(`zcopy serve: ${err.message}\n`));

  const how = transferBanner(mechanism, socketPath !== undefined ? ['unix'] : isLoopbackHost(host) ? ['tcp-loopback'] : ['tcp-loopback', 'tcp']);
  let where: string;
  if (socketPath !== undefined) {
    where = `unix:${socketPath} (curl --unix-socket ${socketPath} http://localhost/)`;
  } else {
    const a = server.address() as net.AddressInfo;
    const h = a.family === 'IPv6' || a.address.includes(':') ? `[${a.address}]` : a.address;
    where = `http://${h}:${a.port}/`;
  }

  // The signal handlers go in before the serving line: whoever waits for
  // that line may signal at once (stdout to a pipe is synchronous).
  const stopped = untilStopped({
    name: 'zcopy serve',
    socketPath,
    timeout: shutdownTimeout,
    timeoutMessage: 'shutdown timeout, closing remaining connections',
    begin(sig, finish) {
      out(`zcopy serve: ${sig}, finishing in-flight responses (up to ${shutdownTimeout} ms)\n`);
      // "stopped" comes after the last request's log line; a response's
      // handler settles just after its connection closes.
      let cap: NodeJS.Timeout | undefined;
      server.close(() => {
        if (unlogged <= 0) return finish();
        allLogged = finish;
        cap = setTimeout(finish, 1000);
      });
      server.closeIdleConnections();
      fast?.closeIdleConnections();
      // Connections go idle as their responses finish: close them as they do.
      const sweep = setInterval(() => {
        server.closeIdleConnections();
        fast?.closeIdleConnections();
      }, 50);
      return () => {
        clearInterval(sweep);
        clearTimeout(cap);
      };
    },
    forceClose: () => {
      fast?.closeAllConnections();
      server.closeAllConnections();
    },
  });
  if (isServeWorker) reportListening(`zcopy serve: serving ${root} at ${where}\nzcopy serve: ${how}\n`);
  else out(`zcopy serve: serving ${root} at ${where}\nzcopy serve: ${how}\n`);
  return stopped;
}

const TRANSPORT_NAME: Record<Transport, string> = { unix: 'Unix socket', 'tcp-loopback': 'loopback TCP', tcp: 'TCP (a real NIC)' };

/** Why auto picks what it picks (src/internal/mechanism.ts, docs/benchmarks.md). */
const AUTO_WHY: Partial<Record<`${Transport}:${string}`, string>> = {
  'unix:sendfile': 'zero-copy: page references move to the reader',
  'tcp-loopback:copy': 'native copy loop: measured ~1.9x faster than sendfile on loopback, which has no NIC to gather from pages; real NICs get sendfile',
  'tcp:sendfile': 'zero-copy: the NIC gathers from the page cache, as in nginx',
};

function isLoopbackHost(host: string | undefined): boolean {
  if (host === undefined) return false;
  return host === 'localhost' || host === '::1' || /^127\./.test(host) || /^::ffff:127\./i.test(host);
}

/**
 * The start line saying how file bytes will go out for each transport
 * clients can use, and why: "native path: loopback TCP: copy (native copy
 * loop: ...); bodies under 256 KiB: one buffered write".
 */
function transferBanner(mechanism: Mechanism, transports: Transport[]): string {
  const caps = capabilities();
  if (!caps.native) return `portable path (bytes copied through JavaScript, no zero-copy): ${caps.reason}`;
  const parts = transports.map((t) => {
    if (mechanism !== 'auto') return `${TRANSPORT_NAME[t]}: ${mechanism} (--mechanism ${mechanism})`;
    const m = caps.auto[t];
    const why = AUTO_WHY[`${t}:${m}`] ?? (m === 'portable' ? 'no native addon' : m !== 'sendfile' && !caps.sendfile ? 'sendfile is unavailable here' : 'auto');
    return `${TRANSPORT_NAME[t]}: ${m} (${why})`;
  });
  return `native path: ${parts.join('; ')}; bodies under ${DEFAULT_SENDFILE_THRESHOLD / 1024} KiB: one buffered write`;
}

/**
 * parseOptions for serve, with a hint for `-l`: it was --list here, and is
 * --listen in every zcopy command now.
 */
function parseServeOptions<T extends Parameters<typeof parseOptions>[2]>(argv: string[], options: T): ReturnType<typeof parseOptions<T>> {
  try {
    const r = parseOptions('serve', argv, options, 1);
    const listen = (r.values as { listen?: unknown }).listen;
    if (typeof listen === 'string' && !/^(unix:.+|\d+|.+:\d+)$/.test(listen)) {
      throw invalid(`invalid --listen '${listen}': expected host:port, a port or unix:<path> (-l is --listen; the directory listing is --list)`);
    }
    return r;
  } catch (e) {
    if (/--listen needs a value/.test((e as Error).message)) throw invalid(`option --listen needs a value (-l is --listen; the directory listing is --list)`);
    throw e;
  }
}
