"""Run matrices on Ray: a 2 methods x 2 edit orders micro matrix as Ray tasks gives, number for number,
what the local executor gives, in the same --out layout; a task that fails is a failed cell."""
import json
from pathlib import Path

import pytest
import torch

from conftest import strip_volatile
from editbench import cli

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
pytestmark = pytest.mark.xdist_group("ray")  # one Ray instance: these tests share a test process

VOLATILE = {"created", "edit_seconds", "eval_seconds", "seconds", "memory", "audit", "machine"}


def _strip(value):
    return strip_volatile(value, VOLATILE)


def _numbers(out: Path) -> dict:
    return {str(p.relative_to(out)): _strip(json.loads(p.read_text())) for p in sorted(out.glob("*/order-*/results.json"))}


@pytest.fixture(scope="module")
def local_ray(cache_dir):
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # workers inherit EDITBENCH_CACHE
    yield
    ray.shutdown()


def test_ray_matrix_equals_the_local_executor(micro_world, local_ray, tmp_path):
    # FT and LoRA: a weight delta and a merged adapter, each from a seeded optimisation (2 edits, 2 orders
    # each: what differs between cells is the edit order, which every task must rebuild as the local run)
    args = ["run", "--method", "ft", "--method", "lora", "--orders", "2", "--world", "micro", "--edits", "2",
            "--checkpoints", "1,2", "--quiet"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # Ray tasks run with one thread (num_cpus=1): compare like with like
    try:
        assert cli.main([*args, "--out", str(tmp_path / "local")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert cli.main([*args, "--out", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    local, remote = _numbers(tmp_path / "local"), _numbers(tmp_path / "ray")
    assert len(local) == 4 and set(local) == set(remote)
    assert local == remote
    assert cli.main(["report", str(tmp_path / "ray")]) == 0


def test_a_failing_ray_task_is_a_failed_cell(micro_world, local_ray, tmp_path, capsys):
    """ROME with key statistics from a single document fails inside its task (C is singular): that
    run is `failed`, the other method's runs complete, the command exits 1 and lists the failure."""
    out = tmp_path / "run"
    code = cli.main(["run", "--method", "noedit", "--method", "rome", "--set", "rome.mom2_n_samples=1",
                     "--world", "micro", "--edits", "2", "--checkpoints", "2", "--out", str(out), "--quiet",
                     "--executor", "ray"])
    err = capsys.readouterr().err
    assert code == 1 and "1 run(s) failed" in err and "rome" in err
    assert json.loads((out / "rome" / "results.json").read_text())["status"] == "failed"
    assert json.loads((out / "noedit" / "results.json").read_text())["status"] == "complete"
