"""The default policy: tokenizer + tiny Qwen2 model + supervised warm start, built once and cached.

::

    model, tokenizer, path = empg.models.default_policy()      # builds on first use (minutes)
    model, tokenizer = load_policy(path)                      # or any local HF model folder

The build is saved with ``save_pretrained`` (safetensors) under
``$EMPG_CACHE_DIR`` or ``~/.cache/empg`` in ``models/<env>-tiny-<version>-<config hash>``, so a
changed recipe never loads a stale folder. It is written to a temporary folder and renamed into
place, so a crash leaves no half-written policy and two racing builders both end with a valid one.
A new build of household's default recipe is checked before it is kept (:mod:`empg.models.check`):
one that wins too rarely is built again on the next SFT seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from empg.errors import ConfigError
from empg.files import atomic_write_text, fsync_dir, fsync_tree, make_readable
from empg.models.check import BuildCheck, check_success, default_check
from empg.models.sft import SFTConfig, expert_examples, train_sft
from empg.models.tiny import TinyModelConfig, build_tiny_model, count_parameters
from empg.models.tokenizer import TokenizerConfig, corpus_texts, train_tokenizer

#: bump when the recipe changes in a way the config hash does not capture, above all when the
#: data a build trains on changes (:func:`data_fingerprint`; a test pins it for the default
#: recipes). v2: search's BM25 tie-break (commit 9740de4) changed the tokenizer's corpus, hence
#: every default build, while v1 folders built before it kept their names.
RECIPE_VERSION = "v2"
BUILD_INFO = "empg_build.json"


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``cache_dir``, else ``$EMPG_CACHE_DIR``, else ``~/.cache/empg``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("EMPG_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "empg"


#: prompt fields added after recipe v1 with the value that reproduces the v1 prompt: they enter
#: the recipe only when set otherwise, so folders built before they existed stay valid
_LATER_PROMPT_FIELDS = {"recall_observation": False, "noop_observations": ("Nothing happens.",)}
#: the same for SFT fields
_LATER_SFT_FIELDS = {"grounded_only": False, "ema_decay": 0.0}


def _without_v1_values(fields: dict, later: dict) -> dict:
    """``fields`` less the later-added ones that still hold their v1 value."""
    return {k: v for k, v in fields.items() if k not in later or v != later[k]}


def recipe(env: str, sft: SFTConfig, tok: TokenizerConfig, arch: TinyModelConfig) -> dict:
    """JSON-ready description of a build (what the cache key is made of)."""
    sft_dict = _without_v1_values(asdict(sft), _LATER_SFT_FIELDS)
    sft_dict["log_every"] = 0  # logging changes nothing built (0, its default, keeps old keys)
    sft_dict["prompt"] = _without_v1_values(sft_dict["prompt"], _LATER_PROMPT_FIELDS)
    return {
        "version": RECIPE_VERSION,
        "env": env,
        "tokenizer": asdict(tok),
        "model": asdict(arch),
        "sft": sft_dict,
    }


def policy_dir(root: Path, env: str, spec: dict) -> Path:
    """Versioned cache folder of the build ``spec``."""
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()
    return root / "models" / f"{env}-tiny-{RECIPE_VERSION}-{digest[:12]}"


def default_policy_dir(
    env: str = "household",
    *,
    sft: SFTConfig | None = None,
    tokenizer_config: TokenizerConfig | None = None,
    model_config: TinyModelConfig | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """The cache folder :func:`default_policy` loads (or builds) for these settings; nothing is
    built. Settings left out take :func:`default_configs`' values."""
    default_sft, default_arch = default_configs(env)
    return policy_dir(
        cache_root(cache_dir),
        env,
        recipe(
            env,
            sft or default_sft,
            tokenizer_config or TokenizerConfig(),
            model_config or default_arch,
        ),
    )


def data_fingerprint(sft: SFTConfig, tok: TokenizerConfig) -> dict[str, str]:
    """First 16 hex digits of the sha256 of a build's data: the tokenizer's training corpus and
    the SFT examples (prompt and target of each). Deterministic and machine-independent; a change
    here under the same config is a new build, which needs a new :data:`RECIPE_VERSION`."""
    corpus = hashlib.sha256()
    for text in corpus_texts(tok):
        corpus.update(json.dumps(text).encode())
    examples = hashlib.sha256()
    for ex in expert_examples(sft):
        examples.update(json.dumps([ex.prompt, ex.target]).encode())
    return {"tokenizer_corpus": corpus.hexdigest()[:16], "sft_examples": examples.hexdigest()[:16]}


def build_policy(
    out_dir: str | os.PathLike[str],
    env: str = "household",
    *,
    sft: SFTConfig | None = None,
    tokenizer_config: TokenizerConfig | None = None,
    model_config: TinyModelConfig | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Any, Any, dict]:
    """Train tokenizer, build the tiny model, warm-start it, save all to ``out_dir``.

    Returns (model, tokenizer, build info); the info is also written to ``empg_build.json``.
    ``log`` receives progress lines (SFT step, loss, time left) about every 5% of the steps.
    """
    sft = sft or SFTConfig(env=env)
    if sft.env != env:
        raise ConfigError(f"sft.env is {sft.env!r} but env is {env!r}; make them the same")
    tok_cfg = tokenizer_config or TokenizerConfig()
    arch = model_config or TinyModelConfig()
    if not os.fspath(out_dir).strip():  # Path("") is the current folder
        raise ConfigError("the output folder must be named, got an empty path")
    out = Path(out_dir).expanduser()
    from empg.agent.rollout import check_env_builds

    # the expert's environment, before the tokenizer's minutes and before any folder is made
    check_env_builds(env, {"split": sft.split, **sft.env_kwargs})
    try:  # before the build, not after up to an hour of it
        out.mkdir(parents=True, exist_ok=True)
        # a rebuild into a folder that holds a build: until the new one is complete, the
        # folder must not claim to hold one (its build info is written last)
        (out / BUILD_INFO).unlink(missing_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the output folder {str(out)!r}: {e}") from e
    t0 = time.perf_counter()
    tokenizer = train_tokenizer(tok_cfg)
    t_tok = time.perf_counter() - t0
    model = build_tiny_model(tokenizer, arch)
    stats = train_sft(model, tokenizer, sft, on_step=_progress(sft.steps, log) if log else None)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    info = {
        **recipe(env, sft, tok_cfg, arch),
        "data": data_fingerprint(sft, tok_cfg),
        "parameters": count_parameters(model),
        "vocab_size": len(tokenizer),
        "sft_examples": stats.examples,
        # mean of the last 10 steps' losses; None for a build of 0 steps (no loss was seen)
        "sft_final_loss": (
            sum(stats.losses[-10:]) / len(stats.losses[-10:]) if stats.losses else None
        ),
        "tokenizer_seconds": round(t_tok, 2),
        "sft_seconds": round(stats.seconds, 2),
        "build_seconds": round(time.perf_counter() - t0, 2),
        "built_on": build_environment(),
    }
    atomic_write_text(out / BUILD_INFO, json.dumps(info, indent=2, default=str))
    return model, tokenizer, info


#: environment variables that change which CPU kernels run, hence a build's rounding
NUMERICS_ENV = (
    "ATEN_CPU_CAPABILITY",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "ONEDNN_MAX_CPU_ISA",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
)


def build_environment() -> dict[str, Any]:
    """What a build's floating-point results may depend on: library versions, the CPU, threads
    and the environment variables in :data:`NUMERICS_ENV` that are set.

    Builds of one recipe differ between CPUs (docs/models.md); this goes into the build info
    so that two builds can be compared.
    """
    import platform

    import tokenizers
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:  # Linux: the model name and, for x86, family / model, which processor() lacks
        fields = dict(
            line.split(":", 1)
            for line in Path("/proc/cpuinfo").read_text().splitlines()[:30]
            if ":" in line
        )
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        cpu = fields.get("model name", cpu)
        if "cpu family" in fields:
            cpu += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "cpu": cpu,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "numerics_env": {k: os.environ[k] for k in NUMERICS_ENV if k in os.environ},
    }


def _progress(total: int, log: Callable[[str], None]) -> Callable[[int, Any], None]:
    """An ``on_step`` callback printing step, elapsed and estimated remaining time."""
    t0 = time.perf_counter()
    every = max(1, total // 20)

    def on_step(step: int, _model: Any) -> None:
        if step % every == 0 or step == total:
            spent = time.perf_counter() - t0
            left = spent / step * (total - step)
            log(
                f"[empg] warm start: SFT step {step}/{total}, {spent / 60:.1f} min, "
                f"~{left / 60:.1f} min left"
            )

    return on_step


def _discard_incomplete(folder: Path, log: Callable[[str], None] | None) -> None:
    """Move aside and delete a cache folder that has no build info (a deletion or a copy that
    stopped midway): no build publishes a folder without it, so it holds no usable build,
    and the finished build that is to take its name could not replace a non-empty folder."""
    if log is not None:
        log(f"[empg] {folder} holds files but no {BUILD_INFO}: an incomplete folder, replaced")
    aside = folder.with_name(f".{folder.name}.incomplete-{os.getpid()}")
    try:
        os.rename(folder, aside)
    except FileNotFoundError:  # a racing builder moved it first
        return
    shutil.rmtree(aside, ignore_errors=True)


def load_policy(path: str | os.PathLike[str]) -> tuple[Any, Any]:
    """(model, tokenizer) from any folder ``transformers``' Auto classes can load (fp32, eval)."""
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    text = os.fspath(path)
    local = Path(text).expanduser()
    hub_like = not text.startswith(("/", ".", "~")) and text.count("/") <= 1  # "org/name"
    if local.exists() or not hub_like or os.path.isabs(text):
        # a local path, not a hub id: say what is missing instead of a hub lookup error
        if not local.is_dir():
            raise ConfigError(f"model path {text!r}: no such folder")
        if not (local / "config.json").is_file():
            raise ConfigError(f"model path {text!r}: the folder has no config.json")
        text = str(local)
    try:
        tokenizer = AutoTokenizer.from_pretrained(text, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(
            text, dtype=torch.float32, attn_implementation="sdpa"
        )
    except (OSError, ValueError, SafetensorError) as e:
        # no such hub id, no network, a folder without weights; a config naming a model type
        # transformers does not know; truncated or damaged weights
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"model path {text!r}: cannot load a model and tokenizer ({type(e).__name__}: {first})"
        ) from e
    model.eval()
    if tokenizer.pad_token_id is None:  # generic causal LMs often have none
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


#: the default household policy's architecture: 4.7M parameters, 3.4x the class defaults'
#: 1.4M, with a warm start 2-4x as successful that varies far less between machines (docs/models.md)
WIDE_MODEL = TinyModelConfig(hidden_size=256, intermediate_size=1024)
#: its SFT learning rate (3e-3, the class default, is too large for the wider model)
WIDE_SFT_LR = 1.5e-3


def default_configs(
    env: str = "household", env_kwargs: dict[str, Any] | None = None
) -> tuple[SFTConfig, TinyModelConfig]:
    """(warm start, architecture) of the default policy for ``env``.

    Household gets the wider build (:data:`WIDE_MODEL`, SFT at :data:`WIDE_SFT_LR`); shop and
    search keep the class defaults (1.4M parameters), as the wider build is measured on household
    only. ``env_kwargs`` are the environment's constructor arguments the warm start plays with.
    """
    sft = SFTConfig(env=env, env_kwargs=_without_defaults(env, env_kwargs or {}))
    if env == "household":
        return dataclasses.replace(sft, lr=WIDE_SFT_LR), WIDE_MODEL
    return sft, TinyModelConfig()


def _without_defaults(env: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``env_kwargs`` less the arguments that equal the built-in environment's own default, so
    that spelling a default out (``env.kwargs.max_steps=50``) names the same cached build."""
    import importlib
    import inspect

    classes = {"household": "HouseholdEnv", "shop": "ShopEnv", "search": "SearchEnv"}
    if env not in classes:
        return dict(env_kwargs)
    cls = getattr(importlib.import_module(f"empg.envs.{env}"), classes[env])
    params = inspect.signature(cls).parameters

    def is_default(k: str, v: Any) -> bool:
        default = params[k].default if k in params else inspect.Parameter.empty
        if default is inspect.Parameter.empty:
            return False
        same_kind = type(v) is type(default) or (  # 5 for a default of 5.0 (YAML's int)
            isinstance(default, float) and isinstance(v, int) and not isinstance(v, bool)
        )
        if not same_kind:  # True is not 1, an array is not a number
            return False
        try:
            return bool(default == v)
        except (TypeError, ValueError):  # an array compared element-wise, say
            return False

    return {k: v for k, v in env_kwargs.items() if not is_default(k, v)}


def default_policy(
    cache_dir: str | os.PathLike[str] | None = None,
    env: str = "household",
    *,
    sft: SFTConfig | None = None,
    tokenizer_config: TokenizerConfig | None = None,
    model_config: TinyModelConfig | None = None,
    check: BuildCheck | str | None = "auto",
    log: Callable[[str], None] | None = None,
) -> tuple[Any, Any, Path]:
    """The warm-started tiny policy for ``env``: (model, tokenizer, folder).

    ``sft`` and ``model_config`` left out take :func:`default_configs`' values. Built on first
    use (tokenizer, model, SFT; 30 to 55 minutes on 2 CPU cores for household's wider build,
    with progress lines to ``log`` when given) and saved under :func:`cache_root`; later calls
    load the folder. The folder name carries a hash of every setting, so passing other configs
    builds (and caches) another policy.

    ``check`` (:class:`empg.models.check.BuildCheck`) plays a new build on tasks outside its
    data and the held-out splits and, when it wins less often than ``check.min_success``,
    builds again with the next SFT seed (up to ``check.attempts`` builds) and keeps the best;
    the results go into the build info's ``check`` entry. ``"auto"`` checks the default
    recipe of an environment that has a measured threshold (:func:`default_check`: household)
    and nothing else; None never checks. A checked folder is not checked again; one cached
    before builds were checked is checked once on its next use and the result recorded (a weak
    one is reported, not rebuilt).
    """
    default_sft, default_arch = default_configs(env)
    sft = sft or default_sft
    tok_cfg = tokenizer_config or TokenizerConfig()
    arch = model_config or default_arch
    check = resolve_check(check, env, sft, tok_cfg, arch)
    final = default_policy_dir(
        env, sft=sft, tokenizer_config=tok_cfg, model_config=arch, cache_dir=cache_dir
    )
    if not (final / BUILD_INFO).is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        _sweep_stale_builds(final)
        tmps: list[Path] = []
        try:
            kept = _build_checked(final, tmps, env, sft, tok_cfg, arch, check, log)
            make_readable(kept)  # mkdtemp's 0700 would hide a shared cache from other users
            fsync_tree(kept)  # after a power loss the cache folder is whole or absent
            try:
                os.rename(kept, final)
            except OSError:
                if not (final / BUILD_INFO).is_file():  # not a racing builder's finished copy
                    _discard_incomplete(final, log)
                    try:
                        os.rename(kept, final)
                    except OSError:
                        if not (final / BUILD_INFO).is_file():  # nor one published meanwhile
                            raise
            fsync_dir(final.parent)
        finally:
            for tmp in tmps:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
    model, tokenizer = load_policy(final)
    if check is not None:
        _check_cached_once(final, model, tokenizer, env, sft, check, log)
    return model, tokenizer, final


def _check_cached_once(
    folder: Path,
    model: Any,
    tokenizer: Any,
    env: str,
    sft: SFTConfig,
    check: BuildCheck,
    log: Callable[[str], None] | None,
) -> None:
    """A cached build made before builds were checked gets the check once (about 2 minutes),
    recorded in its build info like a new build's; a weak one is reported, not rebuilt (the
    folder is the user's: deleting it builds again, with the check's rebuild on failure)."""
    info_path = folder / BUILD_INFO
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError):
        return
    if "check" in info:
        return
    say = log or (lambda _m: None)
    say(f"[empg] this cached build predates the check; playing {check.describe()} once")
    seed = int(info.get("sft", {}).get("seed", sft.seed))
    attempt = _play_check(model, tokenizer, env, sft, check, seed, info.get("sft_final_loss"))
    rate = attempt["success"]
    passed = rate >= check.min_success
    info["check"] = _check_record(check, [attempt], seed, passed)
    info["check"]["checked_after_build"] = True
    try:
        atomic_write_text(info_path, json.dumps(info, indent=2, default=str))
    except OSError as e:  # a read-only (shared) cache: use the build, just do not record
        say(f"[empg] could not record the check in {info_path} ({e}); it will run again")
    say(
        f"[empg] warm start check: {rate:.1%} success; {check.min_success:.0%} needed: "
        + (
            "passed"
            if passed
            else f"too weak (RL is likely to gain little; delete {folder} to build it again)"
        )
    )


#: a build's temporary folder older than this was left by a killed build (a build takes an hour
#: at most), so the next build of the same recipe removes it
STALE_BUILD_SECONDS = 24 * 3600


def _sweep_stale_builds(final: Path) -> None:
    """Remove ``final``'s temporary build folders (``.<name>.*``) that a killed process left."""
    now = time.time()
    for tmp in final.parent.glob(f".{final.name}.*"):
        try:
            old = now - tmp.stat().st_mtime > STALE_BUILD_SECONDS
        except OSError:
            continue
        if old and tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)


def resolve_check(
    check: BuildCheck | str | None,
    env: str,
    sft: SFTConfig,
    tok_cfg: TokenizerConfig,
    arch: TinyModelConfig,
) -> BuildCheck | None:
    """``check`` itself, or for ``"auto"`` :func:`default_check`'s when the recipe is ``env``'s
    default one (another recipe's success level is not calibrated) and None otherwise."""
    if check == "auto":
        default_sft, default_arch = default_configs(env)
        quiet = dataclasses.replace(sft, log_every=default_sft.log_every)  # logging only
        plain = (quiet, arch, tok_cfg) == (default_sft, default_arch, TokenizerConfig())
        return default_check(env, sft.env_kwargs) if plain else None
    if check is not None and not isinstance(check, BuildCheck):
        raise ConfigError(f"check must be a BuildCheck, None or 'auto', got {check!r}")
    return check


def _build_checked(
    final: Path,
    tmps: list[Path],
    env: str,
    sft: SFTConfig,
    tok_cfg: TokenizerConfig,
    arch: TinyModelConfig,
    check: BuildCheck | None,
    log: Callable[[str], None] | None,
) -> Path:
    """Build into temporary folders (appended to ``tmps``) until one passes ``check`` or the
    attempts run out; returns the folder of the build to keep (the first that passed, else the
    one with the highest success; the earlier one on a tie)."""
    say = log or (lambda _m: None)
    attempts: list[dict[str, Any]] = []
    best: tuple[float, Path, int] | None = None  # (success, folder, SFT seed)
    for i in range(check.attempts if check else 1):
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        tmps.append(tmp)
        run = dataclasses.replace(sft, seed=sft.seed + i)
        model, tokenizer, info = build_policy(
            tmp, env, sft=run, tokenizer_config=tok_cfg, model_config=arch, log=log
        )
        if check is None:
            return tmp
        say(f"[empg] warm start check: playing {check.describe()}")
        attempts.append(
            _play_check(model, tokenizer, env, run, check, run.seed, info["sft_final_loss"])
        )
        del model
        rate = attempts[-1]["success"]
        passed = rate >= check.min_success
        say(
            f"[empg] warm start check: {rate:.1%} success on {check.describe()}; "
            f"{check.min_success:.0%} needed: {'passed' if passed else 'too weak'}"
        )
        if best is None or rate > best[0]:
            best = (rate, tmp, run.seed)
        if passed:
            break
        if i + 1 < check.attempts:
            say(
                "[empg] the build is below the check's threshold (docs/models.md); "
                f"building again with SFT seed {run.seed + 1} (another 30 to 55 minutes)"
            )
    assert best is not None and check is not None
    kept_rate, kept, kept_seed = best
    if kept_rate < check.min_success:
        say(
            f"[empg] warning: no build reached {check.min_success:.0%}; keeping the best "
            f"({kept_rate:.1%}); RL is likely to gain little from it"
        )
    info_path = kept / BUILD_INFO
    info = json.loads(info_path.read_text())
    info["check"] = _check_record(check, attempts, kept_seed, kept_rate >= check.min_success)
    atomic_write_text(info_path, json.dumps(info, indent=2, default=str))
    return kept


def _play_check(
    model: Any,
    tokenizer: Any,
    env: str,
    sft: SFTConfig,
    check: BuildCheck,
    seed: int,
    final_loss: float | None,
) -> dict[str, Any]:
    """One build's check, as an ``attempts`` entry of the build info's ``check`` record."""
    t0 = time.perf_counter()
    rate = check_success(model, tokenizer, env, sft.prompt, check, sft.env_kwargs)
    return {
        "sft_seed": seed,
        "success": rate,
        "sft_final_loss": final_loss,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _check_record(
    check: BuildCheck, attempts: list[dict[str, Any]], kept_seed: int, passed: bool
) -> dict[str, Any]:
    """The build info's ``check`` entry (read back by the trainer's log line)."""
    return {**asdict(check), "attempts": attempts, "kept_sft_seed": kept_seed, "passed": passed}
