// Response time versus arrival rate for one plan: the closed-form bounds at
// a grid of rates (from the API's /curve/ endpoint) plus the simulated point
// at the planned rate.

import type { CurvePoint } from '../types';

/**
 * Arrival rates to ask the bounds for: `points` rates spread over
 * (0, 0.95 nu] with more of them close to nu where the curve bends, plus the
 * planned rate. Without nu, 0.1x..2x the planned rate.
 */
export function curveRates(nu: number | null | undefined, planned: number | null | undefined, points = 24): number[] {
  const rates = new Set<number>();
  const round = (x: number) => Number(x.toPrecision(6));
  if (nu && nu > 0) {
    // up to 0.95 nu: beyond it the mean response time explodes and hides the rest of the curve
    for (let i = 1; i <= points; i++) {
      const u = i / points;
      rates.add(round(0.95 * nu * (1 - (1 - u) ** 1.5)));
    }
  } else if (planned && planned > 0) {
    for (let i = 1; i <= points; i++) rates.add(round((planned * 2 * i) / points));
  }
  if (planned && planned > 0) rates.add(round(planned));
  return [...rates].filter((r) => r > 0).sort((a, b) => a - b);
}

export interface CurveSeries {
  rates: number[];
  lower: Array<number | null>;
  upper: Array<number | null>;
  unstableFrom: number | null;   // first rate at which the plan is unstable
}

/** Series for a chart; unstable points become gaps (null). */
export function curveSeries(points: CurvePoint[]): CurveSeries {
  const sorted = [...points].sort((a, b) => a.arrival_rate - b.arrival_rate);
  const ok = (p: CurvePoint, v: number | null) => (p.stable && v !== null && Number.isFinite(v) ? v : null);
  const unstable = sorted.find((p) => !p.stable);
  return {
    rates: sorted.map((p) => p.arrival_rate),
    lower: sorted.map((p) => ok(p, p.response_time_lower_s)),
    upper: sorted.map((p) => ok(p, p.response_time_upper_s)),
    unstableFrom: unstable ? unstable.arrival_rate : null,
  };
}
