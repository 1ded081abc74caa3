"""Policy forward passes over (prompt + response) step rows, through the core's memory-bounded
LM-head function: log-probs and entropies of the response tokens only.

Rows are right-padded ``[prompt, response, pad...]``; the hidden state at position ``t``
predicts token ``t + 1``, so response token ``j`` of a row with prompt length ``P`` is scored
from position ``P + j - 1``. Only those positions go through the LM head (``logits_to_keep``
in spirit): the (tokens x vocab) logits of the prompt are never formed.

Tokens sampled by action-constrained decoding can carry their allowed ids (``allowed``); they
are then scored under the restricted distribution they were sampled from
(:func:`empg.algos.restricted_logprobs_and_entropy`), from the logits of those ids only.
"""

from __future__ import annotations

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
        input_ids: ``(B, L)`` long, right-padded prompt + response.
        attention_mask: ``(B, L)`` long.
        score_pos: ``(T,)`` flat positions (``b * L + t``) whose hidden state scores a response
            token; ``labels`` ``(T,)`` are those tokens.
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


def pack_rows(
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    pad_id: int,
    device: torch.device | str = "cpu",
    allowed: Sequence[RowAllowed] | None = None,
) -> PackedRows:
    """Right-pad ``prompt + response`` rows; index the positions that score response tokens.

    ``allowed`` (optional, one entry per row, each None or one entry per response token) gives
    the tokens to score under a restricted distribution (see the module docstring)."""
    b = len(prompts)
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
        if len(p) == 0:
            raise ValueError(f"row {i} has an empty prompt; a response needs a context to score")
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
    out = model.get_decoder()(input_ids=rows.input_ids, attention_mask=rows.attention_mask)
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]  # (B, L, H)
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
