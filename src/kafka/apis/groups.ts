// FindCoordinator (10) v0-2, JoinGroup (11) v0-5, Heartbeat (12) v0-3,
// LeaveGroup (13) v0-3, SyncGroup (14) v0-3, OffsetCommit (8) v0-7,
// OffsetFetch (9) v0-5, DescribeGroups (15) v0-4, ListGroups (16) v0-2. The state machine is in ../coordinator.ts.
import { reply, type Handler, Writer } from '../context.js';
import { E, errorCodeOf } from '../protocol/errors.js';

export const findCoordinator: Handler = (req, core) => {
  const v = req.apiVersion;
  const r = req.body;
  r.string(); // key (group or transactional id): this broker either way
  if (v >= 1) r.int8(); // key_type
  const { host, port } = core.advertised();
  const w = new Writer();
  if (v >= 1) w.int32(0);
  w.int16(E.NONE);
  if (v >= 1) w.nullableString(null);
  w.int32(core.nodeId).string(host).int32(port);
  return reply(w);
};

export const joinGroup: Handler = async (req, core) => {
  const v = req.apiVersion;
  const r = req.body;
  const groupId = r.string();
  const sessionTimeout = r.int32();
  const rebalanceTimeout = v >= 1 ? r.int32() : sessionTimeout;
  const memberId = r.string();
  const groupInstanceId = v >= 5 ? r.nullableString() : null;
  const protocolType = r.string();
  const protocols = r.array((r) => ({ name: r.string(), metadata: Buffer.from(r.bytes()) }));
  const res = await core.coordinator.join({ groupId, sessionTimeout, rebalanceTimeout, memberId, groupInstanceId, clientId: req.clientId ?? '', clientHost: req.clientHost, protocolType, protocols });
  const w = new Writer();
  if (v >= 2) w.int32(0);
  w.int16(res.error).int32(res.generation).string(res.protocol).string(res.leader).string(res.memberId);
  w.array(res.members, (w, m) => {
    w.string(m.memberId);
    if (v >= 5) w.nullableString(m.groupInstanceId);
    w.bytes(m.metadata);
  });
  return reply(w);
};

export const syncGroup: Handler = async (req, core) => {
  const v = req.apiVersion;
  const r = req.body;
  const groupId = r.string();
  const generation = r.int32();
  const memberId = r.string();
  if (v >= 3) r.nullableString(); // group_instance_id
  const assignments = r.array((r) => ({ memberId: r.string(), assignment: Buffer.from(r.bytes()) }));
  const res = await core.coordinator.sync(groupId, generation, memberId, assignments);
  const w = new Writer();
  if (v >= 1) w.int32(0);
  w.int16(res.error).bytes(res.assignment);
  return reply(w);
};

export const heartbeat: Handler = (req, core) => {
  const v = req.apiVersion;
  const r = req.body;
  const groupId = r.string();
  const generation = r.int32();
  const memberId = r.string();
  if (v >= 3) r.nullableString();
  const error = core.coordinator.heartbeat(groupId, generation, memberId);
  const w = new Writer();
  if (v >= 1) w.int32(0);
  w.int16(error);
  return reply(w);
};

export const leaveGroup: Handler = (req, core) => {
  const v = req.apiVersion;
  const r = req.body;
  const groupId = r.string();
  const members = v >= 3 ? r.array((r) => ({ memberId: r.string(), groupInstanceId: r.nullableString() })) : [{ memberId: r.string(), groupInstanceId: null }];
  const res = core.coordinator.leave(groupId, members.map((m) => m.memberId));
  const w = new Writer();
  if (v >= 1) w.int32(0);
  if (v >= 3) {
    w.int16(E.NONE);
    w.int32(members.length);
    members.forEach((m, i) => w.string(m.memberId).nullableString(m.groupInstanceId).int16(res.members[i]!));
  } else {
    w.int16(res.error);
  }
  return reply(w);
};

export const offsetCommit: Handler = async (req, core) => {
  const v = req.apiVersion;
  const r = req.body;
  const groupId = r.string();
  const generation = v >= 1 ? r.int32() : -1;
  const memberId = v >= 1 ? r.string() : '';
  if (v >= 7) r.nullableString(); // group_instance_id
  if (v >= 2 && v <= 4) r.int64(); // retention_time_ms
  const topics = r.array((r) => ({
    name: r.string(),
    partitions: r.array((r) => {
      const index = r.int32();
      const offset = r.int64();
      if (v >= 6) r.int32(); // committed_leader_epoch
      if (v === 1) r.int64(); // commit_timestamp
      return { index, offset, metadata: r.nullableString() };
    }),
  }));
  const groupError = core.coordinator.commitError(groupId, generation, memberId);
  const errors = new Map<string, number>();
  const entries: Array<{ topic: string; partition: number; offset: number; metadata: string | null }> = [];
  for (const t of topics) {
    for (const p of t.partitions) {
      const key = `${t.name}\0${p.index}`;
      if (groupError !== E.NONE) errors.set(key, groupError);
      else if (!core.logs.partition(t.name, p.index)) errors.set(key, E.UNKNOWN_TOPIC_OR_PARTITION);
      else entries.push({ topic: t.name, partition: p.index, offset: p.offset, metadata: p.metadata });
    }
  }
  if (entries.length > 0) {
    try {
      await core.logs.commitOffsets(groupId, entries);
      core.coordinator.ensure(groupId);
    } catch (err) {
      const code = errorCodeOf(err);
      for (const e of entries) errors.set(`${e.topic}\0${e.partition}`, code);
    }
  }
  const w = new Writer();
  if (v >= 3) w.int32(0);
  w.array(topics, (w, t) => {
    w.string(t.name);
    w.array(t.partitions, (w, p) => w.int32(p.index).int16(errors.get(`${t.name}\0${p.index}`) ?? E.NONE));
  });
  return reply(w);
};

export const offsetFetch: Handler = (req, core) => {
  const v = req.apiVersion;
  const r = req.body;
  const groupId = r.string();
  let topics = r.nullableArray((r) => ({ name: r.string(), partitions: r.array((r) => r.int32()) }));
  if (topics === null) {
    // v2+: every partition the group has an offset for.
    topics = [];
    for (const t of core.logs.topics()) {
      const parts: number[] = [];
      for (let p = 0; p < t.partitions; p++) if (core.logs.fetchOffset(groupId, t.name, p)) parts.push(p);
      if (parts.length > 0) topics.push({ name: t.name, partitions: parts });
    }
  }
  const w = new Writer();
  if (v >= 3) w.int32(0);
  w.array(topics, (w, t) => {
    w.string(t.name);
    w.array(t.partitions, (w, p) => {
      const got = core.logs.fetchOffset(groupId, t.name, p);
      w.int32(p).int64(got?.offset ?? -1);
      if (v >= 5) w.int32(-1); // committed_leader_epoch
      w.nullableString(got ? (got.metadata ?? '') : '').int16(E.NONE);
    });
  });
  if (v >= 2) w.int16(E.NONE);
  return reply(w);
};

export const describeGroups: Handler = (req, core) => {
  const v = req.apiVersion;
  const r = req.body;
  const ids = r.array((r) => r.string());
  // v3+: include_authorized_operations (no ACLs: answered "not requested").
  const w = new Writer();
  if (v >= 1) w.int32(0);
  w.array(ids, (w, id) => {
    const d = core.coordinator.describeGroup(id);
    w.int16(E.NONE).string(id).string(d.state).string(d.protocolType).string(d.protocol);
    w.array(d.members, (w, m) => {
      w.string(m.memberId);
      if (v >= 4) w.nullableString(m.groupInstanceId);
      w.string(m.clientId).string(m.clientHost).bytes(m.metadata).bytes(m.assignment);
    });
    if (v >= 3) w.int32(-2147483648);
  });
  return reply(w);
};

export const listGroups: Handler = (req, core) => {
  const w = new Writer();
  if (req.apiVersion >= 1) w.int32(0);
  w.int16(E.NONE);
  w.array(core.coordinator.list(), (w, g) => w.string(g.groupId).string(g.protocolType));
  return reply(w);
};
