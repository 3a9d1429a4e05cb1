"""LoRA editor on peft (`LoraConfig`, `get_peft_model`; AdaLoRA as an option).

Loss: cross-entropy on target tokens (prompt masked). Two sequential modes:
- `fold`: each batch trains a fresh adapter on the current weights; its B·A·scale is the returned
  delta and the adapter is removed, so edits accumulate in plain weights.
- `continual`: one adapter keeps training across batches (EasyEdit's sequential LoRA); the runner
  sees each batch's change of the effective weights, B_t·A_t·s - B_{t-1}·A_{t-1}·s.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from editbench.core import (
    ConfigError, Editor, EditorConfig, InvalidDeltaError, WeightDelta, check_range, flatten_state, nest_state,
    register_editor,
)
from editbench.harness.arch import is_conv1d
from editbench.harness.search import Choice, Int, LogFloat, SearchSpace
from editbench.methods import training

MODES = ("fold", "continual")
TARGETS = ("attn", "mlp")


@dataclass(frozen=True)
class LoRAConfig(EditorConfig):
    rank: int = 8
    alpha: float = 32.0
    dropout: float = 0.1
    target: str = "attn"  # attn: query/value projections; mlp: up/down projections
    target_modules: tuple[str, ...] | None = None  # explicit module names, overriding `target`
    layers: tuple[int, ...] | None = None  # None: every layer
    lr: float = 5e-3
    steps: int = 60
    mode: str = "fold"
    adalora: bool = False
    # EasyEdit never puts the model in train mode, so its LoRA dropout (and the base model's) is off;
    # true switches dropout on during training.
    train_mode: bool = False
    seed: int = 0

    def check(self) -> None:
        check_range(self, "rank", self.rank >= 1, ">= 1")
        check_range(self, "alpha", self.alpha > 0, "> 0")
        check_range(self, "dropout", 0.0 <= self.dropout < 1.0, "[0, 1)")
        check_range(self, "target", self.target in TARGETS, ", ".join(TARGETS))
        check_range(self, "lr", self.lr > 0, "> 0")
        check_range(self, "steps", self.steps >= 1, ">= 1")
        check_range(self, "mode", self.mode in MODES, ", ".join(MODES))
        check_range(self, "seed", self.seed >= 0, ">= 0")


def _module_names(lm, cfg: LoRAConfig) -> list[str]:
    arch = lm.arch
    if cfg.target_modules:
        return list(cfg.target_modules)
    if cfg.target == "mlp":
        return [arch.mlp_up, arch.mlp_down]
    return [arch.attn_fused_qkv] if arch.attn_fused_qkv else [arch.attn_q, arch.attn_v]


def _targeted(lm, cfg: LoRAConfig) -> list[str]:
    """Full paths of the modules the adapter wraps; a clear error when the names match nothing."""
    wanted = set(_module_names(lm, cfg))
    prefix = lm.arch.layers + "."
    layers = None if cfg.layers is None else {str(i) for i in cfg.layers}
    found, leaves = [], set()
    for name, module in lm.model.named_modules():
        if isinstance(module, torch.nn.Linear) or is_conv1d(module):
            leaves.add(name.rsplit(".", 1)[-1])
            in_layer = name.startswith(prefix) and (layers is None or name[len(prefix):].split(".")[0] in layers)
            if name.rsplit(".", 1)[-1] in wanted and in_layer:
                found.append(name)
    if not found:
        raise ConfigError(
            f"LoRA target modules {sorted(wanted)} match nothing in the chosen layers (the model has: "
            f"{', '.join(sorted(leaves))})"
        )
    return found


def _peft_config(lm, cfg: LoRAConfig):
    from peft import AdaLoraConfig, LoraConfig

    common: dict[str, Any] = dict(
        r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=_module_names(lm, cfg),
        layers_to_transform=list(cfg.layers) if cfg.layers is not None else None,
        layers_pattern=lm.arch.layers.rsplit(".", 1)[-1] if cfg.layers is not None else None,
        # Conv1D stores [in, out]: peft must know, and the module type (not the model name) says so.
        fan_in_fan_out=any(is_conv1d(lm.model.get_submodule(t)) for t in _targeted(lm, cfg)), bias="none",
    )
    if cfg.adalora:
        common.pop("r")
        return AdaLoraConfig(init_r=cfg.rank, target_r=max(1, cfg.rank // 2), total_step=cfg.steps, **common)
    return LoraConfig(**common)


# Centred on EasyEdit's LoRA settings (hparams/LoRA/llama-7b.yaml: rank 8, alpha 32, lr 5e-3, 70 steps, q/v).
LORA_SPACE = SearchSpace("EasyEdit LoRA (hparams/LoRA/llama-7b.yaml)", (
    Choice("rank", 8, "adapter rank", options=(1, 2, 4, 8, 16)),
    LogFloat("alpha", 32.0, "scale alpha / rank", low=1.0, high=128.0),
    LogFloat("lr", 5e-3, "Adam lr", low=1e-5, high=3e-2),
    Int("steps", 70, "steps per call", low=10, high=200, log=True),
    Choice("target", "attn", "q/v projections or the MLP", options=TARGETS)))


@register_editor("lora")
class LoRA(Editor[LoRAConfig]):
    config_class = LoRAConfig
    search_space = LORA_SPACE

    def reset_state(self) -> None:
        self._continual: dict = {}  # mode continual: the adapter and its weight change so far

    def state_dict(self) -> dict[str, torch.Tensor]:
        # continual mode: the adapter's weights and the weight change it stands for so far
        return flatten_state(self._continual)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._continual = {k: v for k, v in nest_state(state, ("adapter", "deltas")).items() if v}

    def check_model(self, lm) -> None:
        _targeted(lm, self.config)

    def edit(self, lm, requests, cache=None) -> WeightDelta:
        from peft import get_peft_model

        cfg: LoRAConfig = self.config
        targets = _targeted(lm, cfg)
        weight_names = [f"{t}.weight" for t in targets]
        state = self._continual
        previous = state.get("deltas", {}) if cfg.mode == "continual" else {}
        batch = training.target_batch(lm, requests)
        params = dict(lm.model.named_parameters())
        originals = {n: params[n].detach().clone() for n in weight_names}
        torch.manual_seed(cfg.seed)
        try:
            with torch.no_grad():  # continual: train against the weights without the adapter's own share
                for n, d in previous.items():
                    params[n].sub_(d)
            peft_model = get_peft_model(lm.model, _peft_config(lm, cfg))
            if cfg.mode == "continual" and "adapter" in state:
                with torch.no_grad():
                    for n, p in peft_model.named_parameters():
                        if n in state["adapter"]:
                            p.copy_(state["adapter"][n])
            peft_model.train(cfg.train_mode)
            trainable = [p for p in peft_model.parameters() if p.requires_grad]
            opt = torch.optim.Adam(trainable, lr=cfg.lr)
            initial_loss = None
            for step in range(cfg.steps):
                loss = training.target_nll(peft_model, batch)
                initial_loss = loss.item() if initial_loss is None else initial_loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if cfg.adalora:
                    peft_model.base_model.update_and_allocate(step)
            peft_model.eval()
            with torch.no_grad():  # after the last step (no dropout), for the runner's divergence guard
                final_loss = training.target_nll(peft_model, batch).item()
            with torch.no_grad():
                adapter_deltas = {
                    f"{t}.weight": peft_model.base_model.model.get_submodule(t).get_delta_weight("default").detach().clone()
                    for t in targets
                }
                adapter = {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_" in n}
            peft_model.unload()  # back to plain modules, base weights untouched
        finally:
            with torch.no_grad():
                params = dict(lm.model.named_parameters())
                for n in weight_names:
                    params[n].copy_(originals[n])
            lm.model.eval()
        deltas = {n: adapter_deltas[n] - previous.get(n, 0) for n in weight_names}
        for n, d in deltas.items():
            if not torch.isfinite(d).all():
                raise InvalidDeltaError(f"LoRA produced a non-finite update for '{n}'")
        if cfg.mode == "continual":  # only now: a rejected update must not become the adapter's baseline
            state["adapter"], state["deltas"] = adapter, adapter_deltas
        info = {"steps": cfg.steps, "initial_loss": initial_loss, "final_loss": final_loss}
        return WeightDelta(tensors=deltas, info=[dict(info) for _ in requests])
