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

The step size K (edits per editor call) is the protocol's, for any method: `sequential`,
`immediate` and `independent` take K (default: the method's `batch_size`, 1 for every built-in
editor); `batch` gives the first T edits in one call and takes none. "Sequential" and "batch size"
mean different things in different codebases, so presets name what the references run:
`lifelong-k1` (retention after every single edit, WISE), `lifelong-k100` (retention, 100 edits per
call: AlphaEdit, ENCORE, LyapLock, UltraEdit) and `easyedit-immediate` (each edit scored right after
its own call, no retention: EasyEdit's `edit()`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from editbench.core import ConfigError, setting


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
    takes_step_size = True

    def __init__(self, step_size: int | None = None) -> None:
        if step_size is not None and not self.takes_step_size:
            raise ConfigError(f"protocol '{self.name}' gives the first T edits in one call; {setting('step_size')} "
                              "does not apply to it")
        if step_size is not None and step_size < 1:
            raise ConfigError(f"{setting('step_size')} must be >= 1, got {step_size}")
        self.step_size = step_size  # None: the method's batch_size

    def call_size(self, batch_size: int) -> int:
        return self.step_size or batch_size

    def label(self, batch_size: int) -> str:
        """The protocol as reports print it: with its step size when that is not 1."""
        k = self.call_size(batch_size) if self.takes_step_size else None
        return self.name if k in (None, 1) else f"{self.name} K={k}"

    def steps(self, checkpoints: Sequence[int], batch_size: int) -> list[Step]:
        raise NotImplementedError


class Sequential(Protocol):
    name = "sequential"
    description = "batches of the method's batch_size, weights never reset, checkpoints score retention"

    def steps(self, checkpoints: Sequence[int], batch_size: int) -> list[Step]:
        out, start, k = [], 0, self.call_size(batch_size)
        for stop_at in checkpoints:
            while start < stop_at:
                end = min(start + k, stop_at)
                out.append(Step(range(start, end), checkpoint=stop_at if end == stop_at else None))
                start = end
        return out


class Batch(Protocol):
    name = "batch"
    description = "for each checkpoint T, from the unedited weights, the first T edits in one editor call"
    takes_step_size = False

    def steps(self, checkpoints: Sequence[int], batch_size: int) -> list[Step]:
        return [Step(range(0, t), reset=True, checkpoint=t, restart_clock=True) for t in checkpoints]


class Independent(Protocol):
    name = "independent"
    description = "every edit alone from θ₀ (fresh editor state); checkpoints average each edit's own scores"

    def steps(self, checkpoints: Sequence[int], batch_size: int) -> list[Step]:
        """Groups of K edits, each group from θ₀ (K = 1 unless a step size is set), cut at checkpoints."""
        groups = Sequential(self.step_size or 1).steps(checkpoints, 1)
        return [Step(g.indices, reset=True, checkpoint=g.checkpoint, scores="immediate") for g in groups]


class Immediate(Sequential):
    name = "immediate"
    description = "as sequential, but checkpoints average each edit's scores right after its own call"

    def steps(self, checkpoints: Sequence[int], batch_size: int) -> list[Step]:
        return [Step(s.indices, checkpoint=s.checkpoint, scores="immediate")
                for s in super().steps(checkpoints, batch_size)]


PROTOCOLS: dict[str, type[Protocol]] = {p.name: p for p in (Sequential, Batch, Independent, Immediate)}
# named presets: (protocol, step size) as the references run them
PRESETS: dict[str, tuple[str, int]] = {
    "lifelong-k1": ("sequential", 1),  # WISE: retention after every single edit
    "lifelong-k100": ("sequential", 100),  # AlphaEdit, ENCORE, LyapLock, UltraEdit: 100 edits per call
    "easyedit-immediate": ("immediate", 1),  # EasyEdit's edit(): each edit scored after its own call
}
PROTOCOL_NAMES = (*PROTOCOLS, *PRESETS)


def resolve_protocol(name: str, step_size: int | None = None) -> tuple[str, int | None]:
    """A protocol name or preset, and a step size -> (protocol, step size); a preset's own K unless
    `step_size` names the same."""
    if name in PRESETS:
        base, k = PRESETS[name]
        if step_size is not None and step_size != k:
            raise ConfigError(f"protocol preset '{name}' runs {k} edits per call; {setting('step_size')} "
                              f"{step_size} contradicts it (use protocol '{base}' with that step size)")
        return base, k
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol '{name}' (valid: {', '.join(PROTOCOL_NAMES)})")
    return name, step_size


def get_protocol(name: str, step_size: int | None = None) -> Protocol:
    base, k = resolve_protocol(name, step_size)
    return PROTOCOLS[base](k)


def default_checkpoints(n_edits: int) -> list[int]:
    points, t = [], 1
    while t < n_edits:
        points.append(t)
        t *= 10
    return points + [n_edits]


def resolve_checkpoints(checkpoints: Sequence[int] | None, n_edits: int) -> list[int]:
    if n_edits < 1:
        raise ConfigError(f"{setting('edits')} must be >= 1, got {n_edits}")
    points = sorted(set(checkpoints)) if checkpoints else default_checkpoints(n_edits)
    bad = [t for t in points if not 1 <= t <= n_edits]
    if bad:
        raise ConfigError(f"checkpoints {bad} are out of range (valid: 1..{n_edits}, the number of edits)")
    return points if points[-1] == n_edits else points + [n_edits]
