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


def test_neither_jobs_nor_omp_num_threads_changes_a_number(micro_world, cache_dir, tmp_path):
    """One run in this process (--jobs 1, whatever OMP_NUM_THREADS says here) and the same run in a fresh
    process with OMP_NUM_THREADS 4 (torch's default thread count follows it) and --jobs 2 (two worker
    processes): every number equal, since every run computes with --threads (1)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    args = ["run", "--method", "noedit", "--method", "ft", "--method", "rome", "--method", "rsft_merge",
            "--world", "micro", "--edits", "3", "--checkpoints", "1,3", "--quiet"]
    threads = torch.get_num_threads()
    try:
        assert cli.main([*args, "--out", str(tmp_path / "one")]) == 0
        assert torch.get_num_threads() == 1  # the default --threads 1, set before anything is computed
    finally:
        torch.set_num_threads(threads)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "EDITBENCH_CACHE": str(cache_dir), "OMP_NUM_THREADS": "4", "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-m", "editbench", *args, "--jobs", "2", "--out", str(tmp_path / "two")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    one, two = _numbers(tmp_path / "one"), _numbers(tmp_path / "two")
    assert set(one) == {"noedit", "ft", "rome", "rsft_merge"} and one == two
    assert all(r["results"]["machine"]["threads"] == 1 for r in two.values())


def test_bad_jobs_and_threads_are_one_line(micro_world, tmp_path, capsys):
    for flag, value, message in (("--jobs", "0", "jobs must be >= 1"), ("--threads", "0", "--threads must be in")):
        code = cli.main(["run", "--method", "noedit", "--method", "ft", "--world", "micro", "--edits", "1",
                         flag, value, "--out", str(tmp_path / flag.strip("-")), "--quiet"])
        assert code == 2 and message in capsys.readouterr().err


def _reporting_cell(tag: str, cell, progress=None):
    """A stand-in for session.run_cell: three edits of progress, then order 1 fails on purpose."""
    from editbench.harness.executors import relayed_bars

    bar = relayed_bars(progress, f"{tag}:{cell.label}")(3, 0)
    for _ in range(3):
        bar.update(1)
    bar.close()
    return f"{cell.label}: failed on purpose" if cell.order == 1 else None


def test_the_progress_board_shows_each_running_cell_and_clears_finished_ones():
    import io
    import queue

    from editbench.harness.executors import ProgressBoard, relayed_bars

    stream, updates = io.StringIO(), queue.Queue()
    board = ProgressBoard(stream)
    rome, memit = relayed_bars(updates, "rome")(100, 0), relayed_bars(updates, "memit")(100, 40)
    rome.update(1)
    memit.update(2)
    board.drain(updates)
    assert board.line() == "rome 1/100 | memit 42/100"
    rome.close()
    board.drain(updates)
    assert board.line() == "memit 42/100" and stream.getvalue().endswith("memit 42/100\x1b[K")


def test_worker_processes_report_their_progress_to_the_parents_board():
    import io

    from editbench.harness.executors import Cell, ProcessExecutor, ProgressBoard

    class Recording(ProgressBoard):
        def __init__(self, stream):
            super().__init__(stream)
            self.seen = []

        def record(self, label, done, total):
            self.seen.append((label, done, total))
            super().record(label, done, total)

    board, logs = Recording(io.StringIO()), []
    cells = [Cell("ft", "/unused/a", "a"), Cell("ft", "/unused/b", "b", order=1)]
    failures = ProcessExecutor(2, logs.append, board).run(cells, _reporting_cell, "t")
    assert failures == ["b: failed on purpose"]
    for label in ("t:a", "t:b"):
        assert [(d, n) for name, d, n in board.seen if name == label] == [(0, 3), (1, 3), (2, 3), (3, 3), (None, None)]
    assert board.running == {} and sorted(logs[1:]) == ["a: done", "b: failed"]
