import { describe, expect, it } from 'vitest';
import { deriveSizes, paramsPerBlock, resolveArchitecture } from '../src/lib/derive';

// Expected figures computed independently with solvers/calibration.py (the server's formulas).
const PRESETS = {
  'llama-2-7b': { arch: { hidden_size: 4096, num_layers: 32, num_heads: 32, num_kv_heads: 32, ffn_size: 11008, gated_ffn: true, head_dim: 128, dtype: 'fp16', max_seq_len: 4096 }, params: 202375168, block: 0.404750336, kv: 0.067108864 },
  'llama-2-70b': { arch: { hidden_size: 8192, num_layers: 80, num_heads: 64, num_kv_heads: 8, ffn_size: 28672, gated_ffn: true, head_dim: 128, dtype: 'fp16', max_seq_len: 4096 }, params: 855638016, block: 1.711276032, kv: 0.016777216 },
  'llama-3-8b': { arch: { hidden_size: 4096, num_layers: 32, num_heads: 32, num_kv_heads: 8, ffn_size: 14336, gated_ffn: true, head_dim: 128, dtype: 'bf16', max_seq_len: 8192 }, params: 218103808, block: 0.436207616, kv: 0.033554432 },
  'bloom-176b': { arch: { hidden_size: 14336, num_layers: 70, num_heads: 112, num_kv_heads: 112, ffn_size: 57344, gated_ffn: false, head_dim: 128, dtype: 'nf4', max_seq_len: 2048 }, params: 2466250752, block: 1.310195712, kv: 0.117440512 },
} as const;

describe('deriveSizes', () => {
  for (const [name, p] of Object.entries(PRESETS)) {
    it(`matches the server's formulas for ${name}`, () => {
      const r = deriveSizes(p.arch);
      expect(r.ok).toBe(true);
      expect(r.params_per_block).toBe(p.params);
      expect(r.block_size_gb).toBeCloseTo(p.block, 12);
      expect(r.cache_size_gb).toBeCloseTo(p.kv, 12);
      expect(r.num_blocks).toBe(p.arch.num_layers);
      expect(r.flops_per_token_gflops).toBeCloseTo((2 * p.params) / 1e9, 12);
    });
  }

  it('uses max_tokens over max_seq_len for the KV size', () => {
    const r = deriveSizes(PRESETS['llama-2-7b'].arch, { maxTokens: 1024 });
    expect(r.cache_size_gb).toBeCloseTo(0.067108864 / 4, 12);
  });

  it('has no KV size without a sequence length', () => {
    const r = deriveSizes({ hidden_size: 1024, num_layers: 4, num_heads: 8 });
    expect(r.ok).toBe(true);
    expect(r.cache_size_gb).toBeNull();
  });

  it('fills the parser defaults: kv heads = heads, head_dim = d/heads, ffn = 4d, fp16', () => {
    const { arch } = resolveArchitecture({ hidden_size: 1024, num_layers: 4, num_heads: 8 });
    expect(arch).toMatchObject({ num_kv_heads: 8, head_dim: 128, ffn_size: 4096, gated_ffn: false, dtype: 'fp16', kv_dtype: 'fp16' });
    // 4*d^2 attention + 2*d*4d ffn = 12 d^2
    expect(paramsPerBlock(arch!)).toBe(12 * 1024 * 1024);
  });

  it('gated FFN has three matrices', () => {
    const a = resolveArchitecture({ hidden_size: 64, num_layers: 1, num_heads: 4, ffn_size: 100, gated_ffn: true }).arch!;
    const b = resolveArchitecture({ hidden_size: 64, num_layers: 1, num_heads: 4, ffn_size: 100, gated_ffn: false }).arch!;
    expect(paramsPerBlock(a) - paramsPerBlock(b)).toBe(64 * 100);
  });

  it('bytes per parameter follow the dtype (nf4 = 4.25 bits)', () => {
    const base = { hidden_size: 1000, num_layers: 2, num_heads: 10 };
    const p = 12 * 1000 * 1000;
    expect(deriveSizes({ ...base, dtype: 'fp32' }).block_size_gb).toBeCloseTo((p * 4) / 1e9, 12);
    expect(deriveSizes({ ...base, dtype: 'int8' }).block_size_gb).toBeCloseTo(p / 1e9, 12);
    expect(deriveSizes({ ...base, dtype: 'nf4' }).block_size_gb).toBeCloseTo((p * 4.25) / 8 / 1e9, 12);
  });

  it('reports errors per field', () => {
    expect(deriveSizes({ num_layers: 4 }).errors).toMatchObject({ hidden_size: 'is required', num_heads: 'is required' });
    expect(deriveSizes({ hidden_size: 100, num_layers: 2, num_heads: 3 }).errors.head_dim).toMatch(/required/);
    expect(deriveSizes({ hidden_size: 96, num_layers: 2, num_heads: 8, num_kv_heads: 3 }).errors.num_kv_heads).toBe('must divide num_heads');
    expect(deriveSizes({ hidden_size: -5, num_layers: 2, num_heads: 1 }).errors.hidden_size).toMatch(/> 0/);
    expect(deriveSizes({ hidden_size: 1.5, num_layers: 2, num_heads: 1 }).ok).toBe(false);
  });

  it('overrides a base (preset) field by field, ignoring NaN from empty inputs', () => {
    const r = deriveSizes({ num_layers: 10, hidden_size: Number.NaN }, { base: PRESETS['llama-2-7b'].arch });
    expect(r.ok).toBe(true);
    expect(r.num_blocks).toBe(10);
    expect(r.block_size_gb).toBeCloseTo(0.404750336, 12);
  });
});

describe('Hugging Face config.json', async () => {
  const { readHfConfig, suggestedName } = await import('../src/lib/hfconfig');
  it('accepts a config object with a model_type and suggests a name', () => {
    const r = readHfConfig(JSON.stringify({ model_type: 'llama', _name_or_path: 'meta-llama/Llama-2-7b-hf', hidden_size: 4096 }), 'config.json');
    expect('error' in r).toBe(false);
    if (!('error' in r)) {
      expect(r.name).toBe('Llama-2-7b-hf');
      expect(r.config.hidden_size).toBe(4096);
    }
    expect(suggestedName({ model_type: 'qwen2' })).toBe('qwen2');
  });
  it('names what is wrong with a file that is not one', () => {
    expect(readHfConfig('{nope', 'x.json')).toMatchObject({ error: expect.stringContaining('not valid JSON') });
    expect(readHfConfig('[1]', 'x.json')).toMatchObject({ error: 'x.json is not a JSON object' });
    expect(readHfConfig('{"hidden_size": 1}', 'x.json')).toMatchObject({ error: expect.stringContaining('no "model_type"') });
  });
});
