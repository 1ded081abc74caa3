"""Metrics sinks: ``metrics.jsonl`` (always), TensorBoard and Weights & Biases (when installed).

Every record is one JSON object with ``kind`` ("train" or "eval") and ``iteration``; keys are
documented in docs/training.md. Records are appended and flushed line by line, so a killed run
keeps every finished iteration; on resume, records past the checkpoint are dropped.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None  # JSON has no NaN/inf
    return v


class MetricsLogger:
    def __init__(
        self, run_dir: Path, *, tensorboard: bool = True, wandb: bool = False, config=None
    ):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tb = None
        self._wandb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except ImportError:
                pass
        if wandb:
            try:
                import wandb as wb

                os.environ.setdefault("WANDB_MODE", "offline")
                self._wandb = wb.init(dir=str(run_dir), config=config, reinit=True)
            except Exception as e:  # wandb missing or failing must not stop training
                warnings.warn(f"Weights & Biases logging disabled: {e}", stacklevel=2)

    def truncate_after(self, iteration: int) -> None:
        """Drop records of iterations > ``iteration`` (after resuming from a checkpoint)."""
        if not self.path.exists():
            return
        keep = [r for r in read_metrics(self.path) if r.get("iteration", 0) <= iteration]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
        os.replace(tmp, self.path)

    def log(self, record: dict[str, Any]) -> None:
        record = {k: _clean(v) for k, v in record.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
        step = int(record.get("iteration", 0))
        numeric = {
            k: v for k, v in record.items() if isinstance(v, int | float) and k != "iteration"
        }
        if self._tb is not None:
            for k, v in numeric.items():
                if v is not None:
                    self._tb.add_scalar(k, v, step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(numeric, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Records of a metrics.jsonl; a torn last line (killed mid-write) is ignored."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
