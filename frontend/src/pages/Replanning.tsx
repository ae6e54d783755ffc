// Re-planning views: the cluster page's panel (adopted plan, candidates, history,
// settings, schedules, observed load), the plan diff page and the apply page.

import { useState } from 'preact/hooks';
import { api } from '../api';
import { useAsync, useCopy, useTitle } from '../hooks';
import { ApiError, fieldMap } from '../lib/errors';
import { downloadText, safeFileName } from '../lib/download';
import { fmtDate, fmtNum, fmtPercent, fmtSeconds } from '../lib/format';
import {
  adoptedByLabel, changeText, CRON_HINT, diffSummary, draftOf, groupCandidates, rangeText, scheduleBody, spansLabel,
  type ScheduleDraft,
} from '../lib/replan';
import { ErrorBox, Field, Link, Loading, Notice, PageHeader, parseNumberInput, Stat, TableCard } from '../components/ui';
import type { Cluster, ReplanSettings, Schedule } from '../types';

// ---------------------------------------------------------------------------
// cluster page panel
// ---------------------------------------------------------------------------

export function ReplanPanel({ clusterId }: { clusterId: number }) {
  const data = useAsync(async () => {
    const [cluster, adopted, adoptions, candidates, schedules] = await Promise.all([
      api.cluster(clusterId), api.adoptedPlan(clusterId), api.adoptions(clusterId, { page_size: 10 }),
      api.candidates(clusterId, { page_size: 10 }), api.schedules(clusterId),
    ]);
    return { cluster, adopted, adoptions, candidates, schedules };
  }, [clusterId]);
  const [notice, setNotice] = useState<string | null>(null);
  const [actionError, setActionError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  if (data.loading && !data.data) return <Loading label="Loading re-planning…" />;
  if (data.error) return <ErrorBox error={data.error} title="Re-planning" />;
  if (!data.data) return null;
  const { cluster, adopted, adoptions, candidates, schedules } = data.data;
  const plan = adopted.plan;

  const act = async (what: () => Promise<string>) => {
    setBusy(true);
    setActionError(null);
    setNotice(null);
    try {
      setNotice(await what());
      data.reload();
    } catch (e) {
      setActionError(e);
    } finally {
      setBusy(false);
    }
  };
  const adopt = (id: number) => act(async () => {
    await api.adopt(id);
    return `Plan #${id} is now the adopted plan.`;
  });
  const replan = () => act(async () => {
    const job = await api.replan(clusterId);
    return `Re-plan queued as job #${job.id}; it is adopted by itself only if it clears the minimum gain.`;
  });

  return (
    <section class="replanning" aria-labelledby="replan-title" data-testid="replanning">
      <h2 id="replan-title">Re-planning</h2>
      {notice && <Notice kind="ok">{notice}</Notice>}
      <ErrorBox error={actionError} />

      <div class="card" data-testid="adopted-plan">
        <h3>Adopted plan</h3>
        {plan ? (
          <>
            <dl class="stats">
              <Stat label="Plan" value={<Link href={`/plans/${plan.id}`}>#{plan.id} {plan.algorithm}</Link>} />
              <Stat label="Mean response" value={fmtSeconds(plan.mean_response_s)} />
              <Stat label="p95" value={fmtSeconds(plan.p95_response_s)} />
              <Stat label="Capacity" value={fmtNum(plan.total_capacity)} />
              {adopted.adoption && <Stat label="Adopted by" value={adoptedByLabel(adopted.adoption)} />}
              {adopted.adoption && <Stat label="Since" value={fmtDate(adopted.adoption.created_at)} />}
            </dl>
            <div class="button-row">
              <Link class="button primary" href={`/clusters/${clusterId}/apply`}>Apply: launch commands</Link>
              {adopted.adoption?.previous_plan && (
                <Link class="button secondary" href={`/plans/${plan.id}/diff/${adopted.adoption.previous_plan}`}>What changed</Link>
              )}
              <button type="button" class="secondary" disabled={busy} onClick={replan}>Re-plan now</button>
            </div>
          </>
        ) : (
          <>
            <p class="muted">No plan is adopted yet. Adopt a candidate below, or re-plan: the first re-plan is adopted by itself.</p>
            <button type="button" class="secondary" disabled={busy} onClick={replan}>Re-plan now</button>
          </>
        )}
      </div>

      <div class="card">
        <h3>Candidates</h3>
        {candidates.results.length > 0 && (
          <p class="muted">Grouped by the load each was planned for: a plan's figures compare only with plans made for the same load.</p>
        )}
        {candidates.results.length === 0 ? <p class="muted">No other feasible plans of this cluster.</p> : (
          groupCandidates(candidates.results).map((g) => (
            <div key={g.key} class="candidate-group" data-testid="candidate-group">
              <h4>{g.label}</h4>
              <div class="table-wrap">
                <table class="table compact" data-testid="candidates-table">
                  <thead>
                    <tr>
                      <th scope="col">Plan</th><th scope="col">Job</th><th scope="col">Created</th>
                      <th scope="col" class="num">Mean</th><th scope="col" class="num">p95</th><th scope="col">Actions</th>
                    </tr>
                  </thead>
                  <tbody>
                    {g.candidates.map((p) => (
                      <tr key={p.id}>
                        <th scope="row"><Link href={`/plans/${p.id}`}>#{p.id} {p.algorithm}</Link></th>
                        <td><Link href={`/jobs/${p.job}`}>#{p.job}</Link></td>
                        <td>{fmtDate(p.created_at)}</td>
                        <td class="num">{fmtSeconds(p.mean_response_s)}</td>
                        <td class="num">{fmtSeconds(p.p95_response_s)}</td>
                        <td>
                          {plan && <Link href={`/plans/${p.id}/diff/${plan.id}`}>Diff</Link>}{plan && ' · '}
                          <button type="button" class="button-small primary" disabled={busy} onClick={() => adopt(p.id)}
                            aria-label={`Adopt plan ${p.id}`}>Adopt</button>
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            </div>
          ))
        )}
      </div>

      <TableCard title="Adoption history" heading="h3" empty="Nothing adopted yet." testid="adoptions-table"
        head={
          <tr>
            <th scope="col">When</th><th scope="col">Plan</th><th scope="col">By</th><th scope="col">Why</th>
            <th scope="col" class="num">Gain</th><th scope="col">Webhook</th>
          </tr>
        }
        rows={adoptions.results.map((a) => (
          <tr key={a.id}>
            <td>{fmtDate(a.created_at)}</td>
            <th scope="row">
              {a.plan ? <Link href={`/plans/${a.plan}`}>#{a.plan}</Link> : 'deleted'}
              {a.plan && a.previous_plan && <> · <Link href={`/plans/${a.plan}/diff/${a.previous_plan}`}>diff</Link></>}
            </th>
            <td>{adoptedByLabel(a)}</td>
            <td>{a.detail}</td>
            <td class="num">{a.gain === null ? '—' : fmtPercent(a.gain, 1)}</td>
            <td>{a.webhook_at ? (a.webhook_error ? <span class="danger">{a.webhook_error}</span> : `HTTP ${a.webhook_status}`) : '—'}</td>
          </tr>
        ))} />

      <div class="grid-2">
        <SettingsForm cluster={cluster} onSaved={(c) => { setNotice(`Re-planning settings of ${c.name} saved.`); data.reload(); }} />
        <ObservedLoadForm cluster={cluster} onDone={(msg) => { setNotice(msg); data.reload(); }} />
      </div>
      <SchedulesCard clusterId={clusterId} schedules={schedules} onChange={(msg) => { setNotice(msg); data.reload(); }} />
    </section>
  );
}

const PERCENT_FIELDS: Array<[keyof ReplanSettings, string, string]> = [
  ['replan_min_gain', 'Minimum gain (%)', 'A re-plan is adopted by itself only if it saves this share of the lower bound on mean response time (the bound the re-plan minimises; old and new plan judged on the current cluster and load).'],
  ['replan_calibration_threshold', 'Calibration change (%)', 'A new probe calibration re-plans when a figure changes by more.'],
  ['replan_load_threshold', 'Load drift (%)', 'An observed arrival rate re-plans when it drifts by more from the planned one.'],
];

function SettingsForm({ cluster, onSaved }: { cluster: Cluster; onSaved: (c: Cluster) => void }) {
  const pct = (v: number | undefined) => (v === undefined ? '' : String(+(v * 100).toPrecision(6)));
  const [delta, setDelta] = useState(String(cluster.replan_delta ?? ''));
  const [percents, setPercents] = useState<Record<string, string>>(
    Object.fromEntries(PERCENT_FIELDS.map(([k]) => [k, pct(cluster[k] as number | undefined)])));
  const [onServers, setOnServers] = useState(cluster.replan_on_server_change ?? true);
  const [webhook, setWebhook] = useState(cluster.replan_webhook_url ?? '');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const fields = fieldMap(error instanceof ApiError ? error : null);

  const save = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    const body: Partial<ReplanSettings> = { replan_on_server_change: onServers, replan_webhook_url: webhook.trim() };
    const d = parseNumberInput(delta);
    if (d !== null) body.replan_delta = d;
    for (const [k] of PERCENT_FIELDS) {
      const v = parseNumberInput(percents[k]);
      if (v !== null) (body as Record<string, unknown>)[k] = v / 100;
    }
    try {
      onSaved(await api.updateReplanSettings(cluster.id, body));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="card" onSubmit={save} aria-labelledby="replan-settings-title" noValidate>
      <h3 id="replan-settings-title">Settings</h3>
      {error !== null && !(error instanceof ApiError && error.fields.length) && <ErrorBox error={error} />}
      <Field label="Switching weight δ (s per unit)" hint="Seconds of predicted response time that one block to load or one changed server is worth." error={fields.replan_delta}>
        {({ id, describedBy, invalid }) => (
          <input id={id} type="number" step="any" min="0" value={delta} aria-describedby={describedBy} aria-invalid={invalid}
            onInput={(e) => setDelta((e.target as HTMLInputElement).value)} />
        )}
      </Field>
      {PERCENT_FIELDS.map(([k, label, hint]) => (
        <Field key={k} label={label} hint={hint} error={fields[k]}>
          {({ id, describedBy, invalid }) => (
            <input id={id} type="number" step="any" min="0" value={percents[k]} aria-describedby={describedBy} aria-invalid={invalid}
              onInput={(e) => setPercents({ ...percents, [k]: (e.target as HTMLInputElement).value })} />
          )}
        </Field>
      ))}
      <label class="checkbox">
        <input type="checkbox" checked={onServers} onChange={(e) => setOnServers((e.target as HTMLInputElement).checked)} />
        {' '}Re-plan when servers are added or removed
      </label>
      <Field label="Webhook URL" hint="Called with the diff (POST, JSON) whenever a plan is adopted. Leave empty for none." error={fields.replan_webhook_url}>
        {({ id, describedBy, invalid }) => (
          <input id={id} type="url" value={webhook} placeholder="https://ops.example.org/hook" aria-describedby={describedBy}
            aria-invalid={invalid} onInput={(e) => setWebhook((e.target as HTMLInputElement).value)} />
        )}
      </Field>
      <button type="submit" class="primary" disabled={busy}>{busy ? 'Saving…' : 'Save settings'}</button>
    </form>
  );
}

function ObservedLoadForm({ cluster, onDone }: { cluster: Cluster; onDone: (msg: string) => void }) {
  const [rate, setRate] = useState('');
  const [windowS, setWindowS] = useState('');
  const [error, setError] = useState<unknown>(null);
  const fields = fieldMap(error instanceof ApiError ? error : null);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    const r = parseNumberInput(rate);
    if (r === null || !Number.isFinite(r) || r <= 0) {
      setError(new ApiError(400, 'Enter the observed arrival rate.', [{ field: 'arrival_rate', message: 'must be a number > 0' }]));
      return;
    }
    try {
      const res = await api.observedLoad(cluster.id, r, parseNumberInput(windowS));
      const drift = res.drift === null ? 'no planned rate to compare with' : `drift ${fmtPercent(res.drift)} (threshold ${fmtPercent(res.threshold)})`;
      onDone(`Observed ${fmtNum(res.observed_arrival_rate)} req/s: ${drift}` + (res.replan_job ? `; re-plan job #${res.replan_job} queued.` : '; no re-plan.'));
      setRate('');
    } catch (err) {
      setError(err);
    }
  };
  return (
    <form class="card" onSubmit={submit} aria-labelledby="observed-title" noValidate>
      <h3 id="observed-title">Observed load</h3>
      <p class="muted">
        {cluster.observed_arrival_rate ? <>Last observed {fmtNum(cluster.observed_arrival_rate)} req/s ({fmtDate(cluster.observed_at)}).</> : 'No load observed yet.'}
        {' '}A serving front end can post it to <code>/api/v1/clusters/{cluster.id}/observed-load/</code>.
      </p>
      {error !== null && !(error instanceof ApiError && error.fields.length) && <ErrorBox error={error} />}
      <div class="inline-form">
        <Field label="Arrival rate (req/s)" error={fields.arrival_rate}>
          {({ id, describedBy, invalid }) => (
            <input id={id} type="number" step="any" min="0" value={rate} aria-describedby={describedBy} aria-invalid={invalid}
              onInput={(e) => setRate((e.target as HTMLInputElement).value)} />
          )}
        </Field>
        <Field label="Window (s)" error={fields.window_s}>
          {({ id, describedBy, invalid }) => (
            <input id={id} type="number" step="any" min="0" value={windowS} aria-describedby={describedBy} aria-invalid={invalid}
              onInput={(e) => setWindowS((e.target as HTMLInputElement).value)} />
          )}
        </Field>
        <button type="submit" class="secondary">Report load</button>
      </div>
    </form>
  );
}

function SchedulesCard({ clusterId, schedules, onChange }: { clusterId: number; schedules: Schedule[]; onChange: (msg: string) => void }) {
  const [editing, setEditing] = useState<number | 'new' | null>(null);
  const [error, setError] = useState<unknown>(null);
  const remove = async (s: Schedule) => {
    if (!confirm(`Delete the schedule “${s.description}”?`)) return;
    try {
      await api.deleteSchedule(clusterId, s.id);
      onChange(`Schedule “${s.description}” deleted.`);
    } catch (e) {
      setError(e);
    }
  };
  return (
    <div class="card" data-testid="schedules">
      <h3>Schedules</h3>
      <ErrorBox error={error} />
      {schedules.length === 0 && editing !== 'new' && <p class="muted">No schedules: re-plans run on triggers or on request only.</p>}
      {schedules.length > 0 && (
        <ul class="schedule-list">
          {schedules.map((s) => (
            <li key={s.id}>
              {editing === s.id ? (
                <ScheduleForm clusterId={clusterId} schedule={s} onDone={(msg) => { setEditing(null); if (msg) onChange(msg); }} />
              ) : (
                <>
                  <strong>{s.description}</strong>{!s.enabled && <span class="badge"> paused</span>}
                  <span class="muted"> · ran {s.total_run_count} time{s.total_run_count === 1 ? '' : 's'}{s.last_run_at ? `, last ${fmtDate(s.last_run_at)}` : ''}</span>
                  {' '}<button type="button" class="button-small secondary" onClick={() => setEditing(s.id)}>Edit</button>
                  {' '}<button type="button" class="button-small secondary" onClick={() => remove(s)}>Delete</button>
                </>
              )}
            </li>
          ))}
        </ul>
      )}
      {editing === 'new' ? (
        <ScheduleForm clusterId={clusterId} schedule={null} onDone={(msg) => { setEditing(null); if (msg) onChange(msg); }} />
      ) : (
        <button type="button" class="secondary" onClick={() => setEditing('new')}>Add schedule</button>
      )}
    </div>
  );
}

function ScheduleForm({ clusterId, schedule, onDone }: { clusterId: number; schedule: Schedule | null; onDone: (msg: string | null) => void }) {
  const [draft, setDraft] = useState<ScheduleDraft>(draftOf(schedule));
  const [error, setError] = useState<unknown>(null);
  const [local, setLocal] = useState<Record<string, string>>({});
  const fields = { ...fieldMap(error instanceof ApiError ? error : null), ...Object.fromEntries(Object.entries(local).map(([k, v]) => [k, [v]])) };
  const set = (patch: Partial<ScheduleDraft>) => setDraft({ ...draft, ...patch });
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setLocal({});
    const built = scheduleBody(draft);
    if ('field' in built) {
      setLocal({ [built.field]: built.message });
      return;
    }
    try {
      const saved = schedule ? await api.updateSchedule(clusterId, schedule.id, built.body) : await api.createSchedule(clusterId, built.body);
      onDone(`Schedule “${saved.description}” saved.`);
    } catch (err) {
      setError(err);
    }
  };
  return (
    <form class="inline-form schedule-form" onSubmit={submit} noValidate aria-label={schedule ? 'Edit schedule' : 'New schedule'}>
      {error !== null && !(error instanceof ApiError && error.fields.length) && <ErrorBox error={error} />}
      <Field label="Kind">
        {({ id }) => (
          <select id={id} value={draft.kind} onChange={(e) => set({ kind: (e.target as HTMLSelectElement).value as ScheduleDraft['kind'] })}>
            <option value="interval">Every …</option>
            <option value="cron">Cron line</option>
          </select>
        )}
      </Field>
      {draft.kind === 'interval' ? (
        <>
          <Field label="Every" error={fields.every}>
            {({ id, describedBy, invalid }) => (
              <input id={id} type="number" min="1" step="1" value={draft.every} aria-describedby={describedBy} aria-invalid={invalid}
                onInput={(e) => set({ every: (e.target as HTMLInputElement).value })} />
            )}
          </Field>
          <Field label="Unit">
            {({ id }) => (
              <select id={id} value={draft.period} onChange={(e) => set({ period: (e.target as HTMLSelectElement).value as ScheduleDraft['period'] })}>
                {['minutes', 'hours', 'days', 'seconds'].map((p) => <option key={p} value={p}>{p}</option>)}
              </select>
            )}
          </Field>
        </>
      ) : (
        <Field label="Cron (UTC)" hint={CRON_HINT} error={fields.cron}>
          {({ id, describedBy, invalid }) => (
            <input id={id} value={draft.cron} aria-describedby={describedBy} aria-invalid={invalid}
              onInput={(e) => set({ cron: (e.target as HTMLInputElement).value })} />
          )}
        </Field>
      )}
      <label class="checkbox">
        <input type="checkbox" checked={draft.enabled} onChange={(e) => set({ enabled: (e.target as HTMLInputElement).checked })} /> Enabled
      </label>
      <button type="submit" class="primary">Save schedule</button>
      <button type="button" class="secondary" onClick={() => onDone(null)}>Cancel</button>
    </form>
  );
}

// ---------------------------------------------------------------------------
// plan diff page: /plans/<new>/diff/<old>
// ---------------------------------------------------------------------------

const PREDICTED: Array<[string, string]> = [
  ['simulated_mean_response_s', 'Simulated mean'],
  ['simulated_p95_response_s', 'Simulated p95'],
  ['mean_response_lower_s', 'Mean, lower bound'],
  ['mean_response_upper_s', 'Mean, upper bound'],
];

export function PlanDiffPage({ id, old }: { id: number; old: number | null }) {
  useTitle(`Plan #${id} diff`);
  const diff = useAsync(() => api.planDiff(id, old), [id, old]);
  if (diff.loading && !diff.data) return <Loading />;
  if (diff.error) return <ErrorBox error={diff.error} />;
  const d = diff.data;
  if (!d) return null;
  return (
    <section>
      <PageHeader
        title={<>Plan #{d.old ?? '—'} → #{d.new}</>}
        sub={<><Link href={`/plans/${id}`}>Plan #{id}</Link>{d.old ? <> / against <Link href={`/plans/${d.old}`}>plan #{d.old}</Link></> : ' / against nothing adopted'}</>}
      />
      <Notice>{diffSummary(d)}</Notice>

      <div class="card">
        <h2>Predicted change</h2>
        <table class="table compact" data-testid="diff-predicted">
          <thead><tr><th scope="col">Response time</th><th scope="col" class="num">Old</th><th scope="col" class="num">New</th><th scope="col" class="num">Change</th></tr></thead>
          <tbody>
            {PREDICTED.map(([k, label]) => (
              <tr key={k}>
                <th scope="row">{label}</th>
                <td class="num">{fmtSeconds(d.predicted[k]?.old)}</td>
                <td class="num">{fmtSeconds(d.predicted[k]?.new)}</td>
                <td class="num">{changeText(d.predicted[k])}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>

      <TableCard title="Per server" empty="No server changes its blocks." testid="diff-servers"
        head={<tr><th scope="col">Server</th><th scope="col">Old blocks</th><th scope="col">New blocks</th><th scope="col">Load</th><th scope="col">Drop</th></tr>}
        rows={d.servers.map((s) => (
          <tr key={s.server}>
            <th scope="row">{s.server}</th>
            <td>{rangeText(s.old)}</td>
            <td>{rangeText(s.new)}</td>
            <td>{spansLabel(s.blocks_to_load)}{s.num_blocks_to_load > 0 && <span class="muted"> ({s.num_blocks_to_load})</span>}</td>
            <td>{spansLabel(s.blocks_to_drop)}{s.num_blocks_to_drop > 0 && <span class="muted"> ({s.num_blocks_to_drop})</span>}</td>
          </tr>
        ))} />

      <div class="grid-2">
        {([['Chains added', d.chains_added, 'diff-chains-added'], ['Chains removed', d.chains_removed, 'diff-chains-removed']] as const).map(([title, chains, testid]) => (
          <div class="card" key={title}>
            <h2>{title}</h2>
            {chains.length === 0 ? <p class="muted">None.</p> : (
              <ul data-testid={testid}>
                {chains.map((ch, i) => (
                  <li key={i}>{ch.servers.map((s, j) => `${s} (${ch.blocks[j]})`).join(' → ')} <span class="muted">· capacity {ch.capacity}, {fmtSeconds(ch.service_time_s)}</span></li>
                ))}
              </ul>
            )}
          </div>
        ))}
      </div>
      {d.capacity_changed.length > 0 && (
        <div class="card">
          <h2>Capacity changed</h2>
          <ul>{d.capacity_changed.map((c, i) => <li key={i}>{c.servers.join(' → ')}: {c.old} → {c.new}</li>)}</ul>
        </div>
      )}
    </section>
  );
}

// ---------------------------------------------------------------------------
// apply page: /clusters/<id>/apply
// ---------------------------------------------------------------------------

export function ApplyPage({ id }: { id: number }) {
  useTitle(`Apply cluster #${id}`);
  const [peers, setPeers] = useState('');
  const [applied, setApplied] = useState('');
  const res = useAsync(() => api.apply(id, applied), [id, applied]);
  const { copied, copy: copyText } = useCopy();
  const d = res.data;
  const script = d ? '#!/bin/sh\n' + d.petals_commands.join('\n') + '\n' : '';
  const copy = () => copyText(d!.petals_commands.join('\n'));
  return (
    <section>
      <PageHeader title="Apply the adopted plan" sub={<><Link href="/clusters">Clusters</Link> / <Link href={`/clusters/${id}`}>#{id}</Link> / apply</>} />
      {res.loading && !d && <Loading />}
      {res.error !== null && <ErrorBox error={res.error} />}
      {d && (
        <>
          <p>
            Adopted plan <Link href={`/plans/${d.plan.id}`}>#{d.plan.id} ({d.plan.algorithm})</Link> for model <code>{d.model_name}</code>:
            start one PETALS server per line, on the server named in its comment.
          </p>
          {d.missing_servers.length > 0 && (
            <div class="alert alert-warn" role="status">The plan uses servers no longer in the cluster: {d.missing_servers.join(', ')}. Re-plan first.</div>
          )}
          <form class="inline-form card" onSubmit={(e) => { e.preventDefault(); setApplied(peers.trim()); }}>
            <Field label="Initial peers (optional)" hint="Multiaddr of the swarm's bootstrap peer, added as --initial_peers.">
              {({ id: fid, describedBy }) => (
                <input id={fid} value={peers} aria-describedby={describedBy} placeholder="/ip4/10.0.0.1/tcp/31337/p2p/Qm…"
                  onInput={(e) => setPeers((e.target as HTMLInputElement).value)} />
              )}
            </Field>
            <button type="submit" class="secondary">Update commands</button>
          </form>
          <div class="card">
            <h2>PETALS launch commands</h2>
            <pre class="commands" tabIndex={0} aria-label="Commands, one per server" data-testid="apply-commands">{d.petals_commands.join('\n')}</pre>
            <div class="button-row">
              <button type="button" class="secondary" onClick={copy}>{copied ? 'Copied' : 'Copy'}</button>
              <button type="button" class="secondary" onClick={() => downloadText(safeFileName(`cluster-${id}-plan-${d.plan.id}-petals`, 'sh'), script, 'text/x-sh')}>Download .sh</button>
              <button type="button" class="primary" data-testid="apply-json"
                onClick={() => downloadText(safeFileName(`cluster-${id}-plan-${d.plan.id}`, 'json'), JSON.stringify(d.plan_json, null, 2) + '\n')}>Download plan JSON</button>
            </div>
          </div>
          <details class="card">
            <summary>Plan JSON</summary>
            <pre class="commands">{JSON.stringify(d.plan_json, null, 2)}</pre>
          </details>
        </>
      )}
      {res.error instanceof ApiError && res.error.status === 404 && (
        <p><Link href={`/clusters/${id}`}>Back to the cluster</Link> to adopt a plan.</p>
      )}
    </section>
  );
}

