// The one module that talks to the REST API (docs/api-contract.md).
// Session auth: cookies travel with every request; unsafe methods carry the
// X-CSRFToken header read from the `csrftoken` cookie.

import type { DispatcherPanelData } from './lib/dispatch';
import type { GatewayKey, GatewayKeyCreated, GatewayPanelData } from './lib/gateway';
import type { LivenessEvent, LivenessServers } from './lib/liveness';
import { ApiError, toApiError } from './lib/errors';
import { buildQuery, type QueryValue } from './lib/query';
import type { Health } from './lib/health';
import type {
  Adoption, Algorithm, ApplyResult, Cluster, CurvePoint, DerivedSizes, Job, Model, ModelPreset, ObservedLoadResult,
  Candidate, Page, PlanDetail, PlanDiff, PlanSummary, ReplanSettings, ScenarioDoc, Schedule, Architecture, JobOptions, Workload,
} from './types';

const BASE = '/api/v1';

export function readCookie(cookieString: string, name: string): string | null {
  for (const part of cookieString.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim());
  }
  return null;
}

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

let onUnauthenticated: (() => void) | null = null;
/** Called when a request answers 401/403 for lack of a session (not for other permission errors). */
export function setUnauthenticatedHandler(fn: (() => void) | null): void {
  onUnauthenticated = fn;
}

// Requests in flight: signing out waits for them, so that none of them is
// answered 401 after the session is gone.
const inFlight = new Set<Promise<unknown>>();

function request<T>(method: Method, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const p = send<T>(method, path, body, signal);
  inFlight.add(p);
  const done = () => inFlight.delete(p);
  p.then(done, done);
  return p;
}

/** Resolves when the requests now in flight have settled (or after `ms`). */
export function settled(ms = 5000): Promise<void> {
  const all = Promise.allSettled([...inFlight]).then(() => undefined);
  return Promise.race([all, new Promise<void>((r) => setTimeout(r, ms))]);
}

async function send<T>(method: Method, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET') {
    const token = readCookie(document.cookie, 'csrftoken');
    if (token) headers['X-CSRFToken'] = token;
  }
  let res: Response;
  try {
    res = await fetch(BASE + path, {
      method,
      headers,
      credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (e) {
    if (e instanceof DOMException && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'Cannot reach the server. Check your connection and try again.');
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let parsed: unknown = text;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
  }
  if (!res.ok) {
    const err = toApiError(res.status, parsed);
    if ((res.status === 401 || res.status === 403) && /credentials|authenticat|log ?in|sign ?in/i.test(err.detail) && !path.startsWith('/auth/')) {
      onUnauthenticated?.();
    }
    throw err;
  }
  return parsed as T;
}

/** GET /health/: its body and HTTP status (503 answers with a body too); null body when unreachable. */
export async function fetchHealth(): Promise<{ status: number | null; body: Health | null }> {
  try {
    const res = await fetch(BASE + '/health/', { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
    let body: Health | null = null;
    try {
      body = (await res.json()) as Health;
    } catch {
      body = null;
    }
    return { status: res.status, body };
  } catch {
    return { status: null, body: null };
  }
}

export interface ListParams {
  [key: string]: QueryValue;
}

export const api = {
  // auth
  csrf: () => request<unknown>('GET', '/auth/csrf/'),
  /** The signed-in user's name, or null when signed out (200 either way). */
  me: () => request<{ username: string | null }>('GET', '/auth/me/'),
  login: (username: string, password: string) =>
    request<{ username: string }>('POST', '/auth/login/', { username, password }),
  logout: () => settled().then(() => request<unknown>('POST', '/auth/logout/')),

  // clusters
  clusters: (params: ListParams = {}) => request<Page<Cluster>>('GET', '/clusters/' + buildQuery(params)),
  cluster: (id: number) => request<Cluster>('GET', `/clusters/${id}/`),
  createCluster: (c: Partial<Cluster>) => request<Cluster>('POST', '/clusters/', c),
  updateCluster: (id: number, c: Partial<Cluster>) => request<Cluster>('PUT', `/clusters/${id}/`, c),
  patchCluster: (id: number, c: Partial<Cluster>) => request<Cluster>('PATCH', `/clusters/${id}/`, c),
  deleteCluster: (id: number) => request<void>('DELETE', `/clusters/${id}/`),
  importScenario: (scenario: ScenarioDoc) => request<Cluster>('POST', '/clusters/import/', { scenario }),
  exportCluster: (id: number, params: { model?: number | null; arrival_rate?: number | null } = {}) =>
    request<ScenarioDoc>('GET', `/clusters/${id}/export/` + buildQuery(params)),
  probeToken: (id: number, serverId: string) =>
    request<{ token: string }>('POST', `/clusters/${id}/servers/${encodeURIComponent(serverId)}/probe-token/`),

  // models
  models: (params: ListParams = {}) => request<Page<Model>>('GET', '/models/' + buildQuery(params)),
  model: (id: number) => request<Model>('GET', `/models/${id}/`),
  createModel: (m: Partial<Model>) => request<Model>('POST', '/models/', m),
  updateModel: (id: number, m: Partial<Model>) => request<Model>('PUT', `/models/${id}/`, m),
  deleteModel: (id: number) => request<void>('DELETE', `/models/${id}/`),
  deriveModel: (architecture: Architecture, max_tokens?: number) =>
    request<DerivedSizes>('POST', '/models/derive/', max_tokens ? { architecture, max_tokens } : { architecture }),
  /** Sizes from a Hugging Face config.json as it is (the server reads its keys: docs/scenario-format.md). */
  deriveHfConfig: (hf_config: Record<string, unknown>, max_tokens?: number) =>
    request<DerivedSizes>('POST', '/models/derive/', max_tokens ? { hf_config, max_tokens } : { hf_config }),
  modelPresets: () => request<ModelPreset[]>('GET', '/models/presets/'),

  // algorithms
  algorithms: () => request<Algorithm[]>('GET', '/algorithms/'),

  // jobs
  jobs: (params: ListParams = {}) => request<Page<Job>>('GET', '/jobs/' + buildQuery(params)),
  job: (id: number, signal?: AbortSignal) => request<Job>('GET', `/jobs/${id}/`, undefined, signal),
  createJob: (body: {
    cluster?: number; model?: number; workload?: Workload; scenario?: ScenarioDoc;
    algorithms?: string[]; options?: JobOptions;
  }) => request<Job>('POST', '/jobs/', body),
  cancelJob: (id: number) => request<Job>('POST', `/jobs/${id}/cancel/`),

  // plans
  plans: (params: ListParams = {}) => request<Page<PlanSummary>>('GET', '/plans/' + buildQuery(params)),
  plan: (id: number) => request<PlanDetail>('GET', `/plans/${id}/`),
  curve: (id: number, rates: number[]) =>
    request<{ points: CurvePoint[] }>('GET', `/plans/${id}/curve/` + buildQuery({ rates: rates.map((r) => +r.toPrecision(6)).join(',') })),
  petalsCommands: (id: number) => request<{ commands: string[]; warnings: string[] }>('GET', `/plans/${id}/petals-commands/`),

  // live dispatcher (docs/dispatcher.md)
  dispatcher: (id: number) => request<DispatcherPanelData>('GET', `/clusters/${id}/dispatcher/`),
  dispatchToken: (id: number) => request<{ token: string }>('POST', `/clusters/${id}/dispatch/tokens/`, {}),

  // server liveness (docs/liveness.md)
  livenessServers: (id: number) => request<LivenessServers>('GET', `/clusters/${id}/liveness/servers/`),
  livenessHistory: (id: number, params: ListParams = {}) =>
    request<Page<LivenessEvent>>('GET', `/clusters/${id}/liveness/` + buildQuery(params)),
  drain: (id: number, server: string) =>
    request<{ server: string; state: string }>('POST', `/clusters/${id}/servers/${encodeURIComponent(server)}/drain/`, {}),
  drainEnd: (id: number, server: string) =>
    request<{ server: string; state: string }>('DELETE', `/clusters/${id}/servers/${encodeURIComponent(server)}/drain/`),

  // OpenAI gateway keys (docs/gateway.md)
  gateway: (id: number) => request<GatewayPanelData>('GET', `/clusters/${id}/gateway/`),
  gatewayKeys: (id: number, params: ListParams = {}) =>
    request<Page<GatewayKey>>('GET', `/clusters/${id}/gateway/keys/` + buildQuery(params)),
  gatewayKeyCreate: (id: number) => request<GatewayKeyCreated>('POST', `/clusters/${id}/gateway/keys/`, {}),
  gatewayKeyRevoke: (id: number, keyId: number) =>
    request<GatewayKey>('DELETE', `/clusters/${id}/gateway/keys/${keyId}/`),

  // re-planning
  updateReplanSettings: (id: number, s: Partial<ReplanSettings>) => request<Cluster>('PATCH', `/clusters/${id}/`, s),
  adoptedPlan: (id: number) =>
    request<{ plan: PlanDetail | null; adoption: Adoption | null }>('GET', `/clusters/${id}/adopted-plan/`),
  adoptions: (id: number, params: ListParams = {}) =>
    request<Page<Adoption>>('GET', `/clusters/${id}/adoptions/` + buildQuery(params)),
  candidates: (id: number, params: ListParams = {}) =>
    request<Page<Candidate>>('GET', `/clusters/${id}/candidates/` + buildQuery(params)),
  adopt: (planId: number) => request<Adoption>('POST', `/plans/${planId}/adopt/`),
  replan: (id: number) => request<Job>('POST', `/clusters/${id}/replan/`, {}),
  observedLoad: (id: number, arrival_rate: number, window_s?: number | null) =>
    request<ObservedLoadResult>('POST', `/clusters/${id}/observed-load/`, window_s ? { arrival_rate, window_s } : { arrival_rate }),
  planDiff: (newId: number, oldId?: number | null) =>
    request<PlanDiff>('GET', '/plans/diff/' + buildQuery({ new: newId, old: oldId ?? null })),
  apply: (id: number, initialPeers?: string) =>
    request<ApplyResult>('GET', `/clusters/${id}/apply/` + buildQuery({ initial_peers: initialPeers || null })),
  schedules: (id: number) => request<Schedule[]>('GET', `/clusters/${id}/schedules/`),
  createSchedule: (id: number, s: Partial<Schedule>) => request<Schedule>('POST', `/clusters/${id}/schedules/`, s),
  updateSchedule: (id: number, sid: number, s: Partial<Schedule>) =>
    request<Schedule>('PUT', `/clusters/${id}/schedules/${sid}/`, s),
  deleteSchedule: (id: number, sid: number) => request<void>('DELETE', `/clusters/${id}/schedules/${sid}/`),
};

/** Fetches every page of a list (bounded, for pickers). */
export async function listAll<T>(fetchPage: (p: ListParams) => Promise<Page<T>>, params: ListParams = {}, maxPages = 20): Promise<T[]> {
  const out: T[] = [];
  for (let page = 1; page <= maxPages; page++) {
    const res = await fetchPage({ ...params, page, page_size: 100 });
    out.push(...res.results);
    if (!res.next) break;
  }
  return out;
}
