"""Reports from hand-made results: every file, self-contained HTML, bootstrap invariants, orders,
comparisons, and the regression gate's exit codes."""
import json
from html.parser import HTMLParser

import pytest

from editbench.core import DataError

from editbench.cli import main
from editbench.harness.results import SCHEMA_VERSION, upgraded
from editbench.harness.runner import write_run
from editbench.reports import tables
from editbench.reports.compare import comparison_rows
from editbench.reports.leaderboard import write_report
from editbench.reports.stats import (
    bootstrap_ci, exam_retention, overall_score, paired_diff_ci, rank_intervals, resampled_scores,
)

N = 10


def fake_result(method, reliability, locality=1.0, n=N, seed=0, order=0, exam=0.9, schema=SCHEMA_VERSION):
    """A results.json as the runner writes it: checkpoints 1 and n, per-edit rows for the last one."""
    def checkpoint(edits, rel):
        per_edit = [{"case_id": f"c{i}", "reliability": float(i < round(rel * edits)), "reliability_em": None,
                     "generalization": rel, "locality": locality, "portability": None} for i in range(edits)]
        return {"edits": edits, "reliability": sum(e["reliability"] for e in per_edit) / edits,
                "reliability_em": None, "generalization": rel, "locality": locality, "portability": None,
                "reliability_gain": rel, "generalization_gain": rel,
                "fluency": 4.0, "fluency_pre": 4.2, "general": {"exam": "world", "accuracy": exam, "accuracy_pre": 1.0},
                "edit_seconds": 0.5 * edits, "eval_seconds": 0.2, "per_edit": per_edit}
    return {
        "schema_version": schema, "method": method, "config": {}, "n_edits": n, "seed": seed, "order": order,
        "model": {"name": "toy-model", "hparams_key": "world", "model_type": "qwen2", "parameters": 1000},
        "git_sha": "abc123", "packages": {"editbench": "0.1.0"}, "created": "2026-11-25",
        "pre": {"fluency": 4.2, "exam": "world", "exam_accuracy": 1.0, "seconds": 0.1}, "failed_edits": 0,
        "memory": {"cpu_rss_mb": 100.0, "cuda_max_allocated_mb": None},
        "benchmark": {"name": "world", "world": "micro"},
        "checkpoints": [checkpoint(1, 1.0), checkpoint(n, reliability)],
    }


def write_fake_run(root, results):
    for r in results:
        sub = root / r["method"] / (f"order-{r['order']}" if r.get("order") is not None and
                                    any(x.get("order") for x in results if x["method"] == r["method"]) else "")
        write_run(sub, r, [])
    return root


class _Html(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.tables = [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tables += tag == "table"
        for key in ("src", "href"):
            if key in attrs:
                self.sources.append(attrs[key])


def test_report_writes_every_format_and_a_self_contained_page(tmp_path):
    run = write_fake_run(tmp_path, [fake_result("alpha", 0.8), fake_result("beta", 0.4, locality=0.5)])
    outputs = {p.name for p in write_report(run)}
    for name in ("leaderboard.md", "leaderboard.csv", "checkpoints.csv", "leaderboard.json", "leaderboard.html",
                 "reliability.png", "reliability.svg", "locality.png", "score.svg", "radar.png", "radar.svg"):
        assert name in outputs and (run / name).stat().st_size > 0, name
    md = (run / "leaderboard.md").read_text()
    assert "toy-model" in md and "N = 10" in md and "seed(s) 0" in md and "git abc123" in md and "exam: world" in md
    assert md.index("| alpha") < md.index("| beta")  # ranked by score
    parser = _Html()
    parser.feed((run / "leaderboard.html").read_text())
    assert parser.tables == 4 and parser.sources  # final, rank intervals, every checkpoint, every edit
    # self-contained: every image inline, every link within the page
    assert all(s.startswith("data:image/png;base64,") or s.startswith("#") for s in parser.sources)
    board = json.loads((run / "leaderboard.json").read_text())
    alpha = next(r for r in board["final"] if r["method"] == "alpha")
    assert alpha["reliability"] == pytest.approx(0.8)
    lo, hi = alpha["reliability_ci"]
    assert lo < 0.8 < hi
    edit, keep = (0.8 + 0.8) / 2, (1.0 + 0.9) / 2  # gains; locality and exam retention
    assert alpha["score"] == pytest.approx(2 * edit * keep / (edit + keep))


def test_bootstrap_intervals():
    assert bootstrap_ci([0.7] * 50) == (pytest.approx(0.7), pytest.approx(0.7))
    assert bootstrap_ci([]) is None
    sample = [1.0] * 120 + [0.0] * 280  # Bernoulli, p = 0.3, n = 400: normal-theory half width 0.045
    lo, hi = bootstrap_ci(sample)
    assert lo < 0.3 < hi
    assert 0.07 < hi - lo < 0.11
    assert bootstrap_ci(sample, seed=1) != bootstrap_ci(sample, seed=2)  # seeded, and the seed matters
    assert bootstrap_ci(sample, seed=3) == bootstrap_ci(sample, seed=3)
    mean_diff, (dlo, dhi) = paired_diff_ci([0.0] * 30, [1.0] * 30)
    assert mean_diff == 1.0 and dlo == dhi == 1.0
    assert exam_retention(0.9, 0.6) == 1.0 and exam_retention(0.3, 0.6) == 0.5 and exam_retention(None, 1) is None
    # harmonic mean of edit success (gains) and preservation: doing nothing scores 0 however much it keeps
    assert overall_score({"reliability_gain": 1.0, "generalization_gain": 0.5, "locality": 0.5}) == pytest.approx(
        2 * 0.75 * 0.5 / 1.25)
    assert overall_score({"reliability_gain": 0.0, "generalization_gain": 0.0, "locality": 1.0,
                          "exam_retention": 1.0}) == 0.0
    assert overall_score({"reliability_gain": 1.0, "generalization_gain": 1.0, "locality": 0.0,
                          "exam_retention": 0.0}) == 0.0
    assert overall_score({"locality": 0.5}) == 0.5 and overall_score({}) is None


def test_orders_are_combined_into_mean_and_std(tmp_path):
    results = [fake_result("alpha", 0.6, order=0), fake_result("alpha", 0.8, order=1)]
    [row] = tables.final_rows([upgraded(r) for r in results])  # as load_results reads them
    assert row["orders"] == 2 and row["reliability"] == pytest.approx(0.7)
    assert row["reliability_std"] == pytest.approx(0.1414, abs=1e-3)
    assert "0.700 ± 0.141" in tables.markdown([row])
    run = write_fake_run(tmp_path, results)
    assert (run / "alpha" / "order-1" / "results.json").exists()
    write_report(run)
    assert "edit orders 2" in (run / "leaderboard.md").read_text()


def test_comparison_marks_differences_whose_interval_excludes_zero():
    results = [fake_result("better", 1.0), fake_result("ref", 0.1), fake_result("same", 0.1)]
    rows = comparison_rows([upgraded(r) for r in results], ["ref", "same", "better"])  # the reference is the first method named
    same, better = rows
    assert same["reference"] == "ref" and better["method"] == "better"
    assert same["reliability_diff"] == 0 and not same["reliability_significant"]
    assert better["reliability_diff"] == pytest.approx(0.9) and better["reliability_significant"]
    assert better["exam_accuracy_diff"] == 0


def test_regress_exit_codes(tmp_path, capsys):
    base_run = write_fake_run(tmp_path / "base", [fake_result("alpha", 0.8), fake_result("beta", 0.5)])
    baseline = tmp_path / "baseline.json"
    assert main(["baseline", str(base_run), "--out", str(baseline)]) == 0
    same = write_fake_run(tmp_path / "same", [fake_result("alpha", 0.8), fake_result("beta", 0.5),
                                               fake_result("gamma", 0.3)])
    assert main(["regress", str(same), "--baseline", str(baseline)]) == 0
    out = capsys.readouterr().out
    assert "| gamma | reliability |" in out and "new" in out and "no regression" in out
    worse = write_fake_run(tmp_path / "worse", [fake_result("alpha", 0.6), fake_result("beta", 0.5)])
    assert main(["regress", str(worse), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    # every edit's generalization fell: a paired interval of [-0.2, -0.2] is a regression
    assert "| alpha | generalization | 0.800 | 0.600 | -0.200 | [-0.200, -0.200] | 0.05 | regressed |" in out
    # 2 of 10 edits lost reliability: a mean drop of 0.2 whose interval reaches 0 is not (yet) significant
    assert "REGRESSION in alpha/generalization:" in out and "alpha/reliability" not in out
    # a loose enough tolerance lets the same drop pass; a run directory works as the baseline too
    assert main(["regress", str(worse), "--baseline", str(base_run), "--tolerance", "reliability=0.25",
                 "--tolerance", "generalization=0.25"]) == 0
    capsys.readouterr()
    other_n = write_fake_run(tmp_path / "other-n", [fake_result("alpha", 0.8, n=20)])
    assert main(["regress", str(other_n), "--baseline", str(baseline)]) == 2
    assert "differ in 'n_edits'" in capsys.readouterr().err
    assert main(["regress", str(same), "--baseline", str(tmp_path / "missing.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    old = json.loads(baseline.read_text())
    old["schema_version"] = 0
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert main(["regress", str(same), "--baseline", str(tmp_path / "old.json")]) == 2
    assert "schema_version" in capsys.readouterr().err
    assert main(["regress", str(same), "--baseline", str(baseline), "--tolerance", "speed=1"]) == 2
    assert "unknown metric" in capsys.readouterr().err


def test_figures_are_fit_for_a_paper(tmp_path):
    """300 dpi PNG, text kept in the SVG, the checkpoints as plain tick labels, one radar for all."""
    import struct

    run = write_fake_run(tmp_path, [fake_result("alpha", 0.8), fake_result("beta", 0.8)])  # identical numbers
    write_report(run)
    png = (run / "reliability.png").read_bytes()
    width = struct.unpack(">I", png[16:20])[0]
    assert width >= 1500  # 6.5 in at 300 dpi, less the trimmed margins
    svg = (run / "reliability.svg").read_text()
    checkpoints = [str(cp["edits"]) for cp in fake_result("alpha", 0.8)["checkpoints"]]
    assert all(f">{t}<" in svg for t in checkpoints) and "10^" not in svg
    assert ">alpha<" in svg and ">beta<" in svg  # the legend names both, though their lines coincide
    radar = (run / "radar.svg").read_text()
    assert ">alpha (T=" in radar and ">beta (T=" in radar


def test_report_options_pick_formats_figures_and_checkpoint(tmp_path):
    run = write_fake_run(tmp_path, [fake_result("alpha", 0.8), fake_result("beta", 0.4)])
    names = {p.name for p in write_report(run, formats=("md",), metrics=("locality",), checkpoint=1)}
    assert names == {"leaderboard.md", "locality.png", "locality.svg", "radar.png", "radar.svg"}
    md = (run / "leaderboard.md").read_text()
    final = md.split("## Final checkpoint")[1].split("##")[0]
    assert "| alpha | sequential | 1 |" in final and "| 10 |" not in final
    with pytest.raises(DataError, match="`checkpoint` 7: no run has it"):
        write_report(run, checkpoint=7)
    with pytest.raises(DataError, match="`format` pdf: unknown"):
        write_report(run, formats=("pdf",))


def test_rank_intervals_on_invariants():
    import torch

    edits = 40
    strong = {"reliability_gen_gain": [1.0] * edits, "generalization_gen_gain": [1.0] * edits,
              "locality_gen": [1.0] * edits}
    noisy = {k: [float(i % 2) for i in range(edits)] for k in strong}
    twin = {k: list(v) for k, v in noisy.items()}
    fixed = {"exam_retention": 1.0}
    ranks = rank_intervals({"noisy": (noisy, fixed), "strong": (strong, fixed), "twin": (twin, fixed)}, "generation")
    assert ranks["strong"]["rank"] == 1 and ranks["strong"]["rank_ci"] == [1, 1]  # better on every edit
    assert ranks["strong"]["next"]["significant"]
    assert ranks["noisy"]["rank"] == ranks["twin"]["rank"] == 2  # the same edits, the same score: a shared rank
    assert ranks["noisy"]["rank_ci"] == [2, 2]  # paired: identical per-edit scores tie in every resample
    first = next(v for v in ranks.values() if v.get("next", {}).get("method") in ("noisy", "twin") and v["rank"] == 2)
    assert not first["next"]["significant"] and first["next"]["difference"] == 0
    # with the identity resample, the score is overall_score of the per-edit means
    row = {k: sum(v) / edits for k, v in noisy.items()} | fixed
    identity = torch.arange(edits)[None]
    assert resampled_scores(noisy, fixed, "generation", identity)[0].item() == pytest.approx(
        overall_score(row, "generation"))


def test_report_ranks_methods_with_intervals_and_marks_a_method_under_the_floor(tmp_path):
    under = fake_result("beta", 0.4, locality=0.5) | {"hparams": {"floor_passed": False, "floor_em": 0.61,
                                                                  "floor_edits": 18}}
    run = write_fake_run(tmp_path, [fake_result("alpha", 0.8), under])
    write_report(run)
    board = json.loads((run / "leaderboard.json").read_text())
    ranked = {r["method"]: r for r in board["ranking"]}
    assert ranked["alpha"]["rank"] == 1 and ranked["beta"]["rank"] == 2 and ranked["beta"]["under_floor"]
    final = {r["method"]: r for r in board["final"]}
    assert ranked["alpha"]["score"] == final["alpha"]["score"]
    md = (run / "leaderboard.md").read_text()
    assert "## Rank intervals" in md and "| beta † |" in md and "generated EM 0.61 on 18 independent" in md


def test_kendall_tau_and_rank_stability_across_seeds(tmp_path):
    from editbench.reports.stats import kendall_tau

    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)  # 2 concordant pairs, 1 discordant
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / 6 ** 0.5)  # tau-b with a tie in the first
    runs = [fake_result("alpha", 0.8, seed=0), fake_result("beta", 0.4, seed=0),
            fake_result("alpha", 0.3, seed=1), fake_result("beta", 0.6, seed=1)]
    for r in runs:
        write_run(tmp_path / f"seed-{r['seed']}" / r["method"], r, [])
    write_report(tmp_path)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "## Rank stability across edit samples" in md
    assert "| alpha | 1 | 2 | 1.50 |" in md and "seeds 0 and 1: -1.00" in md


def test_a_step_size_names_the_protocol_in_every_row_and_ranks(tmp_path):
    """Runs of sequential K=100 are reported as such, ranked together, and never mixed with K=1."""
    from editbench.core import DataError

    runs = [fake_result("alpha", 0.8), fake_result("beta", 0.4)]
    for r in runs:
        r["step_size"], r["protocol_label"] = 100, "sequential K=100"
    write_fake_run(tmp_path / "k100", runs)
    write_report(tmp_path / "k100", formats=("md",), metrics=("score",))
    final = (tmp_path / "k100" / "leaderboard.md").read_text().split("## Final checkpoint")[1].split("##")[0]
    assert "| alpha | sequential K=100 |" in final and "| beta | sequential K=100 |" in final
    mixed = [fake_result("alpha", 0.8), {**fake_result("beta", 0.4), "protocol_label": "sequential K=100"}]
    write_fake_run(tmp_path / "mixed", mixed)
    with pytest.raises(DataError, match="protocol"):
        write_report(tmp_path / "mixed", formats=("md",))


FOURTEEN = ("wise", "rome", "ft_l", "rsft_merge", "grace", "rsft", "alphaedit", "memit", "encore", "lora", "ft",
            "ultraedit", "retrieve", "noedit")


def test_fourteen_methods_never_share_a_colour_or_a_marker_and_sit_on_their_checkpoints(tmp_path):
    import matplotlib

    from editbench.reports import plots

    rows = [{"method": m} for m in FOURTEEN]
    styles = plots.method_styles(rows)
    assert len({s["color"] for s in styles.values()}) == len({s["marker"] for s in styles.values()}) == 14
    assert len({tuple(sorted(plots.style(i).items())) for i in range(72)}) == 72
    run = write_fake_run(tmp_path, [fake_result(m, 0.8) for m in FOURTEEN])  # identical numbers everywhere
    write_report(run, formats=("md",), metrics=("reliability",))
    assert plots.family("grace") == plots.family("retrieve") == "patch and context editors"
    assert plots.family("rome") == plots.family("rsft_merge density=0.2") == "weight editors"
    # the figure: two panels, every point at its own checkpoint (no sideways dodge on the T axis)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    opened = []
    real = plots.save_figure
    plots.save_figure = lambda fig, out_dir, stem: opened.append(fig) or real(fig, out_dir, stem)
    try:
        from editbench.reports import tables

        plots.metric_curves(tables.all_rows([upgraded(fake_result(m, 0.8)) for m in FOURTEEN]), tmp_path,
                            ("reliability",))
    finally:
        plots.save_figure = real
    [fig] = opened
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["weight editors", "patch and context editors"]
    checkpoints = {cp["edits"] for cp in fake_result("ft", 0.8)["checkpoints"]}
    for ax in fig.axes:
        for line in ax.get_lines():
            assert set(line.get_xdata()) <= checkpoints
    assert {t.get_text() for t in fig.axes[1].get_legend().get_texts()} == {"grace", "wise", "retrieve", "noedit"}
    plt.close("all")


def test_the_html_curves_are_interactive_and_offline(tmp_path):
    import re

    run = write_fake_run(tmp_path, [fake_result("rome", 0.8), fake_result("grace", 0.6), fake_result("noedit", 0.0)])
    write_report(run, formats=("html",), metrics=("reliability", "locality"))
    page = (run / "leaderboard.html").read_text()
    assert not re.search(r"""<script[^>]+src=["']?https?:""", page)  # nothing fetched: the JavaScript is inline
    assert page.count("Plotly.newPlot(") == 2 and "plotly.js v" in page  # one chart per figure, one bundle
    assert "T=%{x}" in page and "itemclick" in page  # hover with the value and interval; legend toggles


def test_agreement_between_two_boards_is_kendalls_tau_with_an_interval(tmp_path, capsys):
    """Two run folders ranking four methods alike give tau 1, reversed -1 (reports/agreement.py);
    the interval resamples each board's own edits and stays within [-1, 1]."""
    from editbench.reports.agreement import agreement

    levels = {"a": 0.9, "b": 0.6, "c": 0.3, "d": 0.1}
    world = write_fake_run(tmp_path / "world", [fake_result(m, r) for m, r in levels.items()])
    alike = write_fake_run(tmp_path / "alike", [fake_result(m, r * 0.9) for m, r in levels.items()])
    turned = write_fake_run(tmp_path / "turned", [fake_result(m, 1.0 - r) for m, r in levels.items()])
    same = agreement(world, alike, "token", n_resamples=200)
    assert same["tau"] == pytest.approx(1.0) and [r["method"] for r in same["methods"]] == ["a", "b", "c", "d"]
    lo, hi = same["tau_ci"]
    assert -1.0 <= lo <= hi <= 1.0
    reversed_ = agreement(world, turned, "token", n_resamples=200)
    assert reversed_["tau"] == pytest.approx(-1.0) and [r["moved"] for r in reversed_["methods"]] == [3, 1, -1, -3]
    assert main(["agreement", str(world), str(turned), "--score-basis", "token"]) == 0
    assert "Kendall's tau-b -1.00" in capsys.readouterr().out
