"""The update guard: an editor call's update is rejected (or applied and marked) when its objective
rose or its norm dwarfs the weight it changes."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from editbench.core import ConfigError, setting


@dataclass(frozen=True)
class UpdateGuard:
    """Besides the checks every delta gets (known parameter, shape, finite): an update whose editor
    reports its own objective ending worse than it started, or whose norm exceeds `max_update_ratio`
    times the norm of the weight it changes, is `diverged`. Policy `reject` (default): not applied,
    like a non-finite update; `apply`: applied and still counted.

    The objective of a call is the sum of its requests' objectives (a call of K edits optimises K
    independent targets, as MEMIT's z search does): the call diverged when that sum rose, or when
    any request's objective is not finite. One request of a hundred ending a hair above its start is
    that request's weak target, not a diverged update (judged by its worst request, every call of
    100 on the default world was rejected). With one request per call both readings agree."""

    max_update_ratio: float = 10.0
    policy: str = "reject"
    tolerance: float = 1e-3  # relative slack on the objective (float noise, dropout)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_update_ratio) and self.max_update_ratio > 0):
            raise ConfigError(f"{setting('max_update_ratio')} must be a finite number > 0, got {self.max_update_ratio}")
        if self.policy not in ("reject", "apply"):
            raise ConfigError(f"{setting('on_diverged')} {self.policy!r} (valid: reject, apply)")

    def verdict(self, delta, model: torch.nn.Module) -> str | None:
        """Why this update diverged, or None."""
        why = self.objective_verdict(delta.info)
        if why:
            return why
        params = dict(model.named_parameters())
        for name, tensor in delta.weight_tensors().items():
            # float64 accumulation without a float64 copy of the weight (a 7B layer's MLP is ~100M values)
            base = torch.linalg.vector_norm(params[name].detach(), dtype=torch.float64).item()
            ratio = torch.linalg.vector_norm(tensor, dtype=torch.float64).item() / max(base, 1e-12)
            if ratio > self.max_update_ratio:
                return f"its change of '{name}' is {ratio:.3g} times the weight's norm (bound {self.max_update_ratio:g})"
        return None

    def objective_verdict(self, infos: Sequence[dict]) -> str | None:
        """Why the call's objective (the sum over its requests) diverged, or None."""
        pairs = [(i, info["initial_loss"], info["final_loss"]) for i, info in enumerate(infos)
                 if isinstance(info.get("initial_loss"), (int, float)) and isinstance(info.get("final_loss"), (int, float))]
        for i, start, end in pairs:
            if not (math.isfinite(start) and math.isfinite(end)):
                return f"its objective went from {start:.4g} to {end:.4g} (request {i} of the call)"
        if not pairs:
            return None
        start, end = sum(p[1] for p in pairs), sum(p[2] for p in pairs)
        if end > start + self.tolerance * max(1.0, abs(start)):
            rose = sum(p[2] > p[1] for p in pairs)
            where = "request 0 of the call" if len(pairs) == 1 else f"summed over {len(pairs)} requests, {rose} rose"
            return f"its objective rose from {start:.4g} to {end:.4g} ({where})"
        return None
