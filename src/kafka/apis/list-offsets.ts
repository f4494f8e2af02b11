// ListOffsets (2) v1-5: -1 latest (high watermark), -2 earliest (log start),
// else the first offset whose batch has a timestamp >= the one asked for.
import { reply, type Handler, Writer } from '../context.js';
import { E } from '../protocol/errors.js';

export const listOffsets: Handler = (req, core) => {
  const v = req.apiVersion;
  const r = req.body;
  r.int32(); // replica_id
  if (v >= 2) r.int8(); // isolation_level
  const topics = r.array((r) => ({
    name: r.string(),
    partitions: r.array((r) => {
      const index = r.int32();
      if (v >= 4) r.int32(); // current_leader_epoch
      return { index, timestamp: r.int64() };
    }),
  }));
  const w = new Writer(64 + topics.length * 64);
  if (v >= 2) w.int32(0);
  w.array(topics, (w, t) => {
    w.string(t.name);
    w.array(t.partitions, (w, p) => {
      const log = core.logs.partition(t.name, p.index);
      let error: number = E.NONE;
      let timestamp = -1;
      let offset = -1;
      if (!log) error = E.UNKNOWN_TOPIC_OR_PARTITION;
      else if (p.timestamp === -1) offset = log.highWatermark;
      else if (p.timestamp === -2) offset = log.logStartOffset;
      else {
        const found = log.offsetForTimestamp(p.timestamp);
        offset = found.offset;
        timestamp = found.timestamp;
      }
      w.int32(p.index).int16(error).int64(timestamp).int64(offset);
      if (v >= 4) w.int32(0); // leader_epoch
    });
  });
  return reply(w);
};
