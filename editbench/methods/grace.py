"""GRACE (Hartvigsen et al., arXiv 2211.11031; references thartvigsen/grace and EasyEdit's
`easyeditor/models/grace/GRACE.py`): a codebook at one layer's MLP output projection. Each entry is a
key (the projection's input at the last prompt token of an edit), a value (a vector trained so that
the model says the new object when it replaces the projection's output) and a deferral radius ε.
A position whose input lies within ε of its nearest key gets that key's value as the projection's
output; every other position, and every weight, is untouched. It is a module patch, not a weight
delta: the runner installs the codebook as a forward hook and removes it exactly.

Codebook rules, as in the reference: a query farther than `eps` + ε_nearest from every key adds an
entry (radius `eps`); a query inside that with a different label (target tokens) adds an entry and
splits the two radii at half their distance; with the same label the nearest entry grows to cover
it (`coverage`: ε = distance; `moving_average`: the key moves halfway and ε = distance) and its value
is trained again. Values train with Adam (`edit_lr`, `n_iter` steps) on the target tokens' NLL.

One reading differs and is named here: EasyEdit queries the codebook at one position per forward
pass, the stored `key_id` of the latest edit (its prompt length - 1, whatever the scored prompt), and
only `generate` resets it to the last token. editbench queries every position, so the same codebook
acts the same under teacher-forced scoring and under generation (with a KV cache each new token is a
one-position pass), and no state outside the codebook decides which token is looked up.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from editbench.core import (
    Adaptor,
    Editor,
    EditorConfig,
    ModulePatch,
    check_range,
    register_adaptor,
    register_editor,
)
from editbench.harness.arch import get_module, mlp_proj_path, num_layers
from editbench.harness.hooks import capture, rewrite_output
from editbench.harness.prefix import FrozenPrefix
from editbench.harness.search import Choice, Int, Layer, LogFloat, SearchSpace
from editbench.methods import training

VALUE_INITS = ("cold", "warm")
EXPANSIONS = ("coverage", "moving_average")
NO_LABEL = -1  # padding of the stored labels (token ids are >= 0)


@dataclass(frozen=True)
class GRACEConfig(EditorConfig):
    layer: int = 3  # block whose MLP output projection holds the codebook (EasyEdit: layers[27] of 32)
    eps: float = 1.0  # initial deferral radius, in the projection's input space (EasyEdit `eps`)
    edit_lr: float = 1.0  # Adam learning rate of a value (EasyEdit `edit_lr`)
    n_iter: int = 50  # training steps per edit (EasyEdit `n_iter`)
    val_init: str = "cold"  # cold: uniform [0, 1) as the reference draws it; warm: the projection's own output
    eps_expand: str = "coverage"  # how a same-label query widens its nearest entry (EasyEdit `eps_expand`)

    def check(self) -> None:
        check_range(self, "layer", self.layer >= 0, ">= 0")
        check_range(self, "eps", self.eps > 0, "> 0")
        check_range(self, "edit_lr", self.edit_lr > 0, "> 0")
        check_range(self, "n_iter", self.n_iter >= 1, ">= 1")
        check_range(self, "val_init", self.val_init in VALUE_INITS, " or ".join(VALUE_INITS))
        check_range(self, "eps_expand", self.eps_expand in EXPANSIONS, " or ".join(EXPANSIONS))


def nearest_entries(inputs: torch.Tensor, keys: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of `inputs` [P, d]: the nearest key's index and whether it lies within that key's
    radius (Euclidean distance, float32, as the reference's cdist)."""
    dists = torch.cdist(inputs.float(), keys.float())
    smallest, index = dists.min(1)
    return index, smallest <= eps[index]


def replaced(inputs: torch.Tensor, output: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
             eps: torch.Tensor) -> torch.Tensor:
    """The projection's output with each position inside a codebook entry's radius replaced by its
    value (out of place, so gradients reach `values`)."""
    flat_in, flat_out = inputs.reshape(-1, inputs.shape[-1]), output.reshape(-1, output.shape[-1])
    index, hit = nearest_entries(flat_in, keys, eps)
    patched = torch.where(hit[:, None], values[index].to(flat_out.dtype), flat_out)
    return patched.reshape(output.shape)


@register_adaptor("grace-codebook")
class GRACECodebook(Adaptor):
    """The installed codebook: tensors `keys` [n, d_in], `values` [n, d_out], `eps` [n]."""

    def __call__(self, inputs: torch.Tensor, output: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        keys = self.tensors["keys"]  # every position queries the codebook on its own: no mask needed
        if keys.shape[0] == 0:
            return output
        return replaced(inputs, output, keys, self.tensors["values"], self.tensors["eps"])


# Centred on EasyEdit's GRACE for Llama-2-7B (hparams/GRACE/llama-7b.yaml).
GRACE_SPACE = SearchSpace("EasyEdit GRACE (hparams/GRACE/llama-7b.yaml)", (
    Layer("layer", 27 / 31, "EasyEdit GRACE: model.layers[27].mlp.down_proj of 32"),
    LogFloat("eps", 1.0, "EasyEdit GRACE eps (initial deferral radius)", low=1e-2, high=1e2),
    LogFloat("edit_lr", 1.0, "EasyEdit GRACE edit_lr", low=1e-2, high=10.0),
    Int("n_iter", 50, "EasyEdit GRACE n_iter", low=10, high=200, log=True),
    Choice("val_init", "cold", "EasyEdit GRACE val_init", options=VALUE_INITS),
    Choice("eps_expand", "coverage", "EasyEdit GRACE eps_expand", options=EXPANSIONS),
))


@register_editor("grace")
class GRACE(Editor):
    """GRACE: a codebook of keys, values and deferral radii at one MLP output projection."""

    config_class = GRACEConfig
    search_space = GRACE_SPACE
    intervention = ModulePatch.kind

    def __init__(self, config: GRACEConfig | None = None) -> None:
        super().__init__(config)
        self.reset_state()

    def check_model(self, lm) -> None:
        mlp_proj_path(lm.model, self.config.layer, "down")

    def reset_state(self) -> None:
        self.keys = self.values = self.eps = self.labels = None  # made at the first edit (sizes from the model)

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.keys is None:
            return {}
        return {"codebook/keys": self.keys, "codebook/values": self.values, "codebook/eps": self.eps,
                "codebook/labels": self.labels}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.reset_state()
        if state:
            self.keys, self.values = state["codebook/keys"], state["codebook/values"]
            self.eps, self.labels = state["codebook/eps"], state["codebook/labels"]

    def edit(self, lm, requests, cache=None) -> ModulePatch:
        path = mlp_proj_path(lm.model, self.config.layer, "down")
        module = get_module(lm.model, path)
        infos = [self._edit_one(lm, module, request) for request in requests]
        return ModulePatch(module=path, adaptor=GRACECodebook.kind, settings={},
                           tensors={"keys": self.keys.clone(), "values": self.values.clone(), "eps": self.eps.clone()},
                           info=infos)

    def _edit_one(self, lm, module: torch.nn.Module, request) -> dict:
        cfg: GRACEConfig = self.config
        batch = training.target_batch(lm, [request])
        position = int(batch.last_prompt[0])
        label = torch.tensor(batch.target_ids[0], device=lm.device)
        first_layer = min(cfg.layer, num_layers(lm.model) - 1)
        with training.trained_in_place(lm.model, []), FrozenPrefix(lm, first_layer) as prefix:
            prefix.add(batch.input_ids, batch.attention_mask)
            with torch.no_grad(), capture(module) as seen:
                lm.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
            query = seen.input[0, position].float()
            # the projection's own output (forward, not __call__: no installed patch in between)
            own = module.forward(seen.input[0:1, position:position + 1]).reshape(-1).float()
            chosen, action = self._update_codebook(query, label, own, lm.device)
            value = torch.nn.Parameter(self.values[chosen].clone())
            opt = torch.optim.Adam([value], lr=cfg.edit_lr)

            def working(inputs: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
                values = torch.cat([self.values[:chosen], value[None], self.values[chosen + 1:]])
                return replaced(inputs, output, self.keys, values, self.eps)

            losses = []
            with torch.enable_grad(), rewrite_output(module, working):
                for _ in range(cfg.n_iter):
                    loss = training.target_nll(lm.model, batch)
                    losses.append(loss.item())
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                with torch.no_grad():
                    final = training.target_nll(lm.model, batch).item()
        with torch.no_grad():
            self.values[chosen] = value.detach()
        return {"initial_loss": round(losses[0], 5), "final_loss": round(final, 5), "codebook_entry": chosen,
                "codebook_size": int(self.keys.shape[0]), "codebook_action": action,
                "radius": round(float(self.eps[chosen]), 5)}

    @torch.no_grad()
    def _update_codebook(self, query: torch.Tensor, label: torch.Tensor, own: torch.Tensor,
                         device) -> tuple[int, str]:
        """GRACE's rules for a new query: add, split or expand. Returns the entry to train and what was done."""
        cfg: GRACEConfig = self.config
        init = own.clone() if cfg.val_init == "warm" else torch.rand(own.shape[0], device=device)
        if self.keys is None or self.keys.shape[0] == 0:
            self._add(query, init, label, cfg.eps, device)
            return 0, "added"
        dists = torch.cdist(query[None], self.keys.float())[0]
        smallest, nearest = (float(x) for x in dists.min(0))
        nearest = int(nearest)
        if smallest > cfg.eps + float(self.eps[nearest]):
            self._add(query, init, label, cfg.eps, device)
            return self.keys.shape[0] - 1, "added"
        if not self._same_label(nearest, label):
            self._add(query, init, label, smallest / 2, device)
            self.eps[nearest] = smallest / 2 - 1e-5
            return self.keys.shape[0] - 1, "split"
        if smallest > float(self.eps[nearest]):
            if cfg.eps_expand == "moving_average":
                self.keys[nearest] = 0.5 * self.keys[nearest] + 0.5 * query
            self.eps[nearest] = smallest
        return nearest, "expanded"

    def _same_label(self, entry: int, label: torch.Tensor) -> bool:
        stored = self.labels[entry]
        stored = stored[stored != NO_LABEL]
        return stored.shape == label.shape and bool(torch.equal(stored, label))

    def _add(self, query, value, label, radius: float, device) -> None:
        if self.keys is None:
            self.keys = torch.empty(0, query.shape[0], device=device)
            self.values = torch.empty(0, value.shape[0], device=device)
            self.eps = torch.empty(0, device=device)
            self.labels = torch.empty(0, 0, dtype=torch.long, device=device)
        width = max(self.labels.shape[1], label.shape[0])
        labels = torch.full((self.labels.shape[0] + 1, width), NO_LABEL, dtype=torch.long, device=device)
        labels[:-1, :self.labels.shape[1]] = self.labels
        labels[-1, :label.shape[0]] = label
        self.keys = torch.cat([self.keys, query[None]])
        self.values = torch.cat([self.values, value[None]])
        self.eps = torch.cat([self.eps, torch.tensor([radius], device=device)])
        self.labels = labels

