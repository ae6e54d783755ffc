import { useMemo } from 'preact/hooks';
import type { ChartConfiguration } from 'chart.js';
import { api } from '../api';
import { useAsync } from '../hooks';
import { Chart } from './Chart';
import { ErrorBox, Loading } from './ui';
import { curveRates, curveSeries } from '../lib/curve';
import { histogramBars, percentiles } from '../lib/distribution';
import { fmtGB, fmtNum, fmtPercent, fmtSeconds } from '../lib/format';
import type { MemoryRow } from '../lib/memory';
import type { Simulation } from '../types';

const C_WEIGHTS = '#1f77b4';
const C_KV_USED = '#e66100';
const C_KV_FREE = '#a3d3a1';
const C_REST = '#d1d5db';

export function MemoryChart({ rows }: { rows: MemoryRow[] }) {
  const config = useMemo<ChartConfiguration>(() => ({
    type: 'bar',
    data: {
      labels: rows.map((r) => r.server),
      datasets: [
        { label: 'Block weights', data: rows.map((r) => r.weights_gb), backgroundColor: C_WEIGHTS },
        { label: 'KV reserved by chains', data: rows.map((r) => r.kv_used_gb), backgroundColor: C_KV_USED },
        { label: 'Free KV slots', data: rows.map((r) => r.kv_free_gb), backgroundColor: C_KV_FREE },
        { label: 'Less than one slot', data: rows.map((r) => r.remainder_gb), backgroundColor: C_REST },
      ],
    },
    options: {
      indexAxis: 'y',
      scales: {
        x: { stacked: true, title: { display: true, text: 'GB' }, beginAtZero: true },
        y: { stacked: true, ticks: { autoSkip: false } },
      },
      plugins: {
        legend: { position: 'top' },
        tooltip: { callbacks: { label: (ctx) => `${ctx.dataset.label}: ${fmtGB(ctx.parsed.x)}` } },
      },
    },
  }), [rows]);
  const height = Math.min(1400, Math.max(170, rows.length * 24 + 70));
  return <Chart config={config} height={height} label={`Memory per server: block weights, KV cache reserved by chains, free KV slots, for ${rows.length} servers. The table below lists the figures.`} testId="memory-chart" />;
}

export function DistributionChart({ sim }: { sim: Simulation }) {
  const bars = histogramBars(sim.response_histogram);
  const pts = percentiles(sim);
  const config = useMemo<ChartConfiguration | null>(() => {
    if (!bars) return null;
    return {
      type: 'bar',
      data: {
        labels: bars.mids.map((m) => fmtSeconds(m)),
        datasets: [{ label: 'Share of requests', data: bars.fractions.map((f) => f * 100), backgroundColor: '#1f77b4', barPercentage: 1, categoryPercentage: 1 }],
      },
      options: {
        scales: {
          x: { title: { display: true, text: 'Response time (bin centre)' }, ticks: { maxTicksLimit: 12 } },
          y: { title: { display: true, text: '% of requests' }, beginAtZero: true },
        },
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: { title: (items) => bars.labels[items[0].dataIndex], label: (ctx) => `${fmtNum(ctx.parsed.y)} % of requests` } },
        },
      },
    };
  }, [sim]);
  return (
    <div>
      {config ? (
        <Chart config={config} height={220} label={`Simulated response-time distribution of ${fmtNum(sim.requests)} requests: ${pts.map((p) => `${p.label} ${fmtSeconds(p.value)}`).join(', ')}.`} testId="distribution-chart" />
      ) : (
        <p class="muted">The simulation reported percentiles only.</p>
      )}
      <dl class="stats compact">
        {pts.map((p) => <div class="stat" key={p.label}><dt>{p.label}</dt><dd>{fmtSeconds(p.value)}</dd></div>)}
        <div class="stat"><dt>mean waiting</dt><dd>{fmtSeconds(sim.mean_wait_s)}</dd></div>
        <div class="stat"><dt>mean service</dt><dd>{fmtSeconds(sim.mean_service_s)}</dd></div>
        {bars && bars.overflow > 0 && <div class="stat"><dt>above the last bin</dt><dd>{fmtPercent(bars.overflow, 1)}</dd></div>}
      </dl>
    </div>
  );
}

interface CurveProps {
  planId: number;
  nu: number | null | undefined;          // total service rate of the plan
  plannedRate: number | null | undefined;
  simulatedMean: number | null | undefined;
  lower?: number | null;
  upper?: number | null;
}

/** Mean response time against arrival rate: the bounds band from /curve/, plus the simulated mean at the planned rate. */
export function CurveChart({ planId, nu, plannedRate, simulatedMean }: CurveProps) {
  const rates = useMemo(() => curveRates(nu, plannedRate, 24), [nu, plannedRate]);
  const curve = useAsync(() => (rates.length ? api.curve(planId, rates) : Promise.resolve({ points: [] })), [planId, rates.join(',')]);
  const series = useMemo(() => (curve.data ? curveSeries(curve.data.points) : null), [curve.data]);
  const config = useMemo<ChartConfiguration | null>(() => {
    if (!series) return null;
    const pts = (ys: Array<number | null>) => series.rates.map((x, i) => ({ x, y: ys[i] }));
    const datasets: ChartConfiguration<'line'>['data']['datasets'] = [
      { label: 'Lower bound', data: pts(series.lower), borderColor: '#1f77b4', backgroundColor: 'rgba(31,119,180,0.15)', pointRadius: 2, spanGaps: false },
      { label: 'Upper bound', data: pts(series.upper), borderColor: '#c0392b', backgroundColor: 'rgba(31,119,180,0.15)', fill: '-1', pointRadius: 2, spanGaps: false },
    ];
    if (plannedRate && simulatedMean) {
      datasets.push({ label: 'Simulated mean (planned rate)', data: [{ x: plannedRate, y: simulatedMean }], borderColor: '#111827', backgroundColor: '#111827', pointRadius: 6, pointStyle: 'rectRot', showLine: false });
    }
    return {
      type: 'line',
      data: { datasets },
      options: {
        parsing: false,
        scales: {
          x: { type: 'linear', min: 0, max: nu ?? undefined, title: { display: true, text: 'Arrival rate (requests/s)' } },
          y: { type: 'linear', beginAtZero: true, title: { display: true, text: 'Mean response time (s)' } },
        },
        plugins: {
          legend: { position: 'top' },
          tooltip: { callbacks: { label: (ctx) => `${ctx.dataset.label}: ${fmtSeconds(ctx.parsed.y)} at ${fmtNum(ctx.parsed.x)}/s` } },
        },
      },
    } as ChartConfiguration;
  }, [series, plannedRate, simulatedMean, nu]);
  if (!rates.length) return <p class="muted">No curve: the plan has no service rate.</p>;
  if (curve.loading && !curve.data) return <Loading label="Computing the bounds…" />;
  if (curve.error) return <ErrorBox error={curve.error} title="The curve could not be computed" />;
  return (
    <div>
      {config && <Chart config={config} height={280} testId="curve-chart"
        label={`Mean response time versus arrival rate, between the closed-form lower and upper bounds, up to the plan's total service rate ${fmtNum(nu)} requests/s.`} />}
      <p class="hint">
        Bounds on the mean response time under join-the-fastest-free-chain dispatch, up to the total service rate
        {nu ? ` ν = ${fmtNum(nu)} requests/s` : ''}{series?.unstableFrom ? `; unstable from ${fmtNum(series.unstableFrom)} requests/s` : ''}.
      </p>
      {series && (
        <details>
          <summary>Curve as a table</summary>
          <table class="table compact">
            <thead><tr><th scope="col" class="num">Arrival rate (/s)</th><th scope="col" class="num">Lower bound</th><th scope="col" class="num">Upper bound</th></tr></thead>
            <tbody>
              {series.rates.map((r, i) => (
                <tr key={r}><td class="num">{fmtNum(r)}</td><td class="num">{fmtSeconds(series.lower[i])}</td><td class="num">{fmtSeconds(series.upper[i])}</td></tr>
              ))}
            </tbody>
          </table>
        </details>
      )}
    </div>
  );
}
