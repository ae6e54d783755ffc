import { describe, expect, it } from 'vitest';
import { bestOf, compareRows, relativeTo } from '../src/lib/compare';
import { curveRates, curveSeries } from '../src/lib/curve';
import type { PlanDocument, PlanSummary } from '../src/types';

const summary = (id: number, algorithm: string, mean: number | null, extra: Partial<PlanSummary> = {}): PlanSummary => ({
  id, job: 1, algorithm, feasible: mean !== null, mean_response_s: mean, p95_response_s: mean === null ? null : mean * 2,
  total_capacity: 10, solve_time_s: 0.01, created_at: '', ...extra,
});

describe('compareRows', () => {
  const plans = [summary(1, 'petals', 30), summary(2, 'proposed', 10, { total_capacity: 14 }), summary(3, 'exact', null), summary(4, 'bprr', 12)];
  const docs = new Map<number, PlanDocument>([[2, {
    algorithm: 'proposed', feasible: true, placement: [], chains: [{ servers: ['a'], blocks: [1], service_time_s: 9, capacity: 14 }],
    simulation: { requests: 1, seed: 1, mean_response_s: 10, p50_response_s: 9, p95_response_s: 20, p99_response_s: 30, mean_wait_s: 1, mean_service_s: 9 },
    bounds: { response_time_lower_s: 9.5, response_time_upper_s: 10.5 },
  }], [3, { algorithm: 'exact', feasible: false, reason: 'time limit', placement: [], chains: [] }]]);

  it('orders feasible plans by mean response, infeasible last', () => {
    expect(compareRows(plans, docs).map((r) => r.algorithm)).toEqual(['proposed', 'bprr', 'petals', 'exact']);
  });
  it('takes waiting/service/bounds from the documents', () => {
    const rows = compareRows(plans, docs);
    expect(rows[0]).toMatchObject({ mean_wait_s: 1, mean_service_s: 9, chains: 1, lower_bound_s: 9.5, upper_bound_s: 10.5 });
    expect(rows[1].mean_wait_s).toBeNull();
    expect(rows[3].reason).toBe('time limit');
  });
  it('finds the best plan of each metric among feasible ones', () => {
    const rows = compareRows(plans, docs);
    expect([...bestOf(rows, 'mean_response_s')]).toEqual([2]);
    expect([...bestOf(rows, 'total_capacity')]).toEqual([2]);
    expect(bestOf(rows, 'solve_time_s').size).toBe(3); // tie among feasible
    expect(relativeTo(rows, 'mean_response_s').get(1)).toBe(3);
  });
  it('gives plans without chains (per-request routers) no total capacity instead of 0', () => {
    const petalsDoc: PlanDocument = { algorithm: 'petals', feasible: true, placement: [], chains: [], total_capacity: 0 };
    const rows = compareRows([summary(1, 'petals', 30, { total_capacity: 0 }), summary(2, 'proposed', 10, { total_capacity: 14 })],
      new Map([[1, petalsDoc], [2, docs.get(2)!]]));
    expect(rows.find((r) => r.algorithm === 'petals')!.total_capacity).toBeNull();
    expect(rows.find((r) => r.algorithm === 'proposed')!.total_capacity).toBe(14);
  });
});

describe('curve', () => {
  it('spreads rates over (0, 0.95 nu], denser near nu, and includes the planned rate', () => {
    const r = curveRates(1, 0.42, 10);
    expect(r).toHaveLength(11);
    expect(r).toContain(0.42);
    expect(Math.max(...r)).toBeCloseTo(0.95, 9);
    expect(Math.min(...r)).toBeGreaterThan(0);
    expect(r).toEqual([...r].sort((a, b) => a - b));
    const gaps = r.slice(1).map((v, i) => v - r[i]);
    expect(gaps[gaps.length - 1]).toBeLessThan(gaps[0] + 1e-9);
  });
  it('falls back to 0..2x the planned rate without nu', () => {
    const r = curveRates(null, 0.5, 4);
    expect(r).toEqual([0.25, 0.5, 0.75, 1]);
    expect(curveRates(null, null)).toEqual([]);
  });
  it('turns unstable points into gaps', () => {
    const s = curveSeries([
      { arrival_rate: 0.3, response_time_lower_s: 11, response_time_upper_s: 12, stable: true },
      { arrival_rate: 0.1, response_time_lower_s: 10, response_time_upper_s: 10.5, stable: true },
      { arrival_rate: 0.9, response_time_lower_s: null, response_time_upper_s: null, stable: false },
    ]);
    expect(s.rates).toEqual([0.1, 0.3, 0.9]);
    expect(s.lower).toEqual([10, 11, null]);
    expect(s.upper).toEqual([10.5, 12, null]);
    expect(s.unstableFrom).toBe(0.9);
  });
});

import { histogramBars, percentiles } from '../src/lib/distribution';

describe('distribution', () => {
  it('turns the simulator histogram into shares that sum to 1 with the overflow', () => {
    const h = histogramBars({ bin_edges_s: [0, 1, 2, 3], counts: [2, 5, 2], overflow: 1 })!;
    expect(h.total).toBe(10);
    expect(h.fractions).toEqual([0.2, 0.5, 0.2]);
    expect(h.overflow).toBe(0.1);
    expect(h.mids).toEqual([0.5, 1.5, 2.5]);
    expect(h.labels[0]).toBe('0 s–1 s');
  });
  it('rejects malformed or empty histograms', () => {
    expect(histogramBars(null)).toBeNull();
    expect(histogramBars({ bin_edges_s: [0, 1], counts: [1, 2], overflow: 0 })).toBeNull();
    expect(histogramBars({ bin_edges_s: [0, 1], counts: [0], overflow: 0 })).toBeNull();
  });
  it('lists the reported percentiles', () => {
    const sim = { requests: 1, seed: 1, mean_response_s: 9.5, p50_response_s: 8.1, p95_response_s: 21, p99_response_s: 30.2, mean_wait_s: 0.2, mean_service_s: 9.3 };
    expect(percentiles(sim).map((p) => p.label)).toEqual(['p50', 'mean', 'p95', 'p99']);
    expect(percentiles(null)).toEqual([]);
  });
});

describe('log scale and confidence intervals', async () => {
  const { spansMoreThan, whisker } = await import('../src/lib/compare');
  it('goes to a log axis only when positive values span more than 10x', () => {
    expect(spansMoreThan([0.5, 37])).toBe(true);
    expect(spansMoreThan([0.5, 4.9, null])).toBe(false);
    expect(spansMoreThan([0, 1, 5])).toBe(false);        // zeros cannot be drawn on a log axis and do not count
    expect(spansMoreThan([3])).toBe(false);
  });
  it('gives whiskers from the 95 % half-width, kept above zero', () => {
    expect(whisker(10, 2)).toEqual([8, 12]);
    expect(whisker(1, 5)).toEqual([1e-3, 6]);
    expect(whisker(null, 1)).toBeNull();
    expect(whisker(1, null)).toBeNull();
  });
  it('takes the interval and the overload flag from the documents, and drops bounds that do not apply', () => {
    const plans = [summary(1, 'petals', 37)];
    const docs = new Map<number, PlanDocument>([[1, {
      algorithm: 'petals', feasible: true, placement: [], chains: [], overloaded: true,
      simulation: { requests: 1, seed: 1, mean_response_s: 37, p50_response_s: 9, p95_response_s: 80, p99_response_s: 90, mean_wait_s: 30, mean_service_s: 7, response_ci95_s: 6.5 },
      bounds: { response_time_lower_s: 1, response_time_upper_s: 2, applies: false, why_not: 'no chains' },
    }]]);
    const [row] = compareRows(plans, docs);
    expect(row).toMatchObject({ mean_ci95_s: 6.5, overloaded: true, lower_bound_s: null, upper_bound_s: null });
  });
});
