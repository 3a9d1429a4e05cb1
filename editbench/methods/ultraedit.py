"""UltraEdit (Gu et al. 2025, arXiv 2505.14679; XiaojieGu/UltraEdit, EasyEdit's `ultraedit`): a
closed-form, training-free update from hidden states and gradients, with lifelong normalisation.

Per editor call, for each edited module W (MLP gate/up projections of the chosen layers):
1. each edit's sentence (prompt + new target) goes forward and the cross-entropy of the target
   tokens backward; at every token the module's input k (hidden state) and the gradient g of the
   loss at its output are kept;
2. the running statistics of z = [k, g] (one per module shape, shared by modules of that shape and
   updated by each module in turn, as the reference does) take in this call's z's: they are the
   editor's lifelong state, never reset within a run but by the protocol (`normaliser_scope`
   'lifelong', the paper's); 'call' starts them afresh at every call, as EasyEdit 14cea82 does;
3. z is normalised with those statistics into [k̂, ĝ]; the pseudo-values are v = -lr·‖k̂‖²·ĝ per
   token, and the update is ΔWᵀ = (KᵀK + I)⁻¹ Kᵀ V with the raw keys K (ridge least squares).
The update is returned, never applied here. State (`state_dict`): each normaliser's n, mean, var, std.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from editbench.core import (
    ConfigError, Editor, EditorConfig, InvalidDeltaError, WeightDelta, check_range, register_editor,
)
from editbench.harness.arch import get_module, mlp_proj_path, num_layers, to_storage
from editbench.harness.scoring import encode_prompt_target
from editbench.harness.search import Choice, LayerSpan, LogFloat, SearchSpace

TOKENS = ("mask", "ans")
SCOPES = ("lifelong", "call")


@dataclass(frozen=True)
class UltraEditConfig(EditorConfig):
    layers: tuple[int, ...] = (2, 3)
    projections: tuple[str, ...] = ("gate", "up")  # the reference edits MLP gate_proj and up_proj
    lr: float = 1e-6  # the reference's step on the normalised pseudo-gradient
    # which token positions give keys and gradients: 'mask' every token of the sentence (the
    # reference's hparams), 'ans' the target's tokens only
    token: str = "mask"
    # how long the running statistics live: 'lifelong' the whole stream until the protocol resets it
    # (the paper, XiaojieGu/UltraEdit's editor), 'call' afresh at every editor call (what EasyEdit
    # 14cea82 runs: its executor never sets is_init, so each call builds a new normaliser)
    normaliser_scope: str = "lifelong"

    def check(self) -> None:
        check_range(self, "layers", len(self.layers) >= 1 and len(set(self.layers)) == len(self.layers),
                    "one or more distinct layers")
        check_range(self, "projections", len(self.projections) >= 1 and set(self.projections) <= {"gate", "up", "down"},
                    "gate, up, down")
        check_range(self, "lr", self.lr > 0, "> 0")
        check_range(self, "token", self.token in TOKENS, ", ".join(TOKENS))
        check_range(self, "normaliser_scope", self.normaliser_scope in SCOPES, ", ".join(SCOPES))


class RunningMeanStd:
    """The reference's running statistics (EasyEdit `malmen/nets.py` RunningMeanStd), float32: `var`
    accumulates n·var of each batch plus the shift of the mean, std = sqrt(var / (n - 1))."""

    def __init__(self, size: int, device) -> None:
        self.n = torch.zeros(1, device=device)
        self.mean = torch.zeros(size, device=device)
        self.var = torch.zeros(size, device=device)
        self.std = torch.zeros(size, device=device)

    def update(self, x: torch.Tensor) -> None:
        n = self.n + x.shape[0]
        delta = x.mean(0) - self.mean
        self.mean = self.mean + x.shape[0] * delta / n
        # one row has no sample variance: the reference gets NaN there (a one-token answer with
        # token 'ans'); it adds nothing instead
        spread = x.var(0) if x.shape[0] > 1 else torch.zeros_like(self.var)
        self.var = self.var + x.shape[0] * spread + self.n * x.shape[0] * delta.pow(2) / n
        self.std = (self.var / (n - 1 + torch.finfo(x.dtype).eps)).sqrt()
        self.n = n

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / (self.std + torch.finfo(x.dtype).eps)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"n": self.n, "mean": self.mean, "var": self.var, "std": self.std}


def ultraedit_update(keys: torch.Tensor, grads: torch.Tensor, normaliser: RunningMeanStd, lr: float) -> torch.Tensor:
    """ΔWᵀ [in, out] from keys K [n, in] and output gradients G [n, out], the normaliser already
    holding this call's z's: V = -lr·‖k̂‖²·ĝ, ΔWᵀ = (KᵀK + I)⁻¹ KᵀV."""
    z = normaliser(torch.cat((keys, grads), -1))
    k_hat, g_hat = z.split([keys.shape[1], grads.shape[1]], -1)
    values = -lr * (k_hat * k_hat).sum(-1, keepdim=True) * g_hat
    system = keys.T @ keys + torch.eye(keys.shape[1], device=keys.device, dtype=keys.dtype)
    return torch.linalg.solve(system, keys.T @ values)


ULTRAEDIT_SPACE = SearchSpace("UltraEdit (EasyEdit hparams/UltraEdit/qwen2.5-7b.yaml: lr 1e-6, MLP gate and up "
                              "projections of the last layers)", (
    LayerSpan("layers", (0.5, 2), "the upper half of the blocks", low=0.0, high=1.0, min_width=1, max_width=4),
    LogFloat("lr", 1e-6, "step on the normalised pseudo-gradient", low=1e-7, high=10.0),
    Choice("projections", ("gate", "up"), "which MLP projections", options=(("gate", "up"), ("up",), ("down",))),
    Choice("token", "mask", "token positions of keys and gradients", options=TOKENS)))


@register_editor("ultraedit")
class UltraEdit(Editor[UltraEditConfig]):
    config_class = UltraEditConfig
    search_space = ULTRAEDIT_SPACE

    # ----- lifelong state: one normaliser per module shape (in, out)
    def reset_state(self) -> None:
        self.normalisers: dict[tuple[int, int], RunningMeanStd] = {}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"normaliser/{i}x{o}/{k}": v.clone() for (i, o), norm in self.normalisers.items()
                for k, v in norm.tensors().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.reset_state()
        for key, value in state.items():
            head, shape, field = key.split("/") if key.count("/") == 2 else ("", "", "")
            if head != "normaliser" or field not in ("n", "mean", "var", "std"):
                raise ConfigError(f"ultraedit cannot take the saved state '{key}'")
            i, o = (int(x) for x in shape.split("x"))
            norm = self.normalisers.setdefault((i, o), RunningMeanStd(i + o, value.device))
            setattr(norm, field, value.clone())

    def check_model(self, lm) -> None:
        n = num_layers(lm.model)
        bad = [layer for layer in self.config.layers if not 0 <= layer < n]
        if bad:
            raise ConfigError(f"ultraedit: layer index {bad[0]} is out of range (valid: 0..{n - 1})")
        for path in self._modules(lm):
            get_module(lm.model, path)

    def _modules(self, lm) -> list[str]:
        """Module paths in the reference's order: every layer of the first projection, then the next."""
        return [mlp_proj_path(lm.model, layer, proj) for proj in self.config.projections for layer in self.config.layers]

    def edit(self, lm, requests, cache=None) -> WeightDelta:
        if self.config.normaliser_scope == "call":
            self.reset_state()
        paths = self._modules(lm)
        modules = [get_module(lm.model, p) for p in paths]
        traced: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {p: ([], []) for p in paths}
        # one sentence at a time (the reference's batch_size_once = 1: no padding), longest first as
        # the reference orders its batches (the order its normalisers see them)
        encoded = [encode_prompt_target(lm.tokenizer, r.prompt, r.target_new) for r in requests]
        for prompt_ids, target_ids in sorted(encoded, key=lambda pair: -(len(pair[0]) + len(pair[1]))):
            for path, (keys, grads) in self._trace(lm, prompt_ids, target_ids, paths, modules).items():
                traced[path][0].append(keys)
                traced[path][1].append(grads)
                shape = (keys.shape[1], grads.shape[1])
                norm = self.normalisers.setdefault(shape, RunningMeanStd(sum(shape), keys.device))
                norm.update(torch.cat((keys, grads), -1))
        tensors: dict[str, torch.Tensor] = {}
        infos: list[dict] = [{} for _ in requests]
        for path, module in zip(paths, modules):
            keys, grads = torch.cat(traced[path][0]), torch.cat(traced[path][1])
            update_in_out = ultraedit_update(keys, grads, self.normalisers[(keys.shape[1], grads.shape[1])],
                                             self.config.lr)
            if not torch.isfinite(update_in_out).all():
                raise InvalidDeltaError(f"ultraedit at {path}: the update is not finite")
            tensors[f"{path}.weight"] = to_storage(module, update_in_out.T).to(module.get_parameter("weight").dtype)
        return WeightDelta(tensors=tensors, info=infos)

    def _trace(self, lm, prompt_ids, target_ids, paths, modules) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Keys (module inputs) and output gradients at the chosen tokens for one edit sentence."""
        ids = torch.tensor([prompt_ids + target_ids], device=lm.device)
        positions = range(len(prompt_ids), ids.shape[1]) if self.config.token == "ans" else range(ids.shape[1])
        inputs, outputs, handles = {}, {}, []

        def hook(path):
            def keep(module, args, output):
                inputs[path] = args[0].detach()
                output.retain_grad()
                outputs[path] = output
            return keep

        weights = [m.weight for m in modules]
        flags = [w.requires_grad for w in weights]
        try:
            for w in weights:  # the loss must reach each module's output; nothing else gets a gradient
                w.requires_grad_(True)
            handles = [m.register_forward_hook(hook(p)) for p, m in zip(paths, modules)]
            with torch.enable_grad():
                logits = lm.model(input_ids=ids).logits
                answer = torch.arange(len(prompt_ids), ids.shape[1], device=lm.device)
                loss = torch.nn.functional.cross_entropy(logits[0, answer - 1].float(), ids[0, answer])
                loss.backward()
        finally:
            for h in handles:
                h.remove()
            for w, flag in zip(weights, flags):
                w.grad = None
                w.requires_grad_(flag)
        index = torch.tensor(list(positions), device=lm.device)
        out = {}
        for path, module in zip(paths, modules):
            keys = inputs[path][0, index].float()
            grads = outputs[path].grad[0, index].float()
            out[path] = (keys, grads)  # Conv1D (GPT-2) too: x @ W, its input and output are as Linear's
        return out
