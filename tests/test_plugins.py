"""A third-party editor plugs in through the `editbench.editors` entry-point group."""
import json
import os
import subprocess
import sys
import textwrap


def make_plugin(root):
    (root / "toy_editbench_plugin.py").write_text(textwrap.dedent('''
        """Toy editor from another package."""
        from editbench.core import Editor, EditorConfig, WeightDelta, register_editor

        @register_editor("toy")
        class Toy(Editor):
            config_class = EditorConfig

            def edit(self, lm, requests, cache=None):
                return WeightDelta(tensors={}, info=[{} for _ in requests])
    '''))
    dist = root / "toy_editbench_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-editbench-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[editbench.editors]\ntoy = toy_editbench_plugin:Toy\n")


def test_entry_point_editor_is_listed_and_runnable(tmp_path):
    make_plugin(tmp_path)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    listed = subprocess.run([sys.executable, "-m", "editbench", "methods"], capture_output=True, text=True, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "toy" in listed.stdout and "toy_editbench_plugin" in listed.stdout
    code = ("from editbench.core import get_editor_class; e = get_editor_class('toy')(); "
            "print(type(e).__name__, e.edit(None, [1, 2]).info)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.stdout.strip() == "Toy [{}, {}]", run.stderr


def test_entry_point_editor_joins_the_regression_suite(tmp_path, micro_world, cache_dir):
    """`--method all` (what `make regress` runs) includes a plugged-in editor; with no baseline entry
    it is reported as new, not as a failure."""
    from test_reports import fake_result, write_fake_run

    make_plugin(tmp_path)
    env = {**os.environ, "EDITBENCH_CACHE": str(cache_dir),
           "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    code = "from editbench.plan import RunPlan; print(' '.join(RunPlan(methods=('all',)).methods))"
    listed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert "toy" in listed.stdout.split() and "rome" in listed.stdout.split(), listed.stderr
    out = tmp_path / "suite"
    run = subprocess.run([sys.executable, "-m", "editbench", "run", "--method", "toy", "--world", "micro",
                          "--edits", "3", "--checkpoints", "1,3", "--out", str(out), "--quiet"],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    base = fake_result("noedit", 0.0, n=3)
    base["model"]["fingerprint"] = json.loads((micro_world / "build_report.json").read_text())["weights_sha256"]
    baseline_run = write_fake_run(tmp_path / "base", [base])
    baseline_run_results = baseline_run / "noedit" / "results.json"
    assert baseline_run_results.exists()
    gate = subprocess.run([sys.executable, "-m", "editbench", "regress", str(out), "--baseline", str(baseline_run)],
                          capture_output=True, text=True, env=env)
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert "| toy | reliability |" in gate.stdout and "| new |" in gate.stdout
