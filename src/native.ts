/**
 * The one module that loads the addon. Everything else imports `native`
 * from here. If the addon is missing, fails to load, or the portable path is
 * forced, `native` is `null` and `nativeReason` says why; nothing throws at
 * import.
 *
 * @module
 */
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** A poll handle on a dup'd fd (opaque). */
export type PollerHandle = { readonly __poller: unique symbol };

/**
 * The addon's functions. Each returns a count >= 0 or a negative errno;
 * none throws for a syscall failure.
 *
 * fd ownership: every fd that `dup`, `pipe` or `epollNew` returns is
 * recorded as zcopy's in this environment, and must be closed with
 * `native.close` (never `fs.close`/`fs.closeSync`), which forgets it
 * before closing. When a worker ends mid-transfer, the addon's teardown
 * closes every fd still recorded (so peers see their connections close);
 * an fd closed behind its back would stay recorded, and teardown would
 * close whatever file reused that number.
 */
export interface NativeBinding {
  sendfile(outFd: number, inFd: number, offset: number, count: number): number;
  sendfileAsync(outFd: number, inFd: number, offset: number, count: number, cb: (r: number) => void): void;
  pread(fd: number, buf: Uint8Array, bufOffset: number, length: number, position: number): number;
  write(fd: number, buf: Uint8Array, bufOffset: number, length: number): number;
  dup(fd: number): number;
  close(fd: number): number;
  getFl(fd: number): number;
  setFl(fd: number, flags: number): number;
  shutdown(fd: number, how: number): number;
  fstatKind(fd: number): number;
  /** [type, listening, family, connected, peerIsLoopback] or -errno */
  sockInfo(fd: number): [number, number, number, number, number] | number;
  constants(): Record<string, number>;
  /** cb(status, events, moved, result): moved/result only end a pump (pollerPump). */
  pollerNew(fd: number, cb: (status: number, events: number, moved: number, result: number) => void): PollerHandle | number;
  pollerStart(p: PollerHandle, events: number): number;
  /** sendfile [offset, offset+count) of inFd at each writability wake-up, in C, then cb (poll.c). */
  pollerPump(p: PollerHandle, inFd: number, offset: number, count: number, budget: number, maxMs: number): number;
  /** Returns the bytes an unfinished pump sent. */
  pollerStop(p: PollerHandle): number;
  /** Returns the bytes an unfinished pump sent. */
  pollerClose(p: PollerHandle): number;
  /** SO_SNDBUF after asking for `bytes` (0: only read it), or -errno. */
  sendBuffer(fd: number, bytes: number): number;
  copyFileRangeAsync(inFd: number, inOff: number, outFd: number, outOff: number, len: number, cb: (r: number) => void): void;
  ficloneAsync(srcFd: number, destFd: number, cb: (r: number) => void): void;
  preadPwriteAsync(inFd: number, inOff: number, outFd: number, outOff: number, len: number, cb: (r: number) => void): void;
  fadvise(fd: number, offset: number, len: number, advice: number): number;
  uncachedPages(fd: number, offset: number, len: number): number;
  /** preadv2(RWF_NOWAIT): -EAGAIN instead of waiting for the disk (http.c). */
  preadNowait?(fd: number, buf: Uint8Array, bufOffset: number, length: number, position: number): number;
  /** TCP_CORK on/off (http.c). */
  setCork?(fd: number, on: number): number;
  /** fstat into 8 doubles (dev, ino, size, nlink, mtime s/ns, ctime s/ns) of a 64-byte buffer (http.c). */
  fstatId?(fd: number, out: Uint8Array): number;
  /** Poll phases the event loop has entered (a uv_prepare handle counts them); see open-file-cache.ts loopTurn. */
  loopTurn?(): number;
  lseek(fd: number, offset: number): number;
  spliceFile(fileFd: number, offset: number, pipeFd: number, len: number): number;
  splice(fdIn: number, fdOut: number, len: number, more: number): number;
  /** [readFd, writeFd, capacity] or -errno */
  pipe(size: number): [number, number, number] | number;
  fionread(fd: number): number;
  /** recv(MSG_DONTWAIT), read() for non-sockets (issue 5). */
  recv(fd: number, buf: Uint8Array, bufOffset: number, length: number): number;
  /** -SO_ERROR (0 when none) or -errno (issue 5). */
  sockError(fd: number): number;
  epollNew(): number;
  epollCtl(ep: number, op: number, fd: number, events: number, tag: number): number;
  /** Non-blocking; fills out[2i] = tag, out[2i+1] = events. */
  epollWait(ep: number, out: Int32Array): number;
  spliceConstants(): Record<string, number>;
  /** SO_OOBINLINE on a socket: 0 or -errno (issue 8: urgent data). */
  oobInline(fd: number): number;
  /** SIOCATMARK: 1 at a TCP urgent byte, 0 elsewhere, or -errno. */
  atMark(fd: number): number;
  /** Memory-mapped files (issue 4, native/mmap.c): an unmapped handle, or -errno. */
  mmapNew(): MapHandle | number;
  /** Maps [offset, offset + length) of fd into h (any offset: page alignment is done in C). */
  mmap(h: MapHandle, fd: number, offset: number, length: number, prot: number, flags: number): number;
  /** The same on the threadpool (for MAP_POPULATE); cb(0 | -errno). */
  mmapAsync(h: MapHandle, fd: number, offset: number, length: number, prot: number, flags: number, cb: (r: number) => void): void | number;
  /** An external ArrayBuffer over [start, start + length) of the mapping, or -errno (E_NO_EXTERNAL_BUFFERS when refused). */
  mmapView(h: MapHandle, start: number, length: number): ArrayBuffer | number;
  /** napi_detach_arraybuffer: every view over ab becomes zero-length. */
  mmapDetach(ab: ArrayBuffer): number;
  /** Releases the handle; the memory is unmapped once its views are gone. */
  mmapClose(h: MapHandle): number;
  madvise(h: MapHandle, start: number, length: number, advice: number): number;
  /** msync on the threadpool; returns -errno without calling cb when closed. */
  msyncAsync(h: MapHandle, start: number, length: number, flags: number, cb: (r: number) => void): void | number;
  mmapConstants(): Record<string, number>;
  [name: string]: unknown;
}

/** A native mapping (opaque; issue 4). */
export type MapHandle = { readonly __mapping: unique symbol };

/** Root of the installed package (where package.json and build/ live). */
export const packageRoot: string = findRoot(dirname(fileURLToPath(import.meta.url)));

function findRoot(start: string): string {
  let dir = start;
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'binding.gyp'))) return dir;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return join(start, '..');
}

function load(): { binding: NativeBinding | null; reason?: string } {
  if (process.env.ZCOPY_FORCE_FALLBACK === '1') {
    return { binding: null, reason: 'portable path forced (ZCOPY_FORCE_FALLBACK=1)' };
  }
  if (process.platform !== 'linux') {
    return { binding: null, reason: `zero-copy syscalls are Linux-only (platform ${process.platform})` };
  }
  const file = join(packageRoot, 'build', 'Release', 'zcopy.node');
  if (!existsSync(file)) {
    // No build record: the install script never ran (npm --ignore-scripts,
    // or an npm that does not run a dependency's scripts until allowed).
    let why = 'the native addon was not built: its install script did not run (run: npm rebuild zcopy --foreground-scripts)';
    try {
      const status = JSON.parse(readFileSync(join(packageRoot, 'build', 'zcopy-build.json'), 'utf8')) as { reason?: string };
      if (status.reason) why = status.reason;
    } catch {
      // No build record: the install script never ran.
    }
    return { binding: null, reason: why };
  }
  try {
    const binding = createRequire(import.meta.url)(file) as NativeBinding;
    if (typeof binding.sendfile !== 'function') {
      return { binding: null, reason: 'the native addon has no syscalls for this platform' };
    }
    return { binding };
  } catch (err) {
    return { binding: null, reason: `the native addon failed to load: ${(err as Error).message}` };
  }
}

const loaded = load();

// The package ships an ESM build (dist/) and a CommonJS one (dist/cjs/). A
// process that loads both gets two copies of every module's state (stats()
// counters, buffer pools, per-socket response queues), which is never what
// the user meant: say so once, with a stable code.
{
  const key = Symbol.for('zcopy.loaded-as');
  const format = typeof __filename === 'string' ? 'CommonJS' : 'ESM';
  const g = globalThis as { [key]?: string };
  if (g[key] === undefined) g[key] = format;
  else if (g[key] !== format && g[key] !== 'both') {
    g[key] = 'both';
    process.emitWarning(`zcopy was loaded both as ESM (import) and as CommonJS (require): the two copies keep separate state (stats(), buffer pools, per-socket queues); load it one way`, { code: 'ZCOPY_DUAL_PACKAGE' });
  }
}

/** The addon, or `null` when the portable path is in use. */
export const native: NativeBinding | null = loaded.binding;
/** Why `native` is `null`; undefined when it loaded. */
export const nativeReason: string | undefined = loaded.reason;
/** Syscall constants from the addon (empty without it). */
export const C: Readonly<Record<string, number>> = native ? Object.freeze(native.constants()) : Object.freeze({});
