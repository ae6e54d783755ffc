// Memory per server for a plan: the blocks' weights, the KV cache slots the
// plan's chains reserve (m_ij * c_k per chain through the server), the slots
// left free, and the remainder too small for one slot. All in GB.

import type { PlanDocument, ScenarioDoc } from '../types';
import { chainHopRanges } from './placement';

export interface MemoryRow {
  server: string;
  memory_gb: number | null;
  blocks: number;
  weights_gb: number;
  slots_total: number | null;     // floor((M - s_m*m) / s_c)
  slots_used: number;             // sum over chains k through j of m_ij * c_k
  kv_used_gb: number;
  kv_free_gb: number;             // free slots * s_c
  remainder_gb: number;           // memory left that is smaller than one slot
  free_gb: number | null;         // memory not used by weights nor reserved KV
  over: boolean;                  // weights + reserved KV exceed the memory
}

export interface MemoryInputs {
  block_size_gb: number | null;
  cache_size_gb: number | null;
  memory: Map<string, number>;
}

export function memoryInputs(scenario: ScenarioDoc | null | undefined): MemoryInputs {
  const memory = new Map<string, number>();
  for (const s of scenario?.servers ?? []) {
    const m = (s.calibration && typeof s.calibration.memory_gb === 'number' ? s.calibration.memory_gb : null) ?? s.memory_gb;
    if (typeof m === 'number') memory.set(s.id, m);
  }
  return {
    block_size_gb: scenario?.model?.block_size_gb ?? null,
    cache_size_gb: scenario?.model?.cache_size_gb ?? null,
    memory,
  };
}

/** Cache slots used on each server: sum over chains through it of blocks run there times capacity. */
export function slotsUsedByServer(plan: PlanDocument): Map<string, number> {
  const used = new Map<string, number>();
  for (const ch of plan.chains) {
    ch.servers.forEach((s, hop) => {
      const m = ch.blocks[hop] ?? 0;
      used.set(s, (used.get(s) ?? 0) + m * ch.capacity);
    });
  }
  return used;
}

const EPS = 1e-9;

export function memoryBreakdown(plan: PlanDocument, inputs: MemoryInputs, serverOrder: string[] = []): MemoryRow[] {
  const used = slotsUsedByServer(plan);
  const placed = new Map(plan.placement.map((p) => [p.server, p]));
  const order = [...new Set([...serverOrder, ...plan.placement.map((p) => p.server)])];
  const sm = inputs.block_size_gb;
  const sc = inputs.cache_size_gb;
  return order.map((server) => {
    const p = placed.get(server);
    const blocks = p?.num_blocks ?? 0;
    const M = (typeof p?.memory_gb === 'number' ? p.memory_gb : undefined) ?? inputs.memory.get(server) ?? null;
    const weights = (typeof p?.block_memory_gb === 'number' ? p.block_memory_gb : undefined) ?? (sm !== null ? sm * blocks : 0);
    const slotsUsed = (typeof p?.cache_slots_used === 'number' ? p.cache_slots_used : undefined) ?? used.get(server) ?? 0;
    let slotsTotal: number | null = typeof p?.cache_slots === 'number' ? p.cache_slots : null;
    if (slotsTotal === null && M !== null && sc) slotsTotal = Math.max(0, Math.floor((M - weights) / sc + EPS));
    const kvUsed = sc ? slotsUsed * sc : 0;
    const kvFree = sc && slotsTotal !== null ? Math.max(0, slotsTotal - slotsUsed) * sc : 0;
    const free = M !== null ? M - weights - kvUsed : null;
    const remainder = free !== null ? Math.max(0, free - kvFree) : 0;
    return {
      server,
      memory_gb: M,
      blocks,
      weights_gb: weights,
      slots_total: slotsTotal,
      slots_used: slotsUsed,
      kv_used_gb: kvUsed,
      kv_free_gb: kvFree,
      remainder_gb: remainder < 1e-9 ? 0 : remainder,
      free_gb: free,
      over: free !== null && free < -1e-6,
    };
  });
}

/** Checks that every chain covers blocks 0..L-1 exactly and its hops are in its servers' ranges. */
export function checkChains(plan: PlanDocument, numBlocks: number): string[] {
  const problems: string[] = [];
  const placed = new Map(plan.placement.map((p) => [p.server, p]));
  plan.chains.forEach((ch, k) => {
    const total = ch.blocks.reduce((a, b) => a + b, 0);
    if (total !== numBlocks) problems.push(`chain ${k + 1}: blocks sum to ${total}, not ${numBlocks}`);
    if (ch.blocks.length !== ch.servers.length) problems.push(`chain ${k + 1}: ${ch.servers.length} servers but ${ch.blocks.length} hop sizes`);
    chainHopRanges(ch.blocks).forEach((r, hop) => {
      const p = placed.get(ch.servers[hop]);
      if (p && (r.start < p.start_block || r.start + r.count > p.start_block + p.num_blocks)) {
        problems.push(`chain ${k + 1}: ${ch.servers[hop]} does not hold blocks ${r.start}..${r.start + r.count - 1}`);
      }
    });
  });
  return problems;
}
