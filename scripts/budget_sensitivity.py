"""How much the leaderboard depends on the tuning budget: the configs a tune with a smaller budget
would have chosen, and Kendall's tau between two leaderboards.

A study's trials are sampled one after another with a sampler seeded by (seed, trials done), so a
tune with budget B/2 asks exactly the first B/2 trials of the budget-B tune: its choice is read off
the same study, at no extra cost.

  python scripts/budget_sensitivity.py choose runs/tune-default-sequential --budget 16 --out runs/half/hparams
      -> one YAML per method (the tuned YAML with the half-budget choice on top); prints --hparams flags
  python scripts/budget_sensitivity.py tau runs/leaderboard runs/leaderboard-half
      -> both rankings and Kendall's tau between the scores
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from editbench.reports.stats import kendall_tau


def choose(tune_dir: Path, budget: int, out: Path) -> list[str]:
    """Per method: the best trial among the first `budget` that completed over the floor."""
    flags = []
    out.mkdir(parents=True, exist_ok=True)
    for record in sorted(tune_dir.glob("*/tune.json")):
        method = record.parent.name
        tuned = json.loads(record.read_text())
        early = [t for t in tuned["trials"] if t["trial"] < budget]
        passed = [t for t in early if t["state"] == "complete" and t["score"] is not None]
        ran = [t for t in early if t["state"] == "complete" and t.get("dev_score") is not None]
        if passed:  # the tune's own rule (editbench/tuning.py `record`)
            pick = max(passed, key=lambda t: (t["score"], -t["trial"]))
        elif ran:
            pick = max(ran, key=lambda t: (t["dev_score"], -t["trial"]))
        else:
            pick = max(early, key=lambda t: (t["floor_em"] or 0.0, t.get("floor_token") or 0.0, -t["trial"]))
        values = yaml.safe_load((record.parent / "tuned.yaml").read_text())
        values.pop("provenance", None)
        values.update(pick["config"])
        target = out / f"{method}.yaml"
        target.write_text(yaml.safe_dump(values, sort_keys=False))
        print(f"{method}: budget {budget} chooses trial {pick['trial']} (dev score {pick.get('dev_score')}), budget "
              f"{tuned['budget']} chose trial {tuned['chosen_trial']} (score {tuned['dev_score']})", file=sys.stderr)
        flags.append(f"--hparams {method}={target}")
    return flags


def tau(first: Path, second: Path) -> float | None:
    boards = [{r["method"]: r["score"] for r in json.loads((d / "leaderboard.json").read_text())["final"]}
              for d in (first, second)]
    methods = sorted(set(boards[0]) & set(boards[1]))
    for name, board in zip((first, second), boards):
        ranked = sorted(methods, key=lambda m: -(board[m] or 0.0))
        print(f"{name}: " + " > ".join(f"{m} {board[m]:.3f}" for m in ranked))
    return kendall_tau([boards[0][m] or 0.0 for m in methods], [boards[1][m] or 0.0 for m in methods])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("choose")
    c.add_argument("tune_dir", type=Path)
    c.add_argument("--budget", type=int, required=True)
    c.add_argument("--out", type=Path, required=True)
    t = sub.add_parser("tau")
    t.add_argument("first", type=Path)
    t.add_argument("second", type=Path)
    args = parser.parse_args()
    if args.command == "choose":
        print(" ".join(choose(args.tune_dir, args.budget, args.out)))
    else:
        print(f"Kendall's tau: {tau(args.first, args.second)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
