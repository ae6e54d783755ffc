import { useMemo, useState } from 'preact/hooks';
import { describeRanges, layoutPlacement, rangeLabel } from '../lib/placement';
import { niceTicks, fmtSeconds } from '../lib/format';
import { withAlpha } from '../lib/colors';
import type { PlanDocument } from '../types';

interface Props {
  plan: PlanDocument;
  numBlocks: number;
  serverOrder: string[];
}

const LABEL_W = 150;
const PLOT_W = 820;
const RIGHT_W = 70;
const TOP = 34;
const COVERAGE_H = 8;

/** Servers (rows) against blocks 0..L-1: each server's range as a bar, one coloured lane per chain through it. */
export function PlacementDiagram({ plan, numBlocks, serverOrder }: Props) {
  const layout = useMemo(() => layoutPlacement(plan, { serverOrder, numBlocks }), [plan, numBlocks, serverOrder]);
  const [focus, setFocus] = useState<number | null>(null);
  const L = Math.max(1, layout.numBlocks);
  const x = (b: number) => LABEL_W + (b / L) * PLOT_W;
  const width = LABEL_W + PLOT_W + RIGHT_W;
  const height = TOP + COVERAGE_H + 10 + layout.height + 8;
  const ticks = niceTicks(L, 10).filter((t) => t <= L);
  const rowsTop = TOP + COVERAGE_H + 10;
  const used = layout.rows.filter((r) => r.used).length;
  const summary = `Placement of ${L} blocks on ${layout.rows.length} servers (${used} hold blocks), ${plan.chains.length} chains.`;

  // coverage strip: merge consecutive blocks with the same count
  const coverageRuns: Array<{ start: number; end: number; count: number }> = [];
  layout.coverage.forEach((c, b) => {
    const last = coverageRuns[coverageRuns.length - 1];
    if (last && last.count === c && last.end === b) last.end = b + 1;
    else coverageRuns.push({ start: b, end: b + 1, count: c });
  });
  const maxCov = Math.max(1, ...layout.coverage);

  return (
    <div class="placement">
      {plan.chains.length > 0 && (
        <div class="legend" role="group" aria-label="Chains (select one to highlight it)">
          {plan.chains.map((ch, k) => (
            <button
              type="button"
              key={k}
              class={`legend-item ${focus === k ? 'active' : ''}`}
              aria-pressed={focus === k}
              onClick={() => setFocus(focus === k ? null : k)}
              title={`${ch.servers.join(' → ')}; ${fmtSeconds(ch.service_time_s)}; capacity ${ch.capacity}`}
            >
              <span class="swatch" style={{ background: layout.chainColors[k] }} aria-hidden="true" />
              Chain {k + 1}
            </button>
          ))}
          {focus !== null && (
            <button type="button" class="link-button" onClick={() => setFocus(null)}>
              Show all
            </button>
          )}
        </div>
      )}
      <div class="placement-scroll">
        <svg
          viewBox={`0 0 ${width} ${height}`}
          width="100%"
          role="img"
          aria-label={summary}
          data-testid="placement-diagram"
          style={{ minWidth: '640px' }}
        >
          <title>{summary}</title>
          {/* block axis */}
          <text x={LABEL_W - 8} y={14} text-anchor="end" class="axis-label">block</text>
          {ticks.map((t) => (
            <g key={t}>
              <line x1={x(t)} x2={x(t)} y1={TOP - 14} y2={height - 4} class="grid" />
              <text x={x(t)} y={14} text-anchor="middle" class="tick">{t}</text>
            </g>
          ))}
          {ticks[ticks.length - 1] !== L && <text x={x(L)} y={14} text-anchor="middle" class="tick">{L}</text>}
          {/* coverage: how many servers hold each block (red = none) */}
          <text x={LABEL_W - 8} y={TOP + COVERAGE_H - 1} text-anchor="end" class="axis-label">coverage</text>
          {coverageRuns.map((r) => (
            <rect
              key={r.start}
              x={x(r.start)}
              y={TOP}
              width={Math.max(0.5, x(r.end) - x(r.start))}
              height={COVERAGE_H}
              fill={r.count === 0 ? '#c0392b' : withAlpha('#1f2937', 0.15 + 0.6 * (r.count / maxCov))}
            >
              <title>{`blocks ${r.start}–${r.end - 1}: held by ${r.count} server${r.count === 1 ? '' : 's'}`}</title>
            </rect>
          ))}
          {layout.rows.map((row) => {
            const y = rowsTop + row.y;
            const dim = focus !== null && !row.chains.includes(focus);
            const lanes = Math.max(1, row.chains.length);
            const laneH = (row.height - 6) / lanes;
            return (
              <g key={row.server} class={`placement-row ${row.used ? '' : 'unused'}`} data-server={row.server} opacity={dim ? 0.3 : 1}>
                <title>{`${row.server}: ${rangeLabel(row.start, row.count)}; chains ${row.chains.map((c) => c + 1).join(', ') || 'none'}`}</title>
                <text x={LABEL_W - 8} y={y + row.height / 2 + 4} text-anchor="end" class="row-label">
                  {row.server.length > 20 ? row.server.slice(0, 19) + '…' : row.server}
                </text>
                <rect x={LABEL_W} y={y} width={PLOT_W} height={row.height} class="row-bg" />
                {row.used && (
                  <rect
                    x={x(row.start)}
                    y={y}
                    width={Math.max(1, x(row.start + row.count) - x(row.start))}
                    height={row.height}
                    fill={withAlpha(row.color.startsWith('#') ? row.color : '#9aa5b1', 0.22)}
                    stroke={row.color}
                    stroke-width="1.5"
                    rx="3"
                  />
                )}
                {row.chains.map((k, lane) =>
                  row.segments
                    .filter((s) => s.chain === k)
                    .map((s) => (
                      <rect
                        key={`${k}-${s.hop}`}
                        x={x(s.start)}
                        y={y + 3 + lane * laneH}
                        width={Math.max(1, x(s.start + s.count) - x(s.start))}
                        height={Math.max(2, laneH - 1)}
                        fill={s.color}
                        opacity={focus === null || focus === k ? 1 : 0.25}
                        rx="1.5"
                      >
                        <title>{`chain ${k + 1}, hop ${s.hop + 1}: ${row.server} runs ${rangeLabel(s.start, s.count)}`}</title>
                      </rect>
                    )),
                )}
                <text x={LABEL_W + PLOT_W + 6} y={y + row.height / 2 + 4} class="row-count">
                  {row.count > 0 ? row.count : '—'}
                </text>
              </g>
            );
          })}
        </svg>
      </div>
      <p class="hint">
        Bars: the blocks each server holds (the number on the right). Coloured lanes inside a bar: the blocks that each chain runs on that server.
        {layout.uncovered.length > 0 && (
          <strong class="danger"> Blocks held by no server: {describeRanges(layout.uncovered)}.</strong>
        )}
      </p>
      {layout.warnings.length > 0 && (
        <ul class="warnings">
          {layout.warnings.map((w) => <li key={w}>{w}</li>)}
        </ul>
      )}
    </div>
  );
}
