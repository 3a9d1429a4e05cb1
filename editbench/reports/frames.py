"""Results as pandas frames: what the Python API returns and reads back from a run folder."""
from __future__ import annotations

from pathlib import Path

from editbench.harness.record import RunRecord


class Results:
    """Results of one or more runs (one per method, order or cell), as the CLI writes them."""

    def __init__(self, results: list[RunRecord]) -> None:
        self.results = results

    def __len__(self) -> int:
        return len(self.results)

    def to_frame(self):
        """One row per method and checkpoint: every metric, its interval bounds, the score (pandas)."""
        import pandas as pd

        from editbench.reports import tables

        return pd.DataFrame([_flat(row) for row in tables.all_rows(self.results)])

    def edits_frame(self):
        """One row per method, checkpoint and edit: the per-edit scores at that checkpoint (pandas)."""
        import pandas as pd

        rows = [{"method": r["method"], "order": r.get("order", 0), "T": cp["edits"], **edit}
                for r in self.results for cp in r["checkpoints"] for edit in cp.get("per_edit", [])]
        return pd.DataFrame(rows)


def _flat(row: dict) -> dict:
    """Interval lists become `<metric>_lo` / `<metric>_hi` columns."""
    out = {}
    for key, value in row.items():
        if key.endswith("_ci"):
            metric = key[:-3]
            out[f"{metric}_lo"], out[f"{metric}_hi"] = (value or (None, None))[:2]
        else:
            out[key] = value
    return out


def load_results(run_dir: str | Path) -> Results:
    """Every complete run under `run_dir` (`<method>/results.json`, `<method>/order-K/...`)."""
    from editbench.harness.results import find_results, load_results as read
    from editbench.harness.store import complete_only

    paths = find_results(Path(run_dir))
    results, _, _ = complete_only([read(p) for p in paths], paths)
    return Results(results)
