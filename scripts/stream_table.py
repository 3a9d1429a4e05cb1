"""The stream table of a long run (docs/measurements): per method and checkpoint, the editing seconds
of the interval since the previous checkpoint (and per edit), the scoring seconds (and how many
earlier edits were scored), the generation verdicts, exam, held-out perplexity and the collapse
signals (largest ‖W_T‖/‖W_0‖ and ‖W_T − W_0‖ over the edited matrices).

    python scripts/stream_table.py runs/large-k100-3000 [--csv out.csv]
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def rows(run_dir: Path) -> list[dict]:
    out = []
    for path in sorted(run_dir.glob("*/results.json")):
        result = json.loads(path.read_text())
        previous_t, previous_s = 0, 0.0
        for cp in result["checkpoints"]:
            t, seconds = cp["edits"], cp["edit_seconds"]
            weights = cp.get("weights") or {}
            out.append({
                "method": result["method"], "protocol": result.get("protocol_label"), "T": t,
                "interval_edit_s": round(seconds - previous_s, 1),
                "s_per_edit": round((seconds - previous_s) / (t - previous_t), 4),
                "eval_s": cp["eval_seconds"], "scored": cp.get("scored_edits", t),
                "reliability_gen": cp.get("reliability_gen"), "generalization_gen": cp.get("generalization_gen"),
                "locality_gen": cp.get("locality_gen"), "exam": cp["general"]["accuracy"],
                "perplexity": cp.get("perplexity"), "perplexity_pre": cp.get("perplexity_pre"),
                "max_norm_ratio": weights.get("max_norm_ratio"), "max_update_norm": weights.get("max_update_norm"),
                "diverged_calls": result.get("diverged_edits"), "failed_calls": result.get("failed_edits"),
            })
            previous_t, previous_s = t, seconds
    return out


def _fmt(value, digits=3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(table: list[dict]) -> str:
    head = ("| method | T | editing s since last (per edit) | scoring s (edits scored) | reliability (gen) | "
            "generalization (gen) | locality (gen) | exam | perplexity | largest ‖W_T‖/‖W_0‖ | largest ‖W_T − W_0‖ |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in table:
        lines.append(f"| {r['method']} | {r['T']} | {r['interval_edit_s']} ({r['s_per_edit']:.3f}) | "
                     f"{r['eval_s']:.1f} ({r['scored']}) | {_fmt(r['reliability_gen'])} | "
                     f"{_fmt(r['generalization_gen'])} | {_fmt(r['locality_gen'])} | {_fmt(r['exam'])} | "
                     f"{_fmt(r['perplexity'])} | {_fmt(r['max_norm_ratio'], 2)} | {_fmt(r['max_update_norm'], 2)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--csv", type=Path)
    args = parser.parse_args(argv)
    table = rows(args.run_dir)
    if not table:
        print(f"{args.run_dir}: no */results.json", file=sys.stderr)
        return 2
    print(markdown(table))
    if args.csv:
        with args.csv.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
