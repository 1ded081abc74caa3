"""PNG plots of a run's metrics.jsonl (matplotlib, headless)."""

from __future__ import annotations

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
    import fnmatch

    out: dict[str, tuple[list[int], list[float]]] = {}
    for r in records:
        for k, v in r.items():
            if fnmatch.fnmatch(k, key) and isinstance(v, int | float) and v is not None:
                xs, ys = out.setdefault(k, ([], []))
                xs.append(int(r.get("iteration", 0)))
                ys.append(float(v))
    return out


def plot_run(run_dir: str | Path) -> list[Path]:
    """Write ``run_dir/plots/<panel>.png`` for every panel with data; return the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for name, (xs, ys) in sorted(series.items()):
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=name)
        ax.set_xlabel("iteration")
        ax.set_title(panel.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        target = out_dir / f"{panel}.png"
        fig.savefig(target, dpi=90)
        plt.close(fig)
        written.append(target)
    return written
