"""FLOPs per edit: what an editor call costs in arithmetic, the same on every machine.

Seconds depend on the machine; floating-point operations do not. torch's `FlopCounterMode` counts
them (matrix products and convolutions, forward and backward, from their shapes). Counting changes the
numbers, though: under a dispatch mode some operators take another floating-point path (measured on the
micro world: ROME's update differs by up to 6e-8, FT's by 2e-6). So the run's own calls are never
counted. A seeded sample of the run's editor calls is *replayed* under the counter just before the real
call: on the same weights, with a copy of the run's cache and with the editor's state and the random
number generators put back afterwards, so the real call sees exactly what it would have seen. The
replay's result is thrown away; its count, divided over the call's requests, is the FLOPs per edit of
those requests. One-time preparation (`Editor.prepare`: key statistics, context templates) is not in it.

The meter also carries the run's compute ceiling (harness/ceiling.py): recorded with the run, and for a
tune's trial (`stop_over_ceiling`) a call over it stops the trial at its first counted call.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from editbench.core import ConfigError, EditbenchError, Editor, EditRequest, setting
from editbench.harness.store import rng_states, set_rng_states


def count_cpu_attention() -> None:
    """Gives the CPU attention kernels torch's own SDPA formulas (once per process). torch counts the
    CUDA SDPA kernels but not `_scaled_dot_product_flash_attention_for_cpu` (forward and backward), the
    kernel `scaled_dot_product_attention` runs on a CPU: without this, attention's two score products
    (4·b·s²·d forward, twice that backward) were missing from every count on a CPU."""
    cpu = (torch.ops.aten._scaled_dot_product_flash_attention_for_cpu,
           torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward)
    if cpu[0] in flop_counter.flop_registry:
        return

    def forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    def backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)

    flop_counter.register_flop_formula(cpu[0])(forward)
    flop_counter.register_flop_formula(cpu[1])(backward)


class OverCeiling(EditbenchError):
    """A counted call cost more FLOPs per edit than the compute ceiling allows (a tune's trial)."""


@dataclass(frozen=True)
class ComputeCeiling:
    """The FLOPs per edit a method may spend on this model (None: no ceiling) and where it comes from."""

    flops_per_edit: float | None = None
    source: str = "none"
    set_by: str | None = None  # the method whose reference configuration set a declared ceiling

    def over(self, flops_per_edit: float | None) -> bool:
        return self.flops_per_edit is not None and flops_per_edit is not None and flops_per_edit > self.flops_per_edit

    def record(self) -> dict:
        return {"flops_per_edit": self.flops_per_edit, "source": self.source, "set_by": self.set_by}


NO_CEILING = ComputeCeiling()


@dataclass(frozen=True)
class FlopMeter:
    """Counts the FLOPs of `calls` editor calls per run (a seeded sample of its steps; 0: none)."""

    calls: int = 3
    seed: int = 0
    ceiling: ComputeCeiling = NO_CEILING
    stop_over_ceiling: bool = False  # a tune's trial: OverCeiling from the first counted call over it
    scoring: bool = False  # also replay the pre-edit scoring once under the counter (scoring's FLOPs)

    def __post_init__(self) -> None:
        if not (isinstance(self.calls, int) and self.calls >= 0):
            raise ConfigError(f"{setting('count_flops')} must be an integer >= 0, got {self.calls!r}")

    def counted_steps(self, n_steps: int) -> set[int]:
        """The steps whose calls are replayed: the first, then a seeded sample of the rest."""
        if self.calls == 0 or n_steps == 0:
            return set()
        rest = random.Random(self.seed).sample(range(1, n_steps), min(self.calls - 1, n_steps - 1))
        return {0, *rest}

    def count(self, editor: Editor, lm, batch: Sequence[EditRequest], cache: dict) -> int:
        """The FLOPs of `editor.edit(lm, batch, cache)`, run once more under the counter and undone."""
        state = {k: v.detach().clone() for k, v in editor.state_dict().items()}
        try:
            return count_call(lambda: editor.edit(lm, list(batch), dict(cache)))  # new cache entries stay in the copy
        finally:
            editor.reset_state()  # the state the replay left goes; the saved one comes back as a resume's would
            editor.load_state_dict(state)

    def check(self, flops: int, n_requests: int, label: str) -> None:
        """Raises OverCeiling when this meter stops calls over the ceiling and this one is."""
        per_edit = flops / max(n_requests, 1)
        if self.stop_over_ceiling and self.ceiling.over(per_edit):
            raise OverCeiling(f"{label}: {per_edit:.3g} FLOPs per edit, over the compute ceiling of "
                              f"{self.ceiling.flops_per_edit:.3g} ({self.ceiling.source})")


def count_call(call: Callable[[], object]) -> int:
    """The FLOPs of `call()` under torch's counter, its result thrown away and the random number
    generators put back (what it draws, the call it replays draws again)."""
    plain, tensors = rng_states()
    count_cpu_attention()
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            call()
    finally:
        set_rng_states(plain, tensors)
    return int(counter.get_total_flops())


NO_METER = FlopMeter(calls=0)
