"""AlphaEdit (Fang et al., ICLR 2025; jianghoucheng/AlphaEdit): MEMIT's update projected onto the null
space of the preserved keys, with the keys of earlier batches kept across sequential calls.

The loop is MEMIT's (methods/memit.py: z's at the last edited layer, keys per layer, residual spread
over the layers left); the per-layer solve is `locate.alphaedit_solve` with P from
`locate.nullspace_projector` on the unedited model's key statistics C (computed once per run, like
C itself). After all layers of a batch are written, each layer's keys are read again on the edited
weights and K K^T is added to the cross-batch moment C_p (the reference's `cache_c`), which is this
editor's own state: reset when the protocol restores θ₀, saved with a run's checkpoints.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from editbench.core import InvalidDeltaError, check_range, register_editor
from editbench.methods.key_stats import key_statistics
from editbench.methods.locate import alphaedit_solve, nullspace_projector
from editbench.harness.search import LogFloat, SearchSpace
from editbench.methods.memit import MEMIT_LAYERS, BatchLocateConfig, EarlierKeysEditor
from editbench.methods.rome import target_knobs


@dataclass(frozen=True)
class AlphaEditConfig(BatchLocateConfig):
    # eigenvalues of C below this span the null space updates are projected onto (reference: 2e-2)
    nullspace_threshold: float = 2e-2
    # the reference's `L2`: ridge term of the solve (reference: 10 for Llama-3-8B, GPT-J, GPT2-XL)
    l2: float = 10.0

    def check(self) -> None:
        super().check()
        check_range(self, "nullspace_threshold", self.nullspace_threshold > 0, "> 0")
        check_range(self, "l2", self.l2 > 0, "> 0")


ALPHAEDIT_SPACE = SearchSpace("AlphaEdit (jianghoucheng/AlphaEdit hparams/AlphaEdit/Llama3-8B.json: layers 4-8 of "
                              "32, threshold 2e-2, L2 10, clamp 0.75, v_lr 0.1)", (
    MEMIT_LAYERS,
    LogFloat("nullspace_threshold", 2e-2, "eigenvalue cut of the null space", low=1e-4, high=1e-1),
    LogFloat("l2", 10.0, "the reference's L2 ridge term", low=0.1, high=1e3),
    *target_knobs(clamp=0.75, v_lr=0.1, weight_decay=0.5)))


@register_editor("alphaedit")
class AlphaEdit(EarlierKeysEditor[AlphaEditConfig]):
    config_class = AlphaEditConfig
    search_space = ALPHAEDIT_SPACE

    def layer_statistics(self, lm, layers, cache):
        """P per layer, from C of the unedited model; cached for the run beside C."""
        cfg: AlphaEditConfig = self.config
        run_cache = cache if cache is not None else {}
        covs = key_statistics(lm, layers, cfg.stats_spec, run_cache)
        projectors = {}
        for layer in layers:
            key = ("alphaedit_projector", layer, cfg.stats_spec, cfg.nullspace_threshold)
            if key not in run_cache:
                run_cache[key] = nullspace_projector(covs[layer], cfg.nullspace_threshold)
            projectors[layer] = run_cache[key]
            if not projectors[layer].abs().sum() > 0:
                raise InvalidDeltaError(
                    f"AlphaEdit at layer {layer}: no eigenvalue of the key statistics is below "
                    f"nullspace_threshold={cfg.nullspace_threshold:g}, so every update is projected to zero")
        return projectors

    def solve(self, index, layer, residual, keys, stats):
        earlier = self._earlier.get(layer)
        if earlier is None:
            earlier = torch.zeros(keys.shape[0], keys.shape[0], dtype=torch.float64, device=keys.device)
        try:
            return alphaedit_solve(residual, keys, stats, earlier, self.config.l2)
        except torch.linalg.LinAlgError:
            raise InvalidDeltaError(f"AlphaEdit at layer {layer}: the system P(K K^T + C_p) + l2 I is singular") \
                from None

    def after_batch(self, lm, requests, templates, group_sizes) -> None:
        # the reference recomputes every layer's keys once all layers are written, then adds K K^T
        for layer in self.config.layers:
            self._earlier.add(layer, self.keys_at(lm, layer, requests, templates, group_sizes))
