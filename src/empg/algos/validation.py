"""Input checks shared by the math modules. Each raises a typed error naming the argument."""

from __future__ import annotations

import math

import torch

from empg.errors import InputError, NonFiniteError, ShapeError


def as_tensor(name: str, x: object) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")


def check_ndim(name: str, x: torch.Tensor, ndim: int, what: str) -> None:
    if x.dim() != ndim:
        raise ShapeError(f"{name} must have shape {what}, got shape {tuple(x.shape)}")


def check_same_shape(name: str, x: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if x.shape != ref.shape:
        raise ShapeError(
            f"{name} has shape {tuple(x.shape)} but {ref_name} has shape {tuple(ref.shape)}; "
            "they must match exactly (nothing is broadcast)"
        )


def check_float(name: str, x: torch.Tensor) -> None:
    if not x.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def check_integer(name: str, x: torch.Tensor) -> None:
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise InputError(f"{name} must be an integer tensor, got dtype {x.dtype}")


def check_finite(name: str, x: torch.Tensor, where: torch.Tensor | None = None) -> None:
    """Raise if ``x`` (restricted to ``where`` when given) holds NaN or inf."""
    # fast path, one pass: a sum is finite when every element is (if it overflowed: recheck)
    if where is None and x.is_floating_point() and math.isfinite(float(x.sum(dtype=torch.float64))):
        return
    bad = ~torch.isfinite(x)
    if where is not None:
        bad = bad & where
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0].tolist())
        n = int(bad.sum())
        raise NonFiniteError(
            f"{name} holds {n} NaN/inf value(s) (first at index {idx}, value "
            f"{x[idx].item()}); expected finite values"
        )


def check_mask(name: str, mask: torch.Tensor) -> torch.Tensor:
    """Validate a 0/1 mask of any dtype and return it as ``bool``."""
    if mask.dtype == torch.bool:
        return mask
    if mask.is_complex():
        raise InputError(f"{name} must be a 0/1 mask, got complex dtype {mask.dtype}")
    ok = (mask == 0) | (mask == 1)
    if not bool(ok.all()):
        idx = tuple(int(i) for i in (~ok).nonzero()[0].tolist())
        raise InputError(
            f"{name} must contain only 0 and 1, found {mask[idx].item()!r} at index {idx}"
        )
    return mask != 0


def check_scalar(
    name: str,
    value: float,
    *,
    positive: bool = False,
    non_negative: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise InputError(f"{name} must be > 0, got {value}")
    if non_negative and value < 0:
        raise InputError(f"{name} must be >= 0, got {value}")
    return value


def check_nonempty(name: str, x: torch.Tensor) -> None:
    if x.numel() == 0:
        raise InputError(f"{name} is empty (shape {tuple(x.shape)}); expected at least one element")
