"""Metric definitions pinned to their references (issue: verdicts that match the references)."""
import os
from pathlib import Path

import pytest
import torch
import yaml

from editbench.core import EditRequest, ExamQuestion
from editbench.harness import metrics
from editbench.harness.scoring import encode_prompt_target, generate_texts
from editbench.methods.rewrite import REFERENCE_PREFIXES, context_templates, flat, read_at_subject

EASYEDIT = Path(os.environ.get("EDITBENCH_EASYEDIT") or Path(__file__).resolve().parents[1].parent / "shared" / "easyedit")
HPARAMS = Path(__file__).resolve().parents[1] / "editbench" / "hparams"


# --------------------------------------------------------------------------- 1. locality per prompt


def _answer_with_tokens(lm, prompt, n_tokens):
    """A world object (or a run of them) whose encoding after `prompt` is exactly n_tokens long."""
    from editbench.benchmarks.world import RELATIONS

    words = [o for rel in RELATIONS.values() for o in rel["objects"]]
    candidates = words + [" ".join(words[i:i + k]) for k in (2, 3) for i in range(len(words) - k)]
    for text in candidates:
        if len(encode_prompt_target(lm.tokenizer, prompt, text)[1]) == n_tokens:
            return text
    raise AssertionError(f"no {n_tokens}-token answer found")


def test_locality_is_the_mean_per_prompt_then_over_prompts(micro_lm, micro_requests):
    base = micro_requests[0]
    prompt_a, prompt_b = base.locality[0][0], base.locality[1][0]
    one, four = _answer_with_tokens(micro_lm, prompt_a, 1), _answer_with_tokens(micro_lm, prompt_b, 4)
    request = EditRequest(base.case_id, base.prompt, base.subject, base.target_new,
                          locality=((prompt_a, one), (prompt_b, four)))
    now = metrics.locality_top1(micro_lm, [request])
    assert [len(p) for p in now[0]] == [1, 4]
    flipped = [[[now[0][0][0] + 1], list(now[0][1])]]  # only the one-token answer changed its top-1
    [row] = metrics.edit_scores(micro_lm, [request], flipped)
    assert row["locality"] == 0.5  # EasyEdit: (0/1 + 4/4) / 2; pooling the positions would give 4/5


# --------------------------------------------------------------------------- 2. MEMIT keys per type


def test_memit_keys_average_within_each_template_type_then_across(micro_lm, micro_requests):
    from editbench.harness.arch import get_module, mlp_proj_path

    module = get_module(micro_lm.model, mlp_proj_path(micro_lm.model, 0, "down"))
    groups = context_templates(micro_lm, [[10, 5]], {}, seed=0, source="eos")
    assert [len(g) for g in groups] == [1, 5]
    requests = micro_requests[:2]
    grouped, _ = read_at_subject(micro_lm, module, requests, flat(groups), "subject_last", [1, 5])
    bare, _ = read_at_subject(micro_lm, module, requests, ["{}"], "subject_last")
    generated, _ = read_at_subject(micro_lm, module, requests, groups[1], "subject_last")
    assert torch.allclose(grouped, 0.5 * bare + 0.5 * generated, atol=1e-6)
    flat_mean, _ = read_at_subject(micro_lm, module, requests, flat(groups), "subject_last")
    assert torch.allclose(flat_mean, (bare + 5 * generated) / 6, atol=1e-6)  # ROME's compute_u: flat


def test_context_templates_start_with_the_reference_prefixes(micro_lm):
    groups = context_templates(micro_lm, [[5, 10], [10, 10]], {}, seed=0)  # source 'prefixes' by default
    assert groups[0] == ["{}"] and [len(g) for g in groups[1:]] == [10, 10]
    for group in groups[1:]:
        starts = [t.split()[0] if t.split() else "" for t in group]
        # count // 5 texts from each of "The", "Therefore", "Because", "I", "You", in that order
        assert [s.startswith(p) for s, p in zip(starts, [p for p in REFERENCE_PREFIXES for _ in range(2)])] == [True] * 10
        assert all(t.endswith(". {}") for t in group)


# --------------------------------------------------------------------------- 3. the ranking score


def test_gain_removes_free_credit():
    assert metrics._gain(0.5, 0.5) == 0.0 and metrics._gain(0.4, 0.5) == 0.0  # floored at 0
    assert metrics._gain(1.0, 0.5) == 1.0 and metrics._gain(0.75, 0.5) == pytest.approx(0.5)
    assert metrics._gain(1.0, 1.0) == 1.0 and metrics._gain(None, 0.3) is None


def test_efficacy_compares_new_and_true_target_probabilities(micro_lm, micro_requests):
    from editbench.harness.scoring import score_targets

    request = micro_requests[0]
    [row] = metrics.edit_scores(micro_lm, [request], None)
    new, true = score_targets(micro_lm, [(request.prompt, request.target_new), (request.prompt, request.target_true)])
    mean_lp = lambda s: sum(s.logprobs) / len(s.logprobs)  # noqa: E731  (ROME: mean NLL per token)
    assert row["efficacy"] == float(mean_lp(new) > mean_lp(true)) == 0.0  # the unedited model knows the truth
    no_true = EditRequest("x", request.prompt, request.subject, request.target_new)
    assert metrics.edit_scores(micro_lm, [no_true], None)[0]["efficacy"] is None


# --------------------------------------------------------------------------- 4. fluency as ROME


def _rome_n_gram_entropy(sentence, tokenize, ns=(2, 3), weights=(2 / 3, 4 / 3)):
    """ROME's compute_n_gram_entropy / compute_freq (eval_utils_counterfact.py), from its definition:
    nltk.FreqDist over nltk.ngrams of the tokens, numpy entropy in bits, weighted, arithmetic mean."""
    import nltk
    import numpy as np

    entropy_list = []
    for n in ns:
        fdist = nltk.FreqDist(nltk.ngrams(tokenize(sentence), n))
        freqs = np.array([freq for _, freq in fdist.items()], dtype=float)
        freqs = freqs / freqs.sum()
        entropy_list.append(np.sum(-freqs * np.log(freqs) / np.log(2)))
    return float(np.mean(np.array(entropy_list) * np.array(weights)))


def test_fluency_equals_rome_n_gram_entropy():
    from nltk.tokenize import NLTKWordTokenizer

    words = NLTKWordTokenizer().tokenize  # word_tokenize on one-sentence texts, without punkt data
    texts = [
        "The the THE the cat sat on the mat, and the cat sat on the mat again, didn't it",
        "Kamiven Dortal lives in the city of Dunmore and works as a baker in Dunmore",
        "I I I I I I I I I I I I",
    ]
    for text in texts:
        assert metrics.ngram_entropy(text) == pytest.approx(_rome_n_gram_entropy(text, words), abs=1e-9)
    assert metrics.fluency(texts) == pytest.approx(sum(_rome_n_gram_entropy(t, words) for t in texts) / 3, abs=1e-9)
    # case is kept: "The"/"the" are different words (lower-casing would make the first text repetitive)
    assert metrics.ngram_entropy("The cat the cat") > metrics.ngram_entropy("the cat the cat")


def test_fluency_texts_are_prompt_plus_generation_of_a_fixed_total_length(micro_lm):
    import unicodedata

    prompts = ["Kamiven", "The home city of someone is"]
    texts = generate_texts(micro_lm, prompts, 40, seed=0)
    for prompt, text in zip(prompts, texts):
        assert text.startswith(prompt) and text == unicodedata.normalize("NFKD", text)
        assert len(micro_lm.tokenizer(text).input_ids) in range(38, 43)  # 40 ids, give or take BPE re-merging
    assert texts == generate_texts(micro_lm, prompts, 40, seed=0)  # seeded


# --------------------------------------------------------------------------- 5. real-model YAMLs

# Values of the kmeng01 reference files (hparams/ROME/*.json, hparams/MEMIT/*.json), as published.
KMENG = {
    "kmeng01/rome hparams/ROME/gpt2-xl.json": dict(
        layers=[17], v_num_grad_steps=20, v_lr=0.5, v_weight_decay=0.5, clamp_norm_factor=4, kl_factor=0.0625,
        mom2_adjustment=True, context_template_lengths=[[5, 10], [10, 10]], mom2_n_samples=100000),
    "kmeng01/rome hparams/ROME/EleutherAI_gpt-j-6B.json": dict(
        layers=[5], v_num_grad_steps=20, v_lr=0.5, v_weight_decay=0.5, clamp_norm_factor=4, kl_factor=0.0625,
        mom2_adjustment=True, context_template_lengths=[[5, 10], [10, 10]], mom2_n_samples=100000),
    "kmeng01/memit hparams/MEMIT/gpt2-xl.json": dict(
        layers=[13, 14, 15, 16, 17], v_num_grad_steps=20, v_lr=0.5, v_weight_decay=0.5, clamp_norm_factor=0.75,
        kl_factor=0.0625, mom2_update_weight=20000, mom2_n_samples=100000),
    "kmeng01/memit hparams/MEMIT/EleutherAI_gpt-j-6B.json": dict(
        layers=[3, 4, 5, 6, 7, 8], v_num_grad_steps=25, v_lr=0.5, v_weight_decay=0.5, clamp_norm_factor=0.75,
        kl_factor=0.0625, mom2_update_weight=15000, mom2_n_samples=100000),
    # the AlphaEdit paper's own files (the reference names L2 "L2"; editbench's field is `l2`)
    "jianghoucheng/AlphaEdit hparams/AlphaEdit/Llama3-8B.json (commit 110e051)": dict(
        layers=[4, 5, 6, 7, 8], v_num_grad_steps=25, v_lr=0.1, v_weight_decay=0.5, clamp_norm_factor=0.75,
        kl_factor=0.0625, mom2_n_samples=100000, nullspace_threshold=2e-2, l2=10),
    "jianghoucheng/AlphaEdit hparams/AlphaEdit/gpt2-xl.json (commit 110e051)": dict(
        layers=[13, 14, 15, 16, 17], v_num_grad_steps=20, v_lr=0.5, v_weight_decay=0.5, clamp_norm_factor=0.75,
        kl_factor=0.0625, mom2_n_samples=100000, nullspace_threshold=2e-2, l2=10),
    "jianghoucheng/AlphaEdit hparams/AlphaEdit/EleutherAI_gpt-j-6B.json (commit 110e051)": dict(
        layers=[3, 4, 5, 6, 7, 8], v_num_grad_steps=25, v_lr=0.5, v_weight_decay=0.5, clamp_norm_factor=0.75,
        kl_factor=0.0625, mom2_n_samples=100000, nullspace_threshold=2e-2, l2=10),
    # ENCORE's own file (its "prob_cutoff: -2" is editbench's mpes_patience 2)
    "scalable-model-editing/knowledge-editing-regularization hparams/ENCORE/llama3-8b.json (commit df30617)": dict(
        layers=[4, 5, 6, 7, 8], v_num_grad_steps=25, v_lr=0.5, v_weight_decay=0.5, clamp_norm_factor=0.75,
        kl_factor=0.0625, mom2_update_weight=15000, mom2_n_samples=10000, update_norm_lambda=20,
        add_prev_edits=True, mpes_patience=2),
}
# EasyEdit hparams key -> editbench config key
EASYEDIT_KEYS = {"num_steps": "steps", "lr": "lr", "norm_constraint": "norm_constraint", "rank": "rank",
                 "lora_alpha": "alpha", "v_num_grad_steps": "v_num_grad_steps", "v_lr": "v_lr",
                 "v_weight_decay": "v_weight_decay", "clamp_norm_factor": "clamp_norm_factor",
                 "kl_factor": "kl_factor", "mom2_update_weight": "mom2_update_weight",
                 "mom2_n_samples": "mom2_n_samples", "context_template_length_params": "context_template_lengths"}


def _real_model_yamls():
    return sorted(p for p in HPARAMS.glob("*/*.yaml") if not p.stem.startswith("world"))


def _expected_from_easyedit(path: Path, method: str) -> dict:
    ref = yaml.safe_load(path.read_text())
    out = {ours: ref[theirs] for theirs, ours in EASYEDIT_KEYS.items() if theirs in ref}
    if out.get("norm_constraint") is False:
        out["norm_constraint"] = None
    if "layers" in ref and ref["layers"]:
        out["layer" if method in ("ft", "ft_l") else "layers"] = ref["layers"][0] if method in ("ft", "ft_l") \
            else ref["layers"]
    if method == "rome":
        out["mom2_adjustment"] = ref["mom2_adjustment"]
    if "lora_type" in ref:
        out["adalora"] = ref["lora_type"] == "adalora"
    return out


@pytest.mark.parametrize("path", _real_model_yamls(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_real_model_yaml_matches_the_reference_it_cites(path):
    values = yaml.safe_load(path.read_text())
    reference = (values.get("provenance") or {}).get("reference", "")
    assert reference, f"{path} says nowhere where its values come from"
    if reference.startswith("EasyEdit 14cea82 "):
        ref_file = EASYEDIT / reference.split(" ", 2)[2]
        if not ref_file.is_file():
            pytest.skip(f"EasyEdit's source is not at {EASYEDIT} (set EDITBENCH_EASYEDIT)")
        expected = _expected_from_easyedit(ref_file, path.parent.name)
    elif reference in KMENG:
        expected = KMENG[reference]
    elif reference.startswith("editbench (no reference implementation)"):  # the method's own defaults
        import dataclasses

        from editbench.core import get_editor_class

        expected = {f.name: f.default for f in dataclasses.fields(get_editor_class(path.parent.name).config_class)
                    if f.default is not dataclasses.MISSING}
    else:
        assert reference == "arXiv 2506.12384" and path.parent.name in ("rsft", "rsft_merge")
        expected = dict(epochs=5, max_steps_per_sample=6, tau=0.1, lr=5e-4)
    from dataclasses import fields

    from editbench.core import get_editor_class
    from editbench.harness.hparams import build_config

    cls = get_editor_class(path.parent.name).config_class
    config = build_config(cls, values, str(path))  # what a run gets from this file
    known = {f.name for f in fields(cls)}
    # a YAML for another model starts from the reference and maps some knobs (e.g. a layer by causal
    # tracing); each mapped knob says how, and the rest must equal the reference
    mapped = (values.get("provenance") or {}).get("mapped") or {}
    assert all(isinstance(why, str) and why for why in mapped.values()), f"{path}: a mapped knob says nowhere how"
    for key, value in expected.items():
        if key in mapped:
            continue
        if key not in known:  # a reference knob editbench's method does not have (e.g. FT's kl_factor 0)
            assert not value, (path.name, key, value)
            continue
        ours = getattr(config, key)
        ours = [list(x) for x in ours] if key == "context_template_lengths" else ours
        ours = list(ours) if isinstance(ours, tuple) else ours
        if isinstance(value, float) or isinstance(ours, float):
            assert ours is not None and float(ours) == pytest.approx(float(value)), (key, ours, value)
        else:
            assert ours == value, (path.name, key, ours, value)


def test_lora_trains_with_dropout_off_by_default():
    from editbench.methods.lora import LoRAConfig

    assert LoRAConfig().train_mode is False and LoRAConfig(train_mode=True).train_mode is True


def test_lora_edit_does_not_depend_on_dropout_when_not_in_train_mode(micro_lm, micro_requests):
    from editbench.core import get_editor_class
    from editbench.methods.lora import LoRAConfig

    lora = get_editor_class("lora")
    a = lora(LoRAConfig(rank=4, alpha=8, dropout=0.0, steps=5)).edit(micro_lm, micro_requests[:1])
    b = lora(LoRAConfig(rank=4, alpha=8, dropout=0.5, steps=5)).edit(micro_lm, micro_requests[:1])
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)  # dropout is off
    c = lora(LoRAConfig(rank=4, alpha=8, dropout=0.5, steps=5, train_mode=True)).edit(micro_lm, micro_requests[:1])
    assert not all(torch.equal(a.tensors[k], c.tensors[k]) for k in a.tensors)


# --------------------------------------------------------------------------- 7. exams as published


def _q(qid, question, answer, options=("w", "x", "y", "z")):
    return ExamQuestion(qid=qid, question=question, options=options, answer=answer)


GOLDEN_PROMPTS = {
    # lm-evaluation-harness `mmlu`: question.strip(), " X" after "Answer:", shots joined by a blank line
    "mmlu": ("abstract algebra",
             [_q("1", " What is 2+2? ", "B", ("3", "4", "5", "6")), _q("2", "Pick z.", "D")], _q("3", "\nFind x.  ", "A"),
             "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
             "What is 2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer: B\n\n"
             "Pick z.\nA. w\nB. x\nC. y\nD. z\nAnswer: D\n\n"
             "Find x.\nA. w\nB. x\nC. y\nD. z\nAnswer:"),
    # C-Eval's own evaluator: the letter right after "答案："
    "ceval": ("高等数学", [_q("1", "1+1=?", "A", ("2", "3", "4", "5")), _q("2", "选 z。", "D")], _q("3", "求 x。", "C"),
              "以下是中国关于高等数学考试的单项选择题，请选出其中的正确答案。\n\n"
              "1+1=?\nA. 2\nB. 3\nC. 4\nD. 5\n答案：A\n\n"
              "选 z。\nA. w\nB. x\nC. y\nD. z\n答案：D\n\n"
              "求 x。\nA. w\nB. x\nC. y\nD. z\n答案："),
}


@pytest.mark.parametrize("exam", sorted(GOLDEN_PROMPTS))
def test_exam_prompt_is_the_declared_format_byte_for_byte(exam):
    from editbench.benchmarks.exams import FORMATS, letter_prompt

    name, shots, question, expected = GOLDEN_PROMPTS[exam]
    assert letter_prompt(FORMATS[exam], name, shots, question) == expected


def test_mmlu_scores_test_by_default_when_present(tmp_path):
    from editbench.benchmarks.exams import load_exam

    (tmp_path / "subject_mapping.json").write_text('{"algebra": {"name": "algebra", "category": "STEM"}}')
    for split, n in (("dev", 2), ("val", 1), ("test", 3)):
        (tmp_path / split).mkdir()
        rows = "".join(f"q{i} {split},a,b,c,d,A\n" for i in range(n))
        (tmp_path / split / f"algebra_{split}.csv").write_text(rows)
    assert len(load_exam("mmlu", tmp_path, shots=1).questions) == 3
    assert load_exam("mmlu", tmp_path, shots=1).split == "test"
    assert len(load_exam("mmlu", tmp_path, shots=1, split="val").questions) == 1


# --------------------------------------------------------------------------- 8. key statistics length


def test_key_statistics_length_defaults_to_the_model_context_up_to_4096(micro_lm):
    from editbench.methods.key_stats import StatsSpec, _cache_file, stats_length

    assert stats_length(micro_lm, StatsSpec()) == 256  # the world model's context
    assert stats_length(micro_lm, StatsSpec(mom2_max_length=64)) == 64
    micro_lm.model.config.max_position_embeddings = 32768
    try:
        assert stats_length(micro_lm, StatsSpec()) == 4096
        long_key = _cache_file(micro_lm, "fp", 0, "c", StatsSpec())
    finally:
        micro_lm.model.config.max_position_embeddings = 256
    assert long_key != _cache_file(micro_lm, "fp", 0, "c", StatsSpec())  # the length is in the cache key


# --------------------------------------------------------------------------- 3. the score, end to end


def test_noedit_ranks_below_every_method_that_edits(micro_world, tmp_path):
    """Issue criterion: on micro N = 20, noedit's score is below that of every method whose
    reliability_em >= 0.5 (with the world YAMLs as committed)."""
    from editbench.cli import main
    from editbench.harness.results import find_results, load_results
    from editbench.reports.tables import final_rows

    out = tmp_path / "run"
    methods = ["noedit", "ft", "rsft", "rsft_merge"]
    assert main(["run", *[a for m in methods for a in ("--method", m)], "--world", "micro", "--edits", "20",
                 "--checkpoints", "20", "--out", str(out), "--quiet"]) == 0
    rows = {r["method"]: r for r in final_rows([load_results(p) for p in find_results(out)])}
    assert {r["score_basis"] for r in rows.values()} == {"generation"}  # the default basis: what the model says
    editing = [m for m in methods if m != "noedit" and rows[m]["reliability_gen"] >= 0.5]
    assert editing, "no method edited at all: the criterion would hold vacuously"
    assert rows["noedit"]["score"] == 0.0 and rows["noedit"]["reliability_gen"] == 0.0
    assert all(rows["noedit"]["score"] < rows[m]["score"] for m in editing)
    assert rows["noedit"]["reliability"] > 0.3  # the free credit is there, and the score ignores it
    assert rows["noedit"]["score_token"] == 0.0  # the token basis's gains remove it too
