import { useMemo, useState } from 'preact/hooks';
import { blockCoverage, groupServers } from '../lib/groups';
import { pageOf } from '../lib/explain';
import { describeRanges, rangeLabel } from '../lib/placement';
import { fmtGB, fmtNum, fmtSeconds } from '../lib/format';
import { Pager } from './ui';
import type { PlanDocument, ScenarioDoc } from '../types';

const PAGE = 50;

/** A large plan's placement as groups of identical servers (same figures, same blocks), paged. */
export function ServerGroups({ plan, scenario, order, numBlocks }: { plan: PlanDocument; scenario: ScenarioDoc | null; order: string[]; numBlocks: number }) {
  const groups = useMemo(() => groupServers(plan, scenario, order), [plan, scenario, order]);
  const coverage = useMemo(() => blockCoverage(plan, numBlocks), [plan, numBlocks]);
  const [page, setPage] = useState(0);
  const p = pageOf(groups, page, PAGE);
  const total = groups.reduce((n, g) => n + g.servers.length, 0);
  const used = groups.filter((g) => g.num_blocks > 0).reduce((n, g) => n + g.servers.length, 0);
  const L = Math.max(1, numBlocks);

  return (
    <div data-testid="server-groups">
      <p data-testid="server-groups-summary">
        {fmtNum(total)} servers in {fmtNum(groups.length)} groups of identical servers (same figures, same blocks); {fmtNum(used)} hold blocks.
        Each block is held by {coverage.min === coverage.max ? coverage.min : `${coverage.min}–${coverage.max}`} server{coverage.max === 1 ? '' : 's'}.
        {coverage.uncovered.length > 0 && <strong class="danger"> Blocks held by no server: {describeRanges(coverage.uncovered)}.</strong>}
      </p>
      <div class="table-wrap">
        <table class="table compact groups-table">
          <caption class="visually-hidden">Groups of identical servers, those holding blocks first</caption>
          <thead>
            <tr>
              <th scope="col">Servers</th><th scope="col" class="num">Count</th><th scope="col" class="num">Memory</th>
              <th scope="col" class="num">Comm. time</th><th scope="col" class="num">Block time</th>
              <th scope="col">Blocks</th><th scope="col" class="range-col">Range of 0–{L - 1}</th><th scope="col" class="num">Chains</th>
            </tr>
          </thead>
          <tbody>
            {p.items.map((g) => (
              <tr key={g.key} class={g.num_blocks > 0 ? '' : 'infeasible'} data-count={g.servers.length}>
                <th scope="row" title={g.servers.slice(0, 50).join(', ') + (g.servers.length > 50 ? ', …' : '')}>
                  {g.servers[0]}{g.servers.length > 1 && <span class="muted"> … {g.servers[g.servers.length - 1]}</span>}
                </th>
                <td class="num">×{fmtNum(g.servers.length)}</td>
                <td class="num">{fmtGB(g.figures.memory_gb as number | undefined)}</td>
                <td class="num">{fmtSeconds(g.figures.comm_time_s as number | undefined)}</td>
                <td class="num">{fmtSeconds(g.figures.block_time_s as number | undefined)}</td>
                <td>{rangeLabel(g.start, g.num_blocks)}</td>
                <td class="range-col">
                  <span class="range-track" aria-hidden="true">
                    {g.num_blocks > 0 && <span class="range-bar" style={{ left: `${(g.start / L) * 100}%`, width: `${Math.max(0.5, (g.num_blocks / L) * 100)}%` }} />}
                  </span>
                </td>
                <td class="num">{g.chains || '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <Pager page={p.page} pages={p.pages} total={groups.length} size={PAGE} onPage={setPage} label="Pages of server groups" />
      <p class="hint">Large plans are summarised: one row per group instead of one diagram row per server (from 200 servers on).</p>
    </div>
  );
}
