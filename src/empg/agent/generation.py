"""Generation backends: sample a batch of responses and record each token's log-prob and entropy.

::

    backend = HFBackend(model, tokenizer)
    outs = backend.generate([ids_a, ids_b], GenerationConfig(max_new_tokens=64, seed=0))
    outs[0].token_ids, outs[0].logprobs, outs[0].entropies, outs[0].finish_reason

What is recorded. For every generated token ``y_t``: ``logprob = log p(y_t)`` and
``entropy = H(p)`` (nats) of ``p = softmax(logits_t / temperature)``, the sampling distribution
BEFORE top-p truncation (so the numbers equal a later training-time forward pass at the same
temperature, which never sees the truncation). They are computed by
:func:`empg.token_logprobs_and_entropy`, the core's own function, in float32. ``temperature == 0``
means greedy decoding; the recorded numbers are then those of ``softmax(logits)`` (temperature 1).

How :class:`HFBackend` decodes. Prompts are left-padded into one batch (attention mask + position
ids counted over real tokens only, so a prompt's tokens get the same positions as when it runs
alone), the prompt is run once, and each further token reuses the KV cache. A row stops on EOS
(finish ``"eos"``, the EOS token is kept), when the decoded tail of its continuation contains a
stop string (``"stop"``, the token that completed it is kept) or at ``max_new_tokens``
(``"length"``). Finished rows leave the running batch at once, KV-cache rows included, so they
cost no more compute. Sampling draws come from one ``torch.Generator``: the same seed and the
same prompts give the same tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from empg.algos.entropy import token_logprobs_and_entropy
from empg.errors import ConfigError, InputError

FINISH_REASONS = ("stop", "eos", "length")


@dataclass(frozen=True)
class GenerationConfig:
    """How responses are sampled."""

    max_new_tokens: int = 512
    """at most this many tokens are generated per response (finish reason ``"length"``)"""
    temperature: float = 1.0
    """sampling temperature; 0 means greedy (log-probs and entropies then at temperature 1)"""
    top_p: float = 1.0
    """nucleus sampling: sample among the most likely tokens whose mass reaches top_p (0, 1]"""
    stop_strings: tuple[str, ...] = ("</action>",)
    """a response ends once its decoded text contains one of these (finish reason ``"stop"``)"""
    seed: int | None = None
    """seed of the sampling generator when none is passed to ``generate`` (None: random)"""

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int):
            raise ConfigError(f"max_new_tokens must be an int >= 1, got {self.max_new_tokens!r}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not isinstance(self.temperature, (int, float)) or not self.temperature >= 0:
            raise ConfigError(
                f"temperature must be a number >= 0 (0 = greedy), got {self.temperature!r}"
            )
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must lie in (0, 1], got {self.top_p!r}")
        if isinstance(self.stop_strings, str):
            raise ConfigError(
                f"stop_strings must be a tuple of strings, got the string {self.stop_strings!r}; "
                f"write ({self.stop_strings!r},)"
            )
        stops = tuple(self.stop_strings)
        if not all(isinstance(s, str) and s for s in stops):
            raise ConfigError(f"stop_strings must be non-empty strings, got {stops!r}")
        object.__setattr__(self, "stop_strings", stops)
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0
        ):
            raise ConfigError(f"seed must be an int >= 0 or None, got {self.seed!r}")


@dataclass
class Generation:
    """One generated response.

    Attributes:
        token_ids: ``(T,)`` long, the generated tokens (EOS / stop-completing token included).
        logprobs: ``(T,)`` float32, log-prob of each token under ``softmax(logits / temp)``.
        entropies: ``(T,)`` float32, entropy (nats) of that distribution.
        finish_reason: ``"stop"``, ``"eos"`` or ``"length"``.
        text: the decoded response (special tokens skipped).
    """

    token_ids: torch.Tensor
    logprobs: torch.Tensor
    entropies: torch.Tensor
    finish_reason: str
    text: str = ""

    def __len__(self) -> int:
        return int(self.token_ids.numel())


@runtime_checkable
class GenerationBackend(Protocol):
    """What rollouts need from a generator: text <-> ids and batched sampling."""

    tokenizer: Any
    """the tokenizer (its chat template, if any, renders prompts)"""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    @property
    def pad_token_id(self) -> int: ...

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        cfg: GenerationConfig,
        *,
        generator: torch.Generator | None = None,
    ) -> list[Generation]: ...


def sample_next(
    logits: torch.Tensor, cfg: GenerationConfig, generator: torch.Generator | None
) -> torch.Tensor:
    """``(B, V)`` logits -> ``(B,)`` sampled token ids (greedy, temperature, top-p)."""
    if cfg.temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / cfg.temperature, dim=-1)  # (B, V)
    if cfg.top_p < 1:
        sorted_p, order = torch.sort(probs, dim=-1, descending=True)
        before = sorted_p.cumsum(dim=-1) - sorted_p  # mass strictly ahead of each token
        sorted_p = sorted_p.masked_fill(before >= cfg.top_p, 0.0)  # the top token always stays
        pick = torch.multinomial(sorted_p, 1, generator=generator)  # (B, 1), renormalises
        return order.gather(-1, pick).squeeze(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for src in (
        getattr(tokenizer, "eos_token_id", None),
        getattr(getattr(model, "generation_config", None), "eos_token_id", None),
    ):
        if src is None:
            continue
        ids.update([src] if isinstance(src, int) else [int(x) for x in src])
    return ids


class HFBackend:
    """Batched KV-cache sampling for any Hugging Face causal LM (see the module docstring).

    Args:
        model: a ``transformers`` causal LM (``model(input_ids, attention_mask=, position_ids=,
            past_key_values=, use_cache=True)`` returning ``.logits`` and ``.past_key_values``).
        tokenizer: its tokenizer (``encode``/``decode``; ``eos_token_id``; ``pad_token_id`` or,
            lacking one, EOS is used for padding).
        stop_window: extra tokens decoded beyond the longest stop string's length when checking
            the tail of a continuation (a token decodes to at least one character unless it is
            special, so ``len(stop) + stop_window`` tail tokens always cover a stop string).
    """

    def __init__(self, model: Any, tokenizer: Any, *, stop_window: int = 4) -> None:
        if not callable(model):
            raise InputError(f"model must be a callable HF causal LM, got {type(model).__name__}")
        for attr in ("encode", "decode"):
            if not callable(getattr(tokenizer, attr, None)):
                raise InputError(f"tokenizer must have a callable .{attr}()")
        self.model = model
        self.tokenizer = tokenizer
        self.eos_ids = _eos_ids(model, tokenizer)
        pad = getattr(tokenizer, "pad_token_id", None)
        if pad is None:
            if not self.eos_ids:
                raise InputError("tokenizer has neither pad_token_id nor eos_token_id; set one")
            pad = min(self.eos_ids)
        self._pad = int(pad)
        self.stop_window = int(stop_window)

    @property
    def pad_token_id(self) -> int:
        return self._pad

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` with no special tokens added."""
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` without EOS and padding. Other special tokens are KEPT: a tokenizer
        may register the ReAct tags (``<think>``, ``<action>``) as special tokens, and parsing
        and stop strings need them."""
        drop = self.eos_ids | {self._pad}
        return self.tokenizer.decode([i for i in ids if i not in drop], skip_special_tokens=False)

    def _device(self) -> torch.device:
        try:
            return next(self.model.parameters()).device
        except (AttributeError, StopIteration):
            return torch.device("cpu")

    def _hit_stop(self, ids: list[int], stops: tuple[str, ...]) -> bool:
        window = max(len(s) for s in stops) + self.stop_window
        tail = self.decode(ids[-window:])
        return any(s in tail for s in stops)

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        cfg: GenerationConfig,
        *,
        generator: torch.Generator | None = None,
    ) -> list[Generation]:
        """Sample one response per prompt.

        Args:
            prompts: ``B`` lists of token ids (each non-empty).
            cfg: sampling settings.
            generator: sampling RNG (CPU ``torch.Generator`` on the model's device); None: one
                seeded with ``cfg.seed`` (or unseeded when that is None).

        Returns:
            ``B`` :class:`Generation` objects, in prompt order.
        """
        if not isinstance(cfg, GenerationConfig):
            raise InputError(f"cfg must be a GenerationConfig, got {type(cfg).__name__}")
        prompts = [list(p) for p in prompts]
        if any(len(p) == 0 for p in prompts):
            raise InputError("every prompt needs at least one token, got an empty prompt")
        if not prompts:
            return []
        device = self._device()
        if generator is None:
            generator = torch.Generator(device=device)
            if cfg.seed is None:
                generator.seed()
            else:
                generator.manual_seed(cfg.seed)
        with torch.inference_mode():
            return self._generate(prompts, cfg, generator, device)

    def _generate(
        self,
        prompts: list[list[int]],
        cfg: GenerationConfig,
        generator: torch.Generator,
        device: torch.device,
    ) -> list[Generation]:
        b = len(prompts)
        width = max(len(p) for p in prompts)
        ids = torch.full((b, width), self._pad, dtype=torch.long)
        mask = torch.zeros((b, width), dtype=torch.long)
        for i, p in enumerate(prompts):  # left padding
            ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        pos = (mask.cumsum(-1) - 1).clamp_min(0)  # (B, W) positions over real tokens only
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1
        )
        cache = out.past_key_values
        logits = out.logits[:, -1, :]  # (B, V)
        next_pos = mask.sum(-1)  # (B,) position of each row's next token
        temp = cfg.temperature if cfg.temperature > 0 else 1.0

        rows = list(range(b))  # running row -> prompt index
        toks: list[list[int]] = [[] for _ in range(b)]
        lps: list[list[float]] = [[] for _ in range(b)]
        ents: list[list[float]] = [[] for _ in range(b)]
        reasons = ["length"] * b
        for step in range(cfg.max_new_tokens):
            nxt = sample_next(logits, cfg, generator)  # (b_live,)
            lp, ent = token_logprobs_and_entropy(logits, nxt, temperature=temp)
            nxt_l, lp_l, ent_l = nxt.tolist(), lp.tolist(), ent.tolist()  # float32 -> exact
            keep: list[int] = []
            for r, i in enumerate(rows):
                toks[i].append(nxt_l[r])
                lps[i].append(lp_l[r])
                ents[i].append(ent_l[r])
                if nxt_l[r] in self.eos_ids:
                    reasons[i] = "eos"
                elif cfg.stop_strings and self._hit_stop(toks[i], cfg.stop_strings):
                    reasons[i] = "stop"
                else:
                    keep.append(r)
            if not keep or step + 1 == cfg.max_new_tokens:
                break
            if len(keep) < len(rows):  # drop finished rows from the batch and the KV cache
                sel = torch.tensor(keep, dtype=torch.long, device=device)
                cache.batch_select_indices(sel)
                mask, next_pos, nxt = mask[sel], next_pos[sel], nxt[sel]
                rows = [rows[r] for r in keep]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            out = self.model(
                input_ids=nxt.unsqueeze(1),
                attention_mask=mask,
                position_ids=next_pos.unsqueeze(1),
                past_key_values=cache,
                use_cache=True,
            )
            cache = out.past_key_values
            logits = out.logits[:, -1, :]
            next_pos = next_pos + 1
        results = []
        for i in range(b):
            results.append(
                Generation(
                    token_ids=torch.tensor(toks[i], dtype=torch.long),
                    logprobs=torch.tensor(lps[i], dtype=torch.float32),
                    entropies=torch.tensor(ents[i], dtype=torch.float32),
                    finish_reason=reasons[i],
                    text=self.decode(toks[i]),
                )
            )
        return results
