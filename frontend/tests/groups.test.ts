import { describe, expect, it } from 'vitest';
import { blockCoverage, groupServers } from '../src/lib/groups';
import type { PlanDocument, ScenarioDoc } from '../src/types';

const servers = Array.from({ length: 1000 }, (_, i) => ({ id: `s-${String(i).padStart(4, '0')}`, memory_gb: i % 2 ? 40 : 80, comm_time_s: 0.1, block_time_s: 0.02 }));
const scenario: ScenarioDoc = { model: { num_blocks: 10 }, servers, workload: {} };
const plan: PlanDocument = {
  algorithm: 'proposed', feasible: true,
  placement: [
    { server: 's-0000', start_block: 0, num_blocks: 6, cache_slots_used: 12 },
    { server: 's-0002', start_block: 0, num_blocks: 6, cache_slots_used: 12 },
    { server: 's-0001', start_block: 6, num_blocks: 4, cache_slots_used: 8 },
  ],
  chains: [
    { servers: ['s-0000', 's-0001'], blocks: [6, 4], service_time_s: 1, capacity: 2 },
    { servers: ['s-0002', 's-0001'], blocks: [6, 4], service_time_s: 1, capacity: 2 },
  ],
};

describe('groupServers', () => {
  const groups = groupServers(plan, scenario, servers.map((s) => s.id));
  it('puts identical servers with the same range in one group, used groups first', () => {
    expect(groups.map((g) => [g.servers.length, g.start, g.num_blocks])).toEqual([[2, 0, 6], [1, 6, 4], [499, 0, 0], [498, 0, 0]]);
    expect(groups.reduce((n, g) => n + g.servers.length, 0)).toBe(1000);
  });
  it('counts the chains and KV slots of each group', () => {
    expect(groups[0]).toMatchObject({ servers: ['s-0000', 's-0002'], chains: 2, slots_used: 24, figures: { memory_gb: 80 } });
    expect(groups[1]).toMatchObject({ chains: 2, slots_used: 8 });
    expect(groups[2].chains).toBe(0);
  });
  it('counts coverage over every server, not over groups', () => {
    expect(blockCoverage(plan, 10)).toEqual({ min: 1, max: 2, uncovered: [] });
    expect(blockCoverage({ ...plan, placement: plan.placement.slice(0, 1) }, 10).uncovered).toEqual([6, 7, 8, 9]);
  });
});
