import { useEffect, useState } from 'preact/hooks';
import { api } from '../api';
import { ApiError, fieldMap } from '../lib/errors';
import { parseWorkload, WORKLOAD_FIELDS, workloadForm, type WorkloadForm, type WorkloadKey } from '../lib/workload';
import { ApiErrorSummary, ErrorBox, Notice, splitError, TextField } from '../components/ui';
import type { Cluster, Workload } from '../types';

/** The cluster's default workload (used by re-plans and by jobs that give none): PATCH /clusters/{id}/. */
export function WorkloadEditor({ cluster, onSaved }: { cluster: Cluster; onSaved?: (c: Cluster) => void }) {
  const [stored, setStored] = useState<Workload | null>(cluster.default_workload ?? null);
  const [form, setForm] = useState<WorkloadForm>(workloadForm(cluster.default_workload));
  const [attempted, setAttempted] = useState(false);
  const [apiError, setApiError] = useState<ApiError | null>(null);
  const [other, setOther] = useState<unknown>(null);
  const [saved, setSaved] = useState(false);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    setStored(cluster.default_workload ?? null);
    setForm(workloadForm(cluster.default_workload));
  }, [cluster.id]);

  const parsed = parseWorkload(form, stored);
  const server = fieldMap(apiError, 'default_workload');
  const errorFor = (key: WorkloadKey): string[] | undefined => {
    const list = [...(attempted && parsed.errors[key] ? [parsed.errors[key]!] : []), ...(server[key] ?? [])];
    return list.length ? list : undefined;
  };
  const dirty = JSON.stringify(workloadForm(stored)) !== JSON.stringify(form);

  const save = async (e: Event) => {
    e.preventDefault();
    setAttempted(true);
    setSaved(false);
    setApiError(null);
    setOther(null);
    if (Object.keys(parsed.errors).length) {
      setTimeout(() => (document.querySelector('#workload-form [aria-invalid="true"]') as HTMLElement | null)?.focus(), 0);
      return;
    }
    setBusy(true);
    try {
      const res = await api.patchCluster(cluster.id, { default_workload: parsed.workload });
      setStored(res.default_workload ?? null);
      setForm(workloadForm(res.default_workload));
      setAttempted(false);
      setSaved(true);
      onSaved?.(res);
    } catch (err) {
      splitError(err, setApiError, setOther);
    } finally {
      setBusy(false);
    }
  };

  // messages for no field of the form (a trace row, the whole object): listed under the summary
  const unplaced = Object.entries(server).filter(([k]) => !WORKLOAD_FIELDS.some((f) => f.key === k))
    .flatMap(([k, msgs]) => msgs.map((message) => ({ field: k ? `default_workload.${k}` : 'default_workload', message })));

  return (
    <form id="workload-form" class="card" onSubmit={save} noValidate data-testid="workload-editor">
      <h2>Default workload</h2>
      <p class="hint">Re-plans, and jobs that give no workload of their own, plan for this workload.
        {stored === null && ' This cluster has none yet.'}</p>
      {saved && <Notice kind="ok">Default workload saved.</Notice>}
      <ErrorBox error={other} />
      <ApiErrorSummary error={apiError} unplaced={unplaced} />
      {attempted && Object.keys(parsed.errors).length > 0 && (
        <div class="alert alert-error" role="alert">Fix the values marked below; the messages are next to the fields.</div>
      )}
      <div class="form-grid three">
        {WORKLOAD_FIELDS.map((f) => (
          <TextField key={f.key} label={f.label} hint={f.hint} error={errorFor(f.key)} inputMode="decimal" value={form[f.key]}
            onValue={(v) => {
              setForm({ ...form, [f.key]: v });
              setSaved(false);
            }} />
        ))}
      </div>
      {stored?.trace && <p class="hint">The workload also holds a trace of {stored.trace.length} requests; it is kept as it is.</p>}
      <div class="button-row">
        <button type="submit" class="primary" disabled={busy}>{busy ? 'Saving…' : 'Save workload'}</button>
        {dirty && <span class="dirty">unsaved changes</span>}
      </div>
    </form>
  );
}
