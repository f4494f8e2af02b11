// The group coordinator at the byte level: join barrier, leader election,
// SyncGroup relay, and the error codes that drive clients
// (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID,
// INVALID_SESSION_TIMEOUT, INCONSISTENT_GROUP_PROTOCOL), commits inside a
// generation, and the rebalance timeout dropping a member that never rejoins.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { RawClient, Writer, startBroker, type Reader } from './kafka-helpers.js';

let b: Awaited<ReturnType<typeof startBroker>>;
before(async () => {
  b = await startBroker();
});
after(async () => {
  await b.stop();
});

interface Join {
  error: number;
  generation: number;
  protocol: string;
  leader: string;
  memberId: string;
  members: Array<{ id: string; metadata: string }>;
}

function join(c: RawClient, group: string, memberId: string, opts: { session?: number; rebalance?: number; type?: string; protocols?: string[] } = {}): Promise<Join> {
  const w = new Writer().string(group).int32(opts.session ?? 6000).int32(opts.rebalance ?? 5000).string(memberId).string(opts.type ?? 'consumer');
  const protocols = opts.protocols ?? ['range'];
  w.array(protocols, (w, p) => w.string(p).bytes(Buffer.from(`meta-${p}-${memberId || 'new'}`)));
  return c.request(11, 1, w).then((r: Reader) => ({
    error: r.int16(),
    generation: r.int32(),
    protocol: r.string(),
    leader: r.string(),
    memberId: r.string(),
    members: r.array((r) => ({ id: r.string(), metadata: r.bytes().toString() })),
  }));
}

async function sync(c: RawClient, group: string, gen: number, member: string, assignments: Array<[string, string]> = []): Promise<{ error: number; assignment: string }> {
  const w = new Writer().string(group).int32(gen).string(member);
  w.array(assignments, (w, [m, a]) => w.string(m).bytes(Buffer.from(a)));
  const r = await c.request(14, 1, w);
  r.int32();
  return { error: r.int16(), assignment: r.bytes().toString() };
}

async function heartbeat(c: RawClient, group: string, gen: number, member: string): Promise<number> {
  const r = await c.request(12, 1, new Writer().string(group).int32(gen).string(member));
  r.int32();
  return r.int16();
}

async function leave(c: RawClient, group: string, member: string): Promise<number> {
  const r = await c.request(13, 1, new Writer().string(group).string(member));
  r.int32();
  return r.int16();
}

async function commit(c: RawClient, group: string, gen: number, member: string, topic: string, offset: number): Promise<number> {
  const w = new Writer().string(group).int32(gen).string(member).int64(-1).int32(1).string(topic).int32(1).int32(0).int64(offset).nullableString(null);
  const r = await c.request(8, 2, w);
  r.int32();
  r.string();
  r.int32();
  r.int32();
  return r.int16();
}

test('join barrier, leader gets the metadata, sync relays assignments, and the error codes clients act on', async () => {
  const a1 = await RawClient.connect(b.port);
  const a2 = await RawClient.connect(b.port);
  const b1 = await RawClient.connect(b.port);
  const x = await RawClient.connect(b.port);
  try {
    const g = 'g-proto';
    await x.request(3, 4, new Writer().int32(1).string('topic-g').bool(true)); // auto-creates it
    assert.equal((await join(x, g, '', { session: 1000 })).error, 26, 'INVALID_SESSION_TIMEOUT');
    const ja = await join(a1, g, '');
    assert.equal(ja.error, 0);
    assert.equal(ja.generation, 1);
    assert.equal(ja.leader, ja.memberId);
    assert.equal(ja.members.length, 1);
    const A = ja.memberId;
    assert.deepEqual(await sync(a1, g, 1, A, [[A, 'all-of-it']]), { error: 0, assignment: 'all-of-it' });
    assert.equal(await heartbeat(a1, g, 1, A), 0);
    assert.equal(await heartbeat(a1, g, 1, 'nobody'), 25, 'UNKNOWN_MEMBER_ID');
    assert.equal(await heartbeat(a1, g, 7, A), 22, 'ILLEGAL_GENERATION');
    assert.equal((await join(x, g, '', { type: 'connect' })).error, 23, 'INCONSISTENT_GROUP_PROTOCOL: protocol type');
    assert.equal((await join(x, g, '', { protocols: ['sticky'] })).error, 23, 'INCONSISTENT_GROUP_PROTOCOL: no common protocol');

    // A second member: its join waits until A rejoins.
    const pendingB = join(b1, g, '', { protocols: ['roundrobin', 'range'] });
    let bDone = false;
    void pendingB.then(() => (bDone = true));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(bDone, false, 'held at the barrier');
    assert.equal(await heartbeat(a1, g, 1, A), 27, 'REBALANCE_IN_PROGRESS');
    assert.equal(await commit(a1, g, 1, A, 'topic-g', 5), 0, 'a commit with the current generation during PreparingRebalance is accepted (Kafka)');
    const ja2 = await join(a1, g, A, { protocols: ['range', 'roundrobin'] });
    const jb = await pendingB;
    assert.equal(ja2.generation, 2);
    assert.equal(jb.generation, 2);
    assert.equal(ja2.protocol, 'range', 'the only protocol both support (b also lists roundrobin first: tie -> first candidate)');
    assert.equal(ja2.leader, A, 'the leader stays');
    assert.equal(ja2.members.length, 2, 'the leader gets every member');
    assert.equal(jb.members.length, 0, 'followers get none');
    const B = jb.memberId;
    assert.ok(ja2.members.some((m) => m.id === B && m.metadata === `meta-range-new`));

    // The follower's SyncGroup waits for the leader's.
    const syncB = sync(b1, g, 2, B);
    assert.equal(await commit(x, g, 2, A, 'topic-g', 6), 27, 'commit during CompletingRebalance: REBALANCE_IN_PROGRESS');
    assert.deepEqual(await sync(a1, g, 2, A, [[A, 'p0'], [B, 'p1']]), { error: 0, assignment: 'p0' });
    assert.deepEqual(await syncB, { error: 0, assignment: 'p1' });
    assert.equal(await commit(x, g, 1, A, 'topic-g', 6), 22, 'stale generation commit');
    assert.equal(await commit(x, g, 2, 'stranger', 'topic-g', 6), 25);
    assert.equal(await commit(x, g, 2, A, 'topic-g', 7), 0);

    // B leaves: A learns of the rebalance and gets everything.
    assert.equal(await leave(b1, g, B), 0);
    assert.equal(await heartbeat(a1, g, 2, A), 27);
    const ja3 = await join(a1, g, A);
    assert.equal(ja3.generation, 3);
    assert.equal(ja3.members.length, 1);
    assert.equal(await leave(b1, g, B), 25, 'gone already');
  } finally {
    for (const c of [a1, a2, b1, x]) c.destroy();
  }
});

test('a member that does not rejoin within the rebalance timeout is dropped; the others complete without it', async () => {
  const a = await RawClient.connect(b.port);
  const c = await RawClient.connect(b.port);
  try {
    const g = 'g-timeout';
    const ja = await join(a, g, '', { rebalance: 600 });
    await sync(a, g, ja.generation, ja.memberId, [[ja.memberId, 'x']]);
    const t0 = Date.now();
    const jc = await join(c, g, '', { rebalance: 600 }); // A never rejoins
    assert.equal(jc.error, 0);
    assert.ok(Date.now() - t0 >= 500, 'waited for the rebalance timeout');
    assert.equal(jc.leader, jc.memberId, 'the new member leads');
    assert.equal(jc.members.length, 1);
    assert.equal(await heartbeat(a, g, ja.generation, ja.memberId), 25, 'the silent member is gone');
    assert.deepEqual(b.broker.coordinator.describe(g)?.members, [jc.memberId]);
  } finally {
    a.destroy();
    c.destroy();
  }
});
