import { describe, expect, it } from 'vitest';
import { bindingCounts, bindingLabel, boundsView, cNeighbours, limitSentence, pageOf, summaryLines } from '../src/lib/explain';
import type { PlanDocument } from '../src/types';

const doc = (extra: Partial<PlanDocument>): PlanDocument => ({ algorithm: 'search', feasible: true, placement: [], chains: [], ...extra });

describe('boundsView', () => {
  it('shows the bounds only where they apply', () => {
    expect(boundsView(doc({ bounds: { response_time_lower_s: 1, response_time_upper_s: 2, applies: true, why_not: null } })))
      .toEqual({ applies: true, lower: 1, upper: 2, whyNot: null });
    const no = boundsView(doc({ bounds: { response_time_lower_s: 1, response_time_upper_s: 2, applies: false, why_not: 'a trace' } }));
    expect(no).toEqual({ applies: false, lower: null, upper: null, whyNot: 'a trace' });
  });
  it('reads documents from before `applies` by the presence of both bounds', () => {
    expect(boundsView(doc({ bounds: { response_time_lower_s: 1, response_time_upper_s: 2 } })).applies).toBe(true);
    expect(boundsView(doc({ bounds: { response_time_lower_s: null, response_time_upper_s: null } })).applies).toBe(false);
    expect(boundsView(doc({})).whyNot).toMatch(/no closed-form bounds/);
  });
});

describe('limitSentence', () => {
  it('gives the limit and the ratio in one line', () => {
    const s = limitSentence(doc({ physical_limit_s: 0.5, limit_ratio: 1.8, simulation: { requests: 1, seed: 1, mean_response_s: 0.9, p50_response_s: 0, p95_response_s: 0, p99_response_s: 0, mean_wait_s: 0, mean_service_s: 0 } }));
    expect(s).toContain('500 ms');
    expect(s).toContain('simulated mean response is 1.8× that');
  });
  it('names the upper bound when the plan was not simulated, and says nothing without a limit', () => {
    expect(limitSentence(doc({ physical_limit_s: 2, limit_ratio: 3 }))).toContain('upper bound on the mean response is 3×');
    expect(limitSentence(doc({ physical_limit_s: 2, limit_ratio: null }))).not.toContain('×');
    expect(limitSentence(doc({ physical_limit_s: null }))).toBeNull();
  });
});

describe('explanation helpers', () => {
  it('counts servers per binding, most common first', () => {
    const servers = [{ server: 'a', binding: 'compute' }, { server: 'b', binding: 'memory-cache' }, { server: 'c', binding: 'memory-cache' }];
    expect(bindingCounts(servers)).toEqual([
      { binding: 'memory-cache', label: 'memory for KV cache', count: 2 },
      { binding: 'compute', label: 'compute', count: 1 },
    ]);
    expect(bindingLabel('something-new')).toBe('something-new');
  });
  it('sorts the neighbouring c values and marks the chosen one (list or map)', () => {
    const list = cNeighbours({ c: 2, neighbours: [{ c: 3, objective_s: 1.2 }, { c: 1, objective_s: null }, { c: 2, objective_s: 1 }] });
    expect(list.map((n) => [n.c, n.chosen])).toEqual([[1, false], [2, true], [3, false]]);
    expect(list[0].objective_s).toBeNull();
    expect(cNeighbours({ c: 4, neighbours: { '5': 2, '4': 1 } }).map((n) => n.c)).toEqual([4, 5]);
    expect(cNeighbours(null)).toEqual([]);
  });
  it('reads the summary as sentences', () => {
    expect(summaryLines({ summary: ['A.', '', 'B.'], servers: [], unused: [], c_choice: null, warnings: [] })).toEqual(['A.', 'B.']);
    expect(summaryLines({ summary: 'One.', servers: [], unused: [], c_choice: null, warnings: [] })).toEqual(['One.']);
    expect(summaryLines(null)).toEqual([]);
  });
  it('pages a list and clamps the page', () => {
    const items = Array.from({ length: 53 }, (_, i) => i);
    expect(pageOf(items, 2, 25)).toMatchObject({ items: [50, 51, 52], page: 2, pages: 3, first: 50 });
    expect(pageOf(items, 9, 25).page).toBe(2);
    expect(pageOf([], 0, 25)).toMatchObject({ items: [], pages: 1 });
  });
});
