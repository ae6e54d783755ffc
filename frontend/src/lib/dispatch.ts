// Pure helpers of the dispatcher panel (unit-tested in tests/dispatch.test.ts).

export interface DispatchChain { chain: number; capacity: number; in_progress: number }
export interface DispatchChainObs {
  chain: number; predicted_service_time_s: number; measured_service_time_s: number | null;
  completed: number; waiting: number;
}
export interface DispatchState {
  plan: number | null; policy: string | null; chains: DispatchChain[]; queue_length: number;
  arrival_rate: number | null;
  observations?: {
    chains: DispatchChainObs[]; grants: number; releases: number; expiries: number; timeouts: number;
    mean_wait_s: number | null; in_flight_by_plan: Array<{ plan: number | null; in_flight: number }>;
  };
}
export interface DispatcherPanelData {
  cluster: number; adopted_plan: number | null; policy: string; state: DispatchState | null;
  error: string | null; tokens: number; endpoints: Record<string, string>;
  history: Array<{ created_at: string; arrival_rate: number | null; grants: number; mean_wait_s: number | null }>;
}

export interface ChainRow {
  chain: number; capacity: number; inProgress: number; occupancy: number;
  predicted: number | null; measured: number | null; completed: number;
  /** measured / predicted - 1, only once enough requests completed to say anything */
  drift: number | null;
}

/** One row per chain of the dispatched plan: occupancy and measured vs predicted service time. */
export function chainRows(state: DispatchState, minCompleted = 1): ChainRow[] {
  const obs = new Map((state.observations?.chains ?? []).map((o) => [o.chain, o]));
  return state.chains.map((c) => {
    const o = obs.get(c.chain);
    const predicted = o?.predicted_service_time_s ?? null;
    const measured = o?.measured_service_time_s ?? null;
    const completed = o?.completed ?? 0;
    const drift = predicted && measured !== null && completed >= minCompleted ? measured / predicted - 1 : null;
    return {
      chain: c.chain, capacity: c.capacity, inProgress: c.in_progress,
      occupancy: c.capacity > 0 ? c.in_progress / c.capacity : 0, predicted, measured, completed, drift,
    };
  });
}

/** "in sync", or what is off between the adopted plan and what the dispatcher serves. */
export function syncText(d: DispatcherPanelData): string {
  if (d.error) return d.error;
  if (d.adopted_plan === null) return 'No plan is adopted: acquire answers 409 until one is.';
  if (!d.state || d.state.plan === null) return 'The dispatcher has not received the adopted plan yet (it syncs every few seconds).';
  if (d.state.plan !== d.adopted_plan) return `The dispatcher still serves plan #${d.state.plan}; plan #${d.adopted_plan} follows within seconds.`;
  return `Dispatching plan #${d.state.plan} with ${d.state.policy ?? 'jffc'}.`;
}

/** A relative drift as "+12%" / "−8%", or "—". */
export function driftText(drift: number | null): string {
  if (drift === null || !Number.isFinite(drift)) return '—';
  const pct = Math.round(drift * 100);
  return pct === 0 ? '±0%' : `${pct > 0 ? '+' : '−'}${Math.abs(pct)}%`;
}

/** Leases still running on older plans after a switch, in words (empty when none). */
export function drainingText(state: DispatchState): string {
  const old = (state.observations?.in_flight_by_plan ?? []).filter((g) => g.plan !== state.plan && g.in_flight > 0);
  return old.map((g) => `${g.in_flight} request${g.in_flight === 1 ? '' : 's'} finishing on plan #${g.plan}`).join(', ');
}
