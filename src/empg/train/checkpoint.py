"""Checkpoints written atomically: a process killed at any moment (kill -9) leaves either the
previous complete checkpoint or the new complete one, never a half-written one.

Layout: ``run_dir/checkpoints/iter_000012/`` holds the model (``save_pretrained``, safetensors),
``optimizer.pt`` (tensors and numbers only; loaded with ``weights_only=True``),
``trainer_state.json`` (iteration, counters, RNG states). ``run_dir/checkpoints/latest`` names
the newest complete checkpoint and is replaced atomically after the folder is complete.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from empg.errors import CheckpointError  # defined there so the CLI can catch it without torch
from empg.files import atomic_write_text, fsync_dir, fsync_tree


def rng_state() -> dict[str, Any]:
    return {
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": np.random.get_state()[1].tolist(),
        "numpy_pos": int(np.random.get_state()[2]),
        "torch": torch.get_rng_state().tolist(),
        # every CUDA device's generator (dropout and other on-device sampling), where present
        "cuda": [t.tolist() for t in torch.cuda.get_rng_state_all()]
        if torch.cuda.is_available()
        else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(
        ("MT19937", np.array(state["numpy"], dtype=np.uint32), state["numpy_pos"], 0, 0.0)
    )
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    cuda = state.get("cuda") or []  # absent in checkpoints written before it was saved
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([torch.tensor(x, dtype=torch.uint8) for x in cuda])
    elif cuda:
        warnings.warn(
            f"the checkpoint holds {len(cuda)} CUDA generator states but this machine has "
            f"{torch.cuda.device_count() if torch.cuda.is_available() else 0} GPUs; they are "
            "not restored, so on-GPU sampling will not repeat the interrupted run",
            stacklevel=2,
        )


def save_checkpoint(
    run_dir: Path,
    iteration: int,
    model,
    optimizer,
    scheduler,
    state: dict[str, Any],
    keep: int = 2,
    tokenizer=None,
) -> Path:
    """Write checkpoint ``iteration`` atomically and prune older ones beyond ``keep``."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"iter_{iteration:06d}"
    tmp = root / f".tmp-iter_{iteration:06d}-{os.getpid()}"
    for stale in root.glob(".tmp-iter_*"):  # this one's, or a killed process's half-written one
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir()
    model.save_pretrained(tmp / "model", safe_serialization=True)
    if tokenizer is not None:  # so the checkpoint's model folder loads on its own (empg eval)
        tokenizer.save_pretrained(tmp / "model")
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
        tmp / "optimizer.pt",
    )
    full_state = dict(state, iteration=iteration, rng=rng_state())
    (tmp / "trainer_state.json").write_text(json.dumps(full_state))
    fsync_tree(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(root)
    atomic_write_text(root / "latest", final.name)
    # prune by iteration number (not name: iter_1000000 sorts before iter_999999); folders past
    # this one were left by a run killed after them and resumed from an earlier checkpoint
    done = _checkpoints(root)
    for it, path in done:
        if it > iteration:
            shutil.rmtree(path, ignore_errors=True)
    kept = [path for it, path in done if it <= iteration]
    for old in kept[:-keep]:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def _checkpoints(root: Path) -> list[tuple[int, Path]]:
    """``(iteration, folder)`` of every ``iter_N`` folder under ``root``, by iteration."""
    found = []
    for p in root.glob("iter_*"):
        suffix = p.name[len("iter_") :]
        if p.is_dir() and suffix.isdecimal():
            found.append((int(suffix), p))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    root = Path(run_dir) / "checkpoints"
    marker = root / "latest"
    if marker.is_file():
        path = root / marker.read_text().strip()
        if (path / "trainer_state.json").is_file():
            return path
    done = [p for _, p in _checkpoints(root) if (p / "trainer_state.json").is_file()]
    return done[-1] if done else None


#: what a checkpoint's trainer_state.json must hold to resume from
STATE_KEYS = ("iteration", "rng")


def load_trainer_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads((Path(path) / "trainer_state.json").read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}/trainer_state.json: {e}") from e
    missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(
            f"{path}/trainer_state.json lacks {missing}; the checkpoint is damaged"
        )
    state.setdefault("bad_streak", 0)
    state.setdefault("before", {})
    return state


def load_optimizer(path: Path, optimizer, scheduler) -> None:
    try:
        blob = torch.load(Path(path) / "optimizer.pt", map_location="cpu", weights_only=True)
        optimizer.load_state_dict(blob["optimizer"])
        scheduler.load_state_dict(blob["scheduler"])
    except (
        OSError,
        EOFError,
        RuntimeError,
        ValueError,
        KeyError,
        TypeError,
        IndexError,
        pickle.UnpicklingError,
    ) as e:  # unreadable, truncated, not the saved layout, or another model's optimizer state
        raise CheckpointError(f"cannot load {path}/optimizer.pt: {type(e).__name__}: {e}") from e
