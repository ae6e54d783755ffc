import { triggerLabel } from '../lib/replan';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../api';
import { useHealth, useTitle } from '../hooks';
import { jobStaleness, pendingAlgorithms } from '../lib/health';
import { fmtDate, fmtDuration, fmtNum, fmtPercent, fmtSeconds } from '../lib/format';
import { messageOf } from '../lib/errors';
import { ErrorBox, Link, Loading, PageHeader, Stat, StatusBadge } from '../components/ui';
import type { Job } from '../types';

const ACTIVE = new Set(['queued', 'running']);
const POLL_MS = 1000;

export function JobPage({ id }: { id: number }) {
  const [job, setJob] = useState<Job | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [cancelling, setCancelling] = useState(false);
  const health = useHealth();
  // when the job's progress last changed (seen by this page), for the staleness note
  const lastChange = useRef<{ key: string; at: number }>({ key: '', at: Date.now() });
  const [now, setNow] = useState(Date.now());
  useTitle(job ? `Job #${job.id} (${job.status})` : `Job #${id}`);

  // poll while the job is queued or running
  useEffect(() => {
    let alive = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ctrl = new AbortController();
    const tick = async () => {
      try {
        const j = await api.job(id, ctrl.signal);
        if (!alive) return;
        const key = JSON.stringify([j.status, j.progress, j.plans.length]);
        if (key !== lastChange.current.key) lastChange.current = { key, at: Date.now() };
        setNow(Date.now());
        setJob(j);
        setError(null);
        if (ACTIVE.has(j.status)) timer = setTimeout(tick, POLL_MS);
      } catch (e) {
        if (!alive || (e instanceof DOMException && e.name === 'AbortError')) return;
        setError(e);
        timer = setTimeout(tick, POLL_MS * 3);
      }
    };
    tick();
    return () => {
      alive = false;
      ctrl.abort();
      clearTimeout(timer);
    };
  }, [id, cancelling]);

  const cancel = async () => {
    setCancelling(true);
    try {
      setJob(await api.cancelJob(id));
    } catch (e) {
      setError(e);
    } finally {
      setCancelling(false);
    }
  };

  if (!job) return error ? <ErrorBox error={error} /> : <Loading />;
  const active = ACTIVE.has(job.status);
  const sc = job.scenario;
  const w = sc?.workload;
  const pending = pendingAlgorithms(job.algorithms, job.plans);
  const stale = jobStaleness(active, job.status, (now - lastChange.current.at) / 1000, health.canRunJobs);
  const plans = [...job.plans].sort((a, b) => Number(b.feasible) - Number(a.feasible) || (a.mean_response_s ?? Infinity) - (b.mean_response_s ?? Infinity));

  return (
    <section>
      <PageHeader
        title={<>Job #{job.id} <StatusBadge status={job.status} /></>}
        sub={<><Link href="/jobs">Jobs</Link> / #{job.id}{sc?.name ? ` · ${sc.name}` : ''}{job.cluster !== null && <> · <Link href={`/clusters/${job.cluster}`}>cluster</Link></>}</>}
      >
        {active && <button type="button" class="danger-button" onClick={cancel} disabled={cancelling}>{cancelling ? 'Cancelling…' : 'Cancel job'}</button>}
        {job.plans.length > 1 && <Link class="button primary" href={`/jobs/${job.id}/compare`}>Compare algorithms</Link>}
      </PageHeader>
      {error !== null && <p class="hint">Could not refresh: {messageOf(error)}</p>}

      <div class="card" aria-live="polite">
        {active ? (
          <>
            <label for="job-progress" class="progress-label">
              {job.status === 'queued' ? 'Waiting for a worker…' : `Running${job.progress?.algorithm ? `: ${job.progress.algorithm}` : ''}`} — {fmtPercent(job.progress?.fraction ?? 0)}
            </label>
            <progress id="job-progress" max={1} value={job.progress?.fraction ?? 0} data-testid="job-progress" />
            {job.progress?.message && <p class="muted">{job.progress.message}</p>}
            {stale && <p class="stale" role="status" data-testid="job-stale">{stale}</p>}
            {pending.length > 0 && (
              <div data-testid="pending-algorithms">
                <span class="muted">{job.plans.length} of {job.algorithms.length} algorithms finished; still to come:</span>
                <ul class="pending-list">
                  {pending.map((a) => (
                    <li key={a} class="chip">{a}{job.status === 'running' && job.progress?.algorithm === a ? ' (running)' : ''}</li>
                  ))}
                </ul>
              </div>
            )}
          </>
        ) : (
          <p data-testid="job-final">
            {job.status === 'succeeded' && <>Finished {fmtDate(job.finished_at)} after {fmtDuration(job.started_at, job.finished_at)}.</>}
            {job.status === 'failed' && <strong class="danger">The job failed: {job.error || job.reason || 'no reason given'}.</strong>}
            {job.status === 'cancelled' && <>The job was cancelled{job.reason ? `: ${job.reason}` : ''}.</>}
          </p>
        )}
        {job.trigger && (
          <p data-testid="job-trigger">
            Re-plan ({triggerLabel(job.trigger)}): {job.trigger_detail}
            {job.replan_outcome && <> — <strong>{job.replan_outcome.adopted ? 'adopted' : 'candidate'}</strong>: {job.replan_outcome.why}</>}
            {job.cluster !== null && <> · <Link href={`/clusters/${job.cluster}`}>cluster</Link></>}
          </p>
        )}
        <dl class="stats">
          <Stat label="Servers" value={sc ? sc.servers.length : '—'} />
          <Stat label="Model" value={sc?.model?.name ? `${sc.model.name} (${sc.model.num_blocks ?? '?'} blocks)` : '—'} />
          <Stat label="Arrival rate" value={w?.arrival_rate !== undefined ? `${fmtNum(w.arrival_rate)} /s` : w?.trace ? 'trace' : '—'} />
          {w?.trace && <Stat label="Trace" value={`${w.trace.length} requests`} />}
          <Stat label="Algorithms" value={job.algorithms.join(', ') || '—'} />
          <Stat label="Created" value={fmtDate(job.created_at)} />
          {job.worker && <Stat label="Worker" value={job.worker} />}
        </dl>
      </div>

      <h2>Plans{active && job.plans.length > 0 ? ' so far' : ''}</h2>
      {plans.length === 0 ? (
        <p class="muted">{active ? 'Plans appear here as each algorithm finishes.' : 'This job produced no plans.'}</p>
      ) : (
        <div class="table-wrap">
        <table class="table" data-testid="plans-table">
          <caption class="visually-hidden">Plans of job {job.id}, best first</caption>
          <thead>
            <tr>
              <th scope="col">Algorithm</th><th scope="col">Feasible</th><th scope="col" class="num">Mean response</th><th scope="col" class="num">p95 response</th>
              <th scope="col" class="num">Total capacity</th><th scope="col" class="num">Solve time</th><th scope="col"><span class="visually-hidden">Open</span></th>
            </tr>
          </thead>
          <tbody>
            {plans.map((p) => (
              <tr key={p.id}>
                <th scope="row">{p.algorithm}</th>
                <td>{p.feasible ? 'yes' : <span class="danger">no</span>}</td>
                <td class="num">{fmtSeconds(p.mean_response_s)}</td>
                <td class="num">{fmtSeconds(p.p95_response_s)}</td>
                <td class="num">{fmtNum(p.total_capacity)}</td>
                <td class="num">{fmtSeconds(p.solve_time_s)}</td>
                <td><Link href={`/plans/${p.id}`} aria-label={`Open the ${p.algorithm} plan`}>Open plan</Link></td>
              </tr>
            ))}
          </tbody>
        </table>
        </div>
      )}
    </section>
  );
}
