"""A dataset's fixed edit/dev split, and the prompt format (bare or the chat template) as one axis of a
run: edits and scores read the same rendered text."""
import json
import random

import pytest

import editbench
from conftest import SHARED_DATA
from editbench.benchmarks.editdata import DEV_SHARE, load_edits, record_split
from editbench.core import ConfigError, EditRequest
from editbench.harness.prompts import PromptFormat
from editbench.harness.results import read_jsonl
from editbench.plan import RunPlan

# a chat template of the usual shape (a user turn, then the assistant's turn opened)
CHAT = ("{% for m in messages %}<|user|>{{ m['content'] }}<|end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def _zsre_records(n: int) -> list[dict]:
    return [{"subject": f"Thing {i}", "src": f"What is Thing {i} made of?", "alt": f"stuff {i}", "answers": [f"wood {i}"],
             "rephrase": f"Thing {i} is made of what?", "loc": f"nq question: who is {i}", "loc_ans": f"person {i}"}
            for i in range(n)]


def test_the_split_is_a_property_of_each_record_not_of_its_place(tmp_path):
    records = _zsre_records(200)
    sides = [record_split(r) for r in records]
    assert 20 <= sides.count("dev") <= 60  # one in DEV_SHARE = 5, give or take the hash's chance
    forward, backward = tmp_path / "a.json", tmp_path / "b.json"
    forward.write_text(json.dumps(records))
    shuffled = records[:]
    random.Random(3).shuffle(shuffled)
    backward.write_text(json.dumps(shuffled))
    subjects = {}
    for path in (forward, backward):
        for split in ("edit", "dev", "all"):
            subjects[path.name, split] = {r.subject for r in load_edits("zsre", str(path), split=split).requests}
    for name in ("a.json", "b.json"):
        assert subjects[name, "edit"] | subjects[name, "dev"] == subjects[name, "all"]
        assert not subjects[name, "edit"] & subjects[name, "dev"]
    assert subjects["a.json", "dev"] == subjects["b.json", "dev"]  # file order does not move a record
    # each record keeps its place in the file: its default case_id and its name in errors
    dev = load_edits("zsre", str(forward), split="dev").requests
    assert [int(r.case_id) for r in dev] == [i for i, s in enumerate(sides) if s == "dev"]
    # --limit takes the first N of the split, --shuffle shuffles within it
    assert [r.case_id for r in load_edits("zsre", str(forward), split="edit", limit=3).requests] == \
        [str(i) for i, s in enumerate(sides) if s == "edit"][:3]
    mixed = load_edits("zsre", str(forward), split="dev", shuffle=True, seed=1).requests
    assert {r.case_id for r in mixed} == {r.case_id for r in dev} and mixed != dev


@pytest.mark.real_data
def test_the_shipped_datasets_split_as_recorded():
    """The split is pinned: a change of salt or canonical form would move the leaderboard's edits."""
    expected = {"zsre": (2427, 573, ["0", "7", "11", "14", "23"]),
                "counterfact": (2436, 564, ["8610", "10026", "284", "692", "10048"])}
    for name, (n_edit, n_dev, first_dev) in expected.items():
        path = str(SHARED_DATA / name / f"{name}_3k.json")
        edit, dev = (load_edits(name, path, split=s).requests for s in ("edit", "dev"))
        assert (len(edit), len(dev)) == (n_edit, n_dev) and [r.case_id for r in dev[:5]] == first_dev
        assert not {r.case_id for r in edit} & {r.case_id for r in dev}
        assert abs(len(dev) / (len(edit) + len(dev)) - 1 / DEV_SHARE) < 0.02


def test_split_all_is_for_datasets_and_tune_reads_a_datasets_dev_split(tmp_path):
    from editbench.tuning_session import check_tune

    with pytest.raises(ConfigError, match="all applies to dataset benchmarks"):
        RunPlan(methods=("ft",), split="all")
    path = tmp_path / "z.json"
    path.write_text(json.dumps(_zsre_records(5)))
    check_tune(RunPlan(methods=("ft",), benchmark="zsre", data=path, model="some/model", split="dev", out=tmp_path))
    with pytest.raises(ConfigError, match="on a dataset's dev split with a"):
        check_tune(RunPlan(methods=("ft",), benchmark="zsre", data=path, split="dev", out=tmp_path))
    with pytest.raises(ConfigError, match="dev split only"):
        check_tune(RunPlan(methods=("ft",), benchmark="zsre", data=path, model="m", split="edit", out=tmp_path))


def test_the_chat_format_renders_every_prompt_of_an_edit_and_only_prompts(micro_lm):
    tok = micro_lm.tokenizer
    request = EditRequest("1", "Where is Oslo?", "Oslo", "Norway", "Sweden", rephrase_prompts=("Oslo lies in?",),
                          locality=(("Where is Rome?", "Italy"),), portability=(("Oslo's country's capital?", "Oslo"),),
                          locality_groups=("neighbourhood",))
    assert PromptFormat("bare").request(tok, request) is request
    with pytest.raises(ConfigError, match="has no chat template; use bare"):
        PromptFormat("chat").check(tok, "micro")
    tok.chat_template = CHAT
    chat = PromptFormat("chat")
    chat.check(tok, "micro")
    shown = chat.request(tok, request)
    assert shown.prompt == "<|user|>Where is Oslo?<|end|>\n<|assistant|>\n"
    assert shown.rephrase_prompts == ("<|user|>Oslo lies in?<|end|>\n<|assistant|>\n",)
    assert shown.locality == (("<|user|>Where is Rome?<|end|>\n<|assistant|>\n", "Italy"),)
    assert shown.portability[0][1] == "Oslo" and shown.portability[0][0].startswith("<|user|>Oslo's country")
    assert (shown.subject, shown.target_new, shown.target_true, shown.locality_groups) == \
        ("Oslo", "Norway", "Sweden", ("neighbourhood",))
    with pytest.raises(ConfigError, match="would wrap it again"):
        RunPlan(methods=("ft",), prompt_format="chat", eval_mode="wild", wild_context="chat")


def test_a_chat_run_edits_and_scores_the_rendered_prompts(micro_lm, tmp_path):
    micro_lm.tokenizer.chat_template = CHAT
    results = editbench.run(["ft"], model=micro_lm, world="micro", edits=2, checkpoints=[2], seed=0,
                            prompt_format="chat", out=tmp_path / "chat", overwrite=True)
    [record] = results.results
    assert record["evaluation"]["prompt_format"] == "chat"
    rows = [row for _, row in read_jsonl(tmp_path / "chat" / "ft" / "edits.jsonl")]
    assert len(rows) == 2 and all(r["prompt"].startswith("<|user|>") and r["prompt"].endswith("<|assistant|>\n")
                                  for r in rows)
    bare = editbench.run(["ft"], model=micro_lm, world="micro", edits=2, checkpoints=[2], seed=0).results[0]
    assert bare["evaluation"]["prompt_format"] == "bare"
    assert bare["plan"]["suite_sha256"] != record["plan"]["suite_sha256"]
    assert bare["plan"]["requests_sha256"] != record["plan"]["requests_sha256"]


def test_a_chat_run_on_a_model_without_a_template_is_one_line(micro_world):
    with pytest.raises(ConfigError, match="has no chat template"):
        editbench.run(["noedit"], world="micro", edits=2, prompt_format="chat")


def test_answers_may_end_with_the_end_of_sequence_token(micro_lm):
    from editbench.harness.metrics import already_answered, spoken
    from editbench.harness.generation import GenerationSpec

    tok = micro_lm.tokenizer
    request = EditRequest("1", "Where is Oslo?", "Oslo", "Norway", "Sweden", rephrase_prompts=("Oslo lies in?",),
                          portability=(("Oslo's capital?", "Oslo"),))
    ended = PromptFormat("bare", "eos").request(tok, request)
    assert (ended.target_new, ended.target_true) == ("Norway" + tok.eos_token, "Sweden" + tok.eos_token)
    assert ended.portability == request.portability and ended.prompt == request.prompt
    assert spoken(ended.target_new, tok) == "Norway" and spoken("Norway", tok) == "Norway"
    assert PromptFormat("chat", "eos").label == "chat, answers end with eos" and PromptFormat().label == "bare"
    with pytest.raises(ConfigError, match="answer_end"):
        PromptFormat("bare", "period")
    # the unedited model's verdict compares its answer with the spoken target, not with the token text
    [fact] = editbench.world_edits(micro_lm, 1, seed=0)
    known = dataclasses_replace(fact, target_new=_greedy(micro_lm, fact.prompt))
    assert already_answered(micro_lm, [known], GenerationSpec()) == [True]
    assert already_answered(micro_lm, [PromptFormat("bare", "eos").request(tok, known)], GenerationSpec()) == [True]


def dataclasses_replace(request, **changes):
    import dataclasses

    return dataclasses.replace(request, **changes)


def _greedy(lm, prompt: str) -> str:
    from editbench.harness.generation import GenerationSpec, greedy_answers

    return greedy_answers(lm, [prompt], [6], GenerationSpec())[0].answer


def test_a_run_with_ended_answers_writes_and_scores_them(micro_lm, tmp_path):
    result = editbench.run(["ft"], model=micro_lm, world="micro", edits=3, checkpoints=[3], seed=0,
                           answer_end="eos", out=tmp_path / "eos", overwrite=True).results[0]
    assert result["evaluation"]["prompt_format"] == "bare, answers end with eos"
    assert result["benchmark"]["split"] == "edit"  # the split read is recorded with a model too
    rows = [row for _, row in read_jsonl(tmp_path / "eos" / "ft" / "edits.jsonl")]
    eos = micro_lm.tokenizer.eos_token
    assert all(r["target_new"].endswith(eos) for r in rows)
    # a written answer that stops where the target ends scores as the spoken target
    for r in rows:
        if r["answer_after"] == r["target_new"][: -len(eos)]:
            assert r["immediate_reliability_gen"] == 1.0
    assert any(r["immediate_reliability_gen"] == 1.0 for r in rows)


def test_tune_reads_a_datasets_dev_split_with_a_model(micro_world, tmp_path):
    """A tune of a real model on a dataset: only dev records, provenance naming the data, not a world."""
    import yaml

    from editbench.tuning import TuneSettings
    from editbench.tuning_session import tune_method

    path = tmp_path / "z.json"
    records = _zsre_records(60)
    path.write_text(json.dumps(records))
    dev_subjects = {r["subject"] for r in records if record_split(r) == "dev"}
    plan = RunPlan(methods=("ft",), model=str(micro_world), benchmark="zsre", data=path, split="dev", edits=3,
                   out=tmp_path / "tune", quiet=True)
    outcome = tune_method(plan, TuneSettings(budget=1))
    values = yaml.safe_load(outcome.yaml.read_text())
    assert values["provenance"]["benchmark"] == "zsre" and values["provenance"]["data"] == "z.json"
    assert "world" not in values["provenance"] and outcome.yaml.read_text().startswith("# ft on this model")
    rows = [row for _, row in read_jsonl(tmp_path / "tune" / "ft" / "trial-000" / "edits.jsonl")]
    assert rows and {r["subject"] for r in rows} <= dev_subjects
