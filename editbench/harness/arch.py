"""Where things live inside each supported architecture, looked up by `config.model_type`.

Weight orientation is decided by module type (GPT-2's Conv1D stores [in, out], nn.Linear
stores [out, in]), never by shape: a square matrix would be ambiguous.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from editbench.core import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@dataclass(frozen=True)
class ArchSpec:
    layers: str  # dotted path of the ModuleList of blocks
    mlp: str  # path of the MLP inside one block
    mlp_down: str  # output projection inside the MLP (keys of ROME/MEMIT are its inputs)
    mlp_up: str
    mlp_gate: str | None
    attn: str
    attn_q: str | None  # query / value projections (LoRA targets); GPT-2 and NeoX use fused ones
    attn_v: str | None
    attn_fused_qkv: str | None
    final_norm: str
    embed: str


ARCHITECTURES: dict[str, ArchSpec] = {
    "gpt2": ArchSpec("transformer.h", "mlp", "c_proj", "c_fc", None, "attn", None, None, "c_attn",
                     "transformer.ln_f", "transformer.wte"),
    "gptj": ArchSpec("transformer.h", "mlp", "fc_out", "fc_in", None, "attn", "q_proj", "v_proj", None,
                     "transformer.ln_f", "transformer.wte"),
    "gpt_neox": ArchSpec("gpt_neox.layers", "mlp", "dense_4h_to_h", "dense_h_to_4h", None, "attention", None,
                         None, "query_key_value", "gpt_neox.final_layer_norm", "gpt_neox.embed_in"),
}
for _llama_like in ("llama", "qwen2", "mistral", "qwen3", "gemma", "gemma2", "olmo2"):
    ARCHITECTURES[_llama_like] = ArchSpec("model.layers", "mlp", "down_proj", "up_proj", "gate_proj", "self_attn",
                                          "q_proj", "v_proj", None, "model.norm", "model.embed_tokens")
# Phi-3 fuses gate and up into one projection and q, k, v into another.
ARCHITECTURES["phi3"] = ArchSpec("model.layers", "mlp", "down_proj", "gate_up_proj", None, "self_attn", None, None,
                                 "qkv_proj", "model.norm", "model.embed_tokens")


def arch_for(model: PreTrainedModel) -> ArchSpec:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ARCHITECTURES:
        raise ConfigError(
            f"unsupported model_type {model_type!r} (config.model_type; supported: {', '.join(sorted(ARCHITECTURES))}); "
            "to add it, give editbench.harness.arch.ARCHITECTURES an ArchSpec with its layer, MLP and attention "
            "module names"
        )
    return ARCHITECTURES[model_type]


def get_module(model: PreTrainedModel, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        raise ConfigError(f"module path '{path}' does not exist in this {model.config.model_type} model") from None


def num_layers(model: PreTrainedModel) -> int:
    return len(cast(nn.ModuleList, get_module(model, arch_for(model).layers)))


def layer_path(model: PreTrainedModel, layer: int) -> str:
    n = num_layers(model)
    if not 0 <= layer < n:
        raise ConfigError(f"layer index {layer} is out of range (valid: 0..{n - 1})")
    return f"{arch_for(model).layers}.{layer}"


def mlp_proj_path(model: PreTrainedModel, layer: int, proj: str) -> str:
    """Path of an MLP projection by role: 'down', 'up' or 'gate'."""
    spec = arch_for(model)
    names = {"down": spec.mlp_down, "up": spec.mlp_up, "gate": spec.mlp_gate}
    if proj not in names or names[proj] is None:
        valid = [k for k, v in names.items() if v is not None]
        raise ConfigError(f"projection '{proj}' does not exist in {model.config.model_type} (valid: {', '.join(valid)})")
    return f"{layer_path(model, layer)}.{spec.mlp}.{names[proj]}"


def is_conv1d(module: nn.Module) -> bool:
    # transformers' Conv1D (GPT-2) is a Linear with a transposed weight.
    return type(module).__name__ == "Conv1D"


def weight_out_in(module: nn.Module) -> torch.Tensor:
    """The module's weight as an [out, in] view, whatever its storage orientation."""
    if is_conv1d(module):
        return module.get_parameter("weight").T
    if isinstance(module, nn.Linear):
        return module.weight
    raise ConfigError(f"cannot read weight orientation of module type {type(module).__name__}")


def to_storage(module: nn.Module, update_out_in: torch.Tensor) -> torch.Tensor:
    """Turn an [out, in] update into the module's storage orientation."""
    return update_out_in.T.contiguous() if is_conv1d(module) else update_out_in
