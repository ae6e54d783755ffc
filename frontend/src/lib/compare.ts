// Side-by-side comparison of the plans of one job (one plan per algorithm).

import type { PlanDocument, PlanSummary } from '../types';

export interface CompareRow {
  plan: number;
  algorithm: string;
  feasible: boolean;
  reason: string | null;
  mean_response_s: number | null;
  p95_response_s: number | null;
  mean_wait_s: number | null;
  mean_service_s: number | null;
  total_capacity: number | null;
  solve_time_s: number | null;
  chains: number | null;
  lower_bound_s: number | null;
  upper_bound_s: number | null;
  mean_ci95_s: number | null;      // half-width of the 95 % interval of the simulated mean
  overloaded: boolean;
}

export type MetricKey = 'mean_response_s' | 'p95_response_s' | 'mean_wait_s' | 'mean_service_s' | 'total_capacity' | 'solve_time_s';

/** Which metrics are better when larger. */
export const HIGHER_IS_BETTER: Record<MetricKey, boolean> = {
  mean_response_s: false, p95_response_s: false, mean_wait_s: false, mean_service_s: false,
  total_capacity: true, solve_time_s: false,
};

function n(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

export function compareRows(plans: PlanSummary[], docs: Map<number, PlanDocument> = new Map()): CompareRow[] {
  const rows = plans.map((p): CompareRow => {
    const d = docs.get(p.id);
    const sim = d?.simulation ?? null;
    return {
      plan: p.id,
      algorithm: p.algorithm,
      feasible: p.feasible,
      reason: typeof d?.reason === 'string' ? d.reason : null,
      mean_response_s: n(p.mean_response_s) ?? n(sim?.mean_response_s),
      p95_response_s: n(p.p95_response_s) ?? n(sim?.p95_response_s),
      mean_wait_s: n(sim?.mean_wait_s),
      mean_service_s: n(sim?.mean_service_s),
      // per-request routers (PETALS, BPRR) have no chains, so no capacity to compare: n/a, not 0
      total_capacity: d && d.chains.length === 0 ? null : n(p.total_capacity) ?? n(d?.total_capacity),
      solve_time_s: n(p.solve_time_s) ?? n(d?.solve_time_s),
      chains: d ? d.chains.length : null,
      // bounds only where they apply (documents without `applies` predate the flag)
      lower_bound_s: d?.bounds?.applies === false ? null : n(d?.bounds?.response_time_lower_s),
      upper_bound_s: d?.bounds?.applies === false ? null : n(d?.bounds?.response_time_upper_s),
      mean_ci95_s: n(sim?.response_ci95_s),
      overloaded: d?.overloaded === true,
    };
  });
  // feasible plans first, then by mean response time (unknown last), then by name
  return rows.sort((a, b) =>
    Number(b.feasible) - Number(a.feasible)
    || (a.mean_response_s ?? Infinity) - (b.mean_response_s ?? Infinity)
    || a.algorithm.localeCompare(b.algorithm));
}

/** Plan ids holding the best value of a metric among feasible plans (ties all win). */
export function bestOf(rows: CompareRow[], key: MetricKey): Set<number> {
  const vals = rows.filter((r) => r.feasible && r[key] !== null);
  if (!vals.length) return new Set();
  const pick = HIGHER_IS_BETTER[key] ? Math.max : Math.min;
  const best = pick(...vals.map((r) => r[key] as number));
  return new Set(vals.filter((r) => Math.abs((r[key] as number) - best) <= 1e-12 * Math.max(1, Math.abs(best))).map((r) => r.plan));
}

/** Ratio of each plan's metric to the best one (1 = best), for "x times slower" labels. */
export function relativeTo(rows: CompareRow[], key: MetricKey): Map<number, number> {
  const out = new Map<number, number>();
  const best = bestOf(rows, key);
  const ref = rows.find((r) => best.has(r.plan))?.[key];
  if (ref === null || ref === undefined || ref === 0) return out;
  for (const r of rows) if (r[key] !== null) out.set(r.plan, (r[key] as number) / ref);
  return out;
}

/** Values span more than `ratio` (positive finite ones): a linear axis would hide the small ones. */
export function spansMoreThan(values: Array<number | null | undefined>, ratio = 10): boolean {
  const v = values.filter((x): x is number => typeof x === 'number' && Number.isFinite(x) && x > 0);
  if (v.length < 2) return false;
  return Math.max(...v) / Math.min(...v) > ratio;
}

/** [low, high] whiskers of a value with a 95 % half-width (null when either is unknown); low stays above 0 for log axes. */
export function whisker(value: number | null, half: number | null): [number, number] | null {
  if (value === null || half === null || !Number.isFinite(value) || !Number.isFinite(half) || half < 0) return null;
  return [Math.max(value - half, value * 1e-3), value + half];
}
