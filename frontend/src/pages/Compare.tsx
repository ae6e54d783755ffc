import { useMemo } from 'preact/hooks';
import type { ChartConfiguration, Plugin, TooltipItem } from 'chart.js';
import { api } from '../api';
import { useAsync, useTitle } from '../hooks';
import { navigate } from '../router';
import { buildQuery } from '../lib/query';
import { bestOf, compareRows, spansMoreThan, whisker, type CompareRow, type MetricKey } from '../lib/compare';
import { chainColor } from '../lib/colors';
import { fmtNum, fmtSeconds } from '../lib/format';
import { Chart } from '../components/Chart';
import { CurveChart } from '../components/PlanCharts';
import { ErrorBox, Field, Link, Loading, PageHeader, StatusBadge } from '../components/ui';
import type { Job, PlanDetail, PlanDocument } from '../types';

interface BarSet { label: string; key: MetricKey; color: string; stack?: string; ci?: (r: CompareRow) => [number, number] | null }

/** Draws 95 % confidence-interval whiskers over the bars of the datasets that carry them. */
const whiskerPlugin: Plugin = {
  id: 'ciWhiskers',
  afterDatasetsDraw(chart) {
    const opts = (chart.options.plugins as Record<string, unknown> | undefined)?.ciWhiskers as { ranges: Array<Array<[number, number] | null> | null> } | undefined;
    if (!opts) return;
    const y = chart.scales.y;
    const ctx = chart.ctx;
    ctx.save();
    ctx.strokeStyle = '#111827';
    ctx.lineWidth = 1.5;
    let drawn = 0;
    opts.ranges.forEach((ranges, di) => {
      if (!ranges || !chart.isDatasetVisible(di)) return;
      chart.getDatasetMeta(di).data.forEach((bar, i) => {
        const r = ranges[i];
        if (!r) return;
        const x = (bar as unknown as { x: number }).x;
        const top = y.getPixelForValue(r[1]);
        const bottom = y.getPixelForValue(r[0]);
        ctx.beginPath();
        ctx.moveTo(x, top); ctx.lineTo(x, bottom);
        ctx.moveTo(x - 5, top); ctx.lineTo(x + 5, top);
        ctx.moveTo(x - 5, bottom); ctx.lineTo(x + 5, bottom);
        ctx.stroke();
        drawn++;
      });
    });
    ctx.restore();
    chart.canvas.dataset.whiskers = String(drawn);     // how many intervals are drawn (read by the browser tests)
  },
};

export interface BarChart { config: ChartConfiguration; log: boolean }

function logFloor(values: Array<number | null>): number | undefined {
  const v = values.filter((x): x is number => x !== null && Number.isFinite(x) && x > 0);
  return v.length ? 10 ** Math.floor(Math.log10(Math.min(...v))) : undefined;
}

/** Axis labels: seconds as "4.55 µs" / "300 ms"; on a log axis only at 1, 2 and 5 of each decade. */
function tickLabel(v: number, log: boolean, seconds: boolean): string {
  if (log && v > 0) {
    const m = v / 10 ** Math.floor(Math.log10(v) + 1e-9);
    if (![1, 2, 5].some((x) => Math.abs(m - x) < 1e-6)) return '';
  }
  return seconds ? fmtSeconds(v) : fmtNum(v);
}

/** A bar chart of rows; a log axis when the values span more than 10x (a stacked chart is then drawn side by side). */
function barConfig(rows: CompareRow[], datasets: BarSet[], yTitle: string, opts: { log?: boolean; seconds?: boolean } = {}): BarChart {
  const values = datasets.flatMap((d) => rows.map((r) => r[d.key]));
  const log = opts.log ?? spansMoreThan(values);
  const stacked = !log && datasets.some((d) => d.stack);
  const ranges = datasets.map((d) => (d.ci ? rows.map((r) => d.ci!(r)) : null));
  const config: ChartConfiguration = {
    type: 'bar',
    data: {
      labels: rows.map((r) => r.algorithm + (r.overloaded ? ' (overloaded)' : '')),
      datasets: datasets.map((d) => ({ label: d.label, data: rows.map((r) => r[d.key]), backgroundColor: d.color, stack: stacked ? d.stack : undefined })),
    },
    options: {
      scales: {
        x: { stacked },
        y: {
          type: log ? 'logarithmic' : 'linear', beginAtZero: !log, stacked,
          // a log axis starts at the decade below the smallest bar (else Chart.js may cut the smallest off)
          min: log ? logFloor(values) : undefined,
          title: { display: true, text: log ? `${yTitle}, log scale` : yTitle },
          ticks: { callback: (v: number | string) => tickLabel(Number(v), log, opts.seconds === true) },
        },
      },
      plugins: {
        legend: { display: datasets.length > 1, position: 'top' },
        tooltip: {
          callbacks: {
            label: (ctx: TooltipItem<'bar'>) => {
              const v = `${ctx.dataset.label}: ${opts.seconds ? fmtSeconds(ctx.parsed.y) : fmtNum(ctx.parsed.y)}`;
              const r = ranges[ctx.datasetIndex]?.[ctx.dataIndex];
              return r ? `${v} (95 % CI ${fmtSeconds(r[0])} – ${fmtSeconds(r[1])})` : v;
            },
          },
        },
        ...(ranges.some(Boolean) ? { ciWhiskers: { ranges } } : {}),
      } as Record<string, unknown>,
    },
    plugins: [whiskerPlugin],
  };
  return { config, log };
}

function ScaleNote({ log }: { log: boolean }) {
  return log ? <p class="hint">Log scale: the values span more than 10×, so a linear axis would hide the small ones.</p> : null;
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
        { label: 'Mean', key: 'mean_response_s', color: chainColor(0), ci: (r) => whisker(r.mean_response_s, r.mean_ci95_s) },
        { label: 'p95', key: 'p95_response_s', color: chainColor(1) },
      ], 'Response time (s)', { seconds: true }),
      split: barConfig(ok, [
        { label: 'Waiting', key: 'mean_wait_s', color: chainColor(1), stack: 'rt' },
        { label: 'Service', key: 'mean_service_s', color: chainColor(0), stack: 'rt' },
      ], 'Mean time (s)', { seconds: true }),
      capacity: barConfig(ok, [{ label: 'Total capacity', key: 'total_capacity', color: chainColor(2) }], 'Jobs held at once'),
      solve: barConfig(rows.filter((r) => r.solve_time_s !== null && r.solve_time_s > 0), [{ label: 'Solve time', key: 'solve_time_s', color: chainColor(3) }], 'Seconds', { log: true, seconds: true }),
    };
  }, [rows]);

  if (data.loading && !data.data) return <Loading />;
  if (data.error) return <ErrorBox error={data.error} />;
  const [job, plans] = data.data!;
  // the bounds curve only for plans the closed-form bounds describe (JFFC over chains, Poisson arrivals)
  const curveCandidates = plans.filter((p) => p.feasible && p.document.chains.length > 0 && p.document.bounds?.applies !== false);
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
                      <th scope="row"><Link href={`/plans/${r.plan}`}>{r.algorithm}</Link>{!r.feasible && <span class="danger"> (infeasible{r.reason ? `: ${r.reason}` : ''})</span>}
                        {r.overloaded && <span class="badge badge-failed" title="The arrival rate is at or above what this plan serves">overloaded</span>}</th>
                      {METRICS.map((m) => {
                        const isBest = bests[m.key].has(r.plan) && feasibleCount > 1;
                        const v = r[m.key];
                        return (
                          <td class={`num ${isBest ? 'best' : ''}`} key={m.key}>
                            {m.seconds ? fmtSeconds(v) : fmtNum(v)}{isBest && <span class="visually-hidden"> (best)</span>}
                            {m.key === 'mean_response_s' && r.mean_ci95_s !== null && <span class="ci"> ± {fmtSeconds(r.mean_ci95_s)}</span>}
                          </td>
                        );
                      })}
                      <td class="num">{r.chains ?? '—'}</td>
                      <td class="num">{r.lower_bound_s !== null ? `${fmtSeconds(r.lower_bound_s)} – ${fmtSeconds(r.upper_bound_s)}` : <span class="muted" title="The closed-form bounds do not apply to this plan">n/a</span>}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
            <p class="hint">Bold: the best value in its column among the feasible plans. Response times are simulated (± the half-width of a
              95 % confidence interval of the mean); the bounds are closed-form and shown only where they apply.</p>
          </div>

          {feasibleCount > 0 && (
            <div class="grid-2">
              <div class="card"><h3>Mean and p95 response time</h3>
                <Chart config={charts.response.config} scale={charts.response.log ? 'log' : 'linear'} label={`Mean and p95 response time per algorithm: ${describe('mean_response_s', true)}.`} testId="compare-response" />
                <ScaleNote log={charts.response.log} /></div>
              <div class="card"><h3>Waiting vs service time</h3>
                <Chart config={charts.split.config} scale={charts.split.log ? 'log' : 'linear'} label={`Mean waiting and service time per algorithm: waiting ${describe('mean_wait_s', true)}.`} testId="compare-split" />
                <ScaleNote log={charts.split.log} /></div>
              <div class="card"><h3>Total capacity</h3>
                <Chart config={charts.capacity.config} scale={charts.capacity.log ? 'log' : 'linear'} label={`Total capacity per algorithm: ${describe('total_capacity', false)}.`} testId="compare-capacity" />
                <ScaleNote log={charts.capacity.log} /></div>
              <div class="card"><h3>Solve time</h3>
                <Chart config={charts.solve.config} scale={charts.solve.log ? 'log' : 'linear'} label={`Solve time per algorithm: ${describe('solve_time_s', true)}.`} testId="compare-solve" />
                <ScaleNote log={charts.solve.log} /></div>
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
            ) : <p class="muted">No plan here is one the closed-form bounds describe (they need chains dispatched join-the-fastest-free-chain, with Poisson arrivals).</p>}
          </div>
        </>
      )}
    </section>
  );
}
