"""Fault injection: a run (and a tune) killed at seeded instants, between and during its checkpoint
writes, then resumed, gives every number of the uninterrupted run.

Each kill is a forked child that dies with os._exit (no cleanup, no finally: what SIGKILL leaves)
right before or right after its k-th atomic publish (os.replace), so temporary files are left
half-written exactly as a real kill would leave them. Forked children (one torch thread, as
torch's own data-loader workers run) keep this fast enough for `make test`.
"""
import json
import os
import random

import pytest
import torch

from conftest import strip_volatile
from editbench import cli

VOLATILE = {"created", "edit_seconds", "eval_seconds", "seconds", "memory", "audit", "resumed"}
METHODS = {"ft": {"steps": 4}, "lora": {"mode": "continual", "steps": 4}}  # lora: editor state to restore
TUNE = ["tune", "--method", "ft", "--budget", "2", "--world", "micro", "--split", "dev", "--edits", "2", "--seed", "0",
        "--floor-em", "0", "--quiet"]
KILLED = 137


def _numbers(out) -> dict:
    found = {}
    for path in sorted(out.glob("**/results.json")):
        rel = str(path.parent.relative_to(out))
        found[rel] = {"results": strip_volatile(json.loads(path.read_text()), VOLATILE),
                      "edits": [strip_volatile(json.loads(line), VOLATILE)
                                for line in (path.parent / "edits.jsonl").read_text().splitlines()]}
    return found


def _tuned(out) -> dict:
    chosen = json.loads((out / "ft" / "tune.json").read_text())
    return {k: chosen[k] for k in ("chosen", "dev_score", "trials")}


class _Counter:
    """os.replace that counts publishes; with `die_at` = (k, 'before'|'after') the process exits there."""

    def __init__(self, die_at=None):
        self.calls, self.die_at, self.real = 0, die_at, os.replace

    def __call__(self, src, dst, **kwargs):
        self.calls += 1
        if self.die_at == (self.calls, "before"):
            os._exit(KILLED)  # the temporary file is written, the published one not yet
        self.real(src, dst, **kwargs)
        if self.die_at == (self.calls, "after"):
            os._exit(KILLED)


def _killed_child(argv, die_at) -> int:
    pid = os.fork()
    if pid == 0:  # the child: run until the instant, then die without any cleanup
        try:
            torch.set_num_threads(1)
            os.replace = _Counter(die_at)
            cli.main(argv)
        finally:
            os._exit(0)  # the instant was never reached (a plan bug in the test: asserted below)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _instants(n_publishes: int, count: int, seed: int) -> list[tuple[int, str]]:
    rng = random.Random(seed)
    every = [(k, when) for k in range(1, n_publishes + 1) for when in ("before", "after")]
    return sorted(rng.sample(every, min(count, len(every))))


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the killed child and the resuming parent compute with the same kernels
    yield
    torch.set_num_threads(threads)


def _run_methods(world, out, resume: bool = False) -> None:
    """ft and continual LoRA, 4 edits, checkpoints 1, 2, 4, through the runner and its store (the
    exam, no fluency texts: what is saved and restored is the subject here, not what is scored)."""
    from editbench.benchmarks.registry import world_benchmark
    from editbench.harness.generation import GenerationSpec
    from editbench.harness.hparams import make_editor
    from editbench.harness.models import load_model
    from editbench.harness.runner import EvalSuite, Runner
    from editbench.harness.store import RunStore

    data = world_benchmark(world, 4, seed=0)
    suite = EvalSuite([], 8, data.exam_name, data.exam[:12], generation=GenerationSpec())
    for method, overrides in METHODS.items():
        lm = load_model(str(world), hparams_key="world")
        editor, _ = make_editor(method, overrides=overrides, model_type="qwen2")
        runner = Runner(lm, editor, data.requests, suite, [1, 2, 4], 0, log=lambda m: None)
        runner.run(RunStore(out / method, resume=resume))


def _killed_runner(world, out, die_at) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            torch.set_num_threads(1)
            os.replace = _Counter(die_at)
            _run_methods(world, out)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fault injection forks its runs")
def test_run_killed_at_seeded_instants_resumes_to_the_same_numbers(micro_world, tmp_path, one_thread, monkeypatch):
    counter = _Counter()
    monkeypatch.setattr(os, "replace", counter)
    _run_methods(micro_world, tmp_path / "clean")
    monkeypatch.undo()
    clean = _numbers(tmp_path / "clean")
    assert set(clean) == {"ft", "lora"} and counter.calls > 12
    for k, when in _instants(counter.calls, 12, seed=0):
        out = tmp_path / f"killed-{k}-{when}"
        assert _killed_runner(micro_world, out, (k, when)) == KILLED
        _run_methods(micro_world, out, resume=True)
        assert _numbers(out) == clean, f"killed {when} publish {k}: resumed numbers differ"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fault injection forks its runs")
def test_tune_killed_at_seeded_instants_resumes_to_the_same_choice(micro_world, tmp_path, one_thread, monkeypatch):
    counter = _Counter()
    monkeypatch.setattr(os, "replace", counter)
    assert cli.main([*TUNE, "--out", str(tmp_path / "clean")]) == 0
    monkeypatch.undo()
    clean, clean_cells = _tuned(tmp_path / "clean"), _numbers(tmp_path / "clean")
    for k, when in _instants(counter.calls, 4, seed=1):
        out = tmp_path / f"killed-{k}-{when}"
        assert _killed_child([*TUNE, "--out", str(out)], (k, when)) == KILLED
        assert cli.main([*TUNE, "--out", str(out), "--resume"]) == 0, (k, when)
        assert _tuned(out) == clean and _numbers(out) == clean_cells, f"killed {when} publish {k}"
