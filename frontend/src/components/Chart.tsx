import { useEffect, useRef } from 'preact/hooks';
import {
  BarController, BarElement, CategoryScale, Chart as ChartJS, Filler, Legend, LinearScale, LineController,
  LineElement, LogarithmicScale, PointElement, ScatterController, Tooltip, type ChartConfiguration,
} from 'chart.js';

// Only the parts of Chart.js the app uses (keeps the bundle small).
ChartJS.register(BarController, BarElement, CategoryScale, LinearScale, LogarithmicScale, LineController, LineElement,
  PointElement, ScatterController, Tooltip, Legend, Filler);
ChartJS.defaults.font.family = getComputedStyleFamily();
ChartJS.defaults.color = '#374151';
ChartJS.defaults.animation = false;
ChartJS.defaults.maintainAspectRatio = false;

function getComputedStyleFamily(): string {
  return 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';
}

interface Props {
  config: ChartConfiguration;
  label: string;       // what the chart shows, for screen readers (the data is also in a table)
  height?: number;
  testId?: string;
  scale?: string;      // 'log' or 'linear': the value axis, for readers and tests
}

/** A Chart.js chart; recreated when its configuration changes. */
export function Chart({ config, label, height = 260, testId, scale }: Props) {
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    if (!canvas.current) return;
    const chart = new ChartJS(canvas.current, config);
    return () => chart.destroy();
  }, [config]);
  return (
    <div class="chart" style={{ height: `${height}px` }} data-testid={testId} data-scale={scale}>
      <canvas ref={canvas} role="img" aria-label={label} />
    </div>
  );
}
