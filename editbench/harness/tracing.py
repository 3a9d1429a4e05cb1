"""Causal tracing, as ROME does it (Meng et al. 2022; kmeng01/rome `experiments/causal_trace.py`): where
in the network does a fact live?

For a prompt that names a subject, the clean run's top-1 next token is the answer, with probability
p_high. The subject's token embeddings are then corrupted with Gaussian noise (the same noise in each
of `samples` corrupted runs as in the reference: a RandomState(1) stream drawn once per trace), which
drops the answer's probability (mean over the corrupted runs) to p_low. Restoring one state of the
clean run at one token position in the corrupted runs (a layer's output hidden state, or the outputs of
a window of `window` consecutive MLP or attention modules centred on the layer, as the reference's
`trace_important_window`) brings some of it back, p_restored. The indirect effect of that state is
p_restored - p_low; averaged over facts it is the average indirect effect (AIE) of the reference's
figures. ROME's finding on GPT-2 XL: the MLPs of middle layers at the last subject token.

The reference runs one forward pass per restored state; here every layer's restoration of one kind
and one token position runs in one batch (rows grouped per layer, each group with the same noise),
which gives the same numbers (tests/test_tracing.py holds it to a per-layer transcription)."""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from editbench.core import ConfigError, DataError
from editbench.harness.arch import arch_for, get_module, layer_path, num_layers
from editbench.harness.hooks import edit_output
from editbench.harness.models import LoadedModel

KINDS = ("hidden", "mlp", "attn")
POSITIONS = ("last_subject", "last")  # the two token positions ROME's figures single out


@dataclass(frozen=True)
class TraceSettings:
    samples: int = 10  # corrupted runs per fact (the reference's default)
    # the noise's standard deviation; None: 3 x the standard deviation of the subjects' token embeddings
    # (the paper's nu = 3 sigma, measured over the traced subjects)
    noise: float | None = None
    window: int = 10  # MLP / attention: consecutive modules restored around each layer (the reference's)
    seed: int = 1  # the reference's numpy RandomState(1)

    def __post_init__(self) -> None:
        if not (isinstance(self.samples, int) and self.samples >= 1):
            raise ConfigError(f"trace samples must be a positive integer, got {self.samples!r}")
        if not (isinstance(self.window, int) and self.window >= 1):
            raise ConfigError(f"trace window must be a positive integer, got {self.window!r}")
        if self.noise is not None and not (self.noise > 0 and np.isfinite(self.noise)):
            raise ConfigError(f"trace noise must be a positive number, got {self.noise!r}")


@dataclass
class FactTrace:
    prompt: str
    subject: str
    answer: str  # the clean run's top-1 next token, decoded
    high: float  # p(answer), clean
    low: float  # p(answer), subject corrupted, nothing restored
    subject_range: tuple[int, int]  # token positions [start, end) of the subject
    # kind -> position name -> p(answer) with that kind's state restored, per layer
    restored: dict[str, dict[str, list[float]]]

    def indirect_effects(self, kind: str, position: str) -> list[float]:
        return [p - self.low for p in self.restored[kind][position]]


def window_layers(layer: int, window: int, n_layers: int) -> range:
    """The layers restored around `layer`: the reference's range(max(0, l - w // 2), min(n, l - (-w // 2)))."""
    return range(max(0, layer - window // 2), min(n_layers, layer - (-window // 2)))


def module_for(model, layer: int, kind: str) -> str:
    spec = arch_for(model)
    suffix = {"hidden": "", "mlp": "." + spec.mlp, "attn": "." + spec.attn}[kind]
    return layer_path(model, layer) + suffix


def subject_token_range(tokenizer, ids: Sequence[int], subject: str) -> tuple[int, int]:
    """The token positions [start, end) covering the subject's first occurrence (the reference's
    find_token_range: over the concatenation of each token decoded alone)."""
    pieces = [tokenizer.decode([t]) for t in ids]
    text = "".join(pieces)
    where = text.find(subject)
    if where < 0:
        raise DataError(f"the subject {subject!r} is not in the prompt as tokenized: {text!r}")
    start: int | None = None
    end: int | None = None
    seen = 0
    for i, piece in enumerate(pieces):
        seen += len(piece)
        if start is None and seen > where:
            start = i
        if end is None and seen >= where + len(subject):
            end = i + 1
            break
    if start is None or end is None:  # cannot happen: the subject is in the concatenated text
        raise DataError(f"the subject {subject!r} has no token range in {text!r}")
    return start, end


def subject_embedding_std(lm: LoadedModel, subjects: Sequence[str]) -> float:
    """The standard deviation of the subjects' token embeddings (the reference's collect_embedding_std)."""
    embed = lm.model.get_input_embeddings()
    rows = [embed(torch.tensor(lm.tokenizer(s, add_special_tokens=False).input_ids, device=lm.device))
            for s in subjects]
    return torch.cat(rows).std().item()


def _answer_probability(logits: torch.Tensor, rows: slice, answer: int) -> float:
    return torch.softmax(logits[rows, -1, :].float(), dim=-1).mean(dim=0)[answer].item()


@torch.no_grad()
def trace_fact(lm: LoadedModel, prompt: str, subject: str, settings: TraceSettings, noise: float,
               kinds: Sequence[str] = KINDS, answer: int | None = None) -> FactTrace:
    """One fact's trace at the last subject token and the last token, every layer, each kind, of the
    probability of `answer` (a token id; default the clean run's top-1, as the reference)."""
    model, n_layers = lm.model, num_layers(lm.model)
    ids = lm.tokenizer(prompt).input_ids
    start, end = subject_token_range(lm.tokenizer, ids, subject)
    inputs = torch.tensor([ids], device=lm.device)
    clean = model(input_ids=inputs).logits[0, -1].float().softmax(-1)
    answer = int(clean.argmax()) if answer is None else answer
    # one noise draw, the same for every corrupted run of this fact (the reference reseeds per call)
    rng = np.random.RandomState(settings.seed)
    draw = torch.from_numpy(rng.randn(settings.samples, end - start, model.config.hidden_size))
    low = _corrupted(lm, inputs, (start, end), draw * noise, settings.samples, {}, answer)[0]
    positions = {"last_subject": end - 1, "last": len(ids) - 1}
    restored: dict[str, dict] = {kind: {} for kind in kinds}
    for kind in kinds:
        width = 1 if kind == "hidden" else settings.window
        restore = {module_for(model, j, kind): [layer for layer in range(n_layers)
                                                if j in window_layers(layer, width, n_layers)]
                   for j in range(n_layers)}
        for name, position in positions.items():
            restored[kind][name] = _corrupted(lm, inputs, (start, end), draw * noise, settings.samples,
                                              {m: (groups, position) for m, groups in restore.items()}, answer,
                                              groups=n_layers)
    return FactTrace(prompt=prompt, subject=subject, answer=lm.tokenizer.decode([answer]), high=clean[answer].item(),
                     low=low, subject_range=(start, end), restored=restored)


def _corrupted(lm: LoadedModel, inputs: torch.Tensor, span: tuple[int, int], noise: torch.Tensor, samples: int,
               restore: dict[str, tuple[list[int], int]], answer: int, groups: int = 1) -> list[float]:
    """p(answer) per group of `samples` corrupted runs (row 0: the clean run): the subject's embeddings
    get `noise` in every corrupted row; module m restores its clean output at one position in the rows
    of the groups `restore[m]` names."""
    model = lm.model
    batch = inputs.expand(1 + groups * samples, -1)
    start, end = span
    noise = noise.to(device=lm.device, dtype=model.get_input_embeddings().weight.dtype).repeat(groups, 1, 1)

    def corrupt(h: torch.Tensor) -> torch.Tensor:
        h = h.clone()
        h[1:, start:end] += noise
        return h

    def restorer(group_ids: list[int], position: int):
        rows = torch.tensor([1 + g * samples + s for g in group_ids for s in range(samples)], device=lm.device)

        def change(h: torch.Tensor) -> torch.Tensor:
            h = h.clone()
            h[rows, position] = h[0, position]
            return h
        return change

    with ExitStack() as stack:
        stack.enter_context(edit_output(model.get_input_embeddings(), corrupt))
        for path, (group_ids, position) in restore.items():
            if group_ids:
                stack.enter_context(edit_output(get_module(model, path), restorer(group_ids, position)))
        logits = model(input_ids=batch).logits
    return [_answer_probability(logits, slice(1 + g * samples, 1 + (g + 1) * samples), answer) for g in range(groups)]


def average_indirect_effects(traces: Sequence[FactTrace]) -> dict[str, dict[str, list[float]]]:
    """kind -> position -> the mean over facts of each layer's indirect effect (the AIE)."""
    if not traces:
        raise ConfigError("no fact to trace")
    out: dict[str, dict[str, list[float]]] = {}
    for kind, by_position in traces[0].restored.items():
        out[kind] = {}
        for position in by_position:
            effects = np.array([t.indirect_effects(kind, position) for t in traces])
            out[kind][position] = [float(x) for x in effects.mean(axis=0)]
    return out


def peak_layers(aie: dict[str, dict[str, list[float]]]) -> dict[str, int]:
    """Per kind, the layer of the largest AIE at the last subject token (where ROME edits)."""
    return {kind: int(np.argmax(by_position["last_subject"])) for kind, by_position in aie.items()}
