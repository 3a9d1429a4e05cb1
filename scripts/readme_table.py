"""The README's leaderboard table from a finished `make leaderboard` folder (its leaderboard.md for the
ranks and intervals, each method's results.json for the numbers):

    python scripts/readme_table.py runs/leaderboard
"""
import re
import sys
from pathlib import Path

from editbench.harness.results import load_results
from editbench.reports.tables import checkpoint_row

out = Path(sys.argv[1])
md = (out / "leaderboard.md").read_text()
ranks = {}
for m in re.finditer(r"^\| (\d+) \| (\[\d+, \d+\]) \| (\w+)( †)?( ‡)? \|", md, re.M):  # † floor, ‡ ceiling
    ranks[m.group(3)] = (int(m.group(1)), m.group(2), (m.group(4) or "") + (m.group(5) or ""))
rows = {}
for f in sorted(out.glob("*/results.json")):
    r = load_results(f)
    c = r["checkpoints"][-1]
    row = checkpoint_row(r, c)
    rows[r["method"]] = (c, row["score_token"], row["score_generation"])
tok_rank = {m: i + 1 for i, (m, _) in enumerate(sorted(rows.items(), key=lambda kv: (-(kv[1][1] or 0), kv[0])))}
print("| method | score | rank [95%] | reliability | generalization | locality | portability (two-hop) | exam | token-basis score (rank) | gap: token acc. − gen. EM |")
print("|---|---|---|---|---|---|---|---|---|---|")
for m, (rank, iv, dag) in sorted(ranks.items(), key=lambda kv: kv[1][0]):
    c, tok, gen = rows[m]
    g = c.get("groups", {})
    gap = c["reliability"] - c["reliability_gen"]
    print(f"| {m}{dag} | {gen:.3f} | {rank} {iv} | {c['reliability_gen']:.3f} | {c['generalization_gen']:.3f} | "
          f"{c['locality_gen']:.3f} | {c['portability_gen']:.3f} ({g.get('portability_two_hop_gen', 0):.3f}) | {c['general']['accuracy']:.3f} | "
          f"{tok:.3f} ({tok_rank[m]}) | {gap:+.3f} |")
