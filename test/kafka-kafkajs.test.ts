// kafkajs 2.2.4 (pure JS) against the broker, unchanged: produce with every
// acks, gzip, keys and headers; consume from the beginning; consumer groups
// with commits, resume, two members and a rebalance; the idempotent
// producer; the admin client.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Kafka, CompressionTypes, logLevel, type Consumer, type EachMessagePayload } from 'kafkajs';
import { resetStats, stats } from '../src/index.js';
import { NATIVE, withTimeout } from './helpers.js';
import { startBroker } from './kafka-helpers.js';

let b: Awaited<ReturnType<typeof startBroker>>;
let kafka: Kafka;
before(async () => {
  b = await startBroker({ numPartitions: 1 });
  kafka = new Kafka({ clientId: 'zcopy-test', brokers: [`127.0.0.1:${b.port}`], logLevel: logLevel.NOTHING, retry: { retries: 8, initialRetryTime: 100 } });
});
after(async () => {
  await b.stop();
});

/** Runs a consumer until `want` messages arrived (or fails after ms). */
async function consumeN(consumer: Consumer, topic: string, want: number, ms = 30_000, fromBeginning = true): Promise<EachMessagePayload[]> {
  const got: EachMessagePayload[] = [];
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning });
  await withTimeout(
    new Promise<void>((resolve) => {
      void consumer.run({
        eachMessage: async (m) => {
          got.push(m);
          if (got.length >= want) resolve();
        },
      });
    }),
    ms,
    `${want} messages from ${topic}`,
  );
  return got;
}

test('admin: create, list, describe (metadata), delete topics', async () => {
  const admin = kafka.admin();
  await admin.connect();
  try {
    assert.equal(await admin.createTopics({ topics: [{ topic: 'adm-a', numPartitions: 3 }, { topic: 'adm-b' }] }), true);
    assert.equal(await admin.createTopics({ topics: [{ topic: 'adm-a', numPartitions: 3 }] }), false, 'already exists');
    const list = await admin.listTopics();
    assert.ok(list.includes('adm-a') && list.includes('adm-b'));
    const md = await admin.fetchTopicMetadata({ topics: ['adm-a'] });
    assert.equal(md.topics[0]!.partitions.length, 3);
    const cluster = await admin.describeCluster();
    assert.equal(cluster.brokers.length, 1);
    assert.equal(cluster.controller, cluster.brokers[0]!.nodeId);
    await admin.deleteTopics({ topics: ['adm-b'] });
    assert.ok(!(await admin.listTopics()).includes('adm-b'));
  } finally {
    await admin.disconnect();
  }
});

test('produce with acks 0, 1 and -1, gzip, keys and headers; consume fromBeginning gets them all, in order, with timestamps', async () => {
  const producer = kafka.producer({ allowAutoTopicCreation: true });
  await producer.connect();
  const ts = Date.now() - 60_000;
  const msgs = (tag: string, n: number) => Array.from({ length: n }, (_, i) => ({ key: `k-${tag}-${i}`, value: `v-${tag}-${i}`, headers: { h: `hv-${i}` }, timestamp: String(ts + i) }));
  await producer.send({ topic: 'js-acks', acks: 1, messages: msgs('a1', 5) });
  await producer.send({ topic: 'js-acks', acks: -1, compression: CompressionTypes.GZIP, messages: msgs('gz', 50) });
  await producer.send({ topic: 'js-acks', acks: 0, messages: msgs('a0', 5) });
  await producer.send({ topic: 'js-acks', acks: -1, messages: msgs('all', 5) });
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: 'js-acks-reader', sessionTimeout: 6000, heartbeatInterval: 500 });
  try {
    resetStats();
    const got = await consumeN(consumer, 'js-acks', 65);
    const values = got.map((m) => m.message.value!.toString());
    assert.deepEqual(values.slice(0, 5), msgs('a1', 5).map((m) => m.value));
    assert.deepEqual(values.slice(5, 55), msgs('gz', 50).map((m) => m.value), 'gzip batch decoded');
    assert.deepEqual(new Set(values.slice(55)), new Set([...msgs('a0', 5), ...msgs('all', 5)].map((m) => m.value)));
    const first = got[0]!.message;
    assert.equal(first.key!.toString(), 'k-a1-0');
    assert.equal(first.headers!.h!.toString(), 'hv-0');
    assert.equal(first.timestamp, String(ts));
    assert.deepEqual(got.map((m) => Number(m.message.offset)), Array.from({ length: 65 }, (_, i) => i));
    const s = stats();
    const native = s.bytesByPath.sendfile + s.bytesByPath.splice + s.bytesByPath.nativeCopy;
    if (NATIVE) assert.ok(native > 0 && s.bytesByPath.portable === 0, `record bytes on the native path (${native})`);
    else assert.ok(s.bytesByPath.portable > 0);
  } finally {
    await consumer.disconnect();
  }
});

test('consumer group: commits survive a restart of the consumer, which resumes after the last commit', async () => {
  const producer = kafka.producer();
  await producer.connect();
  await producer.send({ topic: 'js-resume', messages: Array.from({ length: 10 }, (_, i) => ({ value: `first-${i}` })) });
  const c1 = kafka.consumer({ groupId: 'resumers', sessionTimeout: 6000, heartbeatInterval: 500 });
  const got1 = await consumeN(c1, 'js-resume', 10);
  assert.equal(got1.length, 10);
  await c1.disconnect(); // commits on the way out, leaves the group
  await producer.send({ topic: 'js-resume', messages: Array.from({ length: 5 }, (_, i) => ({ value: `second-${i}` })) });
  await producer.disconnect();
  const admin = kafka.admin();
  await admin.connect();
  const offs = await admin.fetchOffsets({ groupId: 'resumers', topics: ['js-resume'] });
  await admin.disconnect();
  assert.equal(offs[0]!.partitions[0]!.offset, '10', 'committed offset');
  const c2 = kafka.consumer({ groupId: 'resumers', sessionTimeout: 6000, heartbeatInterval: 500 });
  try {
    const got2 = await consumeN(c2, 'js-resume', 5);
    assert.deepEqual(got2.map((m) => m.message.value!.toString()), Array.from({ length: 5 }, (_, i) => `second-${i}`));
  } finally {
    await c2.disconnect();
  }
});

test('two members share partitions; when one leaves the other takes them all (rebalance)', async () => {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: 'js-share', numPartitions: 4 }] });
  await admin.disconnect();
  const assignments = new Map<string, number[]>();
  const mk = (name: string): Consumer => {
    const c = kafka.consumer({ groupId: 'sharers', sessionTimeout: 6000, rebalanceTimeout: 8000, heartbeatInterval: 300, maxWaitTimeInMs: 300 });
    c.on(c.events.GROUP_JOIN, (e) => assignments.set(name, (e.payload.memberAssignment['js-share'] ?? []) as number[]));
    return c;
  };
  const a = mk('a');
  const bb = mk('b');
  const seen = new Set<string>();
  const run = async (c: Consumer): Promise<void> => {
    await c.connect();
    await c.subscribe({ topic: 'js-share', fromBeginning: true });
    await c.run({ eachMessage: async (m) => void seen.add(m.message.value!.toString()) });
  };
  try {
    await run(a);
    await run(bb);
    await withTimeout(
      (async () => {
        while (!((assignments.get('a')?.length ?? 0) + (assignments.get('b')?.length ?? 0) === 4 && (assignments.get('a')?.length ?? 0) > 0 && (assignments.get('b')?.length ?? 0) > 0)) {
          await new Promise((r) => setTimeout(r, 100));
        }
      })(),
      30_000,
      'both members assigned',
    );
    assert.deepEqual([...assignments.get('a')!, ...assignments.get('b')!].sort(), [0, 1, 2, 3]);
    // The admin client sees the group (DescribeGroups, ListGroups).
    const adm = kafka.admin();
    await adm.connect();
    try {
      const listed = await adm.listGroups();
      assert.ok(listed.groups.some((g) => g.groupId === 'sharers' && g.protocolType === 'consumer'));
      const described = await withTimeout(
        (async () => {
          for (;;) {
            const d = (await adm.describeGroups(['sharers'])).groups[0]!;
            if (d.state === 'Stable') return d;
            await new Promise((r) => setTimeout(r, 100));
          }
        })(),
        20_000,
        'group described as Stable',
      );
      assert.equal(described.members.length, 2);
      assert.equal(described.protocol, 'RoundRobinAssigner');
      assert.ok(described.members.every((m) => m.memberAssignment.length > 0 && m.clientId === 'zcopy-test'));
    } finally {
      await adm.disconnect();
    }
    await bb.disconnect(); // LeaveGroup -> rebalance
    await withTimeout(
      (async () => {
        while ((assignments.get('a')?.length ?? 0) !== 4) await new Promise((r) => setTimeout(r, 100));
      })(),
      30_000,
      'the remaining member takes every partition',
    );
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic: 'js-share', messages: Array.from({ length: 20 }, (_, i) => ({ key: `k${i}`, value: `s-${i}` })) });
    await producer.disconnect();
    await withTimeout(
      (async () => {
        while (seen.size < 20) await new Promise((r) => setTimeout(r, 50));
      })(),
      30_000,
      'all 20 consumed by the remaining member',
    );
  } finally {
    await Promise.allSettled([a.disconnect(), bb.disconnect()]);
  }
});

test('idempotent producer: InitProducerId, sequences accepted, ids unique', async () => {
  const p1 = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  const p2 = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await p1.connect();
  await p2.connect();
  try {
    for (let i = 0; i < 5; i++) {
      const r1 = await p1.send({ topic: 'js-idem', acks: -1, messages: [{ value: `p1-${i}` }] });
      assert.equal(r1[0]!.errorCode, 0);
      await p2.send({ topic: 'js-idem', acks: -1, messages: [{ value: `p2-${i}` }] });
    }
  } finally {
    await p1.disconnect();
    await p2.disconnect();
  }
  const c = kafka.consumer({ groupId: 'idem-reader', sessionTimeout: 6000 });
  try {
    const got = await consumeN(c, 'js-idem', 10);
    assert.equal(new Set(got.map((m) => m.message.value!.toString())).size, 10);
  } finally {
    await c.disconnect();
  }
});
