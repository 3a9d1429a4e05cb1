"""End to end through the command line on the micro world (few, small cases)."""
import json
import subprocess
import sys

import pytest

from editbench.cli import main


def test_run_and_report_end_to_end(micro_world, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--method", "noedit", "--method", "ft", "--world", "micro", "--edits", "3",
                 "--checkpoints", "1,3", "--seed", "0", "--out", str(out), "--quiet"])
    assert code == 0
    assert "| ft |" in capsys.readouterr().out
    for method in ("noedit", "ft"):
        results = json.loads((out / method / "results.json").read_text())
        assert results["schema_version"] == 2 and results["status"] == "complete" and results["method"] == method and results["seed"] == 0
        assert {"git_sha", "packages", "config", "model"} <= results.keys()
        cps = results["checkpoints"]
        assert [cp["edits"] for cp in cps] == [1, 3]
        keys = {"edits", "reliability", "reliability_em", "generalization", "locality", "portability", "fluency",
                "fluency_pre", "general", "edit_seconds", "eval_seconds"}
        assert keys <= cps[0].keys()
        assert {"exam", "accuracy", "accuracy_pre", "by_category", "by_category_pre"} == set(cps[0]["general"])
        assert len((out / method / "edits.jsonl").read_text().splitlines()) == 3
    ft = json.loads((out / "ft" / "results.json").read_text())["checkpoints"]
    assert ft[0]["reliability"] == 1.0
    assert main(["report", str(out)]) == 0
    md = (out / "leaderboard.md").read_text()
    assert "| noedit |" in md and "| ft |" in md and "exam: world" in md
    assert (out / "leaderboard.csv").read_text().count("\n") == 3
    assert (out / "reliability.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "nosuch"], "unknown method 'nosuch' (valid: "),
        (["--method", "ft", "--set", "ft.nokey=1"], "--set ft.nokey: unknown key for ft (valid: "),
        (["--method", "rsft_merge", "--set", "rsft_merge.delta_weight=1.5"], "delta_weight=1.5 is out of range (valid: [0, 1])"),
        (["--method", "ft", "--set", "ft.layer=9"], "layer index 9 is out of range (valid: 0..3)"),
        (["--method", "ft", "--benchmark", "nosuch"], "unknown benchmark 'nosuch' (valid: world"),
        (["--method", "lora", "--set", "lora.target_modules=[nothing]"], "match nothing"),
    (["--method", "rome", "--set", "rome.layers=[7]"], "layer index 7 is out of range (valid: 0..3)"),
    (["--method", "memit", "--set", "memit.mom2_corpus=/nonexistent/text.txt"], "corpus file '/nonexistent/text.txt' does not exist"),
    (["--method", "noedit", "--orders", "0"], "--orders must be >= 1"),
    (["--method", "noedit", "--benchmark", "zsre"], "benchmark 'zsre' needs --data FILE"),
    (["--method", "noedit", "--benchmark", "zsre", "--data", "/nonexistent.json"], "--data /nonexistent.json: no such file"),
    (["--method", "noedit", "--exam", "ceval"], "exam 'ceval' needs --exam-dir"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(args, message, micro_world, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", *args, "--world", "micro", "--edits", "2", "--out", str(out), "--quiet"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("editbench:")]
    assert code == 2
    assert len(errors) == 1 and message in errors[0]
    assert not out.exists()


def test_listing_commands_and_module_entry(capsys):
    assert main(["methods"]) == 0
    listed = capsys.readouterr().out
    assert all(m in listed.split() for m in ("noedit", "ft", "ft_l", "rsft", "rsft_merge", "lora", "rome", "memit"))
    proc = subprocess.run([sys.executable, "-m", "editbench", "benchmarks"], capture_output=True, text=True)
    assert proc.returncode == 0
    names = [line.split()[0] for line in proc.stdout.splitlines() if line.startswith("  ")]
    assert names == ["world", "zsre", "counterfact", "wikibigedit", "knowedit", "mquake", "world", "ceval", "mmlu"]


def test_sweep_writes_table_heatmaps_and_tradeoff(micro_world, tmp_path):
    out = tmp_path / "sweep"
    code = main(["sweep", "--method", "rsft_merge", "--grid", "delta_weight=0.0,1.0", "--grid", "density=1.0",
                 "--world", "micro", "--edits", "2", "--checkpoints", "2", "--out", str(out), "--quiet"])
    assert code == 0
    table = (out / "sweep.csv").read_text().splitlines()
    assert table[0].startswith("delta_weight,density,score,reliability,reliability_em") and len(table) == 3
    rows = {line.split(",")[0]: line.split(",") for line in table[1:]}
    assert float(rows["0.0"][3]) < float(rows["1.0"][3])  # delta_weight 0 keeps the base: no edit
    assert float(rows["0.0"][2]) == 0.0  # and scores 0, as doing nothing does
    for name in ("heatmap_reliability.png", "heatmap_exam_accuracy.png", "tradeoff.png", "sweep.md"):
        assert (out / name).stat().st_size > 0


def test_compare_runs_methods_on_the_same_edits(micro_world, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", "--method", "noedit", "--method", "ft", "--world", "micro", "--edits", "3",
                 "--checkpoints", "3", "--out", str(out), "--quiet"])
    assert code == 0
    [row] = json.loads((out / "comparison.json").read_text())
    assert (row["method"], row["reference"]) == ("ft", "noedit")
    assert row["reliability_diff"] > 0
    assert row["reliability"] == pytest.approx(row["reliability_ref"] + row["reliability_diff"])
    assert "| ft | noedit | 3 |" in capsys.readouterr().out
    assert (out / "leaderboard.html").exists()


def test_orders_run_seeded_shuffles_of_the_same_edits(micro_world, tmp_path):
    out = tmp_path / "orders"
    args = ["run", "--method", "noedit", "--world", "micro", "--edits", "4", "--checkpoints", "4", "--orders", "2",
            "--out", str(out), "--quiet"]
    assert main(args) == 0
    orders = [[json.loads(line)["case_id"] for line in (out / "noedit" / f"order-{k}" / "edits.jsonl").open()]
              for k in (0, 1)]
    assert sorted(orders[0]) == sorted(orders[1]) and orders[0] != orders[1]
    assert json.loads((out / "noedit" / "order-1" / "results.json").read_text())["order"] == 1
    assert main(args[:-3] + ["--out", str(tmp_path / "again"), "--quiet"]) == 0  # the same seed, the same orders
    again = [json.loads(line)["case_id"] for line in (tmp_path / "again" / "noedit" / "order-1" / "edits.jsonl").open()]
    assert again == orders[1]
    assert main(["report", str(out)]) == 0
    assert "edit orders 2" in (out / "leaderboard.md").read_text()


def test_device_map_and_small_eval_batches_give_the_same_numbers(micro_world, tmp_path):
    """A model loaded through accelerate's device_map (all on the CPU here), and evaluation cut into
    batches of at most 3 rows and 40 padded tokens, score exactly what the plain run scores."""
    def numbers(out):
        r = json.loads((out / "rome" / "results.json").read_text())
        cp = r["checkpoints"][-1]
        return [cp[k] for k in ("reliability", "generalization", "locality", "efficacy")], \
            [(e["reliability"], e["generalization"], e["locality"]) for e in cp["per_edit"]]

    base = ["run", "--method", "rome", "--world", "micro", "--edits", "4", "--checkpoints", "4", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0
    assert main([*base, "--out", str(tmp_path / "mapped"), "--device-map", "auto"]) == 0
    assert main([*base, "--out", str(tmp_path / "small"), "--eval-batch-size", "3", "--eval-token-budget", "40"]) == 0
    plain = numbers(tmp_path / "plain")
    assert numbers(tmp_path / "mapped") == plain
    assert numbers(tmp_path / "small") == plain
    assert main([*base, "--out", str(tmp_path / "x"), "--max-memory", "cpu=1GiB"]) == 2  # needs --device-map
