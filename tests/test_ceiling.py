"""The compute ceiling: declared per model by its rule, recorded by every run, marked in the
leaderboard, infeasible in a tune (harness/ceiling.py)."""
import pytest
import yaml

import editbench
from editbench.cli import main
from editbench.core import ConfigError
from editbench.harness.ceiling import ceiling_entry, declared_ceilings, resolve_ceiling
from editbench.harness.compute import OverCeiling
from editbench.harness.search import LogFloat, SearchSpace
from editbench.reports import tables
from editbench.reports.leaderboard import _header_lines, header_facts
from editbench.tuning import TuneSettings, search


def test_the_rule_is_the_costliest_reference_configuration():
    entry = ceiling_entry({"rome": 2.7534e10, "ft": 3.5e8}, {"rome": 7.7e9, "wise": 5.54e10}, edits=3,
                          date="2026-12-07", sha=None)
    assert entry["set_by"] == "rome" and entry["flops_per_edit"] >= 2.7534e10  # rounded, never under it
    assert entry["flops_per_edit"] == pytest.approx(2.7534e10, rel=1e-2) and entry["shipped_over"] == ["wise"]
    with pytest.raises(ConfigError):
        ceiling_entry({}, {}, edits=3, date="x", sha=None)


def test_a_ceiling_is_declared_none_or_given():
    micro = declared_ceilings()["world-micro"]  # measured by scripts/ceiling.py, shipped with the package
    assert micro["flops_per_edit"] == max(micro["reference"].values()) or micro["flops_per_edit"] > max(
        micro["reference"].values())
    declared = resolve_ceiling("declared", "world-micro")
    assert declared.flops_per_edit == micro["flops_per_edit"] and declared.set_by == micro["set_by"]
    assert resolve_ceiling("declared", "no-such-model").flops_per_edit is None
    assert resolve_ceiling("none", "world-micro").flops_per_edit is None
    assert resolve_ceiling("1e9", "world-micro").flops_per_edit == 1e9
    for bad in ("0", "-5", "nan", "lots"):
        with pytest.raises(ConfigError, match="compute_ceiling"):
            resolve_ceiling(bad, "world-micro")


def test_a_bad_ceiling_is_one_line_before_anything_runs(capsys, tmp_path):
    assert main(["run", "--method", "ft", "--world", "micro", "--edits", "2", "--compute-ceiling", "lots",
                 "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--compute-ceiling" in err[0] and not (tmp_path / "r").exists()


def test_a_run_records_its_ceiling_and_the_board_marks_a_method_over_it(micro_world):
    over = editbench.run(["ft", "ultraedit"], world="micro", edits=2, checkpoints=[2], count_flops=1,
                         compute_ceiling="1e8", count_scoring_flops=True).results
    assert [r["compute_ceiling"]["flops_per_edit"] for r in over] == [1e8, 1e8]
    rows = {r["method"]: r for r in tables.final_rows(over)}
    assert rows["ft"]["flops_per_edit"] > 1e8 > rows["ultraedit"]["flops_per_edit"]  # FT-M ~5e8, UltraEdit ~2e7
    assert rows["ft"]["over_ceiling"] and not rows["ultraedit"]["over_ceiling"]
    text = tables.ranking_markdown(tables.ranking(list(rows.values()), over, "generation"))
    assert "| ft ‡ |" in text and "‡ ft:" in text and "ultraedit ‡" not in text
    header = _header_lines(header_facts(over))
    assert any(line.startswith("compute ceiling: 100 MFLOPs per edit (given") for line in header)
    # scoring's own cost, from a replay of the pre-edit scoring (every edit, fluency, exam, perplexity)
    assert over[0]["pre"]["scoring_flops"] > 1e6 and any("(the pre-edit scoring, counted on a replay)" in line
                                                          for line in header)
    free = editbench.run(["ft"], world="micro", edits=2, checkpoints=[2], count_flops=1, compute_ceiling="none").results
    assert free[0]["compute_ceiling"]["flops_per_edit"] is None and not tables.final_rows(free)[0]["over_ceiling"]
    assert any(line.startswith("compute ceiling: none (none: asked for)") for line in _header_lines(header_facts(free)))
    declared = editbench.run(["ft"], world="micro", edits=1, checkpoints=[1], count_flops=0).results[0]
    assert declared["compute_ceiling"]["flops_per_edit"] == declared_ceilings()["world-micro"]["flops_per_edit"]


class _Costly:
    """A made-up method whose floor's first edit costs more than the ceiling when x > 0.7."""

    def floor(self, slot, values):
        if values["x"] > 0.7:
            raise OverCeiling(f"x={values['x']}: over the compute ceiling")
        return 1.0, 1.0

    def run(self, slot, values, report):
        return values["x"]  # the costlier, the better: the ceiling alone keeps the tune off them


def test_a_trial_over_the_ceiling_is_infeasible_in_a_tune(tmp_path):
    space = SearchSpace("made up", (LogFloat("x", 0.9, low=0.1, high=1.0),))
    tuned = search(space, 4, _Costly(), tmp_path / "t", "costly", TuneSettings(budget=12, seed=0), log=lambda m: None)
    over = [t for t in tuned["trials"] if t.get("over_ceiling")]
    assert over and tuned["trials"][0] in over  # the reference point x = 0.9 is over it
    assert tuned["trials_over_ceiling"] == len(over) and all(t["score"] is None for t in over)
    assert tuned["chosen"]["x"] <= 0.7 and tuned["floor_passed"]


def test_tune_stops_a_real_trial_over_the_ceiling_at_its_first_edit(micro_world, tmp_path, capsys):
    out = tmp_path / "tune"
    code = main(["tune", "--method", "ft", "--budget", "1", "--world", "micro", "--split", "dev", "--edits", "3",
                 "--compute-ceiling", "1e8", "--out", str(out), "--quiet"])
    assert code == 1  # the method failed, not the input: exit 1 as a failed run, one line, nothing written
    err = capsys.readouterr().err
    assert err.strip() == ("editbench: ft on world 'micro' (sequential): no trial of 1 produced a floor score "
                           "(every one failed, 1 over the compute ceiling); nothing written")
    assert not (out / "ft" / "tuned.yaml").exists()
    assert not list(out.glob("ft/trial-*"))  # stopped at the floor's first edit: no dev run
    code = main(["tune", "--method", "ft", "--budget", "1", "--world", "micro", "--split", "dev", "--edits", "3",
                 "--compute-ceiling", "1e12", "--floor-em", "0", "--out", str(tmp_path / "ok"), "--quiet"])
    assert code == 0
    prov = yaml.safe_load((tmp_path / "ok" / "ft" / "tuned.yaml").read_text())["provenance"]
    assert prov["compute_ceiling"] == 1e12 and prov["trials_over_ceiling"] == 0


def test_two_measurements_writing_at_once_keep_both_entries(tmp_path, monkeypatch):
    """scripts/ceiling.py for two worlds side by side: each reads the file, adds its entry and writes it.
    The read is slowed so that the second writer reads before the first has written; the lock makes
    it wait, so both entries survive (without it the later write dropped the earlier one)."""
    import threading
    import time

    from editbench.harness import ceiling

    monkeypatch.setattr(ceiling, "CEILINGS_FILE", tmp_path / "ceilings.yaml")
    read = ceiling.declared_ceilings

    def slow_read():
        found = read()
        time.sleep(0.3)
        return found

    monkeypatch.setattr(ceiling, "declared_ceilings", slow_read)
    entry = ceiling_entry({"rome": 1e10}, {"rome": 1e10}, edits=3, date="2026-12-08", sha=None)
    writers = [threading.Thread(target=ceiling.write_entry, args=(key, entry)) for key in ("world-a", "world-b")]
    for w in writers:
        w.start()
        time.sleep(0.05)  # the second starts while the first sleeps between its read and its write
    for w in writers:
        w.join()
    assert set(yaml.safe_load((tmp_path / "ceilings.yaml").read_text())) == {"world-a", "world-b"}
