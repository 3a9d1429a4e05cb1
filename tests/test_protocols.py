"""Edit protocols and editor state: batch starts every checkpoint from θ₀ with all T edits in one call;
sequential never resets; R-SFT+Merge's cumulative scope serves θ_base + w·prune(θ_sft − θ_base)."""
import pytest
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
        self.seen, self.sizes, self.resets = [], [], -1  # Editor.__init__'s own reset_state brings it to 0
        super().__init__(EditorConfig(batch_size=1))

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


def test_independent_and_immediate_protocol_steps():
    ind = get_protocol("independent").steps([1, 3], batch_size=5)  # one edit per call, each from θ₀
    assert [(s.indices.start, s.indices.stop, s.reset, s.checkpoint, s.scores) for s in ind] == [
        (0, 1, True, 1, "immediate"), (1, 2, True, None, "immediate"), (2, 3, True, 3, "immediate")]
    imm = get_protocol("immediate").steps([1, 10, 12], batch_size=5)  # sequential's calls, scored at once
    assert [(s.indices, s.reset, s.checkpoint) for s in imm] == [
        (s.indices, s.reset, s.checkpoint) for s in Sequential().steps([1, 10, 12], batch_size=5)]
    assert {s.scores for s in imm} == {"immediate"}


def test_independent_checkpoint_is_the_mean_of_single_edits_from_theta0(micro_lm, micro_world):
    """Each edit alone from θ₀: the checkpoint equals, metric by metric, the mean over separate one-edit
    runs, and every call sees θ₀ bit for bit (the editor's state reset before each)."""
    from editbench.harness.generation import GenerationSpec
    from editbench.methods.ft import FTConfig, FTM

    data = world_benchmark(micro_world, 3, seed=0)
    suite = EvalSuite([], 8, data.exam_name, [], generation=GenerationSpec())
    theta0 = state_copy(micro_lm.model)
    recorder = Recorder()
    Runner(micro_lm, recorder, data.requests, suite, [3], 0, log=lambda m: None,
           protocol=get_protocol("independent")).run()
    base = theta0["model.layers.0.mlp.down_proj.weight"]
    assert recorder.sizes == [1, 1, 1] and all(torch.equal(w, base) for w in recorder.seen)
    assert recorder.resets == 1 + 3
    ft = FTM(FTConfig(layer=1, lr=1e-3, steps=8))
    runner = Runner(micro_lm, ft, data.requests, suite, [1, 3], 0, log=lambda m: None,
                    protocol=get_protocol("independent"))
    results, _ = runner.run()
    runner.restore_base()
    alone = []
    for request in data.requests:
        one = Runner(micro_lm, ft, [request], suite, [1], 0, log=lambda m: None)
        alone.append(one.run()[0]["checkpoints"][-1])
        one.restore_base()
    t1, t3 = results["checkpoints"]
    for key in ("reliability", "reliability_gen", "generalization_gen", "locality_gen"):
        assert t1[key] == alone[0][key], key
        assert abs(t3[key] - sum(a[key] for a in alone) / 3) < 1e-12, key
    assert results["protocol"] == "independent"


def test_checkpoints_record_how_far_each_edited_matrix_moved(micro_lm, micro_world):
    """Collapse signals: ||W_T|| / ||W_0|| and ||W_T - W_0|| of every matrix an update touched, per
    checkpoint (the recorder adds 0.01 to one matrix per call)."""
    data = world_benchmark(micro_world, 3, seed=0)
    name = "model.layers.0.mlp.down_proj.weight"
    w0 = dict(micro_lm.model.named_parameters())[name].detach().double().clone()
    runner = Runner(micro_lm, Recorder(), data.requests, _suite(data), [1, 3], 0, log=lambda m: None)
    results, _ = runner.run()
    runner.restore_base()
    for cp, shift in zip(results["checkpoints"], (0.01, 0.03)):
        moved = cp["weights"]["matrices"][name]
        assert abs(moved["update_norm"] - shift * w0.numel() ** 0.5) < 1e-4
        assert abs(moved["norm_ratio"] - ((w0 + shift).norm() / w0.norm()).item()) < 1e-5
        assert cp["weights"]["max_norm_ratio"] == moved["norm_ratio"]


def test_step_size_and_presets_name_the_call_size():
    """A step size K is the protocol's, for any method: calls of K edits cut at checkpoints
    (independent: groups of K from θ₀); batch takes none; a preset is a protocol and a K."""
    from editbench.core import ConfigError
    from editbench.harness.protocols import resolve_protocol

    steps = get_protocol("sequential", 3).steps([4, 8], batch_size=1)
    assert [list(s.indices) for s in steps] == [[0, 1, 2], [3], [4, 5, 6], [7]]
    assert [s.checkpoint for s in steps] == [None, 4, None, 8]
    assert [list(s.indices) for s in get_protocol("sequential").steps([4], batch_size=2)] == [[0, 1], [2, 3]]
    groups = get_protocol("independent", 2).steps([4], batch_size=1)
    assert [list(s.indices) for s in groups] == [[0, 1], [2, 3]] and all(s.reset for s in groups)
    assert get_protocol("sequential", 100).label(1) == "sequential K=100" and get_protocol("sequential").label(1) == \
        "sequential"
    assert resolve_protocol("lifelong-k100") == ("sequential", 100)
    assert resolve_protocol("easyedit-immediate") == ("immediate", 1)
    with pytest.raises(ConfigError, match="does not apply"):
        get_protocol("batch", 10)
    with pytest.raises(ConfigError, match="contradicts it"):
        get_protocol("lifelong-k1", 5)


def test_a_step_size_run_calls_the_editor_with_k_edits_and_says_so(micro_world, tmp_path):
    import json

    from editbench.cli import main

    assert main(["run", "--method", "ft", "--world", "micro", "--edits", "6", "--checkpoints", "3,6",
                 "--step-size", "3", "--out", str(tmp_path), "--quiet"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "ft" / "edits.jsonl").read_text().splitlines()]
    assert [r["batch"] for r in rows] == [0, 0, 0, 1, 1, 1]
    results = json.loads((tmp_path / "ft" / "results.json").read_text())
    assert results["step_size"] == 3 and results["protocol_label"] == "sequential K=3"
    assert results["plan"]["step_size"] == 3


def test_eval_sample_scores_a_seeded_sample_until_the_last_checkpoint(micro_lm, micro_world):
    data = world_benchmark(micro_world, 12, seed=0)
    suite = EvalSuite([], 8, "", [])

    def run():
        from editbench.methods.noedit import NoEdit

        results, _ = Runner(micro_lm, NoEdit(), data.requests, suite, [4, 8, 12], 0, log=lambda m: None,
                            eval_sample=3).run()
        return results

    first, again = run(), run()
    cases = [[e["case_id"] for e in cp["per_edit"]] for cp in first["checkpoints"]]
    assert [len(c) for c in cases] == [3, 3, 12] and [cp.get("scored_edits") for cp in first["checkpoints"]] == \
        [3, 3, None]
    ids = [r.case_id for r in data.requests]
    assert set(cases[0]) <= set(ids[:4]) and set(cases[1]) <= set(ids[:8])
    assert cases == [[e["case_id"] for e in cp["per_edit"]] for cp in again["checkpoints"]]  # seeded
    assert first["plan"]["eval_sample"] == 3


def test_perplexity_is_the_mean_next_token_nll_and_rises_when_the_model_breaks(micro_lm, micro_world):
    """Golden: the batched, padded implementation equals exp(mean NLL) from one unpadded forward pass
    per text over every token after the text's first word; wrecking an MLP raises it."""
    import math

    from editbench.benchmarks.world import heldout_text
    from editbench.benchmarks.world_model import load_world
    from editbench.harness import metrics

    texts = heldout_text(load_world(micro_world))[:20]
    nll, count = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = micro_lm.tokenizer(text).input_ids
            head = len(micro_lm.tokenizer(text.split(" ")[0]).input_ids)
            logp = torch.log_softmax(micro_lm.model(input_ids=torch.tensor([ids])).logits[0].double(), -1)
            nll -= sum(logp[i - 1, ids[i]].item() for i in range(head, len(ids)))
            count += len(ids) - head
    ppl = metrics.perplexity(micro_lm, texts)
    assert ppl == pytest.approx(math.exp(nll / count), rel=1e-5) and 1.0 < ppl < 10.0
    with torch.no_grad():
        micro_lm.model.model.layers[1].mlp.down_proj.weight.mul_(8.0)
    assert metrics.perplexity(micro_lm, texts) > 1.3 * ppl  # measured: 1.63 -> 2.59
