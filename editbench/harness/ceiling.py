"""The compute ceiling: one bound on FLOPs per edit per model, so that methods race at equal compute.

A method that wins by spending fifty times the compute of the next has not won the same race; seconds
depend on the machine, FLOPs (harness/compute.py) do not. **The rule**: a model's ceiling is the largest
FLOPs per edit among the methods' *reference configurations* on it, a reference configuration being the
published one a method's search space is centred on (`SearchSpace.reference_params`, trial 0 of every
`editbench tune`: the paper's or EasyEdit's values, its layer at the model's relative depth), counted as
a leaderboard counts (sequential, one edit per call, dev edits, one thread). So no method may spend more
than the costliest method as its authors publish it; a tuned configuration that does is over the ceiling.

`scripts/ceiling.py` (asked to write) measures the rule and declares the result in
`editbench/hparams/ceilings.yaml` under the model's hparams key. A run records its ceiling
(`compute_ceiling` in results.json) and the leaderboard marks a method over it; `tune` treats a trial
over it as infeasible (stopped at its first counted edit). The setting `compute_ceiling` none sets none (the
table then says so); a number sets that one.
"""
from __future__ import annotations

import math
from typing import Mapping

import yaml

from editbench.core import ConfigError, setting
from editbench.harness.compute import ComputeCeiling
from editbench.harness.hparams import HPARAMS_DIR, load_yaml

CEILINGS_FILE = HPARAMS_DIR / "ceilings.yaml"
CEILING_RULE = ("the largest FLOPs per edit among the methods' reference configurations (each search space's "
                "reference point) on this model, sequential, one edit per call")
DECLARED = "declared"
NONE = "none"


def declared_ceilings() -> dict[str, dict]:
    """hparams key -> its entry (flops_per_edit, set_by, reference and shipped FLOPs per method, ...)."""
    return load_yaml(CEILINGS_FILE) if CEILINGS_FILE.exists() else {}


def check_ceiling_setting(value: str) -> None:
    """'declared', 'none' or a positive number of FLOPs per edit."""
    if value in (DECLARED, NONE):
        return
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise ConfigError(f"{setting('compute_ceiling')} must be '{DECLARED}', '{NONE}' or a positive number of "
                          f"FLOPs per edit, got {value!r}")


def resolve_ceiling(value: str, hparams_key: str) -> ComputeCeiling:
    """The ceiling a run works under: the model's declared one (none declared: no ceiling, said so),
    none, or the number given."""
    check_ceiling_setting(value)
    if value == NONE:
        return ComputeCeiling(None, "none: asked for")
    if value != DECLARED:
        return ComputeCeiling(float(value), "given for this run")
    entry = declared_ceilings().get(hparams_key)
    if entry is None:
        return ComputeCeiling(None, f"none declared for {hparams_key} ({CEILINGS_FILE.name})")
    return ComputeCeiling(float(entry["flops_per_edit"]), f"declared for {hparams_key} ({CEILINGS_FILE.name}: "
                          f"{CEILING_RULE})", entry.get("set_by"))


def ceiling_entry(reference: Mapping[str, float], shipped: Mapping[str, float], edits: int, date: str,
                  sha: str | None) -> dict:
    """The rule applied to measured reference FLOPs per edit (method -> FLOPs), with the shipped
    YAMLs' FLOPs beside them (which of them lie over it)."""
    if not reference:
        raise ConfigError("no reference configuration was measured: the ceiling's rule needs at least one")
    set_by = max(reference, key=lambda m: reference[m])
    scale = 10.0 ** (math.floor(math.log10(reference[set_by])) - 2)
    ceiling = float(f"{math.ceil(reference[set_by] / scale) * scale:.3g}")  # 3 digits, rounded up: never under it
    return {"flops_per_edit": ceiling, "set_by": set_by, "edits": edits, "date": date, "git_sha": sha,
            "reference": {m: float(f"{v:.4g}") for m, v in reference.items()},
            "shipped": {m: float(f"{v:.4g}") for m, v in shipped.items()},
            "shipped_over": sorted(m for m, v in shipped.items() if v > ceiling)}


def write_entry(hparams_key: str, entry: dict) -> None:
    """Declares (or replaces) `hparams_key`'s ceiling in CEILINGS_FILE, the others kept."""
    from filelock import FileLock

    from editbench.harness.results import atomic_write_text

    header = ("# Compute ceilings, FLOPs per edit, one per model (hparams key): editbench/harness/ceiling.py.\n"
              f"# Rule: {CEILING_RULE}.\n# Written by scripts/ceiling.py (asked to write); reference/shipped: each "
              "method's FLOPs per edit at its reference configuration and at its shipped YAML.\n")
    # read, add, write under one lock: two measurements writing at once (micro and default side by side)
    # would otherwise each write the file they read, and the later one drop the other's entry
    with FileLock(str(CEILINGS_FILE.with_name(f".{CEILINGS_FILE.name}.lock")), timeout=120):
        entries = {**declared_ceilings(), hparams_key: entry}
        atomic_write_text(CEILINGS_FILE, header + yaml.safe_dump(entries, sort_keys=True, width=110))
