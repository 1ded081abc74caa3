"""Token log-probabilities and entropies with bounded memory.

Two entry points, one semantics:

* :func:`token_logprobs_and_entropy` from logits ``(..., V)``;
* :func:`lm_head_logprobs_and_entropy` from hidden states ``(..., H)`` and the LM-head weight
  ``(V, H)``, never materialising the full ``(tokens, V)`` logits.

Both return float32 ``(logprob of the label, Shannon entropy in nats)`` of the distribution
``softmax(logits / temperature)`` for every token. Work is done in chunks of ``chunk_size``
tokens, so the extra memory is a few ``chunk_size x V`` float32 buffers, in the forward AND the
backward pass: the backward recomputes each chunk's softmax from the saved per-token
log-sum-exp instead of keeping ``(tokens, V)`` activations alive.

Gradients (``s = z / T`` the scaled logits, ``p = softmax(s)``, ``H = -sum p log p``)::

    d logp[y] / ds = onehot(y) - p
    d H       / ds = -p * (log p + H)

and ``d/dz = d/ds / T``.
"""

from __future__ import annotations

import torch

from empg.algos.validation import (
    as_tensor,
    check_integer,
    check_scalar,
)
from empg.errors import InputError, NonFiniteError, ShapeError

#: default budget for one float32 (chunk, V) buffer when ``chunk_size`` is None
DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024
#: the LM-head path re-reads the full weight gradient once per chunk in backward: bigger chunks
LM_HEAD_CHUNK_BYTES = 256 * 1024 * 1024


def auto_chunk_size(vocab: int, budget_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Tokens per chunk so that one float32 ``(chunk, vocab)`` buffer fits ``budget_bytes``."""
    return max(1, budget_bytes // (4 * max(1, vocab)))


def _resolve_chunk(
    chunk_size: int | None, vocab: int, budget_bytes: int = DEFAULT_CHUNK_BYTES
) -> int:
    if chunk_size is None:
        return auto_chunk_size(vocab, budget_bytes)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    return chunk_size


def _check_labels(labels: torch.Tensor, lead_shape: torch.Size, vocab: int, ref: str) -> None:
    check_integer("labels", labels)
    if labels.shape != lead_shape:
        raise ShapeError(
            f"labels has shape {tuple(labels.shape)} but {ref} implies {tuple(lead_shape)}; "
            "they must match exactly"
        )
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= vocab):
        raise InputError(
            f"labels must lie in [0, {vocab}) (the vocabulary), got values in "
            f"[{int(labels.min())}, {int(labels.max())}]; mask padded positions with a valid id"
        )


_F32 = torch.finfo(torch.float32)


def _scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """float32 ``logits / temperature`` in a new buffer, raised to float32's most negative
    finite value: a mask value such as ``finfo.min`` stays finite after a temperature below 1
    or a cast from float64, and a ``-inf`` mask is that value too (probability 0, its terms
    exactly 0). NaN and ``+inf`` stay, and are reported."""
    return logits.to(torch.float32, copy=True).div_(temperature).clamp_min_(_F32.min)


def _chunk_forward(
    s: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Given float32 scaled logits ``s`` (c, V) (overwritten), return (logprob, entropy, lse)."""
    lse = torch.logsumexp(s, dim=-1)  # (c,)
    logp = s.sub_(lse.unsqueeze(-1))  # (c, V), in place
    lp = logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1)  # (c,)
    p = logp.exp()  # (c, V)
    # bmm is on autocast's bf16 list: keep this float32 reduction out of it (under bf16
    # autocast every entropy would otherwise be rounded to bf16, ~0.01-0.03 nats)
    with torch.autocast(s.device.type, enabled=False):
        ent = -torch.bmm(p.unsqueeze(1), logp.unsqueeze(2)).reshape(-1)  # (c,) = -sum p log p
    return lp, ent, lse


def _chunk_grad_s(
    s: torch.Tensor,
    labels: torch.Tensor,
    lse: torch.Tensor,
    ent: torch.Tensor,
    g_lp: torch.Tensor | None,
    g_ent: torch.Tensor | None,
) -> torch.Tensor:
    """d loss / d s for one chunk, computed in place in ``s`` (float32, (c, V))."""
    logp = s.sub_(lse.unsqueeze(-1))  # (c, V)
    p = logp.exp()
    if g_ent is not None:
        # -g_H * p * (log p + H)
        grad = logp.add_(ent.unsqueeze(-1)).mul_(p).mul_(-g_ent.unsqueeze(-1))
    else:
        grad = logp.zero_()
    if g_lp is not None:
        grad.sub_(p.mul_(g_lp.unsqueeze(-1)))
        grad.scatter_add_(-1, labels.unsqueeze(-1), g_lp.unsqueeze(-1))
    return grad


def _check_outputs(lp: torch.Tensor, ent: torch.Tensor, lse: torch.Tensor, what: str) -> None:
    # Cheap O(tokens) checks. NaN or +inf anywhere in the inputs makes the log-sum-exp, the
    # label's log-prob or the entropy non-finite (-inf is a mask, see _scaled); a row whose
    # every entry is masked has a log-sum-exp at the bottom of the float range.
    bad = ~(torch.isfinite(lp) & torch.isfinite(ent))
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise NonFiniteError(
            f"{what} hold NaN or inf (first affected token at flat index {i}); "
            "expected finite values or -inf (a masked entry); NaN or +inf logits come from "
            "the model or its inputs"
        )
    empty = lse < _F32.min / 2
    if bool(empty.any()):
        i = int(empty.nonzero()[0, 0])
        raise NonFiniteError(
            f"{what}: every entry of token {i}'s row (flat index) is masked; there is no "
            "distribution to score"
        )


class _ChunkedLogits(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, labels, temperature, chunk):  # logits (N, V), labels (N,)
        n = logits.shape[0]
        lp = torch.empty(n, dtype=torch.float32, device=logits.device)
        ent = torch.empty_like(lp)
        lse = torch.empty_like(lp)
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            s = _scaled(logits[a:b], temperature)
            lp[a:b], ent[a:b], lse[a:b] = _chunk_forward(s, labels[a:b])
        _check_outputs(lp, ent, lse, "logits")
        ctx.save_for_backward(logits, labels, lse, ent)
        ctx.temperature, ctx.chunk = temperature, chunk
        return lp, ent

    @staticmethod
    def backward(ctx, g_lp, g_ent):
        logits, labels, lse, ent = ctx.saved_tensors
        t, chunk = ctx.temperature, ctx.chunk
        grad = torch.empty_like(logits)
        for a in range(0, logits.shape[0], chunk):
            b = min(logits.shape[0], a + chunk)
            s = _scaled(logits[a:b], t)
            gs = _chunk_grad_s(
                s,
                labels[a:b],
                lse[a:b],
                ent[a:b],
                None if g_lp is None else g_lp[a:b].float(),
                None if g_ent is None else g_ent[a:b].float(),
            )
            grad[a:b] = gs.div_(t)
        return grad, None, None, None


def token_logprobs_and_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float = 1.0,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of ``labels`` and entropy of ``softmax(logits / temperature)``, per token.

    Args:
        logits: ``(..., V)`` any float dtype (bf16/fp16/fp32/fp64), finite or ``-inf`` (a masked
            entry: probability 0; a label on one gets a log-prob of about -3.4e38).
        labels: ``(...)`` integer token ids in ``[0, V)``.
        temperature: ``> 0``; the distribution is ``softmax(logits / temperature)``.
        chunk_size: tokens per chunk; ``None`` picks one so a float32 ``(chunk, V)`` buffer is
            about 64 MiB. Extra memory is a few such buffers in forward and backward.

    Returns:
        ``(logprobs, entropy)``, both float32 of shape ``(...)``. Gradients flow to ``logits``.
    """
    logits = as_tensor("logits", logits)
    labels = as_tensor("labels", labels)
    if not logits.is_floating_point():
        raise InputError(f"logits must be a floating-point tensor, got dtype {logits.dtype}")
    if logits.dim() < 1 or logits.shape[-1] < 1:
        raise ShapeError(f"logits must have shape (..., V) with V >= 1, got {tuple(logits.shape)}")
    vocab = logits.shape[-1]
    _check_labels(labels, logits.shape[:-1], vocab, "logits (..., V)")
    t = check_scalar("temperature", temperature, positive=True)
    chunk = _resolve_chunk(chunk_size, vocab)
    lead = logits.shape[:-1]
    flat = logits.reshape(-1, vocab)
    flat_labels = labels.reshape(-1).long()
    if flat.shape[0] == 0:
        empty = logits.new_zeros(lead, dtype=torch.float32)
        return empty, empty.clone()
    lp, ent = _ChunkedLogits.apply(flat, flat_labels, t, chunk)
    return lp.reshape(lead), ent.reshape(lead)


class _ChunkedLMHead(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, labels, temperature, chunk):  # (N, H), (V, H), (N,)
        n = hidden.shape[0]
        lp = torch.empty(n, dtype=torch.float32, device=hidden.device)
        ent = torch.empty_like(lp)
        lse = torch.empty_like(lp)
        mm_dtype = hidden.dtype
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            raw = hidden[a:b] @ weight.T  # (c, V), in autocast's dtype when it is on
            mm_dtype = raw.dtype
            s = _scaled(raw, temperature)
            lp[a:b], ent[a:b], lse[a:b] = _chunk_forward(s, labels[a:b])
        _check_outputs(lp, ent, lse, "hidden @ weight.T logits")
        ctx.save_for_backward(hidden, weight, labels, lse, ent)
        # backward recomputes the logits in the forward's matmul dtype, inside autocast or not
        # (else its softmax would not match the saved log-sum-exp)
        ctx.temperature, ctx.chunk, ctx.mm_dtype = temperature, chunk, mm_dtype
        return lp, ent

    @staticmethod
    def backward(ctx, g_lp, g_ent):
        hidden, weight, labels, lse, ent = ctx.saved_tensors
        t, chunk = ctx.temperature, ctx.chunk
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if need_h else None
        # accumulate the weight gradient in float32 whatever the weight's dtype
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        grad_w = grad_w if need_w else None
        w_mm = weight.to(ctx.mm_dtype)  # once, not per chunk (the same tensor when no cast)
        for a in range(0, hidden.shape[0], chunk):
            b = min(hidden.shape[0], a + chunk)
            h = hidden[a:b]
            with torch.autocast(h.device.type, enabled=False):
                raw = h.to(ctx.mm_dtype) @ w_mm.T
            s = _scaled(raw, t)
            gs = _chunk_grad_s(
                s,
                labels[a:b],
                lse[a:b],
                ent[a:b],
                None if g_lp is None else g_lp[a:b].float(),
                None if g_ent is None else g_ent[a:b].float(),
            ).div_(t)  # (c, V) d loss / d logits
            if need_h:
                grad_h[a:b] = (gs.to(weight.dtype) @ weight).to(hidden.dtype)
            if need_w:
                grad_w.addmm_(gs.T, h.to(torch.float32))
        if need_w:
            grad_w = grad_w.to(weight.dtype)
        return grad_h, grad_w, None, None, None


def lm_head_logprobs_and_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float = 1.0,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`token_logprobs_and_entropy` for ``logits = hidden @ weight.T``, chunked.

    The full ``(tokens, V)`` logits never exist: each chunk's logits are computed, reduced to
    (log-prob, entropy, log-sum-exp) and freed; the backward recomputes them per chunk.

    Args:
        hidden: ``(..., H)`` float hidden states (the LM head's input).
        weight: ``(V, H)`` LM-head weight, same dtype and device as ``hidden`` (no bias).
        labels: ``(...)`` token ids in ``[0, V)``.
        temperature: as in :func:`token_logprobs_and_entropy`.
        chunk_size: tokens per chunk; ``None`` targets 256 MiB per float32 ``(chunk, V)``
            buffer (larger than the logits path: each backward chunk updates the whole
            float32 weight gradient, so fewer chunks means less memory traffic).

    Returns:
        ``(logprobs, entropy)``, float32, shape ``(...)``; gradients flow to ``hidden`` and
        ``weight`` (the weight gradient is accumulated in float32).
    """
    hidden = as_tensor("hidden", hidden)
    weight = as_tensor("weight", weight)
    labels = as_tensor("labels", labels)
    for name, x in (("hidden", hidden), ("weight", weight)):
        if not x.is_floating_point():
            raise InputError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if weight.dim() != 2:
        raise ShapeError(f"weight must have shape (V, H), got {tuple(weight.shape)}")
    if hidden.dim() < 1 or hidden.shape[-1] != weight.shape[1]:
        raise ShapeError(
            f"hidden must have shape (..., H) with H = weight.shape[1] = {weight.shape[1]}, "
            f"got {tuple(hidden.shape)}"
        )
    if hidden.dtype != weight.dtype or hidden.device != weight.device:
        raise InputError(
            f"hidden ({hidden.dtype}, {hidden.device}) and weight ({weight.dtype}, "
            f"{weight.device}) must share dtype and device"
        )
    vocab = weight.shape[0]
    _check_labels(labels, hidden.shape[:-1], vocab, "hidden (..., H)")
    t = check_scalar("temperature", temperature, positive=True)
    chunk = _resolve_chunk(chunk_size, vocab, LM_HEAD_CHUNK_BYTES)
    lead = hidden.shape[:-1]
    flat = hidden.reshape(-1, hidden.shape[-1])
    if flat.shape[0] == 0:
        empty = hidden.new_zeros(lead, dtype=torch.float32)
        return empty, empty.clone()
    lp, ent = _ChunkedLMHead.apply(flat, weight, labels.reshape(-1).long(), t, chunk)
    return lp.reshape(lead), ent.reshape(lead)
