"""An edit the unedited model already makes tests no editor: the world draws it again, a dataset leaves
it out and counts it, so `noedit` scores exactly 0 on any model by construction."""
from __future__ import annotations

import pytest

import editbench
from editbench.benchmarks import registry
from editbench.benchmarks import world as world_gen
from editbench.benchmarks.world_model import load_world
from editbench.core import EditRequest


def test_a_known_edit_is_drawn_again_in_place_and_the_others_stay(micro_world):
    world = load_world(micro_world)
    plain = world_gen.make_requests(world, 8, seed=0)
    known = {plain[2].case_id, plain[5].case_id}
    asked = []

    def verdict(requests):
        asked.append([r.case_id for r in requests])
        return [r.case_id in known for r in requests]

    drawn = world_gen.make_requests(world, 8, seed=0, already_answered=verdict)
    assert drawn == world_gen.make_requests(world, 8, seed=0, already_answered=verdict)  # seeded
    assert [r for i, r in enumerate(drawn) if i not in (2, 5)] == [r for i, r in enumerate(plain) if i not in (2, 5)]
    assert not known & {r.case_id for r in drawn} and len({r.case_id for r in drawn}) == 8
    assert asked[0] == [r.case_id for r in plain] and len(asked[1]) == 2  # only the replacements asked again
    assert world_gen.make_requests(world, 8, seed=0, already_answered=lambda rs: [False] * len(rs)) == plain


def test_a_dataset_leaves_known_edits_out_in_file_order_and_counts_them():
    requests = [EditRequest(case_id=str(i), prompt=f"Q{i} is", subject=f"Q{i}", target_new="x") for i in range(10)]
    data = registry.BenchmarkData(name="zsre", requests=list(requests), fluency_prompts=[], fluency_tokens=8,
                                  exam_name="", exam=[])
    checked = []

    def verdict(part):
        checked.extend(r.case_id for r in part)
        return [r.case_id in {"1", "4"} for r in part]

    registry.drop_answered(data, 4, verdict)
    assert [r.case_id for r in data.requests[:4]] == ["0", "2", "3", "5"] and data.already_answered == ["1", "4"]
    assert checked == ["0", "1", "2", "3", "4", "5"]  # no more than four clean edits needed
    everything = registry.BenchmarkData(name="zsre", requests=list(requests), fluency_prompts=[], fluency_tokens=8,
                                        exam_name="", exam=[])
    registry.drop_answered(everything, None, verdict)
    assert len(everything.requests) == 8 and everything.already_answered == ["1", "4"]


def test_noedit_scores_zero_on_a_model_that_already_knows_a_drawn_target(micro_world, tmp_path):
    from editbench.harness.generation import GenerationSpec
    from editbench.harness.metrics import already_answered

    lm = editbench.load(micro_world)
    plain = editbench.world_edits(lm, 6, seed=0)
    editbench.edit(lm, "ft", plain[0])  # this model now already says the first drawn edit's target_new
    spec = GenerationSpec()
    assert already_answered(lm, plain[:1], spec) == [True]
    results = editbench.run(["noedit"], model=lm, world="micro", edits=6, checkpoints=[6], seed=0,
                            out=tmp_path / "run", overwrite=True)
    [record] = results.results
    final = record["checkpoints"][-1]
    ids = [row["case_id"] for row in final["per_edit"]]
    assert plain[0].case_id not in ids and ids[1:] == [r.case_id for r in plain[1:]]
    assert record["audit"]["already_answered"] == [plain[0].case_id]
    assert final["reliability_gen"] == 0.0


@pytest.mark.real_data
@pytest.mark.parametrize("dataset", ["zsre", "counterfact"])  # not `benchmark`: pytest-benchmark's fixture
def test_a_dataset_edit_the_model_already_makes_is_left_out_and_noedit_scores_zero(dataset, micro_world, tmp_path):
    from dataclasses import replace

    from conftest import SHARED_DATA
    from editbench.benchmarks.editdata import load_edits

    data = str(SHARED_DATA / dataset / f"{dataset}_3k.json")
    first = load_edits(dataset, data, limit=6, split="edit").requests  # what a run reads by default
    lm = editbench.load(micro_world)
    # this model now already says the second record's target (and stops after it: ZsRE asks questions)
    editbench.edit(lm, "ft", replace(first[1], target_new=first[1].target_new + "."), steps=150, lr=3e-3)
    results = editbench.run(["noedit"], model=lm, benchmark=dataset, data=data, edits=5, checkpoints=[5],
                            exam="world", out=tmp_path / dataset, overwrite=True)
    [record] = results.results
    final = record["checkpoints"][-1]
    assert record["audit"]["already_answered"] == [first[1].case_id]
    assert [row["case_id"] for row in final["per_edit"]] == [r.case_id for r in first if r is not first[1]][:5]
    assert final["reliability_gen"] == 0.0
