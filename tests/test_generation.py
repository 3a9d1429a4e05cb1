"""Generation verdicts: greedy answers, stop rules, normalisation, WILD strings, score basis."""
from types import SimpleNamespace

import pytest
import torch

from editbench.core import ConfigError, EditRequest
from editbench.harness import generation, metrics
from editbench.harness.results import upgraded
from editbench.harness.generation import (
    GenerationSpec, contains, cut_at_stop, exact_match, greedy_answers, normalize_answer, parse_eval_mode,
    strip_stop_suffix,
)
from editbench.reports import tables
from editbench.reports.stats import overall_score


class CharTokenizer:
    """One token per character (ids = code points); pad and EOS 0."""

    pad_token_id = 0
    eos_token_id = 0
    eos_token = "\x00"

    def __call__(self, text, add_special_tokens=True):
        return SimpleNamespace(input_ids=[ord(c) for c in text])

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


class ScriptModel(torch.nn.Module):
    """A hand-made model that continues a known prompt with a scripted text, one character a step.

    After `prompt + script[:k]` it predicts `script[k]`; the prompt's last character predicts the
    script's first. Anything else predicts EOS. No KV cache: the generator reruns whole sequences.
    """

    config = SimpleNamespace(model_type="toy")

    def __init__(self, scripts: dict[str, str], vocab: int = 256):
        super().__init__()
        self.scripts, self.vocab = scripts, vocab
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):
        logits = torch.full((*input_ids.shape, self.vocab), -10.0)
        for row in range(input_ids.shape[0]):
            ids = [int(i) for i, m in zip(input_ids[row], attention_mask[row]) if m] if attention_mask is not None \
                else input_ids[row].tolist()
            text = "".join(chr(i) for i in ids)
            offset = input_ids.shape[1] - len(ids)  # left padding
            for pos in range(len(text)):
                logits[row, offset + pos, self._next(text[: pos + 1])] = 10.0
        return SimpleNamespace(logits=logits)

    def _next(self, text: str) -> int:
        for prompt, script in self.scripts.items():
            if text.startswith(prompt) and len(text) >= len(prompt):
                done = text[len(prompt):]
                if script.startswith(done) and len(done) < len(script):
                    return ord(script[len(done)])
        return 0


def toy(scripts):
    return SimpleNamespace(model=ScriptModel(scripts), tokenizer=CharTokenizer(), device=torch.device("cpu"),
                           eval_batch_size=64, eval_token_budget=None)


def test_first_token_right_then_drift_token_accuracy_half_generation_zero():
    # gold " Paris" is 6 tokens after the prompt; the model starts right (' ', 'P', 'a') and drifts
    lm = toy({"Q:": " Pa!!!!."})
    [score] = metrics.score_targets(lm, [("Q:", "Paris")])
    assert score.token_accuracy == pytest.approx(0.5) and not score.exact
    [answer] = greedy_answers(lm, ["Q:"], [6], GenerationSpec())
    assert answer.raw == " Pa!!!!." and answer.answer == "Pa!!!!" and not exact_match(answer.answer, "Paris")


def test_answer_then_keeps_talking_stop_rules_and_raw_record():
    lm = toy({"Where? ": "Paris. It is nice."})
    [a] = greedy_answers(lm, ["Where? "], [5], GenerationSpec(margin=4))
    assert a.raw == "Paris." and a.answer == "Paris" and exact_match(a.answer, "paris")
    # no stop string within the limit: cut at gold length + margin, recorded as such
    lm = toy({"Where? ": "Paris is a lovely city."})
    [b] = greedy_answers(lm, ["Where? "], [5], GenerationSpec(margin=4))
    assert b.raw == "Paris is " and b.new_tokens == b.limit == 9
    assert not exact_match(b.answer, "Paris") and contains(b.answer, "Paris")
    # newline and EOS stop too; EOS is not part of the answer
    lm = toy({"A ": "Rome\nmore", "B ": "Oslo"})
    first, second = greedy_answers(lm, ["A ", "B "], [4, 4], GenerationSpec())
    assert first.answer == "Rome" and second.answer == "Oslo" and second.raw == "Oslo\x00"


def test_batch_size_does_not_change_answers_toy():
    lm = toy({"a": " one.", "bb": " two two.", "ccc": " x"})
    qs = ["a", "bb", "ccc", "a"]
    one = greedy_answers(lm, qs, [4, 8, 2, 4], GenerationSpec(), batch_size=1)
    many = greedy_answers(lm, qs, [4, 8, 2, 4], GenerationSpec(), batch_size=64)
    assert one == many and [a.answer for a in one] == ["one", "two two", "x", "one"]


def test_squad_normalisation_golden():
    # the Mirage reference's normalize_answer (lower, punctuation, articles, whitespace), case by case
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("An apple, a day") == "apple day"
    assert normalize_answer("  Theatre of the Absurd ") == "theatre of absurd"
    assert normalize_answer("A") == "" and normalize_answer("U.S.A.") == "usa"
    assert exact_match("the Paris.", "Paris") and not exact_match("Paris France", "Paris")
    assert contains("Paris France", "paris") and not contains("Parisian", "Paris") and not contains("x", "")


def test_wild_strings_and_stop_rules_golden():
    # byte for byte as WanliYoung/Revisit-Editing-Evaluation test_prediction_acc_real defines them
    assert generation.WILD_QA_INSTRUCTION.format(question="Who?") == "Please answer the question:\n\nQ: Who?\nA:"
    assert generation.WILD_LLAMA2_CHAT.format(user_prompt="Who?") == (
        "<s>[INST] <<SYS>>\nYou are a helpful, respectful and honest assistant.\n<</SYS>>\n\nWho? [/INST]</s>")
    assert generation.WILD_STOP_STRINGS == (".", "\n", "</s>", "<|endoftext|>")
    assert generation.WILD_MAX_NEW_TOKENS == 50
    spec = GenerationSpec(mode="wild")
    assert spec.max_new_tokens(3) == 50 and spec.stop_strings == generation.WILD_STOP_STRINGS
    # one trailing stop string removed: the reference's intent (its rstrip would give 'Pari')
    assert strip_stop_suffix("Paris</s>", spec.stop_strings) == "Paris"
    assert "Paris</s>".rstrip("</s>") == "Pari"  # what the reference's rstrip does, for the record
    assert strip_stop_suffix(" Paris.", spec.stop_strings) == " Paris"
    assert cut_at_stop("Paris. It", (".", "\n")) == "Paris"
    tok = CharTokenizer()
    assert generation.context_text(GenerationSpec("wild", context="qa_inst"), tok, "Who?").startswith("Please")
    assert generation.context_text(GenerationSpec("wild", context="chat"), tok, "Who?").startswith("<s>[INST]")
    assert generation.context_text(spec, tok, "Who?") == "Who?"


def test_wild_stops_only_when_text_ends_with_stop():
    lm = toy({"Q": " St. Louis"})
    [wild] = greedy_answers(lm, ["Q"], [3], GenerationSpec(mode="wild"))
    assert wild.raw == " St." and wild.answer == "St"
    # an end-of-sequence text that is none of the reference's suffixes (an instruct model's) is removed too
    lm = toy({"Q": " Oslo"})
    [eos] = greedy_answers(lm, ["Q"], [3], GenerationSpec(mode="wild"))
    assert eos.raw == " Oslo\x00" and eos.answer == "Oslo" and exact_match(eos.answer, "Oslo")


def test_bad_specs_are_config_errors():
    with pytest.raises(ConfigError, match="unknown"):
        parse_eval_mode("judge")
    with pytest.raises(ConfigError, match="margin"):
        GenerationSpec(margin=-1)
    with pytest.raises(ConfigError, match="wild"):
        GenerationSpec(context="chat")
    assert parse_eval_mode("teacher-forced") is None


def test_generation_metrics_per_edit():
    lm = toy({"Ann lives in": " Oslo.", "Ann's home is": " Rome.", "Bob lives in": " Lima.",
              "Ann's country is": " Peru."})
    request = EditRequest("c1", "Ann lives in", "Ann", "Oslo", "Rome", rephrase_prompts=("Ann's home is",),
                          locality=(("Bob lives in", "Lima"),), portability=(("Ann's country is", "Norway"),),
                          locality_groups=("unrelated",), portability_groups=("two_hop",))
    spec = GenerationSpec()
    pre_loc = metrics.locality_answers(lm, [request], spec)
    assert pre_loc == [["Lima"]]
    [row] = metrics.edit_scores(lm, [request], [[[0] * 5]], generation=spec, locality_pre_answers=pre_loc,
                                pre_rows=[{"reliability_gen": 0.0, "generalization_gen": 0.0}])
    assert row["reliability_gen"] == 1.0 and row["generalization_gen"] == 0.0 and row["portability_gen"] == 0.0
    assert row["locality_gen"] == 1.0 and row["locality_unrelated_gen"] == 1.0 and row["portability_two_hop_gen"] == 0
    assert row["reliability_gen_gain"] == 1.0 and row["generated"] == " Oslo." and row["answer"] == "Oslo"
    assert metrics.group_metrics([row]) == ["locality_unrelated", "locality_unrelated_gen", "portability_two_hop",
                                            "portability_two_hop_gen"]


def test_score_basis_generation_and_token():
    row = {"reliability_gain": 1.0, "generalization_gain": 1.0, "locality": 1.0, "exam_retention": 1.0,
           "reliability_gen_gain": 0.0, "generalization_gen_gain": 0.0, "locality_gen": 1.0}
    assert overall_score(row, "token") == 1.0 and overall_score(row, "generation") == 0.0
    cp = {"edits": 1, "reliability": 0.5, "reliability_gen": 0.0, "reliability_gen_gain": 0.0,
          "generalization_gen_gain": 0.0, "locality_gen": 1.0, "reliability_gain": 0.5, "generalization_gain": 0.5,
          "locality": 1.0, "edit_seconds": 1.0, "per_edit": []}
    # as load_results reads a file (results.upgraded): the fields a checkpoint row reads are all there
    result = upgraded({"method": "m", "seed": 0, "checkpoints": [cp], "evaluation": {"score_basis": "generation"}})
    cp = result["checkpoints"][0]
    gen = tables.checkpoint_row(result, cp)
    assert gen["score_basis"] == "generation" and gen["score"] == 0.0 and gen["reliability_gap"] == 0.5
    assert tables.checkpoint_row(result, cp, "token")["score"] == pytest.approx(2 * 0.5 / 1.5)
    old = upgraded({"method": "old", "checkpoints": [cp]})  # a results file from before generation: token basis
    assert tables.choose_basis([old]) == "token"
    with pytest.raises(Exception, match="teacher-forced only"):
        tables.choose_basis([old, result], "generation")


# --------------------------------------------------------------------------- on the micro world


def test_micro_answers_equal_hf_greedy_and_any_batch_size(micro_lm, micro_requests):
    questions = [r.prompt for r in micro_requests] + [p for r in micro_requests for p in r.rephrase_prompts]
    lengths = [4] * len(questions)
    spec = GenerationSpec(margin=2)
    batched = greedy_answers(micro_lm, questions, lengths, spec, batch_size=64)
    assert batched == greedy_answers(micro_lm, questions, lengths, spec, batch_size=1)
    assert batched == greedy_answers(micro_lm, questions, lengths, spec, batch_size=5)
    for question, answer in list(zip(questions, batched))[:6]:  # transformers' own greedy search agrees
        ids = micro_lm.tokenizer(question, return_tensors="pt").input_ids
        out = micro_lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                      max_new_tokens=answer.limit, pad_token_id=micro_lm.tokenizer.pad_token_id)
        hf = micro_lm.tokenizer.decode(out[0, ids.shape[1]:])
        assert hf.startswith(answer.raw) and answer.answer == cut_at_stop(hf, (".", "\n")).strip()


def test_noedit_scores_zero_on_generation_and_records_what_was_said(micro_lm, micro_world):
    from editbench.benchmarks.registry import world_benchmark
    from editbench.harness.runner import EvalSuite, Runner
    from editbench.methods.noedit import NoEdit

    data = world_benchmark(micro_world, 4, seed=0)
    suite = EvalSuite([], 8, "", [], generation=GenerationSpec())
    results, rows = Runner(micro_lm, NoEdit(), data.requests, suite, [4], 0, log=lambda m: None).run()
    [cp] = results["checkpoints"]
    assert cp["reliability_gen"] == 0.0 and cp["locality_gen"] == 1.0 and cp["reliability_gen_gain"] == 0.0
    assert results["evaluation"]["mode"] == "generation" and results["evaluation"]["score_basis"] == "generation"
    assert all(r["generated_before"] == r["generated_after"] and r["generated_after"] for r in rows)
    record = upgraded(results)  # as load_results reads it
    assert tables.checkpoint_row(record, record["checkpoints"][0])["score"] == 0.0
