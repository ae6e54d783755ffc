import { describe, expect, it } from 'vitest';
import { adoptedByLabel, changeText, cronProblem, diffSummary, groupCandidates, rangeText, scheduleBody, spansLabel, workloadLabel } from '../src/lib/replan';
import type { PlanDiff } from '../src/types';

describe('spans and ranges', () => {
  it('labels half-open spans inclusively', () => {
    expect(spansLabel([[4, 6], [9, 10]])).toBe('4–5, 9');
    expect(spansLabel([])).toBe('—');
    expect(rangeText({ start_block: 0, num_blocks: 6 })).toBe('0–5 (6 blocks)');
    expect(rangeText({ start_block: 3, num_blocks: 1 })).toBe('3–3 (1 block)');
    expect(rangeText(null)).toBe('none');
  });
});

describe('adoptions and predictions', () => {
  it('names the user, else the trigger', () => {
    expect(adoptedByLabel({ adopted_by: 'alice', trigger: '' })).toBe('alice');
    expect(adoptedByLabel({ adopted_by: null, trigger: 'schedule' })).toBe('schedule');
    expect(adoptedByLabel({ adopted_by: null, trigger: 'load' })).toBe('load drift');
  });
  it('signs changes', () => {
    expect(changeText({ old: 2, new: 1.5, change: -0.5 })).toBe('−0.5 s');
    expect(changeText({ old: 1, new: 2.25, change: 1.25 })).toBe('+1.25 s');
    expect(changeText({ old: 1, new: 1, change: 0 })).toBe('±0 s');
    expect(changeText({ old: null, new: 1, change: null })).toBe('—');
    expect(changeText(undefined)).toBe('—');
  });
  it('summarises a diff', () => {
    const empty: PlanDiff = { servers: [], chains_added: [], chains_removed: [], capacity_changed: [], predicted: {},
      switching_cost: { blocks_to_load: 0, blocks_to_drop: 0, servers_changed: 0, total: 0 } };
    expect(diffSummary(empty)).toMatch(/^No change/);
    const d = { ...empty, chains_added: [{ servers: ['a'], blocks: [10], service_time_s: 1, capacity: 1 }],
      switching_cost: { blocks_to_load: 1, blocks_to_drop: 2, servers_changed: 2, total: 3 } };
    expect(diffSummary(d)).toBe('1 block to load, 2 to drop, 2 servers changed, 1 chain added, 0 removed.');
  });
});

describe('schedules', () => {
  it('checks cron lines', () => {
    expect(cronProblem('0 */6 * * *')).toBeNull();
    expect(cronProblem('0 9 * * mon-fri')).toBeNull();
    expect(cronProblem('15,45 0-6 1 */2 1')).toBeNull();
    expect(cronProblem('* *')).toMatch(/5 fields/);
    expect(cronProblem('0 ? * * *')).toMatch(/not a cron field/);
  });
  it('builds request bodies or says which field is wrong', () => {
    expect(scheduleBody({ kind: 'interval', every: '30', period: 'minutes', cron: '', enabled: true }))
      .toEqual({ body: { kind: 'interval', every: 30, period: 'minutes', enabled: true } });
    expect(scheduleBody({ kind: 'interval', every: '1.5', period: 'hours', cron: '', enabled: true }))
      .toEqual({ field: 'every', message: 'must be a whole number ≥ 1' });
    expect(scheduleBody({ kind: 'cron', every: '', period: 'hours', cron: ' 0  6 * * * ', enabled: false }))
      .toEqual({ body: { kind: 'cron', cron: '0 6 * * *', enabled: false } });
    expect('field' in scheduleBody({ kind: 'cron', every: '', period: 'hours', cron: 'x', enabled: true })).toBe(true);
  });
});

describe('candidates by workload', () => {
  const row = (id: number, digest: string, rate: number | null, same: boolean | null, trace: number | null = null) => ({
    id, job: id, algorithm: 'search', feasible: true, mean_response_s: 1, p95_response_s: 2, total_capacity: 3,
    solve_time_s: 0.1, created_at: '2026-12-02T00:00:00Z',
    workload: { digest, arrival_rate: rate, trace_requests: trace }, same_workload_as_adopted: same,
  });
  it('groups by digest, the adopted load first, in first-seen order otherwise', () => {
    const groups = groupCandidates([row(5, 'bbbb', 0.05, false), row(4, 'aaaa', 0.2, true), row(3, 'bbbb', 0.05, false),
      row(2, 'cccc', null, false, 1200)]);
    expect(groups.map((g) => g.candidates.map((c) => c.id))).toEqual([[4], [5, 3], [2]]);
    expect(groups[0].label).toBe("Planned for 0.2 requests/s — the adopted plan's load");
    expect(groups[1].label).toMatch(/^Planned for 0\.05 requests\/s — not the adopted plan's load/);
    expect(groups[2].label).toMatch(/^Planned for a trace of 1,200 requests/);
  });
  it('tells apart two loads of the same rate, and says nothing about adoption when none is adopted', () => {
    const groups = groupCandidates([row(2, 'aaaa1111ff', 0.2, null), row(1, 'bbbb2222ff', 0.2, null)]);
    expect(groups.map((g) => g.label)).toEqual(['Planned for 0.2 requests/s (workload aaaa1111)',
      'Planned for 0.2 requests/s (workload bbbb2222)']);
    expect(workloadLabel(null)).toBe('an unknown load');
    expect(workloadLabel({ digest: 'd', arrival_rate: 1, trace_requests: null })).toBe('1 request/s');
  });
});
