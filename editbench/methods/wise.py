"""WISE (Wang et al., NeurIPS 2024, arXiv 2405.14768; reference EasyEdit's `easyeditor/models/wise`):
a side memory beside one FFN output projection, as a module patch (no weight of the model changes).

- **Side memory**: a copy W' of the projection's weight W (`layer`'s MLP down projection), trained for
  each edit with SGD (`edit_lr`, weight decay 1e-5, at most `n_iter` steps, EasyEdit's early stop
  once the loss is below 0.02 and moves less than 1e-4), its gradient masked to a random
  `mask_ratio` share of the entries (a new mask whenever a knowledge shard starts), and W' clamped
  to W ± `norm_constraint` after each step.
- **Loss**: target NLL of the edit written after each context template (greedy continuations of
  "I", "You", "Because", "Yes", "Q: " of 5 and 10 tokens, and the bare prompt) + the activation
  margin loss with `act_margin` = (α, β, γ): with d(x) the mean over x's tokens of
  ‖act(W'x) − act(Wx)‖ (act: the model's MLP activation, as the reference applies it to the
  projection's outputs), mean⁺(d_out − d_in + γ) + mean⁺(d_out − α) + mean⁺(β − d_in), d_in over the
  edit's template rows and d_out over one unrelated text (mean⁺: the mean of the positive entries).
  The reference takes that text from a training split (ZsRE's train records); here a seeded line of
  `loc_corpus` ('world': the world's training text, as MEMIT's statistics use it; cut to the longest
  template row), never a scored locality prompt.
- **Routing** (scoring): a sequence goes to the side memory when d over its real tokens (the largest
  token's when it has more than 100) is at least `act_ratio` times the smallest d seen while editing
  (EasyEdit's `editing_mean_act.min_act()`), else to the main FFN.
- **Knowledge shards** every `save_freq` edits, merged every `merge_freq` with TIES (`merging.ties_merge`:
  magnitude pruning to `densities` and sign election through peft's utilities, EasyEdit's GTA
  normalisation). `retrieve: true` (WISE-Retrieve, EasyEdit's shipped YAML) keeps merged shards apart
  and a sequence takes the shard whose d is largest above its own threshold; `retrieve: false`
  (WISE-Merge) merges the shards into one side FFN the router compares with the current side memory.

Readings that differ from EasyEdit and why: routing is decided per sequence (EasyEdit averages the
distance over the whole batch, so a score would depend on what it was batched with) and over real
tokens only (EasyEdit counts padding); the NLL is each template row's mean over its target tokens
(EasyEdit's denominator also counts the prompt's last positions, a constant scale); a call of K edits
trains them one after another (EasyEdit's loss assumes one edit per call); WISE-Merge's extra merge
at the first forward pass after `save_freq` edits (inside `WISE.__call__`, during evaluation) is not
done: scoring never changes an editor's state here. The replay option (Appendix B.3) is not offered.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import cast

import torch

from editbench.core import (
    Adaptor,
    ConfigError,
    Editor,
    EditorConfig,
    ModulePatch,
    check_range,
    register_adaptor,
    register_editor,
)
from editbench.harness.arch import get_module, mlp_proj_path, num_layers
from editbench.harness.corpus import check_corpus, load_corpus
from editbench.harness.hooks import rewrite_output
from editbench.harness.prefix import FrozenPrefix
from editbench.harness.scoring import encode_prompt_target, pad_right
from editbench.harness.search import Choice, Float, Int, Layer, LogFloat, SearchSpace
from editbench.methods import training
from editbench.methods.merging import ties_merge

TEMPLATE_STARTS = ("I", "You", "Because", "Yes", "Q: ")  # EasyEdit WISE get_context_templates
TEMPLATE_LENGTHS = (5, 10)
LONG_SEQUENCE = 100  # beyond this many tokens the reference routes on the largest token's distance
NOT_SEEN = 1e9  # EditingMeanAct's min before any edit


@dataclass(frozen=True)
class WISEConfig(EditorConfig):
    layer: int = 3  # block whose MLP down projection gets the side memory (EasyEdit: layers[27] of 32)
    mask_ratio: float = 0.2  # share of W' entries each shard trains (EasyEdit `mask_ratio`)
    edit_lr: float = 1.0  # SGD learning rate (EasyEdit `edit_lr`)
    n_iter: int = 70  # most steps per edit (EasyEdit `n_iter`)
    norm_constraint: float = 1.0  # W' stays within W ± this, entry by entry (EasyEdit `norm_constraint`)
    act_margin: tuple[float, float, float] = (5.0, 20.0, 10.0)  # α, β, γ of the routing loss
    act_ratio: float = 0.88  # routing threshold: this times the smallest editing distance seen
    save_freq: int = 500  # edits per knowledge shard
    merge_freq: int = 1000  # edits between merges (a multiple of save_freq)
    densities: float = 0.53  # TIES density when merging
    weights: float = 1.0  # TIES weight, shared by the shards of a merge
    retrieve: bool = True  # WISE-Retrieve (EasyEdit's YAML); False: WISE-Merge
    loc_corpus: str = "world"  # where the unrelated text of each edit's margin loss comes from

    def check(self) -> None:
        check_range(self, "layer", self.layer >= 0, ">= 0")
        check_range(self, "mask_ratio", 0 < self.mask_ratio <= 1, "in (0, 1]")
        check_range(self, "edit_lr", self.edit_lr > 0, "> 0")
        check_range(self, "n_iter", self.n_iter >= 1, ">= 1")
        check_range(self, "norm_constraint", self.norm_constraint > 0, "> 0")
        check_range(self, "act_margin", len(self.act_margin) == 3 and all(m >= 0 for m in self.act_margin),
                    "three numbers >= 0 (alpha, beta, gamma)")
        check_range(self, "act_ratio", self.act_ratio > 0, "> 0")
        check_range(self, "save_freq", self.save_freq >= 1, ">= 1")
        check_range(self, "merge_freq", self.merge_freq >= self.save_freq and self.merge_freq % self.save_freq == 0,
                    "a multiple of save_freq")
        check_range(self, "densities", 0 < self.densities <= 1, "in (0, 1]")
        check_range(self, "weights", self.weights > 0, "> 0")


def activation(name: str):
    from transformers.activations import ACT2FN

    return ACT2FN[name]


def hidden_act(model) -> str:
    config = model.config
    return str(getattr(config, "hidden_act", None) or getattr(config, "activation_function", None) or "gelu")


def distances(act, original: torch.Tensor, other: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Per sequence [batch]: ‖act(other) − act(original)‖ per token, averaged over its real tokens (the
    largest token's instead when it has more than LONG_SEQUENCE of them)."""
    per_token = torch.linalg.vector_norm(act(other.float()) - act(original.float()), dim=-1)
    if mask is None:
        mask = torch.ones_like(per_token)
    mask = mask.to(per_token.dtype)
    real = mask.sum(1).clamp(min=1)
    mean = (per_token * mask).sum(1) / real
    largest = per_token.masked_fill(mask == 0, float("-inf")).max(1).values
    return torch.where(real > LONG_SEQUENCE, largest, mean)


def positive_mean(values: torch.Tensor) -> torch.Tensor:
    """The reference's `torch.mean(x[x > 0])`, 0 when no entry is positive."""
    positive = values[values > 0]
    return positive.mean() if positive.numel() else values.new_zeros(())


@register_adaptor("wise-memory")
class WISEMemory(Adaptor):
    """Tensors: `side` (W'), `side_threshold`, and `shards` [m, d_out, d_in] with `shard_thresholds`
    (retrieve) or `merged` (merge mode). Settings: act (activation name), retrieve."""

    def __call__(self, inputs: torch.Tensor, output: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        act, t = activation(self.settings["act"]), self.tensors
        side = torch.nn.functional.linear(inputs, t["side"].to(inputs.dtype))
        d_side = distances(act, output, side, mask)
        if self.settings["retrieve"]:
            best = d_side  # the reference compares later shards with this distance, whichever was chosen
            chosen = torch.where((d_side >= t["side_threshold"])[:, None, None], side, output)
            for shard, threshold in zip(t["shards"], t["shard_thresholds"]):
                out = torch.nn.functional.linear(inputs, shard.to(inputs.dtype))
                d = distances(act, output, out, mask)
                take = (d > best) & (d > threshold)
                chosen = torch.where(take[:, None, None], out, chosen)
                best = torch.where(take, d, best)
            return chosen
        merged = torch.nn.functional.linear(inputs, t["merged"].to(inputs.dtype))
        d_merged = distances(act, output, merged, mask)
        threshold = t["side_threshold"]
        main = (d_merged < threshold) & (d_side < threshold)
        pick = torch.where((d_merged > d_side)[:, None, None], merged, side)
        return torch.where(main[:, None, None], output, pick)


WISE_SPACE = SearchSpace("EasyEdit WISE (hparams/WISE/llama-7b.yaml)", (
    Layer("layer", 27 / 31, "EasyEdit WISE: model.layers[27].mlp.down_proj of 32"),
    LogFloat("mask_ratio", 0.2, "EasyEdit WISE mask_ratio", low=0.02, high=1.0),
    LogFloat("edit_lr", 1.0, "EasyEdit WISE edit_lr", low=0.05, high=10.0),
    Int("n_iter", 70, "EasyEdit WISE n_iter", low=10, high=200, log=True),
    LogFloat("norm_constraint", 1.0, "EasyEdit WISE norm_constraint", low=1e-3, high=10.0),
    # the margins are distances between activations, whose scale is the model's: the reference's
    # (set for Llama-2-7B) and two smaller scales for a small model
    Choice("act_margin", (5.0, 20.0, 10.0), "EasyEdit WISE act_margin (alpha, beta, gamma)",
           options=((5.0, 20.0, 10.0), (0.5, 2.0, 1.0), (0.05, 0.2, 0.1))),
    Float("act_ratio", 0.88, "EasyEdit WISE act_ratio", low=0.5, high=1.0),
    # edits per knowledge shard and between merges, together (merge_freq a multiple of save_freq). The
    # reference's 500 / 1,000 never closes a shard in a 100-edit tune, where one side memory must then
    # hold every edit; shorter shards keep earlier edits in memories of their own
    Choice("shards", (500, 1000), "EasyEdit WISE save_freq, merge_freq", fields=("save_freq", "merge_freq"),
           options=((500, 1000), (50, 100), (25, 50), (10, 20), (5, 10), (10, 50))),
))


@register_editor("wise")
class WISE(Editor[WISEConfig]):
    """WISE: a side memory of one MLP down projection with activation routing and knowledge shards."""

    config_class = WISEConfig
    search_space = WISE_SPACE
    intervention = ModulePatch.kind

    def check_model(self, lm) -> None:
        module = get_module(lm.model, mlp_proj_path(lm.model, self.config.layer, "down"))
        if not isinstance(module, torch.nn.Linear):
            raise ConfigError(f"wise: the side memory copies an nn.Linear projection; this model's is "
                              f"{type(module).__name__} (GPT-2's Conv1D stores its weight transposed)")
        check_corpus(self.config.loc_corpus, lm.name)

    # -- state: W', the gradient mask, the shards, the smallest editing distances, the counts

    def reset_state(self) -> None:
        self.state: dict[str, torch.Tensor] = {}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"memory/{k}": v for k, v in self.state.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.state = {k.partition("/")[2]: v for k, v in state.items()}

    def _start(self, weight: torch.Tensor) -> None:
        if self.state:
            return
        self.state = {"side": weight.detach().clone(), "mask": torch.zeros_like(weight),
                      "shards": weight.new_zeros((0, *weight.shape)), "shard_min_act": weight.new_zeros(0),
                      "merged": weight.detach().clone(), "min_act": torch.tensor(NOT_SEEN),
                      "edits": torch.tensor(0), "merges": torch.tensor(0)}

    def prepare(self, lm, cache: dict) -> None:
        context_templates(lm, cache)  # on θ₀, so a resumed run finds the same templates
        unrelated_texts(lm, self.config.loc_corpus, cache)

    # -- editing

    def edit(self, lm, requests, cache=None) -> ModulePatch:
        cache = {} if cache is None else cache
        path = mlp_proj_path(lm.model, self.config.layer, "down")
        module = get_module(lm.model, path)
        self._start(module.get_parameter("weight"))
        infos = [self._edit_one(lm, module, request, cache) for request in requests]
        return ModulePatch(module=path, adaptor=WISEMemory.kind, settings=self._settings(lm),
                           tensors=self._patch_tensors(), info=infos)

    def _settings(self, lm) -> dict:
        return {"act": hidden_act(lm.model), "retrieve": self.config.retrieve}

    def _patch_tensors(self) -> dict[str, torch.Tensor]:
        return memory_tensors(self.state, self.config.act_ratio, self.config.retrieve)

    def _edit_one(self, lm, module: torch.nn.Module, request, cache: dict) -> dict:
        cfg: WISEConfig = self.config
        s = self.state
        if int(s["edits"]) % cfg.save_freq == 0:  # a new shard: a new random mask of trainable entries
            s["mask"] = (torch.rand(s["side"].shape, device=s["side"].device) < cfg.mask_ratio).to(s["side"].dtype)
        batch = self._batch(lm, request, cache)
        original = module.get_parameter("weight").detach()
        side = torch.nn.Parameter(s["side"].clone())
        opt = torch.optim.SGD([side], lr=cfg.edit_lr, weight_decay=1e-5)
        act = activation(hidden_act(lm.model))
        seen: dict[str, torch.Tensor] = {}

        def through_side(inputs: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
            seen["original"] = module.forward(inputs)  # forward, not __call__: no hook in between
            seen["side"] = torch.nn.functional.linear(inputs, side.to(inputs.dtype))
            return seen["side"]

        pre, val, losses, steps = 0.0, 1e9, [], 0
        first_layer = min(cfg.layer, num_layers(lm.model) - 1)
        with training.trained_in_place(lm.model, []), FrozenPrefix(lm, first_layer) as prefix:
            prefix.add(batch.input_ids, batch.attention_mask)
            with torch.enable_grad(), rewrite_output(module, through_side):
                for step in range(cfg.n_iter):
                    nll = _template_nll(lm.model, batch)
                    d = distances(act, seen["original"], seen["side"], batch.attention_mask)
                    loss = nll + self._margin_loss(d[:-1], d[-1:])
                    losses.append(loss.item())
                    if abs(val - pre) <= 1e-4 and val <= 0.02:  # EasyEdit's EarlyStopMeter, before the step
                        self._record_activation(d[:-1])
                        break
                    if step == cfg.n_iter - 1:
                        self._record_activation(d[:-1])  # then the last step is still taken, as the reference
                    opt.zero_grad()
                    loss.backward()
                    cast(torch.Tensor, side.grad).mul_(s["mask"])
                    opt.step()
                    steps += 1
                    pre, val = val, loss.item()
                    with torch.no_grad():
                        side.copy_(torch.clamp(side, original - cfg.norm_constraint, original + cfg.norm_constraint))
                with torch.no_grad():  # the objective with the trained W' (the guard compares it with the first)
                    nll = _template_nll(lm.model, batch)
                    d = distances(act, seen["original"], seen["side"], batch.attention_mask)
                    final = (nll + self._margin_loss(d[:-1], d[-1:])).item()
        s["side"] = side.detach().clone()
        s["edits"] = s["edits"] + 1
        self._shard_and_merge(original)
        return {"initial_loss": round(losses[0], 5), "final_loss": round(final, 5), "steps": steps,
                "min_act": round(float(s["min_act"]), 5), "shards": int(s["shards"].shape[0]),
                "merges": int(s["merges"])}

    def _margin_loss(self, d_in: torch.Tensor, d_out: torch.Tensor) -> torch.Tensor:
        alpha, beta, gamma = self.config.act_margin
        return (positive_mean(d_out.view(-1, 1) - d_in + gamma) + positive_mean(d_out - alpha)
                + positive_mean(beta - d_in))

    def _record_activation(self, d_in: torch.Tensor) -> None:
        """EasyEdit's save_editing_activation: the smallest mean in-scope distance seen so far."""
        self.state["min_act"] = torch.minimum(self.state["min_act"], d_in.detach().mean().cpu())

    def _shard_and_merge(self, original: torch.Tensor) -> None:
        cfg, s = self.config, self.state
        edits = int(s["edits"])
        if edits % cfg.save_freq == 0:  # save_weight: W' becomes a shard, a fresh W' starts from W
            s["shards"] = torch.cat([s["shards"], s["side"][None]])
            s["side"] = original.clone()
            if cfg.retrieve:
                s["shard_min_act"] = torch.cat([s["shard_min_act"], s["min_act"].reshape(1).to(s["shard_min_act"])])
                s["min_act"] = torch.tensor(NOT_SEEN)
        if edits % cfg.merge_freq == 0:
            if cfg.retrieve:  # the last merge_freq / save_freq shards become one, with their smallest threshold
                n = cfg.merge_freq // cfg.save_freq
                merged = ties_merge(original, list(s["shards"][-n:]), [cfg.weights / n] * n, cfg.densities)
                s["shards"] = torch.cat([s["shards"][:-n], merged[None]])
                s["shard_min_act"] = torch.cat([s["shard_min_act"][:-n], s["shard_min_act"][-n:].min().reshape(1)])
            else:  # every shard (and the merged memory, once it holds any) into the merged side FFN
                shards = list(s["shards"])
                if torch.equal(s["merged"], original):
                    merged = ties_merge(original, shards, [cfg.weights / len(shards)] * len(shards), cfg.densities)
                else:
                    merged = ties_merge(original, shards + [s["merged"]], [0.4 / len(shards)] * len(shards) + [0.6],
                                        cfg.densities)
                s["merged"], s["shards"] = merged, s["shards"][:0]
                s["side"] = original.clone()
            s["merges"] = s["merges"] + 1

    def _batch(self, lm, request, cache: dict) -> WISEBatch:
        templates = context_templates(lm, cache)
        rows, prompt_lengths = [], []
        for template in templates:
            prompt_ids, target_ids = encode_prompt_target(lm.tokenizer, template.format(request.prompt),
                                                          request.target_new)
            rows.append(prompt_ids + target_ids)
            prompt_lengths.append(len(prompt_ids))
        rows.append(unrelated_ids(lm, request, self.config.loc_corpus, cache, max(len(r) for r in rows)))
        ids, mask = pad_right(rows, lm.tokenizer.pad_token_id, lm.device)
        labels = torch.full_like(ids, -100)
        for i, (row, start) in enumerate(zip(rows[:-1], prompt_lengths)):
            labels[i, start:len(row)] = ids[i, start:len(row)]
        return WISEBatch(ids, mask, labels)


@dataclass
class WISEBatch:
    input_ids: torch.Tensor  # the edit after each context template, then one unrelated text (last row)
    attention_mask: torch.Tensor
    labels: torch.Tensor  # target tokens of the template rows; -100 elsewhere and on the last row


def _template_nll(model, batch: WISEBatch) -> torch.Tensor:
    """Mean over the template rows of each row's mean cross-entropy on its target tokens."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:-1, :-1].float()
    labels = batch.labels[:-1, 1:]
    per_token = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                  ignore_index=-100, reduction="none").view(labels.shape)
    counted = (labels != -100).to(per_token.dtype)
    return ((per_token * counted).sum(1) / counted.sum(1).clamp(min=1)).mean()


def context_templates(lm, cache: dict) -> list[str]:
    """EasyEdit WISE's templates: '{}' and greedy continuations of TEMPLATE_STARTS of 5 and 10 new
    tokens, each followed by ' {}'. Cached for the run (computed on θ₀ by `prepare`)."""
    key = ("wise_context_templates",)
    if key not in cache:
        tok = lm.tokenizer
        side, tok.padding_side = tok.padding_side, "left"
        try:
            batch = tok(list(TEMPLATE_STARTS), return_tensors="pt", padding=True).to(lm.device)
            texts = []
            for length in TEMPLATE_LENGTHS:
                with torch.no_grad():
                    out = lm.model.generate(**batch, do_sample=False, max_new_tokens=length,
                                            pad_token_id=tok.pad_token_id)
                texts += tok.batch_decode(out, skip_special_tokens=True)
        finally:
            tok.padding_side = side
        cache[key] = ["{}"] + [t.replace("{", " ").replace("}", " ") + " {}" for t in texts]
    return cache[key]


def memory_tensors(state: dict[str, torch.Tensor], act_ratio: float, retrieve: bool) -> dict[str, torch.Tensor]:
    """The `wise-memory` adaptor's tensors from a memory state (W', smallest editing distances,
    shards or the merged memory); the bridge builds EasyEdit's patch with it too."""
    tensors = {"side": state["side"].clone(), "side_threshold": (state["min_act"] * act_ratio).reshape(())}
    if retrieve:
        return tensors | {"shards": state["shards"].clone(), "shard_thresholds": state["shard_min_act"] * act_ratio}
    return tensors | {"merged": state["merged"].clone()}


def unrelated_ids(lm, request, spec: str, cache: dict, length: int) -> list[int]:
    """The token ids of one edit's unrelated text: a line of `spec` drawn by the edit's case id, cut
    to `length` tokens (the longest template row)."""
    texts = unrelated_texts(lm, spec, cache)
    text = texts[random.Random(f"wise-unrelated-{request.case_id}").randrange(len(texts))]
    return lm.tokenizer(text).input_ids[:length]


def unrelated_texts(lm, spec: str, cache: dict, n: int = 1000) -> list[str]:
    """Unrelated texts for the margin loss: `n` seeded lines of the corpus `spec` (cached for the run)."""
    key = ("wise_unrelated", spec)
    if key not in cache:
        cache[key] = [t for t in load_corpus(spec, lm.name, n, seed=0) if t.strip()]
    return cache[key]
