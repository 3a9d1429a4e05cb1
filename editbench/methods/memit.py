"""MEMIT (Meng et al. 2023): one closed-form update per layer for a whole batch of facts.

Target hidden states z (residual stream at the last edited layer, subject's last token) come from
`rewrite.optimise_targets` (all requests in one padded pass) on that block's output. Then for each edited layer in ascending order:
keys K at that layer (averaged within each context-template type, then across types, as MEMIT's
compute_ks: the bare prompt weighs 1/2 with one generated group; earlier layers already updated), residual
R = (Z - H) / (layers left), dW = R K^T (lam C + K K^T)^{-1} (locate.memit_solve, float64).
AlphaEdit (methods/alphaedit.py) runs the same loop with its own solve.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import torch

from editbench.core import InvalidDeltaError, WeightDelta, check_range, flatten_state, nest_state, register_editor
from editbench.harness.arch import get_module, layer_path, mlp_proj_path
from editbench.methods import training
from editbench.methods.key_stats import key_statistics
from editbench.methods.locate import memit_solve
from editbench.methods.rewrite import TopOneStop, context_templates, flat, optimise_targets, read_at_subject
from editbench.harness.search import LayerSpan, LogFloat, SearchSpace
from editbench.methods.rome import LocateConfig, LocateEditor, add_update, target_knobs


@dataclass(frozen=True)
class BatchLocateConfig(LocateConfig):
    """What MEMIT and AlphaEdit share: several layers, MEMIT's context templates, batched z's."""

    layers: tuple[int, ...] = (0, 1)
    context_template_lengths: tuple[tuple[int, int], ...] = ((10, 5),)  # MEMIT's compute_z templates
    # requests whose z's are optimised in one padded pass (memory grows with it; the z's do not change)
    z_batch_requests: int = 64

    def check(self) -> None:
        super().check()
        check_range(self, "z_batch_requests", self.z_batch_requests >= 1, ">= 1")


@dataclass(frozen=True)
class MEMITConfig(BatchLocateConfig):
    mom2_update_weight: float = 15000.0  # lambda

    def check(self) -> None:
        super().check()
        check_range(self, "mom2_update_weight", self.mom2_update_weight > 0, "> 0")


class EarlierKeys:
    """Per edited layer, the sum of K K^T over the batches edited before (AlphaEdit's `cache_c`,
    ENCORE's `SEQ_CACHE`): editor state, reset when the protocol restores θ₀, saved at checkpoints."""

    def __init__(self) -> None:
        self.moments: dict[str, torch.Tensor] = {}

    def get(self, layer: int) -> torch.Tensor | None:
        return self.moments.get(str(layer))

    def add(self, layer: int, keys: torch.Tensor) -> None:
        """Adds K^T K of keys [n, in] (float64)."""
        moment = keys.double().T @ keys.double()
        name = str(layer)
        self.moments[name] = self.moments[name] + moment if name in self.moments else moment

    def state_dict(self) -> dict[str, torch.Tensor]:
        return flatten_state({"earlier_keys": self.moments})

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.moments = dict(nest_state(state, ("earlier_keys",))["earlier_keys"])


BatchT = TypeVar("BatchT", bound=BatchLocateConfig)


class BatchLocateEditor(LocateEditor[BatchT]):
    """MEMIT's loop over layers; subclasses give the per-layer solve and may keep state across calls."""

    def top_one_stop(self) -> TopOneStop | None:
        """Whether the z search also stops once the target is top-1 (ENCORE's MPES); MEMIT: no."""
        return None

    def layer_statistics(self, lm, layers: list[int], cache: dict | None) -> dict[int, torch.Tensor]:
        """Per layer, what the solve needs from the unedited model, read before any layer changes."""
        return key_statistics(lm, layers, self.config.stats_spec, cache)

    def solve(self, index: int, layer: int, residual: torch.Tensor, keys: torch.Tensor,
              stats: torch.Tensor) -> torch.Tensor:
        """The [out, in] update of `layer` (the index-th edited layer) from residuals R [out, n], keys
        K [in, n] and that layer's `layer_statistics`."""
        raise NotImplementedError

    def after_batch(self, lm, requests, templates, group_sizes) -> None:
        """Called with the batch written into every layer (AlphaEdit keeps the new keys)."""

    def keys_at(self, lm, layer: int, requests, templates, group_sizes) -> torch.Tensor:
        """Keys of the requests at `layer` on the current weights, [n, in] (MEMIT's compute_ks)."""
        keys, _ = read_at_subject(lm, self.down_proj(lm, layer), requests, templates, self.config.fact_token,
                                  group_sizes)
        return keys

    def edit(self, lm, requests, cache=None) -> WeightDelta:
        cfg: BatchLocateConfig = self.config
        layers = list(cfg.layers)
        block = get_module(lm.model, layer_path(lm.model, layers[-1]))
        stats = self.layer_statistics(lm, layers, cache)
        groups = context_templates(lm, cfg.context_template_lengths, cache, cfg.template_seed,
                                   cfg.context_template_source)
        templates, group_sizes = flat(groups), [len(g) for g in groups]
        targets = []  # z for each request: independent, so optimised together, z_batch_requests at a time
        for start in range(0, len(requests), cfg.z_batch_requests):
            targets += optimise_targets(lm, block, requests[start:start + cfg.z_batch_requests], templates,
                                        cfg.target_spec, first_layer=layers[-1], top_one_stop=self.top_one_stop())
        infos = [target.info for target in targets]
        z_all = torch.stack([target.value for target in targets])  # [n, hidden]
        names = [f"{mlp_proj_path(lm.model, L, 'down')}.weight" for L in layers]
        with training.trained_in_place(lm.model, names) as params:
            original = training.snapshot(params)
            for i, layer in enumerate(layers):
                keys = self.keys_at(lm, layer, requests, templates, group_sizes)
                _, z_now = read_at_subject(lm, block, requests, ["{}"], cfg.fact_token)
                residual = (z_all - z_now).T / (len(layers) - i)  # [hidden, n]
                update = self.solve(i, layer, residual, keys.T, stats[layer])
                add_update(self.down_proj(lm, layer), update, f"{self.name} at layer {layer}")
                for info in infos:
                    info.setdefault("update_norms", []).append(round(update.norm().item(), 5))
            self.after_batch(lm, requests, templates, group_sizes)
            deltas = training.delta_against(params, original)
        return WeightDelta(tensors=deltas, info=infos)


class EarlierKeysEditor(BatchLocateEditor[BatchT]):
    """MEMIT's loop with `EarlierKeys` as the editor's state (AlphaEdit, ENCORE)."""

    def reset_state(self) -> None:
        self._earlier = EarlierKeys()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._earlier.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._earlier.load_state_dict(state)


# the layer span of the MEMIT family's references (layers 4-8 of a 32-layer Llama), as relative depth
MEMIT_LAYERS = LayerSpan("layers", (0.13, 5), "layers 4-8 of 32", low=0.0, high=0.67, min_width=1, max_width=5,
                         spare_last=1)
# lambda over five decades: the world's YAML held 10,000 where 1,000 writes and 10,000 does not.
MEMIT_SPACE = SearchSpace("MEMIT (EasyEdit hparams/MEMIT/llama-7b.yaml: layers 4-8 of 32, lambda 15,000)", (
    MEMIT_LAYERS,
    LogFloat("mom2_update_weight", 15000.0, "lambda", low=1.0, high=1e5), *target_knobs()))


@register_editor("memit")
class MEMIT(BatchLocateEditor[MEMITConfig]):
    config_class = MEMITConfig
    search_space = MEMIT_SPACE

    def solve(self, index, layer, residual, keys, stats):
        cfg: MEMITConfig = self.config
        try:
            return memit_solve(residual, keys, stats, cfg.mom2_update_weight)
        except torch.linalg.LinAlgError:
            raise InvalidDeltaError(f"MEMIT at layer {layer}: the system lambda*C + K K^T is singular "
                                    f"(mom2_update_weight={cfg.mom2_update_weight:g} too small?)") from None
