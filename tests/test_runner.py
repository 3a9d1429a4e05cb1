import json

import pytest
import torch

from editbench.core import ConfigError, Editor, EditorConfig, WeightDelta
from editbench.harness.results import atomic_write_json
from editbench.harness.protocols import Sequential, resolve_checkpoints
from editbench.harness.runner import Runner
from editbench.harness.suite import EvalSuite
from editbench.benchmarks.registry import world_benchmark
from editbench.methods.noedit import NoEdit


def test_batches_are_cut_at_checkpoints():
    batches = [step.indices for step in Sequential().steps([1, 10, 12], 5)]
    assert [(b.start, b.stop) for b in batches] == [(0, 1), (1, 6), (6, 10), (10, 12)]
    assert resolve_checkpoints(None, 250) == [1, 10, 100, 250]
    assert resolve_checkpoints([10, 1], 20) == [1, 10, 20]
    with pytest.raises(ConfigError, match="out of range"):
        resolve_checkpoints([1, 100], 20)


def _suite(data):
    return EvalSuite(data.fluency_prompts[:2], 8, data.exam_name, data.exam[:12])


def test_noedit_keeps_locality_and_exam(micro_lm, micro_world):
    data = world_benchmark(micro_world, 4, seed=0)
    results, rows = Runner(micro_lm, NoEdit(), data.requests, _suite(data), [1, 4], 0,
                                     log=lambda m: None).run()
    assert [cp["edits"] for cp in results["checkpoints"]] == [1, 4]
    for cp in results["checkpoints"]:
        assert cp["locality"] == 1.0
        assert cp["general"]["accuracy"] == cp["general"]["accuracy_pre"]
        assert cp["fluency"] == cp["fluency_pre"]
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)


class NaNEditor(Editor):
    name = "nan"

    def edit(self, lm, requests, cache=None):
        name, p = next(iter(lm.model.named_parameters()))
        return WeightDelta(tensors={name: torch.full_like(p, float("nan"))}, info=[{} for _ in requests])


def test_non_finite_delta_is_recorded_failed_and_not_applied(micro_lm, micro_world):
    data = world_benchmark(micro_world, 2, seed=0)
    before = {k: v.clone() for k, v in micro_lm.model.state_dict().items()}
    results, rows = Runner(micro_lm, NaNEditor(EditorConfig()), data.requests, _suite(data), [2], 0,
                                     log=lambda m: None).run()
    assert results["failed_edits"] == 2 and rows[0]["status"] == "failed" and "non-finite" in rows[0]["error"]
    assert all(torch.equal(before[k], v) for k, v in micro_lm.model.state_dict().items())


def test_same_seed_same_numbers(micro_world):
    from editbench.harness.models import load_model
    from editbench.methods.ft import FTM, FTConfig

    data = world_benchmark(micro_world, 3, seed=1)
    runs = []
    for _ in range(2):
        lm = load_model(str(micro_world), hparams_key="world")
        results, _ = Runner(lm, FTM(FTConfig(layer=1)), data.requests, _suite(data), [3], 5,
                                      log=lambda m: None).run()
        cp = results["checkpoints"][-1]
        runs.append({k: cp[k] for k in ("reliability", "generalization", "locality", "fluency", "per_edit")})
    assert runs[0] == runs[1]


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "r.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"a": object()})  # not serialisable: the old file must survive
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_atomic_files_get_the_permissions_a_plain_write_would(tmp_path):
    import os
    import stat

    from editbench.harness.results import plain_mode

    atomic_write_json(tmp_path / "r.json", {"a": 1})
    (tmp_path / "plain.json").write_text("{}")
    mode = stat.S_IMODE(os.stat(tmp_path / "r.json").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "plain.json").st_mode) == plain_mode()


@pytest.mark.parametrize("method", ["ft", "lora", "rsft_merge", "memit"])
def test_restore_base_puts_every_touched_weight_back_bit_for_bit(micro_lm, micro_world, method):
    """Methods of one command share one loaded model: after a run, restore_base returns θ₀ exactly."""
    from conftest import assert_same_state, state_copy
    from editbench.harness.hparams import make_editor

    before = state_copy(micro_lm.model)
    editor, _ = make_editor(method, model_type="qwen2")
    data = world_benchmark(micro_world, 3, seed=0)
    runner = Runner(micro_lm, editor, data.requests, EvalSuite([], 8, "", []), [3], 0,
                              log=lambda m: None)
    runner.run()
    assert any(not torch.equal(before[k], v) for k, v in micro_lm.model.state_dict().items())
    runner.restore_base()
    assert_same_state(micro_lm.model, before)
