"""Plain-loop references shared by the tests (the EMPG paper's algorithm, one step at a time)."""

from __future__ import annotations

import math
import statistics


def loop_empg(
    rows, *, k=1.0, k_future=1.0, zeta=0.1, scale=True, bonus=True, final_norm="mean", eps=1e-8
):
    """rows: list of (traj, step, entropy, advantage). Returns list of floats aligned with rows."""
    hs = [r[2] for r in rows]
    lo, hi = min(hs), max(hs)
    hn = {(r[0], r[1]): (r[2] - lo) / (hi - lo + eps) for r in rows}
    mean_w = sum(math.exp(-k * v) for v in hn.values()) / len(rows)
    out = []
    for traj, step, _, adv in rows:
        g = math.exp(-k * hn[(traj, step)]) / mean_w if scale else 1.0
        f = 0.0
        if bonus and (traj, step + 1) in hn:
            f = math.exp(-k_future * hn[(traj, step + 1)])
        out.append(g * adv + zeta * f)
    if final_norm in ("mean", "mean_std"):
        m = sum(out) / len(out)
        out = [x - m for x in out]
    if final_norm == "mean_std":
        sd = statistics.stdev(out) if len(out) > 1 else 0.0
        out = [x / (sd + eps) for x in out]
    return out
