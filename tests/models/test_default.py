"""default_policy: builds once into a versioned cache folder, later calls load; CLI `empg sft`."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch

from empg import cli
from empg.errors import ConfigError
from empg.models import default as default_mod
from empg.models.default import BUILD_INFO, cache_root, default_policy, load_policy
from empg.models.sft import SFTConfig
from empg.models.tiny import TinyModelConfig
from empg.models.tokenizer import TokenizerConfig

TINY = dict(
    sft=SFTConfig(episodes=3, steps=2, batch_size=4),
    tokenizer_config=TokenizerConfig(episodes_per_env=3, vocab_size=400),
    model_config=TinyModelConfig(num_layers=1),
)


def _logits(model, tokenizer):
    batch = tokenizer(["<|user|>\nTask: put a mug in desk.\n<|assistant|>\n"], return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


def test_first_call_builds_second_call_loads(tmp_path, monkeypatch):
    model, tok, path = default_policy(tmp_path, **TINY)
    assert path.parent == tmp_path / "models" and path.name.startswith("household-tiny-v2-")
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    info = json.loads((path / BUILD_INFO).read_text())
    assert info["sft"]["steps"] == 2 and info["vocab_size"] == len(tok) == 400
    assert info["data"] == default_mod.data_fingerprint(TINY["sft"], TINY["tokenizer_config"])
    assert [p.name for p in (tmp_path / "models").iterdir()] == [path.name]  # no temp folder left
    assert path.stat().st_mode & 0o777 == 0o755  # readable in a shared cache, not mkdtemp's 0700
    for f in path.iterdir():  # the weights too (safetensors writes them 0600)
        assert f.stat().st_mode & 0o644 == 0o644, f.name
    stamp = (path / BUILD_INFO).stat().st_mtime_ns

    def no_rebuild(*a, **k):
        raise AssertionError("default_policy rebuilt a cached policy")

    monkeypatch.setattr(default_mod, "build_policy", no_rebuild)
    model2, tok2, path2 = default_policy(tmp_path, **TINY)
    assert path2 == path and (path / BUILD_INFO).stat().st_mtime_ns == stamp
    assert torch.equal(_logits(model, tok), _logits(model2, tok2))
    assert tok2.padding_side == "left" and tok2.pad_token_id == tok.pad_token_id
    # another recipe is another folder (and would be built)
    with pytest.raises(AssertionError, match="rebuilt"):
        default_policy(tmp_path, **{**TINY, "sft": SFTConfig(episodes=3, steps=3, batch_size=4)})


def test_cache_root_prefers_argument_then_env(tmp_path, monkeypatch):
    monkeypatch.setenv("EMPG_CACHE_DIR", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("EMPG_CACHE_DIR")
    assert cache_root().parts[-2:] == (".cache", "empg")


def test_cli_sft_writes_a_loadable_policy(tmp_path, capsys):
    out = tmp_path / "policy"
    code = cli.main(
        [
            "sft",
            "--out",
            str(out),
            "--steps",
            "2",
            "--episodes",
            "3",
            "--tokenizer-episodes",
            "3",
            "--vocab-size",
            "400",
            "--decay-steps",
            "1",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "saved" in printed and "SFT step 2/2" in printed  # progress lines
    model, tok = load_policy(out)
    assert len(tok) == 400 and model.config.vocab_size == 400
    info = json.loads((out / BUILD_INFO).read_text())
    assert (info["sft"]["steps"], info["sft"]["decay_steps"]) == (2, 1)
    # options left unset take the default household policy's recipe
    assert (model.config.hidden_size, model.config.intermediate_size) == (256, 1024)
    assert info["sft"]["lr"] == 1.5e-3
    assert cli.main(["sft", "--out", str(out), "--steps", "-1"]) == 2


def test_sft_refuses_an_unnamed_folder_and_an_environment_without_an_expert_at_once(
    tmp_path, capsys, monkeypatch
):
    """Before the tokenizer is trained and before any folder is made: `--out ""` would be the
    current folder; textworld takes no split and has no expert data."""
    monkeypatch.chdir(tmp_path)

    def no_tokenizer(*_a, **_k):
        raise AssertionError("the tokenizer was trained before the arguments were checked")

    monkeypatch.setattr(default_mod, "train_tokenizer", no_tokenizer)
    assert cli.main(["sft", "--out", "", "--steps", "0"]) == 2
    assert "output folder must be named" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # no scripted expert to learn from
        cli.main(["sft", "--env", "textworld", "--out", "tw"])
    assert exc.value.code == 2
    assert "argument --env: invalid choice: 'textworld'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_environment_argument_at_its_default_names_the_same_cached_build():
    def folder(env, kwargs):
        sft, arch = default_mod.default_configs(env, kwargs)
        return default_mod.default_policy_dir(env, sft=sft, model_config=arch)

    home = folder("household", None)
    assert folder("household", {"max_steps": 50, "task_types": None}) == home
    assert folder("household", {"max_steps": 30}) != home
    assert folder("household", {"task_types": ["pick_and_place_simple"]}) != home
    assert folder("shop", {"max_steps": 15, "n_products": 2000}) == folder("shop", {})
    assert folder("search", {"top_k": 3}) == folder("search", {})
    assert folder("search", {"timeout_s": 5}) == folder("search", {})  # YAML's 5 for 5.0
    assert folder("household", {"expert_search_lamp": 0}) != home  # 0 is not False here
    assert folder("search", {"top_k": 5}) != folder("search", {})
    # the key of the default recipe itself is unchanged (its name is in docs and on disks)
    assert home.name == "household-tiny-v2-8ca1502521ce"


def test_a_build_of_zero_steps_records_no_final_loss(tmp_path):
    _, _, info = default_mod.build_policy(
        tmp_path / "p",
        "household",
        sft=SFTConfig(episodes=2, steps=0),
        tokenizer_config=TokenizerConfig(episodes_per_env=2, vocab_size=300),
        model_config=TinyModelConfig(num_layers=1),
    )
    assert info["sft_final_loss"] is None


def test_a_cache_folder_without_its_build_info_is_replaced_by_the_build(tmp_path):
    # e.g. a `rm -rf` of the folder that stopped midway: once it failed every later call
    final = default_mod.default_policy_dir("household", cache_dir=tmp_path, **TINY)
    final.mkdir(parents=True)
    (final / "model.safetensors").write_bytes(b"half")
    lines: list[str] = []
    _, _, path = default_policy(tmp_path, **TINY, check=None, log=lines.append)
    assert path == final and (final / BUILD_INFO).is_file()
    assert any("incomplete folder, replaced" in line for line in lines)
    assert [p.name for p in final.parent.iterdir()] == [final.name]


def test_damaged_weights_are_a_config_error(tmp_path):
    out = tmp_path / "p"
    default_mod.build_policy(
        out,
        "household",
        sft=SFTConfig(episodes=2, steps=0),
        tokenizer_config=TokenizerConfig(episodes_per_env=2, vocab_size=300),
        model_config=TinyModelConfig(num_layers=1),
    )
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with pytest.raises(ConfigError, match="cannot load a model and tokenizer"):
        load_policy(out)


def test_a_rebuild_stopped_midway_leaves_no_build_info_behind(tmp_path, monkeypatch):
    """`empg sft --out DIR` into a folder that holds a build: a rebuild stopped before it
    finishes must not leave the old build's info beside a half-replaced build."""
    out = tmp_path / "policy"
    out.mkdir()
    (out / BUILD_INFO).write_text('{"sft": "an earlier build"}')

    def stopped(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(default_mod, "train_sft", stopped)
    with pytest.raises(KeyboardInterrupt):
        default_mod.build_policy(
            out, "household", tokenizer_config=TokenizerConfig(episodes_per_env=2, vocab_size=300)
        )
    assert not (out / BUILD_INFO).exists()


def test_cli_sft_sets_the_architecture_and_rejects_a_bad_one(tmp_path, capsys):
    out = tmp_path / "policy"
    small = ["--steps", "1", "--episodes", "2", "--tokenizer-episodes", "2", "--vocab-size", "300"]
    arch = ["--hidden-size", "48", "--layers", "3", "--heads", "6", "--kv-heads", "3"]
    arch += ["--intermediate-size", "80", "--lr", "1e-3"]
    data = ["--recall-observation", "--grounded-only", "--ema-decay", "0.9"]
    assert cli.main(["sft", "--out", str(out), *small, *arch, *data]) == 0
    model, _ = load_policy(out)
    c = model.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads) == (48, 3, 6)
    assert (c.num_key_value_heads, c.intermediate_size) == (3, 80)
    info = json.loads((out / BUILD_INFO).read_text())
    assert info["model"]["num_layers"] == 3 and info["sft"]["lr"] == 1e-3
    assert info["sft"]["grounded_only"] is True and info["sft"]["ema_decay"] == 0.9
    assert info["sft"]["prompt"]["recall_observation"] is True
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert cli.main(["sft", "--out", str(bad), *small, "--hidden-size", "50", "--heads", "4"]) == 2
    assert "divisible by num_heads" in capsys.readouterr().err
    assert cli.main(["sft", "--out", str(bad), *small, "--intermediate-size", "0"]) == 2
    assert "intermediate_size must be >= 1" in capsys.readouterr().err
    assert cli.main(["sft", "--out", str(bad), *small, "--threads", "0"]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err
    assert cli.main(["sft", "--out", str(bad), *small, "--ema-decay", "1"]) == 2
    assert "ema_decay must be in [0, 1)" in capsys.readouterr().err
    assert not bad.exists()


def test_cli_sft_replaces_a_full_folder_only_when_told_and_only_once_the_build_is_done(
    tmp_path, capsys, monkeypatch
):
    out = tmp_path / "policy"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"an earlier build's weights")
    small = ["--steps", "1", "--episodes", "2", "--tokenizer-episodes", "2", "--vocab-size", "300"]
    small += ["--layers", "1"]
    real_tokenizer = default_mod.train_tokenizer

    def no_tokenizer(*_a, **_k):
        raise AssertionError("the tokenizer was trained before --out was checked")

    monkeypatch.setattr(default_mod, "train_tokenizer", no_tokenizer)
    assert cli.main(["sft", "--out", str(out), *small]) == 2
    assert "already holds files; pass --overwrite" in capsys.readouterr().err
    monkeypatch.setattr(default_mod, "train_tokenizer", real_tokenizer)

    def stopped(*_a, **_k):
        raise KeyboardInterrupt

    real_sft = default_mod.train_sft
    monkeypatch.setattr(default_mod, "train_sft", stopped)
    assert cli.main(["sft", "--out", str(out), "--overwrite", *small]) == 130  # Ctrl-C
    # the stopped rebuild left the old folder as it was and no temporary folder beside it
    assert [p.name for p in tmp_path.iterdir()] == ["policy"]
    assert [p.name for p in out.iterdir()] == ["model.safetensors"]
    assert (out / "model.safetensors").read_bytes() == b"an earlier build's weights"

    monkeypatch.setattr(default_mod, "train_sft", real_sft)
    assert cli.main(["sft", "--out", str(out), "--overwrite", *small]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["policy"]
    assert (out / BUILD_INFO).is_file() and (out / "tokenizer.json").is_file()
    assert (out.stat().st_mode & 0o777) == 0o755
    assert (out / "model.safetensors").stat().st_mode & 0o644 == 0o644
    load_policy(out)  # the new build, whole
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty folder needs no --overwrite
    assert cli.main(["sft", "--out", str(empty), *small]) == 0
    assert (empty / BUILD_INFO).is_file()


def test_cli_sft_into_the_current_folder_a_symlink_or_a_folder_it_cannot_replace(
    tmp_path, capsys, monkeypatch
):
    small = ["--steps", "1", "--episodes", "2", "--tokenizer-episodes", "2", "--vocab-size", "300"]
    small += ["--layers", "1"]
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert cli.main(["sft", "--out", ".", *small]) == 0  # "." has no name of its own
    assert (here / BUILD_INFO).is_file() and os.getcwd() == str(here)
    assert [p.name for p in tmp_path.iterdir()] == ["here"]  # no temporary folder left
    target = tmp_path / "target"
    target.mkdir()
    (target / "old.txt").write_text("an earlier build")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert cli.main(["sft", "--out", str(link), "--overwrite", *small]) == 0
    assert link.is_symlink() and (target / BUILD_INFO).is_file()  # the link still leads there
    assert not (target / "old.txt").exists()

    def cannot(*_a, **_k):
        raise OSError(16, "Device or resource busy")

    monkeypatch.setattr("empg.files.replace_folder", cannot)
    assert cli.main(["sft", "--out", str(tmp_path / "busy"), *small]) == 2
    err = capsys.readouterr().err
    assert "the build is complete in" in err and "move it there yourself" in err
    kept = Path(err.split("the build is complete in ")[1].split(" but")[0])
    assert (kept / BUILD_INFO).is_file()  # the finished build was not deleted


def test_move_up_fills_the_parent_last_file_last_and_undoes_a_failed_move(tmp_path, monkeypatch):
    from empg import files

    inner = tmp_path / "out" / ".work"
    inner.mkdir(parents=True)
    for name in ("b.bin", "a.json", BUILD_INFO):
        (inner / name).write_text(name)
    order: list[str] = []
    real_rename = os.rename

    def failing_third(src, dst):
        order.append(Path(src).name)
        if len(order) == 3:
            raise OSError(28, "No space left on device")
        return real_rename(src, dst)

    monkeypatch.setattr(files.os, "rename", failing_third)
    with pytest.raises(OSError, match="No space left"):
        files.move_up(inner, last=BUILD_INFO)
    assert order[:3] == ["a.json", "b.bin", BUILD_INFO]  # the marker would have gone last
    assert sorted(p.name for p in inner.iterdir()) == sorted(["a.json", "b.bin", BUILD_INFO])
    assert [p.name for p in (tmp_path / "out").iterdir()] == [".work"]  # all moved back
    monkeypatch.setattr(files.os, "rename", real_rename)
    files.move_up(inner, last=BUILD_INFO)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        ["a.json", "b.bin", BUILD_INFO]
    )


def test_a_first_use_build_reports_progress_and_a_cached_load_does_not(tmp_path, monkeypatch):
    monkeypatch.setenv("MKL_CBWR", "AVX2")  # recorded: it changes which kernels run
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    lines: list[str] = []
    sft = SFTConfig(episodes=3, steps=4, batch_size=4)
    default_policy(tmp_path, **{**TINY, "sft": sft}, log=lines.append)
    steps = [ln for ln in lines if "warm start: SFT step" in ln]
    assert steps and steps[-1].startswith("[empg] warm start: SFT step 4/4")
    assert "min left" in steps[-1]
    again: list[str] = []
    _, _, path = default_policy(tmp_path, **{**TINY, "sft": sft}, log=again.append)
    assert again == []
    # the build info says what the build's arithmetic ran on, to compare builds across machines
    env = json.loads((path / BUILD_INFO).read_text())["built_on"]
    assert env["torch"] == torch.__version__ and env["torch_threads"] == torch.get_num_threads()
    assert env["cpu"] and env["cpu_capability"] and env["transformers"] and env["tokenizers"]
    assert env["numerics_env"]["MKL_CBWR"] == "AVX2"
    assert "ATEN_CPU_CAPABILITY" not in env["numerics_env"]  # only the variables that are set


def test_prompt_fields_added_later_keep_older_cache_folders_valid():
    """A prompt field added after recipe v1 enters the cache key only when it differs from the
    value that reproduces the v1 prompt, so an existing build keeps its folder name."""
    from empg.models.default import policy_dir, recipe

    args = (TINY["tokenizer_config"], TINY["model_config"])
    base = TINY["sft"]
    spec = recipe("household", base, *args)
    assert "recall_observation" not in spec["sft"]["prompt"]
    assert "noop_observations" not in spec["sft"]["prompt"]
    # the key is exactly the one computed from the prompt's v1 fields
    v1 = json.loads(json.dumps(spec))
    assert set(v1["sft"]["prompt"]) == {
        "history",
        "show_admissible",
        "max_admissible",
        "max_observation_chars",
        "compact",
        "first_observation",
        "past_actions",
    }
    recall = dataclasses.replace(
        base, prompt=dataclasses.replace(base.prompt, recall_observation=True)
    )
    spec2 = recipe("household", recall, *args)
    assert spec2["sft"]["prompt"]["recall_observation"] is True
    assert policy_dir(cache_root(), "household", spec2) != policy_dir(
        cache_root(), "household", spec
    )


@pytest.mark.parametrize("name, value", [("grounded_only", True), ("ema_decay", 0.995)])
def test_sft_fields_added_later_keep_older_cache_folders_valid(name, value):
    """Fields added after recipe v1 (``grounded_only``, ``ema_decay``) enter the key only when
    set; the default recipe keeps the folder name it had before they existed."""
    from empg.models.default import policy_dir, recipe

    args = (TokenizerConfig(), TinyModelConfig())
    spec = recipe("household", SFTConfig(), *args)
    assert name not in spec["sft"]
    # the class-default recipe's folder (in recipe v1: household-tiny-v1-3a7c0a5448c3)
    assert policy_dir(Path("/c"), "household", spec).name == "household-tiny-v2-098f4de561b0"
    on = recipe("household", dataclasses.replace(SFTConfig(), **{name: value}), *args)
    assert on["sft"][name] == value
    assert policy_dir(Path("/c"), "household", on) != policy_dir(Path("/c"), "household", spec)


def test_logging_alone_neither_changes_the_cache_key_nor_turns_the_check_off():
    from empg.models.default import default_configs, policy_dir, recipe, resolve_check

    sft, arch = default_configs("household")
    loud = dataclasses.replace(sft, log_every=50)
    tok = TokenizerConfig()
    assert policy_dir(Path("/c"), "household", recipe("household", loud, tok, arch)).name == (
        "household-tiny-v2-8ca1502521ce"
    )
    assert resolve_check("auto", "household", loud, tok, arch) is not None
    other = dataclasses.replace(sft, steps=sft.steps + 1)  # a real recipe change: no check
    assert resolve_check("auto", "household", other, tok, arch) is None


def test_a_killed_builds_old_temporary_folder_is_swept(tmp_path):
    import os
    import time

    from empg.models.default import STALE_BUILD_SECONDS, _sweep_stale_builds

    final = tmp_path / "household-tiny-v1-abc"
    old, fresh, other = (
        tmp_path / n
        for n in (".household-tiny-v1-abc.x1", ".household-tiny-v1-abc.x2", ".other.x3")
    )
    for d in (old, fresh, other):
        d.mkdir()
    past = time.time() - STALE_BUILD_SECONDS - 60
    os.utime(old, (past, past))
    os.utime(other, (past, past))
    _sweep_stale_builds(final)
    assert not old.exists() and fresh.exists() and other.exists()


def test_the_default_household_policy_is_the_wider_build():
    from empg.models.default import default_configs, policy_dir, recipe

    sft, arch = default_configs("household")
    assert (arch.hidden_size, arch.intermediate_size, sft.lr) == (256, 1024, 1.5e-3)
    assert (arch.num_layers, arch.num_heads, arch.num_kv_heads) == (4, 4, 2)
    assert sft == dataclasses.replace(SFTConfig(), lr=1.5e-3)  # the rest as the class defaults
    spec = recipe("household", sft, TokenizerConfig(), arch)
    # the folder the default household policy is cached in; a change here rebuilds (30-55 min)
    assert policy_dir(Path("/c"), "household", spec).name == "household-tiny-v2-8ca1502521ce"
    for env in ("shop", "search"):  # not measured wider there: they keep the class defaults
        assert default_configs(env) == (SFTConfig(env=env), TinyModelConfig())
    mixed, _ = default_configs("household", {"task_types": ["pick"]})
    assert mixed.env_kwargs == {"task_types": ["pick"]} and mixed.lr == 1.5e-3


def test_the_trainer_asks_for_the_default_recipe_of_the_configured_environment(monkeypatch):
    """``model.path=default`` hands default_policy the recipe of default_configs, with the
    configured environment's kwargs (non-built-in environments warm-start on household)."""
    from empg.models.default import default_configs
    from empg.train.config import load_config
    from empg.train.trainer import load_model

    asked: list[dict] = []

    class Asked(Exception):
        pass

    def record(**kw):
        asked.append(kw)
        raise Asked

    monkeypatch.setattr(default_mod, "default_policy", record)
    cases = [
        (["env.kwargs={task_types: [pick]}"], "household", {"task_types": ["pick"]}),
        (["env.name=shop"], "shop", None),
        (["env.name=test-two-arms"], "household", None),
    ]
    for overrides, env, kwargs in cases:
        with pytest.raises(Asked):
            load_model(load_config(None, overrides))
        sft, arch = default_configs(env, kwargs)
        assert asked[-1]["env"] == env
        assert (asked[-1]["sft"], asked[-1]["model_config"]) == (sft, arch)


#: the data of the default builds under recipe v2 (data_fingerprint). A change to an environment,
#: the expert, the prompts or the tokenizer corpus that alters them makes every default build a
#: different policy under the same cache folder name: bump RECIPE_VERSION and record the new values.
V2_DATA = {
    "tokenizer_corpus": "a80b11312ae2e9b0",
    "household": "d8e1a1dd38c0c36e",
    "shop": "c5dce8a71e17d718",
    "search": "662e8df349b2b293",
}


def test_the_default_builds_data_is_the_one_its_recipe_version_names():
    from empg.models.default import RECIPE_VERSION, data_fingerprint, default_configs

    assert RECIPE_VERSION == "v2", "record the new version's data fingerprints in V2_DATA"
    found = {}
    for env in ("household", "shop", "search"):
        sft, _ = default_configs(env)
        if env == "household":
            fp = data_fingerprint(sft, TokenizerConfig())
            found["tokenizer_corpus"] = fp["tokenizer_corpus"]
        else:  # the corpus is shared; only the SFT examples differ
            fp = data_fingerprint(sft, TokenizerConfig(envs=("search",), episodes_per_env=1))
        found[env] = fp["sft_examples"]
    assert found == V2_DATA, (
        "the default builds' data changed: bump RECIPE_VERSION in empg/models/default.py so that "
        "cached builds of the old data are not loaded as the new recipe, and update V2_DATA"
    )
