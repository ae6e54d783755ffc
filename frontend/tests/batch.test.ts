import { describe, expect, it } from 'vitest';
import { batchCapacity, curveErrors, curveMessage, formatCurve, parseCurve, servesBatched } from '../src/lib/batch';
import { emptyServer, serversFromCsv, serversToCsv, toScenarioServer, validateServers } from '../src/lib/servers';
import type { PlanDocument } from '../src/types';

describe('batch slowdown text', () => {
  it('reads and writes the compact form', () => {
    expect(parseCurve('1:1, 8:1.5, 64:4')).toEqual([[1, 1], [8, 1.5], [64, 4]]);
    expect(parseCurve(' 1:1  8:1.5;64 : 4 ')).toEqual([[1, 1], [8, 1.5], [64, 4]]);
    expect(parseCurve('   ')).toBeNull();
    expect(parseCurve('1-1, 8:2')).toBe('1-1, 8:2');       // not pairs: kept as typed
    expect(formatCurve([[1, 1], [8, 1.5]])).toBe('1:1, 8:1.5');
    expect(formatCurve(null)).toBe('');
  });

  it('names the entry that breaks the rules, like the API', () => {
    expect(curveErrors([[1, 1], [8, 1.5]])).toEqual({});
    expect(Object.keys(curveErrors([[2, 1]]))).toEqual(['[0]']);
    expect(curveErrors([[1, 1], [8, 0.5]])['[1]']).toMatch(/at least 1/);
    expect(curveErrors([[1, 1], [8, 2], [16, 1.5]])['[2]']).toMatch(/never decreases/);
    expect(curveErrors([[1, 1], [8, 2], [4, 3]])['[2]']).toMatch(/above the previous/);
    expect(curveErrors([[1, 1], [2.5, 2]])['[1]']).toMatch(/integer/);
    expect(curveErrors('1-1')['']).toMatch(/concurrency:factor/);
    const errors = validateServers([{ ...emptyServer('a'), memory_gb: 8, comm_time_s: 0, block_time_s: 0.1, batch_slowdown: [[1, 1], [8, 0.5]] }]);
    expect(Object.keys(errors)).toEqual(['servers[0].batch_slowdown[1]']);
    expect(curveMessage([[1, 1], [8, 0.5]], { '[1]': ['factor must be between 1 and 1e+06, got 0.5'] }))
      .toBe('entry 2 (8:0.5): factor must be between 1 and 1e+06, got 0.5');
  });

  it('travels through the scenario and CSV', () => {
    const s = { ...emptyServer('a'), memory_gb: 8, batch_slowdown: [[1, 1], [8, 1.5]] as Array<[number, number]> };
    expect(toScenarioServer(s).batch_slowdown).toEqual([[1, 1], [8, 1.5]]);
    expect(toScenarioServer(emptyServer('b')).batch_slowdown).toBeUndefined();
    const back = serversFromCsv(serversToCsv([s, { ...emptyServer('b'), memory_gb: 4 }]));
    expect(back.errors).toEqual([]);
    expect(back.servers.map((x) => x.batch_slowdown)).toEqual([[[1, 1], [8, 1.5]], null]);
    expect(serversFromCsv('server_id,memory_gb,batch_slowdown\na,8,oops\n').errors[0]).toMatch(/line 2, batch_slowdown/);
  });
});

describe('plan figures under batching', () => {
  const doc = (extra: Partial<PlanDocument>) => ({ feasible: true, placement: [], chains: [], ...extra }) as PlanDocument;
  it('says a plan batches when its saturation rate is below its service rate', () => {
    expect(servesBatched(doc({ total_service_rate: 160, saturation_rate_rps: 114 }))).toBe(true);
    expect(servesBatched(doc({ total_service_rate: 160, saturation_rate_rps: 160 }))).toBe(false);
    expect(servesBatched(doc({ total_service_rate: 160 }))).toBe(false);
  });
  it('reads the batch_capacity notes and ignores what is not one', () => {
    const note = { server: 's0', jobs: 8, more_jobs: 82, on_chain: 1, text: 's0 holds 8 job(s) ...' };
    expect(batchCapacity(doc({ batch_capacity: [note, { server: 1 }, null] }))).toEqual([note]);
    expect(batchCapacity(doc({}))).toEqual([]);
  });
});
