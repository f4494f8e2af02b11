// Fetch (1) v4-11: the point of it all. The response is header bytes, then
// per partition its fields and a file region of the log, alternating; the
// record bytes go from the page cache to the socket (sendParts -> sendFile),
// never through a JS Buffer on the native path.
//
// Long poll: when fewer than min_bytes are available the request waits up to
// max_wait_ms, woken by an append to any partition it asked for
// (PartitionLog.onAppend) or cut short when the connection closes.
import type { FdRange } from '../../send-parts.js';
import type { FileSlice, PartitionLog } from '../storage/index.js';
import type { BrokerCore, Handler, Reply } from '../context.js';
import { Writer } from '../protocol/codec.js';
import { E } from '../protocol/errors.js';

interface FetchPartition {
  partition: number;
  fetchOffset: number;
  maxBytes: number;
}
interface FetchTopic {
  name: string;
  partitions: FetchPartition[];
}

interface Result {
  error: number;
  hw: number;
  lso: number;
  logStart: number;
  slices: FileSlice[];
  bytes: number;
}

function gather(core: BrokerCore, topics: FetchTopic[], maxBytes: number): { results: Result[][]; bytes: number; hadError: boolean } {
  let budget = maxBytes;
  let first = true; // KIP-74: the first partition with data gets one whole batch
  let bytes = 0;
  let hadError = false;
  const results = topics.map((t) =>
    t.partitions.map((p): Result => {
      const log = core.logs.partition(t.name, p.partition);
      if (!log) {
        hadError = true;
        return { error: E.UNKNOWN_TOPIC_OR_PARTITION, hw: -1, lso: -1, logStart: -1, slices: [], bytes: 0 };
      }
      const hw = log.highWatermark;
      const logStart = log.logStartOffset;
      if (p.fetchOffset < logStart || p.fetchOffset > hw) {
        hadError = true;
        return { error: E.OFFSET_OUT_OF_RANGE, hw, lso: hw, logStart, slices: [], bytes: 0 };
      }
      const limit = Math.min(p.maxBytes, budget);
      if (p.fetchOffset === hw || (limit <= 0 && !first)) return { error: E.NONE, hw, lso: hw, logStart, slices: [], bytes: 0 };
      const rr = log.read(p.fetchOffset, Math.max(0, limit), first);
      if (rr.errorCode !== E.NONE) {
        for (const s of rr.slices) s.release();
        hadError = true;
        return { error: rr.errorCode, hw: rr.highWatermark, lso: rr.lastStableOffset, logStart: rr.logStartOffset, slices: [], bytes: 0 };
      }
      if (rr.bytes > 0) {
        first = false;
        budget -= rr.bytes;
        bytes += rr.bytes;
      }
      return { error: E.NONE, hw: rr.highWatermark, lso: rr.lastStableOffset, logStart: rr.logStartOffset, slices: rr.slices, bytes: rr.bytes };
    }),
  );
  return { results, bytes, hadError };
}

function releaseAll(results: Result[][]): void {
  for (const t of results) for (const p of t) for (const s of p.slices) s.release();
}

/** Resolves after an append to one of `logs`, `ms`, or an abort. */
function waitForData(logs: PartitionLog[], ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const offs: Array<() => void> = [];
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      for (const off of offs) off();
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    for (const log of logs) offs.push(log.onAppend(done));
  });
}

export const fetch: Handler = async (req, core) => {
  const v = req.apiVersion;
  const r = req.body;
  r.int32(); // replica_id
  const maxWait = Math.max(0, r.int32());
  const minBytes = r.int32();
  const maxBytes = r.int32();
  r.int8(); // isolation_level: no transactions, LSO = HW either way
  if (v >= 7) {
    r.int32(); // session_id: sessions are not kept, every fetch is full
    r.int32(); // session_epoch
  }
  const topics: FetchTopic[] = r.array((r) => ({
    name: r.string(),
    partitions: r.array((r) => {
      const partition = r.int32();
      if (v >= 9) r.int32(); // current_leader_epoch
      const fetchOffset = r.int64();
      if (v >= 5) r.int64(); // log_start_offset (followers only)
      return { partition, fetchOffset, maxBytes: r.int32() };
    }),
  }));
  // v7+: forgotten_topics_data, v11: rack_id: ignored (no sessions, one rack).

  const deadline = Date.now() + maxWait;
  let g = gather(core, topics, maxBytes);
  // Bounded: each round waits for an append or the deadline.
  while (g.bytes < minBytes && !g.hadError && !req.signal.aborted) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    releaseAll(g.results);
    const logs: PartitionLog[] = [];
    for (const t of topics) for (const p of t.partitions) {
      const log = core.logs.partition(t.name, p.partition);
      if (log) logs.push(log);
    }
    await waitForData(logs, left, req.signal);
    g = gather(core, topics, maxBytes);
  }
  // Aborted (connection closed or broker closing): answer with what there
  // is; the sender drops it if the socket is gone, and releases the slices.

  const w = new Writer(256);
  const parts: Array<Buffer | FdRange> = [];
  w.int32(0); // throttle_time_ms
  if (v >= 7) w.int16(E.NONE).int32(0); // error_code, session_id
  w.int32(topics.length);
  topics.forEach((t, ti) => {
    w.string(t.name).int32(t.partitions.length);
    t.partitions.forEach((p, pi) => {
      const res = g.results[ti]![pi]!;
      w.int32(p.partition).int16(res.error).int64(res.hw).int64(res.lso);
      if (v >= 5) w.int64(res.logStart);
      w.int32(0); // aborted_transactions: none
      if (v >= 11) w.int32(-1); // preferred_read_replica
      w.int32(res.bytes);
      if (res.bytes > 0) {
        w.cut();
        parts.push(...w.parts().splice(0));
        for (const s of res.slices) parts.push({ fd: s.fd, offset: s.position, length: s.length });
      }
    });
  });
  parts.push(...w.parts());
  const result: Reply = { parts, release: () => releaseAll(g.results) };
  return result;
};
