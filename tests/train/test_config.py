"""The training config schema: overrides, YAML numbers, rejections, prompt settings."""

from __future__ import annotations

import re

import numpy as np
import pytest

from empg.agent.prompts import PromptConfig
from empg.errors import ConfigError
from empg.models.sft import default_prompt_config
from empg.train.config import load_config
from empg.train.rollouts import draw_task_seeds, prompt_config, rollout_config


@pytest.mark.parametrize("text, value", [("1e-3", 1e-3), ("5E-2", 0.05), ("2e1", 20.0)])
def test_exponent_floats_without_a_dot_are_numbers(text, value, tmp_path):
    # PyYAML reads "1e-3" as a string; float fields take it as the number users mean
    assert load_config(None, [f"optim.lr={text}"]).optim.lr == value
    path = tmp_path / "c.yaml"
    path.write_text(f"optim:\n  lr: {text}\n")
    assert load_config(path).optim.lr == value


@pytest.mark.parametrize("text", ["abc", "1e", "e-3", "true"])
def test_non_numbers_for_float_fields_are_rejected(text):
    with pytest.raises(ConfigError, match=r"optim\.lr: expected float"):
        load_config(None, [f"optim.lr={text}"])


def test_exponent_strings_stay_strings_in_str_fields():
    assert load_config(None, ["run_dir=1e3"]).run_dir == "1e3"


def test_unknown_keys_are_rejected_naming_the_key():
    with pytest.raises(ConfigError, match=r"optim\.lrr"):
        load_config(None, ["optim.lrr=0.1"])


def test_rollout_prompt_fields_reach_the_prompt_config():
    cfg = load_config(
        None,
        [
            "rollout.past_actions=3",
            "rollout.first_observation=false",
            "rollout.recall_observation=true",
        ],
    )
    assert prompt_config(cfg) == PromptConfig(
        history=0,
        show_admissible=False,
        compact=True,
        first_observation=False,
        past_actions=3,
        recall_observation=True,
    )


def test_rollout_pool_backend_reaches_the_rollout_config():
    cfg = load_config(None, ["rollout.pool_backend=process"])
    assert rollout_config(cfg, "train", temperature=1.0, group_size=2).pool_backend == "process"
    assert rollout_config(load_config(), "train", temperature=1.0, group_size=2).pool_backend == (
        "thread"
    )


def test_rollout_noop_penalty_reaches_the_rollout_config():
    assert rollout_config(load_config(), "train", temperature=1.0, group_size=2).noop_penalty == 0
    cfg = load_config(None, ["rollout.noop_penalty=0.05"])
    assert rollout_config(cfg, "train", temperature=1.0, group_size=2).noop_penalty == 0.05


def test_rollout_prefix_cache_reaches_the_rollout_config():
    assert rollout_config(load_config(), "train", temperature=1.0, group_size=2).prefix_cache
    off = load_config(None, ["rollout.prefix_cache=false"])
    assert not rollout_config(off, "train", temperature=1.0, group_size=2).prefix_cache


def test_rollout_constrain_actions_reaches_the_rollout_config():
    assert not rollout_config(
        load_config(), "train", temperature=1.0, group_size=2
    ).constrain_actions
    on = load_config(None, ["rollout.constrain_actions=true"])
    assert rollout_config(on, "valid_seen", temperature=0.4, group_size=1).constrain_actions


def test_default_rollout_prompt_is_the_one_the_default_policy_was_trained_with():
    assert prompt_config(load_config()) == default_prompt_config()


def test_top_level_fields_take_an_optional_train_prefix():
    cfg = load_config(None, ["train.seed=3", "iterations=2", "train.eval.episodes=4"])
    assert (cfg.seed, cfg.iterations, cfg.eval.episodes) == (3, 2, 4)
    with pytest.raises(ConfigError, match="seeed"):
        load_config(None, ["train.seeed=3"])


def test_train_task_pool_is_validated():
    assert load_config(None, ["env.train_tasks=[3, 5]"]).env.train_tasks == [3, 5]
    with pytest.raises(ConfigError, match=r"env\.train_tasks"):
        load_config(None, ["env.train_tasks=[-1]"])
    with pytest.raises(ConfigError, match=r"env\.train_tasks\[0\]: expected int"):
        load_config(None, ["env.train_tasks=[a]"])


def test_task_seeds_come_from_the_pool():
    rng = np.random.default_rng(0)
    anywhere = draw_task_seeds(rng, 6, [])
    assert len(set(anywhere)) == 6 and all(0 <= s < 2**31 for s in anywhere)
    pool = [11, 22, 33, 44]
    distinct = draw_task_seeds(np.random.default_rng(1), 3, pool)
    assert len(set(distinct)) == 3 and set(distinct) <= set(pool)
    repeated = draw_task_seeds(np.random.default_rng(1), 9, pool)
    assert len(repeated) == 9 and set(repeated) <= set(pool)
    assert draw_task_seeds(np.random.default_rng(2), 1, [7]) == [7]


def test_rollout_restricted_logprobs_needs_constrained_actions():
    with pytest.raises(ConfigError, match="constrain_actions"):
        load_config(None, ["rollout.restricted_logprobs=true"])
    on = load_config(None, ["rollout.constrain_actions=true", "rollout.restricted_logprobs=true"])
    assert rollout_config(on, "train", temperature=1.0, group_size=2).restricted_logprobs


@pytest.mark.parametrize(
    "override, key",
    [
        ("algo.overlong_buffer=0", "algo.overlong_buffer"),
        ("algo.clip_ratio_high=-0.1", "algo.clip_ratio_high"),
        ("optim.lr=-1e-4", "optim.lr"),
        ("optim.grad_clip=-1", "optim.grad_clip"),
        ("optim.warmup_iters=-2", "optim.warmup_iters"),
        ("optim.max_bad_updates=0", "optim.max_bad_updates"),
        ("eval.episodes=0", "eval.episodes"),
        ("eval.every=-1", "eval.every"),
        ("eval.temperature=-0.5", "eval.temperature"),
        ("eval.splits=[]", "eval.splits"),
        ("optim.lr=.nan", "optim.lr"),
        ("optim.lr=1e999", "optim.lr"),  # an exponent without a dot is parsed separately
        ("rollout.temperature=.inf", "rollout.temperature"),
        ("algo.kl_coef=.nan", "algo.kl_coef"),
        ("algo.adv_estimator=grpoo", "algo.adv_estimator"),
        ("rollout.max_resample_rounds=-1", "rollout.max_resample_rounds"),
        ("model.lora_alpha=0", "model.lora_alpha"),
        # each of these once failed only after the model had loaded, or named no key
        ("seed=-1", "seed"),
        ("threads=-3", "threads"),
        ("rollout.history=-1", "rollout.history"),
        ("rollout.past_actions=-5", "rollout.past_actions"),
        ("rollout.group_size=0", "rollout.group_size"),
        ("model.chunk_size=-1", "model.chunk_size"),
        ("optim.micro_batch_steps=0", "optim.micro_batch_steps"),
        ("keep_checkpoints=0", "keep_checkpoints"),
        ("checkpoint_every=0", "checkpoint_every"),
        ("iterations=-1", "iterations"),
        ("algo.empg.final_norm=max", "algo.empg.final_norm"),
        ("algo.empg.eps=0", "algo.empg.eps"),
        ("algo.empg.scale=1", "algo.empg.scale"),
        ("rollout.pool_backend=fork", "rollout.pool_backend"),
    ],
)
def test_out_of_range_values_are_rejected_naming_the_key(override, key):
    # the message starts with the full key, not a shorter spelling of it
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}\b(?!\.)"):
        load_config(None, [override])


def test_the_verl_section_names_its_own_path():
    from empg.integrations.verl.config import empg_config_from

    with pytest.raises(ConfigError, match=r"^algorithm\.empg\.final_norm must be one of"):
        empg_config_from({"empg": {"final_norm": "max"}})


def test_an_unknown_estimator_is_rejected_when_the_config_loads_with_a_suggestion():
    # not only once a group with differing outcomes first reaches the estimator, which under
    # dynamic sampling may be never
    with pytest.raises(ConfigError, match=r"unknown advantage estimator 'grpoo'.*'grpo'"):
        load_config(None, ["algo.preset=dapo", "algo.adv_estimator=grpoo"])


def test_every_shipped_config_loads():
    from pathlib import Path

    files = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))
    assert len(files) >= 14
    for path in files:
        load_config(str(path), [])


def test_an_unknown_environment_is_refused_before_any_model_is_loaded(tmp_path):
    from empg.train.trainer import Trainer

    cfg = load_config(None, ["env.name=housheold", f"run_dir={tmp_path / 'r'}"])
    with pytest.raises(ConfigError, match="Did you mean 'household'"):
        Trainer(cfg, log=lambda *_: None)
    assert not (tmp_path / "r").exists()


def test_a_malformed_config_file_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("algo: [1,\n")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(str(bad), [])
    bad.write_bytes(b"seed: \xff\xfe\n")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(str(bad), [])


def test_a_yaml_syntax_error_is_one_line_and_a_folder_is_not_a_config_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("iterations: [1\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(bad), [])
    assert "\n" not in str(info.value) and "line 1" in str(info.value)
    with pytest.raises(ConfigError, match="is a folder, not a file"):
        load_config(str(tmp_path), [])
