import { describe, expect, it } from 'vitest';
import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseTimestamp, parseTraceCsv } from '../src/lib/trace';

describe('parseTimestamp', () => {
  it('reads the Azure trace format with 7 fraction digits', () => {
    const a = parseTimestamp('2023-11-16 18:17:03.9799600')!;
    const b = parseTimestamp('2023-11-16 18:17:04.0319600')!;
    expect(b - a).toBeCloseTo(0.052, 6);
    expect(a).toBeCloseTo(Date.UTC(2023, 10, 16, 18, 17, 3) / 1000 + 0.97996, 6);
  });
  it('reads seconds, ISO T separator and offsets', () => {
    expect(parseTimestamp('12.5')).toBe(12.5);
    expect(parseTimestamp('2024-01-01T00:00:00Z')).toBe(Date.UTC(2024, 0, 1) / 1000);
    expect(parseTimestamp('2024-01-01 01:00:00+01:00')).toBe(Date.UTC(2024, 0, 1) / 1000);
  });
  it('rejects junk', () => {
    expect(parseTimestamp('yesterday')).toBeNull();
    expect(parseTimestamp('2024-13-01 00:00:00')).toBeNull();
  });
});

describe('parseTraceCsv', () => {
  const csv = 'TIMESTAMP,ContextTokens,GeneratedTokens\n'
    + '2023-11-16 18:17:04.0000000,100,10\n'
    + '2023-11-16 18:17:03.0000000,300,20\n'
    + '2023-11-16 18:17:05.0000000,200,30\n';

  it('makes rows relative to the first arrival, sorted', () => {
    const t = parseTraceCsv(csv);
    expect(t.errors).toEqual([]);
    expect(t.rows).toEqual([[0, 300, 20], [1, 100, 10], [2, 200, 30]]);
    expect(t.count).toBe(3);
    expect(t.span_s).toBe(2);
    expect(t.mean_rate).toBe(1);
    expect(t.mean_input_tokens).toBe(200);
    expect(t.mean_output_tokens).toBe(20);
  });

  it('keeps only the first `limit` requests', () => {
    expect(parseTraceCsv(csv, 2).rows).toHaveLength(2);
  });

  it('names missing columns', () => {
    expect(parseTraceCsv('TIMESTAMP,foo\n1,2').errors[0]).toBe('missing columns: ContextTokens, GeneratedTokens');
  });

  it('skips bad lines with their line numbers, and keeps good ones', () => {
    const t = parseTraceCsv('TIMESTAMP,ContextTokens,GeneratedTokens\n0,10,1\nnope,1,1\n1,-3,1\n2,5,0\n3,5,2\n');
    expect(t.rows).toEqual([[0, 10, 1], [3, 5, 2]]);
    expect(t.errors).toEqual([
      'line 3: bad timestamp "nope"',
      'line 4: ContextTokens must be a whole number >= 0',
      'line 5: GeneratedTokens must be a whole number >= 1',
    ]);
  });

  it('accepts input_tokens/output_tokens/arrival_s headers', () => {
    expect(parseTraceCsv('arrival_s,input_tokens,output_tokens\n0.5,1,1\n1.5,2,2').rows).toEqual([[0, 1, 1], [1, 2, 2]]);
  });

  const shared = fileURLToPath(new URL('../../../shared/data/azure_llm_inference_trace_code_2023-11.csv', import.meta.url));
  it.skipIf(!existsSync(shared))('parses the shared Azure trace (8,819 requests, ~2,048 input and ~27.9 output tokens, ~2.57 req/s)', () => {
    const t = parseTraceCsv(readFileSync(shared, 'utf-8'));
    expect(t.errors).toEqual([]);
    expect(t.count).toBe(8819);
    expect(t.mean_input_tokens!).toBeGreaterThan(2000);
    expect(t.mean_input_tokens!).toBeLessThan(2100);
    expect(t.mean_output_tokens!).toBeCloseTo(27.9, 1);
    const first = parseTraceCsv(readFileSync(shared, 'utf-8'), 1000);
    // rates cross-checked with Python's datetime: 999 gaps over 521.588576 s; whole trace 2.567/s
    expect(first.mean_rate!).toBeCloseTo(999 / 521.588576, 6);
    expect(t.mean_rate!).toBeGreaterThan(2.5);
    expect(t.mean_rate!).toBeLessThan(2.6);
  });
});
