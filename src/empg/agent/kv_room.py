"""Room in the KV cache for the tokens still to be generated.

transformers' ``DynamicLayer`` appends each decoding step's key and value with ``torch.cat``,
which copies the layer's whole cache every step: for the tiny CPU policy that is about a sixth
of a rollout's time (docs/benchmarks.md). :func:`reserve_kv_room` replaces the layers of a
prefilled ``DynamicCache`` by :class:`RoomyLayer`, which keeps the same keys and values in a
buffer with spare positions and writes each new step into place; attention reads a view of the
filled part, so it sees the same numbers (the same bits on CPU, tested; on GPU attention may
pick another kernel for the strided views).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicLayer


class RoomyLayer(DynamicLayer):
    """A ``DynamicLayer`` whose ``keys``/``values`` are views of buffers with spare positions;
    :meth:`update` writes into the spare room (and grows the buffers if it runs out)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, extra: int) -> None:
        super().__init__()
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self._n = keys.shape[-2]
        self._k = self._with_room(keys, extra)
        self._v = self._with_room(values, extra)
        self._view()

    def _with_room(self, x: torch.Tensor, extra: int) -> torch.Tensor:
        b, h, _, d = x.shape
        buf = x.new_empty((b, h, self._n + max(extra, 1), d))
        buf[:, :, : self._n] = x[:, :, : self._n]
        return buf

    def _view(self) -> None:
        self.keys = self._k[:, :, : self._n]
        self.values = self._v[:, :, : self._n]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        m = key_states.shape[-2]
        if self._n + m > self._k.shape[-2]:  # out of room: grow by half the length at least
            more = max(m, 64, self._n // 2)
            self._k, self._v = self._with_room(self._k, more), self._with_room(self._v, more)
        self._k[:, :, self._n : self._n + m] = key_states
        self._v[:, :, self._n : self._n + m] = value_states
        self._n += m
        self._view()
        return self.keys, self.values

    def crop(self, max_length: int) -> None:
        if max_length < 0:
            max_length = self._n + max_length
        self._n = max(0, min(self._n, max_length))
        self._view()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._k, self._v = self._k[indices], self._v[indices]
        self._view()

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._k = self._k.repeat_interleave(repeats, dim=0)
        self._v = self._v.repeat_interleave(repeats, dim=0)
        self._view()

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        self.batch_select_indices(beam_idx.to(self._k.device))


def reserve_kv_room(cache: Any, extra: int) -> bool:
    """Give every layer of a prefilled ``DynamicCache`` room for ``extra`` more positions.
    Returns False, changing nothing, when a layer is not a filled plain ``DynamicLayer``
    (sliding windows, quantised or offloaded caches, an older transformers)."""
    layers = getattr(cache, "layers", None)
    plain = (type(x) is DynamicLayer and getattr(x, "is_initialized", False) for x in layers or ())
    if not layers or not all(plain):
        return False
    if getattr(cache, "offloading", False):
        return False
    for i, layer in enumerate(layers):
        layers[i] = RoomyLayer(layer.keys, layer.values, extra)
    return True
