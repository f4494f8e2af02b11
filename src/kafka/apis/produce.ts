// Produce (0) v3-7 (RecordBatch v2). v0-2 are advertised (librdkafka < 2.11
// stops compressing unless the range starts at 0) and answered per partition
// with UNSUPPORTED_VERSION. acks=0: no response at all.
import { reply, type Handler, Writer } from '../context.js';
import { E, errorCodeOf } from '../protocol/errors.js';

interface PartitionResult {
  index: number;
  error: number;
  baseOffset: number;
  logAppendTime: number;
  logStartOffset: number;
}

export const produce: Handler = async (req, core) => {
  const v = req.apiVersion;
  const r = req.body;
  if (v >= 3) r.nullableString(); // transactional_id (no transactions)
  const acks = r.int16();
  r.int32(); // timeout_ms: a single node acknowledges once appended
  const topics = r.array((r) => ({
    name: r.string(),
    partitions: r.array((r) => ({ index: r.int32(), records: r.nullableBytes() })),
  }));

  const results: Array<{ name: string; partitions: PartitionResult[] }> = [];
  for (const t of topics) {
    const out: PartitionResult[] = [];
    results.push({ name: t.name, partitions: out });
    if (v < 3) {
      for (const p of t.partitions) out.push({ index: p.index, error: E.UNSUPPORTED_VERSION, baseOffset: -1, logAppendTime: -1, logStartOffset: -1 });
      continue;
    }
    let topicError: number = E.NONE;
    if (!core.logs.topic(t.name)) topicError = await core.autoCreate(t.name);
    // Partitions of one request append concurrently; each append is atomic.
    const appends = t.partitions.map(async (p): Promise<PartitionResult> => {
      const fail = (error: number): PartitionResult => ({ index: p.index, error, baseOffset: -1, logAppendTime: -1, logStartOffset: -1 });
      if (topicError !== E.NONE) return fail(topicError === E.LEADER_NOT_AVAILABLE ? topicError : E.UNKNOWN_TOPIC_OR_PARTITION);
      const log = core.logs.partition(t.name, p.index);
      if (!log) return fail(E.UNKNOWN_TOPIC_OR_PARTITION);
      if (p.records === null || p.records.length === 0) return fail(E.CORRUPT_MESSAGE);
      try {
        const res = await log.append(p.records);
        return { index: p.index, error: res.errorCode, baseOffset: res.baseOffset, logAppendTime: res.logAppendTimeMs, logStartOffset: res.logStartOffset };
      } catch (err) {
        core.log('warn', `${req.connection} produce ${t.name}-${p.index}: ${(err as Error).message}`);
        return fail(errorCodeOf(err));
      }
    });
    out.push(...(await Promise.all(appends)));
  }
  if (acks === 0) return null;

  const w = new Writer(64 + results.length * 64);
  w.array(results, (w, t) => {
    w.string(t.name);
    w.array(t.partitions, (w, p) => {
      w.int32(p.index).int16(p.error).int64(p.baseOffset);
      if (v >= 2) w.int64(p.logAppendTime);
      if (v >= 5) w.int64(p.logStartOffset);
    });
  });
  if (v >= 1) w.int32(0); // throttle_time_ms
  return reply(w);
};
