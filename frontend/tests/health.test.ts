import { describe, expect, it } from 'vitest';
import { healthView, jobStaleness, pendingAlgorithms, STALE_AFTER_S } from '../src/lib/health';

const ok = { ok: true, detail: 'fine' };

describe('healthView', () => {
  it('can run jobs only with database, broker and workers up', () => {
    expect(healthView({ status: 'ok', database: ok, broker: ok, workers: { ...ok, alive: 1 } }, 200)).toEqual({ canRunJobs: true, problems: [] });
    const down = healthView({ status: 'unavailable', database: ok, broker: ok, workers: { ok: false, alive: 0, detail: 'no worker answered' } }, 503);
    expect(down.canRunJobs).toBe(false);
    expect(down.problems).toEqual(['workers: no worker answered']);
  });
  it('treats a 503 without a body, and an unreachable server, as jobs not running', () => {
    expect(healthView(null, 503)).toEqual({ canRunJobs: false, problems: ['the health check answered 503'] });
    expect(healthView(null, null).canRunJobs).toBe(false);
    expect(healthView({ status: 'unavailable' }, 503).problems).toEqual(['status unavailable']);
  });
});

describe('jobStaleness', () => {
  it('says nothing of finished jobs or of fresh progress', () => {
    expect(jobStaleness(false, 'succeeded', 1000, false)).toBeNull();
    expect(jobStaleness(true, 'running', STALE_AFTER_S - 1, true)).toBeNull();
    expect(jobStaleness(true, 'queued', 1000, true)).toBeNull();
  });
  it('calls a job stale when no worker is alive, or its progress stood still', () => {
    expect(jobStaleness(true, 'queued', 0, false)).toMatch(/stays queued until one starts/);
    expect(jobStaleness(true, 'running', 12, false)).toMatch(/progress is stale \(unchanged for 12 s\)/);
    expect(jobStaleness(true, 'running', STALE_AFTER_S + 5, true)).toMatch(/has not changed for 35 s/);
  });
});

describe('pendingAlgorithms', () => {
  it('lists the algorithms without a plan, in the job order', () => {
    expect(pendingAlgorithms(['search', 'petals', 'bprr'], [{ algorithm: 'petals' }])).toEqual(['search', 'bprr']);
    expect(pendingAlgorithms(['search'], [{ algorithm: 'search' }])).toEqual([]);
  });
});
