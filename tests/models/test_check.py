"""The check of a new build: success on tasks outside the data, a rebuild on the next SFT seed
when it is too low, the best build kept and every attempt recorded in the build info."""

from __future__ import annotations

import dataclasses
import json

import pytest

from empg.errors import ConfigError
from empg.models import default as default_mod
from empg.models.check import HOUSEHOLD_CHECK, BuildCheck, check_success, default_check
from empg.models.default import (
    BUILD_INFO,
    default_configs,
    default_policy,
    load_policy,
    resolve_check,
)
from empg.models.evaluate import EvalConfig, evaluate_policy
from empg.models.sft import SFTConfig
from empg.models.tiny import TinyModelConfig
from empg.models.tokenizer import TokenizerConfig

TINY = dict(
    sft=SFTConfig(episodes=3, steps=2, batch_size=4),
    tokenizer_config=TokenizerConfig(episodes_per_env=3, vocab_size=400),
    model_config=TinyModelConfig(num_layers=1),
)
#: a check small enough for a test: 3 episodes of 2 steps
SMALL = dict(episodes=3, horizon=2)


def _scripted(monkeypatch, rates: list[float]) -> list[int]:
    """Make the check's evaluation return ``rates`` in turn; returns one entry per call."""
    seen: list[int] = []

    def fake(model, tokenizer, env, prompt, check, env_kwargs=None):
        seen.append(len(seen))
        return rates[len(seen) - 1]

    monkeypatch.setattr(default_mod, "check_success", fake)
    return seen


def test_the_check_plays_the_tasks_it_names_with_evaluate_policy(tmp_path, monkeypatch):
    """The check hands evaluate_policy exactly its tasks, sampling and the build's prompt (a
    2-step policy never wins, so comparing success rates alone would prove nothing)."""
    import empg.models.evaluate as evaluate_mod

    model, tok, _ = default_policy(tmp_path, **TINY, check=None)
    check = BuildCheck(min_success=0.5, episodes=4, first_seed=7, horizon=3, temperature=0.7)
    calls = []

    def recording(m, t, cfg):  # the real evaluation, its config recorded
        calls.append(cfg)
        return evaluate_policy(m, t, cfg)

    monkeypatch.setattr(evaluate_mod, "evaluate_policy", recording)
    kwargs = {"max_steps": 40}  # a real keyword of the environment, passed through
    rate = check_success(model, tok, "household", TINY["sft"].prompt, check, kwargs)
    (cfg,) = calls
    assert cfg == EvalConfig(
        env="household",
        split="train",
        env_kwargs=kwargs,
        episodes=4,
        first_seed=7,
        horizon=3,
        temperature=0.7,
        seed=0,
        prompt=TINY["sft"].prompt,
    )
    assert rate == evaluate_policy(model, tok, cfg).success_rate
    assert check.describe() == "4 train tasks (seeds 7-10, T=0.7)"


def test_a_build_that_passes_is_kept_and_the_result_recorded(tmp_path):
    lines: list[str] = []
    check = BuildCheck(min_success=0.0, **SMALL)
    _, _, path = default_policy(tmp_path, **TINY, check=check, log=lines.append)
    info = json.loads((path / BUILD_INFO).read_text())
    rec = info["check"]
    assert rec["passed"] is True and rec["kept_sft_seed"] == 0
    assert [a["sft_seed"] for a in rec["attempts"]] == [0]
    assert rec["min_success"] == 0.0 and rec["episodes"] == 3 and rec["first_seed"] == 100_000
    assert info["sft"]["seed"] == 0
    assert any("warm start check" in ln and "passed" in ln for ln in lines)
    assert [p.name for p in (tmp_path / "models").iterdir()] == [path.name]  # no temp folders


def test_a_weak_build_is_rebuilt_on_the_next_seed_and_the_better_kept(tmp_path, monkeypatch):
    _scripted(monkeypatch, [0.04, 0.08])
    lines: list[str] = []
    check = BuildCheck(min_success=0.1, **SMALL)
    _, _, path = default_policy(tmp_path, **TINY, check=check, log=lines.append)
    info = json.loads((path / BUILD_INFO).read_text())
    rec = info["check"]
    assert [(a["sft_seed"], a["success"]) for a in rec["attempts"]] == [(0, 0.04), (1, 0.08)]
    assert rec["kept_sft_seed"] == 1 and rec["passed"] is False
    assert info["sft"]["seed"] == 1  # the build info describes the run that was kept
    assert any("building again with SFT seed 1" in ln for ln in lines)
    assert any("warning: no build reached 10%" in ln for ln in lines)
    assert [p.name for p in (tmp_path / "models").iterdir()] == [path.name]
    # the kept folder holds seed 1's weights: a plain build with seed 1 gives the same logits
    seed1 = dataclasses.replace(TINY["sft"], seed=1)
    _, _, ref = default_policy(tmp_path / "ref", **{**TINY, "sft": seed1}, check=None)
    a, _ = load_policy(path)
    b, _ = load_policy(ref)
    for (na, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert pa.equal(pb), na


def test_the_first_build_is_kept_when_it_is_the_better_or_passes(tmp_path, monkeypatch):
    _scripted(monkeypatch, [0.08, 0.05])
    check = BuildCheck(min_success=0.1, **SMALL)
    _, _, path = default_policy(tmp_path / "a", **TINY, check=check)
    rec = json.loads((path / BUILD_INFO).read_text())["check"]
    assert rec["kept_sft_seed"] == 0 and len(rec["attempts"]) == 2

    seen = _scripted(monkeypatch, [0.2, 0.9])
    _, _, path = default_policy(tmp_path / "b", **TINY, check=check)
    rec = json.loads((path / BUILD_INFO).read_text())["check"]
    assert len(seen) == 1 and rec["passed"] is True and len(rec["attempts"]) == 1


def test_a_real_failing_check_keeps_the_first_build_on_a_tie(tmp_path):
    """No mock: a 2-step build cannot win, so both attempts score 0 and the first is kept."""
    check = BuildCheck(min_success=1.0, **SMALL)
    _, _, path = default_policy(tmp_path, **TINY, check=check)
    rec = json.loads((path / BUILD_INFO).read_text())["check"]
    assert [a["success"] for a in rec["attempts"]] == [0.0, 0.0]
    assert rec["kept_sft_seed"] == 0 and rec["passed"] is False


def test_a_cached_build_is_not_checked_again(tmp_path, monkeypatch):
    check = BuildCheck(min_success=0.0, **SMALL)
    _, _, path = default_policy(tmp_path, **TINY, check=check)
    seen = _scripted(monkeypatch, [0.0])
    _, _, again = default_policy(tmp_path, **TINY, check=check)
    assert again == path and seen == []


def test_a_cached_build_made_without_the_check_is_checked_once(tmp_path, monkeypatch):
    """A folder built before builds were checked gets the check on its next use, once, recorded
    like a new build's; a weak one is reported, not rebuilt."""
    _, _, path = default_policy(tmp_path, **TINY, check=None)
    assert "check" not in json.loads((path / BUILD_INFO).read_text())
    assert not list(path.glob(".*.tmp"))
    seen = _scripted(monkeypatch, [0.05])
    lines: list[str] = []
    check = BuildCheck(min_success=0.1, **SMALL)
    _, _, again = default_policy(tmp_path, **TINY, check=check, log=lines.append)
    assert again == path and seen == [0]
    rec = json.loads((path / BUILD_INFO).read_text())["check"]
    assert rec["passed"] is False and rec["checked_after_build"] is True
    assert [(a["sft_seed"], a["success"]) for a in rec["attempts"]] == [(0, 0.05)]
    assert any("too weak" in ln and str(path) in ln for ln in lines)
    default_policy(tmp_path, **TINY, check=check)  # recorded: not played again
    assert seen == [0]
    assert [p.name for p in (tmp_path / "models").iterdir()] == [path.name]


def test_a_read_only_cache_still_loads_when_the_check_cannot_be_recorded(tmp_path, monkeypatch):
    """A shared cache may be read-only: the one-off check of an old build then cannot be
    written down; the build is used all the same (the write fails as a read-only disk would)."""
    _, _, path = default_policy(tmp_path, **TINY, check=None)
    seen = _scripted(monkeypatch, [0.2])

    def read_only(*_a, **_k):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(default_mod.os, "replace", read_only)
    lines: list[str] = []
    check = BuildCheck(min_success=0.1, **SMALL)
    model, _, again = default_policy(tmp_path, **TINY, check=check, log=lines.append)
    assert again == path and model is not None and seen == [0]
    assert any("could not record the check" in ln for ln in lines)
    assert "check" not in json.loads((path / BUILD_INFO).read_text())


def test_auto_checks_the_default_household_recipe_only():
    sft, arch = default_configs("household")
    tok = TokenizerConfig()
    assert resolve_check("auto", "household", sft, tok, arch) is HOUSEHOLD_CHECK
    # what `empg train` asks for with the default config (env.kwargs = {})
    trainer_sft, trainer_arch = default_configs("household", {})
    assert resolve_check("auto", "household", trainer_sft, tok, trainer_arch) is HOUSEHOLD_CHECK
    # another recipe, a task mix, another environment: no calibrated threshold
    other = dataclasses.replace(sft, steps=900)
    assert resolve_check("auto", "household", other, tok, arch) is None
    mixed, _ = default_configs("household", {"task_types": ["pick_and_place_simple"]})
    assert resolve_check("auto", "household", mixed, tok, arch) is None
    shop_sft, shop_arch = default_configs("shop")
    assert resolve_check("auto", "shop", shop_sft, tok, shop_arch) is None
    assert resolve_check(None, "household", sft, tok, arch) is None
    mine = BuildCheck(min_success=0.3)
    assert resolve_check(mine, "shop", shop_sft, tok, shop_arch) is mine
    with pytest.raises(ConfigError, match="BuildCheck, None or 'auto'"):
        resolve_check("yes", "household", sft, tok, arch)


def test_default_check_and_its_validation():
    assert default_check("household") is HOUSEHOLD_CHECK
    assert default_check("household", {"task_types": ["look_at_obj_in_light"]}) is None
    assert default_check("search") is None
    # the check's tasks are neither the SFT data's seeds nor a held-out split
    assert HOUSEHOLD_CHECK.split == "train"
    assert HOUSEHOLD_CHECK.first_seed >= SFTConfig().first_seed + SFTConfig().episodes
    for bad in (dict(min_success=1.5), dict(min_success=0.1, episodes=0)):
        with pytest.raises(ConfigError):
            BuildCheck(**bad)
    with pytest.raises(ConfigError, match="attempts must be >= 1"):
        BuildCheck(min_success=0.1, attempts=0)


def test_the_trainer_names_the_check_of_the_policy_it_loads(tmp_path):
    from empg.train.trainer import _check_summary

    check = BuildCheck(min_success=0.0, **SMALL)
    _, _, checked = default_policy(tmp_path / "a", **TINY, check=check)
    assert _check_summary(checked) == ", checked: 0.0% on the build check (passed)"
    _, _, plain = default_policy(tmp_path / "b", **TINY, check=None)
    assert _check_summary(plain) == ""
    assert _check_summary(tmp_path / "missing") == ""
