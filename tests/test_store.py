"""Runs that survive: results saved at each checkpoint, SIGKILL + --resume reproduces a clean run, no
silent overwrite, one method's failure leaves the others complete, report refuses mixed settings."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import strip_volatile
from editbench import cli
from editbench.core import EDITORS, Editor, EditorConfig, WeightDelta, register_editor
from editbench.harness.store import RunStore, Snapshot, rng_states, set_rng_states

# fields that are about the clock, the process or the command line, not the numbers
VOLATILE = {"created", "edit_seconds", "eval_seconds", "seconds", "memory", "audit", "resumed"}
SUITE = ["--world", "micro", "--edits", "4", "--checkpoints", "2,4", "--seed", "0",
         "--method", "ft", "--method", "lora", "--set", "lora.mode=continual", "--set", "lora.steps=8",
         "--method", "grace", "--set", "grace.n_iter=10"]


def _strip(value):
    return strip_volatile(value, VOLATILE)


def _numbers(out: Path) -> dict:
    found = {}
    for path in sorted(out.glob("*/results.json")):
        found[path.parent.name] = {
            "results": _strip(json.loads(path.read_text())),
            "edits": [_strip(json.loads(line)) for line in (path.parent / "edits.jsonl").read_text().splitlines()],
        }
    return found


def _env(cache_dir) -> dict:
    return {**os.environ, "EDITBENCH_CACHE": str(cache_dir), "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def _run(args, cache_dir):
    return subprocess.run([sys.executable, "-m", "editbench", "run", *args], env=_env(cache_dir),
                          capture_output=True, text=True, timeout=600)


def _run_until(args, cache_dir, line_mark: str) -> list[str]:
    """Start a run and SIGKILL it as soon as a stderr line contains `line_mark`."""
    proc = subprocess.Popen([sys.executable, "-m", "editbench", "run", *args], env=_env(cache_dir),
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if line_mark in line:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-5:])
    return seen


def test_sigkill_then_resume_reproduces_a_clean_run(micro_world, cache_dir, tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    done = _run([*SUITE, "--out", str(clean), "--quiet"], cache_dir)
    assert done.returncode == 0, done.stderr[-2000:]

    # killed twice: inside ft (stateless), then inside continual lora (its adapter is editor state)
    _run_until([*SUITE, "--out", str(killed)], cache_dir, "ft T=2:")
    first = json.loads((killed / "ft" / "results.json").read_text())
    assert first["status"] == "running" and [cp["edits"] for cp in first["checkpoints"]] == [2]
    assert len((killed / "ft" / "edits.jsonl").read_text().splitlines()) == 2
    seen = _run_until([*SUITE, "--out", str(killed), "--resume"], cache_dir, "lora T=2:")
    assert any("ft: resumed after checkpoint T=2" in line for line in seen)
    state = killed / "lora" / "state"
    saved = json.loads((state / "latest.json").read_text())["checkpoint_dir"]
    from safetensors.torch import load_file

    editor_state = load_file(str(state / saved / "editor.safetensors"))
    assert any(k.startswith("adapter/") for k in editor_state), "continual LoRA's adapter must be saved"

    # then inside GRACE: its codebook is editor state and an installed module patch, no weight changed
    seen = _run_until([*SUITE, "--out", str(killed), "--resume"], cache_dir, "grace T=2:")
    assert any("lora: resumed after checkpoint T=2" in line for line in seen)
    state = killed / "grace" / "state"
    saved = state / json.loads((state / "latest.json").read_text())["checkpoint_dir"]
    assert load_file(str(saved / "weights.safetensors")) == {}
    patches = json.loads((saved / "progress.json").read_text())["patches"]
    assert [p["adaptor"] for p in patches] == ["grace-codebook"]
    assert load_file(str(saved / "patches.safetensors"))["0/keys"].shape[0] >= 1

    resumed = _run([*SUITE, "--out", str(killed), "--resume"], cache_dir)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "ft: already complete, kept" in resumed.stderr
    assert "lora: already complete, kept" in resumed.stderr
    assert "grace: resumed after checkpoint T=2" in resumed.stderr
    a, b = _numbers(clean), _numbers(killed)
    assert set(a) == {"ft", "lora", "grace"} and a == b
    assert all(json.loads((killed / m / "results.json").read_text())["status"] == "complete" for m in a)


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_second_run_into_the_same_out_needs_resume_or_overwrite(micro_world, tmp_path, capsys):
    out = tmp_path / "run"

    def command(n):
        return ["run", "--method", "noedit", "--world", "micro", "--edits", n, "--checkpoints", n, "--out", str(out),
                "--quiet"]

    args = command("2")
    assert cli.main(args) == 0
    before = _tree(out)
    capsys.readouterr()
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0] and "--overwrite" in err[0]
    assert _tree(out) == before
    # a resume of another plan is refused and changes nothing
    assert cli.main([*command("3"), "--resume"]) == 2
    assert "cannot resume" in capsys.readouterr().err and _tree(out) == before
    assert cli.main([*args, "--resume"]) == 0  # complete: kept as it is
    assert json.loads((out / "noedit" / "results.json").read_text())["checkpoints"] == \
        json.loads(before["noedit/results.json"])["checkpoints"]
    assert cli.main([*args, "--overwrite"]) == 0


class Boom(Editor):
    """Adds a small constant, then raises on its second call (as an out-of-memory error would)."""

    def __init__(self, config=None):
        super().__init__(config or EditorConfig())
        self.calls = 0

    def edit(self, lm, requests, cache=None):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("simulated failure in the second edit call")
        name, p = next((n, p) for n, p in lm.model.named_parameters() if n.endswith("mlp.down_proj.weight"))
        return WeightDelta(tensors={name: torch.full_like(p, 1e-4)}, info=[{} for _ in requests])


@pytest.fixture
def boom_editor():
    register_editor("boom")(Boom)
    yield "boom"
    EDITORS.remove("boom")


def test_one_method_failing_leaves_the_others_complete(micro_world, tmp_path, capsys, boom_editor):
    out = tmp_path / "run"
    # no FLOPs replays: Boom counts its calls outside its state_dict, so a replay would be its second call
    code = cli.main(["run", "--method", "boom", "--method", "noedit", "--world", "micro", "--edits", "3",
                     "--checkpoints", "1,3", "--out", str(out), "--quiet", "--count-flops", "0"])
    err = capsys.readouterr().err
    assert code == 1 and "1 run(s) failed" in err and "simulated failure" in err
    failed = json.loads((out / "boom" / "results.json").read_text())
    assert failed["status"] == "failed" and failed["error"]["type"] == "RuntimeError"
    assert [cp["edits"] for cp in failed["checkpoints"]] == [1]  # what was scored before the failure is kept
    other = json.loads((out / "noedit" / "results.json").read_text())
    assert other["status"] == "complete" and [cp["edits"] for cp in other["checkpoints"]] == [1, 3]
    # the report shows the complete run and says which one it left out
    assert cli.main(["report", str(out)]) == 0
    assert "boom: failed" in (out / "leaderboard.md").read_text()


def test_report_refuses_runs_of_different_settings(micro_world, tmp_path, capsys):
    out = tmp_path / "mixed"
    base = ["run", "--world", "micro", "--out", str(out), "--quiet"]
    assert cli.main([*base, "--method", "noedit", "--edits", "2", "--checkpoints", "2"]) == 0
    assert cli.main([*base, "--method", "ft", "--edits", "3", "--checkpoints", "3"]) == 0
    capsys.readouterr()
    assert cli.main(["report", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "differs" in err[0] and "N" in err[0]


def test_cheap_checks_come_before_the_world_is_built(tmp_path, capsys, monkeypatch):
    from editbench.benchmarks import world_model

    def no_build(*a, **k):
        raise AssertionError("the world must not be built before the cheap checks")

    monkeypatch.setattr(world_model, "ensure_world", no_build)
    out = tmp_path / "out"
    cases = [
        (["--benchmark", "zsre", "--data", str(tmp_path / "missing.json")], "no such file"),
        (["--exam", "mmlu", "--exam-dir", str(tmp_path / "nowhere")], "no such directory"),
        (["--edits", "5", "--checkpoints", "1,10"], "out of range"),
        (["--set", "ft.no_such_key=1"], "unknown key"),
        (["--save-model-at", "7", "--edits", "5"], "out of range"),
    ]
    for extra, message in cases:
        assert cli.main(["run", "--method", "ft", "--world", "micro", "--out", str(out), *extra]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (extra, err)
    assert not out.exists()


def test_store_writes_atomic_checkpoints_and_restores_rng(tmp_path):
    store = RunStore(tmp_path / "m", meta={"order": 0})
    results = {"method": "x", "plan": {"n_edits": 1}, "checkpoints": []}
    store.start(results, {"fluency": None}, None)
    assert json.loads((tmp_path / "m" / "results.json").read_text())["status"] == "running"
    weights = {"w": torch.randn(3, 3)}
    results["checkpoints"] = [{"edits": 1}]
    store.checkpoint(results, [{"index": 0}], Snapshot(1, 0.5, weights, {"adapter/a": torch.ones(2)}))
    plain, tensors = rng_states()
    expected = torch.rand(4)
    set_rng_states(plain, tensors)
    assert torch.equal(torch.rand(4), expected)
    again = RunStore(tmp_path / "m", resume=True)
    point = again.resume_point(results)
    assert point.next_step == 1 and torch.equal(point.weights["w"], weights["w"])
    assert torch.equal(point.editor_state["adapter/a"], torch.ones(2)) and point.edit_rows == [{"index": 0}]
    assert not list((tmp_path / "m" / "state").glob(".ckpt-*"))  # no temporary folder left behind


def test_the_python_api_raises_on_a_failed_method_and_keeps_the_others(micro_world, tmp_path, boom_editor):
    """editbench.run: the same run layer as the CLI; a method that fails is an EditbenchError naming
    it, after every other method has run and been saved (in memory too: no out)."""
    import editbench
    from editbench.core import EditbenchError

    with pytest.raises(EditbenchError, match="1 run\\(s\\) failed: boom: RuntimeError: simulated failure"):
        editbench.run(["boom", "noedit"], world="micro", edits=3, checkpoints=[1, 3], out=tmp_path / "run")
    assert json.loads((tmp_path / "run" / "noedit" / "results.json").read_text())["status"] == "complete"
    with pytest.raises(EditbenchError, match="boom"):
        editbench.run(["boom", "noedit"], world="micro", edits=3, checkpoints=[1, 3])


def test_a_resumed_run_killed_before_its_next_checkpoint_resumes_again(micro_world, tmp_path, monkeypatch):
    """The continuation's first write keeps the checkpoints it resumed from: a run resumed and stopped
    again before its next checkpoint (hours, for ROME on a real model) resumes once more, and its
    numbers are those of a run never stopped."""
    from editbench.methods.ft import FTM as FT

    def args(out):
        return ["run", "--method", "ft", "--world", "micro", "--edits", "3", "--checkpoints", "1,3", "--seed", "0", "--count-flops", "0",
                "--out", str(out), "--quiet"]

    assert cli.main(args(tmp_path / "clean")) == 0
    real_edit, calls, stop = FT.edit, [], [KeyboardInterrupt]

    def stopped_at_second_call(self, lm, requests, cache=None):
        calls.append(1)
        if len(calls) == 2:
            raise stop[0]
        return real_edit(self, lm, requests, cache)

    out = tmp_path / "stopped"
    monkeypatch.setattr(FT, "edit", stopped_at_second_call)
    with pytest.raises(KeyboardInterrupt):
        cli.main(args(out))  # stopped after T=1
    # the resumed run's first call is the second edit: stopped again at once, by an exit the run
    # cannot see or record (as SIGKILL stops it: whatever it wrote last is what stays)
    calls[:], stop[0] = [1], SystemExit
    with pytest.raises(SystemExit):
        cli.main([*args(out), "--resume"])
    assert [cp["edits"] for cp in json.loads((out / "ft" / "results.json").read_text())["checkpoints"]] == [1]
    monkeypatch.setattr(FT, "edit", real_edit)
    assert cli.main([*args(out), "--resume"]) == 0
    assert _numbers(tmp_path / "clean") == _numbers(out)
