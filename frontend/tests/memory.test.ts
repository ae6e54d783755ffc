import { describe, expect, it } from 'vitest';
import { checkChains, memoryBreakdown, memoryInputs, slotsUsedByServer } from '../src/lib/memory';
import type { PlanDocument, ScenarioDoc } from '../src/types';

const scenario: ScenarioDoc = {
  model: { num_blocks: 70, block_size_gb: 1.32, cache_size_gb: 0.11 },
  servers: [
    { id: 'fra', memory_gb: 40 },
    { id: 'ams', memory_gb: 20, calibration: { memory_gb: 18 } },
    { id: 'idle', memory_gb: 10 },
  ],
  workload: { arrival_rate: 0.2 },
};

const plan: PlanDocument = {
  algorithm: 'proposed',
  feasible: true,
  placement: [
    { server: 'fra', start_block: 0, num_blocks: 27 },
    { server: 'ams', start_block: 57, num_blocks: 13 },
  ],
  chains: [{ servers: ['fra', 'ams'], blocks: [27, 43], service_time_s: 10, capacity: 2 }],
};

describe('memoryBreakdown', () => {
  it('splits memory into weights, reserved KV, free slots and remainder', () => {
    const rows = memoryBreakdown(plan, memoryInputs(scenario), ['fra', 'ams', 'idle']);
    const fra = rows[0];
    expect(fra.weights_gb).toBeCloseTo(27 * 1.32, 9);             // 35.64
    expect(fra.slots_total).toBe(Math.floor((40 - 35.64) / 0.11)); // 39
    expect(fra.slots_used).toBe(54);                               // 27 blocks * capacity 2
    expect(fra.kv_used_gb).toBeCloseTo(54 * 0.11, 9);
    // this (deliberately inconsistent) plan reserves more than fits: flagged
    expect(fra.over).toBe(true);
    expect(fra.kv_free_gb).toBe(0);
  });

  it('adds up to the server memory when the plan fits', () => {
    const ok: PlanDocument = { ...plan, chains: [{ ...plan.chains[0], capacity: 1, blocks: [27, 43] }],
      placement: [{ server: 'fra', start_block: 0, num_blocks: 27 }, { server: 'ams', start_block: 27, num_blocks: 43 }] };
    const inputs = memoryInputs({ ...scenario, servers: [{ id: 'fra', memory_gb: 40 }, { id: 'ams', memory_gb: 80 }] });
    for (const r of memoryBreakdown(ok, inputs)) {
      expect(r.over).toBe(false);
      expect(r.weights_gb + r.kv_used_gb + r.kv_free_gb + r.remainder_gb).toBeCloseTo(r.memory_gb!, 9);
      expect(r.remainder_gb).toBeLessThan(0.11);
      expect(r.free_gb).toBeCloseTo(r.kv_free_gb + r.remainder_gb, 9);
    }
  });

  it('uses the calibrated memory and lists idle servers', () => {
    const rows = memoryBreakdown(plan, memoryInputs(scenario), ['fra', 'ams', 'idle']);
    expect(rows[1].memory_gb).toBe(18);
    expect(rows[2]).toMatchObject({ server: 'idle', blocks: 0, weights_gb: 0, slots_total: 90, slots_used: 0 });
  });

  it('prefers memory figures carried by the plan placement', () => {
    const withFigures: PlanDocument = { ...plan, placement: [{ server: 'fra', start_block: 0, num_blocks: 27, memory_gb: 39, cache_slots: 12, cache_slots_used: 10 }] };
    const [r] = memoryBreakdown(withFigures, memoryInputs(scenario));
    expect(r).toMatchObject({ memory_gb: 39, slots_total: 12, slots_used: 10 });
  });

  it('sums slots over every chain through a server', () => {
    const p: PlanDocument = { ...plan, chains: [
      { servers: ['a', 'b'], blocks: [3, 7], service_time_s: 1, capacity: 2 },
      { servers: ['c', 'b'], blocks: [5, 5], service_time_s: 2, capacity: 4 },
    ] };
    expect(Object.fromEntries(slotsUsedByServer(p))).toEqual({ a: 6, b: 14 + 20, c: 20 });
  });
});

describe('checkChains', () => {
  it('accepts a chain that covers all blocks inside its ranges', () => {
    const p: PlanDocument = { ...plan, placement: [{ server: 'fra', start_block: 0, num_blocks: 27 }, { server: 'ams', start_block: 27, num_blocks: 43 }] };
    expect(checkChains(p, 70)).toEqual([]);
  });
  it('reports a wrong total and hops outside a range', () => {
    expect(checkChains(plan, 70).join('\n')).toMatch(/ams does not hold blocks 27..69/);
    const short: PlanDocument = { ...plan, chains: [{ servers: ['fra'], blocks: [27], service_time_s: 1, capacity: 1 }] };
    expect(checkChains(short, 70)[0]).toMatch(/sum to 27, not 70/);
  });
});
