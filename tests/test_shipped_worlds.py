"""The worlds ship as trained files (editbench/worlds/<size>/): used as shipped, never trained on first
contact, refused with one line when a file is damaged; the recipe is a check (`editbench world rebuild`)."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from editbench.benchmarks import world as world_gen
from editbench.benchmarks import world_model
from editbench.benchmarks.world import WORLD_SIZES, WorldConfig, world_config

FINGERPRINTS = Path(__file__).resolve().parents[1] / "docs" / "measurements" / "world-fingerprints.json"


@pytest.mark.parametrize("size", list(WORLD_SIZES))
def test_every_world_ships_the_bits_its_yamls_were_measured_on(size):
    fingerprints = json.loads(FINGERPRINTS.read_text())
    measured_on = fingerprints["machines"][fingerprints["leaderboard_machine"]][size]
    folder = world_model.shipped_dir(world_config(size))
    assert folder is not None and folder.parent == world_model.SHIPPED_ROOT
    report, damage = world_model.verify_world(folder, record_hashes=False)
    assert damage is None and report["weights_sha256"] == measured_on
    assert set(report["files"]) >= {"model.safetensors", "tokenizer.json", "config.json", "world.json",
                                     "corpus.txt", "exam/world_val.csv"}
    # what the files hold is what the recipe generates: the world's text is the config's
    assert world_model.load_world(folder).facts == world_gen.generate_world(world_config(size)).facts


def test_a_shipped_world_is_used_as_shipped_and_nothing_is_built(tmp_path, monkeypatch):
    monkeypatch.setenv("EDITBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(world_model, "build_world", lambda *a, **k: pytest.fail("a shipped world was built"))
    said = []
    folder = world_model.world_path("micro", log=said.append)
    assert folder == world_model.SHIPPED_ROOT / "micro" and "shipped weights 19a285f0f332b4a2" in said[0]
    assert not (tmp_path / "cache").exists()  # not even a lock file


def test_a_changed_recipe_is_not_the_shipped_world():
    changed = replace(world_config("micro"), steps=351)
    assert world_model.shipped_dir(changed) is None
    assert world_model.shipped_dir(WorldConfig(name="nosuch")) is None


def _damaged_copy(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "worlds"
    shutil.copytree(world_model.SHIPPED_ROOT / "micro", root / "micro")
    monkeypatch.setattr(world_model, "SHIPPED_ROOT", root)
    weights = root / "micro" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of the last weight
    weights.write_bytes(bytes(data))
    return weights


def test_a_damaged_shipped_file_is_refused_with_one_line_naming_it(tmp_path, monkeypatch, capsys):
    from editbench import cli

    weights = _damaged_copy(tmp_path, monkeypatch)
    monkeypatch.setenv("EDITBENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(world_model.WorldDamagedError, match="model.safetensors differs from its recorded sha256"):
        world_model.world_path("micro", log=lambda m: None)
    assert cli.main(["run", "--method", "noedit", "--world", "micro", "--edits", "1", "--out", str(tmp_path / "r"),
                     "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(weights) in err and "make world-rebuild WORLD=micro" in err
    assert not (tmp_path / "r" / "noedit").exists() and not (tmp_path / "cache" / "world").exists()
    assert cli.main(["world", "check", "--world", "micro"]) == 2


def test_rebuild_trains_the_recipe_into_the_cache_and_tables_both_fingerprints(tmp_path, monkeypatch):
    """The recipe stays tested on a world that trains in seconds; its 'shipped' copy is the first build
    (a size's real rebuild takes minutes: `make world-rebuild WORLD=micro`)."""
    nano = WorldConfig(name="nano-ship", n_entities=30, relations=("city", "profession"), vocab_size=320,
                       hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, num_kv_heads=1, steps=20,
                       batch_size=32, min_train_accuracy=0.0, min_heldout_accuracy=0.0)
    monkeypatch.setenv("EDITBENCH_CACHE", str(tmp_path / "cache"))
    first = world_model.rebuild_world(nano, log=lambda m: None)
    monkeypatch.setattr(world_model, "SHIPPED_ROOT", tmp_path / "worlds")
    shutil.copytree(first, tmp_path / "worlds" / nano.name)
    assert world_model.ensure_world(nano, log=lambda m: None) == tmp_path / "worlds" / nano.name
    again = world_model.rebuild_world(nano, log=lambda m: None)
    assert again == first == world_model.world_dir(nano)
    rows = world_model.fingerprint_table(nano, again)
    shipped = json.loads((tmp_path / "worlds" / nano.name / "build_report.json").read_text())
    rebuilt = json.loads((again / "build_report.json").read_text())
    assert f"| weights sha256 | {shipped['weights_sha256']} | {rebuilt['weights_sha256']} |" in rows[2]
    assert any(row.startswith(f"| {nano.name} | heldout accuracy |") for row in rows)
    same = shipped["weights_sha256"] == rebuilt["weights_sha256"]  # one machine: the same bits
    assert same and rows[-1].startswith(f"| {nano.name} | same bits | yes |")
