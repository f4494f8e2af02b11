// The classic group coordinator (JoinGroup/SyncGroup/Heartbeat/LeaveGroup),
// Kafka's GroupCoordinator reduced to one node:
//
//   Empty -> PreparingRebalance -> CompletingRebalance -> Stable
//
// JoinGroup holds its answer until every known member has rejoined (or the
// rebalance timeout drops the ones that did not), then picks a protocol by
// vote, bumps the generation and answers: the leader gets every member's
// metadata, the others an empty list. SyncGroup answers followers once the
// leader has sent the assignments (opaque bytes, relayed). A member whose
// session expires, or that leaves, starts a new rebalance. Offsets are kept
// by the LogManager (durable); groups that have offsets exist, Empty, on
// start.
import { randomUUID } from 'node:crypto';
import type { LogManager } from './storage/index.js';
import { E } from './protocol/errors.js';

export type GroupState = 'Empty' | 'PreparingRebalance' | 'CompletingRebalance' | 'Stable';

export const MIN_SESSION_TIMEOUT = 6000;
export const MAX_SESSION_TIMEOUT = 1_800_000;

export interface JoinRequest {
  groupId: string;
  sessionTimeout: number;
  rebalanceTimeout: number;
  memberId: string;
  groupInstanceId: string | null;
  clientId: string;
  clientHost?: string;
  protocolType: string;
  protocols: Array<{ name: string; metadata: Buffer }>;
}

/** What DescribeGroups tells about a group. */
export interface GroupDescription {
  state: GroupState | 'Dead';
  protocolType: string;
  protocol: string;
  members: Array<{ memberId: string; groupInstanceId: string | null; clientId: string; clientHost: string; metadata: Buffer; assignment: Buffer }>;
}

export interface JoinResult {
  error: number;
  generation: number;
  protocol: string;
  leader: string;
  memberId: string;
  members: Array<{ memberId: string; groupInstanceId: string | null; metadata: Buffer }>;
}

interface Member {
  id: string;
  groupInstanceId: string | null;
  clientId: string;
  clientHost: string;
  sessionTimeout: number;
  rebalanceTimeout: number;
  protocols: Array<{ name: string; metadata: Buffer }>;
  assignment: Buffer;
  join?: (r: JoinResult) => void;
  sync?: (r: { error: number; assignment: Buffer }) => void;
  session?: NodeJS.Timeout;
}

class Group {
  state: GroupState = 'Empty';
  generation = 0;
  protocolType: string | null = null;
  protocol: string | null = null;
  leader: string | null = null;
  readonly members = new Map<string, Member>();
  rebalanceTimer?: NodeJS.Timeout;
  constructor(readonly id: string) {}
}

export class GroupCoordinator {
  readonly #groups = new Map<string, Group>();
  #closed = false;

  constructor(
    readonly logs: LogManager,
    private readonly log: (msg: string) => void = () => {},
  ) {
    // Groups with committed offsets exist (Empty) after a restart.
    for (const id of logs.groups()) this.#groups.set(id, new Group(id));
  }

  /** Group ids and states (for tests and logs). */
  describe(id: string): { state: GroupState; generation: number; members: string[]; leader: string | null; protocol: string | null } | undefined {
    const g = this.#groups.get(id);
    if (!g) return undefined;
    return { state: g.state, generation: g.generation, members: [...g.members.keys()], leader: g.leader, protocol: g.protocol };
  }

  groupIds(): string[] {
    return [...this.#groups.keys()];
  }

  /** Every known group with its protocol type (ListGroups). */
  list(): Array<{ groupId: string; protocolType: string }> {
    return [...this.#groups.values()].map((g) => ({ groupId: g.id, protocolType: g.protocolType ?? '' }));
  }

  /** DescribeGroups: an unknown group is 'Dead' with no members, as in Kafka. */
  describeGroup(id: string): GroupDescription {
    const g = this.#groups.get(id);
    if (!g) return { state: 'Dead', protocolType: '', protocol: '', members: [] };
    const stable = g.state === 'Stable';
    return {
      state: g.state,
      protocolType: g.protocolType ?? '',
      protocol: g.protocol ?? '',
      members: [...g.members.values()].map((m) => ({
        memberId: m.id,
        groupInstanceId: m.groupInstanceId,
        clientId: m.clientId,
        clientHost: m.clientHost,
        // Kafka sends metadata and assignment only once the group is stable.
        metadata: stable ? (m.protocols.find((p) => p.name === g.protocol)?.metadata ?? Buffer.alloc(0)) : Buffer.alloc(0),
        assignment: stable ? m.assignment : Buffer.alloc(0),
      })),
    };
  }

  join(req: JoinRequest): Promise<JoinResult> {
    const fail = (error: number, memberId = req.memberId): Promise<JoinResult> =>
      Promise.resolve({ error, generation: -1, protocol: '', leader: '', memberId, members: [] });
    if (this.#closed) return fail(E.COORDINATOR_NOT_AVAILABLE);
    if (req.groupId === '') return fail(E.INVALID_GROUP_ID);
    if (req.sessionTimeout < MIN_SESSION_TIMEOUT || req.sessionTimeout > MAX_SESSION_TIMEOUT) return fail(E.INVALID_SESSION_TIMEOUT);
    if (req.protocolType === '' || req.protocols.length === 0) return fail(E.INCONSISTENT_GROUP_PROTOCOL);
    let g = this.#groups.get(req.groupId);
    if (!g) {
      g = new Group(req.groupId);
      this.#groups.set(g.id, g);
    }
    if (req.memberId !== '' && !g.members.has(req.memberId)) return fail(E.UNKNOWN_MEMBER_ID);
    // The protocol type must match, and some protocol must be supported by all.
    if (g.members.size > 0 && !(g.members.size === 1 && g.members.has(req.memberId))) {
      if (g.protocolType !== req.protocolType) return fail(E.INCONSISTENT_GROUP_PROTOCOL);
      const names = new Set(req.protocols.map((p) => p.name));
      const common = this.#candidates(g, req.memberId).filter((n) => names.has(n));
      if (common.length === 0) return fail(E.INCONSISTENT_GROUP_PROTOCOL);
    }

    const id = req.memberId !== '' ? req.memberId : `${req.clientId || 'member'}-${randomUUID()}`;
    let m = g.members.get(id);
    if (!m) {
      m = { id, groupInstanceId: req.groupInstanceId, clientId: req.clientId, clientHost: req.clientHost ?? '', sessionTimeout: req.sessionTimeout, rebalanceTimeout: req.rebalanceTimeout, protocols: req.protocols, assignment: Buffer.alloc(0) };
      g.members.set(id, m);
      this.log(`group ${g.id}: member ${id} joined`);
    } else {
      m.sessionTimeout = req.sessionTimeout;
      m.rebalanceTimeout = req.rebalanceTimeout;
      m.protocols = req.protocols;
    }
    g.protocolType = req.protocolType;
    // A member waiting in JoinGroup is not expired meanwhile.
    clearTimeout(m.session);
    const member = m;
    const result = new Promise<JoinResult>((resolve) => {
      // A second JoinGroup from the same member replaces the first.
      member.join?.({ error: E.REBALANCE_IN_PROGRESS, generation: -1, protocol: '', leader: '', memberId: member.id, members: [] });
      member.join = resolve;
    });
    if (g.state !== 'PreparingRebalance') this.#prepareRebalance(g, `member ${id} joining`);
    this.#maybeCompleteJoin(g);
    return result;
  }

  sync(groupId: string, generation: number, memberId: string, assignments: Array<{ memberId: string; assignment: Buffer }>): Promise<{ error: number; assignment: Buffer }> {
    const none = Buffer.alloc(0);
    const g = this.#groups.get(groupId);
    const m = g?.members.get(memberId);
    if (!g || !m) return Promise.resolve({ error: E.UNKNOWN_MEMBER_ID, assignment: none });
    if (generation !== g.generation) return Promise.resolve({ error: E.ILLEGAL_GENERATION, assignment: none });
    this.#touch(g, m);
    if (g.state === 'PreparingRebalance' || g.state === 'Empty') return Promise.resolve({ error: E.REBALANCE_IN_PROGRESS, assignment: none });
    if (g.state === 'Stable') return Promise.resolve({ error: E.NONE, assignment: m.assignment });
    // CompletingRebalance
    const p = new Promise<{ error: number; assignment: Buffer }>((resolve) => {
      m.sync?.({ error: E.REBALANCE_IN_PROGRESS, assignment: none });
      m.sync = resolve;
    });
    if (memberId === g.leader) {
      const given = new Map(assignments.map((a) => [a.memberId, a.assignment]));
      for (const mem of g.members.values()) mem.assignment = given.get(mem.id) ?? none;
      g.state = 'Stable';
      this.log(`group ${g.id}: generation ${g.generation} stable with ${g.members.size} member(s)`);
      for (const mem of g.members.values()) {
        const s = mem.sync;
        mem.sync = undefined;
        s?.({ error: E.NONE, assignment: mem.assignment });
      }
    }
    return p;
  }

  heartbeat(groupId: string, generation: number, memberId: string): number {
    const g = this.#groups.get(groupId);
    const m = g?.members.get(memberId);
    if (!g || !m) return E.UNKNOWN_MEMBER_ID;
    if (g.state === 'PreparingRebalance') {
      this.#touch(g, m);
      return E.REBALANCE_IN_PROGRESS;
    }
    if (generation !== g.generation) return E.ILLEGAL_GENERATION;
    this.#touch(g, m);
    return E.NONE;
  }

  /** Removes members; returns a per-member error (UNKNOWN_MEMBER_ID for strangers). */
  leave(groupId: string, memberIds: string[]): { error: number; members: number[] } {
    const g = this.#groups.get(groupId);
    if (!g) return { error: E.UNKNOWN_MEMBER_ID, members: memberIds.map(() => E.UNKNOWN_MEMBER_ID) };
    const errs = memberIds.map((id) => {
      const m = g.members.get(id);
      if (!m) return E.UNKNOWN_MEMBER_ID;
      this.#remove(g, m, 'left the group');
      return E.NONE;
    });
    return { error: memberIds.length === 1 ? errs[0]! : E.NONE, members: errs };
  }

  /** Kafka's rules for a commit: generation -1 on an Empty group is a plain commit. */
  commitError(groupId: string, generation: number, memberId: string): number {
    const g = this.#groups.get(groupId);
    if (generation < 0 && (!g || g.state === 'Empty')) return E.NONE;
    if (!g) return generation < 0 ? E.NONE : E.ILLEGAL_GENERATION;
    const m = g.members.get(memberId);
    if (!m) return E.UNKNOWN_MEMBER_ID;
    if (generation !== g.generation) return E.ILLEGAL_GENERATION;
    if (g.state === 'CompletingRebalance') return E.REBALANCE_IN_PROGRESS;
    this.#touch(g, m);
    return E.NONE;
  }

  /** Records a group that has offsets (a plain commit creates it, Empty). */
  ensure(groupId: string): void {
    if (!this.#groups.has(groupId)) this.#groups.set(groupId, new Group(groupId));
  }

  close(): void {
    this.#closed = true;
    for (const g of this.#groups.values()) {
      clearTimeout(g.rebalanceTimer);
      for (const m of g.members.values()) {
        clearTimeout(m.session);
        m.join?.({ error: E.COORDINATOR_NOT_AVAILABLE, generation: -1, protocol: '', leader: '', memberId: m.id, members: [] });
        m.sync?.({ error: E.COORDINATOR_NOT_AVAILABLE, assignment: Buffer.alloc(0) });
        m.join = m.sync = undefined;
      }
    }
  }

  #candidates(g: Group, except: string): string[] {
    let common: Set<string> | undefined;
    for (const m of g.members.values()) {
      if (m.id === except) continue;
      const names = new Set(m.protocols.map((p) => p.name));
      common = common ? new Set([...common].filter((n) => names.has(n))) : names;
    }
    return [...(common ?? [])];
  }

  #touch(g: Group, m: Member): void {
    clearTimeout(m.session);
    if (m.join) return; // waiting in JoinGroup: no expiry
    m.session = setTimeout(() => {
      if (g.members.get(m.id) === m) this.#remove(g, m, `session expired after ${m.sessionTimeout} ms`);
    }, m.sessionTimeout);
    m.session.unref();
  }

  #remove(g: Group, m: Member, why: string): void {
    clearTimeout(m.session);
    g.members.delete(m.id);
    this.log(`group ${g.id}: member ${m.id} ${why}`);
    m.join?.({ error: E.UNKNOWN_MEMBER_ID, generation: -1, protocol: '', leader: '', memberId: m.id, members: [] });
    m.sync?.({ error: E.UNKNOWN_MEMBER_ID, assignment: Buffer.alloc(0) });
    m.join = m.sync = undefined;
    if (g.leader === m.id) g.leader = null;
    if (g.members.size === 0) {
      clearTimeout(g.rebalanceTimer);
      g.state = 'Empty';
      g.generation++;
      g.protocol = null;
      g.protocolType = null;
      return;
    }
    if (g.state === 'PreparingRebalance') this.#maybeCompleteJoin(g);
    else this.#prepareRebalance(g, `member ${m.id} ${why}`);
  }

  #prepareRebalance(g: Group, why: string): void {
    // Followers waiting in SyncGroup learn of the new round and rejoin.
    for (const m of g.members.values()) {
      const s = m.sync;
      m.sync = undefined;
      s?.({ error: E.REBALANCE_IN_PROGRESS, assignment: Buffer.alloc(0) });
    }
    g.state = 'PreparingRebalance';
    this.log(`group ${g.id}: preparing rebalance (${why})`);
    clearTimeout(g.rebalanceTimer);
    let timeout = 0;
    for (const m of g.members.values()) timeout = Math.max(timeout, m.rebalanceTimeout);
    g.rebalanceTimer = setTimeout(() => {
      // Members that did not rejoin in time are dropped.
      for (const m of [...g.members.values()]) {
        if (!m.join) {
          clearTimeout(m.session);
          g.members.delete(m.id);
          this.log(`group ${g.id}: member ${m.id} did not rejoin within ${timeout} ms`);
        }
      }
      this.#maybeCompleteJoin(g, true);
    }, timeout);
    g.rebalanceTimer.unref();
  }

  #maybeCompleteJoin(g: Group, timedOut = false): void {
    if (g.state !== 'PreparingRebalance') return;
    const members = [...g.members.values()];
    if (!timedOut && members.some((m) => !m.join)) return;
    clearTimeout(g.rebalanceTimer);
    if (members.length === 0) {
      g.state = 'Empty';
      g.generation++;
      return;
    }
    // Vote: each member votes for its most preferred protocol all support.
    const all = members.map((m) => new Set(m.protocols.map((p) => p.name)));
    const candidates = members[0]!.protocols.map((p) => p.name).filter((n) => all.every((s) => s.has(n)));
    const votes = new Map<string, number>();
    for (const m of members) {
      const pick = m.protocols.find((p) => candidates.includes(p.name));
      if (pick) votes.set(pick.name, (votes.get(pick.name) ?? 0) + 1);
    }
    let protocol = candidates[0] ?? members[0]!.protocols[0]!.name;
    let best = -1;
    for (const c of candidates) {
      const n = votes.get(c) ?? 0;
      if (n > best) {
        best = n;
        protocol = c;
      }
    }
    g.generation++;
    g.protocol = protocol;
    if (g.leader === null || !g.members.has(g.leader)) g.leader = members[0]!.id;
    g.state = 'CompletingRebalance';
    this.log(`group ${g.id}: generation ${g.generation}, protocol ${protocol}, leader ${g.leader}, ${members.length} member(s)`);
    const list = members.map((m) => ({ memberId: m.id, groupInstanceId: m.groupInstanceId, metadata: m.protocols.find((p) => p.name === protocol)!.metadata }));
    for (const m of members) {
      const j = m.join!;
      m.join = undefined;
      this.#touch(g, m);
      j({ error: E.NONE, generation: g.generation, protocol, leader: g.leader, memberId: m.id, members: m.id === g.leader ? list : [] });
    }
  }
}
