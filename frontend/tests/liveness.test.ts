import { describe, expect, it } from 'vitest';
import { drainText, memoryText, summaryText, timeline, type LivenessEvent, type LivenessServers,
  type ServerLiveness } from '../src/lib/liveness';

const ev = (over: Partial<LivenessEvent>): LivenessEvent => ({
  id: 1, kind: 'transition', server: 'a', prev: 'up', state: 'down', cause: 'heartbeat timeout',
  at: '2026-01-01T10:00:00Z', plan: 7, chains: [0, 2], replan: null, ...over,
});

describe('liveness timeline', () => {
  it('turns a death into failure, mask, re-plan and adoption, newest first', () => {
    const items = timeline([ev({
      replan: { job: 12, status: 'succeeded', created_at: '2026-01-01T10:00:01Z', finished_at: '2026-01-01T10:00:04Z',
        detail: 'server a down (heartbeat timeout)', adopted: true, plan: 9, why: 'forced' },
    })]);
    expect(items.map((i) => i.kind)).toEqual(['adoption', 'replan', 'mask', 'failure']);
    expect(items[0].text).toBe('plan #9 adopted (re-plan #12)');
    expect(items[2].text).toBe('chains 0, 2 of plan #7 masked: no new requests through a');
    expect(items[3].text).toBe('a is down (heartbeat timeout)');
  });

  it('tells a return from a recovery, and unmasks only what was masked', () => {
    const back = timeline([ev({ id: 2, prev: 'down', state: 'up', cause: 'heartbeat', chains: [1] })]);
    expect(back.map((i) => i.kind)).toEqual(['unmask', 'rejoin']);
    expect(back[1].text).toBe('a is back up (was down) (heartbeat)');
    const recovered = timeline([ev({ id: 3, prev: 'suspect', state: 'up', cause: '', chains: [1] })]);
    expect(recovered.map((i) => i.kind)).toEqual(['unmask', 'recover']);
    // suspect -> down changes no mask (it was masked already)
    expect(timeline([ev({ prev: 'suspect', state: 'down' })]).map((i) => i.kind)).toEqual(['failure']);
    // a server outside the adopted plan masks nothing
    expect(timeline([ev({ chains: [] })]).map((i) => i.kind)).toEqual(['failure']);
  });

  it('shows drains, candidates and failed re-plans with their reason', () => {
    const items = timeline([
      ev({ id: 5, kind: 'drained', prev: 'draining', state: 'draining', cause: 'no lease in flight', at: '2026-01-01T10:05:00Z',
        replan: { job: 13, status: 'succeeded', created_at: '2026-01-01T10:05:01Z', finished_at: '2026-01-01T10:05:03Z',
          detail: 'server a drained', adopted: false, plan: 10, why: 'gain 1% below 5%' } }),
      ev({ id: 4, prev: 'up', state: 'draining', cause: 'drain requested by alice', at: '2026-01-01T10:04:00Z' }),
      ev({ id: 6, server: 'b', at: '2026-01-01T10:06:00Z', chains: [],
        replan: { job: 14, status: 'failed', created_at: '2026-01-01T10:06:01Z', finished_at: '2026-01-01T10:06:02Z',
          detail: 'server b down', adopted: null, plan: null, why: 'servers can hold 7 of 10 blocks' } }),
      ev({ id: 7, server: 'c', at: '2026-01-01T10:07:00Z', chains: [],
        replan: { job: 15, status: 'running', created_at: '2026-01-01T10:07:01Z', finished_at: null,
          detail: 'server c down', adopted: null, plan: null, why: null } }),
    ]);
    expect(items.map((i) => [i.kind, i.server])).toEqual([
      ['replan', 'c'], ['failure', 'c'],
      ['replan-failed', 'b'], ['replan', 'b'], ['failure', 'b'],
      ['candidate', 'a'], ['replan', 'a'], ['drained', 'a'], ['mask', 'a'], ['drain', 'a'],
    ]);
    expect(items[2].text).toBe('re-plan #14 failed: servers can hold 7 of 10 blocks');
    expect(items[5].text).toBe('re-plan #13: plan #10 kept as a candidate (gain 1% below 5%)');
  });
});

const server = (over: Partial<ServerLiveness>): ServerLiveness => ({
  server: 'a', state: 'up', since: null, cause: '', reported: false, last_heartbeat_at: null, heartbeat: {},
  drain: null, in_plan: true, ...over,
});

describe('liveness texts', () => {
  it('summarises states and masked chains', () => {
    const d: LivenessServers = { cluster: 1, adopted_plan: 7, chains: 3, last_replan: null,
      servers: [server({}), server({ server: 'b', state: 'down' })], masked_chains: [{ chain: 1, servers: ['b'] }] };
    expect(summaryText(d)).toBe('1 of 2 servers not up: b down. 1 of 3 chains masked: 1 (b).');
    expect(summaryText({ ...d, servers: [server({})], masked_chains: [] }))
      .toBe('All 1 servers are up. All 3 chains of plan #7 take requests.');
    expect(summaryText({ ...d, adopted_plan: null, masked_chains: [] })).toContain('No plan is adopted.');
  });

  it('says where a drain stands and how much memory is free', () => {
    expect(drainText(server({}))).toBe('');
    expect(drainText(server({ state: 'draining', drain: { requested_at: null, requested_by: null, drained_at: null } })))
      .toBe('draining (its heartbeat says so)');
    expect(drainText(server({ state: 'draining', drain: { requested_at: 'x', requested_by: 'alice', drained_at: null } })))
      .toBe('draining (asked by alice); waiting for leases in flight');
    expect(drainText(server({ state: 'draining', drain: { requested_at: 'x', requested_by: 'alice', drained_at: 'y' } })))
      .toBe('drained; leaving the plan');
    expect(memoryText(server({ heartbeat: { free_memory_gb: 11.54, total_memory_gb: 80 } }))).toBe('12 of 80 GB free');
    expect(memoryText(server({ heartbeat: { free_memory_gb: 3.21 } }))).toBe('3.2 GB free');
    expect(memoryText(server({}))).toBe('—');
  });
});
