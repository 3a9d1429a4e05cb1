"""Edit protocols and editor state: batch starts every checkpoint from θ₀ with all T edits in one call;
sequential never resets; R-SFT+Merge's cumulative scope serves θ_base + w·prune(θ_sft − θ_base)."""
import torch

from conftest import state_copy
from editbench.benchmarks.registry import world_benchmark
from editbench.core import Editor, EditorConfig, WeightDelta
from editbench.harness.protocols import Batch, Sequential, get_protocol
from editbench.harness.runner import EvalSuite, Runner
from editbench.methods.merging import merge_delta


def test_protocol_steps():
    seq = Sequential().steps([1, 10, 12], batch_size=5)
    assert [(s.indices.start, s.indices.stop, s.reset, s.checkpoint) for s in seq] == [
        (0, 1, False, 1), (1, 6, False, None), (6, 10, False, 10), (10, 12, False, 12)]
    batch = Batch().steps([1, 10, 12], batch_size=1)  # batch_size does not cut an all-at-once call
    assert [(s.indices.start, s.indices.stop, s.reset, s.checkpoint) for s in batch] == [
        (0, 1, True, 1), (0, 10, True, 10), (0, 12, True, 12)]
    assert get_protocol("batch").name == "batch"


class Recorder(Editor):
    """Records the weights it is handed and how many requests each call gets; adds a constant."""

    name = "recorder"

    def __init__(self):
        super().__init__(EditorConfig(batch_size=1))
        self.seen, self.sizes, self.resets = [], [], 0

    def reset_state(self):
        self.resets += 1

    def edit(self, lm, requests, cache=None):
        name, p = "model.layers.0.mlp.down_proj.weight", dict(lm.model.named_parameters())[
            "model.layers.0.mlp.down_proj.weight"]
        self.seen.append(p.detach().clone())
        self.sizes.append(len(requests))
        return WeightDelta(tensors={name: torch.full_like(p, 0.01)}, info=[{} for _ in requests])


def _suite(data):
    return EvalSuite([], 8, data.exam_name, [])


def test_batch_protocol_starts_each_checkpoint_from_the_unedited_weights(micro_lm, micro_world):
    data = world_benchmark(micro_world, 5, seed=0)
    theta0 = state_copy(micro_lm.model)
    editor = Recorder()
    results, _ = Runner(micro_lm, editor, data.requests, _suite(data), [1, 3, 5], 0, log=lambda m: None,
                        protocol=Batch()).run()
    assert editor.sizes == [1, 3, 5]  # all T edits in one call
    base = theta0["model.layers.0.mlp.down_proj.weight"]
    assert all(torch.equal(w, base) for w in editor.seen)  # every call sees θ₀, bit for bit
    assert editor.resets == 1 + 3  # run start, then before each call
    assert results["protocol"] == "batch" and [cp["edits"] for cp in results["checkpoints"]] == [1, 3, 5]


def test_sequential_protocol_never_resets(micro_lm, micro_world):
    data = world_benchmark(micro_world, 3, seed=0)
    editor = Recorder()
    Runner(micro_lm, editor, data.requests, _suite(data), [3], 0, log=lambda m: None).run()
    assert editor.sizes == [1, 1, 1] and editor.resets == 1
    assert torch.allclose(editor.seen[2] - editor.seen[0], torch.full_like(editor.seen[0], 0.02))


def test_cumulative_merge_serves_base_plus_weighted_pruned_sum_of_deltas(micro_lm, micro_requests):
    from editbench.core import get_editor_class
    from editbench.methods.rsft import RSFTMergeConfig

    cfg = RSFTMergeConfig(layer=1, delta_weight=0.8, density=0.3, merge_scope="cumulative", epochs=1)
    editor = get_editor_class("rsft_merge")(cfg)
    names = [n for n in dict(micro_lm.model.named_parameters()) if n.startswith("model.layers.1.mlp.")]
    base = {n: p.detach().clone() for n, p in micro_lm.model.named_parameters() if n in names}
    for request in micro_requests[:3]:  # three sequential calls, each applied as the runner would
        editor.edit(micro_lm, [request]).apply(micro_lm.model)
    params = dict(micro_lm.model.named_parameters())
    for n in names:
        expected = base[n] + merge_delta(editor._sft_delta[n], 0.8, 0.3)
        assert torch.allclose(params[n], expected, atol=1e-6), n
    # θ_sft kept fine-tuning: the cumulative delta is more than any one call's delta
    assert all(torch.count_nonzero(editor._sft_delta[n]) > 0 for n in names)
    editor.reset_state()
    assert editor._sft_delta == {} and editor._served == {}


def test_batch_scope_merges_each_call_against_the_weights_before_it(micro_lm, micro_requests):
    from editbench.core import get_editor_class
    from editbench.methods.rsft import RSFTConfig, RSFTMergeConfig, robust_sft

    cfg = RSFTMergeConfig(layer=1, delta_weight=0.8, density=0.3, epochs=1)
    delta = get_editor_class("rsft_merge")(cfg).edit(micro_lm, micro_requests[:2])
    raw, _ = robust_sft(micro_lm, micro_requests[:2], cfg)
    for n, d in raw.items():
        assert torch.equal(delta.tensors[n], merge_delta(d, 0.8, 0.3))
    assert isinstance(cfg, RSFTConfig)
