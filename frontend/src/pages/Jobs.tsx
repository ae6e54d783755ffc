import { useState, useEffect } from 'preact/hooks';
import { api, listAll } from '../api';
import { useAsync, useTitle } from '../hooks';
import { navigate } from '../router';
import { buildQuery, intParam } from '../lib/query';
import { fmtDate, fmtPercent, fmtSeconds } from '../lib/format';
import { ErrorBox, Field, Link, Loading, PageHeader, Pagination, StatusBadge } from '../components/ui';
import type { Algorithm, Cluster, Job } from '../types';

const PAGE_SIZE = 20;
const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];

export function bestPlan(job: Job) {
  return job.plans.filter((p) => p.feasible && p.mean_response_s !== null).sort((a, b) => a.mean_response_s! - b.mean_response_s!)[0];
}

/** One filter of the list: "any", or one of `options` ([value, text]). */
function FilterSelect({ label, value, options, onChange }: {
  label: string;
  value: string;
  options: ReadonlyArray<readonly [string, string]>;
  onChange: (value: string) => void;
}) {
  return (
    <Field label={label}>
      {({ id }) => (
        <select id={id} value={value} onChange={(e) => onChange(e.currentTarget.value)}>
          <option value="">any</option>
          {options.map(([v, text]) => <option key={v} value={v}>{text}</option>)}
        </select>
      )}
    </Field>
  );
}

export function JobsPage({ query }: { query: Record<string, string> }) {
  useTitle('Jobs');
  const page = intParam(query.page, 1);
  const filters = { status: query.status ?? '', cluster: query.cluster ?? '', algorithm: query.algorithm ?? '' };
  const list = useAsync(
    () => api.jobs({ ...filters, page, page_size: PAGE_SIZE, ordering: '-created_at' }),
    [page, filters.status, filters.cluster, filters.algorithm],
  );
  const choices = useAsync(() => Promise.all([listAll<Cluster>(api.clusters), api.algorithms()]), []);
  const [draft, setDraft] = useState(filters);
  useEffect(() => setDraft(filters), [filters.status, filters.cluster, filters.algorithm]);

  // refresh while some listed job is still in progress
  const active = list.data?.results.some((j) => j.status === 'queued' || j.status === 'running');
  useEffect(() => {
    if (!active) return;
    const t = setTimeout(list.reload, 2000);
    return () => clearTimeout(t);
  }, [active, list.data]);

  const apply = (e: Event) => {
    e.preventDefault();
    navigate('/jobs' + buildQuery(draft));
  };
  const clusters = choices.data?.[0] ?? [];
  const algorithms: Algorithm[] = choices.data?.[1] ?? [];
  const clusterName = (id: number | null) => clusters.find((c) => c.id === id)?.name ?? (id === null ? '—' : `#${id}`);
  const filtered = Boolean(filters.status || filters.cluster || filters.algorithm);

  return (
    <section>
      <PageHeader title="Jobs" sub="Planning jobs, newest first.">
        <Link class="button primary" href="/jobs/new">New plan</Link>
      </PageHeader>
      <form class="filters card" onSubmit={apply} aria-label="Filter jobs">
        <FilterSelect label="Status" value={draft.status} options={STATUSES.map((s) => [s, s] as const)}
          onChange={(status) => setDraft({ ...draft, status })} />
        <FilterSelect label="Cluster" value={draft.cluster} options={clusters.map((c) => [String(c.id), c.name] as const)}
          onChange={(cluster) => setDraft({ ...draft, cluster })} />
        <FilterSelect label="Algorithm" value={draft.algorithm} options={algorithms.map((a) => [a.name, a.name] as const)}
          onChange={(algorithm) => setDraft({ ...draft, algorithm })} />
        <div class="filter-buttons">
          <button type="submit" class="secondary">Apply filters</button>
          {filtered && <Link href="/jobs" class="button-small link-like">Clear</Link>}
        </div>
      </form>
      <ErrorBox error={list.error} />
      {list.loading && !list.data && <Loading />}
      {list.data && list.data.count === 0 && (
        <div class="card empty">
          {filtered ? <p>No jobs match these filters.</p> : <p>No jobs yet. <Link href="/jobs/new">Plan a cluster</Link> to start one.</p>}
        </div>
      )}
      {list.data && list.data.count > 0 && (
        <>
          <table class="table" data-testid="jobs-table">
            <caption class="visually-hidden">Jobs{filtered ? ' (filtered)' : ''}</caption>
            <thead>
              <tr>
                <th scope="col">Job</th><th scope="col">Cluster</th><th scope="col">Status</th><th scope="col">Algorithms</th>
                <th scope="col">Created</th><th scope="col">Best mean response</th><th scope="col"><span class="visually-hidden">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {list.data.results.map((j) => {
                const best = bestPlan(j);
                return (
                  <tr key={j.id}>
                    <td><Link href={`/jobs/${j.id}`}>#{j.id}</Link> <span class="muted">{j.scenario?.name ?? ''}</span></td>
                    <td>{clusterName(j.cluster)}</td>
                    <td>
                      <StatusBadge status={j.status} />
                      {(j.status === 'running' || j.status === 'queued') && j.progress && <span class="muted"> {fmtPercent(j.progress.fraction)}</span>}
                    </td>
                    <td class="clip">{j.algorithms.join(', ')}</td>
                    <td>{fmtDate(j.created_at)}</td>
                    <td>{best ? <Link href={`/plans/${best.id}`}>{fmtSeconds(best.mean_response_s)} ({best.algorithm})</Link> : '—'}</td>
                    <td>{j.plans.length > 1 && <Link class="button-small secondary" href={`/jobs/${j.id}/compare`} aria-label={`Compare the plans of job ${j.id}`}>Compare</Link>}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          <Pagination page={page} count={list.data.count} pageSize={PAGE_SIZE} base="/jobs" query={filters} />
        </>
      )}
    </section>
  );
}
