"""Batched teacher-forced scoring and sampling: the forward passes every metric is built on."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, cast

import torch

from editbench.core import DataError
from editbench.harness.models import LoadedModel


def encode_prompt_target(tokenizer, prompt: str, target: str) -> tuple[list[int], list[int]]:
    """Token ids of the prompt and of the target as the model would continue it.

    The target is joined with a space (what BPE tokenizers such as GPT-2's and Qwen's need) and
    split off the joint encoding, so a tokenizer that merges across the boundary is still right.
    """
    sep = "" if prompt.endswith((" ", "\n")) or target.startswith(" ") else " "
    prompt_ids = tokenizer(prompt).input_ids
    full_ids = tokenizer(prompt + sep + target).input_ids
    if full_ids[: len(prompt_ids)] == prompt_ids and len(full_ids) > len(prompt_ids):
        return prompt_ids, full_ids[len(prompt_ids):]
    target_ids = tokenizer(sep + target, add_special_tokens=False).input_ids
    return prompt_ids, target_ids


@dataclass
class TargetScore:
    target_ids: list[int]
    top1: list[int]  # the model's argmax at each target position (teacher forced)
    logprobs: list[float]  # log p(target token) at each position

    @property
    def token_accuracy(self) -> float:
        return sum(a == b for a, b in zip(self.top1, self.target_ids)) / len(self.target_ids)

    @property
    def exact(self) -> bool:
        return self.top1 == self.target_ids


def pad_right(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


def length_batches(order: list[int], lengths: list[int], batch_size: int, token_budget: int | None = None):
    """Consecutive chunks of `order` (longest first) of at most `batch_size` rows and, with a budget,
    at most `token_budget` padded tokens (rows x the chunk's longest row); never empty."""
    chunk: list[int] = []
    for i in order:
        width = max([lengths[j] for j in chunk] + [lengths[i]])
        if chunk and (len(chunk) >= batch_size or (token_budget is not None and (len(chunk) + 1) * width > token_budget)):
            yield chunk
            chunk = []
        chunk.append(i)
    if chunk:
        yield chunk


@torch.inference_mode()
def eval_batching(lm: LoadedModel, batch_size: int | None = None) -> tuple[int, int | None]:
    """Rows and padded tokens per scoring pass: `batch_size` or the model's own settings (a test's
    stand-in model may have neither)."""
    rows = batch_size if batch_size else getattr(lm, "eval_batch_size", 64)
    return int(rows), getattr(lm, "eval_token_budget", None)


def score_targets(lm: LoadedModel, pairs: list[tuple[str, str]], batch_size: int | None = None) -> list[TargetScore]:
    """Teacher-forced top-1 and log-probabilities of each target after its prompt, in padded batches."""
    encoded = [encode_prompt_target(lm.tokenizer, p, t) for p, t in pairs]
    # Longest first so each batch pads little; results are put back in input order.
    order = sorted(range(len(encoded)), key=lambda i: -(len(encoded[i][0]) + len(encoded[i][1])))
    results: list[TargetScore | None] = [None] * len(encoded)
    pad_id = lm.tokenizer.pad_token_id
    lengths = [len(p) + len(t) for p, t in encoded]
    for chunk in length_batches(order, lengths, *eval_batching(lm, batch_size)):
        seqs = [encoded[i][0] + encoded[i][1] for i in chunk]
        ids, mask = pad_right(seqs, pad_id, lm.device)
        logits = lm.model(input_ids=ids, attention_mask=mask).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        for row, i in enumerate(chunk):
            p_len, t_ids = len(encoded[i][0]), encoded[i][1]
            positions = torch.arange(p_len - 1, p_len - 1 + len(t_ids), device=logits.device)
            target = torch.tensor(t_ids, device=logits.device)
            results[i] = TargetScore(
                target_ids=list(t_ids),
                top1=logits[row, positions].argmax(-1).tolist(),
                logprobs=logp[row, positions, target].tolist(),
            )
    return results  # type: ignore[return-value]


@torch.no_grad()
def sample_continuations(
    lm: LoadedModel, prompts: list[str], max_new_tokens: int, top_k: int = 5, seed: int = 0, batch_size: int = 16
) -> list[str]:
    """Seeded top-k sampling of a fixed number of new tokens; returns only the continuations."""
    tok = lm.tokenizer
    side, tok.padding_side = tok.padding_side, "left"  # generation appends on the right, so pad on the left
    try:
        return _sample(lm, tok, prompts, max_new_tokens, top_k, seed, batch_size)
    finally:
        tok.padding_side = side  # callers (EasyEdit's code among them) rely on the side they set


def _sample(lm, tok, prompts, max_new_tokens, top_k, seed, batch_size) -> list[str]:
    texts: list[str] = []
    with torch.random.fork_rng(devices=[lm.device] if lm.device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, len(prompts), batch_size):
            batch = tok(prompts[start : start + batch_size], return_tensors="pt", padding=True).to(lm.device)
            out = lm.model.generate(
                **batch,
                do_sample=True,
                top_k=top_k,
                top_p=1.0,
                temperature=1.0,
                max_new_tokens=max_new_tokens,
                min_new_tokens=max_new_tokens,
                pad_token_id=tok.pad_token_id,
            )
            new_tokens = out[:, batch["input_ids"].shape[1] :]
            texts.extend(tok.batch_decode(new_tokens, skip_special_tokens=True))
    return texts


@torch.no_grad()
def generate_texts(lm: LoadedModel, prompts: list[str], total_tokens: int, top_k: int = 5, seed: int = 0,
                   batch_size: int = 16) -> list[str]:
    """ROME's `generate_fast` as its evaluation uses it: seeded top-k sampling until the text (prompt
    included) is `total_tokens` long, decoded whole, NFKD-normalised, blank lines folded to a space.

    Prompts are batched by token length, so every text has exactly `total_tokens` tokens (a prompt at
    least that long is returned as it is). EOS is not sampled (the text runs to its full length).
    """
    import unicodedata

    tok = lm.tokenizer
    encoded = [tok(p).input_ids for p in prompts]
    texts: list[str | None] = [None] * len(prompts)
    by_length: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):
        by_length.setdefault(len(ids), []).append(i)
    with torch.random.fork_rng(devices=[lm.device] if lm.device.type == "cuda" else []):
        torch.manual_seed(seed)
        for length, members in sorted(by_length.items()):
            new = total_tokens - length
            for start in range(0, len(members), batch_size):
                chunk = members[start : start + batch_size]
                ids = torch.tensor([encoded[i] for i in chunk], device=lm.device)
                if new > 0:
                    ids = lm.model.generate(
                        input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=top_k, top_p=1.0,
                        temperature=1.0, max_new_tokens=new, min_new_tokens=new, pad_token_id=tok.pad_token_id,
                    )
                for row, i in enumerate(chunk):
                    text = tok.decode(ids[row], skip_special_tokens=True)
                    texts[i] = unicodedata.normalize("NFKD", text).replace("\n\n", " ")
    return texts  # type: ignore[return-value]


FACT_TOKENS = ("subject_last", "subject_first", "last")


def lookup_index(tokenizer, text: str, subject_start: int, subject: str, fact_token: str = "subject_last",
                 record: str = "request") -> tuple[list[int], int]:
    """Token ids of `text` and the index of the token that locate-then-edit methods read and write.

    The subject occupies characters [subject_start, subject_start + len(subject)) of `text`; its
    tokens are found from the tokenizer's offsets, so multi-token subjects and subjects merged with
    a leading space are both right. `fact_token` picks the subject's last or first token, or the
    last token of the text. The index is into the unpadded ids (see `padded_index`).
    """
    encoded = tokenizer(text, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    if fact_token == "last":
        return ids, len(ids) - 1
    end = subject_start + len(subject)
    covering = [i for i, (a, b) in enumerate(encoded["offset_mapping"]) if b > a and a < end and b > subject_start]
    if not covering:
        raise DataError(f"{record}: field 'subject' {subject!r} is not found in the tokens of {text!r}")
    return ids, covering[-1] if fact_token == "subject_last" else covering[0]


def padded_index(index: int, length: int, width: int, padding_side: str) -> int:
    """Where position `index` of a sequence of `length` tokens lands in a batch padded to `width`."""
    return index + (width - length if padding_side == "left" else 0)


def cache_argument(model) -> str | None:
    """The name under which this transformers version's forward takes a KV cache."""
    params = inspect.signature(model.forward).parameters
    return next((name for name in ("cache", "past_key_values") if name in params), None)


def _common_prefix(seqs: list[list[int]]) -> int:
    first = seqs[0]
    n = min(len(s) for s in seqs) - 1  # every sequence keeps at least one token of its own
    for s in seqs[1:]:
        k = 0
        while k < n and s[k] == first[k]:
            k += 1
        n = k
    return max(n, 0)


@torch.no_grad()
def last_logits_after_prefix(lm: LoadedModel, seqs: list[list[int]], batch_size: int = 8,
                             min_prefix: int = 8) -> list[torch.Tensor] | None:
    """Next-token logits after each sequence, computing the tokens all of them share only once: the
    shared prefix runs once with a KV cache, then each batch of suffixes runs on a copy of that
    cache. None when the sequences share fewer than `min_prefix` tokens or the model takes no cache
    (the caller then runs full passes)."""
    import copy

    name = cache_argument(lm.model)
    shared = _common_prefix(seqs) if len(seqs) > 1 else 0
    if name is None or shared < min_prefix:
        return None
    prefix = torch.tensor([seqs[0][:shared]], device=lm.device)
    out = lm.model(input_ids=prefix, attention_mask=torch.ones_like(prefix), use_cache=True)
    cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    if cache is None or not hasattr(cache, "batch_repeat_interleave"):
        return None
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    result: list[torch.Tensor | None] = [None] * len(seqs)
    repeated: dict[int, Any] = {}  # batch size -> the prefix cache repeated that many times (a transformers Cache)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        ids, mask = pad_right([seqs[i][shared:] for i in chunk], lm.tokenizer.pad_token_id, lm.device)
        full_mask = torch.cat([torch.ones(len(chunk), shared, dtype=mask.dtype, device=mask.device), mask], 1)
        if len(chunk) not in repeated:
            repeated[len(chunk)] = copy.deepcopy(cache)
            repeated[len(chunk)].batch_repeat_interleave(len(chunk))
        batch_cache = repeated[len(chunk)]
        logits = lm.model(input_ids=ids, attention_mask=full_mask, use_cache=True, **{name: batch_cache}).logits
        # drop this batch's own tokens, so the prefix cache serves the next batch (a negative count
        # means "remove that many" in every transformers version that has crop)
        batch_cache.crop(shared - batch_cache.get_seq_length())
        for row, i in enumerate(chunk):
            result[i] = logits[row, len(seqs[i]) - shared - 1]
    return cast(list[torch.Tensor], result)  # every position filled
