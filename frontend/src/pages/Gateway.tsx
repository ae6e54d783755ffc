// The cluster page's gateway panel: the OpenAI base URL, the model name, and the cluster's keys.

import { useState } from 'preact/hooks';
import { api } from '../api';
import { useAsync, useCopy } from '../hooks';
import { baseUrl, curlExample, keyLabel, readinessText, sortKeys, type GatewayKeyCreated } from '../lib/gateway';
import { fmtDate } from '../lib/format';
import { ErrorBox, Loading, Notice, Pager, Stat } from '../components/ui';

const PAGE_SIZE = 10;

export function GatewayPanel({ clusterId }: { clusterId: number }) {
  const panel = useAsync(() => api.gateway(clusterId), [clusterId]);
  const [page, setPage] = useState(0);      // 0-based, as Pager counts
  const keys = useAsync(() => api.gatewayKeys(clusterId, { page: page + 1, page_size: PAGE_SIZE }), [clusterId, page]);
  const [created, setCreated] = useState<GatewayKeyCreated | null>(null);
  const [actionError, setActionError] = useState<unknown>(null);
  const { copied, copy } = useCopy();

  if (panel.loading && !panel.data) return <Loading label="Loading the gateway…" />;
  if (panel.error && !panel.data) return <ErrorBox error={panel.error} title="Gateway" />;
  if (!panel.data) return null;
  const d = panel.data;
  const url = baseUrl(window.location.origin, d.base_path);
  const model = d.models[0] ?? null;
  const notReady = readinessText(d);
  const act = async (fn: () => Promise<unknown>) => {
    setActionError(null);
    try {
      await fn();
      panel.reload();
      keys.reload();
    } catch (e) {
      setActionError(e);
    }
  };
  const newKey = () => act(async () => {
    setCreated(await api.gatewayKeyCreate(clusterId));
    setPage(0);
  });
  const revoke = (id: number) => act(async () => {
    await api.gatewayKeyRevoke(clusterId, id);
    if (created?.id === id) setCreated(null);
  });
  const rows = keys.data ? sortKeys(keys.data.results) : [];
  const pages = keys.data ? Math.max(1, Math.ceil(keys.data.count / PAGE_SIZE)) : 1;

  return (
    <section class="card" aria-labelledby="gateway-heading" data-testid="gateway-panel">
      <h2 id="gateway-heading">OpenAI gateway</h2>
      <dl class="stats">
        <Stat label="Base URL" value={<code data-testid="gateway-base-url">{url}</code>}
              hint="The OpenAI base URL: the gateway answers on this service's own origin" />
        <Stat label="Model" value={<code data-testid="gateway-model">{d.models.length ? d.models.join(', ') : '—'}</code>}
              hint="The model field of each request" />
        <Stat label="Keys" value={`${d.keys} active`} />
      </dl>
      {notReady && <Notice kind="warn">{notReady}</Notice>}
      <p class="muted">
        Any OpenAI client works with this base URL and a key of this cluster (<code>Authorization: Bearer &lt;key&gt;</code>);
        each request runs on the chain the dispatcher grants. A revoked key is refused from its next request on.
      </p>
      <button type="button" class="btn" onClick={newKey}>New gateway key</button>
      {created && (
        <Notice kind="ok">
          <span data-testid="gateway-new-key">Gateway key (shown once, copy it now): <code>{created.key}</code></span>{' '}
          <button type="button" class="btn btn-small" onClick={() => copy(created.key)}>{copied ? 'Copied' : 'Copy'}</button>
          {model && <pre class="muted"><code>{curlExample(url, model, created.key)}</code></pre>}
        </Notice>
      )}
      <ErrorBox error={actionError} title="Gateway key" />
      <ErrorBox error={keys.error} title="Gateway keys" />
      {rows.length > 0 && (
        <table class="table" aria-label="Gateway keys">
          <thead><tr><th>Key</th><th>Created</th><th>By</th><th>Status</th><th /></tr></thead>
          <tbody>
            {rows.map((k) => (
              <tr key={k.id} data-testid="gateway-key-row">
                <td><code>{keyLabel(k)}</code></td>
                <td>{fmtDate(k.created_at)}</td>
                <td>{k.created_by ?? '—'}</td>
                <td>{k.active ? 'active' : `revoked ${fmtDate(k.revoked_at)}`}</td>
                <td>
                  {k.active && (
                    <button type="button" class="btn btn-small secondary" aria-label={`Revoke key ${keyLabel(k)}`}
                            onClick={() => revoke(k.id)}>Revoke</button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {keys.data && (
        <Pager page={page} pages={pages} total={keys.data.count} size={PAGE_SIZE} onPage={setPage} label="Gateway key pages" />
      )}
    </section>
  );
}
