"""The typed run record (harness/record.py) declares every key a real run writes."""
import json

from editbench.cli import main
from editbench.harness.record import CheckpointRow, EditRow, PerEdit, RunRecord, Scores


def _keys(record) -> set[str]:
    return set(record.__required_keys__ | record.__optional_keys__)


def test_a_real_run_writes_only_declared_keys(micro_world, tmp_path):
    assert main(["run", "--method", "ft", "--world", "micro", "--edits", "2", "--checkpoints", "1,2",
                 "--out", str(tmp_path), "--quiet"]) == 0
    results = json.loads((tmp_path / "ft" / "results.json").read_text())
    assert set(results) <= _keys(RunRecord), set(results) - _keys(RunRecord)
    for row in results["checkpoints"]:
        assert set(row) <= _keys(CheckpointRow), set(row) - _keys(CheckpointRow)
        assert all(set(edit) <= _keys(PerEdit) for edit in row["per_edit"])
    for line in (tmp_path / "ft" / "edits.jsonl").read_text().splitlines():
        row = json.loads(line)
        immediate = {k.removeprefix("immediate_") for k in row if k.startswith("immediate_")}
        assert immediate and immediate <= _keys(Scores)
        own = {k for k in row if not k.startswith("immediate_")}
        assert own <= _keys(EditRow) | {"final_loss", "initial_loss", "update_norm", "steps"}, own - _keys(EditRow)
