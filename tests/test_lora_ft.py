import torch

from conftest import assert_same_state, state_copy
from editbench.methods.ft import FTL, FTConfig
from editbench.methods.lora import LoRA, LoRAConfig


def test_fold_leaves_plain_modules_and_exact_delta(micro_lm, micro_requests):
    before = state_copy(micro_lm.model)
    modules_before = [type(m).__name__ for m in micro_lm.model.modules()]
    delta = LoRA(LoRAConfig(steps=5, mode="fold")).edit(micro_lm, micro_requests[:1], cache={})
    assert [type(m).__name__ for m in micro_lm.model.modules()] == modules_before
    assert not any("lora" in n for n, _ in micro_lm.model.named_parameters())
    assert_same_state(micro_lm.model, before)
    assert sorted(delta.tensors) and all(n.endswith(("q_proj.weight", "v_proj.weight")) for n in delta.tensors)
    delta.apply(micro_lm.model)
    params = dict(micro_lm.model.named_parameters())
    for name, d in delta.tensors.items():
        assert torch.equal(params[name], before[name] + d)


def test_continual_differs_from_fold_after_two_batches(micro_lm, micro_requests):
    results = {}
    for mode in ("fold", "continual"):
        editor, cache = LoRA(LoRAConfig(steps=5, mode=mode, dropout=0.0)), {}
        original = state_copy(micro_lm.model)
        for batch in (micro_requests[:1], micro_requests[1:2]):
            editor.edit(micro_lm, batch, cache=cache).apply(micro_lm.model)
        results[mode] = state_copy(micro_lm.model)
        micro_lm.model.load_state_dict(original)
    changed = [k for k in results["fold"] if not torch.equal(results["fold"][k], results["continual"][k])]
    assert changed


def test_ft_l_norm_constraint_holds(micro_lm, micro_requests):
    eps = 1e-3
    delta = FTL(FTConfig(layer=1, lr=1e-2, steps=10, norm_constraint=eps)).edit(micro_lm, micro_requests[:1])
    biggest = max(float(d.abs().max()) for d in delta.tensors.values())
    assert 0 < biggest <= eps * (1 + 1e-5)
