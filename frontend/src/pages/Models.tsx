import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, listAll } from '../api';
import { useAsync, useDebounced, useTitle } from '../hooks';
import { navigate } from '../router';
import { ApiError } from '../lib/errors';
import { deriveSizes } from '../lib/derive';
import { readHfConfig, type HfConfigFile } from '../lib/hfconfig';
import { fmtGB, fmtNum } from '../lib/format';
import { ApiErrorSummary, confirmDelete, ErrorBox, Field, Link, Loading, Notice, PageHeader, parseNumberInput, splitError, TextField } from '../components/ui';
import type { Architecture, DerivedSizes, Model, ModelPreset } from '../types';

export function ModelsPage() {
  useTitle('Models');
  const models = useAsync<Model[]>(() => listAll(api.models), []);
  const presets = useAsync<ModelPreset[]>(() => api.modelPresets(), []);
  return (
    <section>
      <PageHeader title="Models" sub="The model to serve: its number of blocks, the memory of one block and of one request's KV cache per block.">
        <Link class="button primary" href="/models/new">New model</Link>
      </PageHeader>
      <ErrorBox error={models.error} />
      {models.loading && !models.data && <Loading />}
      {models.data && models.data.length === 0 && <p class="muted">No models yet: start from a preset below or describe an architecture.</p>}
      {models.data && models.data.length > 0 && (
        <table class="table">
          <caption class="visually-hidden">Your models</caption>
          <thead><tr><th scope="col">Name</th><th scope="col" class="num">Blocks</th><th scope="col" class="num">Block size</th><th scope="col" class="num">KV per request per block</th><th scope="col" class="num">GFLOPs / token / block</th></tr></thead>
          <tbody>
            {models.data.map((m) => (
              <tr key={m.id}>
                <td><Link href={`/models/${m.id}`}>{m.name}</Link></td>
                <td class="num">{m.num_blocks}</td>
                <td class="num">{fmtGB(m.block_size_gb)}</td>
                <td class="num">{fmtGB(m.cache_size_gb)}</td>
                <td class="num">{fmtNum(m.flops_per_token_gflops)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h2>Presets</h2>
      <ErrorBox error={presets.error} />
      {presets.data && (
        <ul class="preset-list">
          {presets.data.map((p) => {
            const d = deriveSizes(p.architecture);
            return (
              <li key={p.name} class="card preset">
                <h3>{p.name}</h3>
                <p class="muted">
                  {d.ok ? <>{d.num_blocks} blocks · {fmtGB(d.block_size_gb)} per block · KV {fmtGB(d.cache_size_gb)} at {p.architecture.max_seq_len ?? '?'} tokens · {p.architecture.dtype ?? 'fp16'}</> : 'incomplete architecture'}
                </p>
                <Link class="button-small secondary" href={`/models/new?preset=${encodeURIComponent(p.name)}`} aria-label={`Create a model from ${p.name}`}>Use this preset</Link>
              </li>
            );
          })}
        </ul>
      )}
    </section>
  );
}

type ArchKey = 'hidden_size' | 'num_layers' | 'num_heads' | 'num_kv_heads' | 'ffn_size' | 'head_dim' | 'max_seq_len';
const ARCH_FIELDS: Array<{ key: ArchKey; label: string; hint?: string }> = [
  { key: 'hidden_size', label: 'Hidden size' },
  { key: 'num_layers', label: 'Layers (blocks)' },
  { key: 'num_heads', label: 'Attention heads' },
  { key: 'num_kv_heads', label: 'KV heads', hint: 'default: attention heads' },
  { key: 'head_dim', label: 'Head dim', hint: 'default: hidden / heads' },
  { key: 'ffn_size', label: 'FFN size', hint: 'default: 4 × hidden' },
  { key: 'max_seq_len', label: 'Max sequence length', hint: 'sizes the KV cache' },
];
type OverrideKey = 'num_blocks' | 'block_size_gb' | 'cache_size_gb' | 'flops_per_token_gflops';
const OVERRIDES: Array<{ key: OverrideKey; label: string }> = [
  { key: 'num_blocks', label: 'Blocks' },
  { key: 'block_size_gb', label: 'Block size (GB)' },
  { key: 'cache_size_gb', label: 'KV per request per block (GB)' },
  { key: 'flops_per_token_gflops', label: 'GFLOPs per token per block' },
];

interface Form {
  name: string;
  preset: string;
  arch: Record<ArchKey, string>;
  gated_ffn: boolean;
  dtype: string;
  kv_dtype: string;
  overrides: Record<OverrideKey, string>;
}

const emptyForm = (): Form => ({
  name: '', preset: '', gated_ffn: false, dtype: 'fp16', kv_dtype: 'fp16',
  arch: { hidden_size: '', num_layers: '', num_heads: '', num_kv_heads: '', ffn_size: '', head_dim: '', max_seq_len: '' },
  overrides: { num_blocks: '', block_size_gb: '', cache_size_gb: '', flops_per_token_gflops: '' },
});

function formFromArchitecture(form: Form, a: Architecture): Form {
  const arch = { ...form.arch };
  for (const f of ARCH_FIELDS) arch[f.key] = a[f.key] !== undefined && a[f.key] !== null ? String(a[f.key]) : '';
  return { ...form, arch, gated_ffn: Boolean(a.gated_ffn), dtype: a.dtype ?? 'fp16', kv_dtype: a.kv_dtype ?? 'fp16' };
}

function architectureOf(form: Form): Architecture | null {
  const a: Architecture = {};
  let any = false;
  for (const f of ARCH_FIELDS) {
    const v = parseNumberInput(form.arch[f.key]);
    if (v !== null) {
      a[f.key] = v;
      any = true;
    }
  }
  if (!any) return null;
  a.gated_ffn = form.gated_ffn;
  a.dtype = form.dtype as Architecture['dtype'];
  a.kv_dtype = form.kv_dtype as Architecture['kv_dtype'];
  return a;
}

const close = (a: number | null | undefined, b: number | null | undefined) =>
  a !== null && a !== undefined && b !== null && b !== undefined && Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b));

export function ModelEditor({ id, preset }: { id: number | null; preset?: string }) {
  const isNew = id === null;
  const loaded = useAsync<Model | null>(() => (id === null ? Promise.resolve(null) : api.model(id)), [id]);
  const presets = useAsync<ModelPreset[]>(() => api.modelPresets(), []);
  const [form, setForm] = useState<Form>(emptyForm);
  const [error, setError] = useState<ApiError | null>(null);
  const [other, setOther] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [saved, setSaved] = useState(false);
  // a Hugging Face config.json given as it is: the server derives the sizes from its keys
  const [hf, setHf] = useState<HfConfigFile | null>(null);
  const [hfDerived, setHfDerived] = useState<DerivedSizes | null>(null);
  const [hfError, setHfError] = useState<unknown>(null);
  useTitle(isNew ? 'New model' : form.name || 'Model');

  useEffect(() => {
    const m = loaded.data;
    if (!m) return;
    let f: Form = { ...emptyForm(), name: m.name };
    const a = m.architecture as Record<string, unknown> | null;
    if (a && typeof a.model_type === 'string') {
      // saved from a config.json: keep it as one (its keys are Hugging Face's, not the form's)
      setHf({ config: a, fileName: 'the saved config.json', name: m.name });
      api.deriveHfConfig(a).then(setHfDerived, setHfError);
      setForm({ ...f });
      return;
    }
    if (m.architecture) f = formFromArchitecture(f, m.architecture);
    const derived = m.architecture ? deriveSizes(m.architecture) : null;
    // numbers that differ from the derived ones were given explicitly
    const overrides = { ...f.overrides };
    for (const o of OVERRIDES) {
      const dv = derived?.ok ? (derived as unknown as Record<string, number | null>)[o.key] : null;
      if (!close(m[o.key], dv)) overrides[o.key] = m[o.key] === null ? '' : String(m[o.key]);
    }
    setForm({ ...f, overrides });
  }, [loaded.data]);

  useEffect(() => {
    if (!isNew || !preset || !presets.data) return;
    const p = presets.data.find((x) => x.name === preset);
    if (p) setForm((f) => ({ ...formFromArchitecture(f, p.architecture), preset: p.name, name: f.name || p.name }));
  }, [preset, presets.data, isNew]);

  const arch = architectureOf(form);
  const local = useMemo(() => (arch ? deriveSizes(arch) : null), [JSON.stringify(arch)]);
  const debouncedArch = useDebounced(local?.ok && local.cache_size_gb !== null ? JSON.stringify(arch) : '', 400);
  const [serverDerived, setServerDerived] = useState<DerivedSizes | null>(null);
  useEffect(() => {
    setServerDerived(null);
    if (!debouncedArch) return;
    let alive = true;
    api.deriveModel(JSON.parse(debouncedArch)).then((d) => alive && setServerDerived(d), () => alive && setServerDerived(null));
    return () => {
      alive = false;
    };
  }, [debouncedArch]);

  const fieldErr = (key: string): string[] | undefined => {
    const list = [
      ...(local && !local.ok && local.errors[key] && form.arch[key as ArchKey] !== '' ? [local.errors[key]] : []),
      ...(error?.fields.filter((f) => f.field === key || f.field === `architecture.${key}` || f.field === `model.architecture.${key}` || f.field === `model.${key}`).map((f) => f.message) ?? []),
    ];
    return list.length ? list : undefined;
  };

  const onHfFile = async (e: Event) => {
    const input = e.currentTarget as HTMLInputElement;
    const file = input.files?.[0];
    input.value = '';
    if (!file) return;
    setHfError(null);
    setHfDerived(null);
    setError(null);
    const read = readHfConfig(await file.text(), file.name);
    if ('error' in read) {
      setHf(null);
      setHfError(new Error(read.error));
      return;
    }
    setHf(read);
    setForm((f) => ({ ...f, name: f.name || read.name, preset: '' }));
    try {
      setHfDerived(await api.deriveHfConfig(read.config));
    } catch (err) {
      setHfError(err);
    }
  };

  const pickPreset = (name: string) => {
    const p = presets.data?.find((x) => x.name === name);
    if (p) {
      setHf(null);          // a preset replaces a config.json
      setHfDerived(null);
      setHfError(null);
    }
    setForm((f) => (p ? { ...formFromArchitecture(f, p.architecture), preset: name, name: f.name || name } : { ...f, preset: '' }));
  };

  const save = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setOther(null);
    setSaved(false);
    const body: Partial<Model> = hf ? { name: form.name.trim(), hf_config: hf.config } : { name: form.name.trim(), architecture: arch };
    for (const o of OVERRIDES) {
      const v = parseNumberInput(form.overrides[o.key]);
      if (v !== null) (body as Record<string, unknown>)[o.key] = v;
    }
    if (!body.name) {
      setError(new ApiError(400, 'The model needs a name.', [{ field: 'name', message: 'is required' }]));
      return;
    }
    if (!hf && arch && local && !local.ok) {
      setError(new ApiError(400, 'Fix the architecture first.'));
      return;
    }
    setBusy(true);
    try {
      const m = isNew ? await api.createModel(body) : await api.updateModel(id!, body);
      setSaved(true);
      if (isNew) navigate(`/models/${m.id}`, { replace: true });
    } catch (err) {
      splitError(err, setError, setOther);
    } finally {
      setBusy(false);
    }
  };

  const remove = () => confirmDelete(`Delete the model "${form.name}"?`, () => api.deleteModel(id!), '/models', setOther);

  if (!isNew && loaded.loading && !loaded.data) return <Loading />;
  if (loaded.error) return <ErrorBox error={loaded.error} />;

  const shown = (key: OverrideKey): number | null | undefined => {
    const o = parseNumberInput(form.overrides[key]);
    if (o !== null && Number.isFinite(o)) return o;
    return local?.ok ? (local as unknown as Record<string, number | null>)[key] : null;
  };

  return (
    <section>
      <PageHeader title={isNew ? 'New model' : form.name || 'Model'} sub={<><Link href="/models">Models</Link> / {isNew ? 'new' : `#${id}`}</>}>
        {!isNew && <button type="button" class="danger-button" onClick={remove}>Delete</button>}
        <button type="submit" form="model-form" class="primary" disabled={busy}>{busy ? 'Saving…' : 'Save'}</button>
      </PageHeader>
      {saved && <Notice kind="ok">Saved.</Notice>}
      <ErrorBox error={other} />
      <ApiErrorSummary error={error} />
      <div class="model-layout">
        <form id="model-form" onSubmit={save} noValidate class="card">
          <div class="form-grid">
            <TextField label="Name" error={fieldErr('name')} value={form.name} onValue={(v) => setForm({ ...form, name: v })} />
            <Field label="Start from a preset" hint="Fills the architecture; you may change any field.">
              {({ id: fid, describedBy }) => (
                <select id={fid} aria-describedby={describedBy} value={form.preset} onChange={(e) => pickPreset(e.currentTarget.value)}>
                  <option value="">— none —</option>
                  {(presets.data ?? []).map((p) => <option key={p.name} value={p.name}>{p.name}</option>)}
                </select>
              )}
            </Field>
          </div>
          <fieldset data-testid="hf-config">
            <legend>From a Hugging Face config.json</legend>
            <label class="button secondary">
              Upload config.json
              <input type="file" accept=".json,application/json" class="visually-hidden" onChange={onHfFile} data-testid="hf-config-file" aria-label="Hugging Face config.json" />
            </label>
            <span class="hint"> The file as it is, from the model's repository; the server reads its keys (model type, activation, KV heads, dtype, max sequence length).</span>
            <ErrorBox error={hfError} title="This config.json cannot be used" />
            {hf && (
              <p data-testid="hf-config-loaded">
                Read <strong>{hf.fileName}</strong> (model type <code>{String(hf.config.model_type)}</code>{hfDerived?.hf_config?.family ? `, read as ${hfDerived.hf_config.family}` : ''}): the model is saved from it.{' '}
                <button type="button" class="link-button" onClick={() => { setHf(null); setHfDerived(null); setHfError(null); }}>Describe the architecture by hand instead</button>
              </p>
            )}
            {hfDerived?.hf_config && hfDerived.hf_config.notes.length > 0 && (
              <ul class="hint" data-testid="hf-config-notes">{hfDerived.hf_config.notes.map((n) => <li key={n}>{n}</li>)}</ul>
            )}
          </fieldset>
          <fieldset hidden={hf !== null}>
            <legend>Architecture</legend>
            <div class="form-grid three">
              {ARCH_FIELDS.map((f) => (
                <TextField key={f.key} label={f.label} hint={f.hint} error={fieldErr(f.key)} inputMode="numeric" value={form.arch[f.key]}
                  onValue={(v) => setForm({ ...form, arch: { ...form.arch, [f.key]: v } })} />
              ))}
              <Field label="Weights dtype" error={fieldErr('dtype')}>
                {({ id: fid }) => (
                  <select id={fid} value={form.dtype} onChange={(e) => setForm({ ...form, dtype: e.currentTarget.value })}>
                    {['fp32', 'fp16', 'bf16', 'int8', 'nf4'].map((d) => <option key={d} value={d}>{d}</option>)}
                  </select>
                )}
              </Field>
              <Field label="KV cache dtype" error={fieldErr('kv_dtype')}>
                {({ id: fid }) => (
                  <select id={fid} value={form.kv_dtype} onChange={(e) => setForm({ ...form, kv_dtype: e.currentTarget.value })}>
                    {['fp32', 'fp16', 'bf16', 'int8'].map((d) => <option key={d} value={d}>{d}</option>)}
                  </select>
                )}
              </Field>
              <div class="field checkbox-field">
                <label class="checkbox">
                  <input type="checkbox" checked={form.gated_ffn} onChange={(e) => setForm({ ...form, gated_ffn: e.currentTarget.checked })} /> Gated FFN (SwiGLU: three FFN matrices)
                </label>
              </div>
            </div>
          </fieldset>
          <fieldset>
            <legend>Explicit sizes (optional; they win over the derived ones)</legend>
            <div class="form-grid four">
              {OVERRIDES.map((o) => (
                <TextField key={o.key} label={o.label} error={fieldErr(o.key)} inputMode="decimal" value={form.overrides[o.key]}
                  placeholder={local?.ok ? fmtNum((local as unknown as Record<string, number | null>)[o.key]) : ''}
                  onValue={(v) => setForm({ ...form, overrides: { ...form.overrides, [o.key]: v } })} />
              ))}
            </div>
          </fieldset>
        </form>
        <aside class="card derived" aria-live="polite" aria-labelledby="derived-title">
          <h2 id="derived-title">Derived sizes</h2>
          {hf && hfDerived && (
            <dl class="stats vertical" data-testid="hf-derived-sizes">
              <div class="stat"><dt>Blocks</dt><dd>{fmtNum(hfDerived.num_blocks)}</dd></div>
              <div class="stat"><dt>Block size</dt><dd>{fmtGB(hfDerived.block_size_gb)}</dd></div>
              <div class="stat"><dt>KV per request per block</dt><dd>{fmtGB(hfDerived.cache_size_gb)}</dd></div>
              <div class="stat"><dt>GFLOPs per token per block</dt><dd>{fmtNum(hfDerived.flops_per_token_gflops)}</dd></div>
              {hfDerived.hf_config && <div class="stat"><dt>Parameters per block</dt><dd>{hfDerived.hf_config.params_per_block.toLocaleString("en-US")}</dd></div>}
              {hfDerived.hf_config && <div class="stat"><dt>All parameters</dt><dd>{hfDerived.hf_config.total_params.toLocaleString("en-US")}</dd></div>}
            </dl>
          )}
          {hf && hfDerived && <p class="hint">Derived by the server from {hf.fileName}.</p>}
          {hf && !hfDerived && !hfError && <p class="muted">Reading {hf.fileName}…</p>}
          {!hf && !arch && <p class="muted">Fill in the architecture (or a preset) to see the block and KV sizes.</p>}
          {!hf && arch && local && !local.ok && <p class="muted">Waiting for: {Object.entries(local.errors).map(([k, v]) => `${k} ${v}`).join('; ')}.</p>}
          {!hf && local?.ok && (
            <dl class="stats vertical" data-testid="derived-sizes">
              <div class="stat"><dt>Blocks</dt><dd>{fmtNum(shown('num_blocks'))}</dd></div>
              <div class="stat"><dt>Block size</dt><dd>{fmtGB(shown('block_size_gb'))}</dd></div>
              <div class="stat"><dt>KV per request per block</dt><dd>{shown('cache_size_gb') !== null ? fmtGB(shown('cache_size_gb')) : 'needs max sequence length'}</dd></div>
              <div class="stat"><dt>Parameters per block</dt><dd>{fmtNum(local.params_per_block)}</dd></div>
              <div class="stat"><dt>KV bytes per token per block</dt><dd>{fmtNum(local.kv_bytes_per_token)}</dd></div>
              <div class="stat"><dt>All weights</dt><dd>{fmtGB((shown('block_size_gb') ?? 0) * (shown('num_blocks') ?? 0))}</dd></div>
            </dl>
          )}
          {!hf && serverDerived && local?.ok && (
            <p class="hint">
              {close(serverDerived.block_size_gb, local.block_size_gb) && (local.cache_size_gb === null || close(serverDerived.cache_size_gb, local.cache_size_gb))
                ? 'The server derives the same sizes.'
                : `The server derives ${fmtGB(serverDerived.block_size_gb)} per block and ${fmtGB(serverDerived.cache_size_gb)} KV; it wins when the model is saved.`}
            </p>
          )}
        </aside>
      </div>
    </section>
  );
}
