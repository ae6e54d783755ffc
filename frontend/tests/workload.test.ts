import { describe, expect, it } from 'vitest';
import { parseWorkload, workloadForm } from '../src/lib/workload';

describe('default workload form', () => {
  it('round-trips a workload through the form', () => {
    const form = workloadForm({ arrival_rate: 2.5, target_load: 0.7, output_tokens: 128 });
    expect(form).toEqual({ arrival_rate: '2.5', target_load: '0.7', input_tokens: '', output_tokens: '128', max_tokens: '' });
    expect(parseWorkload(form)).toEqual({ workload: { arrival_rate: 2.5, target_load: 0.7, output_tokens: 128 }, errors: {} });
  });
  it('names each bad value by its field, with the parser limits', () => {
    const { errors } = parseWorkload({ arrival_rate: '-1', target_load: '1', input_tokens: 'abc', output_tokens: '0', max_tokens: '2.5' });
    expect(errors.arrival_rate).toMatch(/> 0/);
    expect(errors.target_load).toMatch(/between 0 and 1/);
    expect(errors.input_tokens).toBe('must be a number');
    expect(errors.output_tokens).toMatch(/≥ 1/);
    expect(errors.max_tokens).toMatch(/whole number/);
  });
  it('clears the workload when the form is empty, and keeps a trace it does not edit', () => {
    const empty = workloadForm(null);
    expect(parseWorkload(empty).workload).toBeNull();
    const trace: Array<[number, number, number]> = [[0, 10, 20]];
    expect(parseWorkload({ ...empty, arrival_rate: '3' }, { trace }).workload).toEqual({ arrival_rate: 3, trace });
  });
});
