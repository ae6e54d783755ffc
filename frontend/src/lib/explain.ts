// The plan document's `explanation` (solvers/explain.py), the bounds and the
// physical limit, turned into what the plan page shows in words.

import { fmtNum, fmtSeconds } from './format';
import type { CChoice, Explanation, PlanDocument, ServerExplanation } from '../types';

export const BINDING_LABELS: Record<string, string> = {
  'memory-blocks': 'memory for blocks',
  'memory-cache': 'memory for KV cache',
  communication: 'communication',
  compute: 'compute',
  unused: 'no chain uses it',
};

export function bindingLabel(binding: string): string {
  return BINDING_LABELS[binding] ?? binding;
}

/** The summary as a list of sentences (older documents may carry one string). */
export function summaryLines(e: Explanation | null | undefined): string[] {
  if (!e) return [];
  if (Array.isArray(e.summary)) return e.summary.filter((s) => typeof s === 'string' && s.trim() !== '');
  return typeof e.summary === 'string' && e.summary.trim() ? [e.summary] : [];
}

/** Servers per binding constraint, most common first (ties by label). */
export function bindingCounts(servers: ServerExplanation[]): Array<{ binding: string; label: string; count: number }> {
  const counts = new Map<string, number>();
  for (const s of servers) counts.set(s.binding, (counts.get(s.binding) ?? 0) + 1);
  return [...counts.entries()]
    .map(([binding, count]) => ({ binding, label: bindingLabel(binding), count }))
    .sort((a, b) => b.count - a.count || a.label.localeCompare(b.label));
}

/** The neighbouring c values, sorted by c (the document may give a list or a {c: value} map). */
export function cNeighbours(choice: CChoice | null | undefined): Array<{ c: number; objective_s: number | null; chosen: boolean }> {
  if (!choice) return [];
  const raw = choice.neighbours;
  const list: Array<{ c: number; objective_s: number | null }> = Array.isArray(raw)
    ? raw.map((r) => ({ c: Number(r.c), objective_s: typeof r.objective_s === 'number' && Number.isFinite(r.objective_s) ? r.objective_s : null }))
    : Object.entries(raw ?? {}).map(([c, v]) => ({ c: Number(c), objective_s: typeof v === 'number' && Number.isFinite(v) ? v : null }));
  return list
    .filter((r) => Number.isFinite(r.c))
    .sort((a, b) => a.c - b.c)
    .map((r) => ({ ...r, chosen: r.c === choice.c }));
}

export interface BoundsView {
  applies: boolean;
  lower: number | null;
  upper: number | null;
  whyNot: string | null;
}

/** Bounds are shown only where they apply; otherwise the reason they do not. */
export function boundsView(doc: PlanDocument): BoundsView {
  const b = doc.bounds ?? null;
  const lower = typeof b?.response_time_lower_s === 'number' ? b.response_time_lower_s : null;
  const upper = typeof b?.response_time_upper_s === 'number' ? b.response_time_upper_s : null;
  // documents from before `applies` existed: the bounds apply when both are given
  const applies = b?.applies === undefined ? lower !== null && upper !== null : b.applies === true && lower !== null && upper !== null;
  const whyNot = applies ? null : (typeof b?.why_not === 'string' && b.why_not) || (b ? 'the closed-form bounds were not computed for this plan' : 'this plan has no closed-form bounds');
  return { applies, lower: applies ? lower : null, upper: applies ? upper : null, whyNot };
}

/** The physical limit and this plan's ratio to it, in one line (null when the document has no limit). */
export function limitSentence(doc: PlanDocument): string | null {
  const limit = doc.physical_limit_s;
  if (typeof limit !== 'number' || !Number.isFinite(limit) || limit <= 0) return null;
  const ratio = doc.limit_ratio;
  const what = doc.simulation ? 'simulated mean response' : 'upper bound on the mean response';
  const base = `No plan on these servers can answer faster than ${fmtSeconds(limit)} on average: that is the fastest chain their memory allows for a single job, with no waiting.`;
  if (typeof ratio !== 'number' || !Number.isFinite(ratio)) return base;
  return `${base} This plan's ${what} is ${fmtNum(ratio)}× that.`;
}

/** A page of a list: items [page*size, (page+1)*size) and the number of pages. */
export function pageOf<T>(items: T[], page: number, size: number): { items: T[]; page: number; pages: number; first: number } {
  const pages = Math.max(1, Math.ceil(items.length / size));
  const p = Math.min(Math.max(0, page), pages - 1);
  return { items: items.slice(p * size, (p + 1) * size), page: p, pages, first: p * size };
}
