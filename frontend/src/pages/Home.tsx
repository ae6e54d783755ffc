import { useState } from 'preact/hooks';
import { api } from '../api';
import { useAsync, useTitle } from '../hooks';
import { navigate } from '../router';
import { fmtDate, fmtSeconds } from '../lib/format';
import { ErrorBox, Link, Loading, PageHeader, StatusBadge } from '../components/ui';
import demo from '../../../examples/paper-j20.json';
import type { ScenarioDoc } from '../types';

// The demo: the paper's 20-server cluster serving BLOOM-176B (examples/paper-j20.json).
export const DEMO_SCENARIO = demo as unknown as ScenarioDoc;

/** "4 × 40 GB, 16 × 20 GB" */
export function memoryMix(doc: ScenarioDoc): string {
  const counts = new Map<number, number>();
  for (const s of doc.servers) counts.set(s.memory_gb, (counts.get(s.memory_gb) ?? 0) + 1);
  return [...counts.entries()].sort((a, b) => b[0] - a[0]).map(([m, n]) => `${n} × ${m} GB`).join(', ');
}

export function DemoOffer({ compact = false }: { compact?: boolean }) {
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const run = async (what: 'import' | 'plan') => {
    setBusy(what);
    setError(null);
    try {
      if (what === 'import') {
        const c = await api.importScenario(DEMO_SCENARIO);
        navigate(`/clusters/${c.id}`);
      } else {
        const job = await api.createJob({ scenario: DEMO_SCENARIO, options: { simulate_requests: 20000, seed: 1 } });
        navigate(`/jobs/${job.id}`);
      }
    } catch (e) {
      setError(e);
      setBusy(null);
    }
  };
  return (
    <div class={compact ? 'demo-offer compact' : 'demo-offer'}>
      <ErrorBox error={error} title="The demo could not be started" />
      <p>
        The demo scenario <strong>{DEMO_SCENARIO.name}</strong>: a {DEMO_SCENARIO.model.name} model
        ({DEMO_SCENARIO.model.num_blocks} blocks) served by {DEMO_SCENARIO.servers.length} GPU servers
        ({memoryMix(DEMO_SCENARIO)}) at {DEMO_SCENARIO.workload.arrival_rate} requests/s.
      </p>
      <div class="button-row">
        <button type="button" class="primary" disabled={busy !== null} onClick={() => run('plan')}>
          {busy === 'plan' ? 'Submitting…' : 'Plan the demo scenario'}
        </button>
        <button type="button" class="secondary" disabled={busy !== null} onClick={() => run('import')}>
          {busy === 'import' ? 'Importing…' : 'Import it as a cluster'}
        </button>
      </div>
    </div>
  );
}

export function HomePage() {
  useTitle('Start');
  const data = useAsync(() => Promise.all([api.clusters({ page_size: 5 }), api.jobs({ page_size: 8, ordering: '-created_at' })]), []);
  if (data.loading && !data.data) return <Loading />;
  if (data.error) return <ErrorBox error={data.error} />;
  const [clusters, jobs] = data.data!;
  const empty = clusters.count === 0 && jobs.count === 0;

  if (empty) {
    return (
      <section class="empty-state">
        <PageHeader title="Welcome to chainplan" />
        <p class="lead">
          chainplan places the blocks of a large model on your GPU servers, picks the server chains that serve
          requests and how many requests each chain may hold, and predicts the response time.
        </p>
        <div class="card">
          <h2>Try it with the demo scenario</h2>
          <DemoOffer />
        </div>
        <div class="card">
          <h2>Or start with your own servers</h2>
          <ol class="steps">
            <li><Link href="/models">Choose or describe the model</Link> (a preset or its architecture).</li>
            <li><Link href="/clusters/new">Describe your cluster</Link>: add servers, import a scenario JSON or a CSV.</li>
            <li><Link href="/jobs/new">Plan it</Link> for an arrival rate or a request trace, and compare the algorithms.</li>
          </ol>
        </div>
      </section>
    );
  }

  return (
    <section>
      <PageHeader title="Start">
        <Link class="button primary" href="/jobs/new">New plan</Link>
      </PageHeader>
      <div class="grid-2">
        <div class="card">
          <h2>Recent jobs</h2>
          {jobs.results.length === 0 ? <p class="muted">No jobs yet.</p> : (
            <table class="table">
              <thead><tr><th scope="col">Job</th><th scope="col">Status</th><th scope="col">Created</th><th scope="col">Best mean response</th></tr></thead>
              <tbody>
                {jobs.results.map((j) => {
                  const best = j.plans.filter((p) => p.feasible && p.mean_response_s !== null).sort((a, b) => a.mean_response_s! - b.mean_response_s!)[0];
                  return (
                    <tr key={j.id}>
                      <td><Link href={`/jobs/${j.id}`}>#{j.id} {j.scenario?.name ?? ''}</Link></td>
                      <td><StatusBadge status={j.status} /></td>
                      <td>{fmtDate(j.created_at)}</td>
                      <td>{best ? `${fmtSeconds(best.mean_response_s)} (${best.algorithm})` : '—'}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          )}
          <p><Link href="/jobs">All jobs →</Link></p>
        </div>
        <div class="card">
          <h2>Clusters</h2>
          {clusters.results.length === 0 ? <p class="muted">No clusters yet. <Link href="/clusters/new">Create one</Link>.</p> : (
            <ul class="plain-list">
              {clusters.results.map((c) => (
                <li key={c.id}>
                  <Link href={`/clusters/${c.id}`}>{c.name}</Link> <span class="muted">· {c.server_count} servers</span>{' '}
                  <Link class="button-small secondary" href={`/jobs/new?cluster=${c.id}`}>Plan</Link>
                </li>
              ))}
            </ul>
          )}
          <p><Link href="/clusters">All clusters →</Link></p>
          <h2>Demo</h2>
          <DemoOffer compact />
        </div>
      </div>
    </section>
  );
}
