// The cluster editor's server table: validation (mirroring the scenario
// parser's rules, keyed like the API's field paths), duplicate, bulk edit,
// GPU presets, CSV and scenario-JSON conversion.

import type { Cluster, ScenarioDoc, ScenarioServer, Server } from '../types';
import { curveErrors, formatCurve, parseCurve } from './batch';
import { parseCsv, toCsv } from './csv';
import { ageSeconds, fmtAge, fmtNum } from './format';
import type { Calibration } from '../types';

export type NumField = 'memory_gb' | 'comm_time_s' | 'block_time_s' | 'tflops' | 'mem_bandwidth_gb_s' | 'rtt_ms' | 'link_bandwidth_gbps';

export const NUM_FIELDS: Array<{ key: NumField; label: string; unit: string; min: number; strict: boolean }> = [
  { key: 'memory_gb', label: 'Memory', unit: 'GB', min: 0, strict: true },
  { key: 'comm_time_s', label: 'Comm. time', unit: 's', min: 0, strict: false },
  { key: 'block_time_s', label: 'Block time', unit: 's', min: 0, strict: true },
  { key: 'tflops', label: 'Compute', unit: 'TFLOPS', min: 0, strict: true },
  { key: 'mem_bandwidth_gb_s', label: 'Mem. bandwidth', unit: 'GB/s', min: 0, strict: true },
  { key: 'rtt_ms', label: 'RTT', unit: 'ms', min: 0, strict: false },
  { key: 'link_bandwidth_gbps', label: 'Link', unit: 'Gbit/s', min: 0, strict: true },
];

export const CSV_COLUMNS = ['server_id', ...NUM_FIELDS.map((f) => f.key), 'batch_slowdown'];

export function emptyServer(id: string): Server {
  return {
    server_id: id, memory_gb: null, comm_time_s: null, block_time_s: null, tflops: null,
    mem_bandwidth_gb_s: null, rtt_ms: null, link_bandwidth_gbps: null, batch_slowdown: null, latest_calibration: null,
  };
}

/** Field errors keyed "servers[i].field" (the API's paths; the id field is "server_id"). */
export function validateServers(servers: Server[]): Record<string, string> {
  const errors: Record<string, string> = {};
  const first = new Map<string, number>();
  servers.forEach((s, i) => {
    const at = (f: string) => `servers[${i}].${f}`;
    const id = s.server_id.trim();
    if (!id) errors[at('server_id')] = 'is required';
    else if (id.length > 128) errors[at('server_id')] = 'must have at most 128 characters';
    else if (first.has(id)) errors[at('server_id')] = `duplicate id (also row ${first.get(id)! + 1})`;
    else first.set(id, i);
    for (const f of NUM_FIELDS) {
      const v = s[f.key];
      if (v === null || v === undefined) continue;
      if (!Number.isFinite(v)) errors[at(f.key)] = 'must be a number';
      else if (f.strict ? v <= f.min : v < f.min) errors[at(f.key)] = `must be ${f.strict ? '>' : '>='} ${f.min}`;
    }
    if (s.memory_gb === null && !errors[at('memory_gb')]) errors[at('memory_gb')] = 'is required';
    for (const [suffix, msg] of Object.entries(curveErrors(s.batch_slowdown))) errors[at('batch_slowdown') + suffix] = msg;
    const hasHw = s.tflops !== null && s.mem_bandwidth_gb_s !== null && s.rtt_ms !== null;
    if (!hasHw && !s.latest_calibration) {
      for (const f of ['comm_time_s', 'block_time_s'] as const) {
        if (s[f] === null && !errors[at(f)]) errors[at(f)] = 'is required (or give compute, memory bandwidth and RTT)';
      }
    }
  });
  return errors;
}

/** An id not in `taken`: base, then base-2, base-3 ... (a trailing number is counted on). */
export function uniqueId(base: string, taken: Set<string>): string {
  if (!taken.has(base)) return base;
  const m = /^(.*?)(\d+)$/.exec(base);
  const stem = m ? m[1] : `${base}-`;
  let n = m ? Number(m[2]) + 1 : 2;
  while (taken.has(`${stem}${n}`)) n++;
  return `${stem}${n}`;
}

export function duplicateServer(servers: Server[], index: number): Server[] {
  const src = servers[index];
  const taken = new Set(servers.map((s) => s.server_id));
  const copy: Server = { ...src, server_id: uniqueId(src.server_id || 'server', taken), latest_calibration: null };
  return [...servers.slice(0, index + 1), copy, ...servers.slice(index + 1)];
}

export type BulkOp = 'set' | 'scale' | 'clear';

/** Sets, scales or clears one field on the selected rows. */
export function bulkEdit(servers: Server[], selected: Set<number>, field: NumField, op: BulkOp, value: number | null): Server[] {
  return servers.map((s, i) => {
    if (!selected.has(i)) return s;
    let next: number | null = s[field];
    if (op === 'clear') next = null;
    else if (op === 'set') next = value;
    else if (op === 'scale' && next !== null && value !== null) next = Number((next * value).toPrecision(12));
    return { ...s, [field]: next };
  });
}

export interface GpuPreset {
  key: string;
  label: string;
  memory_gb: number;      // usable for blocks and KV (datasheet memory)
  tflops: number;         // dense fp16/bf16 tensor throughput
  mem_bandwidth_gb_s: number;
}

// Datasheet figures (dense fp16/bf16 tensor TFLOPS, memory bandwidth).
export const GPU_PRESETS: GpuPreset[] = [
  { key: 'h100-sxm-80', label: 'H100 SXM 80 GB', memory_gb: 80, tflops: 989, mem_bandwidth_gb_s: 3350 },
  { key: 'h100-pcie-80', label: 'H100 PCIe 80 GB', memory_gb: 80, tflops: 756, mem_bandwidth_gb_s: 2000 },
  { key: 'a100-80', label: 'A100 80 GB', memory_gb: 80, tflops: 312, mem_bandwidth_gb_s: 2039 },
  { key: 'a100-40', label: 'A100 40 GB', memory_gb: 40, tflops: 312, mem_bandwidth_gb_s: 1555 },
  { key: 'a100-mig-3g', label: 'A100 MIG 3g.20gb', memory_gb: 20, tflops: 134, mem_bandwidth_gb_s: 778 },
  { key: 'l40s-48', label: 'L40S 48 GB', memory_gb: 48, tflops: 362, mem_bandwidth_gb_s: 864 },
  { key: 'a10-24', label: 'A10 24 GB', memory_gb: 24, tflops: 125, mem_bandwidth_gb_s: 600 },
  { key: 'rtx4090-24', label: 'RTX 4090 24 GB', memory_gb: 24, tflops: 165, mem_bandwidth_gb_s: 1008 },
  { key: 'rtx3090-24', label: 'RTX 3090 24 GB', memory_gb: 24, tflops: 71, mem_bandwidth_gb_s: 936 },
  { key: 'v100-32', label: 'V100 32 GB', memory_gb: 32, tflops: 125, mem_bandwidth_gb_s: 900 },
  { key: 't4-16', label: 'T4 16 GB', memory_gb: 16, tflops: 65, mem_bandwidth_gb_s: 320 },
];

/** Appends `count` servers of a GPU preset with ids prefix-1, prefix-2 ... (skipping taken ids). */
export function addFromPreset(servers: Server[], preset: GpuPreset, count: number, prefix: string, rttMs: number | null): Server[] {
  const taken = new Set(servers.map((s) => s.server_id));
  const out = [...servers];
  const stem = (prefix.trim() || preset.key).replace(/-+$/, '');
  let n = 1;
  for (let k = 0; k < count; k++) {
    while (taken.has(`${stem}-${n}`)) n++;
    const id = `${stem}-${n}`;
    taken.add(id);
    out.push({
      ...emptyServer(id),
      memory_gb: preset.memory_gb,
      tflops: preset.tflops,
      mem_bandwidth_gb_s: preset.mem_bandwidth_gb_s,
      rtt_ms: rttMs,
    });
  }
  return out;
}

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

export function fromScenarioServer(s: ScenarioServer): Server {
  return {
    server_id: String(s.id ?? ''),
    memory_gb: num(s.memory_gb),
    comm_time_s: num(s.comm_time_s),
    block_time_s: num(s.block_time_s),
    tflops: num(s.tflops),
    mem_bandwidth_gb_s: num(s.mem_bandwidth_gb_s),
    rtt_ms: num(s.rtt_ms),
    link_bandwidth_gbps: num(s.link_bandwidth_gbps),
    batch_slowdown: Array.isArray(s.batch_slowdown) ? s.batch_slowdown : null,
    latest_calibration: null,
  };
}

export function toScenarioServer(s: Server): ScenarioServer {
  const out: ScenarioServer = { id: s.server_id, memory_gb: s.memory_gb ?? 0 };
  for (const f of NUM_FIELDS) {
    if (f.key !== 'memory_gb' && s[f.key] !== null) (out as unknown as Record<string, number>)[f.key] = s[f.key] as number;
  }
  if (Array.isArray(s.batch_slowdown)) out.batch_slowdown = s.batch_slowdown;
  return out;
}

/** Checks the outline of a scenario document before it is sent (the server validates the rest). */
export function checkScenarioShape(doc: unknown): string[] {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return ['a scenario must be a JSON object'];
  const d = doc as Record<string, unknown>;
  const problems: string[] = [];
  if (typeof d.model !== 'object' || d.model === null) problems.push('model: is required');
  if (!Array.isArray(d.servers) || d.servers.length === 0) problems.push('servers: must be a non-empty list');
  if (typeof d.workload !== 'object' || d.workload === null) problems.push('workload: is required');
  return problems;
}

export function scenarioFromCluster(cluster: Pick<Cluster, 'name' | 'servers'>, model: ScenarioDoc['model'], arrivalRate: number): ScenarioDoc {
  return {
    name: cluster.name,
    model,
    servers: cluster.servers.map(toScenarioServer),
    workload: { arrival_rate: arrivalRate, target_load: 0.7 },
  };
}

export function serversToCsv(servers: Server[]): string {
  return toCsv(CSV_COLUMNS, servers.map((s) => [s.server_id, ...NUM_FIELDS.map((f) => s[f.key] ?? ''), formatCurve(s.batch_slowdown)]));
}

export interface CsvImport {
  servers: Server[];
  errors: string[];
}

/** Servers from CSV with a header naming columns (server_id or id, memory_gb, ...); unknown columns are ignored. */
export function serversFromCsv(text: string): CsvImport {
  let table: string[][];
  try {
    table = parseCsv(text);
  } catch (e) {
    return { servers: [], errors: [`not a CSV file: ${(e as Error).message}`] };
  }
  if (!table.length) return { servers: [], errors: ['the file is empty'] };
  const header = table[0].map((h) => h.trim().toLowerCase());
  const idCol = header.findIndex((h) => h === 'server_id' || h === 'id');
  if (idCol < 0) return { servers: [], errors: ['missing column server_id (or id)'] };
  const cols = NUM_FIELDS.map((f) => [f.key, header.indexOf(f.key)] as const).filter(([, i]) => i >= 0);
  if (!cols.some(([k]) => k === 'memory_gb')) return { servers: [], errors: ['missing column memory_gb'] };
  const curveCol = header.indexOf('batch_slowdown');
  const servers: Server[] = [];
  const errors: string[] = [];
  for (let r = 1; r < table.length; r++) {
    const cells = table[r];
    const s = emptyServer((cells[idCol] ?? '').trim());
    if (curveCol >= 0) {
      // "1:1, 8:1.5" (quoted in the file); the editor shows what is wrong with it beside the field
      s.batch_slowdown = parseCurve(cells[curveCol] ?? '');
      if (typeof s.batch_slowdown === 'string') errors.push(`line ${r + 1}, batch_slowdown: ${JSON.stringify(s.batch_slowdown)} is not concurrency:factor pairs`);
    }
    for (const [key, i] of cols) {
      const raw = (cells[i] ?? '').trim();
      if (raw === '') continue;
      const v = Number(raw);
      if (!Number.isFinite(v)) errors.push(`line ${r + 1}, ${key}: ${JSON.stringify(raw)} is not a number`);
      else s[key] = v;
    }
    servers.push(s);
  }
  return { servers, errors };
}

export const STALE_CALIBRATION_S = 7 * 24 * 3600;

export interface CalibrationSummary {
  age: string;            // "3 h ago"
  stale: boolean;         // older than a week
  figures: string;        // "block_time_s = 0.109, comm_time_s = 0.95"
}

/** The latest probe calibration of a server as shown in the editor (API: {id, created_at, model_name, figures}). */
export function calibrationSummary(cal: Calibration | null | undefined, now: number = Date.now()): CalibrationSummary | null {
  if (!cal) return null;
  const when = (typeof cal.created_at === 'string' ? cal.created_at : undefined) ?? (typeof cal.measured_at === 'string' ? cal.measured_at : undefined);
  const source = cal.figures && typeof cal.figures === 'object' ? (cal.figures as Record<string, unknown>) : (cal as Record<string, unknown>);
  const figures = Object.entries(source)
    .filter(([k, v]) => typeof v === 'number' && Number.isFinite(v) && k !== 'id')
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k} = ${fmtNum(v as number)}`);
  if (typeof cal.model_name === 'string' && cal.model_name) figures.push(`model ${cal.model_name}`);
  const age = ageSeconds(when, now);
  return { age: fmtAge(when, now), stale: age !== null && age > STALE_CALIBRATION_S, figures: figures.join(', ') };
}
