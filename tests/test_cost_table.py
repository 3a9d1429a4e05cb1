"""scripts/cost_table.py at reduced shapes, so the GPU cost table cannot rot: an editor and its
EasyEdit twin on a random Llama-3-8B-shaped model (4 layers, hidden 128, the vocabulary cut)."""
import json
import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
EASYEDIT = Path(os.environ.get("EDITBENCH_EASYEDIT") or ROOT.parent / "shared" / "easyedit")


def test_cost_table_runs_at_tiny_shapes_and_writes_json_and_markdown(micro_world, cache_dir, tmp_path):
    twins = (EASYEDIT / "easyeditor" / "models").is_dir()
    cmd = [sys.executable, str(ROOT / "scripts" / "cost_table.py"), "--shape", "meta-llama-3-8b", "--scale", "tiny",
           "--vocab", "512", "--dtype", "float32", "--device", "cpu", "--edits", "2", "--step", "2",
           "--stats-samples", "20", "--methods", "ft,rome", "--out", str(tmp_path)] + ([] if twins else ["--no-twins"])
    env = {**os.environ, "EDITBENCH_CACHE": str(cache_dir), "EDITBENCH_EASYEDIT": str(EASYEDIT),
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    table = json.loads((tmp_path / "cost_table-meta-llama-3-8b-tiny-float32.json").read_text())
    editors = [(r["editor"], r["implementation"]) for r in table["rows"]]
    assert ("ft", "editbench") in editors and ("rome", "editbench") in editors
    if twins:
        assert ("easyedit:ROME", "EasyEdit") in editors
    for row in table["rows"]:
        assert row["seconds_per_edit_step1"] > 0 and row["seconds_per_edit_step2"] > 0 and row["peak_mb"] > 0
    assert table["stats_tokens"] > 0 and table["evaluation_seconds_per_checkpoint"] > 0
    assert table["machine"]["packages"]["torch"] and table["parameters"] > 0
    markdown = (tmp_path / "cost_table-meta-llama-3-8b-tiny-float32.md").read_text()
    assert "| rome | editbench |" in markdown and ("editbench / EasyEdit" in markdown) == twins
