"""How much a server's batch slowdown changed: what decides whether a new curve re-plans.

A job's time on a server with ``b`` jobs is ``block_time_s x factor(b)``, so a curve whose factor
moves by 30 % at some occupancy changes that server's time there by 30 %, exactly as a block time
30 % off would.  The change of a curve is therefore its largest relative change of ``factor(b)``
over the points of both curves (both are linear between their points, so the largest change is at
one of them), and it is held to the cluster's ``replan_calibration_threshold`` like a block time.
No curve is ``factor(b) = 1`` (the batch-1 model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from solvers.batching import NO_SLOWDOWN, BatchSlowdown


@dataclass(frozen=True)
class CurveChange:
    relative: float          # largest |factor_new(b) / factor_old(b) - 1|
    concurrency: int         # the b where it is largest
    before: float
    after: float

    def text(self, server_id: str) -> str:
        return (f"batch_slowdown of server {server_id} at {self.concurrency} jobs {self.before:.4g}x -> "
                f"{self.after:.4g}x ({self.after / self.before - 1:+.0%})")


def _curve(pairs: Any) -> BatchSlowdown:
    # stored curves were checked when stored; an unreadable one counts as none rather than failing an edit
    try:
        return BatchSlowdown.from_pairs(pairs) if pairs else NO_SLOWDOWN
    except ValueError:
        return NO_SLOWDOWN


def curve_change(old: Any, new: Any) -> CurveChange | None:
    """The largest change between two ``[[concurrency, factor], ...]`` lists (``None``: the same curve)."""
    a, b = _curve(old), _curve(new)
    if a == b:
        return None
    points = sorted(set(a.concurrency) | set(b.concurrency))
    # past both last points each curve follows its last segment: one point further shows where they part
    points.append(points[-1] * 2)
    best = max(points, key=lambda x: abs(b.factor(x) / a.factor(x) - 1.0))
    relative = abs(b.factor(best) / a.factor(best) - 1.0)
    if relative < 1e-12:
        return None        # written differently, the same function (a flat curve is no curve)
    return CurveChange(relative, best, a.factor(best), b.factor(best))
