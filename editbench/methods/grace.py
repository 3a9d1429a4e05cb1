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

Two readings of where the codebook is queried, both named (`query`):
- `every_position` (editbench's default): every position queries the codebook on its own, so the same
  codebook acts the same under teacher-forced scoring and under generation (with a KV cache each new
  token is a one-position pass), and no state outside the codebook decides which token is looked up.
- `edit_position` (EasyEdit 14cea82's GRACEAdapter, `replacement: replace_last`): one position per
  forward pass, the stored `key_id` of the latest edit (its prompt length - 1, whatever the scored
  prompt; clipped to the pass's length, so a one-token KV-cache step queries its token), and only that
  position's output is replaced; during an edit's training, too. (EasyEdit's `generate` also resets
  `key_id` to the prompt's last token; editbench's generation runs the model's own forward, so the
  stored position holds there as well.) `easyedit:GRACE` runs EasyEdit's code and installs this reading.
Same-label test: editbench compares the target tokens; EasyEdit compares the mean of the edit's label
row, -100 prompt positions included (two edits with one target but prompts of different length split).
"""
from __future__ import annotations

import contextlib
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
from editbench.harness.hooks import capture, rewrite_output, without_output_hooks
from editbench.harness.prefix import FrozenPrefix
from editbench.harness.search import Choice, Int, Layer, LogFloat, SearchSpace
from editbench.methods import training

VALUE_INITS = ("cold", "warm")
EXPANSIONS = ("coverage", "moving_average")
QUERIES = ("every_position", "edit_position")
REPLACEMENTS = ("replace_last", "replace_all", "replace_prompt")  # EasyEdit's, for the edit_position reading
NO_LABEL = -1  # padding of the stored labels (token ids are >= 0)


@dataclass(frozen=True)
class GRACEConfig(EditorConfig):
    layer: int = 3  # block whose MLP output projection holds the codebook (EasyEdit: layers[27] of 32)
    eps: float = 1.0  # initial deferral radius, in the projection's input space (EasyEdit `eps`)
    edit_lr: float = 1.0  # Adam learning rate of a value (EasyEdit `edit_lr`)
    n_iter: int = 50  # training steps per edit (EasyEdit `n_iter`)
    val_init: str = "cold"  # cold: uniform [0, 1) as the reference draws it; warm: the projection's own output
    eps_expand: str = "coverage"  # how a same-label query widens its nearest entry (EasyEdit `eps_expand`)
    # where the codebook is queried: every_position (editbench) or edit_position (EasyEdit's key_id,
    # replace_last); see the module's docstring
    query: str = "every_position"

    def check(self) -> None:
        check_range(self, "layer", self.layer >= 0, ">= 0")
        check_range(self, "eps", self.eps > 0, "> 0")
        check_range(self, "edit_lr", self.edit_lr > 0, "> 0")
        check_range(self, "n_iter", self.n_iter >= 1, ">= 1")
        check_range(self, "val_init", self.val_init in VALUE_INITS, " or ".join(VALUE_INITS))
        check_range(self, "eps_expand", self.eps_expand in EXPANSIONS, " or ".join(EXPANSIONS))
        check_range(self, "query", self.query in QUERIES, " or ".join(QUERIES))


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


def query_positions(real: torch.Tensor, key_id: int) -> torch.Tensor:
    """Per row of a pass: the index of its real token number min(key_id, real tokens - 1), as
    EasyEdit's min(key_id, length - 1) on an unpadded prompt (left or right padding is skipped)."""
    count = real.sum(1)
    wanted = torch.clamp(count - 1, max=key_id).clamp(min=0)
    order = real.long().cumsum(1) - 1
    return ((order == wanted[:, None]) & real).long().argmax(1)


def replaced_at_edit_position(inputs: torch.Tensor, output: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                              eps: torch.Tensor, key_id: int, mask: torch.Tensor | None = None,
                              replacement: str = "replace_last") -> torch.Tensor:
    """EasyEdit's GRACEAdapter at inference: one query per sequence (the token `query_positions` picks),
    its nearest key, and, when within that key's radius, the value written at that position
    (replace_last), at every position (replace_all) or at the positions before it (replace_prompt)."""
    real = torch.ones(inputs.shape[:2], dtype=torch.bool, device=inputs.device) if mask is None else mask.bool()
    rows = torch.arange(inputs.shape[0], device=inputs.device)
    at = query_positions(real, key_id)
    index, hit = nearest_entries(inputs[rows, at], keys, eps)
    hit = hit & real.any(1)
    where = torch.zeros(inputs.shape[:2], dtype=torch.bool, device=inputs.device)
    if replacement == "replace_last":
        where[rows, at] = True
    elif replacement == "replace_all":
        where[:] = True
    else:  # replace_prompt
        where = torch.arange(inputs.shape[1], device=inputs.device)[None] < at[:, None]
    where = where & hit[:, None]
    return torch.where(where[..., None], values[index].to(output.dtype)[:, None, :], output)


@register_adaptor("grace-codebook")
class GRACECodebook(Adaptor):
    """The installed codebook: tensors `keys` [n, d_in], `values` [n, d_out], `eps` [n]; settings empty
    (every position queries) or {query: edit_position, key_id, replacement} (EasyEdit's reading)."""

    def __call__(self, inputs: torch.Tensor, output: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        keys = self.tensors["keys"]
        if keys.shape[0] == 0:
            return output
        if self.settings.get("query", "every_position") == "every_position":  # no mask needed: each on its own
            return replaced(inputs, output, keys, self.tensors["values"], self.tensors["eps"])
        return replaced_at_edit_position(inputs, output, keys, self.tensors["values"], self.tensors["eps"],
                                         int(self.settings["key_id"]), mask,
                                         self.settings.get("replacement", "replace_last"))


# Centred on EasyEdit's GRACE for Llama-2-7B (hparams/GRACE/llama-7b.yaml).
GRACE_SPACE = SearchSpace("EasyEdit GRACE (hparams/GRACE/llama-7b.yaml)", (
    Layer("layer", 27 / 31, "EasyEdit GRACE: model.layers[27].mlp.down_proj of 32"),
    LogFloat("eps", 1.0, "EasyEdit GRACE eps (initial deferral radius)", low=1e-2, high=1e2),
    LogFloat("edit_lr", 1.0, "EasyEdit GRACE edit_lr", low=1e-2, high=10.0),
    Int("n_iter", 50, "EasyEdit GRACE n_iter", low=10, high=200, log=True),
    Choice("val_init", "cold", "EasyEdit GRACE val_init", options=VALUE_INITS),
    Choice("eps_expand", "coverage", "EasyEdit GRACE eps_expand", options=EXPANSIONS),
))  # `query` is a reading, not a knob: it is not searched


@register_editor("grace")
class GRACE(Editor[GRACEConfig]):
    """GRACE: a codebook of keys, values and deferral radii at one MLP output projection."""

    config_class = GRACEConfig
    search_space = GRACE_SPACE
    intervention = ModulePatch.kind

    def check_model(self, lm) -> None:
        mlp_proj_path(lm.model, self.config.layer, "down")

    def reset_state(self) -> None:
        # the codebook: empty until the first edit, which sizes it from the model
        self.keys = torch.empty(0, 0)  # [entries, d_in]
        self.values = torch.empty(0, 0)  # [entries, d_out]
        self.eps = torch.empty(0)  # [entries]: each key's radius
        self.labels = torch.empty(0, 0, dtype=torch.long)  # [entries, longest label]: NO_LABEL-padded
        self.key_id = -1

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.keys.shape[0] == 0:
            return {}
        return {"codebook/keys": self.keys, "codebook/values": self.values, "codebook/eps": self.eps,
                "codebook/labels": self.labels, "codebook/key_id": torch.tensor(self.key_id)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.reset_state()
        if state:
            self.keys, self.values = state["codebook/keys"], state["codebook/values"]
            self.eps, self.labels = state["codebook/eps"], state["codebook/labels"]
            self.key_id = int(state.get("codebook/key_id", torch.tensor(-1)))

    def edit(self, lm, requests, cache=None) -> ModulePatch:
        path = mlp_proj_path(lm.model, self.config.layer, "down")
        module = get_module(lm.model, path)
        infos = [self._edit_one(lm, module, request) for request in requests]
        settings = {} if self.config.query == "every_position" else {
            "query": "edit_position", "key_id": self.key_id, "replacement": "replace_last"}
        return ModulePatch(module=path, adaptor=GRACECodebook.kind, settings=settings,
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
                if cfg.query == "edit_position":
                    return replaced_at_edit_position(inputs, output, self.keys, values, self.eps, position)
                return replaced(inputs, output, self.keys, values, self.eps)

            losses = []
            # EasyEdit's reading trains from the projection's own output (its adapter replaces the layer)
            bare = without_output_hooks(module) if cfg.query == "edit_position" else contextlib.nullcontext()
            with torch.enable_grad(), bare, rewrite_output(module, working):
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
        self.key_id = position  # EasyEdit's stored query position: the latest edit's
        return {"initial_loss": round(losses[0], 5), "final_loss": round(final, 5), "codebook_entry": chosen,
                "codebook_size": int(self.keys.shape[0]), "codebook_action": action,
                "radius": round(float(self.eps[chosen]), 5)}

    @torch.no_grad()
    def _update_codebook(self, query: torch.Tensor, label: torch.Tensor, own: torch.Tensor,
                         device) -> tuple[int, str]:
        """GRACE's rules for a new query: add, split or expand. Returns the entry to train and what was done."""
        cfg: GRACEConfig = self.config
        init = own.clone() if cfg.val_init == "warm" else torch.rand(own.shape[0], device=device)
        if self.keys.shape[0] == 0:
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
        if self.keys.shape[0] == 0:
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

