"""Grouped-query SDPA attention that does not expand the KV heads when a mask is given.

transformers' ``"sdpa"`` attention (5.x) repeats every key/value head to all query heads
(``repeat_kv``, a copy of the whole KV cache per layer and step) whenever an attention mask is
passed and the device is not CUDA/XPU with ``enable_gqa``; left-padded batches always pass one.
:func:`gqa_sdpa_attention` instead folds each group's query heads into the query-length axis:
``query (B, G*r, Q, D) -> (B, G, r*Q, D)`` against ``key/value (B, G, L, D)``, with the mask
repeated over the ``r`` folded rows. Every query row sees the same keys, values and mask entries
as before, so the result is the same attention (tested against ``"sdpa"``, forward and
backward); only the floating-point order of the matmuls differs.

``use_gqa_attention(model)`` registers the function under :data:`NAME` (with transformers' SDPA
mask builder) and switches the model to it; checkpoints still save ``"sdpa"``-compatible
configs (the implementation name is not serialised).
"""

from __future__ import annotations

from typing import Any

import torch

NAME = "empg_gqa_sdpa"


def gqa_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Drop-in for transformers' ``sdpa_attention_forward``; returns ``((B, Q, H, D), None)``."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = int(getattr(module, "num_key_value_groups", 1))
    plain = (
        groups == 1
        or attention_mask is None
        or attention_mask.dim() != 4
        or attention_mask.shape[1] != 1  # per-head masks
        or kwargs.get("output_attentions", False)
    )
    if plain:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs
        )
    b, h, q, d = query.shape
    folded = query.reshape(b, key.shape[1], groups * q, d)  # head g*r + i -> group g, rows (i, q)
    mb, ml = attention_mask.shape[0], attention_mask.shape[-1]  # (B or 1, 1, Q or 1, L)
    mask = attention_mask.expand(mb, 1, q, ml).unsqueeze(2).expand(mb, 1, groups, q, ml)
    mask = mask.reshape(mb, 1, groups * q, ml)
    out = torch.nn.functional.scaled_dot_product_attention(
        folded, key, value, attn_mask=mask, dropout_p=dropout, scale=scaling
    )  # (B, G, r*Q, D)
    return out.reshape(b, h, q, d).transpose(1, 2).contiguous(), None


def register() -> None:
    """Register :data:`NAME` with transformers' attention and mask interfaces (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, gqa_sdpa_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def use_gqa_attention(model: Any) -> bool:
    """Switch ``model`` from ``"sdpa"`` to :data:`NAME`; returns whether it switched (models
    on another implementation, or without grouped KV heads, are left alone)."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    heads = getattr(config, "num_attention_heads", None)
    kv = getattr(config, "num_key_value_heads", None) or heads
    if not heads or heads == kv:
        return False
    register()
    model.set_attn_implementation(NAME)
    return config._attn_implementation == NAME
