import { describe, expect, it } from 'vitest';
import { chainHopRanges, describeRanges, layoutPlacement, planNumBlocks, rangeLabel } from '../src/lib/placement';
import { chainColor, UNUSED_COLOR } from '../src/lib/colors';
import type { PlanDocument } from '../src/types';

const plan: PlanDocument = {
  algorithm: 'proposed',
  feasible: true,
  placement: [
    { server: 'a', start_block: 0, num_blocks: 30 },
    { server: 'b', start_block: 30, num_blocks: 40 },
    { server: 'c', start_block: 0, num_blocks: 40 },
    { server: 'd', start_block: 0, num_blocks: 0 },
  ],
  chains: [
    { servers: ['a', 'b'], blocks: [30, 40], service_time_s: 5, capacity: 3 },
    { servers: ['c', 'b'], blocks: [40, 30], service_time_s: 6, capacity: 1 },
  ],
};

describe('chainHopRanges', () => {
  it('starts each hop where the previous ended', () => {
    expect(chainHopRanges([30, 25, 15])).toEqual([{ start: 0, count: 30 }, { start: 30, count: 25 }, { start: 55, count: 15 }]);
  });
});

describe('layoutPlacement', () => {
  it('has one row per server, in the scenario order, including unused servers', () => {
    const l = layoutPlacement(plan, { serverOrder: ['d', 'c', 'b', 'a', 'e'] });
    expect(l.rows.map((r) => r.server)).toEqual(['d', 'c', 'b', 'a', 'e']);
    expect(l.rows.find((r) => r.server === 'e')!.used).toBe(false);
    expect(l.rows.find((r) => r.server === 'd')!.count).toBe(0);
    // unused servers get slimmer rows than used ones
    expect(l.rows.find((r) => r.server === 'e')!.height).toBeLessThan(l.rows.find((r) => r.server === 'c')!.height);
  });

  it('derives L from the chains when no scenario is given', () => {
    expect(planNumBlocks(plan)).toBe(70);
    expect(layoutPlacement(plan).numBlocks).toBe(70);
    expect(planNumBlocks(plan, { model: { num_blocks: 80 }, servers: [], workload: {} })).toBe(80);
  });

  it('puts the segment each chain runs on a server into its row', () => {
    const l = layoutPlacement(plan);
    const b = l.rows.find((r) => r.server === 'b')!;
    expect(b.chains).toEqual([0, 1]);
    expect(b.segments).toEqual([
      { chain: 0, start: 30, count: 40, hop: 1, color: chainColor(0) },
      { chain: 1, start: 40, count: 30, hop: 1, color: chainColor(1) },
    ]);
    // several chains: neutral bar, one lane each, so the row is taller than a single-chain row
    expect(b.color).toBe(UNUSED_COLOR);
    const a = l.rows.find((r) => r.server === 'a')!;
    expect(a.color).toBe(chainColor(0));
    expect(b.height).toBeGreaterThanOrEqual(a.height);
  });

  it('stacks rows without overlap', () => {
    const l = layoutPlacement(plan, { rowGap: 4 });
    for (let i = 1; i < l.rows.length; i++) {
      expect(l.rows[i].y).toBe(l.rows[i - 1].y + l.rows[i - 1].height + 4);
    }
    const last = l.rows[l.rows.length - 1];
    expect(l.height).toBe(last.y + last.height);
  });

  it('counts coverage and finds uncovered blocks', () => {
    const gap: PlanDocument = { ...plan, chains: [], placement: [{ server: 'a', start_block: 0, num_blocks: 10 }, { server: 'b', start_block: 5, num_blocks: 10 }] };
    const l = layoutPlacement(gap, { numBlocks: 20 });
    expect(l.coverage.slice(0, 16)).toEqual([1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 0]);
    expect(l.uncovered).toEqual([15, 16, 17, 18, 19]);
    expect(describeRanges(l.uncovered)).toBe('15–19');
  });

  it('warns about chains that leave their servers ranges', () => {
    const bad: PlanDocument = { ...plan, chains: [{ servers: ['a', 'b'], blocks: [35, 35], service_time_s: 1, capacity: 1 }] };
    expect(layoutPlacement(bad).warnings.join(' ')).toMatch(/outside its range/);
  });

  it('gives baseline placements without chains neutral bars', () => {
    const petals: PlanDocument = { ...plan, chains: [] };
    const l = layoutPlacement(petals);
    expect(l.rows.every((r) => r.color === UNUSED_COLOR && r.segments.length === 0)).toBe(true);
  });
});

describe('labels', () => {
  it('describes ranges', () => {
    expect(describeRanges([0, 1, 2, 7, 9, 10])).toBe('0–2, 7, 9–10');
    expect(rangeLabel(0, 24)).toBe('blocks 0–23 (24)');
    expect(rangeLabel(5, 1)).toBe('block 5 (1)');
    expect(rangeLabel(0, 0)).toBe('no blocks');
  });
});
