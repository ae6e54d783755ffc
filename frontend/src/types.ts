// Types of the REST API (docs/api-contract.md) and of the scenario / plan
// documents (docs/scenario-format.md, docs/plan-format.md). Optional fields are those the
// contract marks optional or that newer servers may add.

export interface Page<T> {
  count: number;
  next: string | null;
  previous: string | null;
  results: T[];
}

export interface Calibration {
  id?: number;
  measured_at?: string;
  created_at?: string;
  model_name?: string;
  figures?: Record<string, number | null>;
  memory_gb?: number | null;
  comm_time_s?: number | null;
  block_time_s?: number | null;
  rtt_ms?: number | null;
  [key: string]: unknown;
}

export interface Server {
  server_id: string;
  memory_gb: number | null;
  comm_time_s: number | null;
  block_time_s: number | null;
  tflops: number | null;
  mem_bandwidth_gb_s: number | null;
  rtt_ms: number | null;
  link_bandwidth_gbps: number | null;
  // [[concurrency, factor], ...]; while edited, text that is not pairs yet (lib/batch.ts)
  batch_slowdown?: Array<[number, number]> | string | null;
  latest_calibration?: Calibration | null;
}

export interface Cluster {
  id: number;
  name: string;
  description: string;
  model: number | null;
  servers: Server[];
  server_count: number;
  default_workload?: Workload | null;
  replan_delta?: number;
  replan_min_gain?: number;
  replan_calibration_threshold?: number;
  replan_load_threshold?: number;
  replan_on_server_change?: boolean;
  replan_webhook_url?: string;
  adopted_plan?: number | null;
  observed_arrival_rate?: number | null;
  observed_at?: string | null;
  created_at: string;
  updated_at: string;
}

/** The re-planning settings of a cluster (PATCH /clusters/{id}/). */
export interface ReplanSettings {
  replan_delta: number;
  replan_min_gain: number;
  replan_calibration_threshold: number;
  replan_load_threshold: number;
  replan_on_server_change: boolean;
  replan_webhook_url: string;
}

export type Trigger = '' | 'manual' | 'schedule' | 'calibration' | 'servers' | 'load' | 'service_time';

export interface ReplanOutcome {
  adopted: boolean;
  gain: number | null;
  min_gain?: number;
  why: string;
  predicted_old_s?: number | null;
  predicted_new_s?: number | null;
  forced?: boolean;
  plan?: number;
  against_plan?: number | null;
  adoption?: number;
}

export interface Adoption {
  id: number;
  cluster: number;
  plan: number | null;
  previous_plan: number | null;
  adopted_by: string | null;
  trigger: Trigger;
  detail: string;
  gain: number | null;
  webhook_status: number | null;
  webhook_error: string;
  webhook_at: string | null;
  created_at: string;
  diff?: PlanDiff;
}

export interface Schedule {
  id: number;
  kind: 'interval' | 'cron';
  every: number | null;
  period: 'seconds' | 'minutes' | 'hours' | 'days' | null;
  cron: string | null;
  enabled: boolean;
  description: string;
  last_run_at: string | null;
  total_run_count: number;
  created_at: string;
}

export interface RangeDoc {
  start_block: number;
  num_blocks: number;
}

export interface ServerDiff {
  server: string;
  old: RangeDoc | null;
  new: RangeDoc | null;
  blocks_to_load: Array<[number, number]>;
  blocks_to_drop: Array<[number, number]>;
  num_blocks_to_load: number;
  num_blocks_to_drop: number;
}

export interface Predicted {
  old: number | null;
  new: number | null;
  change: number | null;
}

export interface PlanDiff {
  old?: number | null;
  new?: number;
  servers: ServerDiff[];
  chains_added: PlanChain[];
  chains_removed: PlanChain[];
  capacity_changed: Array<{ servers: string[]; blocks: number[]; old: number; new: number }>;
  predicted: Record<string, Predicted>;
  switching_cost: { blocks_to_load: number; blocks_to_drop: number; servers_changed: number; total: number };
}

export interface ApplyResult {
  plan: PlanSummary;
  model_name: string;
  petals_commands: string[];
  plan_json: PlanDocument;
  missing_servers: string[];
}

export interface ObservedLoadResult {
  observed_arrival_rate: number;
  window_s: number | null;
  observed_at: string;
  planned_arrival_rate: number | null;
  drift: number | null;
  threshold: number;
  replan_job: number | null;
}

export type Dtype = 'fp32' | 'fp16' | 'bf16' | 'int8' | 'nf4';
export type KvDtype = 'fp32' | 'fp16' | 'bf16' | 'int8';

export interface Architecture {
  preset?: string;
  hidden_size?: number;
  num_layers?: number;
  num_heads?: number;
  num_kv_heads?: number;
  ffn_size?: number;
  gated_ffn?: boolean;
  head_dim?: number;
  dtype?: Dtype;
  kv_dtype?: KvDtype;
  max_seq_len?: number;
}

export interface Model {
  hf_config?: Record<string, unknown> | null;
  id: number;
  name: string;
  num_blocks: number;
  block_size_gb: number;
  cache_size_gb: number;
  flops_per_token_gflops: number | null;
  architecture: Architecture | null;
}

export interface DerivedSizes {
  num_blocks: number;
  block_size_gb: number;
  cache_size_gb: number;
  flops_per_token_gflops: number;
  // the tokens one KV slot holds when cache_size_gb was derived, and where they came from
  cache_tokens: number | null;
  cache_tokens_source: string | null;
  // present when a Hugging Face config.json was read (POST /models/derive/ with hf_config)
  hf_config?: HfReading;
  [key: string]: unknown;
}

export interface HfReading {
  family: string;
  model_type: string;
  params_per_block: number;
  total_params: number;
  kv_bytes_per_token_per_block: number;
  notes: string[];
}

export interface ModelPreset {
  name: string;
  architecture: Architecture;
}

export interface Algorithm {
  name: string;
  description: string;
  default: boolean;
}

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface PlanSummary {
  id: number;
  job: number;
  algorithm: string;
  feasible: boolean;
  mean_response_s: number | null;
  p95_response_s: number | null;
  total_capacity: number | null;
  solve_time_s: number | null;
  created_at: string;
}

/** The workload a candidate was planned for (GET /clusters/{id}/candidates/). */
export interface CandidateWorkload {
  digest: string;                  // the same digest: planned for the same load
  arrival_rate: number | null;
  trace_requests: number | null;
}

export interface Candidate extends PlanSummary {
  workload: CandidateWorkload | null;
  same_workload_as_adopted: boolean | null;   // null: no plan is adopted
}

export interface JobOptions {
  c?: number;
  simulate_requests?: number;
  seed?: number;
  time_limit_s?: number;
  calibration?: 'measured' | 'datasheet';
}

export interface Workload {
  arrival_rate?: number;
  target_load?: number;
  input_tokens?: number;
  output_tokens?: number;
  max_tokens?: number;
  trace?: Array<[number, number, number]>;
}

export interface Job {
  id: number;
  status: JobStatus;
  progress: { fraction: number; algorithm: string | null; message: string } | null;
  cluster: number | null;
  model: number | null;
  scenario: ScenarioDoc | null;
  algorithms: string[];
  options: JobOptions;
  error: string | null;
  worker: string | null;
  reason: string;
  trigger?: Trigger;
  trigger_detail?: string;
  previous_plan?: number | null;
  replan_outcome?: ReplanOutcome | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  plans: PlanSummary[];
}

export interface ScenarioServer {
  id: string;
  memory_gb: number;
  comm_time_s?: number;
  block_time_s?: number;
  tflops?: number;
  mem_bandwidth_gb_s?: number;
  rtt_ms?: number;
  link_bandwidth_gbps?: number;
  batch_slowdown?: Array<[number, number]>;
  calibration?: Record<string, number | null> | null;
}

export interface ScenarioModel {
  name?: string;
  num_blocks?: number;
  block_size_gb?: number;
  cache_size_gb?: number;
  flops_per_token_gflops?: number;
  architecture?: Architecture;
}

export interface ScenarioDoc {
  name?: string;
  model: ScenarioModel;
  servers: ScenarioServer[];
  workload: Workload;
}

// The plan document: solvers/plan_format.py, docs/plan-format.md. tests/solvers/test_plan_format.py checks
// these interfaces' field names against PlanDocument.json_schema(), and that every field a document may lack
// is optional here. Some fields the schema requires are optional here too (listed in that test): plans
// stored by older versions, and hand-made ones, lack them. Index signatures stand for fields a newer writer
// adds.

export interface PlacementEntry {
  server: string;
  start_block: number;
  num_blocks: number;
  // memory figures (plans stored by older versions lack them)
  memory_gb?: number;
  block_memory_gb?: number;
  cache_memory_gb?: number;
  cache_slots?: number;
  cache_slots_used?: number;
  free_memory_gb?: number;
}

export interface PlanChain {
  servers: string[];
  blocks: number[];
  service_time_s: number;
  capacity: number;
}

export interface Simulation {
  requests: number;
  seed: number;
  mean_response_s: number;
  p50_response_s: number;
  p95_response_s: number;
  p99_response_s: number;
  mean_wait_s: number;
  mean_service_s: number;
  p50_wait_s?: number | null;
  p95_wait_s?: number | null;
  p99_wait_s?: number | null;
  p50_service_s?: number | null;
  p95_service_s?: number | null;
  p99_service_s?: number | null;
  response_ci95_s?: number | null;
  duration_s?: number | null;
  mean_wait_first_half_s?: number | null;
  mean_wait_second_half_s?: number | null;
  warmup_requests?: number;
  chain_utilisation?: Array<number | null>;
  chain_jobs?: number[];
  response_histogram?: Histogram | null;
  requests_delayed?: number;         // bprr
  retries?: number;                  // petals, petals-observed
  requests_retried?: number;
  refusals?: number;                 // petals with the deployed client
  [key: string]: unknown;
}

export interface Histogram {
  bin_edges_s: number[];
  counts: number[];
  overflow: number;
}

export interface PlanDocument {
  algorithm: string;
  feasible: boolean;
  reason?: string;
  c?: number | null;
  placement: PlacementEntry[];
  chains: PlanChain[];
  total_service_rate?: number | null;
  total_capacity?: number | null;
  saturation_rate_rps?: number | null;
  bounds?: PlanBounds | null;
  simulation?: Simulation | null;
  overloaded?: boolean;
  overload_reason?: string | null;
  physical_limit_s?: number | null;
  limit_ratio?: number | null;
  explanation?: Explanation | null;
  solve_time_s?: number | null;
  unused_servers?: string[];
  idle_servers?: string[];
  arrival_rate?: number;
  load?: number | null;
  dispatch?: string;
  [key: string]: unknown;
}

export interface PlanBounds {
  response_time_lower_s: number | null;
  response_time_upper_s: number | null;
  applies?: boolean;
  why_not?: string | null;
  [key: string]: unknown;
}

export type Binding = 'memory-blocks' | 'memory-cache' | 'communication' | 'compute' | 'unused';

export interface ServerExplanation {
  server: string;
  binding: Binding | string;
  detail?: string;
  [key: string]: unknown;
}

export interface UnusedExplanation {
  server: string;
  why: string;
  change_if_used_s?: number | null;
  [key: string]: unknown;
}

export interface CNeighbour {
  c: number;
  objective_s: number | null;
}

export interface CChoice {
  c: number;
  neighbours: CNeighbour[] | Record<string, number | null>;     // a Record in plans stored by older versions
  detail?: string;
}

/** The plan document's `explanation` (solvers/explain.py). */
export interface Explanation {
  summary: string[] | string;
  servers: ServerExplanation[];
  unused: UnusedExplanation[];
  c_choice: CChoice | null;
  warnings: string[];
}

export interface PlanDetail extends PlanSummary {
  document: PlanDocument;
}

export interface CurvePoint {
  arrival_rate: number;
  response_time_lower_s: number | null;
  response_time_upper_s: number | null;
  stable: boolean;
}
