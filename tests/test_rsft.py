import pytest
import torch

from conftest import assert_same_state, state_copy
from editbench.core import get_editor_class
from editbench.methods.merging import merge_delta
from editbench.methods.rsft import RSFTConfig, RSFTMergeConfig, robust_sft


def test_early_stopping_takes_zero_steps_below_tau(micro_lm, micro_requests):
    deltas, info = robust_sft(micro_lm, micro_requests[:2], RSFTConfig(layer=1, tau=1e6))
    assert [i["steps"] for i in info] == [0, 0]
    assert all(torch.count_nonzero(d) == 0 for d in deltas.values())


def test_only_chosen_layer_and_projections_change(micro_lm, micro_requests):
    deltas, info = robust_sft(micro_lm, micro_requests[:1], RSFTConfig(layer=2, projections=("up", "down")))
    assert sorted(deltas) == ["model.layers.2.mlp.down_proj.weight", "model.layers.2.mlp.up_proj.weight"]
    assert info[0]["steps"] >= 1 and info[0]["final_loss"] < 0.1
    assert all(torch.count_nonzero(d) > 0 for d in deltas.values())


@pytest.mark.parametrize("variant", ["linear", "ties", "dare"])
def test_merge_invariants(variant):
    torch.manual_seed(0)
    delta = torch.randn(37, 23)
    assert torch.equal(merge_delta(delta, delta_weight=1.0, density=1.0, variant=variant), delta)
    assert torch.count_nonzero(merge_delta(delta, delta_weight=0.0, density=0.3, variant=variant)) == 0
    if variant != "dare":  # magnitude pruning keeps exactly int(density * n) entries
        for density in (0.1, 0.2, 0.5):
            kept = merge_delta(delta, delta_weight=1.0, density=density, variant=variant)
            assert abs(int(torch.count_nonzero(kept)) - density * delta.numel()) <= 1
            # the kept entries are the largest ones, unchanged
            threshold = kept.abs()[kept != 0].min()
            assert (delta.abs()[kept == 0] <= threshold).all()
            assert torch.equal(kept[kept != 0], delta[kept != 0])
    scaled = merge_delta(delta, delta_weight=0.8, density=1.0, variant="linear")
    assert torch.allclose(scaled, 0.8 * delta)  # the weight is on the delta, never on the base


def test_dare_is_seeded():
    delta = torch.randn(50, 50)
    a = merge_delta(delta, 1.0, 0.3, "dare", seed=1)
    assert torch.equal(a, merge_delta(delta, 1.0, 0.3, "dare", seed=1))
    assert not torch.equal(a, merge_delta(delta, 1.0, 0.3, "dare", seed=2))


def test_merge_with_delta_weight1_density1_equals_rsft(micro_lm, micro_requests):
    before = state_copy(micro_lm.model)
    plain = get_editor_class("rsft")(RSFTConfig(layer=1)).edit(micro_lm, micro_requests[:1])
    merged = get_editor_class("rsft_merge")(RSFTMergeConfig(layer=1, delta_weight=1.0, density=1.0)).edit(
        micro_lm, micro_requests[:1])
    assert_same_state(micro_lm.model, before)
    assert plain.tensors.keys() == merged.tensors.keys()
    assert all(torch.equal(plain.tensors[k], merged.tensors[k]) for k in plain.tensors)
