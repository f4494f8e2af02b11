/**
 * `zcopy serve [root]`: a folder over HTTP, bodies sent with sendfile.
 *
 * @module
 */
import { statSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { capabilities, type Mechanism } from '../index.js';
import { serveStatic, type ServeStaticOptions } from '../http/index.js';
import type { ServeResult } from '../http/index.js';
import { clearSocketPath, invalid, parseDuration, untilStopped } from './common.js';
import { createUploadHandler, parseUploadSize } from '../http/upload.js';
import { isServeWorker, parseWorkers, reportListening, runPrimary, setUpWorker, workerTag } from './serve-workers.js';

const HELP = `Usage: zcopy serve [root] [options]

Serves the files under root (default: the current directory) over HTTP/1.1,
sending bodies zero-copy (sendfile) where the platform allows.

Options:
  -p, --port <n>            TCP port (default 8080; 0 picks a free one)
  -H, --host <addr>         address to listen on (default 127.0.0.1)
  -s, --socket <path>       listen on a Unix socket instead of TCP
  -c, --max-age <duration>  Cache-Control max-age: seconds, or 30s, 10m, 2h, 7d (default 0)
      --dotfiles <policy>   ignore (404, default) | deny (403) | allow
  -l, --list                HTML listing for directories without index.html
      --cors                send Access-Control-Allow-Origin: * (and answer preflights)
      --precompressed       serve name.br / name.gz when the client accepts them
      --follow-symlinks     follow symlinks that leave the root (default: refuse them)
      --mechanism <m>       auto (default) | sendfile | splice | copy: how file bytes
                            move (auto picks per transport from measurements)
      --send-timeout <duration>  destroy a connection whose client accepts no
                            byte for this long while a response is sent:
                            30s, 5m, 1500ms or plain ms; 0 disables (default 60s)
      --shutdown-timeout <ms>  on SIGINT/SIGTERM, wait this long for in-flight
                            responses before closing connections (default 10000)
      --upload              accept PUT /path: the body is stored under root (zero
                            copy), via a temporary file renamed when complete;
                            201 created, 204 replaced (off by default)
      --max-upload-size <n> largest upload: bytes, or 10k, 100m, 2g (default 1g)
      --workers <n|auto>    serve with n processes (auto: one per core) sharing the
                            port (node:cluster); one log on stdout, each line
                            ending worker=PID (default 1)
  -q, --quiet               no per-request log
  -h, --help                this help

Each request is logged on stdout as:
  METHOD PATH STATUS BYTES MS zero-copy=yes|no [error=CODE]
(error=ZCOPY_ERR_TIMEOUT: the send timeout closed the connection).
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
  if (!m) throw Object.assign(new Error(`invalid --max-age '${v}' (seconds, or a duration like 30s, 10m, 2h, 7d)`), { code: 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' });
  const unit: Record<string, number> = { ms: 1, s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7, w: 6.048e8, y: 3.15576e10 };
  return Number(m[1]) * unit[m[2]!.toLowerCase()]!;
}

/**
 * Runs `zcopy serve`. Resolves with the exit code once the server has shut
 * down (SIGINT/SIGTERM: in-flight responses finish, bounded by
 * --shutdown-timeout), or with a non-zero code when it cannot start.
 */
export async function serveCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      port: { type: 'string', short: 'p', default: '8080' },
      host: { type: 'string', short: 'H', default: '127.0.0.1' },
      socket: { type: 'string', short: 's' },
      'max-age': { type: 'string', short: 'c', default: '0' },
      dotfiles: { type: 'string', default: 'ignore' },
      list: { type: 'boolean', short: 'l', default: false },
      cors: { type: 'boolean', default: false },
      precompressed: { type: 'boolean', default: false },
      'follow-symlinks': { type: 'boolean', default: false },
      mechanism: { type: 'string', default: 'auto' },
      'send-timeout': { type: 'string', default: '60s' },
      'shutdown-timeout': { type: 'string', default: '10000' },
      quiet: { type: 'boolean', short: 'q', default: false },
      help: { type: 'boolean', short: 'h', default: false },
      upload: { type: 'boolean', default: false },
      'max-upload-size': { type: 'string', default: '1g' },
      workers: { type: 'string', default: '1' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length > 1) throw invalid(`expected at most one root folder, got ${positionals.length}`);
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
  if (!/^\d+$/.test(values.port!) || Number(values.port) > 65535) throw invalid(`invalid --port '${values.port}'`);
  const port = Number(values.port);
  const dotfiles = values.dotfiles as ServeStaticOptions['dotfiles'];
  if (dotfiles !== 'ignore' && dotfiles !== 'deny' && dotfiles !== 'allow') throw invalid(`invalid --dotfiles '${values.dotfiles}' (ignore, deny or allow)`);
  if (!/^\d+$/.test(values['shutdown-timeout']!)) throw invalid(`invalid --shutdown-timeout '${values['shutdown-timeout']}'`);
  const shutdownTimeout = Number(values['shutdown-timeout']);
  const sendTimeout = parseDuration(values['send-timeout']!, '--send-timeout');
  const mechanism = values.mechanism as Mechanism;
  if (!['auto', 'sendfile', 'splice', 'copy'].includes(mechanism)) throw invalid(`invalid --mechanism '${values.mechanism}' (auto, sendfile, splice or copy)`);
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
    precompressed: values.precompressed!,
    followSymlinks: values['follow-symlinks']!,
    mechanism,
    sendTimeout,
  });

  const log = (req: http.IncomingMessage, r: ServeResult | undefined, status: number, started: bigint): void => {
    if (quiet) return;
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const zc = r && r.bytesZeroCopy > 0 ? 'yes' : 'no';
    const err = r?.error ? ` error=${logSafe((r.error as { code?: string }).code ?? r.error.name)}` : '';
    process.stdout.write(`${req.method} ${logSafe(req.url ?? '')} ${status} ${r?.bytes ?? 0} ${ms.toFixed(2)}ms zero-copy=${zc}${err}${workerTag}\n`);
  };

  const upload = values.upload ? createUploadHandler(root, { maxBytes: parseUploadSize(values['max-upload-size']!), dotfiles, followSymlinks: values['follow-symlinks']! }) : undefined;
  const server = http.createServer((req, res) => {
    const started = process.hrtime.bigint();
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

  const socketPath = values.socket !== undefined ? resolve(values.socket) : undefined;
  try {
    if (socketPath !== undefined && process.env.ZCOPY_SERVE_WORKER !== 'rest') await clearSocketPath(socketPath, `--socket ${socketPath}`);
    await new Promise<void>((done, fail) => {
      server.once('error', fail);
      if (socketPath !== undefined) server.listen(socketPath, () => done());
      else server.listen(port, values.host, () => done());
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    process.stderr.write(`zcopy serve: cannot listen: ${e.message}\n`);
    return 1;
  }
  server.on('error', (err) => process.stderr.write(`zcopy serve: ${err.message}\n`));

  const caps = capabilities();
  const how = !caps.native
    ? `portable path: ${caps.reason}`
    : mechanism !== 'auto'
      ? `native path, mechanism ${mechanism}`
      : `native path, mechanism auto (loopback TCP: ${caps.auto['tcp-loopback']}, TCP: ${caps.auto.tcp}, Unix socket: ${caps.auto.unix})`;
  let where: string;
  if (socketPath !== undefined) {
    where = `unix:${socketPath} (curl --unix-socket ${socketPath} http://localhost/)`;
  } else {
    const a = server.address() as net.AddressInfo;
    const host = a.family === 'IPv6' || a.address.includes(':') ? `[${a.address}]` : a.address;
    where = `http://${host}:${a.port}/`;
  }
  if (isServeWorker) reportListening(`zcopy serve: serving ${root} at ${where}\nzcopy serve: ${how}\n`);
  else process.stdout.write(`zcopy serve: serving ${root} at ${where}\nzcopy serve: ${how}\n`);

  return untilStopped({
    name: 'zcopy serve',
    socketPath,
    timeout: shutdownTimeout,
    timeoutMessage: 'shutdown timeout, closing remaining connections',
    begin(sig, finish) {
      process.stdout.write(`zcopy serve: ${sig}, finishing in-flight responses (up to ${shutdownTimeout} ms)\n`);
      server.close(() => finish());
      server.closeIdleConnections();
      // Connections go idle as their responses finish: close them as they do.
      const sweep = setInterval(() => server.closeIdleConnections(), 50);
      return () => clearInterval(sweep);
    },
    forceClose: () => server.closeAllConnections(),
  });
}
