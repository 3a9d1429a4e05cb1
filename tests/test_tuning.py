"""`editbench tune`: dev split only, equal budget, a YAML with provenance."""
import json

import yaml

from editbench.benchmarks.world import make_requests
from editbench.benchmarks.world_model import load_world
from editbench.cli import main
from editbench.harness.hparams import build_config
from editbench.tuning import best_cell, plan_cells


def test_dev_and_leaderboard_edit_pools_are_disjoint(micro_world):
    world = load_world(micro_world)
    assert not set(world.pools["dev"]) & set(world.pools["edit"])
    assert world.pools["dev"] and all(not set(world.pools["dev"]) & set(world.pools[p]) for p in ("locality", "exam"))
    dev = make_requests(world, len(world.facts_of("dev")), seed=0, pool_name="dev")
    board = make_requests(world, len(world.facts_of("edit")), seed=0)
    assert not {r.subject for r in dev} & {r.subject for r in board}


def test_plan_cells_respects_the_budget():
    grid = {"a": [1, 2, 3, 4], "b": [0.1, 0.2, 0.3, 0.4, 0.5]}
    assert len(plan_cells(grid, 100)) == 20
    picked = plan_cells(grid, 16, seed=0)
    assert len(picked) == 16 and picked == plan_cells(grid, 16, seed=0) and len({tuple(c.items()) for c in picked}) == 16
    assert best_cell([({"a": 1}, 0.2), ({"a": 2}, None), ({"a": 3}, 0.5)]) == ({"a": 3}, 0.5)


def test_tune_reads_only_dev_edits_and_writes_provenance(micro_world, tmp_path, capsys):
    out, target = tmp_path / "tune", tmp_path / "ft.yaml"
    code = main(["tune", "--method", "ft", "--grid", "lr=1e-5,5e-4", "--world", "micro", "--split", "dev",
                 "--edits", "3", "--checkpoints", "3", "--out", str(out), "--write", str(target), "--quiet"])
    assert code == 0
    world = load_world(micro_world)
    board_ids = {f"world-{f.fid}" for f in world.facts_of("edit")}
    dev_ids = {f"world-dev-{f.fid}" for f in world.facts_of("dev")}
    for edits in out.glob("*/edits.jsonl"):
        ids = {json.loads(line)["case_id"] for line in edits.read_text().splitlines()}
        assert ids <= dev_ids and not ids & board_ids
    written = yaml.safe_load(target.read_text())
    prov = written["provenance"]
    assert prov["split"] == "dev" and prov["budget"] == 16 and prov["cells_run"] == 2
    assert prov["chosen"] == {"lr": written["lr"]} and prov["world_fingerprint"]
    from editbench.methods.ft import FTConfig

    build_config(FTConfig, written, str(target))  # the provenance block never reaches the config
    # the leaderboard's pool is refused
    assert main(["tune", "--method", "ft", "--grid", "lr=1e-5", "--world", "micro", "--edits", "3",
                 "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "dev split only" in capsys.readouterr().err
