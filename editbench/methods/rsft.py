"""R-SFT and R-SFT+Merge ("Model Merging for Knowledge Editing", arXiv 2506.12384).

Stage 1 (`rsft`): fine-tune the MLP of one layer sample by sample (batch size 1), for E epochs over
the batch in a fixed seeded order, taking at most K steps per sample and stopping on a sample as
soon as its loss (cross-entropy on target tokens) is below tau.
Stage 2 (`rsft_merge`): delta = theta_sft - theta_base, keep the top `density` share of its entries
by magnitude, and add `delta_weight` times it to theta_base (see editbench.methods.merging for the
two readings of the paper's alpha). `merge_scope` says what theta_sft is across sequential calls:
`batch` fine-tunes from the current (merged) weights and merges each call's delta on its own;
`cumulative` keeps fine-tuning the un-merged theta_sft across calls and serves
theta_base + delta_weight * prune(theta_sft - theta_base), recomputed after every call.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from editbench.core import (
    Editor, EditorConfig, InvalidDeltaError, WeightDelta, check_range, flatten_state, nest_state, register_editor,
)
from editbench.harness.prefix import FrozenPrefix
from editbench.harness.search import Choice, Float, Int, Layer, LogFloat, SearchSpace
from editbench.methods import training
from editbench.methods.merging import MERGE_VARIANTS, merge_delta

PROJECTIONS = ("gate", "up", "down")
MERGE_SCOPES = ("batch", "cumulative")


@dataclass(frozen=True)
class RSFTConfig(EditorConfig):
    layer: int = 1
    projections: tuple[str, ...] = PROJECTIONS
    epochs: int = 5  # E
    max_steps_per_sample: int = 6  # K
    tau: float = 0.1  # early-stopping loss threshold
    lr: float = 5e-4
    weight_decay: float = 0.0  # decay would pull the base weights, not the delta, towards zero
    seed: int = 0  # sample order

    def check(self) -> None:
        check_range(self, "layer", self.layer >= 0, ">= 0")
        check_range(self, "projections", bool(self.projections) and set(self.projections) <= set(PROJECTIONS),
                    f"non-empty subset of {PROJECTIONS}")
        check_range(self, "epochs", self.epochs >= 1, ">= 1")
        check_range(self, "max_steps_per_sample", self.max_steps_per_sample >= 1, ">= 1")
        check_range(self, "tau", self.tau > 0, "> 0")
        check_range(self, "lr", self.lr > 0, "> 0")
        check_range(self, "weight_decay", self.weight_decay >= 0, ">= 0")
        check_range(self, "seed", self.seed >= 0, ">= 0")


@dataclass(frozen=True)
class RSFTMergeConfig(RSFTConfig):
    delta_weight: float = 0.8  # weight on the pruned delta (not on the base): see methods/merging.py
    density: float = 0.2  # share of delta entries kept, by magnitude
    merge: str = "linear"
    merge_scope: str = "batch"

    def check(self) -> None:
        super().check()
        check_range(self, "delta_weight", 0.0 <= self.delta_weight <= 1.0, "[0, 1]")
        check_range(self, "merge_scope", self.merge_scope in MERGE_SCOPES, ", ".join(MERGE_SCOPES))
        check_range(self, "density", 0.0 < self.density <= 1.0, "(0, 1]")
        check_range(self, "merge", self.merge in MERGE_VARIANTS, ", ".join(MERGE_VARIANTS))


def robust_sft(lm, requests, cfg: RSFTConfig) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Stage 1. Returns delta = theta_sft - theta_base and per-request step counts and losses."""
    names = training.mlp_param_names(lm, cfg.layer, cfg.projections)
    batches = [training.target_batch(lm, [r]) for r in requests]
    order = list(range(len(requests)))
    random.Random(cfg.seed).shuffle(order)
    steps = [[0] * cfg.epochs for _ in requests]
    # nothing below the edited layer changes while training: each sample's state there is computed once
    with training.trained_in_place(lm.model, names) as params, FrozenPrefix(lm, cfg.layer) as prefix:
        for b in batches:
            prefix.add(b.input_ids, b.attention_mask)
        originals = training.snapshot(params)
        opt = torch.optim.AdamW(params.values(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        with torch.no_grad():  # each sample's loss before training, for the runner's divergence guard
            initial = [training.target_nll(lm.model, b).item() for b in batches]
        for epoch in range(cfg.epochs):
            for i in order:
                for _ in range(cfg.max_steps_per_sample):
                    loss = training.target_nll(lm.model, batches[i])
                    if loss.item() < cfg.tau:
                        break
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    steps[i][epoch] += 1
        with torch.no_grad():
            final = [training.target_nll(lm.model, b).item() for b in batches]
        deltas = training.delta_against(params, originals)
    info = [{"steps": sum(s), "steps_per_epoch": s, "initial_loss": i, "final_loss": f}
            for s, i, f in zip(steps, initial, final)]
    return deltas, info


# Centred on the paper's settings (arXiv 2506.12384: layer 5 of 32, lr 5e-4, E = 5, K = 6, tau = 0.1;
# merge: alpha 0.8 read as the delta's weight, density 0.2).
def _rsft_knobs() -> tuple:
    return (Layer("layer", 0.16, "arXiv 2506.12384: layer 5 of 32"),
            LogFloat("lr", 5e-4, "arXiv 2506.12384", low=1e-5, high=1e-2),
            Int("epochs", 5, "E", low=1, high=10),
            Int("max_steps_per_sample", 6, "K", low=1, high=12),
            LogFloat("tau", 0.1, "early-stopping loss", low=1e-2, high=1.0))


RSFT_SPACE = SearchSpace("R-SFT, arXiv 2506.12384", _rsft_knobs())
RSFT_MERGE_SPACE = SearchSpace("R-SFT+Merge, arXiv 2506.12384", _rsft_knobs() + (
    Float("delta_weight", 0.8, "alpha 0.8 on the delta (0.2: the other reading)", low=0.05, high=1.0),
    Float("density", 0.2, "share of delta entries kept", low=0.05, high=1.0),
    Choice("merge_scope", "batch", "each call's delta merged alone, or the run's so far", options=MERGE_SCOPES)))


@register_editor("rsft")
class RSFT(Editor[RSFTConfig]):
    """R-SFT (arXiv 2506.12384): robust supervised fine-tuning of one layer's MLP, sample by sample."""

    config_class = RSFTConfig
    search_space = RSFT_SPACE

    def check_model(self, lm) -> None:
        training.mlp_param_names(lm, self.config.layer, self.config.projections)

    def edit(self, lm, requests, cache=None) -> WeightDelta:
        deltas, info = robust_sft(lm, requests, self.config)
        return WeightDelta(tensors=deltas, info=info)


@register_editor("rsft_merge")
class RSFTMerge(RSFT):
    """R-SFT+Merge (arXiv 2506.12384): R-SFT, then the pruned, weighted delta merged into the base."""

    config_class = RSFTMergeConfig
    config: RSFTMergeConfig
    search_space = RSFT_MERGE_SPACE

    def reset_state(self) -> None:
        self._sft_delta: dict[str, torch.Tensor] = {}  # cumulative scope: theta_sft - theta_base
        self._served: dict[str, torch.Tensor] = {}  # cumulative scope: the merged update now in the model

    def state_dict(self) -> dict[str, torch.Tensor]:
        return flatten_state({"sft_delta": self._sft_delta, "served": self._served})

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        groups = nest_state(state, ("sft_delta", "served"))
        self._sft_delta, self._served = groups["sft_delta"], groups["served"]

    def _merge(self, deltas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg: RSFTMergeConfig = self.config
        return {n: merge_delta(d, cfg.delta_weight, cfg.density, cfg.merge, cfg.seed) for n, d in deltas.items()}

    def edit(self, lm, requests, cache=None) -> WeightDelta:
        cfg: RSFTMergeConfig = self.config
        if cfg.merge_scope == "batch":
            deltas, info = robust_sft(lm, requests, cfg)
            return WeightDelta(tensors=self._merge(deltas), info=info)
        names = training.mlp_param_names(lm, cfg.layer, cfg.projections)
        with training.trained_in_place(lm.model, names) as params:  # put back bit for bit afterwards
            with torch.no_grad():  # from the served weights to theta_sft, to keep fine-tuning it
                for n in self._sft_delta:
                    params[n].add_(self._sft_delta[n] - self._served[n])
            step, info = robust_sft(lm, requests, cfg)
        sft_delta = {n: self._sft_delta.get(n, 0) + step[n] for n in step}
        served = self._merge(sft_delta)
        update = {n: served[n] - self._served.get(n, 0) for n in served}
        if not all(torch.isfinite(u).all() for u in update.values()):
            raise InvalidDeltaError("R-SFT+Merge produced a non-finite update")
        self._sft_delta, self._served = sft_delta, served  # only a valid update moves the state on
        return WeightDelta(tensors=update, info=info)
