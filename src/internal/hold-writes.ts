// Ordering around transfers that write behind Node's back.
//
// File bytes must not overtake bytes Node still buffers for the socket (an
// HTTP head not yet flushed), and writes the caller makes while a transfer
// runs must come after it. cork() cannot do both: it would also stall the
// pending bytes that must go first. So while any transfer is queued or
// running on a socket, the socket's own write()/end() are shadowed on the
// instance and every call is queued, in order, together with the transfers
// themselves. The queue is taken synchronously when sendFile() is called, so
// `sendFile(s, f); s.write(x)` sends f then x, and `sendFile(s, a);
// sendFile(s, b)` sends a then b.
import type { Duplex } from 'node:stream';

type WriteCb = (err?: Error | null) => void;
type RawWrite = (chunk: unknown, cb?: WriteCb) => boolean;

type Op =
  | { kind: 'write'; args: unknown[] }
  | { kind: 'end'; args: unknown[] }
  | { kind: 'turn'; start: () => void };

interface Gate {
  socket: Duplex;
  write: RawWrite;
  end: Duplex['end'];
  hadOwnWrite: boolean;
  hadOwnEnd: boolean;
  ownWrite: unknown;
  ownEnd: unknown;
  queue: Op[];
  busy: boolean;
  owesDrain: boolean;
  /** Transfers to cancel when the socket closes (queued ones included). */
  closers: Set<() => void>;
  /** The gate's one 'close' listener, however many transfers are queued. */
  onClose: () => void;
}

const gates = new WeakMap<Duplex, Gate>();

/** One transfer's place in its socket's queue. */
export interface SocketTurn {
  /** Resolves when earlier transfers and writes on the socket are done. */
  readonly ready: Promise<void>;
  /**
   * After `ready`: resolves once every byte Node buffered for the socket has
   * reached the kernel, so bytes written behind Node's back come after them.
   */
  flushed(): Promise<void>;
  /** Writes through the stream, ahead of the held calls (portable path). */
  write(chunk: Uint8Array, cb: WriteCb): boolean;
  /**
   * Calls `fn` once if the socket emits 'close' while this turn is queued or
   * running; returns the unsubscribe function. All turns of a socket share
   * one 'close' listener (no MaxListenersExceededWarning at 11 queued).
   */
  onClose(fn: () => void): () => void;
  /**
   * Ends this turn: queued writes (and the next transfer) go on, in order.
   * `failed`: the transfer did not send all it owed. Whatever the caller
   * queued behind it (writes, end(), further transfers) was written on the
   * assumption that it had, so sending it would put bytes on the wire that no
   * longer match their framing (an HTTP body cut short, then the next
   * response's head). In that case the socket is destroyed instead: held
   * write callbacks get ERR_STREAM_DESTROYED and queued transfers reject with
   * ZCOPY_ERR_SOCKET_CLOSED. With nothing queued behind it the socket is left
   * to the caller, who may still answer on it.
   */
  leave(failed?: boolean): void;
}

/** Takes a place in `socket`'s queue. Call synchronously, at the API call. */
export function enterSocket(socket: Duplex): SocketTurn {
  let gate = gates.get(socket);
  if (!gate) gate = install(socket);
  const g = gate;
  let left = false;
  let started = false;
  let resolveReady!: () => void;
  const ready = new Promise<void>((r) => (resolveReady = r));
  const op: Op = {
    kind: 'turn',
    start: () => {
      started = true;
      resolveReady();
    },
  };
  if (!g.busy) {
    g.busy = true;
    op.start();
  } else {
    g.queue.push(op);
  }
  return {
    ready,
    flushed() {
      // A corked socket holds its pending bytes (and would hold the portable
      // path's writes) until uncork(): the transfer needs them on the wire
      // first, so it uncorks, as many levels as the caller corked. The
      // socket stays uncorked: re-corking could leave it corked forever if
      // the code that corked it already ran its uncork() (a no-op while we
      // held it uncorked), as node:http does on the next tick.
      while ((socket as Duplex).writableCorked > 0) socket.uncork();
      if (socket.writableLength === 0) return Promise.resolve();
      // An empty write queued behind everything pending: its callback runs
      // once those bytes were handed to the kernel.
      return new Promise<void>((resolve) => {
        g.write.call(socket, Buffer.alloc(0), () => resolve());
      });
    },
    write(chunk, cb) {
      // The caller may cork() mid-transfer; a corked write would never call
      // back and the transfer would hang.
      while ((socket as Duplex).writableCorked > 0) socket.uncork();
      return g.write.call(socket, chunk, cb);
    },
    onClose(fn) {
      let called = false;
      const once = (): void => {
        if (called) return;
        called = true;
        g.closers.delete(once);
        fn();
      };
      g.closers.add(once);
      return () => {
        g.closers.delete(once);
      };
    },
    leave(failed) {
      if (left) return;
      left = true;
      if (started) {
        // No 'error' argument: an 'error' event nobody listens for would
        // crash the process; the held callbacks and queued promises say it.
        if (failed && g.queue.length > 0 && !socket.destroyed) socket.destroy();
        drain(g);
      } else {
        // Gave up before its turn (aborted): just leave the queue.
        const i = g.queue.indexOf(op);
        if (i >= 0) g.queue.splice(i, 1);
      }
    },
  };
}

function install(socket: Duplex): Gate {
  const s = socket as Duplex & Record<string, unknown>;
  const gate: Gate = {
    socket,
    write: s.write as RawWrite,
    end: s.end,
    hadOwnWrite: Object.prototype.hasOwnProperty.call(s, 'write'),
    hadOwnEnd: Object.prototype.hasOwnProperty.call(s, 'end'),
    ownWrite: s.write,
    ownEnd: s.end,
    queue: [],
    busy: false,
    owesDrain: false,
    closers: new Set(),
    onClose: () => {
      for (const fn of [...gate.closers]) fn();
    },
  };
  socket.on('close', gate.onClose);
  Object.defineProperty(s, 'write', {
    configurable: true,
    writable: true,
    value(...args: unknown[]): boolean {
      gate.queue.push({ kind: 'write', args });
      gate.owesDrain = true;
      // Backpressure: the caller should wait for 'drain', which comes when
      // the held writes have been handed to the stream.
      return false;
    },
  });
  Object.defineProperty(s, 'end', {
    configurable: true,
    writable: true,
    value(...args: unknown[]) {
      gate.queue.push({ kind: 'end', args });
      return s;
    },
  });
  gates.set(socket, gate);
  return gate;
}

/** Replays held calls in order until the next transfer's turn, or the end. */
function drain(g: Gate): void {
  const s = g.socket;
  while (g.queue.length > 0) {
    const op = g.queue.shift()!;
    if (op.kind === 'turn') {
      op.start();
      return; // g.busy stays true: the next transfer owns the socket
    }
    if (op.kind === 'write') {
      if (s.destroyed) {
        const cb = op.args.find((a) => typeof a === 'function') as WriteCb | undefined;
        if (cb) {
          const err = Object.assign(new Error('Cannot call write after a stream was destroyed'), { code: 'ERR_STREAM_DESTROYED' });
          process.nextTick(cb, err);
        }
        continue;
      }
      (g.write as (...a: unknown[]) => boolean).apply(s, op.args);
    } else {
      (g.end as (...a: unknown[]) => unknown).apply(s, op.args);
    }
  }
  // Nothing queued: give the socket its own methods back.
  g.busy = false;
  gates.delete(g.socket);
  s.removeListener('close', g.onClose);
  const own = s as unknown as Record<string, unknown>;
  if (g.hadOwnWrite) own.write = g.ownWrite;
  else delete own.write;
  if (g.hadOwnEnd) own.end = g.ownEnd;
  else delete own.end;
  // Held writes answered false; if the replay fit without Node asking for a
  // 'drain', emit one so a caller waiting on it goes on.
  if (g.owesDrain && !s.destroyed && !(s as Duplex).writableNeedDrain) process.nextTick(() => s.emit('drain'));
}
