// A server's batch slowdown (scenario servers[].batch_slowdown): [concurrency, factor] pairs, written in
// the editor compactly as "1:1, 8:1.5, 64:4". The rules mirror solvers/batching.py's BatchSlowdown.from_pairs
// (the API checks them again and names the entry: servers[2].batch_slowdown[1]).

import type { PlanDocument } from '../types';

export type Curve = Array<[number, number]>;

/** What a server's batch_slowdown holds while edited: pairs, or the text as typed when it is not pairs. */
export type CurveValue = Curve | string | null;

export const CURVE_HINT = 'concurrency:factor pairs from 1:1, e.g. 1:1, 8:1.5, 64:4 (empty: one job runs as fast as many)';

export function formatCurve(value: CurveValue | undefined): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return value;
  return value.map(([b, f]) => `${b}:${f}`).join(', ');
}

/** "1:1, 8:1.5" -> [[1, 1], [8, 1.5]]; empty -> null; text that is not pairs comes back as it is. */
export function parseCurve(text: string): CurveValue {
  const t = text.trim().replace(/\s*:\s*/g, ':');
  if (!t) return null;
  const pairs: Curve = [];
  for (const part of t.split(/[,;]\s*|\s+(?=\d)/).filter((p) => p.trim())) {
    const m = /^\s*([^:\s]+)\s*:\s*([^:\s]+)\s*$/.exec(part);
    const b = m ? Number(m[1]) : NaN;
    const f = m ? Number(m[2]) : NaN;
    if (!Number.isFinite(b) || !Number.isFinite(f)) return text;
    pairs.push([b, f]);
  }
  return pairs;
}

/** Problems of a curve keyed by the API's suffix: "" (the whole list) or "[i]" (one entry). */
export function curveErrors(value: CurveValue | undefined): Record<string, string> {
  if (value === null || value === undefined) return {};
  if (typeof value === 'string') return { '': `write it as ${CURVE_HINT}` };
  if (!value.length) return { '': 'must list at least 1:1' };
  const errors: Record<string, string> = {};
  let prev: [number, number] | null = null;
  value.forEach(([b, f], i) => {
    const at = `[${i}]`;
    if (!Number.isInteger(b)) errors[at] = `concurrency must be an integer, got ${b}`;
    else if (prev === null && b !== 1) errors[at] = `the first point must be at concurrency 1, got ${b}`;
    else if (prev !== null && b <= prev[0]) errors[at] = `concurrency ${b} must be above the previous point's ${prev[0]}`;
    else if (f < 1) errors[at] = `factor must be at least 1, got ${f}`;
    else if (prev === null && f !== 1) errors[at] = `factor(1) must be 1 (the one-job time is the block time), got ${f}`;
    else if (prev !== null && f < prev[1]) errors[at] = `factor ${f} is below the previous point's ${prev[1]}: a slowdown never decreases with more jobs`;
    if (!errors[at]) prev = [b, f];
  });
  return errors;
}

/** One line for a field's errors: the whole list's, then each entry's ("entry 2 (8:0.5): ..."). */
export function curveMessage(value: CurveValue | undefined, errors: Record<string, string[] | string>): string | undefined {
  const pairs = Array.isArray(value) ? value : [];
  const parts = Object.entries(errors)
    .sort(([a], [b]) => a.localeCompare(b, undefined, { numeric: true }))
    .map(([suffix, msg]) => {
      const text = Array.isArray(msg) ? msg.join('; ') : msg;
      const m = /^\[(\d+)\]$/.exec(suffix);
      if (!m) return text;
      const k = Number(m[1]);
      return `entry ${k + 1}${pairs[k] ? ` (${pairs[k][0]}:${pairs[k][1]})` : ''}: ${text}`;
    });
  return parts.length ? parts.join('; ') : undefined;
}

export interface BatchCapacityNote {
  server: string;
  jobs: number;
  more_jobs: number;
  on_chain: number;
  slowdown_factor: number;
  slowdown_factor_with_more: number;
  chains_slowed: Array<{ chain: number; slower_by: number }>;
  saturation_rate_rps: number;
  saturation_rate_with_more_rps: number;
  text: string;
}

/** The plan's batch_capacity extra (servers holding fewer jobs than memory allows); [] when absent. */
export function batchCapacity(doc: PlanDocument): BatchCapacityNote[] {
  const raw = doc.batch_capacity;
  if (!Array.isArray(raw)) return [];
  return raw.filter((n): n is BatchCapacityNote =>
    typeof n === 'object' && n !== null && typeof (n as BatchCapacityNote).server === 'string' && typeof (n as BatchCapacityNote).text === 'string');
}

/** True when the plan's saturation rate is below its batch-1 service rate: some server slows with its batch. */
export function servesBatched(doc: PlanDocument): boolean {
  const s = doc.saturation_rate_rps, nu = doc.total_service_rate;
  return typeof s === 'number' && typeof nu === 'number' && s < nu * (1 - 1e-9);
}
