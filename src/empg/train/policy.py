"""Policy forward passes over (prompt + response) step rows, through the core's memory-bounded
LM-head function: log-probs and entropies of the response tokens only.

Rows are right-padded ``[prompt, response, pad...]``; the hidden state at position ``t``
predicts token ``t + 1``, so response token ``j`` of a row with prompt length ``P`` is scored
from position ``P + j - 1``. Only those positions go through the LM head (``logits_to_keep``
in spirit): the (tokens x vocab) logits of the prompt are never formed.

Shared prefixes: step rows of one task share a long prompt prefix (household: the task and the
room overview, the same for every step after the first and for every episode of the group).
:func:`micro_batches` puts rows with long common prefixes into the same micro-batch, and
``pack_rows(..., share_prefix=True)`` splits off the micro-batch's longest common prompt
prefix: the model runs it once, and every row attends to its keys and values (expanded, not
copied; gradients flow back through them), so each prefix token costs one forward instead of one
per row. The logits are the same function of the same inputs (tested against the unshared rows,
forward and backward); only the floating-point order of the matmuls differs.

Tokens sampled by action-constrained decoding can carry their allowed ids (``allowed``); they
are then scored under the restricted distribution they were sampled from
(:func:`empg.algos.restricted_logprobs_and_entropy`), from the logits of those ids only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from empg.algos.entropy import lm_head_logprobs_and_entropy, token_logprobs_and_entropy
from empg.algos.restricted import AllowedSets, pad_allowed, restricted_logprobs_and_entropy

#: per row, per response token: the ids it was sampled among, or None (a free token)
RowAllowed = Sequence[tuple[int, ...] | None] | None


@dataclass
class PackedRows:
    """A micro-batch of step rows ready for the model.

    Attributes:
        input_ids: ``(B, L)`` long, right-padded prompt + response (after ``prefix_ids``).
        attention_mask: ``(B, L)`` long.
        score_pos: ``(T,)`` flat positions (``b * L + t``) whose hidden state scores a response
            token; ``labels`` ``(T,)`` are those tokens.
        prefix_ids: ``(P,)`` the prompt prefix every row shares (run once), or None.
        resp_index: ``(T,)`` flat index into the ``(B, R)`` response layout.
        resp_shape: ``(B, R)``.
        restricted_at: ``(C,)`` indices into the ``T`` scored tokens that are scored under a
            restricted distribution, or None.
        restricted: their allowed sets (``C`` rows), or None.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    score_pos: torch.Tensor
    labels: torch.Tensor
    resp_index: torch.Tensor
    resp_shape: tuple[int, int]
    restricted_at: torch.Tensor | None = None
    restricted: AllowedSets | None = None
    prefix_ids: torch.Tensor | None = None


#: a shared prefix shorter than this is not split off (the extra forward would not pay)
MIN_SHARED_PREFIX = 16
#: what one more micro-batch costs in :func:`micro_batches`' plan, in tokens run
MICRO_BATCH_OVERHEAD = 128


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def micro_batches(
    rows: Sequence[int],
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    size: int,
    share_prefix: bool = False,
) -> list[list[int]]:
    """Split the row indices ``rows`` into micro-batches of at most ``size`` rows.

    Without ``share_prefix``: rows sorted by length, so little compute goes to padding. With it:
    rows sorted by prompt tokens (one task's steps become neighbours, and a contiguous run of
    rows shares the smallest common prefix of its neighbours), then cut into contiguous runs
    that minimise the tokens the model runs (each run's shared prefix once, plus every row's
    rest padded to the run's longest, plus :data:`MICRO_BATCH_OVERHEAD` per run), by dynamic
    programming over the cut points. Which rows share a micro-batch does not change the result:
    callers weight each micro-batch's loss.
    """
    if size < 1:
        raise ValueError(f"micro-batch size must be >= 1, got {size}")
    if not share_prefix:
        order = sorted(rows, key=lambda i: len(prompts[i]) + len(responses[i]))
        return [order[a : a + size] for a in range(0, len(order), size)]
    order = sorted(rows, key=lambda i: (tuple(prompts[i]), len(responses[i]), i))
    n = len(order)
    plen = [len(prompts[i]) for i in order]
    total = [len(prompts[i]) + len(responses[i]) for i in order]
    # neighbour[k]: common prefix of sorted rows k-1 and k
    neighbour = [0] + [
        common_prefix_len(prompts[order[k - 1]], prompts[order[k]]) for k in range(1, n)
    ]
    best = [0.0] + [math.inf] * n
    cut = [0] * (n + 1)
    for b in range(1, n + 1):
        run_lcp = math.inf
        run_min = math.inf
        run_max = 0
        for a in range(b - 1, max(-1, b - size - 1), -1):  # the run order[a:b]
            run_min = min(run_min, plen[a])
            run_max = max(run_max, total[a])
            if a < b - 1:
                run_lcp = min(run_lcp, neighbour[a + 1])
            shared = 0 if a == b - 1 else int(min(run_lcp, run_min - 1))
            if shared < MIN_SHARED_PREFIX:
                shared = 0
            cost = best[a] + MICRO_BATCH_OVERHEAD + shared + (b - a) * (run_max - shared)
            if cost < best[b]:
                best[b], cut[b] = cost, a
    out: list[list[int]] = []
    b = n
    while b > 0:
        out.append(order[cut[b] : b])
        b = cut[b]
    return out[::-1]


def pack_rows(
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    pad_id: int,
    device: torch.device | str = "cpu",
    allowed: Sequence[RowAllowed] | None = None,
    share_prefix: bool = False,
) -> PackedRows:
    """Right-pad ``prompt + response`` rows; index the positions that score response tokens.

    ``allowed`` (optional, one entry per row, each None or one entry per response token) gives
    the tokens to score under a restricted distribution (see the module docstring).
    ``share_prefix``: split off the rows' longest common prompt prefix (at most every prompt's
    length less one, so each row's first response token is still scored from its own
    positions) when it has at least :data:`MIN_SHARED_PREFIX` tokens and there are two rows or
    more; ``input_ids`` then hold the rest of each row."""
    b = len(prompts)
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"row {i} has an empty prompt; a response needs a context to score")
    shared = 0
    if share_prefix and b > 1:
        shared = min(len(p) for p in prompts) - 1
        for p in prompts[1:]:
            shared = min(shared, common_prefix_len(prompts[0], p))
        if shared < MIN_SHARED_PREFIX:
            shared = 0
    prefix = list(prompts[0][:shared]) if shared else None
    prompts = [p[shared:] for p in prompts] if shared else prompts
    lengths = [len(p) + len(r) for p, r in zip(prompts, responses, strict=True)]
    width = max(lengths)
    r_width = max(1, max(len(r) for r in responses))
    ids = torch.full((b, width), pad_id, dtype=torch.long)
    mask = torch.zeros((b, width), dtype=torch.long)
    pos, labels, resp_idx = [], [], []
    if allowed is not None and len(allowed) != b:
        raise ValueError(f"allowed has {len(allowed)} rows for {b} prompts")
    r_at: list[int] = []
    r_sets: list[tuple[int, ...]] = []
    r_labels: list[int] = []
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        row_allowed = None if allowed is None else allowed[i]
        if row_allowed is not None and len(row_allowed) != len(r):
            raise ValueError(f"row {i}: {len(row_allowed)} allowed entries for {len(r)} tokens")
        seq = list(p) + list(r)
        ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[i, : len(seq)] = 1
        for j in range(len(r)):
            if row_allowed is not None and row_allowed[j] is not None:
                r_at.append(len(pos))
                r_sets.append(row_allowed[j])
                r_labels.append(r[j])
            pos.append(i * width + len(p) + j - 1)
            labels.append(r[j])
            resp_idx.append(i * r_width + j)
    as_long = lambda x: torch.tensor(x, dtype=torch.long, device=device)
    restricted = None
    if r_at:
        sets = pad_allowed(r_sets, r_labels)
        restricted = AllowedSets(
            sets.ids.to(device), sets.valid.to(device), sets.label_index.to(device)
        )
    return PackedRows(
        ids.to(device),
        mask.to(device),
        as_long(pos),
        as_long(labels),
        as_long(resp_idx),
        (b, r_width),
        as_long(r_at) if r_at else None,
        restricted,
        None if prefix is None else as_long(prefix),
    )


def _lm_head(model) -> torch.nn.Module:
    head = model.get_output_embeddings()
    if head is None:
        raise TypeError(f"{type(model).__name__} has no output embeddings (not a causal LM?)")
    return head


def response_logprobs_and_entropy(
    model,
    rows: PackedRows,
    *,
    temperature: float = 1.0,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logprobs, entropy)`` of every response token, each ``(B, R)`` float32, 0 on padding.

    Gradients flow to the model when grad mode is on.
    """
    head = _lm_head(model)
    hidden = _decode(model.get_decoder(), rows)  # (B, L, H)
    h = hidden.reshape(-1, hidden.shape[-1]).index_select(0, rows.score_pos)  # (T, H)
    if isinstance(head, torch.nn.Linear) and head.bias is None:
        h = h.to(head.weight.dtype)  # autocast may hand back bf16 hidden states
        lp, ent = lm_head_logprobs_and_entropy(
            h, head.weight, rows.labels, temperature=temperature, chunk_size=chunk_size
        )
    else:  # heads with a bias or other structure: logits of the scored positions only
        lp, ent = token_logprobs_and_entropy(
            head(h), rows.labels, temperature=temperature, chunk_size=chunk_size
        )
    if rows.restricted is not None and rows.restricted_at is not None:
        lp, ent = _restrict(head, h, rows, lp, ent, temperature)
    b, r = rows.resp_shape
    zeros = torch.zeros(b * r, dtype=torch.float32, device=lp.device)
    lp_full = zeros.index_put((rows.resp_index,), lp)
    ent_full = zeros.index_put((rows.resp_index,), ent)
    return lp_full.view(b, r), ent_full.view(b, r)


def _hidden(out) -> torch.Tensor:
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def _decode(decoder, rows: PackedRows) -> torch.Tensor:
    """Hidden states ``(B, L, H)`` of ``rows.input_ids``, after ``rows.prefix_ids`` if set."""
    if rows.prefix_ids is None:
        return _hidden(decoder(input_ids=rows.input_ids, attention_mask=rows.attention_mask))
    b, length = rows.input_ids.shape
    p = rows.prefix_ids.numel()
    pre = decoder(input_ids=rows.prefix_ids.unsqueeze(0), use_cache=True)
    layers = getattr(pre.past_key_values, "layers", None)
    from transformers.cache_utils import DynamicCache, DynamicLayer

    mask = torch.cat([rows.attention_mask.new_ones((b, p)), rows.attention_mask], dim=1)
    if not layers or any(type(x) is not DynamicLayer for x in layers):
        # caches of another kind (e.g. sliding-window layers): run the full rows instead
        ids = torch.cat([rows.prefix_ids.expand(b, p), rows.input_ids], dim=1)
        return _hidden(decoder(input_ids=ids, attention_mask=mask))[:, p:]
    kv = [(x.keys.expand(b, -1, -1, -1), x.values.expand(b, -1, -1, -1)) for x in layers]
    pos = torch.arange(p, p + length, device=rows.input_ids.device).expand(b, length)
    out = decoder(
        input_ids=rows.input_ids,
        attention_mask=mask,
        position_ids=pos,
        past_key_values=DynamicCache(ddp_cache_data=kv),
        use_cache=True,
    )
    return _hidden(out)


def _restrict(head, h, rows: PackedRows, lp, ent, temperature: float):
    """``(lp, ent)`` with the restricted tokens rescored from the logits of their allowed ids
    only (a ``(C, K, H)`` gather of LM-head rows, never ``(C, V)`` logits, for plain heads)."""
    sets = rows.restricted
    h_c = h.index_select(0, rows.restricted_at)  # (C, H)
    if isinstance(head, torch.nn.Linear) and head.bias is None:
        w = head.weight[sets.ids]  # (C, K, H)
        sub = torch.einsum("ch,ckh->ck", h_c.to(w.dtype), w)
    else:
        sub = head(h_c).gather(1, sets.ids)
    r_lp, r_ent = restricted_logprobs_and_entropy(
        sub, sets.valid, sets.label_index, temperature=temperature
    )
    lp = lp.index_put((rows.restricted_at,), r_lp.to(lp.dtype))
    ent = ent.index_put((rows.restricted_at,), r_ent.to(ent.dtype))
    return lp, ent
