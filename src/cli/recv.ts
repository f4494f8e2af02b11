// `zcopy recv --listen ADDR [--out FILE|DIR] [--verify]`: receives one file
// sent by `zcopy send` (wire format in send.ts) with receiveFile (socket ->
// pipe -> file in the kernel), into a temporary file renamed into place
// only when complete and (with --verify) checked, then answers the sender.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { receiveFile, stats } from '../index.js';
import { OPTIONS, clearSocketPath, err as errLine, help, invalid, listenAddress, out, parseOptions } from './common.js';
import { EXIT, FLAG_DIGEST, MAGIC, MAX_NAME, VERSION, digestFile, formatAddress, human, progress, safeName } from './send.js';

const HELP = `Usage: zcopy recv --listen ADDR [--out FILE|DIR] [options]

Waits for one 'zcopy send', writes the file with splice(2) (socket -> pipe
-> file, no copy through user space) and answers the sender.

Options:
  -l, --listen <addr>   where to accept: host:port, [ipv6]:port, a port (on
                        127.0.0.1; 0 picks a free one) or unix:<path> (a path
                        with a '/' is a Unix socket too)
  -p, --port <n>, -H, --host <addr>, -s, --socket <path>
                        the same as --listen, spelled as in zcopy serve
                        (not together with --listen; --socket not with -p/-H)
  -o, --out <path>      an existing directory: store there under the sender's
                        name; anything else: store as this file. Default: the
                        current directory
      --verify          require the sender's SHA-256 and check the written file
      --force           replace an existing file
  -q, --quiet           no progress, only errors
  -h, --help            this help

The sender's name is used only if it is one safe path component (no '/',
'..', control characters); nothing is ever written outside the directory.
The file appears only when complete: it is written to a temporary name in
the same directory and renamed; a failed transfer leaves nothing behind.
Exit status: 0 done, 1 failed, 2 usage, 3 digest mismatch, 4 incomplete.
`;

interface Header {
  name: string;
  size: number;
  digest: Buffer | undefined;
}

class Refusal extends Error {
  constructor(
    readonly tag: string,
    message: string,
    readonly exit: number,
  ) {
    super(message);
  }
}

/** Reads exactly n bytes that Node buffers; the rest stays buffered (receiveFile takes it first). */
function readExact(sock: net.Socket, n: number, ms: number): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Refusal('TIMEOUT', 'no header in time', EXIT.FAIL)), ms);
    const fail = (e: Error) => {
      cleanup();
      reject(e);
    };
    const cleanup = () => {
      clearTimeout(timer);
      sock.off('readable', onReadable);
      sock.off('end', onEnd);
      sock.off('close', onEnd);
    };
    const onReadable = () => {
      const b = sock.read(n) as Buffer | null;
      if (b !== null) {
        cleanup();
        resolve(b);
      }
    };
    const onEnd = () => fail(new Refusal('INCOMPLETE', 'the sender closed during the header', EXIT.INCOMPLETE));
    sock.on('readable', onReadable);
    sock.once('end', onEnd);
    sock.once('close', onEnd);
    onReadable();
  });
}

async function readHeader(sock: net.Socket): Promise<Header> {
  const fixed = await readExact(sock, 16, 30_000);
  if (!fixed.subarray(0, 4).equals(MAGIC)) throw new Refusal('PROTOCOL', 'not a zcopy send stream', EXIT.FAIL);
  if (fixed[4] !== VERSION) throw new Refusal('VERSION', `unsupported version ${fixed[4]}`, EXIT.FAIL);
  const flags = fixed[5]!;
  const nameLen = fixed.readUInt16BE(6);
  const size = fixed.readBigUInt64BE(8);
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw new Refusal('PROTOCOL', 'size too large', EXIT.FAIL);
  if (nameLen === 0 || nameLen > MAX_NAME) throw new Refusal('BAD_NAME', 'bad name length', EXIT.FAIL);
  const digest = flags & FLAG_DIGEST ? await readExact(sock, 32, 30_000) : undefined;
  const name = (await readExact(sock, nameLen, 30_000)).toString('utf8');
  return { name, size: Number(size), digest };
}

/** Where the file goes, or a refusal. Never outside the chosen directory. */
function destination(out: string | undefined, name: string): string {
  let dir: string;
  let base: string;
  const isDir = out === undefined || (fs.existsSync(out) && fs.statSync(out).isDirectory());
  if (isDir) {
    if (!safeName(name)) throw new Refusal('BAD_NAME', `unsafe file name ${JSON.stringify(name)}`, EXIT.FAIL);
    dir = path.resolve(out ?? '.');
    base = name;
  } else {
    dir = path.dirname(path.resolve(out!));
    base = path.basename(out!);
  }
  const dest = path.join(dir, base);
  if (path.dirname(dest) !== dir) throw new Refusal('BAD_NAME', `unsafe file name ${JSON.stringify(name)}`, EXIT.FAIL);
  return dest;
}

export async function recvCommand(argv: string[]): Promise<number> {
  const { values } = parseOptions('recv', argv, {
    listen: OPTIONS.listen,
    port: OPTIONS.port,
    host: OPTIONS.host,
    socket: OPTIONS.socket,
    out: { type: 'string', short: 'o' },
    verify: { type: 'boolean' },
    force: { type: 'boolean' },
    quiet: OPTIONS.quiet,
    help: OPTIONS.help,
  });
  if (values.help) return help(HELP);
  if (values.listen === undefined && values.port === undefined && values.socket === undefined) {
    throw invalid('--listen ADDR (or --port/--socket) is required (zcopy recv --help)');
  }
  // recv has always taken a socket path with a '/' for --listen.
  const addr = listenAddress(values, { host: '127.0.0.1', port: 0 }, { slashIsPath: true });
  const quiet = values.quiet === true;
  const log = (s: string) => {
    if (!quiet) errLine(`zcopy recv: ${s}\n`);
  };
  if (values.out !== undefined && values.out.endsWith('/') && !fs.existsSync(values.out)) throw invalid(`invalid --out '${values.out}': no such directory`);
  if ('path' in addr) await clearSocketPath(addr.path, '--listen');

  // allowHalfOpen: a sender that half-closes after the body still gets its answer.
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if ('path' in addr) server.listen(addr.path, resolve);
    else server.listen(addr.port, addr.host, resolve);
  });
  const bound = server.address();
  const shown = typeof bound === 'string' ? `unix:${bound}` : formatAddress({ host: bound!.address, port: bound!.port });
  // One plain line on stdout, so scripts (and tests) learn the port.
  out(`listening on ${shown}\n`);

  const sock = await new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  server.close();
  if ('path' in addr) fs.rmSync(addr.path, { force: true });
  sock.on('error', () => {});
  // Bounded: a sender that stopped reading must not hold us forever.
  const answer = (line: string) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 10_000);
      t.unref();
      sock.end(`${line}\n`, () => {
        clearTimeout(t);
        resolve();
      });
    });

  let tmp: string | undefined;
  try {
    const h = await readHeader(sock);
    if (values.verify && !h.digest) throw new Refusal('NO_DIGEST', '--verify needs the sender to send a digest (zcopy send --verify)', EXIT.MISMATCH);
    const dest = destination(values.out, h.name);
    if (!values.force && fs.existsSync(dest)) throw new Refusal('EXISTS', `${dest} exists (--force replaces it)`, EXIT.FAIL);
    tmp = path.join(path.dirname(dest), `.${path.basename(dest)}.zcopy-${process.pid}-${Date.now()}.partial`);
    log(`${h.name} (${human(h.size)}) from ${sock.remoteAddress ?? 'a local socket'} -> ${dest}`);
    const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644);
    let written = 0;
    const t0 = performance.now();
    const bar = progress('zcopy recv', h.size, () => {
      try {
        return fs.fstatSync(fd).size;
      } catch {
        return written;
      }
    }, quiet);
    try {
      written = await receiveFile(sock, fd, { offset: 0, length: h.size });
      fs.fsyncSync(fd);
    } catch (err) {
      const e = err as { code?: string; message: string; bytesTransferred?: number };
      if (e.code === 'ZCOPY_ERR_SHORT_READ') throw new Refusal('INCOMPLETE', `the sender closed after ${e.bytesTransferred ?? 0} of ${h.size} bytes`, EXIT.INCOMPLETE);
      throw new Refusal(e.code ?? 'IO', e.message, EXIT.FAIL);
    } finally {
      bar.stop();
      fs.closeSync(fd);
    }
    let verified = false;
    if (h.digest) {
      const mine = await digestFile(tmp);
      if (!mine.equals(h.digest)) throw new Refusal('MISMATCH', `sha256 differs: sent ${h.digest.toString('hex')}, written ${mine.toString('hex')}`, EXIT.MISMATCH);
      verified = true;
    }
    fs.renameSync(tmp, dest);
    tmp = undefined;
    const secs = (performance.now() - t0) / 1000;
    const s = stats();
    log(`done: ${human(written)} in ${secs.toFixed(2)} s (${human(written / Math.max(secs, 1e-6))}/s)${verified ? ', sha256 verified' : ''}; spliced ${human(s.bytesByPath.splice)}, copied ${human(s.bytesCopied)}`);
    await answer(`OK ${written} ${verified ? 'verified' : 'unverified'}`);
    return EXIT.OK;
  } catch (err) {
    if (tmp !== undefined) fs.rmSync(tmp, { force: true });
    const r = err instanceof Refusal ? err : new Refusal('IO', (err as Error).message, EXIT.FAIL);
    errLine(`zcopy recv: ${r.tag}: ${r.message}\n`);
    if (!sock.destroyed) await answer(`ERR ${r.tag} ${r.message.replace(/[\r\n]/g, ' ')}`);
    sock.destroy();
    return r.exit;
  }
}
