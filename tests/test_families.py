"""Editors that do not change weights: GRACE (a module patch) and retrieval (a context patch). Their
codebook and memory rules, exact removal, checkpoints and resume, the drill-down, save-model refusal."""
import json
from pathlib import Path

import pytest
import torch
from conftest import assert_same_state, state_copy, strip_volatile

from editbench.core import ConfigError, ModulePatch, tensors_to_texts, texts_to_tensors
from editbench.methods.grace import GRACE, GRACECodebook, GRACEConfig, replaced

VOLATILE = {"created", "edit_seconds", "eval_seconds", "seconds", "memory", "audit", "resumed"}


def _grace(**over) -> GRACE:
    return GRACE(GRACEConfig(eps=1.0, **over))


def _label(*ids):
    return torch.tensor(ids)


def test_grace_codebook_rules_follow_the_reference():
    """EasyEdit GRACEAdapter.forward at iter 0: far -> new key (radius eps); within eps + eps_near with
    another label -> new key and both radii split at half the distance (the old one less 1e-5); with
    the same label -> the nearest radius grows to the distance (coverage) and that entry is trained."""
    torch.manual_seed(0)
    editor, own = _grace(), torch.zeros(3)
    origin = torch.zeros(4)
    assert editor._update_codebook(origin, _label(5), own, "cpu") == (0, "added")
    assert editor.eps.tolist() == [1.0] and editor.values.shape == (1, 3)
    assert 0 <= float(editor.values.min()) and float(editor.values.max()) < 1  # cold: uniform [0, 1)
    far = torch.tensor([3.0, 0, 0, 0])  # 3 > eps + eps_near = 2
    assert editor._update_codebook(far, _label(6), own, "cpu") == (1, "added")
    near_other = torch.tensor([0, 1.5, 0, 0])  # 1.5 <= 2 from key 0, another label: split
    assert editor._update_codebook(near_other, _label(7), own, "cpu") == (2, "split")
    assert editor.eps[0].item() == pytest.approx(0.75 - 1e-5) and editor.eps[2].item() == pytest.approx(0.75)
    near_same = torch.tensor([0, 0, 1.2, 0])  # 1.2 from key 0 (nearest), same label: coverage
    assert editor._update_codebook(near_same, _label(5), own, "cpu") == (0, "expanded")
    assert editor.eps[0].item() == pytest.approx(1.2) and editor.keys.shape[0] == 3
    moving = _grace(eps_expand="moving_average", val_init="warm")
    moving._update_codebook(origin, _label(5, 9), own + 2, "cpu")
    assert torch.equal(moving.values[0], own + 2)  # warm: the projection's own output
    assert moving._update_codebook(torch.tensor([0, 0, 1.6, 0]), _label(5, 9), own, "cpu") == (0, "expanded")
    assert torch.allclose(moving.keys[0], torch.tensor([0, 0, 0.8, 0])) and moving.eps[0].item() == pytest.approx(1.6)
    assert moving._update_codebook(torch.tensor([0, 0, 0, 1.0]), _label(5), own, "cpu")[1] == "split"  # [5] != [5, 9]


def test_grace_codebook_replaces_only_positions_inside_a_radius():
    keys, values, eps = torch.tensor([[0.0, 0.0], [5.0, 5.0]]), torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]), \
        torch.tensor([0.5, 0.1])
    inputs = torch.tensor([[[0.1, 0.1], [5.0, 5.2], [3.0, 3.0]]])  # inside key 0, just outside key 1, far
    output = torch.full((1, 3, 3), 9.0)
    patched = GRACECodebook({}, {"keys": keys, "values": values, "eps": eps})(inputs, output)
    assert patched[0, 0].tolist() == [1.0] * 3 and patched[0, 1].tolist() == [9.0] * 3 and patched[0, 2].tolist() == [9.0] * 3
    assert torch.equal(GRACECodebook({}, {"keys": torch.empty(0, 2), "values": torch.empty(0, 3),
                                          "eps": torch.empty(0)})(inputs, output), output)
    trainable = values.clone().requires_grad_(True)
    replaced(inputs, output, keys, trainable, eps).sum().backward()
    assert trainable.grad[0].tolist() == [1.0] * 3 and trainable.grad[1].tolist() == [0.0] * 3


def test_grace_writes_through_a_patch_and_comes_off_exactly(micro_lm, micro_requests):
    from editbench.harness.interventions import Applied
    from editbench.harness.metrics import edit_scores, locality_top1

    before = state_copy(micro_lm.model)
    editor = GRACE(GRACEConfig(layer=2))
    requests = micro_requests[:3]
    loc = locality_top1(micro_lm, requests)
    applied = Applied(micro_lm.model, micro_lm)
    for request in requests:  # sequentially: each call returns the whole codebook so far
        patch = editor.edit(micro_lm, [request])
        assert isinstance(patch, ModulePatch) and patch.tensors["keys"].shape[0] == editor.keys.shape[0]
        patch.validate(micro_lm.model)
        patch.commit(applied, micro_lm.model)
        assert patch.info[0]["final_loss"] < patch.info[0]["initial_loss"]
    assert len(applied.patches.patches) == 1  # one module, its patch replaced by each call
    rows = edit_scores(micro_lm, requests, loc)
    assert sum(r["reliability_em"] for r in rows) >= 2 and all(r["locality"] == 1.0 for r in rows)
    assert_same_state(micro_lm.model, before)  # not one weight moved
    applied.restore()
    assert all(r["reliability_em"] == 0.0 for r in edit_scores(micro_lm, requests, loc))


def test_texts_survive_the_tensor_round_trip():
    texts = ["Zürich is in", "", "a\nb", "東京"]
    assert tensors_to_texts(*texts_to_tensors(texts)) == texts
    assert tensors_to_texts(*texts_to_tensors([])) == []


def test_retrieval_shows_its_facts_and_records_them(micro_lm, micro_requests):
    from editbench.harness.interventions import Applied
    from editbench.harness.metrics import edit_scores, locality_top1
    from editbench.methods.retrieve import Retrieve, RetrieveConfig

    requests = micro_requests[:6]
    loc = locality_top1(micro_lm, requests)
    bare = edit_scores(micro_lm, requests, loc)
    editor = Retrieve(RetrieveConfig(top_k=2))
    patch = editor.edit(micro_lm, requests)
    applied = Applied(micro_lm.model, micro_lm)
    patch.commit(applied, micro_lm.model)
    rows = edit_scores(micro_lm, requests, loc)
    facts = [f"{r.prompt} {r.target_new}" for r in requests]
    for row, request in zip(rows, requests):
        shown = row["retrieved"]
        assert 1 <= len(shown["reliability"]) <= 2 and set(shown["reliability"]) <= set(facts)
        assert len(shown["generalization"]) == len(request.rephrase_prompts)
        assert len(shown["locality"]) == len(request.locality)
    # the model's own states find each edit's own fact for its own prompt most of the time
    assert sum(row["retrieved"]["reliability"][0] == fact for row, fact in zip(rows, facts)) >= 4
    applied.restore()
    assert micro_lm.context is None
    assert edit_scores(micro_lm, requests, loc) == bare  # the context came off: every score as before


def test_save_model_is_refused_for_a_patch_editor(micro_world, tmp_path):
    from editbench import api

    with pytest.raises(ConfigError, match="module intervention"):
        api.run("grace", world="micro", edits=2, out=str(tmp_path / "g"), save_model=True)
    assert not (tmp_path / "g" / "grace").exists()


@pytest.mark.parametrize("method", ["grace", "retrieve", "wise"])
def test_interrupted_run_resumes_to_the_clean_numbers(method, micro_world, tmp_path):
    """Stopped right after a checkpoint was saved (the log line comes after the save), resumed: the
    same records as an uninterrupted run (the codebook or memory and the patch come back)."""
    from editbench.plan import RunPlan
    from editbench.session import RunSession

    overrides = {"grace": ("grace.n_iter=10",), "retrieve": (),
                 # shards and a merge on both sides of the interruption
                 "wise": ("wise.n_iter=5", "wise.save_freq=2", "wise.merge_freq=4")}[method]
    settings = {"world": "micro", "edits": 6, "checkpoints": (2, 4, 6), "seed": 0, "quiet": True,
                "overrides": overrides}
    RunSession(RunPlan(methods=(method,), out=str(tmp_path / "clean"), **settings)).run()

    def stop_at_t4(line):
        if f"{method} T=4:" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        RunSession(RunPlan(methods=(method,), out=str(tmp_path / "cut"), **settings), log=stop_at_t4).run()
    state = tmp_path / "cut" / method / "state"
    progress = json.loads((state / json.loads((state / "latest.json").read_text())["checkpoint_dir"]
                           / "progress.json").read_text())
    assert [p["intervention"] for p in progress["patches"]] == ["context" if method == "retrieve" else "module"]
    RunSession(RunPlan(methods=(method,), out=str(tmp_path / "cut"), resume=True, **settings)).run()

    def numbers(folder):
        path = tmp_path / folder / method
        return (strip_volatile(json.loads((path / "results.json").read_text()), VOLATILE),
                [strip_volatile(json.loads(line), VOLATILE) for line in (path / "edits.jsonl").read_text().splitlines()])

    assert numbers("clean") == numbers("cut")
    if method == "retrieve":  # the drill-down says which facts each question was shown
        from editbench import cli

        assert cli.main(["report", str(tmp_path / "clean")]) == 0
        page = (tmp_path / "clean" / "leaderboard.html").read_text()
        first = json.loads((tmp_path / "clean" / method / "edits.jsonl").read_text().splitlines()[0])
        assert f"reliability: {first['retrieved']['reliability'][0]}" in page
        assert "generalization 1: " in page and "locality 1: " in page


# --------------------------------------------------------------------------- WISE

EASYEDIT_MERGE = Path(__file__).resolve().parents[2] / "shared" / "easyedit" / "easyeditor" / "models" / "wise" / "merge"


def _easyedit_gta():
    import importlib.util
    import sys

    if not (EASYEDIT_MERGE / "gta.py").is_file():
        pytest.skip(f"EasyEdit's source is not at {EASYEDIT_MERGE.parents[4]} (../shared/easyedit)")
    spec = importlib.util.spec_from_file_location("_easyedit_wise_merge", EASYEDIT_MERGE / "__init__.py",
                                                  submodule_search_locations=[str(EASYEDIT_MERGE)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = package
    spec.loader.exec_module(package)
    return package.GTA


@pytest.mark.parametrize("weights", [[0.5, 0.5], [0.2, 0.2, 0.6]])
def test_ties_merge_equals_easyedit_wise_merge(weights):
    """WISE's shard merge is EasyEdit's GTA('magnitude', 'sum', normalize=True) (its 'ties')."""
    from editbench.methods.merging import ties_merge

    gta = _easyedit_gta()("magnitude", "sum", normalize=True)
    torch.manual_seed(0)
    base = torch.randn(12, 9)
    shards = [base + torch.randn(12, 9) for _ in weights]
    reference = gta.execute(weights, base, shards, densities=0.53)
    assert torch.allclose(ties_merge(base, shards, weights, 0.53), reference, atol=1e-6)


def _memory(retrieve: bool, **tensors):
    from editbench.methods.wise import WISEMemory

    return WISEMemory({"act": "silu", "retrieve": retrieve}, tensors)


def test_wise_routes_each_sequence_on_its_own_real_tokens():
    from editbench.methods.wise import distances

    torch.manual_seed(0)
    inputs = torch.randn(2, 3, 4)
    eye, far = torch.eye(4), 3 * torch.eye(4)
    original = torch.nn.functional.linear(inputs, eye)
    act = torch.nn.functional.silu
    d_far = distances(act, original, torch.nn.functional.linear(inputs, far), None)
    threshold = float(d_far.min()) - 1e-3  # both sequences go to the side memory ...
    mem = _memory(True, side=far, side_threshold=torch.tensor(threshold), shards=torch.zeros(0, 4, 4),
                  shard_thresholds=torch.zeros(0))
    routed = mem(inputs, original)
    assert torch.allclose(routed, torch.nn.functional.linear(inputs, far))
    high = _memory(True, side=far, side_threshold=torch.tensor(float(d_far.max()) + 1), shards=torch.zeros(0, 4, 4),
                   shard_thresholds=torch.zeros(0))
    assert torch.equal(high(inputs, original), original)  # ... or neither, below the threshold
    # a padded row is routed as it would be alone: padding does not count
    padded_in = torch.cat([inputs[:1], torch.full((1, 3, 4), 50.0)], 1)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0]])
    alone = mem(inputs[:1], original[:1])
    with_pad = mem(padded_in, torch.nn.functional.linear(padded_in, eye), mask)[:, :3]
    assert torch.allclose(alone, with_pad)
    # a shard farther than the side memory and above its own threshold wins
    shard = 6 * torch.eye(4)
    mem = _memory(True, side=far, side_threshold=torch.tensor(threshold), shards=shard[None],
                  shard_thresholds=torch.tensor([0.0]))
    assert torch.allclose(mem(inputs, original), torch.nn.functional.linear(inputs, shard))
    # WISE-Merge: the farther of the merged memory and the side memory, unless both are below
    merge = _memory(False, side=far, side_threshold=torch.tensor(threshold), merged=shard)
    assert torch.allclose(merge(inputs, original), torch.nn.functional.linear(inputs, shard))


@pytest.mark.parametrize("retrieve", [True, False])
def test_wise_shards_and_merges_on_schedule(retrieve, micro_lm, micro_requests):
    from editbench.methods.wise import WISE, WISEConfig

    before = state_copy(micro_lm.model)
    editor = WISE(WISEConfig(layer=2, n_iter=3, save_freq=2, merge_freq=4, retrieve=retrieve))
    cache: dict = {}
    editor.prepare(micro_lm, cache)
    original = micro_lm.model.get_submodule("model.layers.2.mlp.down_proj").weight.detach()
    counts = []
    for request in micro_requests[:4]:
        patch = editor.edit(micro_lm, [request], cache)
        counts.append((int(editor.state["shards"].shape[0]), int(editor.state["merges"])))
        assert patch.info[0]["steps"] >= 1 and not torch.equal(editor.state["mask"], torch.zeros_like(original))
    assert_same_state(micro_lm.model, before)
    if retrieve:  # a shard after edits 2 and 4, the two merged into one at edit 4
        assert counts == [(0, 0), (1, 0), (1, 0), (1, 1)]
        assert torch.equal(editor.state["side"], original) and editor.state["shard_min_act"].shape == (1,)
        assert editor.state["min_act"].item() == 1e9  # a fresh shard's smallest distance is not seen yet
    else:  # shards merged into the side FFN at edit 4 and cleared
        assert counts == [(0, 0), (1, 0), (1, 0), (0, 1)]
        assert not torch.equal(editor.state["merged"], original)
