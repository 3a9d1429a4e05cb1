"""What the runner has changed since θ₀, kept so that every kind of intervention can be undone bit for
bit, saved at a checkpoint and put back on resume: the parameters weight deltas touched (their θ₀
values), the module patches installed (forward hooks; no weight of a patched module changes) and the
context in force (what scoring shows the model before each question; `LoadedModel.context`).

The runner commits whatever an editor returns through `Intervention.commit(applied, model)`; it never
asks which kind it holds.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from editbench.core import ContextPatch, ModulePatch
from editbench.harness.hooks import _hidden, _with_hidden


class BaseWeights:
    """The unedited value of every parameter any update touched, kept so θ₀ can be restored bit for bit."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.saved: dict[str, torch.Tensor] = {}
        self._base_sq: dict[str, float] = {}  # ||W_0||^2 of each saved matrix, taken once for `drift`

    def remember(self, names) -> None:
        params = dict(self.model.named_parameters())
        for name in names:
            if name not in self.saved and name in params:
                self.saved[name] = params[name].detach().clone()

    @torch.no_grad()
    def restore(self) -> None:
        params = dict(self.model.named_parameters())
        for name, value in self.saved.items():
            params[name].copy_(value)

    def current(self) -> dict[str, torch.Tensor]:
        """The present value of every touched parameter (what a checkpoint saves)."""
        params = dict(self.model.named_parameters())
        return {n: params[n].detach() for n in self.saved}

    @torch.no_grad()
    def drift(self, rows_per_chunk: int = 4096) -> dict:
        """How far each touched matrix has moved from θ₀: ||W_T|| / ||W_0|| and ||W_T - W_0|| (float64,
        a chunk of rows at a time, so a 7B model's MLP matrix is never copied whole). The collapse
        signals of long edit streams (ENCORE: MEMIT's edited-matrix norm grows more than 10x)."""
        params = dict(self.model.named_parameters())
        out = {}
        for name, base in self.saved.items():
            now = params[name].detach()
            if name not in self._base_sq:
                self._base_sq[name] = sum(float(b.double().square().sum()) for b in base.split(rows_per_chunk))
            sq_base, sq_now, sq_diff = self._base_sq[name], 0.0, 0.0
            for a, b in zip(now.split(rows_per_chunk), base.split(rows_per_chunk)):
                a64 = a.double()
                sq_now += float(a64.square().sum())
                sq_diff += float((a64 - b.double()).square().sum())
            ratio = (sq_now / sq_base) ** 0.5 if sq_base > 0 else None
            out[name] = {"norm_ratio": None if ratio is None or not math.isfinite(ratio) else round(ratio, 6),
                         "update_norm": round(sq_diff ** 0.5, 6) if math.isfinite(sq_diff) else None}
        return out


class InstalledPatches:
    """Module patches in force, at most one per module (a new patch of a module replaces the old)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.patches: dict[str, ModulePatch] = {}
        self._handles: dict[str, Any] = {}
        # the attention mask of the model's current forward pass, for adaptors that pool over a
        # sequence's real tokens (WISE's routing): recorded by one pre-hook while any patch is installed
        self._mask: dict[str, torch.Tensor | None] = {"mask": None}
        self._mask_hook: Any = None  # a RemovableHandle while any patch is installed

    def install(self, patch: ModulePatch) -> None:
        self.remove(patch.module)
        adaptor, seen = patch.build(), self._mask

        def hook(_module, args, output):
            hidden = _hidden(output)
            mask = seen["mask"]
            if mask is not None and mask.dim() == 2 and mask.shape[0] == hidden.shape[0]:
                mask = mask[:, -hidden.shape[1]:]  # with a KV cache the mask covers the past tokens too
            else:
                mask = None
            return _with_hidden(output, adaptor(args[0], hidden, mask))

        if self._mask_hook is None:  # one pre-hook for every patch: it records the attention mask
            self._mask_hook = self.model.register_forward_pre_hook(self._record_mask, with_kwargs=True)
        self._handles[patch.module] = self.model.get_submodule(patch.module).register_forward_hook(hook)
        self.patches[patch.module] = patch

    def _record_mask(self, _module, args, kwargs):
        self._mask["mask"] = kwargs.get("attention_mask")

    def remove(self, module: str) -> None:
        handle = self._handles.pop(module, None)
        if handle is not None:
            handle.remove()
        self.patches.pop(module, None)
        if not self._handles and self._mask_hook is not None:
            self._mask_hook.remove()
            self._mask_hook, self._mask["mask"] = None, None

    def remove_all(self) -> None:
        for module in list(self._handles):
            self.remove(module)

    def saved(self) -> list[dict]:
        """Each installed patch as JSON-able fields and its tensors (what a checkpoint keeps)."""
        return [{"intervention": ModulePatch.kind, "module": p.module, "adaptor": p.adaptor, "settings": p.settings,
                 "tensors": p.tensors} for p in self.patches.values()]


class Applied:
    """Everything that differs from θ₀: weights (BaseWeights), module patches and the context shown."""

    def __init__(self, model: torch.nn.Module, lm: Any = None) -> None:
        self.weights = BaseWeights(model)
        self.patches = InstalledPatches(model)
        self.lm = lm  # the LoadedModel whose `context` a ContextPatch sets
        self.context: ContextPatch | None = None

    def remember(self, names) -> None:
        self.weights.remember(names)

    def install(self, patch: ModulePatch) -> None:
        self.patches.install(patch)

    def set_context(self, patch: ContextPatch) -> None:
        if self.lm is None:
            raise ValueError("a context patch needs the LoadedModel: Applied(model, lm)")
        self.lm.context = patch.build()
        self.context = patch

    def restore(self) -> None:
        """θ₀ again, bit for bit: touched parameters copied back, every patch's hook removed, no context."""
        self.weights.restore()
        self.patches.remove_all()
        if self.context is not None:
            self.lm.context, self.context = None, None

    def saved(self) -> list[dict]:
        """The installed patches and the context, as JSON-able fields and tensors (for a checkpoint)."""
        context = [] if self.context is None else [
            {"intervention": ContextPatch.kind, "adaptor": self.context.adaptor, "settings": self.context.settings,
             "tensors": self.context.tensors}]
        return self.patches.saved() + context

    def load(self, saved: list[dict]) -> None:
        """Put back what `saved` returned (the weights are restored separately)."""
        self.patches.remove_all()
        for entry in saved:
            fields = {k: entry[k] for k in ("adaptor", "settings", "tensors")}
            if entry["intervention"] == ModulePatch.kind:
                self.install(ModulePatch(module=entry["module"], **fields))
            else:
                self.set_context(ContextPatch(**fields))
