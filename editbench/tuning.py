"""`editbench tune`: pick a method's hyper-parameters on a dev split, with the same budget for every
method, and write the chosen cell as a YAML with its provenance.

The search never sees the leaderboard's edits: on the world it draws from the dev pool (people
disjoint from the edit pool, see benchmarks/world.py); the CLI refuses anything else. Cells are the
grid's product, or, when that exceeds the budget, a seeded random sample of `budget` of them. The
criterion is the ranking score (reports/stats.py) at the final checkpoint.
"""
from __future__ import annotations

import datetime
import itertools
import random
import yaml

from editbench.core import ConfigError

DEFAULT_BUDGET = 16  # cells per method: the same for every method tuned for a leaderboard


def plan_cells(grid: dict[str, list], budget: int, seed: int = 0) -> list[dict]:
    """Every cell of the grid when it fits the budget, else `budget` cells drawn without replacement."""
    if budget < 1:
        raise ConfigError(f"--budget must be >= 1, got {budget}")
    cells = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    if len(cells) <= budget:
        return cells
    picked = sorted(random.Random(f"editbench-tune-{seed}").sample(range(len(cells)), budget))
    return [cells[i] for i in picked]


def best_cell(scored: list[tuple[dict, float | None]]) -> tuple[dict, float]:
    """The cell with the highest score (the first such cell on ties); cells without a score never win."""
    valid = [(cell, score) for cell, score in scored if score is not None]
    if not valid:
        raise ConfigError("no tuning cell produced a score")
    return max(valid, key=lambda item: item[1])


class _NoAliases(yaml.SafeDumper):
    """Writes a repeated dict (the chosen cell is also in the score list) out in full, not as &id001."""

    def ignore_aliases(self, data) -> bool:
        return True


def tuned_yaml(method: str, base_values: dict, chosen: dict, provenance: dict) -> str:
    """The YAML text: base values with the chosen cell on top, and the provenance block first."""
    values = {k: v for k, v in base_values.items() if k != "provenance"}
    values.update(chosen)
    header = (f"# {method} on the world model, chosen by `editbench tune` on the dev split "
              f"(people disjoint from the leaderboard's edits). Provenance below; rerun to refresh.\n")
    body = yaml.dump({"provenance": provenance}, Dumper=_NoAliases, sort_keys=False, default_flow_style=None,
                     width=110)
    def line(key, value) -> str:  # block mapping, lists in flow style as in the hand-written YAMLs
        if isinstance(value, list):
            return f"{key}: {yaml.dump(value, Dumper=_NoAliases, default_flow_style=True).strip()}\n"
        return yaml.dump({key: value}, Dumper=_NoAliases, default_flow_style=False)

    lines = "".join(line(k, v) for k, v in _plain(values).items())
    return header + body + lines


def _plain(values: dict) -> dict:
    """Tuples as lists, so the YAML reads like the hand-written ones."""
    def plain(v):
        return [plain(x) for x in v] if isinstance(v, (list, tuple)) else v
    return {k: plain(v) for k, v in values.items()}


def provenance_block(grid: dict, cells: list[dict], scored: list[tuple[dict, float | None]], chosen: dict,
                     score: float, run: dict) -> dict:
    return {
        "tool": "editbench tune",
        "split": "dev",
        "grid": {k: list(v) for k, v in grid.items()},
        "budget": run["budget"],
        "cells_run": len(cells),
        "protocol": run["protocol"],
        "n_edits": run["n_edits"],
        "checkpoints": run["checkpoints"],
        "world": run["world"],
        "world_fingerprint": run["fingerprint"],
        "seed": run["seed"],
        "criterion": "ranking score at the final checkpoint",
        "chosen": chosen,
        "dev_score": round(score, 4),
        "scores": [{"cell": c, "score": None if s is None else round(s, 4)} for c, s in scored],
        "date": datetime.date.today().isoformat(),
        "git_sha": run["git_sha"],
    }

