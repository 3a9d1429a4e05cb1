"""Real edit datasets and exams from ../shared/data (skipped when absent), and hand-made files in every
layout, including malformed ones that must each fail with file, record and field named."""
import json

import pytest

from conftest import SHARED_DATA
from editbench.benchmarks.editdata import load_edits
from editbench.benchmarks.exams import load_exam
from editbench.cli import main
from editbench.core import ConfigError, DataError

needs_data = pytest.mark.real_data  # skipped when the folder is absent (conftest)


@needs_data
def test_real_zsre_counterfact_wikibigedit_load():
    zsre = load_edits("zsre", str(SHARED_DATA / "zsre" / "zsre_3k.json"))
    assert len(zsre.requests) == 3000 and not zsre.skipped
    assert all(len(r.rephrase_prompts) == 1 and len(r.locality) == 1 for r in zsre.requests)
    assert zsre.requests[0].locality[0][0].startswith("nq question: ")
    cf = load_edits("counterfact", str(SHARED_DATA / "counterfact" / "counterfact_3k.json"))
    assert len(cf.requests) == 3000 and cf.requests[0].case_id == "1884" and cf.requests[0].target_true
    wbe = load_edits("wikibigedit", str(SHARED_DATA / "wikibigedit" / "wikibigedit_3k.json"))
    assert len(wbe.requests) == 3000 and wbe.requests[0].target_true is None
    # --limit and a seeded --shuffle pick the same records every time, and the seed matters
    a = load_edits("zsre", str(SHARED_DATA / "zsre" / "zsre_3k.json"), limit=5, shuffle=True, seed=1)
    b = load_edits("zsre", str(SHARED_DATA / "zsre" / "zsre_3k.json"), limit=5, shuffle=True, seed=1)
    c = load_edits("zsre", str(SHARED_DATA / "zsre" / "zsre_3k.json"), limit=5, shuffle=True, seed=2)
    assert [r.case_id for r in a.requests] == [r.case_id for r in b.requests] != [r.case_id for r in c.requests]


@needs_data
def test_real_exams_load_with_categories():
    ceval = load_exam("ceval", SHARED_DATA / "ceval")
    assert ceval.subjects == 52 and len(ceval.questions) == 1346 and ceval.mode == "letter"
    assert {q.category for q in ceval.questions} == {"STEM", "Social Sciences", "Humanities", "Other"}
    assert ceval.questions[0].prompt.count("答案：") == 6 and ceval.questions[0].letter_sep == ""  # 5 shots + question
    mmlu = load_exam("mmlu", SHARED_DATA / "mmlu", shots=0, limit_per_subject=2, seed=0)
    assert mmlu.subjects == 57 and len(mmlu.questions) == 114
    assert mmlu.questions[0].prompt.startswith("The following are multiple choice questions")
    again = load_exam("mmlu", SHARED_DATA / "mmlu", shots=0, limit_per_subject=2, seed=0)
    assert [q.qid for q in again.questions] == [q.qid for q in mmlu.questions]


def _write(tmp_path, name, records):
    path = tmp_path / name
    path.write_text(records if isinstance(records, str) else json.dumps(records), encoding="utf-8")
    return str(path)


def test_original_counterfact_layout(tmp_path):
    record = {
        "case_id": 7,
        "requested_rewrite": {"prompt": "The mother tongue of {} is", "subject": "Danielle Darrieux",
                              "target_new": {"str": "English"}, "target_true": {"str": "French"}},
        "paraphrase_prompts": ["Shayna does this. Danielle Darrieux speaks", "Danielle Darrieux's native tongue is"],
        "neighborhood_prompts": ["The native language of Montesquieu is", "Jean Gabin speaks"],
        "generation_prompts": ["Danielle Darrieux's mother tongue is"],
    }
    loaded = load_edits("counterfact", _write(tmp_path, "cf.json", [record]))
    [r] = loaded.requests
    assert r.prompt == "The mother tongue of Danielle Darrieux is" and r.case_id == "7"
    assert (r.target_new, r.target_true) == ("English", "French") and len(r.rephrase_prompts) == 2
    assert r.locality == (("The native language of Montesquieu is", "French"), ("Jean Gabin speaks", "French"))
    assert loaded.fluency_prompts == ["Danielle Darrieux's mother tongue is"]


def test_knowedit_and_mquake_layouts(tmp_path):
    knowedit = [{
        "subject": "Lahti Town Hall", "prompt": "The architect of Lahti Town Hall is", "target_new": "Aki Ola",
        "ground_truth": ["Eliel Saarinen"],
        "portability": {"Reasoning": [{"prompt": "The nationality of the architect of Lahti Town Hall is",
                                       "ground_truth": [["Finnish", "Finland"]]}]},
        "locality": {"Relation_Specificity": [{"prompt": "Lahti Town Hall is located in", "ground_truth": [["Lahti"]]}]},
    }]
    [r] = load_edits("knowedit", _write(tmp_path, "ke.json", knowedit)).requests
    assert r.target_true == "Eliel Saarinen" and r.portability[0][1] == "Finnish" and r.locality[0][1] == "Lahti"
    mquake = [{
        "case_id": 1,
        "requested_rewrite": [
            {"prompt": "{} is a citizen of", "subject": "Ellie Kemper", "target_new": {"str": "Croatia"},
             "target_true": {"str": "United States of America"}, "question": "What is Ellie Kemper a citizen of?"},
            {"prompt": "The capital of {} is", "subject": "Croatia", "target_new": {"str": "Kotor"},
             "target_true": {"str": "Zagreb"}, "question": "What is the capital of Croatia?"}],
        "questions": ["What is the capital of the country Ellie Kemper is a citizen of?"],
        "new_answer": "Kotor",
    }]
    first, last = load_edits("mquake", _write(tmp_path, "mq.jsonl", "\n".join(map(json.dumps, mquake)))).requests
    assert first.prompt == "Ellie Kemper is a citizen of" and first.portability == () and first.case_id == "1.0"
    assert last.portability == (("What is the capital of the country Ellie Kemper is a citizen of?", "Kotor"),)


ZSRE_OK = {"subject": "Charity Creek", "src": "Which river system contains Charity Creek?", "rephrase": "Where?",
           "alt": "Chichester River", "answers": ["Parramatta River"], "loc": "nq question: who", "loc_ans": "12"}


@pytest.mark.parametrize("content, message", [
    ("[{\"subject\": ", "zs.json: not valid JSON"),
    ([{k: v for k, v in ZSRE_OK.items() if k != "alt"}], "zs.json: record 0 (case_id 0): field 'alt' is missing"),
    ([ZSRE_OK, {**ZSRE_OK, "answers": "Parramatta"}], "record 1 (case_id 1): field 'answers' must be list"),
    ([{**ZSRE_OK, "subject": "Nowhere Creek"}], "zs.json: record 0 (case_id 0): field 'subject' 'Nowhere Creek' does not occur"),
    ({"subject": "x"}, "expected a JSON list of records"),
])
def test_malformed_edit_files_fail_naming_file_record_and_field(tmp_path, content, message):
    with pytest.raises(DataError) as err:
        load_edits("zsre", _write(tmp_path, "zs.json", content))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_records_are_skipped_and_counted_only_when_asked(tmp_path):
    path = _write(tmp_path, "zs.json", [ZSRE_OK, {**ZSRE_OK, "subject": "Nowhere Creek"}, ZSRE_OK])
    with pytest.raises(DataError, match=r"record 1 \(case_id 1\)"):
        load_edits("zsre", path)
    loaded = load_edits("zsre", path, on_bad_record="skip")
    assert len(loaded.requests) == 2 and len(loaded.skipped) == 1 and "Nowhere Creek" in loaded.skipped[0]
    with pytest.raises(ConfigError, match="does not exist"):
        load_edits("zsre", str(tmp_path / "missing.json"))


def test_exam_directory_errors(tmp_path):
    (tmp_path / "val").mkdir()
    with pytest.raises(DataError, match="subject_mapping.json: no such file"):
        load_exam("mmlu", tmp_path)
    (tmp_path / "subject_mapping.json").write_text(json.dumps({"algebra": {"name": "algebra", "category": "STEM"}}))
    (tmp_path / "val" / "algebra_val.csv").write_text("What is 1+1?,1,2,3,4,F\n")
    with pytest.raises(DataError, match="algebra_val.csv: row 1: field 'answer' must be one of A, B, C, D"):
        load_exam("mmlu", tmp_path, shots=0)
    (tmp_path / "val" / "algebra_val.csv").write_text("What is 1+1?,1,2,3\n")
    with pytest.raises(DataError, match="row 1: field 'D' is missing"):
        load_exam("mmlu", tmp_path, shots=0)


@needs_data
def test_zsre_with_ceval_end_to_end_on_the_micro_world(micro_world, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--method", "ft", "--benchmark", "zsre", "--data", str(SHARED_DATA / "zsre" / "zsre_3k.json"),
                 "--limit", "3", "--exam", "ceval", "--exam-dir", str(SHARED_DATA / "ceval"), "--exam-limit", "1",
                 "--exam-shots", "1", "--world", "micro", "--checkpoints", "1,3", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "ft" / "results.json").read_text())
    assert results["benchmark"]["name"] == "zsre" and results["benchmark"]["skipped_records"] == 0
    assert len(results["exam_questions"]) == 52 and results["pre"]["exam_mode"] == "letter"
    general = results["checkpoints"][-1]["general"]
    assert general["exam"] == "ceval" and set(general["by_category"]) == {"STEM", "Social Sciences", "Humanities",
                                                                          "Other"}
    assert 0.0 <= general["accuracy"] <= 1.0


def test_hub_ids_fail_clearly_when_offline():
    """A dataset id (not a local file) goes to the hub; offline that is one line saying what to pass instead.
    The offline switches make `datasets` fail at once instead of retrying for half a minute."""
    import os
    import subprocess
    import sys

    code = (
        "from editbench.benchmarks.editdata import load_edits\n"
        "from editbench.harness.corpus import load_corpus\n"
        "for call in (lambda: load_edits('zsre', 'someorg/zsre'), lambda: load_corpus('hf:wikitext', None, 5)):\n"
        "    try:\n        call()\n    except Exception as exc:\n        print(type(exc).__name__, exc)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120).stdout
    lines = out.strip().splitlines()
    assert lines[0].startswith("ConfigError cannot load 'someorg/zsre'") and "pass a local JSON/JSONL file" in lines[0]
    assert lines[1].startswith("ConfigError cannot load corpus 'hf:wikitext'") and "local .txt/.jsonl" in lines[1]


def test_a_corpus_of_records_through_templates(tmp_path, monkeypatch):
    """Key statistics over a dataset's own text: records become documents through field templates,
    a `data:` path is read under the data folder, and the templates are part of the corpus identity."""
    from editbench.harness.corpus import check_corpus, corpus_identity, load_corpus

    records = [{"prompt": f"Where is town {i}?", "target_new": f"Land {i}", "locality_prompt": f"Who is {i}?",
                "locality_ground_truth": f"Person {i}"} for i in range(4)]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "r.json").write_text(json.dumps(records))
    (tmp_path / "sub" / "r.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    monkeypatch.setenv("EDITBENCH_DATA", str(tmp_path))
    both = "{prompt} {target_new}|{locality_prompt} {locality_ground_truth}"
    for name in ("r.json", "r.jsonl"):
        texts = load_corpus(f"data:sub/{name}#{both}", None, 100)
        assert sorted(texts) == sorted([f"Where is town {i}? Land {i}" for i in range(4)] +
                                       [f"Who is {i}? Person {i}" for i in range(4)])
    one = corpus_identity("data:sub/r.json#{prompt} {target_new}", None)
    assert one != corpus_identity(f"data:sub/r.json#{both}", None) and one.startswith("r.json-")
    with pytest.raises(DataError, match=r"r.json: record 0: field 'answer' \(named by the corpus template"):
        load_corpus("data:sub/r.json#{prompt} {answer}", None, 100)
    with pytest.raises(ConfigError, match=r"does not exist \(the data folder"):
        check_corpus("data:nope.json#{prompt}", None)
    with pytest.raises(ConfigError, match="nothing after '#'"):
        load_corpus("data:sub/r.json#", None, 100)


def test_held_out_text_may_be_a_corpus_of_records(micro_world, tmp_path, monkeypatch):
    import editbench

    records = [{"prompt": f"Where is the town of Ash {i}?", "answer": f"North {i}"} for i in range(300)]
    (tmp_path / "held.json").write_text(json.dumps(records))
    monkeypatch.setenv("EDITBENCH_DATA", str(tmp_path))
    result = editbench.run(["noedit"], world="micro", edits=2, checkpoints=[2],
                           perplexity_text="data:held.json#{prompt} {answer}").results[0]
    assert result["pre"]["perplexity_texts"] == 200 and result["pre"]["perplexity"] > 1
    with pytest.raises(ConfigError, match="does not exist"):
        editbench.run(["noedit"], world="micro", edits=2, perplexity_text="data:gone.json#{prompt}")
