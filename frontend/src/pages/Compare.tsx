import { useMemo } from 'preact/hooks';
import type { ChartConfiguration } from 'chart.js';
import { api } from '../api';
import { useAsync, useTitle } from '../hooks';
import { navigate } from '../router';
import { buildQuery } from '../lib/query';
import { bestOf, compareRows, type CompareRow, type MetricKey } from '../lib/compare';
import { chainColor } from '../lib/colors';
import { fmtNum, fmtSeconds } from '../lib/format';
import { Chart } from '../components/Chart';
import { CurveChart } from '../components/PlanCharts';
import { ErrorBox, Field, Link, Loading, PageHeader, StatusBadge } from '../components/ui';
import type { Job, PlanDetail, PlanDocument } from '../types';

function barConfig(rows: CompareRow[], datasets: Array<{ label: string; key: MetricKey; color: string; stack?: string }>, yTitle: string, opts: { log?: boolean; seconds?: boolean } = {}): ChartConfiguration {
  return {
    type: 'bar',
    data: {
      labels: rows.map((r) => r.algorithm),
      datasets: datasets.map((d) => ({ label: d.label, data: rows.map((r) => r[d.key]), backgroundColor: d.color, stack: d.stack })),
    },
    options: {
      scales: {
        x: { stacked: datasets.some((d) => d.stack) },
        y: { type: opts.log ? 'logarithmic' : 'linear', beginAtZero: !opts.log, stacked: datasets.some((d) => d.stack), title: { display: true, text: yTitle } },
      },
      plugins: {
        legend: { display: datasets.length > 1, position: 'top' },
        tooltip: { callbacks: { label: (ctx) => `${ctx.dataset.label}: ${opts.seconds ? fmtSeconds(ctx.parsed.y) : fmtNum(ctx.parsed.y)}` } },
      },
    },
  };
}

const METRICS: Array<{ key: MetricKey; label: string; seconds: boolean }> = [
  { key: 'mean_response_s', label: 'Mean response', seconds: true },
  { key: 'p95_response_s', label: 'p95 response', seconds: true },
  { key: 'mean_wait_s', label: 'Mean waiting', seconds: true },
  { key: 'mean_service_s', label: 'Mean service', seconds: true },
  { key: 'total_capacity', label: 'Total capacity', seconds: false },
  { key: 'solve_time_s', label: 'Solve time', seconds: true },
];

export function ComparePage({ id, query }: { id: number; query: Record<string, string> }) {
  useTitle(`Compare · job #${id}`);
  const data = useAsync(async (): Promise<[Job, PlanDetail[]]> => {
    const job = await api.job(id);
    const plans = await Promise.all(job.plans.map((p) => api.plan(p.id)));
    return [job, plans];
  }, [id]);

  const rows = useMemo(() => {
    if (!data.data) return [];
    const [job, plans] = data.data;
    const docs = new Map<number, PlanDocument>(plans.map((p) => [p.id, p.document]));
    return compareRows(job.plans, docs);
  }, [data.data]);

  const charts = useMemo(() => {
    const ok = rows.filter((r) => r.feasible);
    return {
      response: barConfig(ok, [
        { label: 'Mean', key: 'mean_response_s', color: chainColor(0) },
        { label: 'p95', key: 'p95_response_s', color: chainColor(1) },
      ], 'Response time (s)', { seconds: true }),
      split: barConfig(ok, [
        { label: 'Waiting', key: 'mean_wait_s', color: chainColor(1), stack: 'rt' },
        { label: 'Service', key: 'mean_service_s', color: chainColor(0), stack: 'rt' },
      ], 'Mean time (s)', { seconds: true }),
      capacity: barConfig(ok, [{ label: 'Total capacity', key: 'total_capacity', color: chainColor(2) }], 'Jobs held at once'),
      solve: barConfig(rows.filter((r) => r.solve_time_s !== null && r.solve_time_s > 0), [{ label: 'Solve time', key: 'solve_time_s', color: chainColor(3) }], 'Seconds (log scale)', { log: true, seconds: true }),
    };
  }, [rows]);

  if (data.loading && !data.data) return <Loading />;
  if (data.error) return <ErrorBox error={data.error} />;
  const [job, plans] = data.data!;
  const curveCandidates = plans.filter((p) => p.feasible && p.document.chains.length > 0);
  const best = rows.find((r) => r.feasible && curveCandidates.some((p) => p.id === r.plan));
  const curvePlan = curveCandidates.find((p) => String(p.id) === query.plan) ?? curveCandidates.find((p) => p.id === best?.plan) ?? curveCandidates[0];
  const bests = Object.fromEntries(METRICS.map((m) => [m.key, bestOf(rows, m.key)])) as Record<MetricKey, Set<number>>;
  const feasibleCount = rows.filter((r) => r.feasible).length;

  const describe = (key: MetricKey, seconds: boolean) =>
    rows.filter((r) => r.feasible).map((r) => `${r.algorithm} ${seconds ? fmtSeconds(r[key]) : fmtNum(r[key])}`).join(', ');

  return (
    <section>
      <PageHeader
        title={<>Compare algorithms · job #{job.id}</>}
        sub={<><Link href="/jobs">Jobs</Link> / <Link href={`/jobs/${job.id}`}>Job #{job.id}</Link> / compare{job.scenario?.name ? ` · ${job.scenario.name}` : ''} <StatusBadge status={job.status} /></>}
      />
      {rows.length === 0 ? <p class="muted">This job has no plans yet.</p> : (
        <>
          <div class="card">
            <h2>Side by side</h2>
            <div class="table-wrap">
              <table class="table" data-testid="compare-table">
                <caption class="visually-hidden">Plans of job {job.id}, best mean response first; the best value of each column is marked</caption>
                <thead>
                  <tr>
                    <th scope="col">Algorithm</th>
                    {METRICS.map((m) => <th scope="col" class="num" key={m.key}>{m.label}</th>)}
                    <th scope="col" class="num">Chains</th>
                    <th scope="col" class="num">Bounds</th>
                  </tr>
                </thead>
                <tbody>
                  {rows.map((r) => (
                    <tr key={r.plan} class={r.feasible ? '' : 'infeasible'}>
                      <th scope="row"><Link href={`/plans/${r.plan}`}>{r.algorithm}</Link>{!r.feasible && <span class="danger"> (infeasible{r.reason ? `: ${r.reason}` : ''})</span>}</th>
                      {METRICS.map((m) => {
                        const isBest = bests[m.key].has(r.plan) && feasibleCount > 1;
                        const v = r[m.key];
                        return (
                          <td class={`num ${isBest ? 'best' : ''}`} key={m.key}>
                            {m.seconds ? fmtSeconds(v) : fmtNum(v)}{isBest && <span class="visually-hidden"> (best)</span>}
                          </td>
                        );
                      })}
                      <td class="num">{r.chains ?? '—'}</td>
                      <td class="num">{r.lower_bound_s !== null ? `${fmtSeconds(r.lower_bound_s)} – ${fmtSeconds(r.upper_bound_s)}` : '—'}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
            <p class="hint">Bold: the best value in its column among the feasible plans. Response times are simulated; the bounds are closed-form.</p>
          </div>

          {feasibleCount > 0 && (
            <div class="grid-2">
              <div class="card"><h3>Mean and p95 response time</h3>
                <Chart config={charts.response} label={`Mean and p95 response time per algorithm: ${describe('mean_response_s', true)}.`} testId="compare-response" /></div>
              <div class="card"><h3>Waiting vs service time</h3>
                <Chart config={charts.split} label={`Mean waiting and service time per algorithm: waiting ${describe('mean_wait_s', true)}.`} testId="compare-split" /></div>
              <div class="card"><h3>Total capacity</h3>
                <Chart config={charts.capacity} label={`Total capacity per algorithm: ${describe('total_capacity', false)}.`} testId="compare-capacity" /></div>
              <div class="card"><h3>Solve time</h3>
                <Chart config={charts.solve} label={`Solve time per algorithm: ${describe('solve_time_s', true)}.`} testId="compare-solve" /></div>
            </div>
          )}

          <div class="card">
            <h2>Response time vs arrival rate</h2>
            {curvePlan ? (
              <>
                <Field label="Plan">
                  {({ id: fid }) => (
                    <select id={fid} value={String(curvePlan.id)} onChange={(e) => navigate(`/jobs/${job.id}/compare` + buildQuery({ plan: e.currentTarget.value }), { replace: true })}>
                      {curveCandidates.map((p) => <option key={p.id} value={String(p.id)}>{p.algorithm} (plan #{p.id})</option>)}
                    </select>
                  )}
                </Field>
                <CurveChart key={curvePlan.id} planId={curvePlan.id} nu={curvePlan.document.total_service_rate} simulatedMean={curvePlan.document.simulation?.mean_response_s}
                  plannedRate={typeof curvePlan.document.arrival_rate === 'number' ? curvePlan.document.arrival_rate : job.scenario?.workload?.arrival_rate} />
              </>
            ) : <p class="muted">No feasible plan with chains: the bounds need chains.</p>}
          </div>
        </>
      )}
    </section>
  );
}
