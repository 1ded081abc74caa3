"""metrics.jsonl / TensorBoard bookkeeping and checkpoint housekeeping (real files, real
TensorBoard event files, a tiny real policy)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from train_helpers import QUIET, tiny_overrides

from empg.errors import CheckpointError
from empg.train.checkpoint import latest_checkpoint, save_checkpoint
from empg.train.config import load_config
from empg.train.metrics import MetricsLogger, read_metrics
from empg.train.trainer import Trainer, load_model


def test_records_are_strict_json_all_the_way_down(tmp_path):
    log = MetricsLogger(tmp_path, tensorboard=False)
    log.log(
        {
            "kind": "train",
            "iteration": 1,
            "a": float("nan"),
            "b": np.float32(0.5),
            "c": torch.tensor(2.0),
            "nested": {"x": [float("inf"), 1.0]},
        }
    )
    line = (tmp_path / "metrics.jsonl").read_text().strip()
    json.loads(line, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    (rec,) = read_metrics(tmp_path / "metrics.jsonl")
    assert rec["a"] is None and rec["b"] == 0.5 and rec["c"] == 2.0
    assert rec["nested"] == {"x": [None, 1.0]}
    with open(tmp_path / "metrics.jsonl", "a") as f:  # a stray non-object line and a torn one
        f.write('[1, 2]\n{"kind": "tr')
    assert read_metrics(tmp_path / "metrics.jsonl") == [rec]


def test_tensorboard_forgets_the_lost_iterations_on_resume(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = MetricsLogger(tmp_path, tensorboard=True)
    for it in (1, 2, 3):  # iteration 3 was logged, its checkpoint lost
        first.log({"kind": "train", "iteration": it, "x": float(it)})
    first.close()
    again = MetricsLogger(tmp_path, tensorboard=True, purge_step=3)
    again.log({"kind": "train", "iteration": 3, "x": 30.0})
    again.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    events = acc.Scalars("x")
    assert [(e.step, e.value) for e in events] == [(1, 1.0), (2, 2.0), (3, 30.0)]


def test_pruning_goes_by_iteration_number_and_drops_abandoned_later_ones(tiny_policy_dir, tmp_path):
    model, _ = load_model(load_config(None, [f"model.path={tiny_policy_dir}"]))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    root = tmp_path / "checkpoints"
    state = {"bad_streak": 0, "before": {}}
    save_checkpoint(tmp_path, 999_999, model, opt, sched, state, keep=1)
    assert latest_checkpoint(tmp_path).name == "iter_999999"
    save_checkpoint(tmp_path, 1_000_000, model, opt, sched, state, keep=1)
    assert sorted(p.name for p in root.glob("iter_*")) == ["iter_1000000"]
    assert latest_checkpoint(tmp_path).name == "iter_1000000"
    # a run killed after writing iter_6 and resumed from iter_4: saving iter_5 keeps iter_5
    for it in (4, 6):
        save_checkpoint(tmp_path / "r", it, model, opt, sched, state, keep=1)
    (tmp_path / "r" / "checkpoints" / "latest").write_text("iter_000004")
    leftover = tmp_path / "r" / "checkpoints" / ".tmp-iter_000006-99999"  # a killed writer's
    leftover.mkdir()
    save_checkpoint(tmp_path / "r", 5, model, opt, sched, state, keep=1)
    names = sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir())
    assert names == ["iter_000005", "latest"]
    assert latest_checkpoint(tmp_path / "r").name == "iter_000005"


@pytest.mark.parametrize("damage", ["optimizer", "rng", "model"])
def test_a_damaged_checkpoint_is_a_checkpoint_error(tiny_policy_dir, tmp_path, damage):
    cfg = load_config(None, tiny_overrides(tiny_policy_dir, tmp_path, iterations=1))
    Trainer(cfg, log=QUIET).run()
    ckpt = latest_checkpoint(tmp_path)
    if damage == "optimizer":
        (ckpt / "optimizer.pt").write_bytes(b"not a torch file")
        match = "cannot load .*optimizer.pt"
    elif damage == "model":
        (ckpt / "model" / "model.safetensors").write_bytes(b"truncated")
        match = "cannot load the model of"
    else:
        state = json.loads((ckpt / "trainer_state.json").read_text())
        del state["rng"]
        (ckpt / "trainer_state.json").write_text(json.dumps(state))
        match = "lacks \\['rng'\\]"
    more = load_config(None, tiny_overrides(tiny_policy_dir, tmp_path, iterations=2))
    with pytest.raises(CheckpointError, match=match):
        Trainer(more, resume=True, log=QUIET)


def test_resuming_a_finished_run_does_not_evaluate_it_twice(tiny_policy_dir, tmp_path):
    cfg = load_config(None, tiny_overrides(tiny_policy_dir, tmp_path, iterations=1))
    first = Trainer(cfg, log=QUIET).run()
    again = Trainer(cfg, resume=True, log=QUIET).run()
    kinds = [(r["kind"], r["iteration"]) for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert kinds == [("eval", 0), ("train", 1), ("eval", 1)]
    assert again.after["eval/success_rate"] == first.after["eval/success_rate"]
    assert not math.isnan(again.before["eval/success_rate"])
    assert os.path.isdir(tmp_path / "checkpoints" / "iter_000001")


def test_raising_iterations_on_a_cosine_resume_says_the_schedule_changed(tiny_policy_dir, tmp_path):
    cosine = {"optim.schedule": "cosine"}
    cfg = load_config(None, tiny_overrides(tiny_policy_dir, tmp_path, iterations=1, **cosine))
    Trainer(cfg, log=QUIET).run()
    lines: list[str] = []
    more = load_config(None, tiny_overrides(tiny_policy_dir, tmp_path, iterations=2, **cosine))
    Trainer(more, resume=True, log=lines.append)
    assert any("cosine schedule now spans 2 iterations (it spanned 1)" in ln for ln in lines)


def test_a_wandb_error_while_logging_turns_wandb_off_and_training_logs_on(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    log = MetricsLogger(tmp_path, tensorboard=False, wandb=True)
    assert log._wandb is not None

    def broken(*_a, **_k):
        raise RuntimeError("the W&B service went away")

    monkeypatch.setattr(log._wandb, "log", broken)
    with pytest.warns(UserWarning, match="Weights & Biases logging disabled: the W&B service"):
        log.log({"kind": "train", "iteration": 1, "x": 1.0})
    log.log({"kind": "train", "iteration": 2, "x": 2.0})
    log.close()
    assert [r["x"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1.0, 2.0]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")
def test_metrics_reach_the_disk_before_each_checkpoint(tiny_policy_dir, tmp_path, monkeypatch):
    """After a power loss a checkpoint must not be newer than the records it continues from:
    metrics.jsonl is fsynced before every checkpoint is written."""
    import empg.train.trainer as trainer_mod

    events: list[str] = []
    real_fsync, real_save = os.fsync, trainer_mod.save_checkpoint

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("metrics.jsonl"):
            events.append("fsync metrics")
        return real_fsync(fd)

    def save(*a, **k):
        events.append("checkpoint")
        return real_save(*a, **k)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(trainer_mod, "save_checkpoint", save)
    cfg = load_config(None, tiny_overrides(tiny_policy_dir, tmp_path, iterations=2))
    Trainer(cfg, log=QUIET).run()
    assert events == ["fsync metrics", "checkpoint"] * 2
