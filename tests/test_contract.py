"""The contract every registered editor must pass (like peft's shared tests)."""
import pytest
import torch

from conftest import assert_same_state, state_copy
from editbench.core import WeightDelta, editor_names, get_editor_class
from editbench.harness.hparams import resolve_config
from editbench.harness.metrics import edit_scores, locality_top1
from editbench.harness.scoring import score_targets

# Editors that must actually write the fact in (noedit is the exception by design).
FLIPS = {"rsft"}
# FT-L scores every target token at the last prompt position, ROME/MEMIT write the fact through one
# vector at the subject, and FT's and LoRA's world YAMLs (tuned for 100 sequential edits: FT lr 1e-4, 25
# steps; LoRA 20 steps) move gently: on a multi-token object of the micro world one edit need not flip
# it, but it must make the target more likely (test_locate covers how many ROME/MEMIT flip).
RAISES = {"ft", "ft_l", "rome", "memit", "alphaedit", "lora"}


def target_logprob(lm, request) -> float:
    [score] = score_targets(lm, [(request.prompt, request.target_new)])
    return sum(score.logprobs)


def make_editor(name, lm, **over):
    cls = get_editor_class(name)
    config, _ = resolve_config(cls.config_class, name, lm.hparams_key, lm.model.config.model_type, overrides=over)
    return cls(config)


@pytest.mark.parametrize("name", editor_names())
def test_editor_contract(name, micro_lm, micro_requests):
    editor = make_editor(name, micro_lm)
    editor.check_model(micro_lm)
    request = micro_requests[0]
    before = state_copy(micro_lm.model)
    loc_pre = locality_top1(micro_lm, [request])
    [row_pre] = edit_scores(micro_lm, [request], loc_pre)
    logprob_pre = target_logprob(micro_lm, request)
    delta = editor.edit(micro_lm, [request], cache={})
    assert isinstance(delta, WeightDelta)
    assert_same_state(micro_lm.model, before)  # the model is exactly as before edit()
    delta.validate(micro_lm.model)
    assert all(torch.isfinite(t).all() for t in delta.tensors.values())
    assert len(delta.info) == 1
    delta.apply(micro_lm.model)
    [row] = edit_scores(micro_lm, [request], loc_pre)
    if name in FLIPS:
        assert delta.norm() > 0
        assert row["reliability_em"] == 1.0, f"{name} did not write {request.target_new!r}"
        assert row["locality"] >= 0.75
    if name in RAISES:
        assert delta.norm() > 0 and target_logprob(micro_lm, request) > logprob_pre + 0.1
        assert row["locality"] >= 0.75
    if name == "noedit":
        assert delta.tensors == {} and row["locality"] == 1.0
