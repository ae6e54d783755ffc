// The cluster page's dispatcher panel: what the live dispatcher is doing for the adopted plan.

import { useEffect, useState } from 'preact/hooks';
import { api } from '../api';
import { useAsync, useCopy } from '../hooks';
import { chainRows, drainingText, driftText, syncText } from '../lib/dispatch';
import { fmtNum, fmtSeconds } from '../lib/format';
import { ErrorBox, Loading, Notice, Stat } from '../components/ui';

const REFRESH_MS = 3000;

export function DispatcherPanel({ clusterId }: { clusterId: number }) {
  const data = useAsync(() => api.dispatcher(clusterId), [clusterId]);
  const [token, setToken] = useState<string | null>(null);
  const [tokenError, setTokenError] = useState<unknown>(null);
  const { copied, copy } = useCopy();
  useEffect(() => {
    const t = setInterval(() => data.reload(), REFRESH_MS);
    return () => clearInterval(t);
  }, [clusterId]);

  if (data.loading && !data.data) return <Loading label="Loading the dispatcher…" />;
  if (data.error && !data.data) return <ErrorBox error={data.error} title="Dispatcher" />;
  if (!data.data) return null;
  const d = data.data;
  const st = d.state;
  const rows = st ? chainRows(st, 10) : [];
  const draining = st ? drainingText(st) : '';
  const newToken = async () => {
    setTokenError(null);
    try {
      setToken((await api.dispatchToken(clusterId)).token);
      data.reload();
    } catch (e) {
      setTokenError(e);
    }
  };

  return (
    <section class="card" aria-labelledby="dispatcher-heading">
      <h2 id="dispatcher-heading">Live dispatcher</h2>
      <p class="muted">{syncText(d)}</p>
      {draining && <Notice kind="info">Plan switch: {draining}.</Notice>}
      {st && (
        <dl class="stats">
          <Stat label="Queue" value={fmtNum(st.queue_length)} hint="Requests waiting for a free chain" />
          <Stat label="Arrival rate" value={st.arrival_rate === null ? '—' : `${fmtNum(st.arrival_rate)}/s`}
                hint="Acquire calls per second over the last minute" />
          <Stat label="Mean wait" value={st.observations?.mean_wait_s == null ? '—' : fmtSeconds(st.observations.mean_wait_s)}
                hint="From acquire to grant, over all grants" />
          <Stat label="Grants" value={fmtNum(st.observations?.grants ?? 0)}
                hint={`${st.observations?.releases ?? 0} released, ${st.observations?.expiries ?? 0} expired, ${st.observations?.timeouts ?? 0} gave up waiting`} />
        </dl>
      )}
      {rows.length > 0 && (
        <table class="table" aria-label="Dispatcher chains">
          <thead>
            <tr><th>Chain</th><th>In progress / capacity</th><th>Predicted service</th><th>Measured</th><th>Drift</th><th>Completed</th></tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr key={r.chain}>
                <td>{r.chain}</td>
                <td>
                  <meter min={0} max={Math.max(1, r.capacity)} value={r.inProgress} aria-label={`chain ${r.chain} occupancy`} />{' '}
                  {r.inProgress} / {r.capacity}
                </td>
                <td>{r.predicted === null ? '—' : fmtSeconds(r.predicted)}</td>
                <td>{r.measured === null ? '—' : fmtSeconds(r.measured)}</td>
                <td title="Measured (acquire to release) vs the plan's prediction; shown from 10 completed requests">{driftText(r.drift)}</td>
                <td>{fmtNum(r.completed)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <p class="muted">
        Serving clients call <code>POST {d.endpoints.acquire}</code> before each request and{' '}
        <code>POST {d.endpoints.release}</code> after it (Python: <code>serving.dispatch.DispatchClient</code>).{' '}
        {d.tokens} dispatch token{d.tokens === 1 ? '' : 's'} issued.
      </p>
      <button type="button" class="btn" onClick={newToken}>New dispatch token</button>
      {token && (
        <Notice kind="ok">
          Dispatch token (shown once): <code>{token}</code>{' '}
          <button type="button" class="btn btn-small" onClick={() => copy(token)}>{copied ? 'Copied' : 'Copy'}</button>
        </Notice>
      )}
      <ErrorBox error={tokenError} title="Dispatch token" />
    </section>
  );
}
