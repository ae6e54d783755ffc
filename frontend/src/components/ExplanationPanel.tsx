import { useState } from 'preact/hooks';
import { bindingCounts, bindingLabel, boundsView, cNeighbours, limitSentence, pageOf, summaryLines } from '../lib/explain';
import { fmtSeconds } from '../lib/format';
import { Pager } from './ui';
import type { PlanDocument } from '../types';

const PAGE = 25;

/** Why the plan is what it is, in words: what binds each server, why the unused ones are unused, why this c. */
export function ExplanationPanel({ doc }: { doc: PlanDocument }) {
  const e = doc.explanation ?? null;
  const [serverPage, setServerPage] = useState(0);
  const [unusedPage, setUnusedPage] = useState(0);
  const bounds = boundsView(doc);
  const limit = limitSentence(doc);
  const summary = summaryLines(e);
  const servers = e?.servers ?? [];
  const unused = e?.unused ?? [];
  const counts = bindingCounts(servers);
  const sp = pageOf(servers, serverPage, PAGE);
  const up = pageOf(unused, unusedPage, PAGE);
  const neighbours = cNeighbours(e?.c_choice);

  return (
    <div class="card explanation" data-testid="explanation">
      <h2>Why this plan</h2>
      {!e && <p class="muted">This plan document carries no explanation (it was made before plans explained themselves).</p>}
      {summary.length > 0 && (
        <ul class="summary" data-testid="explanation-summary">{summary.map((s, i) => <li key={i}>{s}</li>)}</ul>
      )}
      {e && (e.warnings ?? []).length > 0 && (
        <div class="alert alert-warn" role="status" data-testid="explanation-warnings">
          <strong>Warnings</strong>
          <ul>{e.warnings.map((w, i) => <li key={i}>{w}</li>)}</ul>
        </div>
      )}

      <h3>Response-time bounds</h3>
      {bounds.applies ? (
        <p data-testid="bounds-applies">The mean response time lies between <strong>{fmtSeconds(bounds.lower)}</strong> and{' '}
          <strong>{fmtSeconds(bounds.upper)}</strong> (closed-form bounds for join-the-fastest-free-chain dispatch at the planned arrival rate).</p>
      ) : (
        <p data-testid="bounds-why-not">No bounds are shown: {bounds.whyNot}.</p>
      )}
      {limit && <p data-testid="physical-limit">{limit}</p>}

      {servers.length > 0 && (
        <>
          <h3>What binds each server</h3>
          <p class="muted">{counts.map((c) => `${c.label}: ${c.count}`).join(' · ')}</p>
          <ul class="explain-list" data-testid="explanation-servers">
            {sp.items.map((s) => (
              <li key={s.server}>
                <strong>{s.server}</strong> <span class={`badge binding binding-${s.binding}`}>{bindingLabel(s.binding)}</span>
                {s.detail && <span class="detail">{String(s.detail)}</span>}
              </li>
            ))}
          </ul>
          <Pager page={sp.page} pages={sp.pages} total={servers.length} size={PAGE} onPage={setServerPage} label="Pages of servers that hold blocks" />
        </>
      )}

      {unused.length > 0 && (
        <>
          <h3>Why {unused.length === 1 ? 'one server is' : `${unused.length} servers are`} unused</h3>
          <ul class="explain-list" data-testid="explanation-unused">
            {up.items.map((u) => (
              <li key={u.server}>
                <strong>{u.server}</strong>{' '}
                {typeof u.change_if_used_s === 'number' && (
                  <span class={`badge ${u.change_if_used_s < 0 ? 'badge-gain' : ''}`} title="Change of the lower bound if this server were used">
                    {u.change_if_used_s < 0 ? '−' : '+'}{fmtSeconds(Math.abs(u.change_if_used_s))} if used
                  </span>
                )}
                <span class="detail">{u.why}</span>
              </li>
            ))}
          </ul>
          <Pager page={up.page} pages={up.pages} total={unused.length} size={PAGE} onPage={setUnusedPage} label="Pages of unused servers" />
        </>
      )}

      {e?.c_choice && (
        <>
          <h3>Why c = {e.c_choice.c}</h3>
          {neighbours.length > 0 && (
            <table class="table compact c-table" data-testid="c-neighbours">
              <caption class="visually-hidden">The tuning objective at the neighbouring values of c</caption>
              <thead><tr><th scope="col" class="num">c</th><th scope="col" class="num">Objective</th></tr></thead>
              <tbody>
                {neighbours.map((n) => (
                  <tr key={n.c} class={n.chosen ? 'selected' : ''}>
                    <td class="num">{n.c}{n.chosen && ' (chosen)'}</td>
                    <td class="num">{n.objective_s === null ? 'not evaluated' : fmtSeconds(n.objective_s)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {e.c_choice.detail && <p class="hint">{e.c_choice.detail}</p>}
        </>
      )}
    </div>
  );
}
