"""Steps ROME and MEMIT share: context templates, keys at the subject, and target vectors v*.

Every forward pass here pads on the right, and every position comes from `lookup_index`
(tokenizer offsets), so the subject token is the same one however the prompt is batched.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from editbench.core import EditRequest, check_range
from editbench.harness.hooks import add_at_positions, capture, edit_output
from editbench.harness.models import LoadedModel
from editbench.harness.prefix import FrozenPrefix
from editbench.harness.scoring import (
    FACT_TOKENS, encode_prompt_target, generate_texts, lookup_index, pad_right, sample_continuations,
)
from editbench.methods import training

# ROME, MEMIT and EasyEdit start their generated context templates from these words
# (`get_context_templates`: generate_fast(..., ["The", "Therefore", "Because", "I", "You"], top-k 5)).
REFERENCE_PREFIXES = ("The", "Therefore", "Because", "I", "You")
TEMPLATE_SOURCES = ("prefixes", "eos")


@dataclass(frozen=True)
class TargetSpec:
    """How v* is optimised (names as in the ROME/MEMIT hparams files)."""

    v_num_grad_steps: int = 20
    v_lr: float = 0.5
    v_weight_decay: float = 0.5
    clamp_norm_factor: float = 4.0
    kl_factor: float = 0.0625
    early_stop_loss: float = 5e-2
    fact_token: str = "subject_last"

    def check_target(self) -> None:
        owner = self
        check_range(owner, "v_num_grad_steps", self.v_num_grad_steps >= 1, ">= 1")
        check_range(owner, "v_lr", self.v_lr > 0, "> 0")
        check_range(owner, "clamp_norm_factor", self.clamp_norm_factor > 0, "> 0")
        check_range(owner, "kl_factor", self.kl_factor >= 0, ">= 0")
        check_range(owner, "v_weight_decay", self.v_weight_decay >= 0, ">= 0")
        check_range(owner, "early_stop_loss", self.early_stop_loss >= 0, ">= 0")
        check_range(owner, "fact_token", self.fact_token in FACT_TOKENS, ", ".join(FACT_TOKENS))


def context_templates(lm: LoadedModel, lengths: Sequence[Sequence[int]], run_cache: dict | None, seed: int = 0,
                      source: str = "prefixes") -> list[list[str]]:
    """Context templates by type: [["{}"], one group per (length, count) pair], cached for the run.

    - source 'prefixes' (the references'): count // 5 texts from each of REFERENCE_PREFIXES, `length`
      tokens long in all, prefix word included, as `generate_fast(max_out_len=length)` writes them.
    - source 'eos': `count` texts of `length` new tokens sampled from the EOS/BOS token.
    As in ROME, each text ends with '. {}' and braces in generated text are blanked out.
    ROME averages keys over all templates (`flat`); MEMIT within each type, then across types.
    """
    if source not in TEMPLATE_SOURCES:
        raise ValueError(f"unknown context template source {source!r} (valid: {', '.join(TEMPLATE_SOURCES)})")
    key = ("context_templates", tuple(tuple(x) for x in lengths), seed, source)
    if run_cache is not None and key in run_cache:
        return run_cache[key]
    groups = [["{}"]]
    for length, count in lengths:
        if source == "prefixes":
            prompts = [p for p in REFERENCE_PREFIXES for _ in range(max(1, count // len(REFERENCE_PREFIXES)))]
            texts = generate_texts(lm, prompts, length, top_k=5, seed=seed)
        else:
            start = lm.tokenizer.bos_token or lm.tokenizer.eos_token
            texts = sample_continuations(lm, [start] * count, length, top_k=5, seed=seed)
        groups.append([t.replace("{", " ").replace("}", " ") + ". {}" for t in texts])
    if run_cache is not None:
        run_cache[key] = groups
    return groups


def flat(groups: Sequence[Sequence[str]]) -> list[str]:
    return [t for group in groups for t in group]


@dataclass
class Located:
    """Token ids of prompt texts with the lookup index of each (the subject's token)."""

    ids: list[list[int]]
    lookup: list[int]


def locate(lm: LoadedModel, request: EditRequest, templates: Sequence[str], fact_token: str) -> Located:
    ids, lookup = [], []
    for template in templates:
        prefix = template[: template.index("{}")]
        text = template.format(request.prompt)
        seq, idx = lookup_index(lm.tokenizer, text, len(prefix) + request.prompt.index(request.subject),
                                request.subject, fact_token, record=f"request {request.case_id!r}")
        ids.append(seq)
        lookup.append(idx)
    return Located(ids, lookup)


@torch.no_grad()
def read_at_subject(lm: LoadedModel, module: torch.nn.Module, requests: Sequence[EditRequest],
                    templates: Sequence[str], fact_token: str,
                    groups: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per request, the module's input and output at the lookup token: [n, d_in], [n, d_out].

    Averaged over all templates, or with `groups` (the number of templates of each type, in order)
    within each type first and then across types, as MEMIT's compute_ks does.
    """
    located = [locate(lm, r, templates, fact_token) for r in requests]
    seqs = [s for loc in located for s in loc.ids]
    ids, mask = pad_right(seqs, lm.tokenizer.pad_token_id, lm.device)
    rows = torch.arange(len(seqs), device=lm.device)
    positions = torch.tensor([i for loc in located for i in loc.lookup], device=lm.device)
    with capture(module) as seen:
        lm.model(input_ids=ids, attention_mask=mask)
    sizes = list(groups) if groups is not None else [len(templates)]
    if sum(sizes) != len(templates):
        raise ValueError(f"template groups {sizes} do not add up to the {len(templates)} templates")

    def average(read: torch.Tensor) -> torch.Tensor:
        per_request = read[rows, positions].reshape(len(requests), len(templates), -1)
        return torch.stack([part.mean(1) for part in per_request.split(sizes, dim=1)]).mean(0)

    return average(seen.input), average(seen.output)


@dataclass
class Target:
    """The result of `optimise_target`, with what the unedited pass read at the subject on the way."""

    value: torch.Tensor  # v* = v + delta
    init: torch.Tensor  # v: the module's output at the subject in the bare prompt
    input_mean: torch.Tensor  # the module's input at the subject, averaged over the templates (ROME's k*)
    input_bare: torch.Tensor  # the module's input at the subject in the bare prompt (ROME's k)
    info: dict


def _norm(delta: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """|delta| for the clamp. A float32 norm of huge entries overflows to inf, and max_norm / inf
    would silently zero delta (a diverged search recorded as an edit that did nothing): such norms
    are taken again in float64, which keeps the clamp a clamp. Finite norms are the float32 ones."""
    norm = delta.norm(dim=dim)
    if torch.isfinite(norm).all():
        return norm
    wide = torch.linalg.vector_norm(delta, dtype=torch.float64, dim=dim)
    return torch.where(torch.isfinite(norm), norm.double(), wide)


def optimise_target(lm: LoadedModel, module: torch.nn.Module, request: EditRequest, templates: Sequence[str],
                    spec: TargetSpec, first_layer: int = 0) -> Target:
    """v* = v + delta, where delta is added to `module`'s output at the subject token of every prompt
    and optimised for: target NLL over the context templates + kl_factor * KL(edited || original) on
    the next-token distribution at the subject of '{subject} is a' + v_weight_decay * |delta| / |v|^2.
    |delta| is clamped to clamp_norm_factor * |v| after each step (ROME, MEMIT compute_v/compute_z).
    templates[0] must be the bare prompt '{}'. A causal model's state at the subject does not depend on
    the target tokens after it, so the first (unedited) pass also gives the keys ROME needs.
    `first_layer`: the layer of `module`; the layers below it are run once (harness/prefix.py).
    """
    if templates[0] != "{}":
        raise ValueError("optimise_target needs the bare prompt '{}' as the first template")
    tok = lm.tokenizer
    _, target_ids = encode_prompt_target(tok, request.prompt, request.target_new)
    rewrite = locate(lm, request, templates, spec.fact_token)
    kl_request = EditRequest(request.case_id, f"{request.subject} is a", request.subject, request.target_new)
    kl = locate(lm, kl_request, ["{}"], spec.fact_token)
    seqs = [s + target_ids[:-1] for s in rewrite.ids] + kl.ids
    ids, mask = pad_right(seqs, tok.pad_token_id, lm.device)
    n_rewrite = len(rewrite.ids)
    label_pos = torch.tensor([[len(s) - 1 + j for j in range(len(target_ids))] for s in rewrite.ids], device=lm.device)
    labels = torch.tensor(target_ids, device=lm.device).expand(n_rewrite, -1)
    rows = torch.arange(len(seqs), device=lm.device)
    lookup = torch.tensor(rewrite.lookup + kl.lookup, device=lm.device)

    # no weight takes gradients (flags restored after); the layers below `module` run once
    with training.trained_in_place(lm.model, []), FrozenPrefix(lm, first_layer) as prefix:
        prefix.add(ids, mask)
        with torch.no_grad(), capture(module) as seen:
            logits = lm.model(input_ids=ids, attention_mask=mask).logits
            v_init = seen.output[0, rewrite.lookup[0]].float().clone()
            keys = seen.input[torch.arange(n_rewrite, device=lm.device), torch.tensor(rewrite.lookup, device=lm.device)]
            kl_init = torch.log_softmax(logits[n_rewrite:, :].float()[torch.arange(len(kl.ids)), kl.lookup], -1)
        delta = torch.zeros_like(v_init, requires_grad=True)
        opt = torch.optim.Adam([delta], lr=spec.v_lr)
        max_norm = spec.clamp_norm_factor * v_init.norm()
        info: dict[str, float] = {"v_steps": 0}
        with torch.enable_grad(), edit_output(module, add_at_positions(rows, lookup, delta.expand(len(seqs), -1))):
            for step in range(spec.v_num_grad_steps):
                logits = lm.model(input_ids=ids, attention_mask=mask).logits.float()
                logp = torch.log_softmax(logits[:n_rewrite], -1)
                picked = logp[torch.arange(n_rewrite, device=lm.device)[:, None], label_pos, labels]
                nll = -picked.mean(1).mean()
                kl_now = torch.log_softmax(logits[n_rewrite:][torch.arange(len(kl.ids)), kl.lookup], -1)
                # kl_div(input, target) is KL(target || input): KL(edited || original), as ROME computes it
                kl_loss = spec.kl_factor * torch.nn.functional.kl_div(kl_init, kl_now, log_target=True,
                                                                      reduction="batchmean")
                decay = spec.v_weight_decay * delta.norm() / v_init.norm() ** 2
                loss = nll + kl_loss + decay
                info.update(v_loss=round(loss.item(), 5), v_nll=round(nll.item(), 5))
                info.setdefault("initial_loss", info["v_loss"])  # v*'s objective, for the divergence guard
                info["final_loss"] = info["v_loss"]
                if loss.item() < spec.early_stop_loss or step == spec.v_num_grad_steps - 1:
                    break
                opt.zero_grad()
                loss.backward()
                opt.step()
                info["v_steps"] = step + 1
                with torch.no_grad():
                    norm = _norm(delta)
                    if norm > max_norm:
                        delta.mul_(max_norm / norm)
    info["delta_norm"] = round(delta.norm().item(), 5)
    info["v_norm"] = round(v_init.norm().item(), 5)
    return Target((v_init + delta).detach(), v_init, keys.mean(0), keys[0], info)


@dataclass(frozen=True)
class TopOneStop:
    """ENCORE's most-probable early stopping (MPES; the reference's negative `prob_cutoff`): a
    request's search stops at the `patience`-th step (counted, not necessarily consecutive) at which
    the new object is the top-1 token at every target position of its rewriting prompts. The
    reference checks every prompt but the first, the bare prompt (`skip_bare`; False checks all)."""

    patience: int = 2
    skip_bare: bool = True


def _all_top_one(at_targets: torch.Tensor, labels: torch.Tensor, target_mask: torch.Tensor, n: int, t: int,
                 stop: TopOneStop) -> torch.Tensor:
    """Per request [n]: whether its target is the argmax at every target position of its rewriting
    prompts (all t of them, or all but the bare prompt)."""
    hit = (at_targets.argmax(-1) == labels) | (target_mask == 0)  # padded positions count as hits
    per_prompt = hit.all(-1).reshape(n, t)
    return (per_prompt[:, 1:] if stop.skip_bare and t > 1 else per_prompt).all(-1)


def optimise_targets(lm: LoadedModel, module: torch.nn.Module, requests: Sequence[EditRequest],
                     templates: Sequence[str], spec: TargetSpec, first_layer: int = 0,
                     top_one_stop: TopOneStop | None = None) -> list[Target]:
    """`optimise_target` for requests whose variables do not interact (MEMIT's z): one padded forward
    over every request's templates per step instead of one loop per request. Each request has its
    own delta row, loss, Adam moments (Adam is elementwise) and clamp, and stops changing at the step
    where it alone would have stopped; the rows of a finished request are held fixed. The z's equal
    the one-by-one ones up to float summation order (a test holds them within 1e-5).
    `top_one_stop`: also stop a request once its target is top-1 often enough (ENCORE's MPES)."""
    if templates[0] != "{}":
        raise ValueError("optimise_targets needs the bare prompt '{}' as the first template")
    tok, device, n, t = lm.tokenizer, lm.device, len(requests), len(templates)
    seqs: list[list[int]] = []
    kl_rows: list[int] = []
    # per row: where the subject's key is read, where each target token is predicted, the target tokens
    lookup_at: list[int] = []
    predicted_at: list[list[int]] = []
    target_rows: list[list[int]] = []
    for request in requests:
        _, target_ids = encode_prompt_target(tok, request.prompt, request.target_new)
        rewrite = locate(lm, request, templates, spec.fact_token)
        for s, pos in zip(rewrite.ids, rewrite.lookup):
            seqs.append(s + target_ids[:-1])
            lookup_at.append(pos)
            predicted_at.append([len(s) - 1 + j for j in range(len(target_ids))])
            target_rows.append(target_ids)
    for request in requests:  # the KL prompts after every rewrite row: rewrite rows are 0 .. n*t-1
        kl = locate(lm, EditRequest(request.case_id, f"{request.subject} is a", request.subject,
                                    request.target_new), ["{}"], spec.fact_token)
        kl_rows.append(len(seqs))
        seqs.append(kl.ids[0])
        lookup_at.append(kl.lookup[0])
    ids, mask = pad_right(seqs, tok.pad_token_id, device)
    width = max(len(x) for x in target_rows)
    target_mask = torch.tensor([[1.0] * len(x) + [0.0] * (width - len(x)) for x in target_rows], device=device)
    label_pos = torch.tensor([p + [p[-1]] * (width - len(p)) for p in predicted_at], device=device)
    labels = torch.tensor([x + [x[-1]] * (width - len(x)) for x in target_rows], device=device)
    rows = torch.arange(len(seqs), device=device)
    lookup = torch.tensor(lookup_at, device=device)
    n_rewrite = n * t
    owner = torch.cat([torch.arange(n, device=device).repeat_interleave(t), torch.arange(n, device=device)])
    kl_index = torch.tensor(kl_rows, device=device)

    with training.trained_in_place(lm.model, []), FrozenPrefix(lm, first_layer) as prefix:
        prefix.add(ids, mask)
        with torch.no_grad(), capture(module) as seen:
            logits = lm.model(input_ids=ids, attention_mask=mask).logits
            bare = torch.arange(0, n_rewrite, t, device=device)
            v_init = seen.output[bare, lookup[bare]].float().clone()
            keys = seen.input[rows[:n_rewrite], lookup[:n_rewrite]].reshape(n, t, -1)
            kl_init = torch.log_softmax(logits[kl_index, lookup[kl_index]].float(), -1)
        delta = torch.zeros_like(v_init, requires_grad=True)  # [n, d]: one row per request
        opt = torch.optim.Adam([delta], lr=spec.v_lr)
        max_norm = spec.clamp_norm_factor * v_init.norm(dim=1)
        infos: list[dict[str, float]] = [{"v_steps": 0} for _ in requests]
        running = torch.ones(n, dtype=torch.bool, device=device)
        top_one_steps = torch.zeros(n, dtype=torch.long, device=device)

        def change(hidden: torch.Tensor) -> torch.Tensor:  # each row gets its own request's delta
            return add_at_positions(rows, lookup, delta[owner])(hidden)

        with torch.enable_grad(), edit_output(module, change):
            for step in range(spec.v_num_grad_steps):
                logits = lm.model(input_ids=ids, attention_mask=mask).logits
                at_targets = logits[rows[:n_rewrite, None], label_pos].float()
                logp = torch.log_softmax(at_targets, -1).gather(-1, labels[..., None]).squeeze(-1)
                per_row = (logp * target_mask).sum(1) / target_mask.sum(1)
                nll = -per_row.reshape(n, t).mean(1)
                kl_now = torch.log_softmax(logits[kl_index, lookup[kl_index]].float(), -1)
                kl_loss = spec.kl_factor * (kl_now.exp() * (kl_now - kl_init)).sum(-1)
                decay = spec.v_weight_decay * delta.norm(dim=1) / v_init.norm(dim=1) ** 2
                loss = nll + kl_loss + decay
                stopping = running & ((loss < spec.early_stop_loss) | (step == spec.v_num_grad_steps - 1))
                if top_one_stop is not None:
                    top_one_steps += running & _all_top_one(at_targets, labels, target_mask, n, t, top_one_stop)
                    stopping |= running & (top_one_steps >= top_one_stop.patience)
                    for i in running.nonzero().flatten().tolist():
                        infos[i]["top_one_steps"] = int(top_one_steps[i])
                for i in running.nonzero().flatten().tolist():
                    info = infos[i]
                    info.update(v_loss=round(loss[i].item(), 5), v_nll=round(nll[i].item(), 5))
                    info.setdefault("initial_loss", info["v_loss"])
                    info["final_loss"] = info["v_loss"]
                running = running & ~stopping
                if not running.any():
                    break
                held = delta.detach().clone()
                opt.zero_grad()
                loss[running].sum().backward()  # request i's loss depends on its own row only
                opt.step()
                with torch.no_grad():
                    delta[~running] = held[~running]  # finished requests stay where they stopped
                    norms = _norm(delta, dim=1)
                    over = running & (norms > max_norm)
                    delta[over] *= (max_norm[over] / norms[over])[:, None]
                for i in running.nonzero().flatten().tolist():
                    infos[i]["v_steps"] = step + 1
    out = []
    for i, info in enumerate(infos):
        info["delta_norm"] = round(delta[i].norm().item(), 5)
        info["v_norm"] = round(v_init[i].norm().item(), 5)
        out.append(Target((v_init[i] + delta[i]).detach(), v_init[i], keys[i].mean(0), keys[i, 0], info))
    return out
