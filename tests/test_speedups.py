"""Speed-ups leave the numbers alone: the frozen prefix is bit-identical to full passes, and MEMIT's
batched z optimisation equals the one-by-one one within 1e-5 (with early stopping per request)."""
import pytest
import torch

from editbench.harness.arch import get_module, layer_path
from editbench.harness.hparams import make_editor, resolve_config
from editbench.harness.prefix import FrozenPrefix


def _deltas(editor, lm, requests):
    return [editor.edit(lm, [r], {}).tensors for r in requests]


@pytest.mark.parametrize("method, overrides", [("ft", {"layer": 2}), ("ft_l", {"layer": 3}),
                                               ("rsft", {"layer": 2, "epochs": 2})])
def test_frozen_prefix_is_bit_identical_for_trained_editors(micro_lm, micro_requests, method, overrides,
                                                            monkeypatch):
    fast = _deltas(make_editor(method, overrides=overrides, model_type="qwen2")[0], micro_lm, micro_requests[:3])
    with monkeypatch.context() as m:
        m.setattr(FrozenPrefix, "__enter__", lambda self: self)
        m.setattr(FrozenPrefix, "__exit__", lambda self, *exc: None)
        slow = _deltas(make_editor(method, overrides=overrides, model_type="qwen2")[0], micro_lm, micro_requests[:3])
    for a, b in zip(fast, slow):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_frozen_prefix_skips_the_lower_layers_and_restores_them(micro_lm):
    layers = get_module(micro_lm.model, micro_lm.arch.layers)
    originals = list(layers)
    ids = torch.tensor([[5, 6, 7, 8]])
    calls = []
    handle = originals[0].register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            full = micro_lm.model(input_ids=ids).logits
            with FrozenPrefix(micro_lm, 2) as prefix:
                prefix.add(ids, None)
                calls.clear()
                cached = micro_lm.model(input_ids=ids).logits
                assert calls == []  # layer 0 did not run
                other = micro_lm.model(input_ids=ids + 1).logits  # not cached: runs in full
                assert calls == [1]
    finally:
        handle.remove()
    assert torch.equal(full, cached) and not torch.equal(cached, other)
    assert list(layers) == originals


def test_batched_z_equals_one_by_one(micro_lm, micro_requests):
    from editbench.methods.memit import MEMITConfig
    from editbench.methods.rewrite import TargetSpec, context_templates, flat, optimise_target, optimise_targets

    config, _ = resolve_config(MEMITConfig, "memit", "world", "qwen2")
    layer = config.layers[-1]
    block = get_module(micro_lm.model, layer_path(micro_lm.model, layer))
    templates = flat(context_templates(micro_lm, config.context_template_lengths, {}, config.template_seed,
                                       config.context_template_source))
    # a loose threshold, so requests stop at different steps and the held rows are exercised
    spec = TargetSpec(**{**config.target_spec.__dict__, "early_stop_loss": 1.0, "v_num_grad_steps": 12})
    requests = micro_requests[:6]
    one = [optimise_target(micro_lm, block, r, templates, spec) for r in requests]
    together = optimise_targets(micro_lm, block, requests, templates, spec, first_layer=layer)
    assert [t.info["v_steps"] for t in one] == [t.info["v_steps"] for t in together]
    assert len({t.info["v_steps"] for t in one}) > 1, "early stopping should differ between requests"
    for a, b in zip(one, together):
        assert (a.value - b.value).abs().max().item() < 1e-5
        assert (a.input_mean - b.input_mean).abs().max().item() < 1e-5


def test_rome_target_with_the_frozen_prefix_is_bit_identical(micro_lm, micro_requests):
    from editbench.harness.arch import mlp_proj_path
    from editbench.methods.rewrite import context_templates, flat, optimise_target
    from editbench.methods.rome import ROMEConfig

    config, _ = resolve_config(ROMEConfig, "rome", "world", "qwen2", overrides={"layers": [2]})
    module = get_module(micro_lm.model, mlp_proj_path(micro_lm.model, 2, "down"))
    templates = flat(context_templates(micro_lm, config.context_template_lengths, {}, config.template_seed,
                                       config.context_template_source))
    full = optimise_target(micro_lm, module, micro_requests[0], templates, config.target_spec, first_layer=0)
    skipped = optimise_target(micro_lm, module, micro_requests[0], templates, config.target_spec, first_layer=2)
    assert torch.equal(full.value, skipped.value) and torch.equal(full.input_mean, skipped.input_mean)
    assert full.info == skipped.info


def test_shared_prefix_exam_scoring_gives_the_same_answers(micro_lm):
    """5-shot-style letter prompts (instructions + shots shared per subject): the KV-cached prefix
    gives the full passes' logits within 1e-5 and the same answers."""
    from conftest import synthetic_letter_exam
    from editbench.harness import metrics
    from editbench.harness.scoring import last_logits_after_prefix

    prepared = synthetic_letter_exam(micro_lm, per_subject=12)
    assert max(len(p) for p in prepared.prompt_ids) < micro_lm.model.config.max_position_embeddings
    full = metrics._letter_predictions(micro_lm, prepared, shared_prefix=False)
    assert metrics._letter_predictions(micro_lm, prepared, shared_prefix=True) == full
    seqs = prepared.prompt_ids[:12]
    cached = last_logits_after_prefix(micro_lm, seqs, batch_size=5)
    assert cached is not None
    with torch.no_grad():
        for ids, logits in zip(seqs, cached):
            reference = micro_lm.model(input_ids=torch.tensor([ids])).logits[0, -1]
            assert (reference - logits).abs().max().item() < 1e-5


def test_fused_evaluation_pass_matches_separate_passes(micro_lm, micro_requests):
    """edit_scores scores every metric's prompts in one stream; each metric scored on its own gives
    the same values (top-1 tokens identical, log-probabilities within 1e-5: batch shapes differ)."""
    from editbench.harness import metrics

    requests = micro_requests[:8]
    pre = metrics.locality_top1(micro_lm, requests)
    fused = metrics.edit_scores(micro_lm, requests, pre)
    rel = metrics._grouped(micro_lm, [[(r.prompt, r.target_new)] for r in requests])
    gen = metrics._grouped(micro_lm, [[(p, r.target_new) for p in r.rephrase_prompts] for r in requests])
    for row, r_scores, g_scores in zip(fused, rel, gen):
        assert row["reliability"] == r_scores[0].token_accuracy
        assert row["generalization"] == metrics.mean([s.token_accuracy for s in g_scores])
        assert row["locality"] == 1.0  # the same model: every locality top-1 agrees with itself
    separate = metrics._grouped(micro_lm, [[(r.prompt, r.target_new)] for r in requests])
    together = metrics._grouped(micro_lm, [[(r.prompt, r.target_new)] for r in requests]
                                + [list(r.locality) for r in requests])[: len(requests)]
    for a, b in zip(separate, together):
        assert a[0].top1 == b[0].top1
        assert max(abs(x - y) for x, y in zip(a[0].logprobs, b[0].logprobs)) < 1e-5


def test_length_batches_respect_rows_and_token_budget():
    from editbench.harness.scoring import length_batches

    lengths = [10, 9, 9, 4, 3, 3, 1]
    order = list(range(len(lengths)))  # already longest first
    chunks = list(length_batches(order, lengths, batch_size=3, token_budget=20))
    assert [i for c in chunks for i in c] == order
    assert all(len(c) <= 3 and len(c) * max(lengths[i] for i in c) <= 20 for c in chunks)
    assert list(length_batches([0], [500], batch_size=3, token_budget=20)) == [[0]]  # never empty
