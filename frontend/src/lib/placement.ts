// Layout of the placement diagram from a plan document: one row per server,
// blocks 0..L-1 on the x axis, the server's range as a bar, and inside it one
// lane per chain through that server, showing the blocks that chain runs there.
// Units: x in blocks, y in pixels (rows grow with the number of lanes).

import { chainColor, UNUSED_COLOR } from './colors';
import type { PlanDocument, ScenarioDoc } from '../types';

export interface ChainSegment {
  chain: number;          // index into plan.chains (fastest first)
  start: number;          // first block this chain runs on the server
  count: number;          // m_ij
  hop: number;            // position of the server in the chain
  color: string;
}

export interface PlacementRow {
  server: string;
  index: number;
  start: number;          // a_j
  count: number;          // m_j (0 = unused)
  used: boolean;          // holds blocks
  segments: ChainSegment[];
  chains: number[];       // chain indices through this server
  color: string;          // bar colour: the single chain's colour, neutral when several or none
  y: number;
  height: number;
}

export interface PlacementLayout {
  numBlocks: number;
  rows: PlacementRow[];
  chainColors: string[];
  coverage: number[];       // servers holding each block
  uncovered: number[];      // blocks no server holds
  height: number;
  warnings: string[];
}

export interface LayoutOptions {
  rowHeight?: number;      // minimum row height
  laneHeight?: number;     // height of one chain lane
  rowGap?: number;
  maxRowHeight?: number;
  serverOrder?: string[];  // all servers of the scenario, in order (unused ones get empty rows)
  numBlocks?: number;
}

/** Number of blocks L of a plan: the scenario's, else the largest covered index + 1. */
export function planNumBlocks(plan: PlanDocument, scenario?: ScenarioDoc | null): number {
  const fromScenario = scenario?.model?.num_blocks ?? (typeof plan.num_blocks === 'number' ? plan.num_blocks : undefined);
  if (fromScenario && fromScenario > 0) return fromScenario;
  let L = 0;
  for (const p of plan.placement) L = Math.max(L, p.start_block + p.num_blocks);
  for (const ch of plan.chains) L = Math.max(L, ch.blocks.reduce((a, b) => a + b, 0));
  return L;
}

/**
 * For each chain, the block range that each of its hops runs: hop i starts
 * where hop i-1 ended (a chain runs blocks 0..L-1 in order).
 */
export function chainHopRanges(blocks: number[]): Array<{ start: number; count: number }> {
  const out: Array<{ start: number; count: number }> = [];
  let cursor = 0;
  for (const m of blocks) {
    out.push({ start: cursor, count: m });
    cursor += m;
  }
  return out;
}

export function layoutPlacement(plan: PlanDocument, opts: LayoutOptions = {}): PlacementLayout {
  const rowHeight = opts.rowHeight ?? 22;
  const laneHeight = opts.laneHeight ?? 6;
  const rowGap = opts.rowGap ?? 6;
  const maxRowHeight = opts.maxRowHeight ?? 64;
  const warnings: string[] = [];

  const L = opts.numBlocks && opts.numBlocks > 0 ? opts.numBlocks : planNumBlocks(plan);
  const byServer = new Map<string, { start: number; count: number }>();
  for (const p of plan.placement) {
    if (byServer.has(p.server)) warnings.push(`server ${p.server} appears twice in the placement`);
    byServer.set(p.server, { start: p.start_block, count: p.num_blocks });
  }

  const order: string[] = [];
  const seen = new Set<string>();
  for (const s of [...(opts.serverOrder ?? []), ...plan.placement.map((p) => p.server)]) {
    if (!seen.has(s)) {
      seen.add(s);
      order.push(s);
    }
  }
  const chainColors = plan.chains.map((_, k) => chainColor(k));

  const segmentsBy = new Map<string, ChainSegment[]>();
  plan.chains.forEach((ch, k) => {
    chainHopRanges(ch.blocks).forEach((r, hop) => {
      const server = ch.servers[hop];
      if (server === undefined) return;
      if (!seen.has(server)) {
        seen.add(server);
        order.push(server);
        warnings.push(`chain ${k + 1} uses server ${server}, which has no placement`);
      }
      const list = segmentsBy.get(server) ?? [];
      list.push({ chain: k, start: r.start, count: r.count, hop, color: chainColors[k] });
      segmentsBy.set(server, list);
      const placed = byServer.get(server);
      if (placed && (r.start < placed.start || r.start + r.count > placed.start + placed.count)) {
        warnings.push(`chain ${k + 1} runs blocks ${r.start}..${r.start + r.count - 1} on ${server}, outside its range`);
      }
    });
  });

  const rows: PlacementRow[] = [];
  let y = 0;
  order.forEach((server, index) => {
    const placed = byServer.get(server) ?? { start: 0, count: 0 };
    const segments = segmentsBy.get(server) ?? [];
    const chains = [...new Set(segments.map((s) => s.chain))];
    const lanes = Math.max(1, chains.length);
    // servers without blocks get a slimmer row so the used ones stand out
    const height = placed.count > 0 ? Math.min(maxRowHeight, Math.max(rowHeight, lanes * laneHeight + 8)) : Math.round(rowHeight * 0.6);
    rows.push({
      server,
      index,
      start: placed.start,
      count: placed.count,
      used: placed.count > 0,
      segments,
      chains,
      color: chains.length === 1 ? chainColors[chains[0]] : UNUSED_COLOR,
      y,
      height,
    });
    y += height + rowGap;
  });

  const coverage = new Array<number>(Math.max(0, L)).fill(0);
  for (const r of rows) {
    for (let b = Math.max(0, r.start); b < Math.min(L, r.start + r.count); b++) coverage[b]++;
  }
  const uncovered: number[] = [];
  coverage.forEach((c, b) => c === 0 && uncovered.push(b));

  return { numBlocks: L, rows, chainColors, coverage, uncovered, height: Math.max(0, y - rowGap), warnings };
}

/** Blocks with zero coverage as compact ranges: [0,1,2,7] -> "0–2, 7". */
export function describeRanges(blocks: number[]): string {
  const parts: string[] = [];
  let i = 0;
  while (i < blocks.length) {
    let j = i;
    while (j + 1 < blocks.length && blocks[j + 1] === blocks[j] + 1) j++;
    parts.push(i === j ? String(blocks[i]) : `${blocks[i]}–${blocks[j]}`);
    i = j + 1;
  }
  return parts.join(', ');
}

/** Range label for a server: "blocks 0–23 (24)" or "no blocks". */
export function rangeLabel(start: number, count: number): string {
  if (count <= 0) return 'no blocks';
  return count === 1 ? `block ${start} (1)` : `blocks ${start}–${start + count - 1} (${count})`;
}
