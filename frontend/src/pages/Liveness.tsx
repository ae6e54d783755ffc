// The cluster page's liveness panel: each server's state (polled), the chains masked now, drain buttons, and the
// timeline of failures, masks, re-plans, adoptions and returns (docs/liveness.md).

import { useEffect, useState } from 'preact/hooks';
import { api } from '../api';
import { useAsync } from '../hooks';
import { drainText, memoryText, summaryText, timeline } from '../lib/liveness';
import { fmtAge, fmtDate } from '../lib/format';
import { ErrorBox, Loading, Pager } from '../components/ui';

const REFRESH_MS = 2000;
const PAGE_SIZE = 20;

export function LivenessPanel({ clusterId }: { clusterId: number }) {
  const servers = useAsync(() => api.livenessServers(clusterId), [clusterId]);
  const [page, setPage] = useState(0);     // 0-based, as Pager counts
  const history = useAsync(() => api.livenessHistory(clusterId, { page: page + 1, page_size: PAGE_SIZE }),
    [clusterId, page]);
  const [actionError, setActionError] = useState<unknown>(null);
  const [busy, setBusy] = useState<string | null>(null);
  useEffect(() => {
    const t = setInterval(() => { servers.reload(); history.reload(); }, REFRESH_MS);
    return () => clearInterval(t);
  }, [clusterId, page]);

  if (servers.loading && !servers.data) return <Loading label="Loading server liveness…" />;
  if (servers.error && !servers.data) return <ErrorBox error={servers.error} title="Server liveness" />;
  if (!servers.data) return null;
  const d = servers.data;
  const drain = async (server: string, end: boolean) => {
    setActionError(null);
    setBusy(server);
    try {
      await (end ? api.drainEnd(clusterId, server) : api.drain(clusterId, server));
      servers.reload();
      history.reload();
    } catch (e) {
      setActionError(e);
    } finally {
      setBusy(null);
    }
  };
  const items = history.data ? timeline(history.data.results) : [];
  const pages = history.data ? Math.max(1, Math.ceil(history.data.count / PAGE_SIZE)) : 1;

  return (
    <section class="card" aria-labelledby="liveness-heading" data-testid="liveness-panel">
      <h2 id="liveness-heading">Server liveness</h2>
      <p class="muted" data-testid="liveness-summary">{summaryText(d)}</p>
      <div class="table-wrap">
        <table class="table" aria-label="Server states">
          <thead>
            <tr><th>Server</th><th>State</th><th>Since</th><th>Last heartbeat</th><th>Memory</th><th>In plan</th><th /></tr>
          </thead>
          <tbody>
            {d.servers.map((s) => {
              const draining = s.state === 'draining' || s.drain !== null;
              return (
                <tr key={s.server} data-testid="liveness-server-row" data-server={s.server} data-state={s.state}>
                  <td><code>{s.server}</code></td>
                  <td>
                    <span class={`badge badge-server-${s.state}`} title={s.cause || undefined}>{s.state}</span>
                    {drainText(s) && <div class="muted">{drainText(s)}</div>}
                  </td>
                  <td title={s.cause || undefined}>{s.reported ? fmtAge(s.since) : 'never reported'}</td>
                  <td>{s.last_heartbeat_at ? fmtAge(s.last_heartbeat_at) : '—'}</td>
                  <td>{memoryText(s)}</td>
                  <td>{s.in_plan ? 'yes' : 'no'}</td>
                  <td>
                    {s.drain?.requested_at
                      ? <button type="button" class="secondary button-small" disabled={busy === s.server}
                                aria-label={`End the drain of ${s.server}`} onClick={() => drain(s.server, true)}>End drain</button>
                      : !draining && <button type="button" class="secondary button-small" disabled={busy === s.server}
                                aria-label={`Drain ${s.server}`} title="No new requests through it; once none is in flight it leaves the plan"
                                onClick={() => drain(s.server, false)}>Drain</button>}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      {d.masked_chains.length > 0 && (
        <p data-testid="liveness-masked">
          Masked chains of plan #{d.adopted_plan}:{' '}
          {d.masked_chains.map((m) => <span key={m.chain} class="badge badge-masked">chain {m.chain} ({m.servers.join(', ')})</span>)}
        </p>
      )}
      <ErrorBox error={actionError} title="Drain" />
      <h3>Timeline</h3>
      <ErrorBox error={history.error} title="Liveness history" />
      {items.length === 0
        ? <p class="muted">No failure, drain or return recorded yet.</p>
        : (
          <ol class="timeline" aria-label="Liveness timeline" data-testid="liveness-timeline">
            {items.map((it) => (
              <li key={it.key} class={`timeline-${it.kind}`} data-kind={it.kind}>
                <time dateTime={it.at} title={fmtDate(it.at)}>{fmtAge(it.at)}</time>{' '}
                <span class={`badge badge-timeline-${it.kind}`}>{it.kind}</span> {it.text}
              </li>
            ))}
          </ol>
        )}
      <Pager page={page} pages={pages} total={history.data?.count ?? 0} size={PAGE_SIZE} onPage={setPage}
             label="Liveness history pages" />
    </section>
  );
}
