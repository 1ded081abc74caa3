"""Policy forward passes over (prompt + response) step rows, through the core's memory-bounded
LM-head function: log-probs and entropies of the response tokens only.

Rows are right-padded ``[prompt, response, pad...]``; the hidden state at position ``t``
predicts token ``t + 1``, so response token ``j`` of a row with prompt length ``P`` is scored
from position ``P + j - 1``. Only those positions go through the LM head (``logits_to_keep``
in spirit): the (tokens x vocab) logits of the prompt are never formed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from empg.algos.entropy import lm_head_logprobs_and_entropy, token_logprobs_and_entropy


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
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    score_pos: torch.Tensor
    labels: torch.Tensor
    resp_index: torch.Tensor
    resp_shape: tuple[int, int]


def pack_rows(
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    pad_id: int,
    device: torch.device | str = "cpu",
) -> PackedRows:
    """Right-pad ``prompt + response`` rows; index the positions that score response tokens."""
    b = len(prompts)
    lengths = [len(p) + len(r) for p, r in zip(prompts, responses, strict=True)]
    width = max(lengths)
    r_width = max(1, max(len(r) for r in responses))
    ids = torch.full((b, width), pad_id, dtype=torch.long)
    mask = torch.zeros((b, width), dtype=torch.long)
    pos, labels, resp_idx = [], [], []
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        if len(p) == 0:
            raise ValueError(f"row {i} has an empty prompt; a response needs a context to score")
        seq = list(p) + list(r)
        ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[i, : len(seq)] = 1
        for j in range(len(r)):
            pos.append(i * width + len(p) + j - 1)
            labels.append(r[j])
            resp_idx.append(i * r_width + j)
    as_long = lambda x: torch.tensor(x, dtype=torch.long, device=device)
    return PackedRows(
        ids.to(device),
        mask.to(device),
        as_long(pos),
        as_long(labels),
        as_long(resp_idx),
        (b, r_width),
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
    b, r = rows.resp_shape
    zeros = torch.zeros(b * r, dtype=torch.float32, device=lp.device)
    lp_full = zeros.index_put((rows.resp_index,), lp)
    ent_full = zeros.index_put((rows.resp_index,), ent)
    return lp_full.view(b, r), ent_full.view(b, r)
