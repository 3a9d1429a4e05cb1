"""Edit texts longer than the model's context: an error by default, or (truncate 'left') the
prompt keeps its last tokens. Silently running past the context gives wrong positions, and
ROME on a 1,822-token prompt took 300 s and 2.5 GB for one edit of a 256-position model."""
from __future__ import annotations

import dataclasses
from typing import Sequence

from editbench.core import ConfigError, DataError, EditRequest, setting

POLICIES = ("error", "left")


def model_context(lm) -> int | None:
    """Positions the model can attend to (None when its config does not say)."""
    config = lm.model.config
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _length(tok, text: str) -> int:
    return len(tok(text, add_special_tokens=False).input_ids)


def _pairs(request: EditRequest):
    """(field, prompt, answer) of every text the harness feeds the model for this request."""
    yield "prompt", request.prompt, request.target_new
    for i, text in enumerate(request.rephrase_prompts):
        yield f"rephrase_prompts[{i}]", text, request.target_new
    for group in ("locality", "portability"):
        for i, (prompt, answer) in enumerate(getattr(request, group)):
            yield f"{group}[{i}]", prompt, answer


def fit_to_context(lm, requests: Sequence[EditRequest], policy: str = "error") -> list[EditRequest]:
    """The requests, checked (or, with policy 'left', cut) so every prompt and its answer fit the
    model's context with one token to spare (BOS). Cut requests record `truncated_tokens`."""
    if policy not in POLICIES:
        raise ConfigError(f"{setting('truncate')} {policy!r} (valid: none, left)")
    context = model_context(lm)
    if context is None:
        return list(requests)
    tok, out = lm.tokenizer, []
    for request in requests:
        changes, dropped = {}, 0
        for name, prompt, answer in _pairs(request):
            ids = tok(prompt, add_special_tokens=False).input_ids
            room = context - 1 - _length(tok, " " + answer)
            if len(ids) <= room:
                continue
            where = f"{request.source or 'request'}: record {request.case_id!r}: field '{name}'"
            if policy == "error" or room < 1:
                raise DataError(f"{where} is {len(ids) + context - 1 - room} tokens with its answer, more than the "
                                f"model's context of {context}; pass {setting('truncate')} left to keep the last tokens")
            kept = tok.decode(ids[-room:])
            dropped = max(dropped, len(ids) - room)
            changes[name] = kept
        if changes:
            out.append(_with_texts(request, changes, dropped))
        else:
            out.append(request)
    return out


def _with_texts(request: EditRequest, changes: dict[str, str], dropped: int) -> EditRequest:
    rephrase = list(request.rephrase_prompts)
    groups = {"locality": [list(p) for p in request.locality], "portability": [list(p) for p in request.portability]}
    prompt = request.prompt
    for name, text in changes.items():
        if name == "prompt":
            prompt = text
        elif name.startswith("rephrase_prompts["):
            rephrase[int(name[17:-1])] = text
        else:
            group, index = name.split("[")
            groups[group][int(index[:-1])][0] = text
    if request.subject not in prompt:
        raise DataError(f"{request.source or 'request'}: record {request.case_id!r}: field 'prompt' loses its "
                        f"subject {request.subject!r} when cut to the model's context")
    return dataclasses.replace(request, prompt=prompt, rephrase_prompts=tuple(rephrase),
                               locality=tuple((p[0], p[1]) for p in groups["locality"]),
                               portability=tuple((p[0], p[1]) for p in groups["portability"]),
                               truncated_tokens=dropped)
