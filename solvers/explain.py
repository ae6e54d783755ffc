"""Plans that explain themselves: the plan document's ``explanation``.

Everything here is computed from the plan's own numbers:

- per server that holds blocks, what binds it: its memory is full of blocks
  (``memory-blocks``), its KV cache is full of jobs (``memory-cache``), or,
  with memory to spare, the time of its hop is mostly network
  (``communication``) or mostly computing (``compute``);
- per server no chain uses, why, and a cheap what-if: the server is added to
  the placement where it fits best (its blocks ending at one of the plan's
  chain boundaries, as GBP-CR would size it for the plan's ``c``), GCA finds
  the chains, and the change of the JFFC lower bound (the objective c-tuning
  uses) is reported; the change of the upper bound goes into the words.  A
  server too small for one block, or one the plan cannot route through, is
  said to be so instead;
- why this ``c``: the tuning objective at the neighbouring ``c`` values (from
  the c-tuning the algorithm ran, or a few GBP-CR + GCA evaluations when the
  algorithm did not tune ``c``);
- warnings: overload, load near saturation, bounds that do not apply, memory
  over-use, a chain the simulation found nearly always busy;
- when servers batch (``servers[].batch_slowdown``): which bounds apply (the
  lower from each chain's one-job rate, the upper from its rate with every
  planned slot busy, as in the document's ``bounds``; the what-ifs use the
  same pair), the saturation rate beside the batch-1 rate, and the servers
  holding fewer jobs than their memory allows because more would slow the
  chains through them (the plan's ``batch_capacity`` notes, from
  ``batch_allocation.held_back_notes``).

The what-ifs run under a small time budget; servers with identical figures
share one evaluation.  What the budget leaves out is said, never guessed.
"""

from __future__ import annotations

import math
import time
from typing import Any

from .batching import BatchModel
from .bounds import bounds_from_rates
from .gbpcr import ServerArrays, gbpcr
from .gca import gca
from .scenario import Scenario
from .topology import Placement

WHATIF_BUDGET_S = 0.5          # wall time for all unused-server what-ifs of one plan
MAX_WHATIF_ENDS = 8            # chain boundaries tried per unused server
NEIGHBOURS = 2                 # c values either side of the chosen one
NEAR_SATURATION = 0.9
MAX_UNUSED_ROWS = 1000         # unused servers listed one by one (the rest are counted in the summary)


def _fmt_s(x: float) -> str:
    return f"{x:.3g} s"


def _fmt_gb(x: float) -> str:
    return f"{x:.4g} GB"


def _blocks(start: int, count: int) -> str:
    return f"block {start}" if count == 1 else f"blocks {start}-{start + count - 1}"


def _list(items: list[int]) -> str:
    return ", ".join(str(k + 1) for k in items)


def _names(ids: list[str], shown: int = 6) -> str:
    return ", ".join(ids[:shown]) + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


def _lower_upper(chains, arrival_rate: float, model: BatchModel | None = None) -> tuple[float, float]:
    """The JFFC bounds of ``chains``; with servers that batch (``model`` active), the document's pair: the lower
    bound at each chain's one-job rate, the upper at its rate with every planned slot busy."""
    caps = [ch.capacity for ch in chains]
    b = bounds_from_rates([1.0 / ch.service_time_s for ch in chains], caps, arrival_rate)
    if model is None or not model.active:
        return (b.lower_s, b.upper_s) if b.stable else (math.inf, math.inf)
    slowest = bounds_from_rates([1.0 / t for t in model.loaded_times(chains)], caps, arrival_rate)
    return (b.lower_s, slowest.upper_s) if slowest.stable else (math.inf, math.inf)


# ---------------------------------------------------------------------------
# servers that hold blocks
# ---------------------------------------------------------------------------

def _hops_by_server(chains, index: dict[str, int]) -> dict[int, list[tuple[int, int]]]:
    """server index -> [(chain number, blocks it runs for that chain)]."""
    out: dict[int, list[tuple[int, int]]] = {}
    for k, ch in enumerate(chains):
        for sid, m in zip(ch.servers, ch.blocks):
            out.setdefault(index[sid], []).append((k, m))
    return out


def _pool_jobs(placement: Placement, pool: tuple[int, ...], L: int) -> tuple[int, int]:
    """(jobs a runtime's fixed KV pools hold at once across the swarm, the block that limits it): each server
    holds ``pool // blocks`` jobs, and a job needs a slot on every block."""
    per_block = [0] * L
    for j in placement.used():
        for b in range(placement.start[j], placement.end(j)):
            per_block[b] += pool[j] // placement.count[j]
    b = min(range(L), key=lambda k: per_block[k])
    return per_block[b], b


def pool_pressure(scenario: Scenario, placement: Placement, pool: tuple[int, ...], doc: dict[str, Any]) -> str | None:
    """Why the runtime's fixed KV pool, not compute, limits a plan routed per request; None when nothing shows it.

    Shown by the simulation (requests waiting for a free slot) or, without one, by Little's law: ``K`` jobs at
    once, none faster than the physical limit ``T``, serve at most ``K / T`` requests per second."""
    jobs, block = _pool_jobs(placement, pool, scenario.model.num_blocks)
    held = f"the pools hold at most {jobs} job{'s' if jobs != 1 else ''} at once across the swarm (block {block} is the scarcest)"
    sim = doc.get("simulation") or {}
    retried, requests = sim.get("requests_retried"), sim.get("requests")
    if doc.get("overloaded") or retried:
        if not retried:
            return held + ", and the simulated waits grow with the run"
        return held + (f"; {retried} of {requests} simulated requests found no free slot and waited "
                       f"({sim.get('retries', retried)} retries)")
    limit = doc.get("physical_limit_s")
    lam = scenario.workload.arrival_rate
    if limit and jobs / limit <= lam:
        return (held + f", so at most {jobs / limit:.3g} req/s (each takes at least {limit:.3g} s), not above the "
                f"arrival rate {lam:g} req/s")
    return None


def _server_binding(scenario: Scenario, j: int, placement: Placement, hops: list[tuple[int, int]],
                    capacities: list[int], routed_per_request: bool, pool: tuple[int, ...] | None = None,
                    pressure: str | None = None, jobs: int = 0) -> dict[str, Any]:
    """What binds server j; ``jobs`` is its full planned occupancy, which slows its compute when it batches."""
    s = scenario.servers[j]
    model = scenario.model
    L = model.num_blocks
    m = placement.count[j]
    block_gb = model.block_size_gb * m
    slots_total = s.cache_slots(m, model) if pool is None else pool[j]
    slots_used = sum(m_run * capacities[k] for k, m_run in hops)
    if pool is not None and pressure is not None:
        jobs = pool[j] // m
        idle_gb = s.memory_gb - block_gb - model.cache_size_gb * pool[j]
        return {"server": s.id, "binding": "memory-cache",
                "detail": f"the runtime's fixed KV pool: {pool[j]} slots ({_fmt_gb(model.cache_size_gb * pool[j])}) "
                          f"hold {jobs} job{'s' if jobs != 1 else ''} at once on its {m} blocks; {pressure}. "
                          f"{_fmt_gb(max(0.0, idle_gb))} of its memory stay outside the pool (the pool is sized in "
                          "tokens per block, not by memory): a larger pool here would let more requests in"}
    cache_gb = model.cache_size_gb * slots_used
    ranges = _blocks(placement.start[j], m)
    if not hops and not routed_per_request:
        return {"server": s.id, "binding": "unused",
                "detail": f"holds {ranges} but no chain runs through it: every chain that could enter it "
                          f"was faster elsewhere or found no free KV slot here"}
    chains_txt = (f"chain{'s' if len(hops) > 1 else ''} {_list(sorted({k for k, _ in hops}))}" if hops
                  else "the requests routed through it")
    run = max(1, round(sum(b for _, b in hops) / len(hops))) if hops else m
    min_run = min((b for _, b in hops), default=m)
    free_slots = slots_total - slots_used
    if hops and free_slots < min_run:
        return {"server": s.id, "binding": "memory-cache",
                "detail": f"KV cache full: {slots_used} of {slots_total} slots ({_fmt_gb(cache_gb)}) hold jobs of "
                          f"{chains_txt}; another job needs {min_run} more. More memory here would let "
                          f"{chains_txt} hold more jobs at once"}
    one_more = model.block_size_gb * (m + 1) + model.cache_size_gb * slots_used
    if m < L and one_more > s.memory_gb + 1e-9:
        return {"server": s.id, "binding": "memory-blocks",
                "detail": f"memory full of blocks: {ranges} take {_fmt_gb(block_gb)} of {_fmt_gb(s.memory_gb)}"
                          f"{f' with {_fmt_gb(cache_gb)} of KV cache' if slots_used else ''}; one more block does not "
                          f"fit, so {chains_txt} need{'s' if len(hops) == 1 else ''} other servers for the rest"}
    comm = s.comm_time_s
    factor = s.batch_slowdown.factor(jobs)
    compute = s.block_time_s * run * factor
    # with a batch slowdown, the time of a job among all the jobs the plan gives this server
    batched = (f" with its {jobs} planned jobs (batch slowdown {factor:.3g}x; {_fmt_s(compute / factor)} alone)"
               if factor != 1.0 else "")
    if comm >= compute:
        return {"server": s.id, "binding": "communication",
                "detail": f"network time {_fmt_s(comm)} per hop outweighs computing {run} block"
                          f"{'s' if run != 1 else ''} ({_fmt_s(compute)}{batched}); memory has room. A nearer or "
                          f"better connected server would shorten {chains_txt}"}
    return {"server": s.id, "binding": "compute",
            "detail": f"computing {run} block{'s' if run != 1 else ''} takes {_fmt_s(compute)}{batched} against "
                      f"{_fmt_s(comm)} of network time; memory has room. A faster GPU would shorten {chains_txt}"}


def _change(which: str, delta: float, base: float) -> str:
    rel = delta / base if base > 0 else 0.0
    if abs(rel) < 1e-3:
        return f"leave the {which} bound unchanged (within 0.1 %)"
    verb = "lower" if delta < 0 else "raise"
    return f"{verb} the {which} bound by {_fmt_s(abs(delta))} ({abs(rel):.1%})"


# ---------------------------------------------------------------------------
# unused servers
# ---------------------------------------------------------------------------

def _candidate_ends(placement: Placement, L: int, ends: list[int]) -> list[int]:
    """At most MAX_WHATIF_ENDS of the sorted positions ``ends``, spread evenly."""
    ends = sorted(set(ends))
    if len(ends) <= MAX_WHATIF_ENDS:
        return ends
    step = (len(ends) - 1) / (MAX_WHATIF_ENDS - 1)
    return sorted({ends[round(i * step)] for i in range(MAX_WHATIF_ENDS)})


def _spots(placement: Placement, L: int, m: int) -> list[tuple[int, int]]:
    """Ranges (start, count) for a new server of m blocks that a chain can enter and leave.

    Entering needs its start at 0 or at another server's end inside the new
    range; leaving needs its end at L or inside another server's range.  Two
    families: starting at an existing boundary, or ending at one.
    """
    used = placement.used()
    ends = sorted({0} | {placement.end(j) for j in used})
    spots = set()
    for e in _candidate_ends(placement, L, ends):          # start at a boundary (a chain reaches e)
        if e + m <= L:
            spots.add((e, m))
    for f in _candidate_ends(placement, L, ends[1:] + [L]):  # end at a boundary (chains continue from f)
        if f - m >= 0:
            spots.add((f - m, m))
    if m >= L:
        spots = {(0, L)}
    return sorted(spots)


def _what_if(scenario: Scenario, placement: Placement, j: int, m: int) -> tuple[float, float, int, int] | None:
    """(lower, upper, start, count) of the best spot for server j holding m blocks; None when no spot routes."""
    L = scenario.model.num_blocks
    best = None
    for a, count in _spots(placement, L, min(m, L)):
        start, counts = list(placement.start), list(placement.count)
        start[j], counts[j] = a, count
        chains = gca(scenario, Placement(tuple(start), tuple(counts)))
        if not any(jj == j for ch in chains for jj, _ in ch.hops):
            continue                     # no chain runs through it there: that spot would not use it
        lower, upper = _lower_upper(chains, scenario.workload.arrival_rate, BatchModel.of(scenario))
        if best is None or (lower, upper) < best[:2]:
            best = (lower, upper, a, count)
    return best


def _unused(scenario: Scenario, placement: Placement | None, result, chains, base: tuple[float, float] | None,
            routed: set[int], arrays: ServerArrays, budget_s: float) -> tuple[list[dict[str, Any]], int, list[str]]:
    """Why each server without a chain is unused; how many what-ifs the budget left out; summary notes."""
    model = scenario.model
    L = model.num_blocks
    fits1 = arrays.blocks_for(1).tolist()
    c = result.c or 1
    fits_c = arrays.blocks_for(c).tolist()
    used = placement.used() if placement is not None else []
    whole_model = result.algorithm == "whole-model"      # its rule: every server holds every block
    per_block = [(scenario.servers[j].comm_time_s + scenario.servers[j].block_time_s * placement.count[j])
                 / placement.count[j] for j in used if j in routed]
    slowest_used = max(per_block) if per_block else None
    deadline = time.monotonic() + budget_s
    stranded: list[tuple[int, int, dict]] = []      # unused servers that cannot join an existing chain
    rows: dict[int, dict[str, Any]] = {}
    rank: dict[int, float] = {}                      # time per block: what-ifs (and the list) go fastest first
    candidates = []
    for j, s in enumerate(scenario.servers):
        if j in routed or (chains and placement is not None and placement.count[j] > 0):
            continue                    # used, or idle (holds blocks no chain passes through: said apart)
        row = {"server": s.id, "why": "", "change_if_used_s": None}
        rows[j] = row
        rank[j] = math.inf
        if fits1[j] == 0:
            row["why"] = (f"too small: {_fmt_gb(s.memory_gb)} cannot hold one block ({_fmt_gb(model.block_size_gb)}) "
                          f"with KV cache for one job ({_fmt_gb(model.cache_size_gb)})")
        elif placement is not None and placement.count[j] > 0:
            row["why"] = (f"holds {_blocks(placement.start[j], placement.count[j])} but no chain runs through it "
                          f"(the chains found were faster elsewhere or it had no free KV slot)")
        elif whole_model and fits1[j] < L:
            row["why"] = (f"cannot hold the whole model: at most {fits1[j]} of {L} blocks fit in "
                          f"{_fmt_gb(s.memory_gb)}, and this plan gives each server all blocks")
        elif not chains or base is None or not math.isfinite(base[0]):
            row["why"] = "the algorithm placed no blocks on it"
            if placement is not None and not chains:
                row["why"] += "; it routes each request itself, so no closed-form bound can be re-evaluated with it"
        else:
            m = fits_c[j] if fits_c[j] > 0 else fits1[j]
            rank[j] = (s.comm_time_s + s.block_time_s * m) / m
            candidates.append((rank[j], j, m))
    cache: dict[tuple, tuple | None] = {}
    skipped = 0
    for own, j, m in sorted(candidates):
        s, row = scenario.servers[j], rows[j]
        parts = []
        if slowest_used is not None and own > slowest_used * (1 + 1e-9):
            parts.append(f"its time per block ({_fmt_s(own)} with {m} blocks) is above every used server's "
                         f"(at most {_fmt_s(slowest_used)})")
        if fits_c[j] == 0:
            parts.append(f"with KV cache for c = {c} jobs per block it holds no block")
        key = (s.memory_gb, s.comm_time_s, s.block_time_s, m)
        if key not in cache:
            if time.monotonic() > deadline:
                skipped += 1
                row["why"] = "; ".join(parts + [f"no what-if (the {budget_s:g} s budget was spent)"])
                continue
            cache[key] = _what_if(scenario, placement, j, m)
        found = cache[key]
        if found is None:
            parts.append(f"with {m} blocks it cannot join a chain at any spot tried: a chain through it also needs "
                         f"free KV cache on servers holding the other {L - m} blocks")
            stranded.append((j, m, row))
        else:
            lower, upper, start, count = found
            d_low, d_up = lower - base[0], upper - base[1]
            parts.append(f"added with {_blocks(start, count)}, it would {_change('lower', d_low, base[0])} and "
                         f"{_change('upper', d_up, base[1])}"
                         + (": a better plan by that bound exists" if base[0] > 0 and d_low / base[0] < -0.01 else ""))
            row["change_if_used_s"] = d_low
        row["why"] = "; ".join(parts)
    out = [rows[j] for j in sorted(rows)]
    if len(out) > MAX_UNUSED_ROWS:
        keep = set(sorted(rows, key=lambda j: (rank[j], j))[:MAX_UNUSED_ROWS])
        out = [rows[j] for j in sorted(keep)]
    notes = []
    alone = [r for r in out if r["change_if_used_s"] is not None]
    if alone and base is not None:
        top = min(alone, key=lambda r: r["change_if_used_s"])
        notes.append(f"adding {top['server']} alone, the best single what-if, would "
                     f"{_change('lower', top['change_if_used_s'], base[0])}")
    if stranded and base is not None and time.monotonic() <= deadline:
        note = _pool_what_if(scenario, placement, stranded, base)
        if note:
            notes.append(note)
    if len(rows) > len(out):
        notes.append(f"{len(rows) - len(out)} more are not listed (the list keeps the {len(out)} fastest per block)")
    return out, skipped, notes


def _pool_what_if(scenario: Scenario, placement: Placement, stranded: list[tuple[int, int, dict]],
                  base: tuple[float, float]) -> str | None:
    """Servers that cannot join a chain alone may form one together: GBP-CR's way (fastest per block first,
    filling blocks 0..L-1 front to back), then GCA on the plan's placement plus that chain."""
    L = scenario.model.num_blocks
    servers = scenario.servers
    order = sorted(stranded, key=lambda t: ((servers[t[0]].comm_time_s + servers[t[0]].block_time_s * t[1]) / t[1],
                                            t[0]))
    start, count = list(placement.start), list(placement.count)
    members, cursor = [], 0
    for j, m, row in order:
        a = min(cursor, L - m)
        start[j], count[j] = a, m
        members.append((j, row))
        cursor = a + m
        if cursor == L:
            break
    if cursor < L:
        one = len(stranded) == 1
        note = (f"the {len(stranded)} server{'' if one else 's'} that cannot join a chain "
                f"{'holds' if one else 'hold'} {cursor} of {L} blocks {'' if one else 'together'}".rstrip()
                + ", too few for a chain of " + ("its" if one else "their") + " own")
        for _, _, row in stranded:
            row["why"] += "; " + note
        return note
    chains = gca(scenario, Placement(tuple(start), tuple(count)))
    ids = {j for j, _ in members}
    if not any(jj in ids for ch in chains for jj, _ in ch.hops):
        return None
    lower, upper = _lower_upper(chains, scenario.workload.arrival_rate, BatchModel.of(scenario))
    d_low, d_up = lower - base[0], upper - base[1]
    names = [servers[j].id for j, _ in members]
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    verdict = f"{_change('lower', d_low, base[0])} and {_change('upper', d_up, base[1])}"
    for j, row in members:
        row["change_if_used_s"] = d_low
        row["why"] += f"; as one new chain of {len(members)} unused servers ({shown}) they would {verdict}"
    return f"{len(members)} of them as one more chain would {verdict}"


# ---------------------------------------------------------------------------
# why this c
# ---------------------------------------------------------------------------

def _c_values(scenario: Scenario, result, arrays: ServerArrays, lo: int, hi: int) -> tuple[dict[int, float | None], bool]:
    """The tuning objective at c = lo..hi, and whether it comes from the algorithm's own c-tuning."""
    run = getattr(result, "tuning", None)
    tuning = run.evaluated if run is not None else result.extra.get("c_tuning")
    if tuning:
        by_c = {int(row["c"]): row.get("objective") for row in tuning}
        return {k: by_c.get(k) for k in range(lo, hi + 1)}, True
    # the algorithm did not tune c (fixed by the caller, or a search seeded from one c): a few GBP-CR + GCA runs
    from .ctuning import evaluate
    values: dict[int, float | None] = {}
    for k in range(lo, hi + 1):
        r = gbpcr(scenario, k, arrays)
        value = evaluate(scenario, r, "lower-bound").objective if r.feasible else math.inf
        values[k] = value if math.isfinite(value) else None
    return values, False


def _c_choice(scenario: Scenario, result, arrays: ServerArrays,
              plan_lower: float | None) -> tuple[dict[str, Any] | None, bool]:
    c = result.c
    if c is None:
        return None, False
    c_max = arrays.max_reservation()
    lo, hi = max(1, c - NEIGHBOURS), min(max(c_max, c), c + NEIGHBOURS)
    values, tuned = _c_values(scenario, result, arrays, lo, hi)
    objective = result.extra.get("c_objective", "lower-bound") if tuned else "lower-bound"
    if objective == "simulation":
        objective = "lower-bound"        # the candidates for simulation were ranked by the lower bound
    run = getattr(result, "tuning", None)
    pruned = run.pruned if run is not None else {}
    if tuned:
        n = len(run.evaluated if run is not None else result.extra["c_tuning"])
        source = (f"c-tuning evaluated {n} of {c_max} values of c by the {objective}"
                  + (" (the others were infeasible, or pruned because their fastest chain alone was slower than "
                     "the best bound)" if n < c_max else ""))
    else:
        source = (f"c was not tuned by this algorithm; GBP-CR + GCA at c = {lo}..{hi}, scored by the lower bound, "
                  f"for comparison")
    mine = values.get(c)
    words = []
    if mine is not None:
        words.append(f"c = {c} gives {mine:.4g} s")
        for k, v in sorted(values.items()):
            if k != c and v is not None:
                words.append(f"c = {k}: {v:.4g} s ({(v - mine) / mine:+.1%})" if mine > 0 else f"c = {k}: {v:.4g} s")
    if not tuned and plan_lower is not None:
        words.append(f"this plan's own placement has lower bound {plan_lower:.4g} s")
    for k in sorted(values):
        if values[k] is None and k in pruned:
            words.append(f"c = {k}: at least {pruned[k]:.4g} s (pruned: its fastest chain alone takes that long)")
    missing = [k for k, v in values.items() if v is None and k != c and k not in pruned]
    if missing:
        words.append(f"c = {', '.join(map(str, missing))}: not evaluated or infeasible")
    words.append("a smaller c leaves room for more blocks per server (fewer, faster hops) but fewer jobs per "
                 "chain; a larger c the opposite")
    neighbours = [{"c": k, "objective_s": v} for k, v in sorted(values.items())]
    return {"c": c, "neighbours": neighbours, "detail": f"{source}. " + "; ".join(words) + "."}, tuned


def _c_sentence(c_choice: dict[str, Any], tuned: bool, plan_lower: float | None) -> str:
    c = c_choice["c"]
    known = [nb for nb in c_choice["neighbours"] if nb["objective_s"] is not None]
    mine = next((nb["objective_s"] for nb in known if nb["c"] == c), None)
    others = [nb for nb in known if nb["c"] != c]
    if not others:
        return f"c = {c}: no neighbouring c could be evaluated."
    runner = min(others, key=lambda nb: nb["objective_s"])
    if tuned and mine is not None and mine > 0:
        return (f"c = {c} scored best; the closest alternative, c = {runner['c']}, scores "
                f"{runner['objective_s']:.4g} s ({(runner['objective_s'] - mine) / mine:+.1%}).")
    own = f" (this plan's lower bound {plan_lower:.4g} s)" if plan_lower is not None else ""
    gbp = f"; GBP-CR + GCA alone scores {mine:.4g} s at c = {c}" if mine is not None else ""
    return f"c = {c}{own}{gbp} and {runner['objective_s']:.4g} s at c = {runner['c']}."


# ---------------------------------------------------------------------------
# the explanation
# ---------------------------------------------------------------------------

def _cache_sizing_sentence(scenario: Scenario) -> str | None:
    """Says what the KV cache per job was sized for when neither the workload nor the model stated a length."""
    model = scenario.model
    if model.cache_tokens_source not in ("workload.input_tokens + output_tokens",
                                         "the family's documented context length"):
        return None
    return (f"KV cache sized for {model.cache_tokens} tokens per job, from {model.cache_tokens_source} "
            "(neither workload.max_tokens nor the model's config gives a longest sequence).")


def _held_back(doc: dict[str, Any], servers: list[dict[str, Any]]) -> list[str]:
    """The plan's ``batch_capacity`` notes (``batch_allocation.held_back_notes``): each joins its server's
    row, and their sentences come back for the summary."""
    notes = [n for n in doc.get("batch_capacity") or [] if isinstance(n, dict) and n.get("text")]
    rows = {row["server"]: row for row in servers}
    for note in notes:
        row = rows.get(note.get("server"))
        if row is not None:
            row["detail"] += f"; {note['text']}"
    return [n["text"] for n in notes]


def _batch_sentence(doc: dict[str, Any], bounds: dict[str, Any]) -> str:
    """Which figures and bounds hold when servers batch (docs/plan-format.md, "Servers that batch")."""
    saturation, total = doc.get("saturation_rate_rps"), doc.get("total_service_rate")
    text = "Servers batch (batch_slowdown)"
    if isinstance(saturation, (int, float)) and isinstance(total, (int, float)):
        text += (f": with every planned slot busy the plan carries at most {saturation:.4g} req/s (its saturation "
                 f"rate; {total:.4g} req/s if no server slowed), and its load is against that")
    if bounds.get("applies"):
        text += ("; the response-time bounds hold under the batch model: the lower one with each chain at its "
                 "one-job speed, the upper one with every planned slot busy (loose at light load: read the "
                 "simulation beside them)")
    else:
        text += "; the closed-form bounds do not apply (see the warnings)"
    return text + "."


def _batch1_sentence(doc: dict[str, Any]) -> str | None:
    """When ``search`` under a batch slowdown returned the layout of its batch-1 pass (``search_steps.batch1``)."""
    steps = doc.get("search_steps") or {}
    b1 = steps.get("batch1")
    if not isinstance(b1, dict) or not b1.get("layout_won"):
        return None
    value, own = steps.get("response_time_lower_s"), b1.get("batch_aware_best_s")
    how = "as that search allocated its KV slots" if b1.get("as_planned_won") else \
        "with its KV slots allocated for the batch model"
    text = (f"The batch-1 layout won: search also planned as if no server slowed with its batch (a batch-1 pass of "
            f"{b1.get('searched_s', 0):.2g} s), and that layout, {how}")
    if isinstance(value, (int, float)):
        text += f", predicts {_fmt_s(value)} mean response under the batch model"
        if isinstance(own, (int, float)):
            text += f" against {_fmt_s(own)} for the best layout the batch-aware search found itself"
    return text + "."


def explain(scenario: Scenario, result, doc: dict[str, Any], budget_s: float = WHATIF_BUDGET_S) -> dict[str, Any]:
    """The ``explanation`` of a plan document ``doc`` built from ``result`` (see the module docstring)."""
    placement = result.placement
    chains = list(result.chains)
    index = {s.id: j for j, s in enumerate(scenario.servers)}
    arrays = ServerArrays.from_scenario(scenario)
    lam = scenario.workload.arrival_rate
    hops = _hops_by_server(chains, index)
    routed_per_request = not chains and placement is not None and result.dispatch is None
    capacities = [ch.capacity for ch in chains]

    servers = []
    # a runtime that sizes its own KV pool (PETALS): the pool, not the free memory, bounds the jobs it holds
    pool = getattr(result, "kv_pool", None) if routed_per_request else None
    pressure = pool_pressure(scenario, placement, pool, doc) if pool is not None else None
    batch = BatchModel.of(scenario)
    occupancy = batch.occupancy(chains) if batch.active else [0] * len(scenario.servers)
    if placement is not None:
        servers = [_server_binding(scenario, j, placement, hops.get(j, []), capacities, routed_per_request,
                                   pool, pressure, occupancy[j])
                   for j in placement.used()]
    held = _held_back(doc, servers)
    routed = set(hops) if chains else (set(placement.used()) if routed_per_request else set())
    base = _lower_upper(chains, lam, BatchModel.of(scenario)) if chains else None
    unused, skipped, unused_notes = _unused(scenario, placement, result, chains, base, routed, arrays, budget_s)
    lower = doc.get("bounds", {}).get("response_time_lower_s")
    c_choice, tuned = _c_choice(scenario, result, arrays, lower) if result.feasible or chains else (None, False)

    warnings = []
    if doc.get("overloaded"):
        warnings.append(f"overloaded: {doc.get('overload_reason') or 'the arrival rate is at or above what the plan serves'}")
    load = doc.get("load")
    if isinstance(load, (int, float)) and NEAR_SATURATION <= load < 1 and not doc.get("overloaded"):
        warnings.append(f"load {load:.0%} is near saturation: a small rise in the arrival rate raises response "
                        f"times sharply")
    bounds = doc.get("bounds") or {}
    if bounds.get("applies") is False:
        warnings.append(f"the closed-form bounds do not apply: {bounds.get('why_not') or 'no reason given'}")
    for row in doc.get("placement", []):
        if row.get("free_memory_gb", 0) < -1e-9:
            warnings.append(f"{row['server']} is over its memory by {_fmt_gb(-row['free_memory_gb'])}")
    sim = doc.get("simulation") or {}
    for k, u in enumerate(sim.get("chain_utilisation") or []):
        if isinstance(u, (int, float)) and u >= 0.95:
            warnings.append(f"chain {k + 1} was busy {u:.0%} of the simulated time: it saturates first")
    if skipped:
        warnings.append(f"{skipped} unused server{'s' if skipped != 1 else ''} without a what-if: the "
                        f"{budget_s:g} s budget was spent")

    summary = []
    if not result.feasible:
        summary.append(f"No feasible plan: {doc.get('reason') or result.reason or 'no reason given'}.")
    n_used = len(placement.used()) if placement is not None else 0
    idle = list(doc.get("idle_servers") or [])
    if placement is not None:
        if chains:
            summary.append(f"Uses {len(routed)} of {len(scenario.servers)} servers in {len(chains)} chain"
                           f"{'s' if len(chains) != 1 else ''} holding {sum(capacities)} jobs at once"
                           + (f", at load {load:.0%}" if isinstance(load, (int, float)) else "")
                           # servers may hold blocks that no chain routes through (GCA found no slot for them)
                           + (f"; {len(idle)} more server{'s' if len(idle) != 1 else ''} "
                              f"{'hold' if len(idle) != 1 else 'holds'} blocks that no chain passes through "
                              f"({_names(idle)}): weights that would load and never serve, so the exports leave "
                              f"{'them' if len(idle) != 1 else 'it'} out" if idle else "") + ".")
        else:
            summary.append(f"Places blocks on {n_used} of {len(scenario.servers)} servers and routes each request "
                           f"itself (no fixed chains).")
    counts: dict[str, int] = {}
    for row in servers:
        counts[row["binding"]] = counts.get(row["binding"], 0) + 1
    if counts:
        names = {"memory-cache": "KV-cache memory", "memory-blocks": "memory for blocks",
                 "communication": "communication", "compute": "compute", "unused": "nothing (no chain uses it)"}
        summary.append("What binds: " + ", ".join(f"{names[k]} on {v} server{'s' if v != 1 else ''}"
                                                  for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) + ".")
    if unused:
        small = sum(1 for u in unused if u["why"].startswith("too small"))
        total = len(scenario.servers) - len(routed) - len(idle)
        text = f"{total} server{'s' if total != 1 else ''} unused"
        if small:
            text += f" ({small} too small for one block)"
        summary.append(text + (": " + "; ".join(unused_notes) if unused_notes else "") + ".")
    if batch.active and chains:
        summary.append(_batch_sentence(doc, bounds))
    if held:
        summary.append(f"Held back by the batch slowdown: {held[0]}" + (
            f" (and {len(held) - 1} more server{'s' if len(held) != 2 else ''}, in the servers' notes)"
            if len(held) > 1 else "") + ".")
    if c_choice is not None:
        summary.append(_c_sentence(c_choice, tuned, lower))
    batch1 = _batch1_sentence(doc)
    if batch1:
        summary.append(batch1)
    sizing = _cache_sizing_sentence(scenario)
    if sizing:
        summary.append(sizing)
    summary.extend(w[0].upper() + w[1:] + "." for w in warnings[:3])
    return {"summary": summary, "servers": servers, "unused": unused, "c_choice": c_choice, "warnings": warnings}
