"""Fine-tuning baselines on one layer's MLP.

- `ft` (FT-M): cross-entropy on the target tokens, each predicted from its own prefix (prompt masked).
- `ft_l` (FT-L, Zhu et al.; EasyEdit's `prompt_last`): every target token predicted from the last
  prompt position, with an optional L-infinity bound on the weight change.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from editbench.core import Editor, EditorConfig, WeightDelta, check_range, register_editor
from editbench.harness.prefix import FrozenPrefix
from editbench.harness.search import Choice, Int, Layer, LogFloat, SearchSpace
from editbench.methods import training

PROJECTIONS = ("down", "up", "gate")


@dataclass(frozen=True)
class FTConfig(EditorConfig):
    layer: int = 1
    projections: tuple[str, ...] = ("down",)
    lr: float = 5e-4
    steps: int = 25
    weight_decay: float = 0.0
    early_stop_loss: float = 1e-2  # EasyEdit's FT stops once the loss is below this
    norm_constraint: float | None = None  # L-inf bound on the change of each weight (FT-L)

    def check(self) -> None:
        check_range(self, "layer", self.layer >= 0, ">= 0")
        check_range(self, "projections", bool(self.projections) and set(self.projections) <= set(PROJECTIONS),
                    f"non-empty subset of {PROJECTIONS}")
        check_range(self, "lr", self.lr > 0, "> 0")
        check_range(self, "steps", self.steps >= 1, ">= 1")
        check_range(self, "weight_decay", self.weight_decay >= 0, ">= 0")
        check_range(self, "early_stop_loss", self.early_stop_loss >= 0, ">= 0")
        check_range(self, "norm_constraint", self.norm_constraint is None or self.norm_constraint > 0, "> 0 or null")


class _FineTune(Editor[FTConfig]):
    config_class = FTConfig
    loss = staticmethod(training.target_nll)

    def check_model(self, lm) -> None:
        training.mlp_param_names(lm, self.config.layer, self.config.projections)

    def edit(self, lm, requests, cache=None) -> WeightDelta:
        cfg: FTConfig = self.config
        names = training.mlp_param_names(lm, cfg.layer, cfg.projections)
        batch = training.target_batch(lm, requests)
        # nothing below the edited layer changes while training: its output is computed once
        with training.trained_in_place(lm.model, names) as params, FrozenPrefix(lm, cfg.layer) as prefix:
            prefix.add(batch.input_ids, batch.attention_mask)
            originals = training.snapshot(params)
            opt = torch.optim.Adam(params.values(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            steps_taken, loss_value, initial = 0, float("nan"), None
            for _ in range(cfg.steps):
                loss = self.loss(lm.model, batch)
                loss_value = loss.item()
                initial = loss_value if initial is None else initial
                if loss_value < cfg.early_stop_loss:
                    break
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                steps_taken += 1
                if cfg.norm_constraint is not None:
                    with torch.no_grad():
                        for n, p in params.items():
                            p.copy_(originals[n] + (p - originals[n]).clamp(-cfg.norm_constraint, cfg.norm_constraint))
            if steps_taken == cfg.steps:  # the loss after the last step, for the runner's divergence guard
                with torch.no_grad():
                    loss_value = self.loss(lm.model, batch).item()
            deltas = training.delta_against(params, originals)
        info = {"steps": steps_taken, "initial_loss": initial, "final_loss": loss_value}
        return WeightDelta(tensors=deltas, info=[dict(info) for _ in requests])


# Where `editbench tune` searches (harness/search.py), centred on EasyEdit's FT settings for Llama
# (hparams/FT/llama-7b.yaml: layer 21 of 32, lr 5e-4, 25 steps, the down projection).
def _ft_knobs() -> tuple:
    return (Layer("layer", 0.68, "EasyEdit FT: layer 21 of 32"),
            LogFloat("lr", 5e-4, "EasyEdit FT", low=1e-5, high=1e-2),
            Int("steps", 25, "EasyEdit FT num_steps", low=5, high=100, log=True),
            Choice("projections", ("down",), "EasyEdit FT edits mlp.down_proj",
                   options=(("down",), ("up", "down"), ("gate", "up", "down"))))


FT_SPACE = SearchSpace("EasyEdit FT-M (hparams/FT/llama-7b.yaml)", _ft_knobs())
# FT-L's bound on the change of each weight: EasyEdit's FT-L norm_constraint 5e-4 (ROME's FT-L baseline)
FT_L_SPACE = SearchSpace("EasyEdit FT-L (hparams/FT/llama-7b.yaml, objective prompt_last)", _ft_knobs() + (
    LogFloat("norm_constraint", 5e-4, "ROME/EasyEdit FT-L", low=1e-5, high=1e-1),))


@register_editor("ft")
class FTM(_FineTune):
    """FT-M: fine-tune one layer's MLP on the target tokens after the prompt (prompt masked)."""

    search_space = FT_SPACE

    loss = staticmethod(training.target_nll)


@register_editor("ft_l")
class FTL(_FineTune):
    """FT-L (EasyEdit's prompt_last): every target token predicted from the last prompt position."""

    search_space = FT_L_SPACE

    loss = staticmethod(training.prompt_last_nll)
