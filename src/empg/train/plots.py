"""PNG plots of a run's metrics.jsonl (matplotlib, headless)."""

from __future__ import annotations

import math
import os
from pathlib import Path

from empg.train.metrics import read_metrics

PANELS = {
    "success": ["rollout/success_rate", "eval/*/success_rate"],
    "reward": ["rollout/reward_mean"],
    "kl": ["actor/approx_kl", "actor/kl_ref"],
    "policy_entropy": ["rollout/entropy_mean", "actor/entropy_mean"],
    "grad_norm": ["actor/grad_norm"],
    "clip_fraction": ["actor/clipfrac", "actor/clipfrac_high", "actor/clipfrac_low"],
    "advantages": ["adv/mean", "adv/std", "adv/min", "adv/max"],
}


def _series(records, key: str) -> dict[str, tuple[list[int], list[float]]]:
    """Every metric matching ``key`` (a glob) as (iterations, values). A row of the kind that
    logs the metric (train or eval) without a finite value for it, such as a skipped update,
    contributes NaN, so the line breaks there instead of joining across the gap."""
    import fnmatch

    kinds: dict[str, set] = {}
    for r in records:
        for k, v in r.items():
            if fnmatch.fnmatch(k, key) and _number(v) is not None:
                kinds.setdefault(k, set()).add(r.get("kind"))
    out: dict[str, tuple[list[int], list[float]]] = {}
    for k in kinds:
        xs, ys = out.setdefault(k, ([], []))
        for r in records:
            if r.get("kind") in kinds[k] and isinstance(r.get("iteration", 0), int):
                v = _number(r.get(k))
                xs.append(int(r.get("iteration", 0)))
                ys.append(math.nan if v is None else v)
    return out


def _number(v: object) -> float | None:
    """``v`` as a finite float, or None (a missing value, null, NaN, inf or a non-number)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def plot_run(run_dir: str | Path) -> list[Path]:
    """Write ``run_dir/plots/<panel>.png`` for every panel with data; return the paths.

    Draws on matplotlib ``Figure`` objects with the Agg canvas, without pyplot, so the
    caller's matplotlib backend (a notebook's inline one, say) is left as it was."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    records = read_metrics(path)
    out_dir = run_dir / "plots"
    out_dir.mkdir(exist_ok=True)
    written = []
    for panel, keys in PANELS.items():
        series = {}
        for key in keys:
            series.update(_series(records, key))
        if not series:  # and no earlier run's picture left to look current
            (out_dir / f"{panel}.png").unlink(missing_ok=True)
            continue
        fig = Figure(figsize=(6, 3.5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for name, (xs, ys) in sorted(series.items()):
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=name)
        ax.set_xlabel("iteration")
        ax.set_title(panel.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        target = out_dir / f"{panel}.png"
        tmp = out_dir / f".{panel}.{os.getpid()}.png"  # a viewer never sees half a file
        try:
            fig.savefig(tmp, dpi=90)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        written.append(target)
    return written
