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

Prefix reuse across calls. A multi-turn agent's prompt at turn t+1 repeats most of turn t's
prompt (the task, the first observation, the earlier actions). Given a :class:`PrefixCache` and
one key per prompt (the episode), :class:`HFBackend` keeps each prompt's KV cache after the call
and, next time the key comes, runs only the tokens after the longest common token prefix with
the stored prompt. The tokens, positions and attention are the same as a full prefill; only the
floating-point order of the matmuls differs (log-probs agree within 1e-5, tested). Memory: one
prompt's KV cache per live key (``2 x layers x kv_heads x head_dim x prompt tokens`` numbers).
"""

from __future__ import annotations

import operator
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from empg.agent.constrain import ActionConstraint, ConstraintState
from empg.algos.entropy import token_logprobs_and_entropy
from empg.algos.restricted import pad_allowed, restricted_logprobs_and_entropy
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
        if self.stop_strings is None:
            raise ConfigError("stop_strings must be a tuple of strings (() for none), got None")
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
        text: the decoded response (without EOS and padding; other special tokens kept).
        allowed: with action-constrained decoding, per token the sorted ids it was sampled
            among (None for a free token); None for an unconstrained call.
    """

    token_ids: torch.Tensor
    logprobs: torch.Tensor
    entropies: torch.Tensor
    finish_reason: str
    text: str = ""
    allowed: list[tuple[int, ...] | None] | None = None

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
    """``(B, V)`` logits -> ``(B,)`` sampled token ids (greedy, temperature, top-p).

    Sampling inverts each row's cumulative distribution at one uniform draw (float64 sums), so
    truncated weights need no renormalising; on CPU it is several times faster than
    ``torch.multinomial`` (7.7x and 9.1x in two runs on a (64, 3072) batch, softmax included;
    docs/benchmarks.md)."""
    if cfg.temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / cfg.temperature, dim=-1)  # (B, V)
    if cfg.top_p < 1:
        sorted_p, order = torch.sort(probs, dim=-1, descending=True)
        before = sorted_p.cumsum(dim=-1) - sorted_p  # mass strictly ahead of each token
        sorted_p = sorted_p.masked_fill(before >= cfg.top_p, 0.0)  # the top token always stays
        return order.gather(-1, _inverse_cdf(sorted_p, generator).unsqueeze(-1)).squeeze(-1)
    return _inverse_cdf(probs, generator)


def _inverse_cdf(weights: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """``(B, V)`` non-negative weights (each row with a positive entry) -> ``(B,)`` indices drawn
    with probability proportional to the weights: the first index whose cumulative weight
    exceeds ``u * total``, ``u ~ U[0, 1)``. Zero-weight indices are never drawn (their
    cumulative weight equals their predecessor's; a draw rounded up to the total is clamped to
    the row's last positive index)."""
    cum = weights.cumsum(dim=-1, dtype=torch.float64)
    # draw on the generator's device (the trainer's generators live on the CPU) and move the
    # draws: the same numbers whether the model runs on the CPU or a GPU
    where = generator.device if generator is not None else weights.device
    u = torch.rand((weights.shape[0], 1), generator=generator, dtype=torch.float64, device=where)
    u = u.to(weights.device)
    idx = torch.searchsorted(cum, u * cum[:, -1:], right=True).squeeze(-1)
    last = weights.shape[-1] - 1 - (weights.flip(-1) > 0).to(torch.int8).argmax(dim=-1)
    return torch.minimum(idx, last)


def _mask_actions(
    logits: torch.Tensor,
    rows: list[int],
    states: list[ConstraintState | None],
    constraint: ActionConstraint,
) -> tuple[torch.Tensor, list[list[int] | None]]:
    """``logits`` with every token outside its row's allowed set at -inf (rows without a
    constraint at this step unchanged; the input itself when no row is masked), and each running
    row's allowed ids (None where the step is free)."""
    masked_rows: list[int] = []
    cols: list[int] = []
    counts: list[int] = []
    per_row: list[list[int] | None] = []
    for r, i in enumerate(rows):
        st = states[i]
        ids = None if st is None else st.allowed(constraint)
        per_row.append(ids)
        if ids is not None:
            masked_rows.append(r)
            cols.extend(ids)
            counts.append(len(ids))
    if not masked_rows:
        return logits, per_row
    dev = logits.device
    sel = torch.tensor(masked_rows, dtype=torch.long, device=dev)
    keep = torch.zeros((len(masked_rows), logits.shape[-1]), dtype=torch.bool, device=dev)
    at = torch.repeat_interleave(
        torch.arange(len(masked_rows), device=dev), torch.tensor(counts, device=dev)
    )
    keep[at, torch.tensor(cols, dtype=torch.long, device=dev)] = True
    out = logits.clone()
    out[sel] = out[sel].masked_fill(~keep, float("-inf"))
    return out, per_row


def _restricted_scores(
    logits: torch.Tensor,
    nxt: torch.Tensor,
    per_row: list[list[int] | None],
    temperature: float,
    lp: torch.Tensor,
    ent: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lp, ent)`` with the masked rows' values replaced by those of the restricted
    distribution (:func:`empg.algos.restricted_logprobs_and_entropy`)."""
    rows = [r for r, ids in enumerate(per_row) if ids is not None]
    if not rows:
        return lp, ent
    drawn = nxt.tolist()  # one device sync, not one per row
    sets = pad_allowed([per_row[r] for r in rows], [drawn[r] for r in rows])
    sel = torch.tensor(rows, dtype=torch.long, device=logits.device)
    sub = logits[sel].gather(1, sets.ids.to(logits.device))
    r_lp, r_ent = restricted_logprobs_and_entropy(
        sub, sets.valid, sets.label_index, temperature=temperature
    )
    lp, ent = lp.clone(), ent.clone()
    lp[sel], ent[sel] = r_lp.to(lp.dtype), r_ent.to(ent.dtype)
    return lp, ent


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


class PrefixCache:
    """Per-key KV caches of earlier prompts (see the module docstring); one key per episode.

    ``reused_tokens`` / ``computed_tokens`` count the prompt tokens taken from the cache and
    run through the model since the last :meth:`clear`. The stored keys and values belong to
    the weights that computed them: clear the cache after a weight update (rollouts build a
    fresh one per call).
    """

    def __init__(self) -> None:
        self._store: dict[Hashable, tuple[list[int], list[tuple[torch.Tensor, torch.Tensor]]]] = {}
        self.reused_tokens = 0
        self.computed_tokens = 0

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        """Forget every stored prompt (and reset the counters)."""
        self._store.clear()
        self.reused_tokens = self.computed_tokens = 0

    def drop(self, key: Hashable) -> None:
        """Forget one key (e.g. a finished episode)."""
        self._store.pop(key, None)

    def match(self, key: Hashable, ids: list[int]) -> int:
        """Length of the reusable prefix of ``ids`` for ``key``: the longest common prefix with
        the stored prompt, at most ``len(ids) - 1`` (the last token must run to give logits)."""
        entry = self._store.get(key)
        if entry is None:
            return 0
        old = entry[0]
        n = min(len(old), len(ids) - 1)
        i = 0
        while i < n and old[i] == ids[i]:
            i += 1
        return i

    def kv(self, key: Hashable, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer ``(keys, values)``, ``(H, length, D)``, of the first ``length`` tokens."""
        return [(k[:, :length], v[:, :length]) for k, v in self._store[key][1]]

    def put(self, key: Hashable, ids: list[int], kv: list[tuple[torch.Tensor, torch.Tensor]]):
        self._store[key] = (list(ids), kv)


def _reserve_room(cache: Any, tokens: int) -> None:
    """Room in the prefilled cache for up to 128 more tokens (it grows past that if needed);
    nothing on a transformers without cache layers (before 4.54)."""
    try:
        from empg.agent.kv_room import reserve_kv_room
    except ImportError:  # pragma: no cover - older transformers
        return
    reserve_kv_room(cache, min(tokens, 128))


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

    #: ``generate`` takes ``prefix_cache=`` and ``keys=`` (rollouts use them when present)
    supports_prefix_cache = True
    #: ``generate`` takes ``actions=`` (action-constrained decoding, :mod:`empg.agent.constrain`)
    supports_action_constraint = True

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
        #: prefix reuse needs plain (non-sliding) dynamic KV-cache layers; checked on first use
        self._prefix_supported = True
        #: decode into KV caches with room reserved for the response (empg.agent.kv_room);
        #: False appends with transformers' torch.cat (the same numbers, slower)
        self.reserve_kv = True
        self._constraint: ActionConstraint | None = None

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

    def _action_constraint(self, vocab_size: int) -> ActionConstraint:
        """The token-text table of this tokenizer (built once, on first constrained call)."""
        if self._constraint is None or self._constraint.vocab_size != vocab_size:
            skip = self.eos_ids | {self._pad}
            self._constraint = ActionConstraint.from_tokenizer(
                self.tokenizer, vocab_size, skip_ids=sorted(skip)
            )
        return self._constraint

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
        prefix_cache: PrefixCache | None = None,
        keys: Sequence[Hashable] | None = None,
        actions: Sequence[Sequence[str] | None] | None = None,
        restricted_logprobs: bool = False,
    ) -> list[Generation]:
        """Sample one response per prompt.

        Args:
            prompts: ``B`` lists of token ids (each non-empty).
            cfg: sampling settings.
            generator: sampling RNG (CPU ``torch.Generator`` on the model's device); None: one
                seeded with ``cfg.seed`` (or unseeded when that is None).
            prefix_cache: reuse the KV cache of each key's previous prompt and store this
                one's (None: every prompt runs in full, nothing is kept).
            keys: ``B`` distinct keys (e.g. episode ids), required with ``prefix_cache``.
            actions: per prompt, the actions its ``<action>`` block may spell (None for a
                prompt, or for all: unconstrained); see :mod:`empg.agent.constrain`. The
                recorded log-probs and entropies are the model's, before the mask, unless
                ``restricted_logprobs``.
            restricted_logprobs: record the log-prob and entropy of a masked token under the
                distribution it was sampled from (the model's, renormalised over the allowed
                ids; :mod:`empg.algos.restricted`), the policy that constrained decoding runs.

        Returns:
            ``B`` :class:`Generation` objects, in prompt order.
        """
        if not isinstance(cfg, GenerationConfig):
            raise InputError(f"cfg must be a GenerationConfig, got {type(cfg).__name__}")
        prompts = list(prompts)
        if any(isinstance(p, str) for p in prompts):
            raise InputError("prompts are lists of token ids; encode text first (backend.encode)")
        try:
            prompts = [[operator.index(t) for t in p] for p in prompts]
        except TypeError as e:
            raise InputError(f"prompts must hold integer token ids ({e})") from None
        if any(len(p) == 0 for p in prompts):
            raise InputError("every prompt needs at least one token, got an empty prompt")
        if not prompts:
            return []
        vocab = self.model.get_input_embeddings().weight.shape[0]
        for i, p in enumerate(prompts):
            if min(p) < 0 or max(p) >= vocab:
                bad = [t for t in p if not 0 <= t < vocab]
                raise InputError(
                    f"prompt {i} holds ids outside the model's vocabulary of {vocab}: {bad[:5]}"
                )
        if prefix_cache is not None:
            if keys is None or len(keys) != len(prompts):
                raise InputError("prefix_cache needs one key per prompt (keys=)")
            if len(set(keys)) != len(keys):
                raise InputError("keys must be distinct within one call")
        states = None
        if actions is not None:
            if len(actions) != len(prompts):
                raise InputError(f"actions has {len(actions)} entries for {len(prompts)} prompts")
            for a in actions:
                if a is not None and (isinstance(a, str) or not all(isinstance(x, str) for x in a)):
                    raise InputError("each entry of actions must be a list of strings or None")
            states = [None if a is None else ConstraintState(a) for a in actions]
            if all(s is None for s in states):
                states = None
        device = self._device()
        if generator is None:
            generator = torch.Generator(device=device)
            if cfg.seed is None:
                generator.seed()
            else:
                generator.manual_seed(cfg.seed)
        with torch.inference_mode():
            return self._generate(
                prompts, cfg, generator, device, prefix_cache, keys, states, restricted_logprobs
            )

    def _prefill(self, prompts, reuse, device, prefix_cache, keys):
        """Run the prompts (after the first ``reuse[i]`` tokens, taken from ``prefix_cache``).

        Row ``i`` of the returned mask is ``[0.. | 1 x reuse[i] | 0.. | 1 x rest]``: the reused
        prefix right-aligned in a block of width ``max(reuse)``, then the remaining prompt
        tokens right-aligned; position ids count real tokens only, so they equal a full
        prefill's."""
        b = len(prompts)
        pw = max(reuse)
        rest = [len(p) - r for p, r in zip(prompts, reuse, strict=True)]
        sw = max(rest)
        ids = torch.full((b, sw), self._pad, dtype=torch.long)
        mask = torch.zeros((b, pw + sw), dtype=torch.long)
        for i, p in enumerate(prompts):  # left padding within each block
            ids[i, sw - rest[i] :] = torch.tensor(p[reuse[i] :], dtype=torch.long)
            mask[i, pw - reuse[i] : pw] = 1
            mask[i, pw + sw - rest[i] :] = 1
        ids, mask = ids.to(device), mask.to(device)
        pos = ((mask.cumsum(-1) - 1).clamp_min(0))[:, pw:]  # positions over real tokens only
        past = None
        if pw:
            pairs = zip(keys, reuse, strict=True)
            per_row = [prefix_cache.kv(k, r) if r else None for k, r in pairs]
            ref = next(x for x in per_row if x is not None)
            layers = []
            for li, (k0, v0) in enumerate(ref):
                kk = k0.new_zeros((b, k0.shape[0], pw, k0.shape[2]))
                vv = v0.new_zeros((b, v0.shape[0], pw, v0.shape[2]))
                for i, x in enumerate(per_row):
                    if x is not None:
                        kk[i, :, pw - reuse[i] :] = x[li][0]
                        vv[i, :, pw - reuse[i] :] = x[li][1]
                layers.append((kk, vv))
            from transformers import DynamicCache

            past = DynamicCache(ddp_cache_data=layers)
        if prefix_cache is not None:
            prefix_cache.reused_tokens += sum(reuse)
            prefix_cache.computed_tokens += sum(rest)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            past_key_values=past,
            use_cache=True,
            logits_to_keep=1,
        )
        return out, mask

    def _store_prompts(self, prompts, keys, cache, mask, prefix_cache) -> None:
        layers = getattr(cache, "layers", None)
        try:
            from transformers.cache_utils import DynamicLayer
        except ImportError:  # pragma: no cover - older transformers
            DynamicLayer = None
        if not layers or DynamicLayer is None or any(type(x) is not DynamicLayer for x in layers):
            self._prefix_supported = False  # e.g. sliding-window layers: run prompts in full
            return
        for i, (key, p) in enumerate(zip(keys, prompts, strict=True)):
            cols = mask[i].nonzero().squeeze(-1)
            if cols.numel() != len(p):  # pragma: no cover - defensive
                raise RuntimeError("prefix cache: prompt columns do not match the prompt")
            prefix_cache.put(key, p, [(x.keys[i][:, cols], x.values[i][:, cols]) for x in layers])

    def _generate(
        self,
        prompts: list[list[int]],
        cfg: GenerationConfig,
        generator: torch.Generator,
        device: torch.device,
        prefix_cache: PrefixCache | None = None,
        keys: Sequence[Hashable] | None = None,
        states: list[ConstraintState | None] | None = None,
        restricted: bool = False,
    ) -> list[Generation]:
        b = len(prompts)
        reuse = [0] * b
        if prefix_cache is not None and keys is not None and self._prefix_supported:
            reuse = [prefix_cache.match(k, p) for k, p in zip(keys, prompts, strict=True)]
        out, mask = self._prefill(prompts, reuse, device, prefix_cache, keys)
        cache = out.past_key_values
        if prefix_cache is not None and keys is not None:
            self._store_prompts(prompts, keys, cache, mask, prefix_cache)
        if self.reserve_kv and cfg.max_new_tokens > 1:
            _reserve_room(cache, cfg.max_new_tokens - 1)
        logits = out.logits[:, -1, :]  # (B, V)
        next_pos = mask.sum(-1)  # (B,) position of each row's next token
        temp = cfg.temperature if cfg.temperature > 0 else 1.0

        rows = list(range(b))  # running row -> prompt index
        toks: list[list[int]] = [[] for _ in range(b)]
        lps: list[list[float]] = [[] for _ in range(b)]
        ents: list[list[float]] = [[] for _ in range(b)]
        sets: list[list[tuple[int, ...] | None]] = [[] for _ in range(b)]
        reasons = ["length"] * b
        constraint = None if states is None else self._action_constraint(logits.shape[-1])
        for step in range(cfg.max_new_tokens):
            per_row: list[list[int] | None] = [None] * len(rows)
            masked = logits
            if states is not None:
                masked, per_row = _mask_actions(logits, rows, states, constraint)
            nxt = sample_next(masked, cfg, generator)  # (b_live,)
            lp, ent = token_logprobs_and_entropy(logits, nxt, temperature=temp)
            if restricted:
                lp, ent = _restricted_scores(logits, nxt, per_row, temp, lp, ent)
            nxt_l, lp_l, ent_l = nxt.tolist(), lp.tolist(), ent.tolist()  # float32 -> exact
            keep: list[int] = []
            for r, i in enumerate(rows):
                if states is not None and states[i] is not None:
                    states[i].advance(constraint, constraint.token_texts[nxt_l[r]])
                toks[i].append(nxt_l[r])
                sets[i].append(None if per_row[r] is None else tuple(per_row[r]))
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
                    allowed=None if states is None else sets[i],
                )
            )
        return results
