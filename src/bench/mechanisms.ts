/**
 * What `zcopy bench` compares: each mechanism runs as its own sender process
 * (src/bench/child.ts) against one sink process.
 *
 * @module
 */

/** Where the bytes go: a Unix socket, loopback TCP, or another file. */
export type BenchTransport = 'unix' | 'tcp' | 'file';
/** Every transport, in report order. */
export const TRANSPORTS: readonly BenchTransport[] = ['unix', 'tcp', 'file'];

/** One mechanism of the bench. */
export interface BenchMechanism {
  /** The id used by --mechanisms and in the JSON. */
  name: string;
  /** Short label for tables and charts. */
  label: string;
  /** Transports it applies to. */
  transports: readonly BenchTransport[];
  /** c: a loop of native/bench.c; node: Node's own API; zcopy: the public API. */
  kind: 'c' | 'node' | 'zcopy';
  /** Extra environment of the sender (the portable path is forced this way). */
  env?: Readonly<Record<string, string>>;
  /** What moves the bytes, in one line. */
  how: string;
  /** Run only when named in --mechanisms (a variant for a closer look). */
  optIn?: boolean;
}

/** The send buffer zcopy asks for on a large transfer to a Unix socket (src/internal/transfer.ts). */
export const ZCOPY_UNIX_SNDBUF = 4 * 1024 * 1024;

/** Bytes per read/write call of the C loops, and the C splice pipe's size. */
export const C_CHUNK = 128 * 1024;
/** The C sink's read buffer. */
export const SINK_BUFFER = 128 * 1024;

const SOCK: readonly BenchTransport[] = ['unix', 'tcp'];
const ALL: readonly BenchTransport[] = ['unix', 'tcp', 'file'];

/** Every mechanism, in report order (C references first, then Node, then zcopy). */
export const MECHANISMS: readonly BenchMechanism[] = [
  { name: 'c-read-write', label: 'C read/write', transports: ALL, kind: 'c', how: 'read() 128 KiB into a buffer, write() it (native/bench.c)' },
  { name: 'c-mmap-write', label: 'C mmap+write', transports: ALL, kind: 'c', how: 'mmap() the file, write() 128 KiB slices of the mapping' },
  { name: 'c-sendfile', label: 'C sendfile', transports: ALL, kind: 'c', how: 'sendfile() for the whole file on a blocking fd' },
  { name: 'c-sendfile-sndbuf', label: 'C sendfile 4M buf', transports: ['unix'], kind: 'c', optIn: true, how: 'sendfile() for the whole file, after SO_SNDBUF 4 MiB (what zcopy asks for on a Unix socket)' },
  { name: 'c-splice', label: 'C splice', transports: ALL, kind: 'c', how: 'splice() file -> 128 KiB pipe -> destination' },
  { name: 'c-copy-file-range', label: 'C copy_file_range', transports: ['file'], kind: 'c', how: 'copy_file_range() 128 KiB per call' },
  { name: 'node-pipe', label: 'Node stream pipe', transports: SOCK, kind: 'node', how: 'fs.createReadStream(file).pipe(socket)' },
  { name: 'node-copyfile', label: 'Node fs.copyFile', transports: ['file'], kind: 'node', how: 'fs.promises.copyFile(src, dest)' },
  { name: 'zcopy-auto', label: 'zcopy auto', transports: SOCK, kind: 'zcopy', how: "sendFile(socket, path) (mechanism 'auto')" },
  { name: 'zcopy-sendfile', label: 'zcopy sendfile', transports: SOCK, kind: 'zcopy', how: "sendFile(socket, path, { mechanism: 'sendfile' })" },
  { name: 'zcopy-sendfile-sndbuf0', label: 'zcopy sendfile def buf', transports: ['unix'], kind: 'zcopy', optIn: true, how: "sendFile(socket, path, { mechanism: 'sendfile', sendBufferSize: 0 }) (the socket's default buffer)" },
  { name: 'zcopy-splice', label: 'zcopy splice', transports: SOCK, kind: 'zcopy', how: "sendFile(socket, path, { mechanism: 'splice' })" },
  { name: 'zcopy-copy', label: 'zcopy copy', transports: SOCK, kind: 'zcopy', how: "sendFile(socket, path, { mechanism: 'copy' }) (native pread/write)" },
  { name: 'zcopy-portable', label: 'zcopy portable', transports: SOCK, kind: 'zcopy', env: { ZCOPY_FORCE_FALLBACK: '1' }, how: 'sendFile(socket, path) with ZCOPY_FORCE_FALLBACK=1' },
  { name: 'zcopy-copyfile', label: 'zcopy copyFile', transports: ['file'], kind: 'zcopy', how: 'copyFile(src, dest)' },
];

/** The mechanism called `name`, if any. */
export function mechanismByName(name: string): BenchMechanism | undefined {
  return MECHANISMS.find((m) => m.name === name);
}
