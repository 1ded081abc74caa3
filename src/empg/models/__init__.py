"""Models that exist offline: the project's tokenizer, a tiny Qwen2 policy and its warm start.

``import empg.models`` stays light: transformers and tokenizers load on first use of a function.

* :func:`train_tokenizer` - byte-level BPE over the environments' text (tokenizer.py)
* :func:`build_tiny_model` - a tiny ``Qwen2ForCausalLM`` (1.4M parameters by default; tiny.py)
* :func:`train_sft` / :class:`SFTConfig` - supervised warm start on expert steps (sft.py)
* :func:`evaluate_policy` / :class:`EvalConfig` - a plain batched episode loop (evaluate.py)
* :func:`default_policy` / :func:`load_policy` - build once, cache, load (default.py);
  :func:`default_configs` - its recipe per environment (4.7M parameters on household);
  :func:`default_policy_dir` - the cache folder a recipe loads from (nothing built)
* :class:`BuildCheck` / :func:`default_check` - the check a new build must pass (check.py)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TokenizerConfig": "tokenizer",
    "train_tokenizer": "tokenizer",
    "corpus_texts": "tokenizer",
    "SPECIAL_TOKENS": "tokenizer",
    "TinyModelConfig": "tiny",
    "build_tiny_model": "tiny",
    "count_parameters": "tiny",
    "SFTConfig": "sft",
    "SFTStats": "sft",
    "expert_examples": "sft",
    "train_sft": "sft",
    "default_prompt_config": "sft",
    "EvalConfig": "evaluate",
    "EvalResult": "evaluate",
    "evaluate_policy": "evaluate",
    "expert_action_accuracy": "evaluate",
    "generate_responses": "evaluate",
    "BuildCheck": "check",
    "check_success": "check",
    "default_check": "check",
    "build_policy": "default",
    "cache_root": "default",
    "default_configs": "default",
    "default_policy": "default",
    "default_policy_dir": "default",
    "load_policy": "default",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"empg.models.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'empg.models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
