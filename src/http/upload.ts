/**
 * PUT uploads under a root (what `zcopy serve --upload` runs): the body goes
 * to a hidden temporary file in the target's directory with receiveBody
 * (zero copy on HTTP/1.1 plaintext), which is renamed into place only when
 * complete, so an aborted upload leaves nothing and a concurrent reader never
 * sees half a file. Paths follow the serving rules (resolveRequestPath: no
 * `..`, no double encoding, dotfiles refused unless allowed) and the target's
 * real directory must be inside the root's real path (no symlink escapes).
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { stats } from '../stats.js';
import { receiveBody } from './receive-body.js';
import { resolveRequestPath } from './resolve-path.js';
import type { ServeResult } from './response.js';

/** Options of {@link createUploadHandler}. */
export interface UploadOptions {
  /** Largest body accepted (413 beyond, before anything is written). Default: no limit. */
  maxBytes?: number;
  /** Names starting with '.': refused (403) unless 'allow'. Default 'ignore' (404), as serving does. */
  dotfiles?: 'ignore' | 'deny' | 'allow';
  /** Allow the target's directory to be a symlink leaving the root. Default false. */
  followSymlinks?: boolean;
}

/** Answers a PUT request; resolves with what was sent (never rejects). */
export type UploadHandler = (req: IncomingMessage, res: ServerResponse) => Promise<ServeResult>;

function answer(res: ServerResponse, status: number, close = false, body = ''): void {
  if (res.headersSent || res.destroyed) return;
  const headers: Record<string, string> = { 'content-length': String(Buffer.byteLength(body)), 'content-type': 'text/plain; charset=utf-8' };
  if (close) headers.connection = 'close';
  res.writeHead(status, headers).end(body);
}

function inside(root: string, p: string): boolean {
  return p === root || p.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
}

/**
 * Makes a PUT handler that stores request bodies under `root`: 201 for a new
 * file, 204 for a replaced one; 400/403/404 for refused paths, 409 when the
 * parent is missing or the target is a directory, 413 over `maxBytes`, 507
 * when the disk is full, 400 for a body cut short.
 *
 * @example
 * ```ts
 * const upload = createUploadHandler('/srv/files', { maxBytes: 1 << 30 });
 * http.createServer((req, res) => (req.method === 'PUT' ? upload(req, res) : serve(req, res)));
 * ```
 */
export function createUploadHandler(root: string, options: UploadOptions = {}): UploadHandler {
  const absRoot = path.resolve(root);
  const realRoot = fs.realpathSync(absRoot);
  const dotfiles = options.dotfiles ?? 'ignore';
  return async (req, res) => {
    const refuse = (status: number, close = false): ServeResult => {
      // The body was not read: close the connection after the answer rather than parse it as requests.
      answer(res, status, close || !req.complete);
      return { status, bytes: 0, bytesZeroCopy: 0 };
    };
    const r = resolveRequestPath(req.url ?? '');
    if (!r.ok) return refuse(r.status);
    if (r.segments.length === 0 || r.trailingSlash) return refuse(400);
    if (r.hidden && dotfiles !== 'allow') return refuse(dotfiles === 'deny' ? 403 : 404);
    const target = path.join(absRoot, ...r.segments);
    const dir = path.dirname(target);
    if (!inside(absRoot, target)) return refuse(403);
    let realDir: string;
    try {
      realDir = fs.realpathSync(dir);
      if (!fs.statSync(realDir).isDirectory()) return refuse(409);
    } catch {
      return refuse(409);
    }
    if (!options.followSymlinks && !inside(realRoot, realDir)) return refuse(403);
    const final = path.join(realDir, path.basename(target));
    // Never written through a symlink: the rename replaces the link itself.
    const exists = (): boolean | 'dir' => {
      try {
        return fs.lstatSync(final).isDirectory() ? 'dir' : true;
      } catch {
        return false;
      }
    };
    if (exists() === 'dir') return refuse(409);
    const tmp = path.join(realDir, `.${path.basename(target)}.${randomBytes(8).toString('hex')}.upload`);
    const before = stats().bytesByPath.splice;
    try {
      const n = await receiveBody(req, tmp, { maxBytes: options.maxBytes });
      // Created or replaced is decided here, at the rename (uploads to one
      // path may overlap; the last rename wins).
      const was = exists();
      if (was === 'dir') throw Object.assign(new Error('the target became a directory'), { status: 409 });
      fs.renameSync(tmp, final);
      const status = was ? 204 : 201;
      if (status === 201) res.setHeader('location', req.url ?? '/');
      answer(res, status);
      return { status, bytes: n, bytesZeroCopy: Math.min(n, stats().bytesByPath.splice - before), path: target };
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      const e = err as Error & { code?: string; status?: number; bytesTransferred?: number };
      const status = e.status ?? (e.code === 'ENOSPC' || e.code === 'EDQUOT' ? 507 : e.code === 'EFBIG' ? 413 : 500);
      if (!res.headersSent && !res.destroyed && !req.socket.destroyed) answer(res, status, true);
      return { status, bytes: e.bytesTransferred ?? 0, bytesZeroCopy: 0, error: e };
    }
  };
}

/**
 * A size option: bytes, or with a k/m/g suffix (powers of 1024). Throws an
 * option value error (exit status 2) for anything else.
 * @internal
 */
export function parseUploadSize(v: string): number {
  const m = /^(\d+)([kmg]?)b?$/i.exec(v.trim());
  const n = m ? Number(m[1]) * ({ '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 } as Record<string, number>)[m[2]!.toLowerCase()]! : NaN;
  if (!Number.isSafeInteger(n)) {
    throw Object.assign(new Error(`invalid --max-upload-size '${v}' (bytes, or 10k, 100m, 2g)`), { code: 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' });
  }
  return n;
}
