// Live preview of the model sizes derived from an architecture. Mirrors
// solvers/calibration.py and the defaults of solvers/scenario.py; the server
// (POST /api/v1/models/derive/) stays the authority when a model is saved.

import type { Architecture, Dtype, KvDtype } from '../types';

export const GB = 1e9;

export const BYTES_PER_PARAM: Record<Dtype, number> = {
  fp32: 4,
  fp16: 2,
  bf16: 2,
  int8: 1,
  nf4: 4.25 / 8,
};

export const KV_BYTES: Record<KvDtype, number> = { fp32: 4, fp16: 2, bf16: 2, int8: 1 };

export interface ResolvedArchitecture {
  hidden_size: number;
  num_layers: number;
  num_heads: number;
  num_kv_heads: number;
  ffn_size: number;
  gated_ffn: boolean;
  head_dim: number;
  dtype: Dtype;
  kv_dtype: KvDtype;
  max_seq_len: number | null;
}

export interface DeriveResult {
  ok: boolean;
  errors: Record<string, string>;
  arch?: ResolvedArchitecture;
  params_per_block?: number;
  num_blocks?: number;
  block_size_gb?: number;
  cache_size_gb?: number | null;
  kv_bytes_per_token?: number;
  flops_per_token_gflops?: number;
  total_weights_gb?: number;
}

function positiveInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v > 0;
}

/** Fills the scenario parser's defaults and checks the shape; errors are keyed by field name. */
export function resolveArchitecture(a: Architecture, base?: Architecture): { arch?: ResolvedArchitecture; errors: Record<string, string> } {
  const v: Architecture = { ...(base ?? {}) };
  for (const [k, val] of Object.entries(a) as Array<[keyof Architecture, unknown]>) {
    if (val !== undefined && val !== null && !(typeof val === 'number' && Number.isNaN(val))) (v as Record<string, unknown>)[k] = val;
  }
  const errors: Record<string, string> = {};
  for (const k of ['hidden_size', 'num_layers', 'num_heads', 'num_kv_heads', 'ffn_size', 'head_dim', 'max_seq_len'] as const) {
    const val = v[k];
    if (val !== undefined && !positiveInt(val)) errors[k] = 'must be a whole number > 0';
  }
  for (const k of ['hidden_size', 'num_layers', 'num_heads'] as const) {
    if (v[k] === undefined && !errors[k]) errors[k] = 'is required';
  }
  if (v.dtype !== undefined && !(v.dtype in BYTES_PER_PARAM)) errors.dtype = 'must be one of fp32, fp16, bf16, int8, nf4';
  if (v.kv_dtype !== undefined && !(v.kv_dtype in KV_BYTES)) errors.kv_dtype = 'must be one of fp32, fp16, bf16, int8';
  if (Object.keys(errors).length) return { errors };

  const d = v.hidden_size!;
  const heads = v.num_heads!;
  const kvHeads = v.num_kv_heads ?? heads;
  if (v.head_dim === undefined && d % heads !== 0) {
    return { errors: { head_dim: 'is required when hidden_size is not a multiple of num_heads' } };
  }
  if (heads % kvHeads !== 0) return { errors: { num_kv_heads: 'must divide num_heads' } };
  return {
    errors,
    arch: {
      hidden_size: d,
      num_layers: v.num_layers!,
      num_heads: heads,
      num_kv_heads: kvHeads,
      ffn_size: v.ffn_size ?? 4 * d,
      gated_ffn: Boolean(v.gated_ffn),
      head_dim: v.head_dim ?? d / heads,
      dtype: v.dtype ?? 'fp16',
      kv_dtype: v.kv_dtype ?? 'fp16',
      max_seq_len: v.max_seq_len ?? null,
    },
  };
}

/** Weights of one decoder block (biases and norms ignored, as on the server). */
export function paramsPerBlock(a: ResolvedArchitecture): number {
  const d = a.hidden_size;
  const qOut = a.num_heads * a.head_dim;
  const kvOut = a.num_kv_heads * a.head_dim;
  const attention = d * qOut + 2 * d * kvOut + qOut * d;
  const ffn = (a.gated_ffn ? 3 : 2) * d * a.ffn_size;
  return attention + ffn;
}

export function kvBytesPerToken(a: ResolvedArchitecture): number {
  return 2 * a.num_kv_heads * a.head_dim * KV_BYTES[a.kv_dtype];
}

/** Derived sizes: block size, KV size for `maxTokens` (or the architecture's max_seq_len). */
export function deriveSizes(a: Architecture, opts: { maxTokens?: number | null; base?: Architecture } = {}): DeriveResult {
  const { arch, errors } = resolveArchitecture(a, opts.base);
  if (!arch) return { ok: false, errors };
  const params = paramsPerBlock(arch);
  const blockSize = (params * BYTES_PER_PARAM[arch.dtype]) / GB;
  const maxTokens = opts.maxTokens ?? arch.max_seq_len;
  const kvPerToken = kvBytesPerToken(arch);
  return {
    ok: true,
    errors: {},
    arch,
    params_per_block: params,
    num_blocks: arch.num_layers,
    block_size_gb: blockSize,
    cache_size_gb: maxTokens ? (kvPerToken * maxTokens) / GB : null,
    kv_bytes_per_token: kvPerToken,
    flops_per_token_gflops: (2 * params) / 1e9,
    total_weights_gb: blockSize * arch.num_layers,
  };
}
