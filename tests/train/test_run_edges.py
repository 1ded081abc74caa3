"""Edges of a run: typos caught before the model loads, resuming a folder spelt another way, an
unreadable saved config, a run of 0 iterations, logs closed when a run fails, non-finite
log-probs in an update, an unloadable model path."""

from __future__ import annotations

import pytest
import torch
from train_helpers import QUIET, tiny_overrides, two_row_update_batch

from empg.errors import CheckpointError, ConfigError, TrainingDivergedError
from empg.models.default import load_policy
from empg.train.config import load_config
from empg.train.metrics import read_metrics
from empg.train.trainer import Trainer, evaluate_model
from empg.train.update import ppo_update


@pytest.mark.parametrize(
    "override", ["env.train_split=valid_sean", "eval.splits=[valid_sean]", "env.kwargs={colour: 1}"]
)
def test_environment_typos_fail_before_the_model_is_loaded(tmp_path, override):
    # the model path does not exist: an error about the environment proves it came first
    cfg = load_config(
        None, [f"model.path={tmp_path / 'no-such-model'}", f"run_dir={tmp_path / 'r'}", override]
    )
    with pytest.raises(ConfigError, match="cannot build environment 'household'"):
        Trainer(cfg, log=QUIET)
    if override.startswith("eval") or override.startswith("env.kwargs"):
        with pytest.raises(ConfigError, match="cannot build environment 'household'"):
            evaluate_model(cfg)


def test_resume_accepts_the_run_folder_spelt_another_way(tiny_policy_dir, tmp_path):
    cfg = load_config(None, tiny_overrides(tiny_policy_dir, tmp_path / "r", iterations=1))
    Trainer(cfg, log=QUIET).run()
    again = load_config(None, tiny_overrides(tiny_policy_dir, f"{tmp_path}/./r/", iterations=2))
    result = Trainer(again, resume=True, log=QUIET).run()
    assert result.iterations_done == 2
    train = [r for r in read_metrics(tmp_path / "r" / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["iteration"] for r in train] == [1, 2]


def test_an_unreadable_saved_config_is_named_on_resume(tiny_policy_dir, tmp_path):
    cfg = load_config(None, tiny_overrides(tiny_policy_dir, tmp_path, iterations=1))
    Trainer(cfg, log=QUIET).run()
    (tmp_path / "config.json").write_text('{"seed": 0, "iterat')
    with pytest.raises(CheckpointError, match=r"config\.json"):
        Trainer(cfg, resume=True, log=QUIET)


def test_resume_damage_of_another_shape_is_a_checkpoint_error(tiny_policy_dir, tmp_path):
    # valid JSON that is not a config object; an optimizer file holding a list
    cfg = load_config(None, tiny_overrides(tiny_policy_dir, tmp_path, iterations=1))
    Trainer(cfg, log=QUIET).run()
    saved = (tmp_path / "config.json").read_text()
    (tmp_path / "config.json").write_text("null")
    with pytest.raises(CheckpointError, match=r"config\.json: it holds a JSON NoneType"):
        Trainer(cfg, resume=True, log=QUIET)
    (tmp_path / "config.json").write_text(saved)
    torch.save([1, 2], tmp_path / "checkpoints" / "iter_000001" / "optimizer.pt")
    with pytest.raises(CheckpointError, match=r"optimizer\.pt"):
        Trainer(cfg, resume=True, log=QUIET)


def test_resume_with_fewer_iterations_than_done_is_refused_and_changes_nothing(
    tiny_policy_dir, tmp_path
):
    cfg = load_config(None, tiny_overrides(tiny_policy_dir, tmp_path, iterations=2))
    Trainer(cfg, log=QUIET).run()
    before = (tmp_path / "config.json").read_text()
    fewer = load_config(None, tiny_overrides(tiny_policy_dir, tmp_path, iterations=1))
    with pytest.raises(ConfigError, match=r"has done 2 iterations; iterations=1"):
        Trainer(fewer, resume=True, log=QUIET)
    assert (tmp_path / "config.json").read_text() == before
    # the same number is allowed: nothing left to do
    assert Trainer(cfg, resume=True, log=QUIET).run().iterations_done == 2


def test_environments_in_worker_processes_train_the_same_as_in_threads(tiny_policy_dir, tmp_path):
    runs = {}
    for backend in ("thread", "process"):
        over = tiny_overrides(
            tiny_policy_dir, tmp_path / backend, iterations=1, **{"rollout.pool_backend": backend}
        )
        Trainer(load_config(None, over), log=QUIET).run()
        runs[backend] = [
            {k: v for k, v in r.items() if not k.startswith("time/")}
            for r in read_metrics(tmp_path / backend / "metrics.jsonl")
        ]
    assert runs["process"] == runs["thread"]
    assert any(r["kind"] == "train" for r in runs["process"])


def test_zero_iterations_evaluates_once(tiny_policy_dir, tmp_path):
    cfg = load_config(None, tiny_overrides(tiny_policy_dir, tmp_path, iterations=0))
    result = Trainer(cfg, log=QUIET).run()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [(r["kind"], r["iteration"]) for r in records] == [("eval", 0)]
    assert result.after == result.before


def _nan_run(tiny_policy_dir, tmp_path, **extra) -> Trainer:
    """A trainer whose initial evaluation is done with healthy weights and whose weights are
    then NaN: its first iteration fails and, with max_bad_updates=1, stops the run."""
    over = tiny_overrides(tiny_policy_dir, tmp_path, iterations=3, **extra)
    trainer = Trainer(load_config(None, [*over, "optim.max_bad_updates=1"]), log=QUIET)
    trainer.state["before"] = trainer.evaluate(0)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.fill_(float("nan"))
    return trainer


def test_wandb_logs_offline_and_a_failed_run_finishes_its_wandb_run(
    tiny_policy_dir, tmp_path, monkeypatch
):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = load_config(
        None, tiny_overrides(tiny_policy_dir, tmp_path / "ok", iterations=1, wandb=True)
    )
    Trainer(cfg, log=QUIET).run()
    assert wandb.run is None  # finished
    (log,) = (tmp_path / "ok" / "wandb").glob("offline-run-*/run-*.wandb")
    data = log.read_bytes()  # the run's records; keys are stored as plain strings
    for key in (b"eval/success_rate", b"actor/pg_loss", b"rollout/success_rate"):
        assert key in data, key

    trainer = _nan_run(tiny_policy_dir, tmp_path / "bad", wandb=True)
    assert wandb.run is not None
    with pytest.raises(TrainingDivergedError):
        trainer.run()
    assert wandb.run is None  # finished (as failed), not left open for the next run


def test_non_finite_old_logprobs_skip_the_update_instead_of_raising(tiny_policy_dir):
    cfg = load_config(None, ["optim.mini_batch_steps=2", "optim.max_bad_updates=3"])
    model, tok, batch = two_row_update_batch(tiny_policy_dir)
    batch.old_logprobs[0, 1] = float("nan")
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    with pytest.warns(UserWarning, match="update skipped"):
        metrics, streak = ppo_update(
            model, opt, batch, cfg.algo, cfg.optim, pad_id=tok.pad_token_id
        )
    assert streak == 1 and metrics["actor/skipped_updates"] == 1.0
    assert metrics["actor/updates"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_a_folder_without_weights_is_a_config_error(tmp_path):
    from transformers import Qwen2Config

    Qwen2Config(
        vocab_size=50,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    ).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="cannot load a model and tokenizer"):
        load_policy(tmp_path)


def test_eval_of_a_checkpoint_uses_its_runs_config_and_names_damage(
    tiny_policy_dir, tmp_path, capsys, monkeypatch
):
    """`empg eval --checkpoint` plays with the run's own settings (here valid_unseen, 3 turns),
    not the defaults, says which policy and iteration it evaluated, and damaged weights are a
    failed run (exit 1), as in `empg train --resume`."""
    import json

    from empg import cli

    run = tmp_path / "run"
    over = tiny_overrides(tiny_policy_dir, run, iterations=1, **{"eval.splits": "[valid_unseen]"})
    Trainer(load_config(None, over), log=QUIET).run()
    ckpt = run / "checkpoints" / "iter_000001"
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(ckpt), "eval.episodes=1"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["env"] == "household" and out["iteration"] == 1
    assert out["model"] == str(ckpt / "model")
    assert "eval/valid_unseen/success_rate" in out and "eval/valid_seen/success_rate" not in out
    assert len(out["eval/valid_unseen/wins"]) == 1  # the override applied on top
    assert "the run's saved config" in captured.err
    monkeypatch.chdir(ckpt.parent)  # a relative checkpoint path finds its run the same way
    assert cli.main(["eval", "--checkpoint", "iter_000001", "eval.episodes=1"]) == 0
    assert "eval/valid_unseen/success_rate" in json.loads(capsys.readouterr().out)
    weights = ckpt / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert cli.main(["eval", "--checkpoint", str(ckpt)]) == 1
    last = capsys.readouterr().err.splitlines()[-1]  # after the "saved config" line
    assert last.startswith("empg eval: error: cannot load the model of")


def test_a_long_evaluation_reports_progress_and_plays_the_same(
    tiny_policy_dir, tmp_path, monkeypatch
):
    import empg.train.rollouts as rollouts_mod
    from empg.train.trainer import evaluate_model

    cfg = load_config(None, tiny_overrides(tiny_policy_dir, tmp_path, **{"eval.episodes": 3}))
    quiet = evaluate_model(cfg)
    monkeypatch.setattr(rollouts_mod, "PROGRESS_EVERY_S", 0.0)  # a line after every turn
    lines: list[str] = []
    loud = evaluate_model(cfg, log=lines.append)
    progress = [ln for ln in lines if ln.startswith("[empg]   eval valid_seen: turn ")]
    assert progress and progress[0].startswith("[empg]   eval valid_seen: turn 1, ")
    assert "/3 episodes done" in progress[0]
    assert loud == quiet
