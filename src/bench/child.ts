/**
 * A bench child process: one sender or one sink, pinned, measuring its own
 * window. Started by src/bench/run.ts, never by users:
 *
 *   node child.js sink TRANSPORT ADDR CPUMASK
 *   node child.js send MECHANISM TRANSPORT ADDR|DEST FILE LENGTH CPUMASK
 *   node child.js driver JSON   (the traced pairs, run under perf record)
 *
 * Prints JSON lines on stdout ({"listening": ...} from a sink, then one
 * result). The window starts once connected (the file opened, the socket
 * accepted) and ends when the receiver has closed the connection; marker
 * syscalls at both ends let a tracer cut the same window out of its record.
 *
 * @module
 */
import fs from 'node:fs';
import net from 'node:net';
import { once } from 'node:events';
import { benchBinding, type BenchBinding, type LoopCounts } from './binding.js';
import { C_CHUNK, SINK_BUFFER, ZCOPY_UNIX_SNDBUF, mechanismByName } from './mechanisms.js';
import { MARK_BEGIN, MARK_END } from './trace.js';


/** What a child measured over its window (kernel counters read in-process). */
export interface ChildFigures {
  role: 'send' | 'sink';
  pid: number;
  bytes: number;
  wallS: number;
  userS: number;
  sysS: number;
  minflt: number;
  majflt: number;
  nvcsw: number;
  nivcsw: number;
  /** /proc/self/io read_bytes over the window: bytes this process made the disk read. */
  readBytes: number | null;
  /** Threads pinned (0 when not pinned). */
  pinned: number;
  /** Syscalls the program counted itself (the C loops), by name. */
  syscalls?: Record<string, number>;
  /** Bytes the program itself moved through user memory (read-family into, write-family out of). */
  userCopies?: { kToU: number; uToK: number };
  /** zcopy's stats() after the transfer (zcopy mechanisms). */
  zcopyStats?: unknown;
  /** Why the figures in this record could not be taken, if so. */
  error?: string;
}

function mark(fd: number): void {
  try {
    fs.fstatSync(fd);
  } catch {
    // EBADF is the point: the syscall is the marker.
  }
}

function ioReadBytes(): number | null {
  try {
    const m = /^read_bytes:\s*(\d+)/m.exec(fs.readFileSync('/proc/self/io', 'latin1'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function check(r: LoopCounts | number, what: string): LoopCounts {
  if (typeof r === 'number') throw new Error(`${what}: errno ${-r}`);
  return r;
}

function addCalls(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

interface Window {
  bytes: number;
  syscalls?: Record<string, number>;
  userCopies?: { kToU: number; uToK: number };
  zcopyStats?: unknown;
}

/** Measures fn() between the markers: wall, rusage, /proc/self/io. */
async function measured(role: 'send' | 'sink', pinned: number, fn: () => Promise<Window> | Window): Promise<ChildFigures> {
  const io0 = ioReadBytes();
  const r0 = process.resourceUsage();
  const t0 = process.hrtime.bigint();
  mark(MARK_BEGIN);
  const w = await fn();
  mark(MARK_END);
  const t1 = process.hrtime.bigint();
  const r1 = process.resourceUsage();
  const io1 = ioReadBytes();
  return {
    role,
    pid: process.pid,
    bytes: w.bytes,
    wallS: Number(t1 - t0) / 1e9,
    userS: (r1.userCPUTime - r0.userCPUTime) / 1e6,
    sysS: (r1.systemCPUTime - r0.systemCPUTime) / 1e6,
    minflt: r1.minorPageFault - r0.minorPageFault,
    majflt: r1.majorPageFault - r0.majorPageFault,
    nvcsw: r1.voluntaryContextSwitches - r0.voluntaryContextSwitches,
    nivcsw: r1.involuntaryContextSwitches - r0.involuntaryContextSwitches,
    readBytes: io0 === null || io1 === null ? null : io1 - io0,
    pinned,
    ...(w.syscalls ? { syscalls: w.syscalls } : {}),
    ...(w.userCopies ? { userCopies: w.userCopies } : {}),
    ...(w.zcopyStats ? { zcopyStats: w.zcopyStats } : {}),
  };
}

function pin(b: BenchBinding, mask: number): number {
  if (!mask) return 0;
  const r = b.benchPin(mask);
  if (r < 0) throw new Error(`sched_setaffinity: errno ${-r}`);
  return r;
}

function socketArgs(transport: string, addr: string): [number, Buffer, number] {
  return transport === 'unix' ? [0, Buffer.from(addr), 0] : [1, Buffer.alloc(0), Number(addr)];
}

async function sink(b: BenchBinding, transport: string, addr: string, mask: number): Promise<ChildFigures> {
  const pinned = pin(b, mask);
  const [kind, path, port] = socketArgs(transport, addr);
  const lfd = b.benchSocket(kind, path, port, 1);
  if (lfd < 0) throw new Error(`listen ${transport}:${addr}: errno ${-lfd}`);
  const where = transport === 'unix' ? addr : String(b.benchLocalPort(lfd));
  process.stdout.write(`${JSON.stringify({ listening: where })}\n`);
  const fd = b.benchAccept(lfd);
  if (fd < 0) throw new Error(`accept: errno ${-fd}`);
  fs.closeSync(lfd);
  const fig = await measured('sink', pinned, () => {
    const r = check(b.benchSink(fd, SINK_BUFFER), 'sink read');
    // read() copies every byte it returns from the socket buffer to the user buffer.
    return { bytes: r.bytes, syscalls: r.syscalls, userCopies: { kToU: r.bytes, uToK: 0 } };
  });
  fs.closeSync(fd);
  return fig;
}

/** A C loop from the file to outFd; the program counts every syscall it makes. */
function cLoop(b: BenchBinding, name: string, inFd: number, outFd: number, length: number): Window {
  let r: LoopCounts;
  let copies: { kToU: number; uToK: number };
  switch (name) {
    case 'c-read-write':
      r = check(b.benchReadWrite(inFd, outFd, C_CHUNK), name);
      copies = { kToU: r.bytes, uToK: r.bytes };
      break;
    case 'c-mmap-write':
      r = check(b.benchMmapWrite(inFd, outFd, length, C_CHUNK), name);
      copies = { kToU: 0, uToK: r.bytes };
      break;
    case 'c-sendfile':
    case 'c-sendfile-sndbuf':
      r = check(b.benchSendfile(inFd, outFd, length), name);
      copies = { kToU: 0, uToK: 0 };
      break;
    case 'c-splice':
      r = check(b.benchSplice(inFd, outFd, length, C_CHUNK), name);
      copies = { kToU: 0, uToK: 0 };
      break;
    case 'c-copy-file-range':
      r = check(b.benchCopyFileRange(inFd, outFd, length, C_CHUNK), name);
      copies = { kToU: 0, uToK: 0 };
      break;
    default:
      throw new Error(`unknown C mechanism ${name}`);
  }
  return { bytes: r.bytes, syscalls: { ...r.syscalls }, userCopies: copies };
}

async function send(b: BenchBinding, name: string, transport: string, addr: string, file: string, length: number, mask: number): Promise<ChildFigures> {
  const pinned = pin(b, mask);
  const mech = mechanismByName(name);
  if (!mech) throw new Error(`unknown mechanism ${name}`);
  const zcopy = mech.kind === 'zcopy' ? await import('../index.js') : null;

  if (transport === 'file') {
    const dest = addr;
    if (mech.kind === 'c') {
      const inFd = fs.openSync(file, 'r');
      const outFd = fs.openSync(dest, 'w');
      const fig = await measured('send', pinned, () => cLoop(b, name, inFd, outFd, length));
      fs.closeSync(outFd);
      fs.closeSync(inFd);
      return fig;
    }
    if (name === 'node-copyfile') {
      return measured('send', pinned, async () => {
        await fs.promises.copyFile(file, dest);
        return { bytes: fs.statSync(dest).size };
      });
    }
    zcopy!.resetStats();
    return measured('send', pinned, async () => {
      const n = await zcopy!.copyFile(file, dest);
      return { bytes: n, zcopyStats: zcopy!.stats() };
    });
  }

  if (mech.kind === 'c') {
    const [kind, path, port] = socketArgs(transport, addr);
    const sock = b.benchSocket(kind, path, port, 0);
    if (sock < 0) throw new Error(`connect ${transport}:${addr}: errno ${-sock}`);
    if (name === 'c-sendfile-sndbuf') {
      const got = b.sendBuffer(sock, ZCOPY_UNIX_SNDBUF);
      if (got < 0) throw new Error(`setsockopt SO_SNDBUF: errno ${-got}`);
    }
    const inFd = fs.openSync(file, 'r');
    const fig = await measured('send', pinned, () => {
      const w = cLoop(b, name, inFd, sock, length);
      addCalls(w.syscalls!, check(b.benchFinish(sock), 'finish').syscalls);
      return w;
    });
    fs.closeSync(inFd);
    fs.closeSync(sock);
    return fig;
  }

  const socket = net.connect(transport === 'unix' ? { path: addr } : { host: '127.0.0.1', port: Number(addr) });
  await once(socket, 'connect');
  // The sink never writes; flowing mode lets its close arrive as 'end'/'close'.
  socket.resume();
  const closed = new Promise<void>((resolve, reject) => {
    socket.once('close', () => resolve());
    socket.once('error', reject);
  });
  if (zcopy) zcopy.resetStats();
  return measured('send', pinned, async () => {
    let bytes: number;
    if (name === 'node-pipe') {
      const rs = fs.createReadStream(file);
      rs.pipe(socket);
      await once(rs, 'end');
      bytes = rs.bytesRead;
    } else {
      const mechanism = name === 'zcopy-portable' ? 'auto' : name === 'zcopy-sendfile-sndbuf0' ? 'sendfile' : (name.slice('zcopy-'.length) as 'auto' | 'sendfile' | 'splice' | 'copy');
      bytes = await zcopy!.sendFile(socket, file, name === 'zcopy-sendfile-sndbuf0' ? { mechanism, sendBufferSize: 0 } : { mechanism });
      socket.end();
    }
    await closed;
    return zcopy ? { bytes, zcopyStats: zcopy.stats() } : { bytes };
  });
}

async function main(argv: string[]): Promise<void> {
  const [role, ...a] = argv;
  const { binding, reason } = benchBinding();
  if (!binding) throw new Error(`zcopy bench needs the native addon: ${reason}`);
  // Never outlive the bench: a sink blocks in accept() and read().
  const parent = process.ppid;
  if (binding.benchDieWithParent() !== parent) throw new Error('the bench is gone');
  if (role === 'driver') {
    // The traced section: this process and every pair it starts run under
    // one perf record (src/bench/run.ts).
    const { driveTraced } = await import('./run.js');
    await driveTraced(JSON.parse(a[0]!));
    return;
  }
  let out: ChildFigures;
  if (role === 'sink') out = await sink(binding, a[0]!, a[1]!, Number(a[2]));
  else if (role === 'send') out = await send(binding, a[0]!, a[1]!, a[2]!, a[3]!, Number(a[4]), Number(a[5]));
  else throw new Error(`usage: child.js sink|send ...`);
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`zcopy bench child: ${(err as Error).message ?? String(err)}\n`);
  process.exitCode = 1;
});
