"""Numbers that do not depend on the machine: a fixed torch thread count for every computation, and
runs spread over worker processes (--jobs) giving the numbers of the in-process executor."""
import json

import torch

from conftest import strip_volatile
from editbench import cli

VOLATILE = {"created", "edit_seconds", "eval_seconds", "seconds", "memory", "audit"}


def _numbers(out):
    found = {}
    for path in sorted(out.glob("**/results.json")):
        rel = str(path.parent.relative_to(out))
        found[rel] = {"results": strip_volatile(json.loads(path.read_text()), VOLATILE),
                      "edits": (path.parent / "edits.jsonl").read_text()}
    return found


def test_jobs_2_equals_jobs_1_number_for_number(micro_world, tmp_path):
    args = ["run", "--method", "noedit", "--method", "ft", "--method", "rome", "--world", "micro", "--edits", "3",
            "--checkpoints", "1,3", "--quiet"]
    threads = torch.get_num_threads()
    try:
        assert cli.main([*args, "--out", str(tmp_path / "one")]) == 0
        assert torch.get_num_threads() == 1  # the default --threads 1, set before anything is computed
        assert cli.main([*args, "--out", str(tmp_path / "two"), "--jobs", "2"]) == 0
    finally:
        torch.set_num_threads(threads)
    one, two = _numbers(tmp_path / "one"), _numbers(tmp_path / "two")
    assert set(one) == {"noedit", "ft", "rome"} and one == two
    assert all(r["results"]["machine"]["threads"] == 1 for r in two.values())


def test_bad_jobs_and_threads_are_one_line(micro_world, tmp_path, capsys):
    for flag, value, message in (("--jobs", "0", "jobs must be >= 1"), ("--threads", "0", "--threads must be in")):
        code = cli.main(["run", "--method", "noedit", "--method", "ft", "--world", "micro", "--edits", "1",
                         flag, value, "--out", str(tmp_path / flag.strip("-")), "--quiet"])
        assert code == 2 and message in capsys.readouterr().err


def test_the_numbers_do_not_depend_on_omp_num_threads(micro_world, cache_dir, tmp_path):
    """The same run with OMP_NUM_THREADS 1 and 4 (torch's default thread count follows it): every number
    equal, since every run computes with --threads (1) whatever the environment says."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for threads in ("1", "4"):
        env = {**os.environ, "EDITBENCH_CACHE": str(cache_dir), "OMP_NUM_THREADS": threads, "PYTHONPATH": str(root)}
        done = subprocess.run([sys.executable, "-m", "editbench", "run", "--method", "rsft_merge", "--method", "ft",
                               "--world", "micro", "--edits", "3", "--checkpoints", "1,3", "--quiet",
                               "--out", str(tmp_path / f"omp{threads}")], env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    one, four = _numbers(tmp_path / "omp1"), _numbers(tmp_path / "omp4")
    assert set(one) == {"rsft_merge", "ft"} and one == four
