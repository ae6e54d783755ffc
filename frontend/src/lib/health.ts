// /api/v1/health/ as the UI reads it, and when a job's progress counts as stale.

export interface HealthPart {
  ok: boolean;
  detail?: string;
  alive?: number;
}

export interface Health {
  status: string;
  database?: HealthPart;
  broker?: HealthPart;
  workers?: HealthPart;
}

export interface HealthView {
  canRunJobs: boolean;
  problems: string[];       // one line per part that is down
}

/** What the banner says: jobs can run only with the database, the broker and at least one worker up. */
export function healthView(h: Health | null, httpStatus: number | null): HealthView {
  if (h === null) {
    return { canRunJobs: false, problems: [httpStatus === null ? 'the server cannot be reached' : `the health check answered ${httpStatus}`] };
  }
  const problems: string[] = [];
  const part = (name: string, p: HealthPart | undefined) => {
    if (p && !p.ok) problems.push(`${name}: ${p.detail || 'down'}`);
  };
  part('database', h.database);
  part('broker', h.broker);
  part('workers', h.workers);
  const canRunJobs = h.status === 'ok' && problems.length === 0 && httpStatus !== 503;
  if (!canRunJobs && problems.length === 0) problems.push(`status ${h.status}`);
  return { canRunJobs, problems };
}

/** Seconds a progress must stand still before a running job is called stale (the worker heartbeat is 5 s). */
export const STALE_AFTER_S = 30;

/**
 * A queued or running job is stale when no worker can run it, or when its
 * progress (fraction, message, algorithm, plans) has not changed for
 * STALE_AFTER_S while it runs.
 */
export function jobStaleness(active: boolean, status: string, unchangedForS: number, canRunJobs: boolean): string | null {
  if (!active) return null;
  if (!canRunJobs) {
    return status === 'queued'
      ? 'No worker is alive: this job stays queued until one starts.'
      : `No worker is alive: this job's progress is stale (unchanged for ${Math.round(unchangedForS)} s). A lost job is queued again when a worker returns.`;
  }
  if (status === 'running' && unchangedForS >= STALE_AFTER_S) {
    return `This job's progress has not changed for ${Math.round(unchangedForS)} s: it may be stale (a long step, or a worker that stopped).`;
  }
  return null;
}

/** The pending algorithms of a job: those without a plan yet, in the job's order. */
export function pendingAlgorithms(algorithms: string[], plans: Array<{ algorithm: string }>): string[] {
  const done = new Set(plans.map((p) => p.algorithm));
  return algorithms.filter((a) => !done.has(a));
}
