"""ENCORE (Gupta et al. 2025, arXiv 2502.01636; scalable-model-editing/knowledge-editing-regularization,
encore/encore_main.py): MEMIT for long streams, with three changes.

- Most-probable early stopping (MPES): the z search of a request stops once its new object is the
  top-1 token at every target position of its rewriting prompts, `mpes_patience` times (the
  reference's `prob_cutoff: -2`), instead of pushing its probability towards 1 (`rewrite.TopOneStop`).
- A norm constraint: mu ||dW||^2 added to MEMIT's objective (`update_norm_lambda`, reference 20).
- The earlier edits' keys kept in place: sum of K K^T of the earlier batches at each layer added to
  the system (`add_prev_edits`), recorded with the keys the solve used, as the reference's SEQ_CACHE.

dW = R K^T (lam C + mu I + C_p + K K^T)^{-1} per layer (`locate.encore_solve`), MEMIT's loop otherwise.
The reference's gradient-descent variant (`use_gd`, spectral-norm and condition-number losses) is
not implemented.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from editbench.core import InvalidDeltaError, check_range, register_editor
from editbench.harness.search import LogFloat, SearchSpace
from editbench.methods.locate import encore_solve
from editbench.methods.memit import MEMIT_LAYERS, EarlierKeysEditor, MEMITConfig
from editbench.methods.rewrite import TopOneStop
from editbench.methods.rome import target_knobs


@dataclass(frozen=True)
class ENCOREConfig(MEMITConfig):
    # the z search as the reference sets it (hparams/ENCORE/llama3-8b.json)
    clamp_norm_factor: float = 0.75
    v_num_grad_steps: int = 25
    # mu: weight of ||dW||^2 in the objective (reference: 20 for Llama-3-8B, Llama-2-7B, GPT2-XL)
    update_norm_lambda: float = 20.0
    # keep the keys of earlier batches in place (sum of their K K^T in the system; reference: true)
    add_prev_edits: bool = True
    # MPES: stop a request's z search at the n-th step its target is top-1 everywhere (reference
    # prob_cutoff -2 -> 2); 0 turns MPES off (the search stops on its loss alone, as MEMIT's)
    mpes_patience: int = 2
    # MPES checks every rewriting prompt but the bare one, as the reference's code does (its
    # log_probs[1:]); false checks the bare prompt too
    mpes_skip_bare: bool = True

    def check(self) -> None:
        super().check()
        check_range(self, "update_norm_lambda", self.update_norm_lambda >= 0, ">= 0")
        check_range(self, "mpes_patience", self.mpes_patience >= 0, ">= 0 (0: off)")


ENCORE_SPACE = SearchSpace("ENCORE (knowledge-editing-regularization hparams/ENCORE/llama3-8b.json: layers 4-8 "
                           "of 32, lambda 15,000, mu 20, clamp 0.75, v_lr 0.5, MPES 2)", (
    MEMIT_LAYERS,
    LogFloat("mom2_update_weight", 15000.0, "lambda", low=1.0, high=1e5),
    LogFloat("update_norm_lambda", 20.0, "mu, the norm penalty", low=0.1, high=1e3),
    *target_knobs(clamp=0.75, v_lr=0.5, weight_decay=0.5)))


@register_editor("encore")
class ENCORE(EarlierKeysEditor[ENCOREConfig]):
    config_class = ENCOREConfig
    search_space = ENCORE_SPACE

    def top_one_stop(self) -> TopOneStop | None:
        cfg: ENCOREConfig = self.config
        return TopOneStop(cfg.mpes_patience, cfg.mpes_skip_bare) if cfg.mpes_patience > 0 else None

    def solve(self, index, layer, residual, keys, stats):
        cfg: ENCOREConfig = self.config
        earlier = self._earlier.get(layer) if cfg.add_prev_edits else None
        try:
            update = encore_solve(residual, keys, stats, cfg.mom2_update_weight, earlier, cfg.update_norm_lambda)
        except torch.linalg.LinAlgError:
            raise InvalidDeltaError(f"ENCORE at layer {layer}: the system lambda*C + mu*I + C_p + K K^T is "
                                    "singular") from None
        if cfg.add_prev_edits:  # the reference adds this batch's keys as the solve saw them
            self._earlier.add(layer, keys.T)
        return update
