import pytest
import torch

from editbench.core import ConfigError
from editbench.harness.arch import arch_for, is_conv1d, mlp_proj_path, to_storage, weight_out_in
from editbench.testing import pico_model


@pytest.mark.parametrize("model_type, down", [("gpt2", "c_proj"), ("qwen2", "down_proj"), ("llama", "down_proj")])
def test_mlp_paths_from_model_type(model_type, down):
    model = pico_model(model_type)
    path = mlp_proj_path(model, 1, "down")
    assert path.endswith(f".1.mlp.{down}")
    assert model.get_submodule(path) is not None


def test_orientation_by_module_type_even_for_square_weights():
    # GPT-2 with n_embd=16: c_attn's projection c_proj (attn) is a square 16x16 Conv1D.
    model = pico_model("gpt2")
    conv = model.get_submodule("transformer.h.0.attn.c_proj")
    assert is_conv1d(conv) and conv.weight.shape[0] == conv.weight.shape[1]
    x = torch.randn(3, 16)
    w = weight_out_in(conv)  # [out, in]
    assert torch.allclose(conv(x), x @ w.T + conv.bias, atol=1e-6)
    lin = pico_model("qwen2").get_submodule("model.layers.0.self_attn.q_proj")
    assert torch.allclose(lin(x), x @ weight_out_in(lin).T, atol=1e-6)
    upd = torch.randn(16, 16)
    assert torch.equal(to_storage(conv, upd), upd.T) and torch.equal(to_storage(lin, upd), upd)


def test_bad_layer_projection_and_model_type():
    model = pico_model("gpt2")
    with pytest.raises(ConfigError, match="layer index 7 is out of range"):
        mlp_proj_path(model, 7, "down")
    with pytest.raises(ConfigError, match="projection 'gate' does not exist in gpt2"):
        mlp_proj_path(model, 0, "gate")
    model.config.model_type = "mystery"
    with pytest.raises(ConfigError, match="unsupported model_type"):
        arch_for(model)
