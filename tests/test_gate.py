"""The regression gate compares like with like: the same suite at a reference commit and in the
working tree, on this machine, edit by edit; absolute baselines only on the same weights."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from editbench.cli import main

ROOT = Path(__file__).resolve().parents[1]
SUITE = "--suite=--method noedit --method ft --world micro --edits 8 --checkpoints 8 --seed 0"


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path, micro_world):
    """A git repository holding this working tree's code, committed: HEAD is the code under test."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "editbench", repo / "editbench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "reference")
    return repo


def _regress(repo, out):
    env = {**os.environ, "PYTHONPATH": str(repo)}
    return subprocess.run([sys.executable, "-m", "editbench", "regress", str(out), "--against", "HEAD", SUITE],
                          cwd=repo, env=env, capture_output=True, text=True)


def test_identical_code_is_no_change_and_a_planted_regression_is_named(repo, tmp_path):
    same = _regress(repo, tmp_path / "same")
    assert same.returncode == 0, same.stderr[-2000:]
    assert "no regression (no change: every number identical)" in same.stdout

    ft = repo / "editbench" / "methods" / "ft.py"  # plant: FT's update scaled by 0.25
    text = ft.read_text()
    assert "        return WeightDelta(tensors=deltas," in text
    ft.write_text(text.replace("        return WeightDelta(tensors=deltas,",
                               "        deltas = {k: 0.25 * v for k, v in deltas.items()}\n"
                               "        return WeightDelta(tensors=deltas,"))
    planted = _regress(repo, tmp_path / "planted")
    assert planted.returncode == 1, planted.stdout + planted.stderr[-2000:]
    verdict = planted.stdout.strip().splitlines()[-1]
    assert verdict.startswith("REGRESSION in ft/reliability") and "noedit" not in verdict
    assert "results from cache" in planted.stderr  # the reference commit ran once


def _fake_run(root, fingerprint):
    from test_reports import fake_result, write_fake_run

    result = fake_result("alpha", 0.8)
    result["model"]["fingerprint"] = fingerprint
    return write_fake_run(root, [result])


def test_a_baseline_of_other_weights_is_refused(tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    assert main(["baseline", str(_fake_run(tmp_path / "a", "aaaa")), "--out", str(baseline)]) == 0
    assert json.loads(baseline.read_text())["fingerprint"] == "aaaa"
    assert main(["regress", str(_fake_run(tmp_path / "b", "aaaa")), "--baseline", str(baseline)]) == 0
    capsys.readouterr()
    assert main(["regress", str(_fake_run(tmp_path / "c", "bbbb")), "--baseline", str(baseline)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different weights" in err[0] and "--against" in err[0]
