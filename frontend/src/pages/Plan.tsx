import { useMemo, useState } from 'preact/hooks';
import { api } from '../api';
import { useAsync, useCopy, useTitle } from '../hooks';
import { chainColor } from '../lib/colors';
import { downloadText, safeFileName } from '../lib/download';
import { fmtGB, fmtNum, fmtPercent, fmtSeconds } from '../lib/format';
import { checkChains, memoryBreakdown, memoryInputs } from '../lib/memory';
import { planNumBlocks, rangeLabel, chainHopRanges } from '../lib/placement';
import { PlacementDiagram } from '../components/PlacementDiagram';
import { CurveChart, DistributionChart, MemoryChart } from '../components/PlanCharts';
import { ExplanationPanel } from '../components/ExplanationPanel';
import { ServerGroups } from '../components/ServerGroups';
import { LARGE_PLAN_SERVERS } from '../lib/groups';
import { pageOf } from '../lib/explain';
import { ErrorBox, Link, Loading, PageHeader, Pager, Stat } from '../components/ui';
import { boundsView } from '../lib/explain';
import { batchCapacity, servesBatched } from '../lib/batch';
import type { Job, PlanDetail } from '../types';

const CHAIN_PAGE = 50;
const MEMORY_PAGE = 50;
const MEMORY_CHART_MAX = 120;

export function PlanPage({ id }: { id: number }) {
  const data = useAsync(async (): Promise<[PlanDetail, Job | null]> => {
    const plan = await api.plan(id);
    const job = await api.job(plan.job).catch(() => null);
    return [plan, job];
  }, [id]);
  const [commands, setCommands] = useState<string[] | null>(null);
  const [cmdError, setCmdError] = useState<unknown>(null);
  const { copied, copy } = useCopy();
  const [chainPage, setChainPage] = useState(0);
  const [memoryPage, setMemoryPage] = useState(0);
  const plan = data.data?.[0];
  const job = data.data?.[1] ?? null;
  useTitle(plan ? `Plan #${plan.id} (${plan.algorithm})` : `Plan #${id}`);

  const derived = useMemo(() => {
    if (!plan) return null;
    const doc = plan.document;
    const scenario = job?.scenario ?? null;
    const order = scenario?.servers.map((s) => s.id) ?? [];
    const L = planNumBlocks(doc, scenario);
    const large = Math.max(order.length, doc.placement.length) >= LARGE_PLAN_SERVERS;
    const all = memoryBreakdown(doc, memoryInputs(scenario), large ? [] : order);
    return {
      doc, scenario, order, L, large,
      // a large plan lists memory only for the servers holding blocks (the others hold nothing)
      memory: large ? all.filter((r) => r.blocks > 0) : all,
      problems: checkChains(doc, L),
    };
  }, [plan, job]);

  if (data.loading && !data.data) return <Loading />;
  if (data.error) return <ErrorBox error={data.error} />;
  if (!plan || !derived) return null;
  const { doc, scenario, order, L, memory, problems, large } = derived;
  const chainRows = pageOf(doc.chains, chainPage, CHAIN_PAGE);
  const memoryRows = pageOf(memory, memoryPage, MEMORY_PAGE);
  const sim = doc.simulation ?? null;
  const planned = typeof doc.arrival_rate === 'number' ? doc.arrival_rate : scenario?.workload?.arrival_rate ?? null;
  const nu = doc.total_service_rate ?? null;
  const siblings = (job?.plans ?? []).filter((p) => p.id !== plan.id);
  const bounds = boundsView(doc);
  const batched = servesBatched(doc);
  const heldBack = batchCapacity(doc);

  const exportJson = () => downloadText(safeFileName(`plan-${plan.id}-${plan.algorithm}`, 'json'), JSON.stringify(doc, null, 2) + '\n');
  const loadCommands = async () => {
    setCmdError(null);
    try {
      setCommands((await api.petalsCommands(plan.id)).commands);
    } catch (e) {
      setCmdError(e);
    }
  };
  const copyCommands = () => (commands ? copy(commands.join('\n')) : Promise.resolve());

  return (
    <section>
      <PageHeader
        title={<>Plan #{plan.id}: {plan.algorithm}</>}
        sub={<><Link href="/jobs">Jobs</Link> / <Link href={`/jobs/${plan.job}`}>Job #{plan.job}</Link> / plan #{plan.id}{scenario?.name ? ` · ${scenario.name}` : ''}</>}
      >
        <button type="button" class="secondary" onClick={exportJson} data-testid="export-json">Export JSON</button>
        {plan.feasible && doc.placement.length > 0 && <button type="button" class="secondary" onClick={loadCommands}>PETALS launch commands</button>}
        {job && job.plans.length > 1 && <Link class="button primary" href={`/jobs/${plan.job}/compare?plan=${plan.id}`}>Compare algorithms</Link>}
      </PageHeader>

      {siblings.length > 0 && (
        <nav class="sibling-nav" aria-label="Other plans of this job">
          <span class="muted">Other algorithms:</span>
          {siblings.map((p) => <Link key={p.id} href={`/plans/${p.id}`} class="chip">{p.algorithm}</Link>)}
        </nav>
      )}

      {!plan.feasible && <div class="alert alert-warn" role="status"><strong>No feasible plan.</strong> {doc.reason ?? ''}</div>}
      {doc.overloaded && (
        <div class="alert alert-error" role="alert" data-testid="overloaded">
          <strong>Overloaded.</strong> {doc.overload_reason ?? 'The arrival rate is at or above what this plan serves.'} Its response times
          grow with the length of the run, so the figures below describe one run, not a steady state.
        </div>
      )}
      {problems.length > 0 && (
        <div class="alert alert-warn" role="status">
          The plan document is not consistent: <ul>{problems.slice(0, 5).map((p) => <li key={p}>{p}</li>)}</ul>
        </div>
      )}

      {(commands || cmdError !== null) && (
        <div class="card">
          <h2>PETALS launch commands</h2>
          <ErrorBox error={cmdError} title="No commands for this plan" />
          {commands && (
            <>
              <pre class="commands" tabIndex={0} aria-label="Commands, one per server">{commands.join('\n')}</pre>
              <div class="button-row">
                <button type="button" class="secondary" onClick={copyCommands}>{copied ? 'Copied' : 'Copy'}</button>
                <button type="button" class="secondary" onClick={() => downloadText(safeFileName(`plan-${plan.id}-petals`, 'sh'), '#!/bin/sh\n' + commands.join('\n') + '\n', 'text/x-sh')}>Download .sh</button>
              </div>
            </>
          )}
        </div>
      )}

      <dl class="stats card" data-testid="plan-stats">
        <Stat label="Blocks" value={L} />
        <Stat label="Servers used" value={`${doc.placement.filter((p) => p.num_blocks > 0).length} of ${order.length || doc.placement.length}`} />
        <Stat label="Chains" value={doc.chains.length} />
        <Stat label="Total capacity" value={fmtNum(doc.total_capacity)} hint="Jobs the chains may hold at once" />
        <Stat label="Service rate ν" value={nu ? `${fmtNum(nu)} /s` : '—'} hint={batched ? 'Every chain at its one-job speed (no server slowed by its batch)' : undefined} />
        {typeof doc.saturation_rate_rps === 'number' && (
          <Stat label="Saturation rate" value={<span data-testid="saturation-rate">{fmtNum(doc.saturation_rate_rps)} /s</span>}
            hint={batched
              ? 'The most requests per second this plan can carry: every planned slot busy, each server slowed by its batch slowdown'
              : 'The most requests per second this plan can carry (no server batches, so it equals ν)'} />
        )}
        <Stat label="Arrival rate λ" value={planned ? `${fmtNum(planned)} /s` : '—'} />
        <Stat label={batched ? 'Load λ/saturation' : 'Load λ/ν'} value={typeof doc.load === 'number' ? fmtPercent(doc.load) : '—'} />
        {doc.c !== undefined && doc.c !== null && <Stat label="Cache reservation c" value={doc.c} />}
        <Stat label="Response bounds" value={bounds.applies ? `${fmtSeconds(bounds.lower)} – ${fmtSeconds(bounds.upper)}` : 'do not apply'} hint={bounds.whyNot ?? undefined} />
        <Stat label="Simulated mean" value={<span data-testid="simulated-mean">{fmtSeconds(sim?.mean_response_s)}{typeof sim?.response_ci95_s === 'number' && Number.isFinite(sim.response_ci95_s) && <span class="ci"> ± {fmtSeconds(sim.response_ci95_s)}</span>}</span>}
          hint="± the half-width of a 95 % confidence interval (batch means)" />
        <Stat label="Simulated p95" value={fmtSeconds(sim?.p95_response_s)} />
        {typeof doc.physical_limit_s === 'number' && (
          <Stat label="Physical limit" value={`${fmtSeconds(doc.physical_limit_s)}${typeof doc.limit_ratio === 'number' ? ` (plan ${fmtNum(doc.limit_ratio)}×)` : ''}`}
            hint="The fastest chain memory allows for one job with no waiting: no plan's mean response is lower" />
        )}
        <Stat label="Solve time" value={fmtSeconds(doc.solve_time_s)} />
      </dl>

      {heldBack.length > 0 && (
        <div class="card" data-testid="batch-capacity">
          <h2>Slots left empty on purpose</h2>
          <p class="hint">These servers could hold more jobs, but more would slow every chain through them
            (their batch slowdown) and carry fewer requests per second in all.</p>
          <table class="table">
            <thead><tr><th scope="col">Server</th><th scope="col" class="num">Jobs</th><th scope="col" class="num">Room for</th><th scope="col">Why not more</th></tr></thead>
            <tbody>
              {heldBack.map((n) => (
                <tr key={n.server}>
                  <td>{n.server}</td>
                  <td class="num">{n.jobs}</td>
                  <td class="num">{n.more_jobs} more</td>
                  <td>{n.text}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}

      <div class="plan-main">
        <div class="card">
          <h2>Placement</h2>
          {doc.placement.length === 0 && !order.length ? <p class="muted">This plan places no blocks.</p> : large ? (
            <ServerGroups plan={doc} scenario={scenario} order={order} numBlocks={L} />
          ) : (
            <PlacementDiagram plan={doc} numBlocks={L} serverOrder={order} />
          )}
        </div>
        <ExplanationPanel doc={doc} />
      </div>

      <div class="card">
        <h2>Chains</h2>
        {doc.chains.length === 0 ? (
          <p class="muted">{plan.feasible ? 'This algorithm routes each request itself; it has no fixed chains.' : 'No chains.'}</p>
        ) : (
          <div class="table-wrap">
            <table class="table" data-testid="chains-table">
              <caption class="visually-hidden">Chains, fastest first</caption>
              <thead>
                <tr>
                  <th scope="col">Chain</th><th scope="col">Servers and blocks per hop</th><th scope="col" class="num">Service time</th>
                  <th scope="col" class="num">Capacity</th><th scope="col" class="num">Rate c/T</th>
                  {sim?.chain_utilisation && <th scope="col" class="num">Utilisation</th>}
                </tr>
              </thead>
              <tbody>
                {chainRows.items.map((ch, i) => {
                  const k = chainRows.first + i;
                  return (
                  <tr key={k}>
                    <th scope="row"><span class="swatch" style={{ background: chainColor(k) }} aria-hidden="true" /> {k + 1}</th>
                    <td>
                      <ol class="hops">
                        {ch.servers.map((s, i) => {
                          const r = chainHopRanges(ch.blocks)[i];
                          return <li key={i}><strong>{s}</strong> <span class="muted">{rangeLabel(r.start, r.count)}</span></li>;
                        })}
                      </ol>
                    </td>
                    <td class="num">{fmtSeconds(ch.service_time_s)}</td>
                    <td class="num">{ch.capacity}</td>
                    <td class="num">{fmtNum(ch.capacity / ch.service_time_s)} /s</td>
                    {sim?.chain_utilisation && <td class="num">{fmtPercent(sim.chain_utilisation[k] ?? null)}</td>}
                  </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
        <Pager page={chainRows.page} pages={chainRows.pages} total={doc.chains.length} size={CHAIN_PAGE} onPage={setChainPage} label="Pages of chains" />
      </div>

      <div class="card">
        <h2>Memory per server{large ? ' holding blocks' : ''}</h2>
        {memory.length === 0 ? <p class="muted">No servers.</p> : (
          <>
            {memory.length <= MEMORY_CHART_MAX ? <MemoryChart rows={memory} /> : (
              <p class="muted">{fmtNum(memory.length)} servers hold blocks: too many bars for one chart; the table below pages through them.</p>
            )}
            <details open={memory.length > MEMORY_CHART_MAX}>
              <summary>Memory as a table</summary>
              <div class="table-wrap">
                <table class="table compact" data-testid="memory-table">
                  <thead>
                    <tr>
                      <th scope="col">Server</th><th scope="col" class="num">Memory</th><th scope="col" class="num">Blocks</th><th scope="col" class="num">Weights</th>
                      <th scope="col" class="num">KV slots used / all</th><th scope="col" class="num">KV reserved</th><th scope="col" class="num">Free</th>
                    </tr>
                  </thead>
                  <tbody>
                    {memoryRows.items.map((r) => (
                      <tr key={r.server} class={r.over ? 'over' : ''}>
                        <th scope="row">{r.server}</th>
                        <td class="num">{fmtGB(r.memory_gb)}</td>
                        <td class="num">{r.blocks}</td>
                        <td class="num">{fmtGB(r.weights_gb)}</td>
                        <td class="num">{r.slots_used} / {r.slots_total ?? '—'}</td>
                        <td class="num">{fmtGB(r.kv_used_gb)}</td>
                        <td class="num">{fmtGB(r.free_gb)}{r.over && <strong class="danger"> over!</strong>}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
              <Pager page={memoryRows.page} pages={memoryRows.pages} total={memory.length} size={MEMORY_PAGE} onPage={setMemoryPage} label="Pages of the memory table" />
            </details>
          </>
        )}
      </div>

      <div class="grid-2">
        <div class="card">
          <h2>Simulated response time</h2>
          {sim ? <DistributionChart sim={sim} /> : <p class="muted">This plan was not simulated (set “Simulated requests” when planning).</p>}
        </div>
        <div class="card">
          <h2>Response time vs arrival rate</h2>
          {doc.chains.length > 0 && nu && doc.bounds?.applies !== false ? (
            <CurveChart planId={plan.id} nu={nu} plannedRate={planned} simulatedMean={sim?.mean_response_s} />
          ) : <p class="muted" data-testid="curve-why-not">No curve: {doc.chains.length === 0 ? 'the closed-form bounds need chains' : bounds.whyNot}.</p>}
        </div>
      </div>
    </section>
  );
}
