"""Trainer: smoke run, exact resume, kill -9 safety, advantages vs plain references, dynamic
sampling, non-finite guards. All with a tiny random Qwen2 policy built in conftest."""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_helpers import QUIET, tiny_overrides, two_row_update_batch

from empg.agent.batch import Trajectory
from empg.agent.generation import HFBackend
from empg.algos.losses import LOSS_AGG_MODES
from empg.envs import TextEnv, register
from empg.train.advantages import batch_advantages
from empg.train.checkpoint import latest_checkpoint
from empg.train.config import load_config
from empg.train.metrics import read_metrics
from empg.train.rollouts import collect_training_batch, groups_worth_training
from empg.train.trainer import Trainer, load_model
from empg.train.update import TrainingDivergedError, UpdateBatch, ppo_update, recompute_logprobs
from reference import loop_empg


def _weights(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_smoke_two_iterations(tiny_policy_dir, tmp_path):
    cfg = load_config(None, tiny_overrides(tiny_policy_dir, tmp_path / "run"))
    tr = Trainer(cfg, log=QUIET)
    before = _weights(tr.model).clone()
    result = tr.run()
    assert result.iterations_done == 2
    assert not torch.equal(before, _weights(tr.model))
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["iteration"] for r in train] == [1, 2]
    assert [r["iteration"] for r in evals] == [0, 2]
    for r in train:
        assert math.isfinite(r["actor/pg_loss"]) and r["actor/updates"] >= 1
        assert r["numerics/max_logprob_diff"] < 1e-4  # rollout vs recomputed log-probs
        assert 0.0 <= r["rollout/noop_rate"] <= 1.0
    assert "eval/success_rate" in evals[0]
    assert any(k.endswith("/noop_rate") for k in evals[0])
    for ev in evals:  # each task's outcome, in task order, behind the success rate
        wins = ev["eval/valid_seen/wins"]
        assert len(wins) == 2 and set(wins) <= {0, 1}
        assert statistics.fmean(wins) == ev["eval/valid_seen/success_rate"]
    assert (tmp_path / "run" / "config.yaml").exists()
    assert (tmp_path / "run" / "plots" / "advantages.png").exists()
    assert latest_checkpoint(tmp_path / "run").name == "iter_000002"
    # the checkpoint's model folder is a complete policy (empg eval --checkpoint)
    from empg.models.default import load_policy

    model, tok = load_policy(latest_checkpoint(tmp_path / "run") / "model")
    torch.testing.assert_close(_weights(model), _weights(tr.model))
    assert tok.pad_token_id == tr.tokenizer.pad_token_id


def test_exact_resume(tiny_policy_dir, tmp_path):
    full = load_config(None, tiny_overrides(tiny_policy_dir, tmp_path / "a", iterations=4))
    ta = Trainer(full, log=QUIET)
    ta.run()
    half = load_config(None, tiny_overrides(tiny_policy_dir, tmp_path / "b", iterations=2))
    Trainer(half, log=QUIET).run()
    more = load_config(None, tiny_overrides(tiny_policy_dir, tmp_path / "b", iterations=4))
    tb = Trainer(more, resume=True, log=QUIET)
    tb.run()
    torch.testing.assert_close(_weights(ta.model), _weights(tb.model), atol=1e-6, rtol=1e-5)
    ra = [r for r in read_metrics(tmp_path / "a" / "metrics.jsonl") if r["kind"] == "train"]
    rb = [r for r in read_metrics(tmp_path / "b" / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["iteration"] for r in rb] == [1, 2, 3, 4]
    for x, y in zip(ra, rb, strict=True):
        for key in ("rollout/reward_mean", "rollout/step_rows", "actor/pg_loss", "adv/std"):
            assert x[key] == pytest.approx(y[key], rel=1e-5, abs=1e-7), key


def test_lora_run_resumes_exactly_and_its_checkpoint_evaluates(
    tiny_policy_dir, tmp_path, capsys, monkeypatch
):
    """A LoRA checkpoint holds only the adapter: resume and `empg eval --checkpoint` load the
    base model and put the adapter on top."""
    pytest.importorskip("peft", reason="needs: pip install peft")
    from empg import cli

    lora = {"model.lora_rank": 4, "optim.lr": 0.05}
    full = load_config(None, tiny_overrides(tiny_policy_dir, tmp_path / "a", iterations=2, **lora))
    ta = Trainer(full, log=QUIET)
    ta.run()
    ckpt = latest_checkpoint(tmp_path / "a")
    assert (ckpt / "model" / "adapter_model.safetensors").is_file()
    assert not (ckpt / "model" / "config.json").exists()
    half = load_config(None, tiny_overrides(tiny_policy_dir, tmp_path / "b", iterations=1, **lora))
    Trainer(half, log=QUIET).run()
    more = load_config(None, tiny_overrides(tiny_policy_dir, tmp_path / "b", iterations=2, **lora))
    tb = Trainer(more, resume=True, log=QUIET)
    tb.run()
    trainable = [n for n, p in tb.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    base = _weights(load_model(load_config(None, [f"model.path={tiny_policy_dir}"]))[0])
    merged_a = _weights(ta.model.merge_and_unload())
    assert float((merged_a - base).abs().max()) > 1e-6  # the adapter learned something
    torch.testing.assert_close(
        merged_a, _weights(tb.model.merge_and_unload()), atol=1e-6, rtol=1e-5
    )
    # what `empg eval --checkpoint` loads is the trained adapter on its base, not the base
    loaded, _ = load_model(full, path=str(ckpt / "model"))
    torch.testing.assert_close(_weights(loaded.merge_and_unload()), merged_a, atol=0, rtol=0)
    # and the CLI evaluates that model: record the policy the real evaluation plays with
    import empg.train.trainer as trainer_mod

    played = []
    real_evaluate = trainer_mod.evaluate

    def recording(backend, *a, **k):
        played.append(_weights(copy.deepcopy(backend.model).merge_and_unload()))
        return real_evaluate(backend, *a, **k)

    monkeypatch.setattr(trainer_mod, "evaluate", recording)
    capsys.readouterr()
    args = ["eval", "--checkpoint", str(ckpt), f"model.path={tiny_policy_dir}", "threads=1"]
    assert cli.main([*args, "env.max_turns=3", "eval.episodes=2", "eval.splits=[valid_seen]"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "eval/success_rate" in out
    (weights,) = played
    torch.testing.assert_close(weights, merged_a, atol=0, rtol=0)


def test_resume_refuses_changed_config(tiny_policy_dir, tmp_path):
    cfg = load_config(None, tiny_overrides(tiny_policy_dir, tmp_path / "r", iterations=1))
    Trainer(cfg, log=QUIET).run()
    changed = load_config(
        None, [*tiny_overrides(tiny_policy_dir, tmp_path / "r", iterations=2), "seed=5"]
    )
    with pytest.raises(Exception, match="differs from the run's saved config in \\['seed'\\]"):
        Trainer(changed, resume=True, log=QUIET)
    with pytest.raises(Exception, match="already holds a run"):
        Trainer(cfg, log=QUIET)


def test_resume_accepts_a_run_saved_before_a_field_was_added(tiny_policy_dir, tmp_path):
    run = tmp_path / "old"
    cfg = load_config(None, tiny_overrides(tiny_policy_dir, run, iterations=1))
    Trainer(cfg, log=QUIET).run()
    saved = json.loads((run / "config.json").read_text())
    del saved["env"]["train_tasks"]  # as written by a version without that field
    (run / "config.json").write_text(json.dumps(saved))
    more = load_config(None, tiny_overrides(tiny_policy_dir, run, iterations=2))
    Trainer(more, resume=True, log=QUIET).run()
    assert [
        r["iteration"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"
    ] == [1, 2]


def test_kill_minus_9_loses_at_most_the_current_iteration(tiny_policy_dir, tmp_path):
    run = tmp_path / "killed"
    args = tiny_overrides(tiny_policy_dir, run, iterations=6)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2] / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "empg.cli", "train", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (run / "checkpoints" / "iter_000002").exists():
            time.sleep(0.05)
        assert (run / "checkpoints" / "iter_000002").exists(), "training did not progress"
        time.sleep(random.Random(0).uniform(0.0, 1.5))  # somewhere inside iteration 3
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    ckpt = latest_checkpoint(run)
    assert ckpt is not None
    done = int(ckpt.name.split("_")[1])
    assert done >= 2
    cfg = load_config(None, args)
    result = Trainer(cfg, resume=True, log=QUIET).run()
    assert result.iterations_done == 6
    train = [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["iteration"] for r in train] == [1, 2, 3, 4, 5, 6]


# ---- advantages of a real batch vs plain references -------------------------------------------


def _loop_grpo(rewards: dict[int, float], groups: dict[int, int], name: str) -> dict[int, float]:
    out = {}
    for t, r in rewards.items():
        members = [rewards[u] for u in rewards if groups[u] == groups[t]]
        n = len(members)
        if n == 1:
            out[t] = r / (1 + 1e-6) if name == "grpo" else r
        elif max(members) == min(members):
            out[t] = 0.0
        elif name == "grpo":
            out[t] = (r - sum(members) / n) / (statistics.stdev(members) + 1e-6)
        elif name == "dr_grpo":
            out[t] = r - sum(members) / n
        else:
            out[t] = r - (sum(members) - r) / (n - 1)
    return out


@pytest.fixture(scope="module")
def real_batch(tiny_policy_dir, tmp_path_factory):
    cfg = load_config(
        None,
        tiny_overrides(
            tiny_policy_dir, tmp_path_factory.mktemp("b"), **{"rollout.tasks_per_batch": 3}
        ),
    )
    model, tok = load_model(cfg)
    batch, _ = collect_training_batch(HFBackend(model, tok), cfg, iteration=1)
    prompts = [list(s.prompt_ids) for s in batch.steps]
    responses = [s.response_ids.tolist() for s in batch.steps]
    _, ent, mask = recompute_logprobs(
        model, prompts, responses, pad_id=tok.pad_token_id, micro_batch=4
    )
    return cfg, batch, ent, mask


@pytest.mark.parametrize(
    ("estimator", "empg"),
    list(itertools.product(["grpo", "dr_grpo", "rloo"], ["off", "full", "scale", "bonus", "std"])),
)
def test_batch_advantages_match_plain_reference(real_batch, estimator, empg):
    cfg, batch, ent, mask = real_batch
    algo = load_config(
        None,
        [
            "algo.preset=grpo",
            f"algo.adv_estimator={estimator}",
            f"algo.empg.enable={empg != 'off'}",
            f"algo.empg.scale={empg in ('full', 'scale', 'std')}",
            f"algo.empg.bonus={empg in ('full', 'bonus', 'std')}",
            f"algo.empg.final_norm={'mean_std' if empg == 'std' else 'mean'}",
            "algo.empg.zeta=0.3",
            "algo.empg.k=1.5",
        ],
    ).algo
    # make outcomes differ inside groups so the estimators have something to do
    rewards = {t.traj_id: float((t.traj_id * 7) % 3) / 2 for t in batch.trajectories}
    table = batch.step_table()
    table = type(table)(
        **{
            **table.__dict__,
            "outcome_reward": torch.tensor(
                [rewards[int(t)] for t in table.traj_id], dtype=torch.float32
            ),
        }
    )
    got, _ = batch_advantages(table, ent, mask, algo, cfg.rollout.max_new_tokens)
    groups = {t.traj_id: t.group_id for t in batch.trajectories}
    a_traj = _loop_grpo(rewards, groups, estimator)
    rows = []
    for i, s in enumerate(batch.steps):
        n = int(mask[i].sum())
        h = sum(float(x) for x in ent[i, :n]) / n
        h = float(torch.tensor(h, dtype=torch.float32))  # step entropies are float32 (spec)
        rows.append((s.traj_id, s.step_index, h, a_traj[s.traj_id]))
    if empg == "off":
        expected = [r[3] for r in rows]
    else:
        expected = loop_empg(
            rows,
            k=1.5,
            zeta=0.3,
            scale=algo.empg.scale,
            bonus=algo.empg.bonus,
            final_norm=algo.empg.final_norm,
        )
    assert got.tolist() == pytest.approx(expected, abs=2e-5, rel=2e-5)


# ---- dynamic sampling -------------------------------------------------------------------------

_COIN = random.Random(1234)


class CoinFlipEnv(TextEnv):
    """One-step test env whose outcome is a coin flip drawn at reset (varies inside a group)."""

    name = "test-coinflip"
    max_steps = 1

    def __init__(self, split: str = "train") -> None:
        super().__init__()

    def _reset(self, *, seed, options):
        self.win = _COIN.random() < 0.5
        return "Flip.", {"won": False, "task": "flip a coin", "task_type": "coin"}

    def _step(self, action):
        info = {"won": self.win, "task": "flip a coin", "task_type": "coin"}
        return "Done.", float(self.win), True, info


register("test-coinflip", CoinFlipEnv, overwrite=True)


class PartialCreditEnv(TextEnv):
    """Two steps, each paying 0.25 whatever the action; never won (shop-like partial credit)."""

    name = "test-partial-credit"
    max_steps = 2

    def __init__(self, split: str = "train") -> None:
        super().__init__()
        self.t = 0

    def _reset(self, *, seed, options):
        self.t = 0
        return "Shop.", {"won": False, "task": "buy", "task_type": "partial"}

    def _step(self, action):
        self.t += 1
        return "Bought.", 0.25, self.t >= 2, {"won": False, "task": "buy", "task_type": "partial"}


register("test-partial-credit", PartialCreditEnv, overwrite=True)


@pytest.mark.parametrize("outcome", ["success", "reward_sum"])
def test_the_outcome_setting_chooses_what_advantages_are_computed_from(
    tiny_policy_dir, tmp_path, outcome
):
    cfg = load_config(
        None,
        tiny_overrides(
            tiny_policy_dir,
            tmp_path / "run",
            **{"env.name": "test-partial-credit", "rollout.outcome": outcome},
        ),
    )
    model, tok = load_model(cfg)
    batch, _ = collect_training_batch(HFBackend(model, tok), cfg, iteration=1)
    assert batch.trajectories
    for t in batch.trajectories:
        assert t.env_reward_sum == pytest.approx(0.25 * t.length)
        base = 0.0 if outcome == "success" else t.env_reward_sum
        expected = base - cfg.rollout.invalid_penalty * t.invalid_steps
        assert t.outcome_reward == pytest.approx(expected)


def _traj(group: int, won: bool, reward: float) -> Trajectory:
    return Trajectory(
        traj_id=0, group_id=group, task_seed=0, initial_observation="", task="",
        outcome_reward=reward, env_reward_sum=float(won), length=3, invalid_steps=0,
        won=won, reason="",
    )  # fmt: skip


def test_dynamic_sampling_on_success_ignores_penalty_differences():
    trajs = [
        _traj(0, False, 0.0), _traj(0, False, -0.1),  # all fail, one paid a penalty
        _traj(1, True, 1.0), _traj(1, False, 0.0),  # success differs
        _traj(2, True, 1.0), _traj(2, True, 0.9),  # all succeed, one paid a penalty
        _traj(3, False, 0.0), _traj(3, False, 0.0),  # all equal
    ]  # fmt: skip
    assert groups_worth_training(trajs, "success") == {1}
    assert groups_worth_training(trajs, "reward") == {0, 1, 2}
    assert groups_worth_training([], "success") == set()
    with pytest.raises(ValueError, match="metric"):
        groups_worth_training(trajs, "acc")


@pytest.mark.parametrize("metric", ["success", "reward"])
def test_dynamic_sampling_never_keeps_an_all_equal_group(tiny_policy_dir, tmp_path, metric):
    cfg = load_config(
        None,
        tiny_overrides(
            tiny_policy_dir,
            tmp_path,
            **{
                "env.name": "test-coinflip",
                "algo.preset": "dapo",
                "algo.filter_metric": metric,
                "rollout.tasks_per_batch": 6,
                "rollout.group_size": 3,
                # the untrained tiny policy writes some invalid answers: rewards then differ
                # within groups whose coin flips are all equal
                "rollout.invalid_penalty": 0.25,
            },
        ),
    )
    model, tok = load_model(cfg)
    batch, stats = collect_training_batch(HFBackend(model, tok), cfg, iteration=1)
    by_group: dict[int, list[float]] = {}
    for t in batch.trajectories:
        by_group.setdefault(t.group_id, []).append(
            float(t.won) if metric == "success" else t.outcome_reward
        )
    assert by_group, "no group kept"
    for values in by_group.values():
        assert len(values) == 3 and max(values) > min(values)
    assert stats["rollout/groups_kept"] == len(by_group) <= 6
    assert stats["rollout/groups_sampled"] >= 6
    # a kept group count below 6 is only allowed when every resampling round was used
    if len(by_group) < 6:
        assert stats["rollout/rounds"] == 1 + cfg.rollout.max_resample_rounds


_FAULTS = random.Random(1)


class FlakyEnv(CoinFlipEnv):
    """A coin flip whose step raises in about a third of the episodes (decided at reset)."""

    name = "test-flaky"

    def _reset(self, *, seed, options):
        out = super()._reset(seed=seed, options=options)
        self.broken = _FAULTS.random() < 0.35
        return out

    def _step(self, action):
        if self.broken:
            raise RuntimeError("the simulator crashed")
        return super()._step(action)


register("test-flaky", FlakyEnv, overwrite=True)


@pytest.mark.parametrize("preset", ["grpo", "dapo"])
def test_groups_with_an_environment_fault_are_not_trained_on(tiny_policy_dir, tmp_path, preset):
    cfg = load_config(
        None,
        tiny_overrides(
            tiny_policy_dir,
            tmp_path,
            **{
                "env.name": "test-flaky",
                "algo.preset": preset,
                "rollout.tasks_per_batch": 6,
                "rollout.group_size": 3,
            },
        ),
    )
    model, tok = load_model(cfg)
    batch, stats = collect_training_batch(HFBackend(model, tok), cfg, iteration=1)
    assert stats["rollout/env_error_groups"] > 0  # faults happened
    assert not any(t.reason.startswith("error") for t in batch.trajectories)
    kept = {t.group_id for t in batch.trajectories}
    assert stats["rollout/groups_kept"] == len(kept)
    for g in kept:  # whole groups: every member of a kept group is there
        assert sum(t.group_id == g for t in batch.trajectories) == 3
    if preset == "dapo" and len(kept) < 6:  # replaced by resampling while rounds remain
        assert stats["rollout/rounds"] == 1 + cfg.rollout.max_resample_rounds


def test_training_tasks_come_from_the_configured_pool(tiny_policy_dir, tmp_path):
    pool = [5, 17, 23]
    cfg = load_config(
        None,
        tiny_overrides(
            tiny_policy_dir,
            tmp_path,
            **{"env.train_tasks": str(pool), "rollout.tasks_per_batch": 2, "algo.preset": "grpo"},
        ),
    )
    model, tok = load_model(cfg)
    for it in (1, 2, 3):
        batch, _ = collect_training_batch(HFBackend(model, tok), cfg, iteration=it)
        seeds = {t.task_seed for t in batch.trajectories}
        assert len(seeds) == 2 and seeds <= set(pool)


# ---- non-finite guard -------------------------------------------------------------------------


def test_nan_model_skips_updates_then_stops(tiny_policy_dir):
    cfg = load_config(None, ["optim.max_bad_updates=2", "optim.mini_batch_steps=2"])
    model, tok, batch = two_row_update_batch(tiny_policy_dir)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with pytest.warns(UserWarning, match="update skipped"):
        metrics, streak = ppo_update(
            model, opt, batch, cfg.algo, cfg.optim, pad_id=tok.pad_token_id
        )
    assert streak == 1 and metrics["actor/skipped_updates"] == 1.0
    with pytest.warns(UserWarning), pytest.raises(TrainingDivergedError, match="2 consecutive"):
        ppo_update(
            model, opt, batch, cfg.algo, cfg.optim, pad_id=tok.pad_token_id, bad_streak=streak
        )


def test_a_policy_gone_nan_mid_run_is_skipped_then_stops_the_run(tiny_policy_dir, tmp_path):
    """NaN weights make sampling fail before any update: each such iteration counts as a
    skipped update and the run stops after optim.max_bad_updates of them."""
    cfg = load_config(
        None,
        tiny_overrides(tiny_policy_dir, tmp_path, iterations=4, **{"optim.max_bad_updates": 2}),
    )
    trainer = Trainer(cfg, log=QUIET)
    trainer.state["before"] = trainer.evaluate(0)  # the initial evaluation, healthy weights
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.fill_(float("nan"))
    with pytest.raises(TrainingDivergedError, match="2 consecutive iterations or updates"):
        trainer.run()
    train = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["iteration"] for r in train] == [1]
    assert train[0]["actor/skipped_updates"] == 1.0 and train[0]["rollout/step_rows"] == 0


def test_resume_without_a_checkpoint_starts_the_metrics_afresh(tiny_policy_dir, tmp_path):
    cfg = load_config(None, tiny_overrides(tiny_policy_dir, tmp_path, iterations=1))
    Trainer(cfg, log=QUIET).evaluate(0)  # a run killed before its first checkpoint
    assert len(read_metrics(tmp_path / "metrics.jsonl")) == 1
    Trainer(cfg, resume=True, log=QUIET).run()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [(r["kind"], r["iteration"]) for r in records] == [
        ("eval", 0),
        ("train", 1),
        ("eval", 1),
    ]


def test_an_iteration_without_a_batch_still_advances_the_schedule(tiny_policy_dir, tmp_path):
    """Warm-up and cosine count iterations: one whose groups all had equal outcomes (no update)
    moves the learning rate on as well."""
    cfg = load_config(
        None,
        tiny_overrides(
            tiny_policy_dir,
            tmp_path,
            iterations=3,
            **{"algo.preset": "dapo", "rollout.max_resample_rounds": 0, "optim.warmup_iters": 3},
        ),
    )
    Trainer(cfg, log=QUIET).run()
    train = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["lr"] for r in train] == pytest.approx([0.01 / 3, 0.02 / 3, 0.01])
    skipped = [r["iteration"] for r in train if r["rollout/step_rows"] == 0]
    assert skipped and min(skipped) < 3, skipped  # a skip before the last iteration


def test_metrics_json_lines_are_valid(tiny_policy_dir, tmp_path):
    cfg = load_config(None, tiny_overrides(tiny_policy_dir, tmp_path / "m", iterations=1))
    Trainer(cfg, log=QUIET).run()
    for line in (tmp_path / "m" / "metrics.jsonl").read_text().splitlines():
        json.loads(line)


@pytest.mark.parametrize("agg", LOSS_AGG_MODES)
def test_micro_batching_does_not_change_the_update(tiny_policy_dir, agg):
    """One mini-batch split into micro-batches (sorted by length) gives the gradient of the
    unsplit mini-batch: compare the parameters after one plain SGD step."""
    gen = torch.Generator().manual_seed(3)
    prompts = [torch.randint(5, 60, (int(n),), generator=gen).tolist() for n in (3, 9, 5, 12, 7)]
    responses = [torch.randint(5, 60, (int(n),), generator=gen).tolist() for n in (4, 2, 6, 1, 3)]
    adv = torch.tensor([1.0, -0.5, 0.3, -1.2, 0.8])
    after = []
    for micro in (5, 2, 1):
        cfg = load_config(
            None,
            [
                f"algo.loss_agg_mode={agg}",
                "optim.mini_batch_steps=5",
                f"optim.micro_batch_steps={micro}",
                "optim.grad_clip=0",
            ],
        )
        model, tok = load_model(load_config(None, [f"model.path={tiny_policy_dir}"]))
        lp, _, mask = recompute_logprobs(
            model, prompts, responses, pad_id=tok.pad_token_id, micro_batch=5
        )
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        batch = UpdateBatch(prompts, responses, lp, mask, adv)
        ppo_update(model, opt, batch, cfg.algo, cfg.optim, pad_id=tok.pad_token_id)
        after.append(_weights(model))
    base = _weights(load_model(load_config(None, [f"model.path={tiny_policy_dir}"]))[0])
    delta = after[0] - base
    assert float(delta.abs().max()) > 1e-6  # the step moved the weights
    for other in after[1:]:
        assert torch.allclose(other - base, delta, atol=1e-6, rtol=1e-4)


def test_restricted_scoring_in_training_matches_plain_masked_softmax(tiny_policy_dir):
    """Tokens with allowed sets are scored under the renormalised distribution, with the
    gradients of a plain full-vocabulary reference (other tokens: the model's own)."""
    from empg.train.policy import pack_rows, response_logprobs_and_entropy

    model, _ = load_model(load_config(None, [f"model.path={tiny_policy_dir}"]))
    model.float().train()
    vocab = model.get_output_embeddings().weight.shape[0]
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, vocab, (n,), generator=g).tolist() for n in (5, 9, 3)]
    responses = [torch.randint(3, vocab, (n,), generator=g).tolist() for n in (4, 2, 6)]
    allowed = []
    for r in responses:
        row = []
        for j, y in enumerate(r):
            if j % 2 == 0:
                row.append(None)
            else:
                others = torch.randint(3, vocab, (j,), generator=g).tolist()
                row.append(tuple(sorted({y, *others})))
        allowed.append(row)
    allowed[1] = None  # a row without constrained tokens
    temp = 0.7
    rows = pack_rows(prompts, responses, 0, "cpu", allowed)
    lp, ent = response_logprobs_and_entropy(model, rows, temperature=temp)
    w = torch.randn(lp.shape, generator=g)
    model.zero_grad()
    ((lp * w).sum() + (ent * w).sum()).backward()
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ref_total = 0.0
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        logits = model(input_ids=torch.tensor([p + r])).logits[0, len(p) - 1 : len(p) + len(r) - 1]
        z = logits.float() / temp
        for j, y in enumerate(r):
            ids = None if allowed[i] is None else allowed[i][j]
            if ids is not None:
                keep = torch.zeros(vocab, dtype=torch.bool)
                keep[list(ids)] = True
                z_j = z[j].masked_fill(~keep, -1e30)
            else:
                z_j = z[j]
            logp = torch.log_softmax(z_j, -1)
            ref_lp = logp[y]
            ref_ent = -(logp.exp() * logp.masked_fill(logp < -1e20, 0)).sum()
            assert lp[i, j].item() == pytest.approx(ref_lp.item(), abs=1e-5)
            assert ent[i, j].item() == pytest.approx(ref_ent.item(), abs=1e-5)
            ref_total = ref_total + w[i, j] * (ref_lp + ref_ent)
        assert (lp[i, len(r) :] == 0).all()
    ref_total.backward()
    for a, b in zip(got, [p.grad for p in model.parameters()], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_progress_lines_are_flushed_as_they_are_printed(monkeypatch):
    """Piped or redirected, stdout is block-buffered: without a flush, a first-use build's
    progress lines would appear only when the job ends."""
    import inspect
    import io

    from empg.train.trainer import print_now

    class Out(io.StringIO):
        flushes = 0

        def flush(self):
            self.flushes += 1

    out = Out()
    monkeypatch.setattr(sys, "stdout", out)
    print_now("[empg] warm start: SFT step 60/1200")
    assert out.getvalue() == "[empg] warm start: SFT step 60/1200\n" and out.flushes >= 1
    assert inspect.signature(Trainer).parameters["log"].default is print_now


def test_bf16_autocast_never_reuses_weights_from_before_an_optimiser_step(tiny_policy_dir):
    """The trainer runs a whole iteration (several optimiser steps) in one autocast context;
    a forward after a step must see the new weights, as in a fresh context."""
    from empg.train.trainer import autocast_for

    model, _ = load_model(load_config(None, [f"model.path={tiny_policy_dir}"]))
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    cpu = torch.device("cpu")
    with autocast_for(cpu, "bfloat16"):
        model(ids).logits.float().logsumexp(-1).sum().backward()
        opt.step()
        inside = model(ids).logits.float()
    with autocast_for(cpu, "bfloat16"):
        fresh = model(ids).logits.float()
    assert torch.equal(inside, fresh)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_checkpoint_rng_state_includes_the_cuda_generators():
    from empg.train.checkpoint import rng_state, set_rng_state

    torch.cuda.manual_seed_all(3)
    state = json.loads(json.dumps(rng_state()))  # as trainer_state.json stores it
    first = torch.rand(4, device="cuda")
    set_rng_state(state)
    assert torch.equal(torch.rand(4, device="cuda"), first)


def test_paired_standard_error_by_hand():
    from empg.train.cli import paired_standard_error

    # differences 0, +1, 0, -1: mean 0, sample variance 2/3, standard error sqrt(2/3) / 2
    se = paired_standard_error([1, 0, 0, 1], [1, 1, 0, 0])
    assert se == pytest.approx(math.sqrt(2 / 3) / 2, abs=1e-12)
    assert paired_standard_error([0, 1, 1], [0, 1, 1]) == 0.0  # the same outcomes: no spread
    # differences -1, +1: sample standard deviation sqrt(2), over sqrt(2) tasks
    assert paired_standard_error([1, 0], [0, 1]) == pytest.approx(1.0, abs=1e-12)
    for before, after in (([1, 0], [1]), (None, [1, 0]), ([1, 0], None), ([1], [0])):
        assert paired_standard_error(before, after) is None


def test_empg_train_prints_the_gain_with_its_paired_standard_error(
    tiny_policy_dir, tmp_path, capsys
):
    from empg import cli
    from empg.train.cli import paired_standard_error

    run = tmp_path / "run"
    argv = tiny_overrides(tiny_policy_dir, run, **{"eval.episodes": 4})
    assert cli.main(["train", *argv]) == 0
    out = capsys.readouterr().out
    evals = [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "eval"]
    b, a = evals[0]["eval/valid_seen/wins"], evals[-1]["eval/valid_seen/wins"]
    se = paired_standard_error(b, a)
    diffs = [y - x for x, y in zip(b, a, strict=True)]
    assert se == pytest.approx(statistics.stdev(diffs) / 2, abs=1e-12)
    gain = 100 * (statistics.fmean(a) - statistics.fmean(b))
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("valid_seen"))
    assert line.endswith(f"({gain:+.1f} points, standard error {100 * se:.1f})"), line


def test_empg_eval_prints_json_on_stdout_and_progress_on_stderr(tiny_policy_dir, capsys):
    from empg import cli

    args = ["eval", f"model.path={tiny_policy_dir}", "threads=1", "env.max_turns=2"]
    assert cli.main([*args, "eval.episodes=2", "eval.splits=[valid_seen,valid_unseen]"]) == 0
    out, err = capsys.readouterr()
    record = json.loads(out)  # stdout is exactly one JSON object
    assert set(record) >= {"eval/valid_seen/success_rate", "eval/success_rate"}
    lines = [ln for ln in err.splitlines() if "eval" in ln]
    assert lines[0].startswith("[empg]   eval valid_seen (1/2): 2 episodes, success ")
    assert lines[1].startswith("[empg]   eval valid_unseen (2/2): 2 episodes, success ")


def test_empg_eval_reports_a_first_use_build_on_stderr(tmp_path, monkeypatch, capsys):
    """``empg eval`` on ``model.path=default`` before the policy is cached builds it (30
    minutes or more with the real recipe): the build's progress lines go to stderr, as in
    ``empg train``, instead of a silent wait."""
    from empg import cli
    from empg.models import default as default_mod
    from empg.models.sft import SFTConfig
    from empg.models.tiny import TinyModelConfig

    small = (
        SFTConfig(env="search", episodes=3, steps=2, batch_size=4),
        TinyModelConfig(num_layers=1),
    )
    monkeypatch.setattr(default_mod, "default_configs", lambda env, kwargs=None: small)
    monkeypatch.setenv("EMPG_CACHE_DIR", str(tmp_path))
    args = ["eval", "env.name=search", "threads=1", "env.max_turns=2", "eval.episodes=1"]
    assert cli.main([*args, "eval.splits=[test_id]"]) == 0
    out, err = capsys.readouterr()
    assert "eval/test_id/success_rate" in json.loads(out)
    assert "[empg] warm start: SFT step 2/2" in err
    assert f"[empg] default policy: {tmp_path / 'models'}" in err
