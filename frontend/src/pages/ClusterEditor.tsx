import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { api, listAll } from '../api';
import { useAsync, useTitle } from '../hooks';
import { navigate } from '../router';
import { ApiError, messageOf } from '../lib/errors';
import { downloadText, safeFileName } from '../lib/download';
import {
  addFromPreset, bulkEdit, calibrationSummary, checkScenarioShape, duplicateServer, emptyServer, fromScenarioServer, GPU_PRESETS,
  NUM_FIELDS, scenarioFromCluster, serversFromCsv, serversToCsv, uniqueId, validateServers, type BulkOp, type NumField,
} from '../lib/servers';
import { CURVE_HINT, curveMessage, formatCurve, parseCurve, type CurveValue } from '../lib/batch';
import { ReplanPanel } from './Replanning';
import { WorkloadEditor } from './WorkloadEditor';
import { DispatcherPanel } from './Dispatcher';
import { GatewayPanel } from './Gateway';
import { LivenessPanel } from './Liveness';
import { ApiErrorSummary, confirmDelete, ErrorBox, Field, FieldMessages, Link, Loading, Notice, PageHeader, parseNumberInput, splitError, TextField } from '../components/ui';
import type { Cluster, Model, ScenarioDoc, Server } from '../types';

const ROWS_PER_PAGE = 50;

function NumCell({ value, onChange, label, error, id }: { value: number | null; onChange: (v: number | null) => void; label: string; error?: string; id: string }) {
  const [text, setText] = useState(value === null ? '' : String(value));
  useEffect(() => {
    const parsed = parseNumberInput(text);
    if (!(parsed === value || (parsed !== null && value !== null && Number.isNaN(parsed) && Number.isNaN(value)))) {
      setText(value === null || Number.isNaN(value) ? text : String(value));
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [value]);
  return (
    <>
      <input
        id={id}
        class="cell-input num"
        inputMode="decimal"
        value={text}
        aria-label={label}
        aria-invalid={error ? true : undefined}
        aria-describedby={error ? `${id}-err` : undefined}
        onInput={(e) => {
          const t = e.currentTarget.value;
          setText(t);
          const v = parseNumberInput(t);
          onChange(v === null ? null : v);
        }}
      />
      <FieldMessages id={`${id}-err`} messages={error} />
    </>
  );
}

/** A server's batch slowdown as "1:1, 8:1.5, 64:4"; the text stays as typed while it is not pairs yet. */
function CurveCell({ value, onChange, label, error, id }: { value: CurveValue | undefined; onChange: (v: CurveValue) => void; label: string; error?: string; id: string }) {
  const [text, setText] = useState(formatCurve(value));
  useEffect(() => {
    if (formatCurve(parseCurve(text)) !== formatCurve(value)) setText(formatCurve(value));
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [value]);
  return (
    <>
      <input id={id} class="cell-input curve" value={text} placeholder="1:1, 8:1.5" title={CURVE_HINT}
        aria-label={label} aria-invalid={error ? true : undefined} aria-describedby={error ? `${id}-err` : undefined}
        onInput={(e) => {
          setText(e.currentTarget.value);
          onChange(parseCurve(e.currentTarget.value));
        }} />
      <FieldMessages id={`${id}-err`} messages={error} />
    </>
  );
}

function CalibrationCell({ server }: { server: Server }) {
  const c = calibrationSummary(server.latest_calibration);
  if (!c) return <span class="muted">none</span>;
  return (
    <span class={c.stale ? 'calibration stale' : 'calibration'} title={c.figures}>
      {c.age}{c.stale && ' (old)'}
      <span class="visually-hidden">: {c.figures}</span>
    </span>
  );
}

interface Draft {
  name: string;
  description: string;
  model: number | null;
  servers: Server[];
}

function snapshot(d: Draft): string {
  return JSON.stringify({ ...d, servers: d.servers.map(({ latest_calibration: _c, ...rest }) => rest) });
}

/** Maps API error paths to the editor's keys ("servers[2].id" is the server_id cell). */
function apiErrorKey(field: string): string {
  return field.replace(/^cluster\./, '').replace(/^scenario\./, '').replace(/(servers\[\d+\])\.id$/, '$1.server_id');
}

export function ClusterEditor({ id }: { id: number | null }) {
  const isNew = id === null;
  const loaded = useAsync<Cluster | null>(() => (id === null ? Promise.resolve(null) : api.cluster(id)), [id]);
  const models = useAsync<Model[]>(() => listAll(api.models), []);
  const [draft, setDraft] = useState<Draft>({ name: '', description: '', model: null, servers: [] });
  const [saved, setSaved] = useState<string>(snapshot({ name: '', description: '', model: null, servers: [] }));
  const [selected, setSelected] = useState<Set<number>>(new Set());
  const [attempted, setAttempted] = useState(false);
  const [touched, setTouched] = useState<Set<number>>(new Set());
  const [apiError, setApiError] = useState<ApiError | null>(null);
  const [otherError, setOtherError] = useState<unknown>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [tablePage, setTablePage] = useState(0);
  const [replaceOnImport, setReplaceOnImport] = useState(true);
  const [bulk, setBulk] = useState<{ field: NumField; op: BulkOp; value: string }>({ field: 'memory_gb', op: 'set', value: '' });
  const [preset, setPreset] = useState({ key: GPU_PRESETS[2].key, count: '4', prefix: 'gpu', rtt: '20' });
  const [probeToken, setProbeToken] = useState<{ server: string; token: string } | null>(null);
  const fileInput = useRef<HTMLInputElement>(null);
  useTitle(isNew ? 'New cluster' : draft.name || 'Cluster');

  useEffect(() => {
    if (loaded.data) {
      const d: Draft = { name: loaded.data.name, description: loaded.data.description ?? '', model: loaded.data.model, servers: loaded.data.servers };
      setDraft(d);
      setSaved(snapshot(d));
    }
  }, [loaded.data]);

  const dirty = snapshot(draft) !== saved;
  useEffect(() => {
    if (!dirty) return;
    const warn = (e: BeforeUnloadEvent) => {
      e.preventDefault();
      e.returnValue = '';
    };
    window.addEventListener('beforeunload', warn);
    return () => window.removeEventListener('beforeunload', warn);
  }, [dirty]);

  const clientErrors = useMemo(() => validateServers(draft.servers), [draft.servers]);
  const serverErrors = useMemo(() => {
    const map: Record<string, string[]> = {};
    for (const f of apiError?.fields ?? []) (map[apiErrorKey(f.field)] ??= []).push(f.message);
    return map;
  }, [apiError]);
  const errorFor = (i: number, field: string): string | undefined => {
    const key = `servers[${i}].${field}`;
    const client = clientErrors[key];
    const show = attempted || touched.has(i);
    const fromServer = serverErrors[key]?.join('; ');
    if (client && (show || !/required/.test(client))) return client;
    return fromServer;
  };
  // the curve's errors: the list's own and each entry's (servers[i].batch_slowdown[j]), from either side
  const curveErrorFor = (i: number): string | undefined => {
    const key = `servers[${i}].batch_slowdown`;
    const pick = (map: Record<string, string | string[]>) =>
      Object.fromEntries(Object.entries(map).filter(([k]) => k === key || k.startsWith(`${key}[`)).map(([k, v]) => [k.slice(key.length), v]));
    const value = draft.servers[i]?.batch_slowdown;
    return curveMessage(value, pick(clientErrors)) ?? curveMessage(value, pick(serverErrors));
  };

  const setServers = (servers: Server[]) => {
    setDraft((d) => ({ ...d, servers }));
    setApiError(null);
  };
  const updateServer = (i: number, patch: Partial<Server>) => {
    setDraft((d) => ({ ...d, servers: d.servers.map((s, k) => (k === i ? { ...s, ...patch } : s)) }));
    setTouched((t) => (t.has(i) ? t : new Set(t).add(i)));
  };
  const removeRows = (rows: Set<number>) => {
    setServers(draft.servers.filter((_, i) => !rows.has(i)));
    setSelected(new Set());
    setTouched(new Set());
  };

  const pages = Math.max(1, Math.ceil(draft.servers.length / ROWS_PER_PAGE));
  const pageIndex = Math.min(tablePage, pages - 1);
  const first = pageIndex * ROWS_PER_PAGE;
  const visible = draft.servers.slice(first, first + ROWS_PER_PAGE);
  const allSelected = draft.servers.length > 0 && selected.size === draft.servers.length;

  const addServer = () => {
    const taken = new Set(draft.servers.map((s) => s.server_id));
    setServers([...draft.servers, emptyServer(uniqueId(`server-${draft.servers.length + 1}`, taken))]);
    setTablePage(Math.floor(draft.servers.length / ROWS_PER_PAGE));
  };

  const applyPreset = (e: Event) => {
    e.preventDefault();
    const p = GPU_PRESETS.find((g) => g.key === preset.key)!;
    const count = Number(preset.count);
    if (!Number.isInteger(count) || count < 1 || count > 5000) {
      setOtherError(new Error('The number of servers to add must be a whole number from 1 to 5000.'));
      return;
    }
    const rtt = parseNumberInput(preset.rtt);
    setOtherError(null);
    setServers(addFromPreset(draft.servers, p, count, preset.prefix, rtt !== null && Number.isFinite(rtt) ? rtt : null));
    setNotice(`Added ${count} × ${p.label}.`);
  };

  const applyBulk = (e: Event) => {
    e.preventDefault();
    if (!selected.size) {
      setOtherError(new Error('Select the rows to edit first (the checkboxes on the left).'));
      return;
    }
    const v = parseNumberInput(bulk.value);
    if (bulk.op !== 'clear' && (v === null || !Number.isFinite(v))) {
      setOtherError(new Error('Enter a number for the bulk edit.'));
      return;
    }
    setOtherError(null);
    setServers(bulkEdit(draft.servers, selected, bulk.field, bulk.op, v));
    setNotice(`Updated ${selected.size} server${selected.size === 1 ? '' : 's'}.`);
  };

  const onImportFile = async (e: Event) => {
    const file = (e.currentTarget as HTMLInputElement).files?.[0];
    if (!file) return;
    setOtherError(null);
    setNotice(null);
    try {
      const text = await file.text();
      let servers: Server[];
      let name: string | undefined;
      if (/\.csv$/i.test(file.name) || file.type === 'text/csv') {
        const res = serversFromCsv(text);
        if (res.errors.length && !res.servers.length) throw new Error(`${file.name}: ${res.errors.join('; ')}`);
        if (res.errors.length) setOtherError(new Error(`Some values were skipped: ${res.errors.slice(0, 5).join('; ')}`));
        servers = res.servers;
      } else {
        let doc: unknown;
        try {
          doc = JSON.parse(text);
        } catch (err) {
          throw new Error(`${file.name} is neither CSV nor valid JSON: ${(err as Error).message}`);
        }
        const d = doc as ScenarioDoc;
        if (!Array.isArray(d?.servers)) throw new Error(`${file.name}: ${checkScenarioShape(doc).join('; ') || 'no servers list'}`);
        servers = d.servers.map(fromScenarioServer);
        name = d.name;
      }
      setDraft((cur) => ({
        ...cur,
        name: cur.name || name || file.name.replace(/\.[^.]+$/, ''),
        servers: replaceOnImport ? servers : [...cur.servers, ...servers],
      }));
      setSelected(new Set());
      setTouched(new Set());
      setApiError(null);
      setNotice(`Imported ${servers.length} server${servers.length === 1 ? '' : 's'} from ${file.name}. Save to keep them.`);
    } catch (err) {
      setOtherError(err);
    } finally {
      if (fileInput.current) fileInput.current.value = '';
    }
  };

  const selectedModel = models.data?.find((m) => m.id === draft.model) ?? null;

  const exportJson = async () => {
    setOtherError(null);
    try {
      let doc: ScenarioDoc;
      if (!isNew && !dirty && draft.model !== null) {
        doc = await api.exportCluster(id!, { model: draft.model });
      } else {
        const model = selectedModel
          ? { name: selectedModel.name, num_blocks: selectedModel.num_blocks, block_size_gb: selectedModel.block_size_gb, cache_size_gb: selectedModel.cache_size_gb,
              ...(selectedModel.flops_per_token_gflops ? { flops_per_token_gflops: selectedModel.flops_per_token_gflops } : {}) }
          : { name: 'model' };
        doc = scenarioFromCluster({ name: draft.name || 'cluster', servers: draft.servers }, model, 1);
        if (!selectedModel) setNotice('No model is chosen: fill in the "model" object of the exported file before planning with it.');
      }
      downloadText(safeFileName(draft.name || 'cluster', 'json'), JSON.stringify(doc, null, 2) + '\n');
    } catch (err) {
      setOtherError(err);
    }
  };

  const exportCsv = () => downloadText(safeFileName(draft.name || 'cluster', 'csv'), serversToCsv(draft.servers), 'text/csv');

  const save = async (e?: Event) => {
    e?.preventDefault();
    setAttempted(true);
    setNotice(null);
    setOtherError(null);
    const errs = Object.keys(clientErrors);
    if (!draft.name.trim() || errs.length) {
      if (errs.length) {
        const m = /^servers\[(\d+)\]/.exec(errs[0]);
        if (m) setTablePage(Math.floor(Number(m[1]) / ROWS_PER_PAGE));
      }
      setTimeout(() => (document.querySelector('[aria-invalid="true"]') as HTMLElement | null)?.focus(), 0);
      return;
    }
    setBusy(true);
    try {
      const body = {
        name: draft.name.trim(),
        description: draft.description,
        model: draft.model,
        servers: draft.servers.map(({ latest_calibration: _c, ...s }) => ({ ...s, server_id: s.server_id.trim() })) as Server[],
      };
      const res = isNew ? await api.createCluster(body) : await api.updateCluster(id!, body);
      setApiError(null);
      setAttempted(false);
      setTouched(new Set());
      const d: Draft = { name: res.name, description: res.description ?? '', model: res.model, servers: res.servers };
      setDraft(d);
      setSaved(snapshot(d));
      setNotice('Saved.');
      if (isNew) navigate(`/clusters/${res.id}`, { replace: true });
    } catch (err) {
      splitError(err, setApiError, setOtherError);
    } finally {
      setBusy(false);
    }
  };

  const remove = () => confirmDelete(`Delete the cluster "${draft.name}"? Its jobs and plans stay.`,
    () => api.deleteCluster(id!), '/clusters', setOtherError);

  const getProbeToken = async (serverId: string) => {
    try {
      const res = await api.probeToken(id!, serverId);
      setProbeToken({ server: serverId, token: res.token });
    } catch (err) {
      setOtherError(err);
    }
  };

  if (!isNew && loaded.loading && !loaded.data) return <Loading />;
  if (loaded.error) return <ErrorBox error={loaded.error} />;

  const errorCount = Object.keys(clientErrors).length;
  const topLevelApi = apiError ? apiError.fields.filter((f) => !/^(cluster\.|scenario\.)?servers\[/.test(f.field) && !['name', 'description', 'model'].includes(f.field)) : [];

  return (
    <section>
      <PageHeader
        title={isNew ? 'New cluster' : draft.name || 'Cluster'}
        sub={<><Link href="/clusters">Clusters</Link> / {isNew ? 'new' : `#${id}`} · {draft.servers.length} servers{dirty && <strong class="dirty"> · unsaved changes</strong>}</>}
      >
        {!isNew && <Link class="button secondary" href={`/jobs/new?cluster=${id}`}>Plan this cluster</Link>}
        <button type="submit" form="cluster-form" class="primary" disabled={busy}>{busy ? 'Saving…' : 'Save'}</button>
      </PageHeader>

      {notice && <Notice kind="ok">{notice}</Notice>}
      <ErrorBox error={otherError} />
      <ApiErrorSummary error={apiError} unplaced={topLevelApi} />
      {attempted && errorCount > 0 && (
        <div class="alert alert-error" role="alert">
          {errorCount} value{errorCount === 1 ? ' needs' : 's need'} fixing; the messages are next to the fields.
        </div>
      )}

      <form id="cluster-form" onSubmit={save} noValidate>
        <div class="form-grid">
          <TextField label="Name" error={(attempted && !draft.name.trim() ? ['is required'] : undefined) ?? serverErrors.name}
            value={draft.name} onValue={(v) => setDraft({ ...draft, name: v })} />
          <Field label="Model" hint="The model this cluster serves by default (optional)." error={serverErrors.model}>
            {({ id: fid, describedBy }) => (
              <select id={fid} aria-describedby={describedBy} value={draft.model === null ? '' : String(draft.model)}
                onChange={(e) => setDraft({ ...draft, model: e.currentTarget.value ? Number(e.currentTarget.value) : null })}>
                <option value="">— none —</option>
                {(models.data ?? []).map((m) => <option key={m.id} value={String(m.id)}>{m.name} ({m.num_blocks} blocks)</option>)}
              </select>
            )}
          </Field>
          <Field label="Description" class="span-2" error={serverErrors.description}>
            {({ id: fid, describedBy }) => (
              <input id={fid} value={draft.description} aria-describedby={describedBy} onInput={(e) => setDraft({ ...draft, description: e.currentTarget.value })} />
            )}
          </Field>
        </div>
      </form>

      <div class="toolbar" role="group" aria-label="Server table tools">
        <button type="button" class="secondary" onClick={addServer}>Add server</button>
        <button type="button" class="secondary" disabled={!selected.size} onClick={() => removeRows(selected)}>
          Remove selected{selected.size ? ` (${selected.size})` : ''}
        </button>
        <span class="toolbar-sep" />
        <label class="button secondary">
          Import JSON / CSV
          <input ref={fileInput} type="file" accept=".json,.csv,application/json,text/csv" class="visually-hidden" onChange={onImportFile} data-testid="import-servers" />
        </label>
        <label class="checkbox">
          <input type="checkbox" checked={replaceOnImport} onChange={(e) => setReplaceOnImport(e.currentTarget.checked)} /> replace current servers
        </label>
        <span class="toolbar-sep" />
        <button type="button" class="secondary" onClick={exportJson}>Export scenario JSON</button>
        <button type="button" class="secondary" onClick={exportCsv} disabled={!draft.servers.length}>Export CSV</button>
        {!isNew && <button type="button" class="danger-button" onClick={remove}>Delete cluster</button>}
      </div>

      <div class="grid-2 tools">
        <details class="card">
          <summary>Add N servers from a GPU preset</summary>
          <form class="inline-form" onSubmit={applyPreset}>
            <Field label="GPU">
              {({ id: fid }) => (
                <select id={fid} value={preset.key} onChange={(e) => setPreset({ ...preset, key: e.currentTarget.value })}>
                  {GPU_PRESETS.map((g) => <option key={g.key} value={g.key}>{g.label} · {g.tflops} TFLOPS · {g.mem_bandwidth_gb_s} GB/s</option>)}
                </select>
              )}
            </Field>
            <Field label="How many">
              {({ id: fid }) => <input id={fid} class="short" inputMode="numeric" value={preset.count} onInput={(e) => setPreset({ ...preset, count: e.currentTarget.value })} />}
            </Field>
            <Field label="Id prefix">
              {({ id: fid }) => <input id={fid} class="short" value={preset.prefix} onInput={(e) => setPreset({ ...preset, prefix: e.currentTarget.value })} />}
            </Field>
            <Field label="RTT (ms)">
              {({ id: fid }) => <input id={fid} class="short" inputMode="decimal" value={preset.rtt} onInput={(e) => setPreset({ ...preset, rtt: e.currentTarget.value })} />}
            </Field>
            <button type="submit" class="secondary">Add</button>
          </form>
          <p class="hint">Times are then derived from the datasheet figures (compute, memory bandwidth, RTT) and the workload's token lengths.</p>
        </details>
        <details class="card">
          <summary>Bulk edit the selected servers ({selected.size})</summary>
          <form class="inline-form" onSubmit={applyBulk}>
            <Field label="Field">
              {({ id: fid }) => (
                <select id={fid} value={bulk.field} onChange={(e) => setBulk({ ...bulk, field: e.currentTarget.value as NumField })}>
                  {NUM_FIELDS.map((f) => <option key={f.key} value={f.key}>{f.label} ({f.unit})</option>)}
                </select>
              )}
            </Field>
            <Field label="Change">
              {({ id: fid }) => (
                <select id={fid} value={bulk.op} onChange={(e) => setBulk({ ...bulk, op: e.currentTarget.value as BulkOp })}>
                  <option value="set">set to</option>
                  <option value="scale">multiply by</option>
                  <option value="clear">clear</option>
                </select>
              )}
            </Field>
            {bulk.op !== 'clear' && (
              <Field label="Value">
                {({ id: fid }) => <input id={fid} class="short" inputMode="decimal" value={bulk.value} onInput={(e) => setBulk({ ...bulk, value: e.currentTarget.value })} />}
              </Field>
            )}
            <button type="submit" class="secondary">Apply</button>
          </form>
        </details>
      </div>

      {probeToken && (
        <Notice>
          Probe token for <strong>{probeToken.server}</strong> (it may only report calibrations for this server):{' '}
          <code class="token">{probeToken.token}</code>{' '}
          <button type="button" class="link-button" onClick={() => setProbeToken(null)}>Hide</button>
        </Notice>
      )}

      {draft.servers.length === 0 ? (
        <div class="card empty">
          <h2>No servers yet</h2>
          <p>Add servers one by one, add several from a GPU preset, or import a scenario JSON or a CSV with the columns
            <code> server_id, memory_gb, comm_time_s, block_time_s, tflops, mem_bandwidth_gb_s, rtt_ms, link_bandwidth_gbps, batch_slowdown</code>
            (the last one quoted, e.g. <code>"1:1, 8:1.5, 64:4"</code>).</p>
        </div>
      ) : (
        <div class="table-wrap">
          <table class="table servers-table" data-testid="servers-table">
            <caption class="visually-hidden">Servers of the cluster. Give either the times (comm. and block) or the datasheet figures (compute, memory bandwidth and RTT).</caption>
            <thead>
              <tr>
                <th scope="col" class="check">
                  <input type="checkbox" aria-label="Select all servers" checked={allSelected}
                    onChange={(e) => setSelected(e.currentTarget.checked ? new Set(draft.servers.map((_, i) => i)) : new Set())} />
                </th>
                <th scope="col">Server id</th>
                {NUM_FIELDS.map((f) => <th scope="col" key={f.key} class="num">{f.label}<br /><span class="unit">{f.unit}</span></th>)}
                <th scope="col" title={CURVE_HINT}>Batch slowdown<br /><span class="unit">jobs:factor</span></th>
                <th scope="col">Latest probe calibration</th>
                <th scope="col"><span class="visually-hidden">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {visible.map((s, k) => {
                const i = first + k;
                const rowLabel = s.server_id || `row ${i + 1}`;
                const idErr = errorFor(i, 'server_id');
                return (
                  <tr key={i} class={selected.has(i) ? 'selected' : ''}>
                    <td class="check">
                      <input type="checkbox" aria-label={`Select ${rowLabel}`} checked={selected.has(i)}
                        onChange={(e) => {
                          const next = new Set(selected);
                          if (e.currentTarget.checked) next.add(i);
                          else next.delete(i);
                          setSelected(next);
                        }} />
                    </td>
                    <td>
                      <input id={`srv-${i}-id`} class="cell-input id" value={s.server_id} aria-label={`Server id, row ${i + 1}`}
                        aria-invalid={idErr ? true : undefined} aria-describedby={idErr ? `srv-${i}-id-err` : undefined}
                        onInput={(e) => updateServer(i, { server_id: e.currentTarget.value })} />
                      <FieldMessages id={`srv-${i}-id-err`} messages={idErr} />
                    </td>
                    {NUM_FIELDS.map((f) => (
                      <td key={f.key}>
                        <NumCell id={`srv-${i}-${f.key}`} value={s[f.key]} label={`${f.label} (${f.unit}) of ${rowLabel}`}
                          error={errorFor(i, f.key)} onChange={(v) => updateServer(i, { [f.key]: v })} />
                      </td>
                    ))}
                    <td>
                      <CurveCell id={`srv-${i}-batch_slowdown`} value={s.batch_slowdown} label={`Batch slowdown of ${rowLabel}`}
                        error={curveErrorFor(i)} onChange={(v) => updateServer(i, { batch_slowdown: v })} />
                    </td>
                    <td><CalibrationCell server={s} /></td>
                    <td class="actions-cell">
                      <button type="button" class="button-small secondary" aria-label={`Copy ${rowLabel}`} title="Duplicate this server" onClick={() => setServers(duplicateServer(draft.servers, i))}>Copy</button>
                      <button type="button" class="button-small secondary" aria-label={`Remove ${rowLabel}`} onClick={() => removeRows(new Set([i]))}>Remove</button>
                      {!isNew && !dirty && s.server_id && (
                        <button type="button" class="button-small secondary" aria-label={`Token for ${rowLabel}`} title="Create a probe token for this server" onClick={() => getProbeToken(s.server_id)}>Token</button>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {pages > 1 && (
        <nav class="pagination" aria-label="Server table pages">
          <button type="button" class="secondary" disabled={pageIndex === 0} onClick={() => setTablePage(pageIndex - 1)}>← Previous</button>
          <span>Rows {first + 1}–{Math.min(first + ROWS_PER_PAGE, draft.servers.length)} of {draft.servers.length}</span>
          <button type="button" class="secondary" disabled={pageIndex >= pages - 1} onClick={() => setTablePage(pageIndex + 1)}>Next →</button>
        </nav>
      )}
      {models.error !== null && <p class="hint">Models could not be loaded: {messageOf(models.error)}</p>}
      {!isNew && loaded.data && <WorkloadEditor cluster={loaded.data} />}
      {!isNew && <ReplanPanel clusterId={id!} />}
      {!isNew && <LivenessPanel clusterId={id!} />}
      {!isNew && <DispatcherPanel clusterId={id!} />}
      {!isNew && <GatewayPanel clusterId={id!} />}
    </section>
  );
}
