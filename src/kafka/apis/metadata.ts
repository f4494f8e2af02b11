// Metadata (3) v0-8: one broker that leads every partition and is the
// controller (kafkajs sends admin requests and InitProducerId there).
import { reply, type Handler, Writer } from '../context.js';
import { E } from '../protocol/errors.js';

export const metadata: Handler = async (req, core) => {
  const v = req.apiVersion;
  const r = req.body;
  // v0: an empty list means all topics; v1+: null means all, empty none.
  const requested = r.nullableArray((r) => r.string());
  let allowAuto = true;
  if (v >= 4) allowAuto = r.bool();
  // v8: include_cluster/topic_authorized_operations (ignored: no ACLs).

  const all = requested === null || (v === 0 && requested.length === 0);
  const names = all ? core.logs.topics().map((t) => t.name) : [...new Set(requested)];
  const topics: Array<{ name: string; error: number; partitions: number }> = [];
  for (const name of names) {
    let info = core.logs.topic(name);
    let error: number = E.NONE;
    if (!info) {
      error = allowAuto ? await core.autoCreate(name) : E.UNKNOWN_TOPIC_OR_PARTITION;
      info = core.logs.topic(name);
      if (!info && error === E.NONE) error = E.LEADER_NOT_AVAILABLE;
    }
    topics.push({ name, error, partitions: info?.partitions ?? 0 });
  }

  const { host, port } = core.advertised();
  const node = core.nodeId;
  const w = new Writer(256 + topics.length * 64);
  if (v >= 3) w.int32(0); // throttle_time_ms
  w.int32(1).int32(node).string(host).int32(port);
  if (v >= 1) w.nullableString(null); // rack
  if (v >= 2) w.nullableString(core.clusterId);
  if (v >= 1) w.int32(node); // controller_id
  w.array(topics, (w, t) => {
    w.int16(t.error).string(t.name);
    if (v >= 1) w.bool(false); // is_internal
    w.int32(t.partitions);
    for (let p = 0; p < t.partitions; p++) {
      w.int16(E.NONE).int32(p).int32(node);
      if (v >= 7) w.int32(0); // leader_epoch
      w.int32(1).int32(node); // replicas
      w.int32(1).int32(node); // isr
      if (v >= 5) w.int32(0); // offline_replicas
    }
    if (v >= 8) w.int32(-2147483648); // topic_authorized_operations: not requested
  });
  if (v >= 8) w.int32(-2147483648); // cluster_authorized_operations
  return reply(w);
};
