"""Frozen-prefix caching: editors that optimise at layer L (FT, R-SFT, ROME's v*, MEMIT's z) run the
same inputs through the model many times, and nothing below layer L changes meanwhile. The hidden
state entering layer L is computed once per input, and inside the block every forward pass on that
same input skips layers 0..L-1, forward and backward.

How, without knowing the architecture: the decoder layers below L are swapped (in their ModuleList,
for the duration of the block) for stand-ins that return the cached hidden state when the model's
current `input_ids` and `attention_mask` are ones registered with `add`, and call the real layer
otherwise. Embeddings, rotary positions and attention masks are still built by the model's own
forward, so positions and masks are exactly those of a full pass; the skipped layers would have
computed the very same values (same inputs, same kernels), so results are bit-identical.
"""
from __future__ import annotations

import torch
from torch import nn

from editbench.harness.arch import get_module
from editbench.harness.hooks import StopForward, capture, stop_after


def _key(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple:
    ids = input_ids.detach().to("cpu")
    mask = None if attention_mask is None else attention_mask.detach().to("cpu")
    return (tuple(ids.shape), ids.numpy().tobytes(), None if mask is None else mask.numpy().tobytes())


class _StandIn(nn.Module):
    """Takes a lower layer's place: passes the hidden state through, or (the last one) returns the
    cached state entering layer L, when the current input is cached; else runs the real layer."""

    def __init__(self, real: nn.Module, prefix: "FrozenPrefix", last: bool) -> None:
        super().__init__()
        self.real = real
        self.last = last
        self._prefix = [prefix]  # in a list: not a submodule

    def forward(self, hidden_states, *args, **kwargs):
        cached = self._prefix[0].current
        if cached is None:
            return self.real(hidden_states, *args, **kwargs)
        return cached if self.last else hidden_states


class FrozenPrefix:
    """`with FrozenPrefix(lm, L) as prefix: prefix.add(ids, mask); ... model(input_ids=ids, ...)`.

    L = 0 (nothing below the edit) or a model whose layers return tuples makes it a no-op.
    """

    def __init__(self, lm, first_layer: int) -> None:
        self.lm = lm
        self.first_layer = first_layer
        self.cached: dict[tuple, torch.Tensor] = {}
        self.current: torch.Tensor | None = None
        self._layers: nn.ModuleList | None = None
        self._originals: list[nn.Module] = []
        self._hook = None

    def __enter__(self) -> "FrozenPrefix":
        if self.first_layer <= 0:
            return self
        layers = get_module(self.lm.model, self.lm.arch.layers)
        if not isinstance(layers, nn.ModuleList) or self.first_layer >= len(layers):
            return self
        self._layers = layers
        self._originals = [layers[i] for i in range(self.first_layer)]
        for i, real in enumerate(self._originals):
            layers[i] = _StandIn(real, self, last=(i == self.first_layer - 1))
        self._hook = self.lm.model.register_forward_pre_hook(self._select, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._hook is not None:
            self._hook.remove()
        if self._layers is not None:
            for i, real in enumerate(self._originals):
                self._layers[i] = real
        self.current, self.cached = None, {}

    @property
    def active(self) -> bool:
        return self._layers is not None

    def _select(self, _module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.current = None if ids is None else self.cached.get(_key(ids, kwargs.get("attention_mask")))
        if self.current is not None:
            # a KV cache would miss the skipped layers; these passes never decode step by step
            return args, {**kwargs, "use_cache": False}
        return None

    @torch.no_grad()
    def add(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> None:
        """Compute and keep the hidden state entering layer L for this input."""
        if self._layers is None:  # not active
            return
        key = _key(input_ids, attention_mask)
        if key in self.cached:
            return
        layers = self._layers
        # the pass ends once layer L has run: the layers above it and the head would be thrown away
        with capture(layers[self.first_layer], detach=True) as seen, stop_after(layers[self.first_layer]):
            self.current = None
            try:
                self.lm.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
            except StopForward:
                pass
        if not isinstance(seen.input, torch.Tensor):  # layers that take tuples: run in full instead
            return
        self.cached[key] = seen.input.clone()
