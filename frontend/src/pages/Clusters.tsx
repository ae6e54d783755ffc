import { useRef, useState } from 'preact/hooks';
import { api } from '../api';
import { useAsync, useTitle } from '../hooks';
import { navigate } from '../router';
import { fmtDate } from '../lib/format';
import { intParam } from '../lib/query';
import { checkScenarioShape } from '../lib/servers';
import { ApiError } from '../lib/errors';
import { ErrorBox, Link, Loading, PageHeader, Pagination } from '../components/ui';
import { DemoOffer } from './Home';

const PAGE_SIZE = 20;

/** A file input that imports a scenario JSON as a new cluster (and its model). */
export function ImportScenarioButton({ label = 'Import scenario JSON' }: { label?: string }) {
  const input = useRef<HTMLInputElement>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const onFile = async (e: Event) => {
    const file = (e.currentTarget as HTMLInputElement).files?.[0];
    if (!file) return;
    setError(null);
    setBusy(true);
    try {
      let doc: unknown;
      try {
        doc = JSON.parse(await file.text());
      } catch (err) {
        throw new ApiError(400, `${file.name} is not valid JSON: ${(err as Error).message}`);
      }
      const problems = checkScenarioShape(doc);
      if (problems.length) throw new ApiError(400, `${file.name}: ${problems.join('; ')}`);
      const cluster = await api.importScenario(doc as never);
      navigate(`/clusters/${cluster.id}`);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
      if (input.current) input.current.value = '';
    }
  };
  return (
    <span class="import-button">
      <label class="button secondary" aria-disabled={busy}>
        {busy ? 'Importing…' : label}
        <input ref={input} type="file" accept=".json,application/json" class="visually-hidden" onChange={onFile} data-testid="import-scenario" />
      </label>
      {error !== null && (
        <span class="import-error">
          <ErrorBox error={error} />
          {error instanceof ApiError && error.fields.length > 0 && (
            <ul class="field-list">{error.fields.slice(0, 10).map((f) => <li key={f.field + f.message}><code>{f.field}</code>: {f.message}</li>)}</ul>
          )}
        </span>
      )}
    </span>
  );
}

export function ClustersPage({ query }: { query: Record<string, string> }) {
  useTitle('Clusters');
  const page = intParam(query.page, 1);
  const list = useAsync(() => api.clusters({ page, page_size: PAGE_SIZE, ordering: '-updated_at' }), [page]);
  return (
    <section>
      <PageHeader title="Clusters" sub="Your GPU servers: memory, speed and network distance.">
        <ImportScenarioButton />
        <Link class="button primary" href="/clusters/new">New cluster</Link>
      </PageHeader>
      {list.loading && !list.data && <Loading />}
      <ErrorBox error={list.error} />
      {list.data && list.data.count === 0 && (
        <div class="card empty">
          <h2>No clusters yet</h2>
          <p>Create one from scratch, import a scenario JSON, or start from the demo.</p>
          <DemoOffer />
        </div>
      )}
      {list.data && list.data.count > 0 && (
        <>
          <table class="table" data-testid="clusters-table">
            <caption class="visually-hidden">Your clusters</caption>
            <thead>
              <tr><th scope="col">Name</th><th scope="col" class="num">Servers</th><th scope="col">Description</th><th scope="col">Updated</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr>
            </thead>
            <tbody>
              {list.data.results.map((c) => (
                <tr key={c.id}>
                  <td><Link href={`/clusters/${c.id}`}>{c.name}</Link></td>
                  <td class="num">{c.server_count}</td>
                  <td class="muted clip">{c.description}</td>
                  <td>{fmtDate(c.updated_at)}</td>
                  <td class="actions-cell"><Link class="button-small secondary" href={`/jobs/new?cluster=${c.id}`} aria-label={`Plan ${c.name}`}>Plan</Link></td>
                </tr>
              ))}
            </tbody>
          </table>
          <Pagination page={page} count={list.data.count} pageSize={PAGE_SIZE} base="/clusters" query={{}} />
        </>
      )}
    </section>
  );
}
