"""ROME (Meng et al. 2022): a rank-one update of one MLP output projection per fact.

k* = key at the subject's last token averaged over context templates; d = C^{-1} k* (or k* with
`mom2_adjustment: false`, EasyEdit's default); v* from `rewrite.optimise_target` on the MLP output;
dW = (v* - W k) d^T / (d^T k) with k the key of the bare prompt, so (W + dW) k = v*.
Requests of a batch are applied one after another, each seeing the ones before it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import torch

from editbench.core import Editor, EditorConfig, InvalidDeltaError, WeightDelta, check_range, register_editor
from editbench.harness.arch import get_module, mlp_proj_path, to_storage
from editbench.harness.corpus import check_corpus
from editbench.harness.search import Int, Layer, LogFloat, SearchSpace
from editbench.methods import training
from editbench.methods.key_stats import PRECISIONS, StatsSpec, key_statistics
from editbench.methods.locate import rome_direction, rome_rank_one
from editbench.methods.rewrite import TEMPLATE_SOURCES, TargetSpec, context_templates, flat, optimise_target


@dataclass(frozen=True)
class LocateConfig(EditorConfig, TargetSpec, StatsSpec):
    """Fields shared by ROME and MEMIT: v* optimisation (TargetSpec), key statistics (StatsSpec)."""

    layers: tuple[int, ...] = (1,)
    context_template_lengths: tuple[tuple[int, int], ...] = ((5, 10), (10, 10))  # (tokens, how many)
    # 'prefixes': generated from the references' prefix words (ROME/MEMIT/EasyEdit); 'eos': from EOS
    context_template_source: str = "prefixes"
    template_seed: int = 0

    def check(self) -> None:
        self.check_target()
        check_range(self, "layers", bool(self.layers) and all(L >= 0 for L in self.layers)
                    and list(self.layers) == sorted(set(self.layers)), "non-empty, ascending, >= 0")
        check_range(self, "mom2_n_samples", self.mom2_n_samples >= 1, ">= 1")
        check_range(self, "mom2_max_length", self.mom2_max_length is None or self.mom2_max_length >= 1,
                    ">= 1 or null (min(model context, 4096))")
        check_range(self, "mom2_dtype", self.mom2_dtype in PRECISIONS, ", ".join(PRECISIONS))
        check_range(self, "mom2_batch_size", self.mom2_batch_size >= 1, ">= 1")
        check_range(self, "context_template_lengths", all(
            len(pair) == 2 and pair[0] >= 1 and pair[1] >= 1 for pair in self.context_template_lengths),
            "(tokens >= 1, count >= 1) pairs")
        check_range(self, "template_seed", self.template_seed >= 0, ">= 0")
        check_range(self, "context_template_source", self.context_template_source in TEMPLATE_SOURCES,
                    ", ".join(TEMPLATE_SOURCES))

    @property
    def target_spec(self) -> TargetSpec:
        return TargetSpec(**{f: getattr(self, f) for f in TargetSpec.__dataclass_fields__})

    @property
    def stats_spec(self) -> StatsSpec:
        return StatsSpec(**{f: getattr(self, f) for f in StatsSpec.__dataclass_fields__})


LocateT = TypeVar("LocateT", bound=LocateConfig)


class LocateEditor(Editor[LocateT]):
    config_class = LocateConfig

    def check_model(self, lm) -> None:
        for layer in self.config.layers:  # raises ConfigError for a bad layer or module path
            get_module(lm.model, mlp_proj_path(lm.model, layer, "down"))
        if getattr(self.config, "mom2_adjustment", True):  # MEMIT always needs C; ROME only with the adjustment
            check_corpus(self.config.mom2_corpus, lm.name)

    def prepare(self, lm, cache) -> None:
        """Key statistics and context templates, computed on the unedited weights (as `edit` would on
        its first call)."""
        cfg = self.config
        if getattr(cfg, "mom2_adjustment", True):
            key_statistics(lm, list(cfg.layers), cfg.stats_spec, cache)
        context_templates(lm, cfg.context_template_lengths, cache, cfg.template_seed, cfg.context_template_source)

    def down_proj(self, lm, layer: int):
        return get_module(lm.model, mlp_proj_path(lm.model, layer, "down"))


def add_update(module, update_out_in: torch.Tensor, what: str) -> None:
    """Add an [out, in] update to the module's weight in place, refusing non-finite values."""
    if not torch.isfinite(update_out_in).all():
        raise InvalidDeltaError(f"{what} produced a non-finite update")
    with torch.no_grad():
        module.weight.add_(to_storage(module, update_out_in.to(module.weight.device, module.weight.dtype)))


@dataclass(frozen=True)
class ROMEConfig(LocateConfig):
    layers: tuple[int, ...] = (1,)
    mom2_adjustment: bool = True  # use C^{-1} k* as in the original ROME; false = EasyEdit default

    def check(self) -> None:
        super().check()
        check_range(self, "layers", len(self.layers) == 1, "exactly one layer")


# The v* search every locate-then-edit method shares (ROME/MEMIT hparams: 20-25 steps, lr 0.5, clamp 4).
def target_knobs(clamp: float = 4.0, v_lr: float = 0.5, weight_decay: float = 1e-3) -> tuple:
    return (LogFloat("clamp_norm_factor", clamp, "bound on |delta| / |v|", low=0.25, high=16.0),
            LogFloat("v_lr", v_lr, "Adam lr of the v* search", low=0.05, high=2.0),
            Int("v_num_grad_steps", 25, "steps of the v* search", low=5, high=50, log=True),
            LogFloat("v_weight_decay", weight_decay, "decay on |delta|", low=1e-4, high=1.0))


ROME_SPACE = SearchSpace("ROME on Llama-3-8B (EasyEdit hparams/ROME/llama3-8b.yaml: layer 5 of 32)", (
    Layer("layers", 0.16, "layer 5 of 32", low=0.0, high=1.0, as_tuple=True, spare_last=1), *target_knobs()))


@register_editor("rome")
class ROME(LocateEditor[ROMEConfig]):
    config_class = ROMEConfig
    search_space = ROME_SPACE

    def edit(self, lm, requests, cache=None) -> WeightDelta:
        cfg: ROMEConfig = self.config
        layer = cfg.layers[0]
        module = self.down_proj(lm, layer)
        name = f"{mlp_proj_path(lm.model, layer, 'down')}.weight"
        cov = key_statistics(lm, [layer], cfg.stats_spec, cache)[layer] if cfg.mom2_adjustment else None
        # ROME's compute_u averages k* over all templates at once (flat mean)
        templates = flat(context_templates(lm, cfg.context_template_lengths, cache, cfg.template_seed,
                                           cfg.context_template_source))
        infos = []
        with training.trained_in_place(lm.model, [name]) as params:
            original = training.snapshot(params)
            for request in requests:  # one at a time: each sees the updates before it
                target = optimise_target(lm, module, request, templates, cfg.target_spec, first_layer=layer)
                try:
                    direction = rome_direction(target.input_mean, cov)  # from k*, the template-averaged key
                except torch.linalg.LinAlgError:
                    raise InvalidDeltaError(f"ROME on request {request.case_id!r}: the key statistics C are "
                                            "singular") from None
                update = rome_rank_one(target.value, target.init, target.input_bare, direction)
                add_update(module, update, f"ROME on request {request.case_id!r}")
                infos.append({**target.info, "update_norm": round(update.norm().item(), 5)})
            deltas = training.delta_against(params, original)
        return WeightDelta(tensors=deltas, info=infos)
