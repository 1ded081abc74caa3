"""Metrics sinks: ``metrics.jsonl`` (always), TensorBoard and Weights & Biases (when installed).

Every record is one JSON object with ``kind`` ("train" or "eval") and ``iteration``; keys are
documented in docs/training.md. Records are appended and flushed line by line, so a killed run
keeps every finished iteration; on resume, records past the checkpoint are dropped.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

from empg.files import atomic_write_text, fsync_dir


def _clean(v: Any) -> Any:
    """``v`` as plain JSON: NaN/inf -> None (JSON has neither), numpy and 0-d torch scalars ->
    Python numbers, containers cleaned all the way down."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if hasattr(v, "item") and callable(v.item) and getattr(v, "ndim", 0) == 0:
        v = v.item()  # numpy scalar or 0-d tensor
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class MetricsLogger:
    def __init__(
        self,
        run_dir: Path,
        *,
        tensorboard: bool = True,
        wandb: bool = False,
        config=None,
        purge_step: int | None = None,
    ):
        """``purge_step``: on resume, the first iteration to log again; TensorBoard drops its
        events from there on (as :meth:`truncate_after` does for ``metrics.jsonl``)."""
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tb = None
        self._wandb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=purge_step)
            except ImportError:
                pass
        if wandb:
            try:
                import wandb as wb

                os.environ.setdefault("WANDB_MODE", "offline")
                self._wandb = wb.init(dir=str(run_dir), config=config, reinit=_reinit(wb))
            except Exception as e:  # wandb missing or failing must not stop training
                warnings.warn(f"Weights & Biases logging disabled: {e}", stacklevel=2)

    def truncate_after(self, iteration: int) -> None:
        """Drop records of iterations > ``iteration`` (after resuming from a checkpoint)."""
        if not self.path.exists():
            return
        keep = [r for r in read_metrics(self.path) if r.get("iteration", 0) <= iteration]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in keep))

    def log(self, record: dict[str, Any]) -> None:
        record = _clean(record)
        with open(self.path, "a") as f:
            f.write(json.dumps(record, allow_nan=False) + "\n")
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
            try:
                self._wandb.log(numeric, step=step)
            except Exception as e:  # as at start-up: W&B failing must not stop training
                warnings.warn(f"Weights & Biases logging disabled: {e}", stacklevel=2)
                with contextlib.suppress(Exception):
                    self._wandb.finish(exit_code=1)
                self._wandb = None

    def sync(self) -> None:
        """Flush ``metrics.jsonl`` to disk (``fsync``): called before each checkpoint, so that
        after a power loss no checkpoint is newer than the records it continues from."""
        if self.path.exists():
            with open(self.path, "rb") as f:
                os.fsync(f.fileno())
            fsync_dir(self.path.parent)  # the file's name, for a new file

    def close(self, failed: bool = False) -> None:
        """Close the TensorBoard writer and finish the W&B run (marked failed with
        ``failed``); a second call does nothing."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish(exit_code=1 if failed else 0)
            self._wandb = None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Records of a metrics.jsonl; a torn last line (killed mid-write) and anything that is not
    a JSON object are ignored."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def _reinit(wb: Any) -> str | bool:
    """``wandb.init``'s setting that finishes a run still open in this process (a second
    trainer in one process): ``"finish_previous"`` where the installed wandb knows it (the
    boolean is deprecated there), else the older ``True``."""
    try:
        wb.Settings(reinit="finish_previous")
    except Exception:
        return True
    return "finish_previous"
