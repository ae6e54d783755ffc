// The cluster's default workload as a form (the editor on the cluster page).
// Limits mirror the scenario parser's WorkloadDoc (solvers/scenario.py); the
// server stays the authority and its messages are shown next to the fields too.

import type { Workload } from '../types';

export type WorkloadKey = 'arrival_rate' | 'target_load' | 'input_tokens' | 'output_tokens' | 'max_tokens';

export const MAX_RATE = 1e7;
export const MAX_TOKENS = 1e8;

export const WORKLOAD_FIELDS: Array<{ key: WorkloadKey; label: string; hint: string }> = [
  { key: 'arrival_rate', label: 'Arrival rate (requests/s)', hint: 'Poisson arrivals; empty: set from the target load' },
  { key: 'target_load', label: 'Target load', hint: 'between 0 and 1 (default 0.7): sets the rate when none is given' },
  { key: 'input_tokens', label: 'Input tokens', hint: 'mean prompt length' },
  { key: 'output_tokens', label: 'Output tokens', hint: 'mean generated tokens (at least 1)' },
  { key: 'max_tokens', label: 'Max tokens', hint: 'sizes each job\'s KV cache (default: the model\'s max sequence length)' },
];

export type WorkloadForm = Record<WorkloadKey, string>;

export function workloadForm(w: Workload | null | undefined): WorkloadForm {
  const out = {} as WorkloadForm;
  for (const f of WORKLOAD_FIELDS) {
    const v = w?.[f.key];
    out[f.key] = typeof v === 'number' ? String(v) : '';
  }
  return out;
}

function check(key: WorkloadKey, v: number): string | null {
  if (!Number.isFinite(v)) return 'must be a number';
  switch (key) {
    case 'arrival_rate':
      return v > 0 && v <= MAX_RATE ? null : `must be > 0 and at most ${MAX_RATE.toExponential(0)}`;
    case 'target_load':
      return v > 0 && v < 1 ? null : 'must be between 0 and 1 (exclusive)';
    case 'input_tokens':
      return v >= 0 && v <= MAX_TOKENS ? null : 'must be ≥ 0 and at most 1e8';
    case 'output_tokens':
      return v >= 1 && v <= MAX_TOKENS ? null : 'must be ≥ 1 and at most 1e8';
    case 'max_tokens':
      return Number.isInteger(v) && v > 0 && v <= MAX_TOKENS ? null : 'must be a whole number > 0 and at most 1e8';
  }
}

/**
 * The workload to PATCH from the form, keeping fields the form does not edit
 * (a trace); or the errors keyed by field. An empty form clears the workload (null).
 */
export function parseWorkload(form: WorkloadForm, previous?: Workload | null): { workload: Workload | null; errors: Partial<Record<WorkloadKey, string>> } {
  const errors: Partial<Record<WorkloadKey, string>> = {};
  const w: Workload = {};
  let any = false;
  for (const f of WORKLOAD_FIELDS) {
    const text = form[f.key].trim();
    if (text === '') continue;
    const v = Number(text);
    const err = check(f.key, v);
    if (err) errors[f.key] = err;
    else {
      w[f.key] = v;
      any = true;
    }
  }
  if (previous?.trace) {
    w.trace = previous.trace;
    any = true;
  }
  return { workload: any ? w : null, errors };
}
