"""Edit protocols: which requests each editor call gets, whether weights go back to θ₀ first, and
which calls end at a checkpoint. The runner walks a protocol's steps and never asks its name.

- `sequential`: edits arrive in batches of the method's `batch_size`; weights are never reset; each
  checkpoint T scores the model after the first T edits (retention). Batches are cut at checkpoints.
- `batch`: for each checkpoint T, start from the unedited weights (and a fresh editor state) and give
  the first T edits to the editor in one call: the setting of the R-SFT+Merge paper, MEMIT's mass
  editing and most tables in the literature. Each checkpoint costs one edit call from θ₀.
- `independent`: every edit alone, from θ₀ with a fresh editor state; checkpoint T is the mean over
  the first T edits of each one's score right after its own call (the T = 1 row of WISE's tables;
  `editbench tune`'s single-edit floor). Fluency and exam are those of θ₀ plus the last edit.
- `immediate`: as `sequential` (weights never reset), but checkpoint T is the mean of each edit's
  score right after its own call, not after the first T (EasyEdit's `edit()` since PR #687: no
  retention). Fluency and exam are those of the model after T edits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from editbench.core import ConfigError


@dataclass(frozen=True)
class Step:
    """One editor call: the request indices it gets, whether θ₀ is restored before it, and the
    checkpoint T it completes (None between checkpoints). `restart_clock`: the checkpoint's editing
    seconds count from this call (the batch protocol's one call per checkpoint). `scores`: what the
    checkpoint averages over the first T edits: 'retention' (scored on the model as it is at T) or
    'immediate' (each edit's scores right after its own call)."""

    indices: range
    reset: bool = False
    checkpoint: int | None = None
    restart_clock: bool = False
    scores: str = "retention"


class Protocol:
    name = ""
    description = ""

    def steps(self, checkpoints: Sequence[int], batch_size: int) -> list[Step]:
        raise NotImplementedError


class Sequential(Protocol):
    name = "sequential"
    description = "batches of the method's batch_size, weights never reset, checkpoints score retention"

    def steps(self, checkpoints: Sequence[int], batch_size: int) -> list[Step]:
        out, start = [], 0
        for stop_at in checkpoints:
            while start < stop_at:
                end = min(start + batch_size, stop_at)
                out.append(Step(range(start, end), checkpoint=stop_at if end == stop_at else None))
                start = end
        return out


class Batch(Protocol):
    name = "batch"
    description = "for each checkpoint T, from the unedited weights, the first T edits in one editor call"

    def steps(self, checkpoints: Sequence[int], batch_size: int) -> list[Step]:
        return [Step(range(0, t), reset=True, checkpoint=t, restart_clock=True) for t in checkpoints]


class Independent(Protocol):
    name = "independent"
    description = "every edit alone from θ₀ (fresh editor state); checkpoints average each edit's own scores"

    def steps(self, checkpoints: Sequence[int], batch_size: int) -> list[Step]:
        marks = set(checkpoints)
        return [Step(range(i, i + 1), reset=True, checkpoint=i + 1 if i + 1 in marks else None, scores="immediate")
                for i in range(checkpoints[-1])]


class Immediate(Sequential):
    name = "immediate"
    description = "as sequential, but checkpoints average each edit's scores right after its own call"

    def steps(self, checkpoints: Sequence[int], batch_size: int) -> list[Step]:
        return [Step(s.indices, checkpoint=s.checkpoint, scores="immediate")
                for s in super().steps(checkpoints, batch_size)]


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (Sequential(), Batch(), Independent(), Immediate())}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol '{name}' (valid: {', '.join(PROTOCOLS)})")
    return PROTOCOLS[name]
