"""benchmarks/rl_gain.py: several training seeds, one common evaluation, reused runs."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from train_helpers import tiny_overrides

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("rl_gain", ROOT / "benchmarks" / "rl_gain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _overrides(policy_dir, tmp_path) -> list[str]:
    return [
        o for o in tiny_overrides(policy_dir, tmp_path / "unused") if not o.startswith("run_dir=")
    ]


def _one_seed_argv(policy_dir, tmp_path, out) -> list[str]:
    """rl_gain arguments: training seed 0, one evaluation seed, one task, into ``out``."""
    argv = ["--seeds", "0", "--eval-seeds", "3", "--episodes", "1", "--out", str(out)]
    return argv + _overrides(policy_dir, tmp_path)


def test_rl_gain_trains_each_seed_and_scores_every_policy_on_one_evaluation(
    tiny_policy_dir, tmp_path, capsys
):
    rl_gain = _script()
    out = tmp_path / "gain"
    argv = ["--seeds", "0", "1", "--eval-seeds", "3", "4", "--episodes", "2", "--out", str(out)]
    argv += _overrides(tiny_policy_dir, tmp_path)
    summary = rl_gain.main(argv)

    assert set(summary["success"]) == {"warm start", "seed 0", "seed 1"}
    for seed in (0, 1):
        state = json.loads(
            (out / f"seed{seed}" / "checkpoints" / "iter_000002" / "trainer_state.json").read_text()
        )
        assert state["iteration"] == 2
    assert json.loads((out / "summary.json").read_text())["per_split"] == summary["per_split"]
    assert "mean gain" in capsys.readouterr().out

    # the tiny policy wins nothing, so check the arithmetic on stored evaluations with distinct
    # values: the script reuses them by key, as it would real ones
    path = out / "evaluations.jsonl"
    stored = rl_gain._load_evaluations(path)
    assert len(stored) == 6  # 3 policies x 2 evaluation seeds
    path.unlink()
    for i, key in enumerate(sorted(stored)):
        rl_gain._append_evaluation(path, key, {"valid_seen": 0.05 * (i + 1)})
    injected = rl_gain.main(argv)
    capsys.readouterr()
    rates = injected["success"]
    assert sorted(r[e]["valid_seen"] for r in rates.values() for e in ("3", "4")) == (
        pytest.approx([0.05 * (i + 1) for i in range(6)])
    )
    split = injected["per_split"]["valid_seen"]
    before = (rates["warm start"]["3"]["valid_seen"] + rates["warm start"]["4"]["valid_seen"]) / 2
    assert split["before"] == pytest.approx(before)
    gains = []
    for seed in ("0", "1"):
        after = (
            rates[f"seed {seed}"]["3"]["valid_seen"] + rates[f"seed {seed}"]["4"]["valid_seen"]
        ) / 2
        assert split["after"][seed] == pytest.approx(after)
        assert split["gain"][seed] == pytest.approx(after - before)
        gains.append(after - before)
    assert split["mean_gain"] == pytest.approx(sum(gains) / 2) and any(gains)
    (out / "evaluations.jsonl").unlink()
    rl_gain.main(argv)  # play them again
    capsys.readouterr()

    # a second call reuses the finished runs and the finished evaluations
    metrics = out / "seed0" / "metrics.jsonl"
    stamp = metrics.stat().st_mtime_ns
    again = rl_gain.main(argv)
    assert metrics.stat().st_mtime_ns == stamp
    assert again["success"] == summary["success"]
    assert capsys.readouterr().out.count("(reused)") == 6  # 3 policies x 2 evaluation seeds


def test_rl_gain_evaluations_are_seeded(fifty_fifty_policy, tmp_path, capsys):
    """Played again without the stored evaluations, every policy scores what it scored, on a
    bandit where the score depends on sampling (the seeds give different scores)."""
    rl_gain = _script()
    out = tmp_path / "gain"
    argv = ["--seeds", "0", "--eval-seeds", "3", "4", "--episodes", "24", "--out", str(out)]
    argv += _overrides(fifty_fifty_policy, tmp_path)
    argv += [
        "env.name=test-two-arms",
        "env.max_turns=1",
        "iterations=1",
        "rollout.max_new_tokens=40",
        "eval.temperature=1.0",
        "algo.preset=grpo",
    ]
    first = rl_gain.main(argv)["success"]
    rates = [first[p][e]["valid_seen"] for p in first for e in ("3", "4")]
    assert len(set(rates)) > 1 and min(rates) > 0 and max(rates) < 1, rates
    (out / "evaluations.jsonl").unlink()
    assert rl_gain.main(argv)["success"] == first
    assert "(reused)" not in capsys.readouterr().out


def test_rl_gain_skips_a_torn_evaluation_line(tmp_path):
    rl_gain = _script()
    path = tmp_path / "evaluations.jsonl"
    rl_gain._append_evaluation(path, "a", {"valid_seen": 0.25})
    with open(path, "a") as f:
        f.write('{"key": "b", "succ')  # a write cut short by a kill
    assert rl_gain._load_evaluations(path) == {"a": {"valid_seen": 0.25}}
    rl_gain._append_evaluation(path, "c", {"valid_seen": 0.5})  # not glued to the torn line
    assert rl_gain._load_evaluations(path) == {"a": {"valid_seen": 0.25}, "c": {"valid_seen": 0.5}}


def test_rl_gain_rejects_seed_and_run_dir_overrides(tmp_path):
    rl_gain = _script()
    for bad in ("seed=3", f"run_dir={tmp_path}"):
        with pytest.raises(SystemExit) as exc:
            rl_gain.main(["--out", str(tmp_path), bad])
        assert exc.value.code == 2
    with pytest.raises(SystemExit):
        rl_gain.main(["--seeds", "1", "1", "--out", str(tmp_path)])


def test_rl_gain_resumes_a_run_that_was_cut_short(tiny_policy_dir, tmp_path):
    rl_gain = _script()
    out = tmp_path / "gain"
    argv = _one_seed_argv(tiny_policy_dir, tmp_path, out)
    rl_gain.main(argv)
    ckpts = out / "seed0" / "checkpoints"
    # as if killed during iteration 2: its checkpoint and the marker naming it are gone
    shutil.rmtree(ckpts / "iter_000002")
    (ckpts / "latest").unlink()
    (out / "evaluations.jsonl").unlink()
    summary = rl_gain.main(argv)
    state = json.loads((ckpts / "iter_000002" / "trainer_state.json").read_text())
    assert state["iteration"] == 2
    assert set(summary["success"]) == {"warm start", "seed 0"}


def test_rl_gain_reads_a_config_file_and_keys_evaluations_by_its_content(tiny_policy_dir, tmp_path):
    rl_gain = _script()
    config = tmp_path / "run.yaml"
    config.write_text("env:\n  max_turns: 2\n")
    out = tmp_path / "gain"
    argv = ["--config", str(config), *_one_seed_argv(tiny_policy_dir, tmp_path, out)]
    argv = [a for a in argv if not a.startswith("env.max_turns=")]
    rl_gain.main(argv)
    saved = json.loads((out / "seed0" / "config.json").read_text())
    assert saved["env"]["max_turns"] == 2
    keys = set(rl_gain._load_evaluations(out / "evaluations.jsonl"))
    config.write_text("env:\n  max_turns: 1\n")  # an edited file: evaluated again, not reused
    shutil.rmtree(out / "seed0")
    rl_gain.main(argv)
    assert len(set(rl_gain._load_evaluations(out / "evaluations.jsonl")) - keys) == 2


def test_rl_gain_refuses_a_finished_run_of_other_settings(tiny_policy_dir, tmp_path):
    rl_gain = _script()
    out = tmp_path / "gain"
    argv = _one_seed_argv(tiny_policy_dir, tmp_path, out)
    rl_gain.main(argv)
    with pytest.raises(SystemExit, match=r"other settings \(\['optim'\]\)"):
        rl_gain.main([*argv, "optim.lr=0.5"])
    with pytest.raises(SystemExit, match="has 2 iterations, more than the 1 asked"):
        rl_gain.main([*argv, "iterations=1"])


def test_rl_gain_keys_evaluations_by_the_weights_they_play(tiny_policy_dir, tmp_path):
    """The warm start's key names the weights model.path holds: rebuilt weights in the same
    folder are evaluated again, not read back (so a gain is never taken against old ones)."""
    rl_gain = _script()
    policy = tmp_path / "policy"
    shutil.copytree(tiny_policy_dir, policy)
    over = [f"model.path={policy}"]
    key = rl_gain._eval_key(None, over, None, ["valid_seen"], 2, 3)
    assert key == rl_gain._eval_key(None, over, None, ["valid_seen"], 2, 3)
    weights = policy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # the same folder, other weights
    weights.write_bytes(bytes(data))
    assert rl_gain._eval_key(None, over, None, ["valid_seen"], 2, 3) != key


def test_rl_gain_keys_evaluations_by_the_code_and_the_resolved_config(tmp_path):
    """Evaluations made by other code, or under another default, are not read back."""
    rl_gain = _script()
    pkg = tmp_path / "pkg"
    (pkg / "envs").mkdir(parents=True)
    (pkg / "envs" / "a.py").write_text("X = 1\n")
    before = rl_gain._code_digest(pkg)
    (pkg / "envs" / "a.py").write_text("X = 2\n")
    edited = rl_gain._code_digest(pkg)
    assert edited != before
    (pkg / "notes.md").write_text("docs do not count")
    assert rl_gain._code_digest(pkg) == edited
    over = ["model.path=/nonexistent"]
    key = json.loads(rl_gain._eval_key(None, over, None, ["valid_seen"], 2, 3))
    assert key["code"] == rl_gain._code_digest()
    assert key["resolved"]["eval"]["temperature"] == 0.4  # a default, though no override names it
