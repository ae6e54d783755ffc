// Pure helpers of the re-planning views (unit-tested in tests/replan.test.ts).

import type { Candidate, PlanDiff, Predicted, Schedule, Trigger } from '../types';

/** Half-open block spans [[4, 6], [9, 10]] as "4–5, 9" (blocks are numbered from 0). */
export function spansLabel(spans: Array<[number, number]>): string {
  if (!spans.length) return '—';
  return spans.map(([a, b]) => (b - a === 1 ? `${a}` : `${a}–${b - 1}`)).join(', ');
}

/** A server's range before or after, "0–5 (6 blocks)" or "none". */
export function rangeText(r: { start_block: number; num_blocks: number } | null): string {
  if (!r || r.num_blocks <= 0) return 'none';
  return `${r.start_block}–${r.start_block + r.num_blocks - 1} (${r.num_blocks} block${r.num_blocks === 1 ? '' : 's'})`;
}

const TRIGGERS: Record<string, string> = {
  '': 'a user',
  manual: 're-plan on request',
  schedule: 'schedule',
  calibration: 'new calibration',
  servers: 'servers changed',
  load: 'load drift',
  service_time: 'service time drift (live dispatcher)',
};

/** Who or what adopted a plan, in words. */
export function adoptedByLabel(a: { adopted_by: string | null; trigger: Trigger | string }): string {
  if (a.adopted_by) return a.adopted_by;
  return TRIGGERS[a.trigger] ?? a.trigger;
}

export function triggerLabel(t: Trigger | string | undefined): string {
  return t ? (TRIGGERS[t] ?? t) : 'plan';
}

/** A signed change in seconds, "−0.50 s" / "+1.2 s", or "—". */
export function changeText(p: Predicted | undefined, digits = 3): string {
  if (!p || p.change === null || p.change === undefined) return '—';
  const v = +p.change.toPrecision(digits);
  if (v === 0) return '±0 s';
  return `${v > 0 ? '+' : '−'}${Math.abs(v)} s`;
}

/** Totals shown above a diff table. */
export function diffSummary(d: PlanDiff): string {
  const c = d.switching_cost;
  if (!d.servers.length && !d.chains_added.length && !d.chains_removed.length && !d.capacity_changed.length) {
    return 'No change: the plans place and chain the same blocks.';
  }
  const parts = [
    `${c.blocks_to_load} block${c.blocks_to_load === 1 ? '' : 's'} to load`,
    `${c.blocks_to_drop} to drop`,
    `${c.servers_changed} server${c.servers_changed === 1 ? '' : 's'} changed`,
    `${d.chains_added.length} chain${d.chains_added.length === 1 ? '' : 's'} added`,
    `${d.chains_removed.length} removed`,
  ];
  return parts.join(', ') + '.';
}

export const CRON_HINT = 'minute hour day-of-month month day-of-week (UTC), e.g. 0 */6 * * *';

/** A client-side check of a 5-field cron line; the server checks it fully. Null when fine. */
export function cronProblem(line: string): string | null {
  const parts = line.trim().split(/\s+/).filter(Boolean);
  if (parts.length !== 5) return `needs 5 fields (${CRON_HINT}); got ${parts.length}`;
  const ok = /^(\*|\d+(-\d+)?)(\/\d+)?(,(\*|\d+(-\d+)?)(\/\d+)?)*$|^[a-z]{3}(-[a-z]{3})?$/i;
  const bad = parts.find((p) => !ok.test(p));
  return bad ? `“${bad}” is not a cron field` : null;
}

export interface ScheduleDraft {
  kind: 'interval' | 'cron';
  every: string;
  period: 'seconds' | 'minutes' | 'hours' | 'days';
  cron: string;
  enabled: boolean;
}

export function draftOf(s?: Schedule | null): ScheduleDraft {
  return {
    kind: s?.kind ?? 'interval',
    every: s?.every != null ? String(s.every) : '6',
    period: s?.period ?? 'hours',
    cron: s?.cron ?? '0 */6 * * *',
    enabled: s?.enabled ?? true,
  };
}

/** The request body for a schedule draft, or the problem to show next to the field. */
export function scheduleBody(d: ScheduleDraft): { body: Partial<Schedule> } | { field: 'every' | 'cron'; message: string } {
  if (d.kind === 'interval') {
    const every = Number(d.every);
    if (!Number.isInteger(every) || every < 1) return { field: 'every', message: 'must be a whole number ≥ 1' };
    return { body: { kind: 'interval', every, period: d.period, enabled: d.enabled } };
  }
  const problem = cronProblem(d.cron);
  if (problem) return { field: 'cron', message: problem };
  return { body: { kind: 'cron', cron: d.cron.trim().split(/\s+/).join(' '), enabled: d.enabled } };
}

export interface CandidateGroup {
  key: string;
  label: string;                   // "Planned for 0.2 requests/s (the adopted plan's load)"
  sameAsAdopted: boolean | null;
  candidates: Candidate[];
}

function rateText(r: number): string {
  return `${+r.toPrecision(3)} request${r === 1 ? '' : 's'}/s`;
}

/** The load a candidate was planned for, in words. */
export function workloadLabel(w: Candidate['workload']): string {
  if (!w) return 'an unknown load';
  const parts: string[] = [];
  if (w.arrival_rate !== null) parts.push(rateText(w.arrival_rate));
  if (w.trace_requests !== null) parts.push(`a trace of ${w.trace_requests.toLocaleString('en-US')} requests`);
  return parts.length ? parts.join(', ') : `workload ${w.digest}`;
}

/**
 * Candidates grouped by the workload they were planned for (bounds only compare within a
 * group): the adopted plan's load first, then the others in the order they first appear.
 * Two groups with the same rate but different workloads (token counts, a trace) say so.
 */
export function groupCandidates(rows: Candidate[]): CandidateGroup[] {
  const groups = new Map<string, CandidateGroup>();
  for (const c of rows) {
    const key = c.workload?.digest ?? 'unknown';
    let g = groups.get(key);
    if (!g) {
      g = { key, label: '', sameAsAdopted: c.same_workload_as_adopted, candidates: [] };
      groups.set(key, g);
    }
    g.candidates.push(c);
  }
  const list = [...groups.values()];
  const labels = new Map<string, number>();
  for (const g of list) {
    const text = workloadLabel(g.candidates[0].workload);
    labels.set(text, (labels.get(text) ?? 0) + 1);
  }
  for (const g of list) {
    const text = workloadLabel(g.candidates[0].workload);
    const clash = (labels.get(text) ?? 0) > 1 && g.key !== 'unknown' ? ` (workload ${g.key.slice(0, 8)})` : '';
    const adopted = g.sameAsAdopted === true ? " — the adopted plan's load"
      : g.sameAsAdopted === false ? ' — not the adopted plan\'s load: its figures do not compare with it' : '';
    g.label = `Planned for ${text}${clash}${adopted}`;
  }
  return list.sort((a, b) => Number(b.sameAsAdopted === true) - Number(a.sameAsAdopted === true));
}
