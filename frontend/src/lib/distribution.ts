// The simulated response-time distribution of a plan: the simulator's
// histogram (equal bins from 0 to the 99th percentile plus an overflow count)
// as chart bars, and the percentiles as a compact list.

import type { Simulation } from '../types';
import { fmtSeconds } from './format';

export interface HistogramBars {
  labels: string[];
  mids: number[];
  fractions: number[];   // share of all simulated requests in each bin
  overflow: number;      // share above the last edge
  total: number;
}

export function histogramBars(h: Simulation['response_histogram']): HistogramBars | null {
  if (!h || !Array.isArray(h.counts) || !Array.isArray(h.bin_edges_s) || h.counts.length === 0 || h.bin_edges_s.length !== h.counts.length + 1) return null;
  const total = h.counts.reduce((a, b) => a + b, 0) + (h.overflow || 0);
  if (!total) return null;
  return {
    labels: h.counts.map((_, i) => `${fmtSeconds(h.bin_edges_s[i])}–${fmtSeconds(h.bin_edges_s[i + 1])}`),
    mids: h.counts.map((_, i) => (h.bin_edges_s[i] + h.bin_edges_s[i + 1]) / 2),
    fractions: h.counts.map((c) => c / total),
    overflow: (h.overflow || 0) / total,
    total,
  };
}

export interface Percentile {
  label: string;
  value: number;
}

/** Mean and percentiles that the simulation reports, in increasing order of the percentile. */
export function percentiles(sim: Simulation | null | undefined): Percentile[] {
  if (!sim) return [];
  const out: Percentile[] = [];
  for (const [label, key] of [['p50', 'p50_response_s'], ['mean', 'mean_response_s'], ['p95', 'p95_response_s'], ['p99', 'p99_response_s']] as const) {
    const v = sim[key];
    if (typeof v === 'number' && Number.isFinite(v)) out.push({ label, value: v });
  }
  return out;
}
