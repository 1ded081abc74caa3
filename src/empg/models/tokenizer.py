"""The project's own tokenizer: byte-level BPE trained offline on the built-in environments' text.

::

    tok = train_tokenizer()                    # PreTrainedTokenizerFast, about 3,000 tokens
    tok.save_pretrained("my-tokenizer")        # tokenizer.json is byte-identical run to run

The corpus (:func:`corpus_texts`) is what an agent reads and writes: initial and step
observations, tasks, admissible actions, expert thoughts and actions from expert episodes on the
train splits of ``household``, ``shop`` and ``search``, and the user-message text of the prompts
built by :mod:`empg.agent.prompts` (so "Task:", "Current observation:" ... become few tokens).
Byte-level BPE encodes ANY text (every byte has a token); the chat markers and ReAct tags are
special tokens, one id each. The normaliser and pre-tokenizer are Qwen2's (NFC; digits split
one by one), so ``AutoTokenizer`` on a saved model folder gives the same tokenizer: "cabinet 1"
is three tokens ("cabinet", " ", "1") and any number is at most one token per digit.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from empg.agent.prompts import ACTION_HINTS, ANSWER_FORMAT, PromptConfig, Turn, build_messages
from empg.errors import ConfigError

PAD_TOKEN = "<|pad|>"
EOS_TOKEN = "<|endoftext|>"
#: special tokens in id order (pad is id 0, eos id 1); each is always a single token
SPECIAL_TOKENS: tuple[str, ...] = (
    PAD_TOKEN,
    EOS_TOKEN,
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<think>",
    "</think>",
    "<action>",
    "</action>",
)

#: Jinja chat template rendering exactly what ``render_prompt``'s plain template renders
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

CORPUS_ENVS = ("household", "shop", "search")
#: Qwen2's pre-tokenizer split: letters with one leading non-letter, digits one by one, ...
QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class TokenizerConfig:
    """How the tokenizer is trained."""

    vocab_size: int = 3072
    """target vocabulary size, special tokens and the 256 byte tokens included"""
    envs: tuple[str, ...] = CORPUS_ENVS
    """environments whose train-split text makes the corpus"""
    episodes_per_env: int = 300
    """expert episodes per environment (seeds 0..n-1 of the train split)"""
    random_action_prob: float = 0.2
    """share of steps where a random admissible action replaces the expert's (more varied text)"""
    min_frequency: int = 2
    """a pair must occur this often to be merged"""
    horizon: int = 30
    """step cap per corpus episode"""

    def __post_init__(self) -> None:
        if not 300 <= self.vocab_size <= 65536:
            raise ConfigError(
                f"vocab_size must be in [300, 65536] (256 bytes + specials + merges), "
                f"got {self.vocab_size}"
            )
        unknown = sorted(set(self.envs) - set(CORPUS_ENVS))
        if unknown or not self.envs:
            raise ConfigError(
                f"envs must be a non-empty subset of {CORPUS_ENVS}, got {self.envs!r}"
            )
        if self.episodes_per_env < 1 or self.horizon < 1 or self.min_frequency < 1:
            raise ConfigError("episodes_per_env, horizon and min_frequency must be >= 1")
        if not 0.0 <= self.random_action_prob <= 1.0:
            raise ConfigError(
                f"random_action_prob must be in [0, 1], got {self.random_action_prob}"
            )


def _episode_texts(env: Any, env_name: str, seed: int, cfg: TokenizerConfig) -> Iterator[str]:
    """Text of one episode: observations, task, actions, thoughts and compact prompts."""
    rng = random.Random(f"empg.tokenizer/{env_name}/{seed}")
    prompt_cfg = PromptConfig(compact=True, show_admissible=True, history=2)
    obs, info = env.reset(seed=seed)
    yield obs
    yield str(info.get("task", ""))
    history: list[Turn] = []
    for _ in range(cfg.horizon):
        admissible = list(info.get("admissible_actions") or [])
        msgs = build_messages(env_name, info.get("task", ""), obs, history, admissible, prompt_cfg)
        yield msgs[-1]["content"]
        action = env.expert_action()
        yield env.expert_thought()
        yield action
        if admissible and rng.random() < cfg.random_action_prob:
            action = rng.choice(admissible)
        res = env.step(action)
        history.append(Turn(obs, action))
        obs, info = res.observation, res.info
        yield obs
        if res.terminated or res.truncated:
            break


def corpus_texts(cfg: TokenizerConfig | None = None) -> Iterator[str]:
    """The training corpus, in a fixed order (same config -> same texts, in any process)."""
    from empg.envs import make

    cfg = cfg or TokenizerConfig()
    yield from ACTION_HINTS.values()
    yield ANSWER_FORMAT
    for env_name in cfg.envs:
        env = make(env_name, split="train")
        try:
            sys_msg = build_messages(env_name, "t", "o", cfg=PromptConfig())[0]["content"]
            yield sys_msg
            for seed in range(cfg.episodes_per_env):
                yield from _episode_texts(env, env_name, seed, cfg)
        finally:
            env.close()


def train_tokenizer(cfg: TokenizerConfig | None = None, texts: Any = None) -> Any:
    """Train the byte-level BPE tokenizer; returns a ``transformers.PreTrainedTokenizerFast``.

    Args:
        cfg: training settings (default :class:`TokenizerConfig`).
        texts: an iterable of strings to train on instead of :func:`corpus_texts` (tests).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    cfg = cfg or TokenizerConfig()
    tok = Tokenizer(models.BPE())
    # Qwen2's own pipeline, because AutoTokenizer rebuilds exactly this one around the vocabulary
    # and merges for any folder whose config.json says model_type "qwen2": both load paths then
    # tokenize identically. No prefix space, so decode(encode(t)) == NFC(t).
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = corpus_texts(cfg) if texts is None else texts
    tok.train_from_iterator(corpus, trainer=trainer)
    return wrap_tokenizer(tok)


def wrap_tokenizer(tok: Any) -> Any:
    """Wrap a ``tokenizers.Tokenizer`` (with :data:`SPECIAL_TOKENS`) for transformers."""
    from transformers import PreTrainedTokenizerFast

    for s in SPECIAL_TOKENS:
        if tok.token_to_id(s) is None:
            raise ConfigError(f"the tokenizer lacks the special token {s!r}; train it with them")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        additional_special_tokens=list(SPECIAL_TOKENS[2:]),
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=1024,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast
