// kcat 1.7 / librdkafka 2.0 (Debian's) against the broker, unchanged; and
// across clients (kcat <-> kafkajs). Skipped, with a printed reason, where
// kcat is missing and cannot be installed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { Kafka, logLevel } from 'kafkajs';
import { withTimeout } from './helpers.js';
import { kcat, startBroker } from './kafka-helpers.js';

const KCAT = kcat();
const skip = KCAT ? false : 'kcat is not installed and could not be installed';

let b: Awaited<ReturnType<typeof startBroker>>;
let bootstrap: string;
let kafka: Kafka;
before(async () => {
  b = await startBroker({ numPartitions: 1 });
  bootstrap = `127.0.0.1:${b.port}`;
  kafka = new Kafka({ clientId: 'kcat-cross', brokers: [bootstrap], logLevel: logLevel.NOTHING });
});
after(async () => {
  await b.stop();
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs kcat with `args` (and stdin `input`), bounded in time. */
function run(args: string[], input?: string, ms = 30_000): Promise<Run> {
  const child = spawn(KCAT!, ['-b', bootstrap, '-X', 'broker.address.family=v4', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  child.stdin.end(input ?? '');
  return withTimeout(
    new Promise<Run>((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr }))),
    ms,
    `kcat ${args.join(' ')}`,
  ).catch((err: Error) => {
    child.kill('SIGKILL');
    throw new Error(`${err.message}\nstderr: ${stderr}`);
  });
}

const GROUP = ['-X', 'session.timeout.ms=6000', '-X', 'heartbeat.interval.ms=500', '-X', 'auto.offset.reset=earliest', '-X', 'fetch.wait.max.ms=100'];

test('kcat produces (acks 0, 1, all; gzip; keys; headers) and consumes from the beginning', { skip }, async () => {
  for (const [acks, tag] of [['0', 'a0'], ['1', 'a1'], ['all', 'aall']] as const) {
    const lines = Array.from({ length: 20 }, (_, i) => `key${i}:${tag}-${i}`).join('\n') + '\n';
    const p = await run(['-P', '-t', 'kc-basic', '-K:', '-H', `src=${tag}`, '-z', 'gzip', '-X', `acks=${acks}`], lines);
    assert.equal(p.code, 0, p.stderr);
  }
  const c = await run(['-C', '-t', 'kc-basic', '-o', 'beginning', '-e', '-f', '%k|%s|%o|%h\n']);
  assert.equal(c.code, 0, c.stderr);
  const rows = c.stdout.trim().split('\n');
  assert.equal(rows.length, 60);
  rows.forEach((r, i) => {
    const [k, v, o, h] = r.split('|');
    assert.equal(Number(o), i);
    assert.equal(k, `key${i % 20}`);
    assert.ok(v!.endsWith(`-${i % 20}`));
    assert.ok(h!.startsWith('src='));
  });
  // Relative and absolute offsets.
  const tail = await run(['-C', '-t', 'kc-basic', '-o', '-5', '-e', '-f', '%o\n']);
  assert.deepEqual(tail.stdout.trim().split('\n').map(Number), [55, 56, 57, 58, 59]);
  const abs = await run(['-C', '-t', 'kc-basic', '-o', '42', '-c', '2', '-e', '-f', '%o\n']);
  assert.deepEqual(abs.stdout.trim().split('\n').map(Number), [42, 43]);
  const md = await run(['-L', '-t', 'kc-basic']);
  assert.match(md.stdout, /topic "kc-basic" with 1 partitions/);
});

test('kcat -Q finds offsets by timestamp (messages timestamped by kafkajs)', { skip }, async () => {
  const producer = kafka.producer();
  await producer.connect();
  const base = 1_700_000_000_000;
  for (let i = 0; i < 5; i++) await producer.send({ topic: 'kc-ts', messages: [{ value: `t${i}`, timestamp: String(base + i * 1000) }] });
  await producer.disconnect();
  const q = async (ts: number): Promise<number> => {
    const r = await run(['-Q', '-t', `kc-ts:0:${ts}`]);
    assert.equal(r.code, 0, r.stderr);
    return Number(/offset (-?\d+)/.exec(r.stdout)![1]);
  };
  assert.equal(await q(base), 0);
  assert.equal(await q(base + 2500), 3);
  assert.equal(await q(base + 4000), 4);
  assert.equal(await q(base + 99_000), -1, 'after the last: none');
});

test('kcat consumer group commits, and a new member resumes after the commit', { skip }, async () => {
  await run(['-P', '-t', 'kc-group'], 'a\nb\nc\n');
  const c1 = await run(['-G', 'kcg', ...GROUP, '-e', '-f', '%s\n', 'kc-group']);
  assert.equal(c1.code, 0, c1.stderr);
  assert.deepEqual(c1.stdout.trim().split('\n'), ['a', 'b', 'c']);
  await run(['-P', '-t', 'kc-group'], 'd\ne\n');
  const c2 = await run(['-G', 'kcg', ...GROUP, '-e', '-f', '%s\n', 'kc-group']);
  assert.deepEqual(c2.stdout.trim().split('\n'), ['d', 'e']);
});

test('two kcat members share a 4-partition topic; when one leaves, or dies (SIGKILL), the other gets all four', { skip }, async () => {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: 'kc-share', numPartitions: 4 }] });
  await admin.disconnect();
  const members: Array<{ child: ChildProcess; err: string }> = [];
  const start = (): { child: ChildProcess; err: string } => {
    const child = spawn(KCAT!, ['-b', bootstrap, '-G', 'kshare', ...GROUP, '-f', '%s\n', 'kc-share'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const m = { child, err: '' };
    child.stderr!.on('data', (d) => (m.err += d));
    child.stdout!.resume();
    members.push(m);
    return m;
  };
  const until = async (what: string, ok: () => boolean): Promise<void> =>
    withTimeout(
      (async () => {
        while (!ok()) await new Promise((r) => setTimeout(r, 100));
      })(),
      30_000,
      what,
    );
  const lastAssigned = (m: { err: string }): number => {
    const lines = m.err.split('\n').filter((l) => l.includes('assigned:'));
    const last = lines.at(-1);
    return last ? (last.match(/kc-share \[\d+\]/g) ?? []).length : 0;
  };
  try {
    const m1 = start();
    await until('first member assigned', () => lastAssigned(m1) === 4);
    const m2 = start();
    await until('partitions split between both members', () => lastAssigned(m1) > 0 && lastAssigned(m2) > 0 && lastAssigned(m1) + lastAssigned(m2) === 4);
    m2.child.kill('SIGTERM'); // kcat leaves the group on the way out
    await until('the remaining member takes all four', () => lastAssigned(m1) === 4 && m1.err.split('assigned:').length >= 3);
    // A member that dies (no LeaveGroup) is dropped when its session expires.
    const rounds = m1.err.split('assigned:').length;
    const m3 = start();
    await until('split with a third member', () => lastAssigned(m3) > 0 && lastAssigned(m1) < 4);
    m3.child.kill('SIGKILL');
    await until('the survivor takes all four after the dead member\'s session expires', () => lastAssigned(m1) === 4 && m1.err.split('assigned:').length > rounds + 1);
  } finally {
    for (const m of members) m.child.kill('SIGKILL');
  }
});

test('kcat idempotent producer (enable.idempotence=true)', { skip }, async () => {
  const lines = Array.from({ length: 100 }, (_, i) => `idem-${i}`).join('\n') + '\n';
  const p = await run(['-P', '-t', 'kc-idem', '-X', 'enable.idempotence=true'], lines);
  assert.equal(p.code, 0, p.stderr);
  const c = await run(['-C', '-t', 'kc-idem', '-o', 'beginning', '-e', '-f', '%s\n']);
  assert.deepEqual(c.stdout.trim().split('\n'), Array.from({ length: 100 }, (_, i) => `idem-${i}`));
});

test('cross-client: kcat -> kafkajs and kafkajs -> kcat', { skip }, async () => {
  const lines = Array.from({ length: 30 }, (_, i) => `k${i}:from-kcat-${i}`).join('\n') + '\n';
  assert.equal((await run(['-P', '-t', 'kc-cross1', '-K:', '-z', 'gzip'], lines)).code, 0);
  const consumer = kafka.consumer({ groupId: 'cross', sessionTimeout: 6000, maxWaitTimeInMs: 200 });
  const got: string[] = [];
  await consumer.connect();
  await consumer.subscribe({ topic: 'kc-cross1', fromBeginning: true });
  try {
    await withTimeout(
      new Promise<void>((resolve) => {
        void consumer.run({
          eachMessage: async ({ message }) => {
            got.push(`${message.key}:${message.value}`);
            if (got.length === 30) resolve();
          },
        });
      }),
      30_000,
      'kafkajs reads what kcat wrote',
    );
  } finally {
    await consumer.disconnect();
  }
  assert.deepEqual(got, lines.trim().split('\n'));

  const producer = kafka.producer();
  await producer.connect();
  await producer.send({ topic: 'kc-cross2', messages: Array.from({ length: 30 }, (_, i) => ({ key: `j${i}`, value: `from-js-${i}`, headers: { n: String(i) } })) });
  await producer.disconnect();
  const c = await run(['-C', '-t', 'kc-cross2', '-o', 'beginning', '-e', '-f', '%k:%s:%h\n']);
  assert.deepEqual(c.stdout.trim().split('\n'), Array.from({ length: 30 }, (_, i) => `j${i}:from-js-${i}:n=${i}`));
});
