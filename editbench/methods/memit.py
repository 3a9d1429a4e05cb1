"""MEMIT (Meng et al. 2023): one closed-form update per layer for a whole batch of facts.

Target hidden states z (residual stream at the last edited layer, subject's last token) come from
`rewrite.optimise_targets` (all requests in one padded pass) on that block's output. Then for each edited layer in ascending order:
keys K at that layer (averaged within each context-template type, then across types, as MEMIT's
compute_ks: the bare prompt weighs 1/2 with one generated group; earlier layers already updated), residual
R = (Z - H) / (layers left), dW = R K^T (lam C + K K^T)^{-1} (locate.memit_solve, float64).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from editbench.core import InvalidDeltaError, WeightDelta, check_range, register_editor
from editbench.harness.arch import get_module, layer_path, mlp_proj_path
from editbench.methods import training
from editbench.methods.key_stats import key_statistics
from editbench.methods.locate import memit_solve
from editbench.methods.rewrite import context_templates, flat, optimise_targets, read_at_subject
from editbench.methods.rome import LocateConfig, LocateEditor, add_update


@dataclass(frozen=True)
class MEMITConfig(LocateConfig):
    layers: tuple[int, ...] = (0, 1)
    context_template_lengths: tuple[tuple[int, int], ...] = ((10, 5),)  # MEMIT's compute_z templates
    mom2_update_weight: float = 15000.0  # lambda
    # requests whose z's are optimised in one padded pass (memory grows with it; the z's do not change)
    z_batch_requests: int = 64

    def check(self) -> None:
        super().check()
        check_range(self, "mom2_update_weight", self.mom2_update_weight > 0, "> 0")
        check_range(self, "z_batch_requests", self.z_batch_requests >= 1, ">= 1")


@register_editor("memit")
class MEMIT(LocateEditor):
    config_class = MEMITConfig

    def edit(self, lm, requests, cache=None) -> WeightDelta:
        cfg: MEMITConfig = self.config
        layers = list(cfg.layers)
        block = get_module(lm.model, layer_path(lm.model, layers[-1]))
        covs = key_statistics(lm, layers, cfg.stats_spec, cache)
        groups = context_templates(lm, cfg.context_template_lengths, cache, cfg.template_seed,
                                   cfg.context_template_source)
        templates, group_sizes = flat(groups), [len(g) for g in groups]
        targets = []  # z for each request: independent, so optimised together, z_batch_requests at a time
        for start in range(0, len(requests), cfg.z_batch_requests):
            targets += optimise_targets(lm, block, requests[start:start + cfg.z_batch_requests], templates,
                                        cfg.target_spec, first_layer=layers[-1])
        infos = [target.info for target in targets]
        z_all = torch.stack([target.value for target in targets])  # [n, hidden]
        names = [f"{mlp_proj_path(lm.model, L, 'down')}.weight" for L in layers]
        with training.trained_in_place(lm.model, names) as params:
            original = training.snapshot(params)
            for i, layer in enumerate(layers):
                module = self.down_proj(lm, layer)
                keys, _ = read_at_subject(lm, module, requests, templates, cfg.fact_token, group_sizes)
                _, z_now = read_at_subject(lm, block, requests, ["{}"], cfg.fact_token)
                residual = (z_all - z_now).T / (len(layers) - i)  # [hidden, n]
                try:
                    update = memit_solve(residual, keys.T, covs[layer], cfg.mom2_update_weight)
                except torch.linalg.LinAlgError:
                    raise InvalidDeltaError(f"MEMIT at layer {layer}: the system lambda*C + K K^T is singular "
                                            f"(mom2_update_weight={cfg.mom2_update_weight:g} too small?)") from None
                add_update(module, update, f"MEMIT at layer {layer}")
                for info in infos:
                    info.setdefault("update_norms", []).append(round(update.norm().item(), 5))
            deltas = training.delta_against(params, original)
        return WeightDelta(tensors=deltas, info=infos)
