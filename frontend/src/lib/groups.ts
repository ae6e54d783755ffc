// Large plans summarised: servers with identical figures and the same block
// range form one group, so a 20,000-server plan is a few dozen rows, not
// 20,000 (the plan page pages through the groups).

import type { PlanDocument, ScenarioDoc, ScenarioServer } from '../types';

/** From this many servers on, the plan page shows groups instead of one diagram row per server. */
export const LARGE_PLAN_SERVERS = 200;

export interface ServerGroup {
  key: string;
  servers: string[];           // member ids, in scenario order
  start: number;
  num_blocks: number;          // 0: the group holds no blocks
  figures: Partial<ScenarioServer>;
  chains: number;              // distinct chains through any member
  slots_used: number;          // KV slots the chains reserve on all members together
}

const FIGURES: Array<keyof ScenarioServer> = ['memory_gb', 'comm_time_s', 'block_time_s', 'tflops', 'mem_bandwidth_gb_s', 'rtt_ms', 'link_bandwidth_gbps'];

export function groupServers(plan: PlanDocument, scenario: ScenarioDoc | null | undefined, order: string[]): ServerGroup[] {
  const placed = new Map(plan.placement.map((p) => [p.server, p]));
  const figuresOf = new Map((scenario?.servers ?? []).map((s) => [s.id, s]));
  const chainsOf = new Map<string, Set<number>>();
  plan.chains.forEach((ch, k) => ch.servers.forEach((s) => {
    const set = chainsOf.get(s) ?? new Set<number>();
    set.add(k);
    chainsOf.set(s, set);
  }));
  const ids = [...order];
  const seen = new Set(ids);
  for (const p of plan.placement) if (!seen.has(p.server)) { seen.add(p.server); ids.push(p.server); }

  const groups = new Map<string, ServerGroup & { chainSet: Set<number> }>();
  for (const id of ids) {
    const p = placed.get(id);
    const s = figuresOf.get(id);
    const figures: Partial<ScenarioServer> = {};
    for (const f of FIGURES) if (s && s[f] !== undefined) (figures as Record<string, unknown>)[f] = s[f];
    const start = p && p.num_blocks > 0 ? p.start_block : 0;
    const count = p ? p.num_blocks : 0;
    const key = JSON.stringify([start, count, FIGURES.map((f) => figures[f] ?? null)]);
    let g = groups.get(key);
    if (!g) {
      g = { key, servers: [], start, num_blocks: count, figures, chains: 0, slots_used: 0, chainSet: new Set() };
      groups.set(key, g);
    }
    g.servers.push(id);
    g.slots_used += p?.cache_slots_used ?? 0;
    for (const k of chainsOf.get(id) ?? []) g.chainSet.add(k);
  }
  return [...groups.values()]
    .map(({ chainSet, ...g }) => ({ ...g, chains: chainSet.size }))
    // groups holding blocks first, by their range; then the idle ones, largest first
    .sort((a, b) => Number(b.num_blocks > 0) - Number(a.num_blocks > 0)
      || (a.num_blocks > 0 ? a.start - b.start || b.num_blocks - a.num_blocks : b.servers.length - a.servers.length)
      || a.servers[0].localeCompare(b.servers[0]));
}

/** How many servers hold each block (from the placement, all servers counted). */
export function blockCoverage(plan: PlanDocument, numBlocks: number): { min: number; max: number; uncovered: number[] } {
  const cov = new Array<number>(Math.max(0, numBlocks)).fill(0);
  for (const p of plan.placement) {
    for (let b = Math.max(0, p.start_block); b < Math.min(numBlocks, p.start_block + p.num_blocks); b++) cov[b]++;
  }
  const uncovered: number[] = [];
  cov.forEach((c, b) => c === 0 && uncovered.push(b));
  return { min: cov.length ? Math.min(...cov) : 0, max: cov.length ? Math.max(...cov) : 0, uncovered };
}
