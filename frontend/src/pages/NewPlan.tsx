import { useEffect, useState } from 'preact/hooks';
import { api, listAll } from '../api';
import { useAsync, useTitle } from '../hooks';
import { navigate } from '../router';
import { ApiError } from '../lib/errors';
import { parseTraceCsv, type TraceParse } from '../lib/trace';
import { fmtNum, fmtSeconds } from '../lib/format';
import { ApiErrorSummary, ErrorBox, Field, Link, Loading, PageHeader, parseNumberInput, splitError, TextField } from '../components/ui';
import { DemoOffer } from './Home';
import type { Algorithm, Cluster, JobOptions, Model, Workload } from '../types';

interface Form {
  cluster: string;
  model: string;
  mode: 'rate' | 'trace';
  arrival_rate: string;
  target_load: string;
  input_tokens: string;
  output_tokens: string;
  trace_limit: string;
  algorithms: Set<string>;
  c: string;
  simulate_requests: string;
  seed: string;
  time_limit_s: string;
  calibration: '' | 'measured' | 'datasheet';
}

export function NewPlanPage({ query }: { query: Record<string, string> }) {
  useTitle('New plan');
  const data = useAsync(() => Promise.all([listAll<Cluster>(api.clusters), listAll<Model>(api.models), api.algorithms()]), []);
  const [form, setForm] = useState<Form>({
    cluster: query.cluster ?? '', model: query.model ?? '', mode: 'rate', arrival_rate: query.rate ?? '0.2', target_load: '0.7',
    input_tokens: '', output_tokens: '', trace_limit: '1000', algorithms: new Set(), c: '', simulate_requests: '20000', seed: '1',
    time_limit_s: '', calibration: '',
  });
  const [trace, setTrace] = useState<{ name: string; text: string; parsed: TraceParse } | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [other, setOther] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  // defaults once the lists arrive: the first cluster, its model, the default algorithms
  useEffect(() => {
    if (!data.data) return;
    const [clusters, models, algorithms] = data.data;
    setForm((f) => {
      const cluster = f.cluster || (clusters[0] ? String(clusters[0].id) : '');
      const c = clusters.find((x) => String(x.id) === cluster);
      const model = f.model || (c?.model ? String(c.model) : models[0] ? String(models[0].id) : '');
      const algos = f.algorithms.size ? f.algorithms : new Set(algorithms.filter((a) => a.default).map((a) => a.name));
      return { ...f, cluster, model, algorithms: algos };
    });
  }, [data.data]);

  // prefill the workload the cluster was imported with (GET /clusters/{id}/export/ carries it)
  const [prefilled, setPrefilled] = useState<string | null>(null);
  useEffect(() => {
    const c = data.data?.[0].find((x) => String(x.id) === form.cluster);
    if (!c || c.model === null) return;
    let alive = true;
    api.exportCluster(c.id).then((doc) => {
      const w = doc.workload;
      if (!alive || !w) return;
      const str = (v: number | undefined, fallback: string) => (typeof v === 'number' ? String(v) : fallback);
      setForm((f) => ({
        ...f,
        arrival_rate: query.rate ?? str(w.arrival_rate, f.arrival_rate),
        target_load: str(w.target_load, f.target_load),
        input_tokens: str(w.input_tokens, ''),
        output_tokens: str(w.output_tokens, ''),
      }));
      setPrefilled(c.name);
    }, () => undefined);
    return () => {
      alive = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [form.cluster, data.data]);

  useEffect(() => {
    if (trace) setTrace({ ...trace, parsed: parseTraceCsv(trace.text, Math.max(2, Number(form.trace_limit) || 1_000_000)) });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [form.trace_limit]);

  if (data.loading && !data.data) return <Loading />;
  if (data.error) return <ErrorBox error={data.error} />;
  const [clusters, models, algorithms] = data.data as [Cluster[], Model[], Algorithm[]];

  if (clusters.length === 0) {
    return (
      <section>
        <PageHeader title="New plan" />
        <div class="card empty">
          <h2>There is no cluster to plan yet</h2>
          <p><Link href="/clusters/new">Describe your servers</Link>, or start from the demo scenario:</p>
          <DemoOffer />
        </div>
      </section>
    );
  }

  const fieldErrs = (...keys: string[]): string[] | undefined => {
    const list = error?.fields.filter((f) => keys.includes(f.field)).map((f) => f.message) ?? [];
    return list.length ? list : undefined;
  };

  const onTrace = async (e: Event) => {
    const file = (e.currentTarget as HTMLInputElement).files?.[0];
    if (!file) return;
    const text = await file.text();
    setTrace({ name: file.name, text, parsed: parseTraceCsv(text, Math.max(2, Number(form.trace_limit) || 1_000_000)) });
  };

  const num = (s: string) => {
    const v = parseNumberInput(s);
    return v === null ? undefined : v;
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setOther(null);
    const local: Array<{ field: string; message: string }> = [];
    if (!form.cluster) local.push({ field: 'cluster', message: 'choose a cluster' });
    if (!form.model) local.push({ field: 'model', message: 'choose a model' });
    if (!form.algorithms.size) local.push({ field: 'algorithms', message: 'choose at least one algorithm' });
    const workload: Workload = { target_load: num(form.target_load) };
    if (form.mode === 'rate') {
      const r = num(form.arrival_rate);
      if (r === undefined || !(r > 0)) local.push({ field: 'workload.arrival_rate', message: 'must be a number > 0' });
      workload.arrival_rate = r;
    } else if (!trace || !trace.parsed.rows.length) {
      local.push({ field: 'workload.trace', message: 'upload a trace CSV with TIMESTAMP, ContextTokens, GeneratedTokens' });
    } else {
      workload.trace = trace.parsed.rows;
    }
    const tl = num(form.target_load);
    if (tl !== undefined && !(tl > 0 && tl < 1)) local.push({ field: 'workload.target_load', message: 'must be between 0 and 1' });
    for (const k of ['input_tokens', 'output_tokens'] as const) {
      const v = num(form[k]);
      if (v !== undefined) {
        if (!Number.isFinite(v) || v < (k === 'output_tokens' ? 1 : 0)) local.push({ field: `workload.${k}`, message: `must be a number >= ${k === 'output_tokens' ? 1 : 0}` });
        workload[k] = v;
      }
    }
    const options: JobOptions = {};
    const intOpt = (k: 'c' | 'simulate_requests' | 'seed', min: number) => {
      const v = num(form[k]);
      if (v === undefined) return;
      if (!Number.isInteger(v) || v < min) local.push({ field: `options.${k}`, message: `must be a whole number >= ${min}` });
      options[k] = v;
    };
    intOpt('c', 1);
    intOpt('simulate_requests', 0);
    intOpt('seed', 0);
    const tls = num(form.time_limit_s);
    if (tls !== undefined) {
      if (!(tls > 0)) local.push({ field: 'options.time_limit_s', message: 'must be a number > 0' });
      options.time_limit_s = tls;
    }
    if (form.calibration) options.calibration = form.calibration;
    if (local.length) {
      setError(new ApiError(400, 'Some values need fixing; the messages are next to the fields.', local));
      setTimeout(() => (document.querySelector('[aria-invalid="true"]') as HTMLElement | null)?.focus(), 0);
      return;
    }
    setBusy(true);
    try {
      const job = await api.createJob({
        cluster: Number(form.cluster), model: Number(form.model), workload, algorithms: [...form.algorithms], options,
      });
      navigate(`/jobs/${job.id}`);
    } catch (err) {
      splitError(err, setError, setOther);
      setBusy(false);
    }
  };

  const selectedCluster = clusters.find((c) => String(c.id) === form.cluster);
  const unmatched = error?.fields.filter((f) => !/^(cluster|model|algorithms|workload\.|options\.)/.test(f.field)) ?? [];

  return (
    <section>
      <PageHeader title="New plan" sub="Choose what to plan; the job runs in the background and you can watch it." />
      <ApiErrorSummary error={error} unplaced={unmatched} />
      <ErrorBox error={other} />
      <form onSubmit={submit} noValidate class="plan-form">
        <fieldset class="card">
          <legend>What</legend>
          <div class="form-grid">
            <Field label="Cluster" error={fieldErrs('cluster')} hint={selectedCluster ? `${selectedCluster.server_count} servers` : undefined}>
              {({ id, describedBy, invalid }) => (
                <select id={id} value={form.cluster} aria-describedby={describedBy} aria-invalid={invalid || undefined} onChange={(e) => {
                  const cluster = e.currentTarget.value;
                  const c = clusters.find((x) => String(x.id) === cluster);
                  setForm({ ...form, cluster, model: c?.model ? String(c.model) : form.model });
                }}>
                  <option value="">— choose —</option>
                  {clusters.map((c) => <option key={c.id} value={String(c.id)}>{c.name} ({c.server_count} servers)</option>)}
                </select>
              )}
            </Field>
            <Field label="Model" error={fieldErrs('model')}>
              {({ id, describedBy, invalid }) => (
                <select id={id} value={form.model} aria-describedby={describedBy} aria-invalid={invalid || undefined} onChange={(e) => setForm({ ...form, model: e.currentTarget.value })}>
                  <option value="">— choose —</option>
                  {models.map((m) => <option key={m.id} value={String(m.id)}>{m.name} ({m.num_blocks} blocks)</option>)}
                </select>
              )}
            </Field>
          </div>
          {models.length === 0 && <p class="hint">No models yet: <Link href="/models/new">create one</Link> (or import a scenario JSON that has one).</p>}
        </fieldset>

        <fieldset class="card">
          <legend>Workload</legend>
          <div class="radio-row" role="radiogroup" aria-label="Arrivals">
            <label class="checkbox"><input type="radio" name="mode" checked={form.mode === 'rate'} onChange={() => setForm({ ...form, mode: 'rate' })} /> Poisson arrivals at a rate</label>
            <label class="checkbox"><input type="radio" name="mode" checked={form.mode === 'trace'} onChange={() => setForm({ ...form, mode: 'trace' })} /> Replay a request trace (CSV)</label>
          </div>
          <div class="form-grid four">
            {form.mode === 'rate' ? (
              <TextField label="Arrival rate (requests/s)" error={fieldErrs('workload.arrival_rate', 'workload')} inputMode="decimal" value={form.arrival_rate} onValue={(v) => setForm({ ...form, arrival_rate: v })} />
            ) : (
              <>
                <Field label="Trace CSV" hint="Columns TIMESTAMP, ContextTokens, GeneratedTokens" error={fieldErrs('workload.trace')} class="span-2">
                  {({ id, describedBy, invalid }) => <input id={id} type="file" accept=".csv,text/csv" aria-describedby={describedBy} aria-invalid={invalid || undefined} onChange={onTrace} />}
                </Field>
                <TextField label="Use the first N requests" inputMode="numeric" value={form.trace_limit} onValue={(v) => setForm({ ...form, trace_limit: v })} />
              </>
            )}
            <TextField label="Target load" hint="0..1, used to size the chains" error={fieldErrs('workload.target_load')} inputMode="decimal" value={form.target_load} onValue={(v) => setForm({ ...form, target_load: v })} />
            <TextField label="Mean input tokens" hint="optional" error={fieldErrs('workload.input_tokens')} inputMode="numeric" value={form.input_tokens} onValue={(v) => setForm({ ...form, input_tokens: v })} />
            <TextField label="Mean output tokens" hint="optional" error={fieldErrs('workload.output_tokens')} inputMode="numeric" value={form.output_tokens} onValue={(v) => setForm({ ...form, output_tokens: v })} />
          </div>
          {prefilled && <p class="hint">Prefilled with the workload of {prefilled}; change it as you like.</p>}
          {form.mode === 'trace' && trace && (
            <div class={trace.parsed.rows.length ? 'trace-summary' : 'trace-summary bad'} role="status">
              <strong>{trace.name}</strong>: {trace.parsed.count} requests over {fmtSeconds(trace.parsed.span_s)}
              {trace.parsed.mean_rate !== null && <> · {fmtNum(trace.parsed.mean_rate)} requests/s</>}
              {trace.parsed.mean_input_tokens !== null && <> · mean {fmtNum(trace.parsed.mean_input_tokens)} input / {fmtNum(trace.parsed.mean_output_tokens)} output tokens</>}
              {trace.parsed.errors.length > 0 && <ul class="warnings">{trace.parsed.errors.map((m) => <li key={m}>{m}</li>)}</ul>}
            </div>
          )}
        </fieldset>

        <fieldset class="card">
          <legend>Algorithms</legend>
          {fieldErrs('algorithms') && <p class="field-error" role="alert">{fieldErrs('algorithms')!.join('; ')}</p>}
          <ul class="algo-list">
            {algorithms.map((a) => (
              <li key={a.name}>
                <label class="checkbox">
                  <input type="checkbox" name="algorithms" value={a.name} checked={form.algorithms.has(a.name)} onChange={(e) => {
                    const next = new Set(form.algorithms);
                    if (e.currentTarget.checked) next.add(a.name);
                    else next.delete(a.name);
                    setForm({ ...form, algorithms: next });
                  }} />
                  <strong>{a.name}</strong>{a.default && <span class="badge">default</span>} <span class="muted">{a.description}</span>
                </label>
              </li>
            ))}
          </ul>
        </fieldset>

        <details class="card">
          <summary>Options</summary>
          <div class="form-grid four">
            <TextField label="Cache reservation c" hint="empty: tuned automatically" error={fieldErrs('options.c')} inputMode="numeric" value={form.c} onValue={(v) => setForm({ ...form, c: v })} />
            <TextField label="Simulated requests" hint="0: no simulation" error={fieldErrs('options.simulate_requests')} inputMode="numeric" value={form.simulate_requests} onValue={(v) => setForm({ ...form, simulate_requests: v })} />
            <TextField label="Seed" error={fieldErrs('options.seed')} inputMode="numeric" value={form.seed} onValue={(v) => setForm({ ...form, seed: v })} />
            <TextField label="Time limit per algorithm (s)" hint="optional" error={fieldErrs('options.time_limit_s')} inputMode="decimal" value={form.time_limit_s} onValue={(v) => setForm({ ...form, time_limit_s: v })} />
            <Field label="Server figures" error={fieldErrs('options.calibration')}>
              {({ id, describedBy }) => (
                <select id={id} value={form.calibration} aria-describedby={describedBy} onChange={(e) => setForm({ ...form, calibration: e.currentTarget.value as Form['calibration'] })}>
                  <option value="">default (probe calibration when there is one)</option>
                  <option value="measured">measured (probe calibrations)</option>
                  <option value="datasheet">datasheet (ignore calibrations)</option>
                </select>
              )}
            </Field>
          </div>
        </details>

        <div class="button-row">
          <button type="submit" class="primary" disabled={busy}>{busy ? 'Submitting…' : 'Submit plan'}</button>
        </div>
      </form>
    </section>
  );
}
