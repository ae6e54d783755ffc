// Pure helpers of the cluster page's liveness panel (docs/liveness.md; unit-tested in tests/liveness.test.ts).

export type ServerState = 'up' | 'suspect' | 'down' | 'draining' | 'joining';
export const MASKING: ReadonlySet<string> = new Set(['suspect', 'down', 'draining', 'joining']);
const AWAY: ReadonlySet<string> = new Set(['down', 'draining', 'joining']);

export interface ServerLiveness {
  server: string; state: ServerState; since: string | null; cause: string; reported: boolean;
  last_heartbeat_at: string | null; heartbeat: Record<string, unknown>;
  drain: { requested_at: string | null; requested_by: string | null; drained_at: string | null } | null;
  in_plan: boolean;
}
export interface MaskedChain { chain: number; servers: string[] }
export interface LivenessServers {
  cluster: number; adopted_plan: number | null; servers: ServerLiveness[]; masked_chains: MaskedChain[];
  chains: number; last_replan: { job: number; status: string; at: string; detail: string } | null;
}
export interface ReplanOfEvent {
  job: number; status: string; created_at: string; finished_at: string | null; detail: string;
  adopted: boolean | null; plan: number | null; why: string | null;
}
export interface LivenessEvent {
  id: number; kind: 'transition' | 'drained'; server: string; prev: string; state: ServerState; cause: string;
  at: string; plan: number | null; chains: number[]; replan: ReplanOfEvent | null;
}

export type TimelineKind = 'failure' | 'mask' | 'unmask' | 'drain' | 'drained' | 'rejoin' | 'recover' | 'joining'
  | 'replan' | 'adoption' | 'candidate' | 'replan-failed';

export interface TimelineItem {
  key: string; at: string; kind: TimelineKind; server: string; text: string; job?: number; plan?: number | null;
}

const chainList = (chains: number[]) =>
  `chain${chains.length === 1 ? '' : 's'} ${chains.join(', ')}`;

/** What one history entry says on the timeline: the transition itself, its mask or unmask, and the re-plan it
 * started with that re-plan's outcome (adopted, kept as a candidate, failed). Newest first overall. */
export function timeline(events: LivenessEvent[]): TimelineItem[] {
  const items: TimelineItem[] = [];
  for (const e of events) {
    const base = { server: e.server };
    if (e.kind === 'drained') {
      items.push({ ...base, key: `${e.id}`, at: e.at, kind: 'drained', text: `${e.server} drained: ${e.cause}` });
    } else {
      const cause = e.cause ? ` (${e.cause})` : '';
      let kind: TimelineKind;
      if (e.state === 'suspect' || e.state === 'down') kind = 'failure';
      else if (e.state === 'draining') kind = 'drain';
      else if (e.state === 'joining') kind = 'joining';
      else kind = AWAY.has(e.prev) ? 'rejoin' : 'recover';
      const verbs: Record<string, string> = { failure: `is ${e.state}`, drain: 'is draining', joining: 'is joining',
        rejoin: `is back up (was ${e.prev})`, recover: `is up again (was ${e.prev || 'unknown'})` };
      const verb = verbs[kind];
      items.push({ ...base, key: `${e.id}`, at: e.at, kind, text: `${e.server} ${verb}${cause}` });
      const wasMasking = MASKING.has(e.prev);
      if (e.chains.length && MASKING.has(e.state) && !wasMasking) {
        items.push({ ...base, key: `${e.id}-mask`, at: e.at, kind: 'mask',
          text: `${chainList(e.chains)} of plan #${e.plan} masked: no new requests through ${e.server}` });
      } else if (e.chains.length && e.state === 'up' && wasMasking) {
        items.push({ ...base, key: `${e.id}-unmask`, at: e.at, kind: 'unmask',
          text: `${chainList(e.chains)} of plan #${e.plan} take requests again` });
      }
    }
    const r = e.replan;
    if (r) {
      items.push({ ...base, key: `${e.id}-replan`, at: r.created_at, kind: 'replan', job: r.job,
        text: `re-plan #${r.job} started: ${r.detail}` });
      if (r.finished_at) {
        const kind: TimelineKind = r.status === 'failed' ? 'replan-failed' : r.adopted ? 'adoption' : 'candidate';
        const text = kind === 'adoption' ? `plan #${r.plan} adopted (re-plan #${r.job})`
          : kind === 'candidate' ? `re-plan #${r.job}: plan #${r.plan} kept as a candidate` + (r.why ? ` (${r.why})` : '')
            : `re-plan #${r.job} failed` + (r.why ? `: ${r.why}` : '');
        items.push({ ...base, key: `${e.id}-outcome`, at: r.finished_at, kind, job: r.job, plan: r.plan, text });
      }
    }
  }
  // newest first; equal times keep the order above (a transition before its mask, a re-plan before its outcome)
  return items
    .map((item, i) => ({ item, i }))
    .sort((a, b) => (Date.parse(b.item.at) - Date.parse(a.item.at)) || (b.i - a.i))
    .map(({ item }) => item);
}

/** The panel's one-line summary: how many servers are not up, and which chains are masked. */
export function summaryText(d: LivenessServers): string {
  const out = d.servers.filter((s) => s.state !== 'up');
  const parts: string[] = [];
  parts.push(out.length === 0 ? `All ${d.servers.length} servers are up.`
    : `${out.length} of ${d.servers.length} servers not up: ${out.map((s) => `${s.server} ${s.state}`).join(', ')}.`);
  if (d.adopted_plan === null) parts.push('No plan is adopted.');
  else if (d.masked_chains.length === 0) parts.push(`All ${d.chains} chains of plan #${d.adopted_plan} take requests.`);
  else parts.push(`${d.masked_chains.length} of ${d.chains} chains masked: ` +
    d.masked_chains.map((m) => `${m.chain} (${m.servers.join(', ')})`).join(', ') + '.');
  return parts.join(' ');
}

/** A server's drain in words, or '' when it is not draining. */
export function drainText(s: ServerLiveness): string {
  if (!s.drain) return '';
  if (s.drain.drained_at) return s.in_plan ? 'drained; leaving the plan' : 'drained';
  if (!s.drain.requested_at) return 'draining (its heartbeat says so)';
  return `draining (asked by ${s.drain.requested_by ?? 'the owner'}); waiting for leases in flight`;
}

/** Free memory from the last heartbeat, e.g. "11.5 of 80 GB free", or '—'. */
export function memoryText(s: ServerLiveness): string {
  const free = s.heartbeat.free_memory_gb, total = s.heartbeat.total_memory_gb;
  if (typeof free !== 'number') return '—';
  const f = free.toFixed(free < 10 ? 1 : 0);
  return typeof total === 'number' && total > 0 ? `${f} of ${total.toFixed(0)} GB free` : `${f} GB free`;
}
