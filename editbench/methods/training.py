"""Shared pieces of the gradient-based editors: masked target loss, train-in-place-then-restore."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from editbench.core import EditRequest, InvalidDeltaError
from editbench.harness.arch import mlp_proj_path
from editbench.harness.models import LoadedModel
from editbench.harness.scoring import encode_prompt_target, pad_right


@dataclass
class TargetBatch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor  # -100 on prompt and padding: the loss sees target tokens only
    last_prompt: torch.Tensor  # index of each row's last prompt token
    target_ids: list[list[int]]


def target_batch(lm: LoadedModel, requests: Sequence[EditRequest]) -> TargetBatch:
    encoded = [encode_prompt_target(lm.tokenizer, r.prompt, r.target_new) for r in requests]
    ids, mask = pad_right([p + t for p, t in encoded], lm.tokenizer.pad_token_id, lm.device)
    labels = torch.full_like(ids, -100)
    for i, (p, t) in enumerate(encoded):
        labels[i, len(p) : len(p) + len(t)] = torch.tensor(t, device=ids.device)
    last = torch.tensor([len(p) - 1 for p, _ in encoded], device=ids.device)
    return TargetBatch(ids, mask, labels, last, [t for _, t in encoded])


def target_nll(model: torch.nn.Module, batch: TargetBatch) -> torch.Tensor:
    """FT-M / R-SFT loss: mean cross-entropy over target tokens, each predicted from its own prefix."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), batch.labels[:, 1:].reshape(-1), ignore_index=-100
    )


def prompt_last_nll(model: torch.nn.Module, batch: TargetBatch) -> torch.Tensor:
    """FT-L loss (EasyEdit's prompt_last): every target token scored at the last prompt position."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    logp = torch.log_softmax(logits[torch.arange(len(batch.target_ids)), batch.last_prompt].float(), dim=-1)
    per_row = [-logp[i, torch.tensor(t, device=logp.device)].mean() for i, t in enumerate(batch.target_ids)]
    return torch.stack(per_row).mean()


def mlp_param_names(lm: LoadedModel, layer: int, projections: Sequence[str]) -> list[str]:
    """Names of the weight tensors of the chosen MLP projections of one layer."""
    return [f"{mlp_proj_path(lm.model, layer, proj)}.weight" for proj in projections]


@contextmanager
def trained_in_place(model: torch.nn.Module, names: Sequence[str]) -> Iterator[dict[str, torch.nn.Parameter]]:
    """Make `names` trainable for the block and put every one back bit for bit afterwards.

    On exit (normal or not) the block's changes are undone; callers take the delta inside the block.
    """
    params = dict(model.named_parameters())
    chosen = {n: params[n] for n in names}
    saved = {n: p.detach().clone() for n, p in chosen.items()}
    flags = {n: p.requires_grad for n, p in params.items()}
    was_training = model.training
    try:
        for n, p in params.items():
            p.requires_grad_(n in chosen)
        yield chosen
    finally:
        with torch.no_grad():
            for n, p in chosen.items():
                p.copy_(saved[n])
        for n, p in params.items():
            p.requires_grad_(flags[n])
        model.train(was_training)


def delta_against(chosen: dict[str, torch.nn.Parameter], originals: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    deltas = {n: (p.detach() - originals[n]).clone() for n, p in chosen.items()}
    for n, d in deltas.items():
        if not torch.isfinite(d).all():
            raise InvalidDeltaError(f"training produced non-finite weights in '{n}'")
    return deltas


def snapshot(chosen: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in chosen.items()}
