"""Key statistics C = E[k k^T] of the inputs of MLP output projections, over a text corpus.

Two caches, neither module-global: the run's own dict (passed by the runner, so a sequential run
computes each layer's C once, on the unedited model) and files under `<cache>/key_stats`, keyed
by model identity (name plus a weight fingerprint), layer, corpus identity, sample count, maximum
length and precision. Statistics are always computed here; nothing precomputed is downloaded.
"""
from __future__ import annotations

import hashlib
import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from editbench.core import ConfigError
from editbench.harness.arch import get_module, mlp_proj_path
from editbench.harness.cache import build_lock, cache_root
from editbench.harness.corpus import corpus_identity, load_corpus
from editbench.harness.hooks import StopForward, capture, stop_after
from editbench.harness.models import LoadedModel
from editbench.harness.results import atomic_path
from editbench.harness.scoring import pad_right
from editbench.methods.locate import is_positive_definite, second_moment

log = logging.getLogger("editbench")
PRECISIONS = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class StatsSpec:
    mom2_corpus: str = "world"  # 'world', a .txt/.json/.jsonl path, or hf:NAME[:CONFIG]
    mom2_n_samples: int = 100_000  # documents (ROME and MEMIT use 100,000 Wikipedia articles)
    # tokens per document; None: min(model context, 4096) as EasyEdit (ROME: the model's context)
    mom2_max_length: int | None = None
    mom2_dtype: str = "float64"
    mom2_batch_size: int = 32


def weight_fingerprint(model: torch.nn.Module, per_tensor: int = 4096) -> str:
    """A cheap hash of the weights: every name, shape and dtype, and a strided sample of values."""
    digest = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        flat = p.detach().reshape(-1)
        step = max(1, flat.numel() // per_tensor)
        sample = flat[::step][:per_tensor].float().cpu().numpy().tobytes()
        digest.update(f"{name}:{tuple(p.shape)}:{p.dtype}".encode())
        digest.update(sample)
    return digest.hexdigest()[:16]


MAX_STATS_LENGTH = 4096


def stats_length(lm: LoadedModel, spec: StatsSpec) -> int:
    """Tokens per corpus document: the spec's, else min(the model's context, 4096)."""
    if spec.mom2_max_length is not None:
        return spec.mom2_max_length
    context = getattr(lm.model.config, "max_position_embeddings", None) or getattr(lm.model.config, "n_positions", None)
    return min(int(context), MAX_STATS_LENGTH) if context else MAX_STATS_LENGTH


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in text)[-60:]


def _cache_file(lm: LoadedModel, fingerprint: str, layer: int, corpus_id: str, spec: StatsSpec) -> Path:
    key = f"{lm.name}|{fingerprint}|{layer}|{corpus_id}|{spec.mom2_n_samples}|{stats_length(lm, spec)}|{spec.mom2_dtype}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    name = f"{_slug(Path(lm.name.rstrip('/')).name)}-L{layer}-{_slug(corpus_id)}-n{spec.mom2_n_samples}-{digest}.pt"
    return cache_root() / "key_stats" / name


@torch.no_grad()
def accumulate(lm: LoadedModel, layers: list[int], texts: list[str], spec: StatsSpec) -> dict[int, tuple[torch.Tensor, int]]:
    """One pass over `texts`: per layer, the sum of k k^T over every non-padding token, and the token count."""
    dtype = PRECISIONS[spec.mom2_dtype]
    sums: dict[int, torch.Tensor] = {}
    counts = dict.fromkeys(layers, 0)
    tok = lm.tokenizer
    with ExitStack() as stack, tqdm(total=None, unit="tok", desc="key statistics", disable=None) as bar:
        modules = {L: get_module(lm.model, mlp_proj_path(lm.model, L, "down")) for L in layers}
        seen = {L: stack.enter_context(capture(modules[L])) for L in layers}
        # the layers above the highest one, and the output layer, change no key: the pass ends there
        stack.enter_context(stop_after(modules[max(layers)]))
        for start in range(0, len(texts), spec.mom2_batch_size):
            chunk = texts[start : start + spec.mom2_batch_size]
            seqs = [ids for ids in tok(chunk, truncation=True, max_length=stats_length(lm, spec)).input_ids if ids]
            if not seqs:
                continue
            ids, mask = pad_right(seqs, tok.pad_token_id, lm.device)
            try:
                lm.model(input_ids=ids, attention_mask=mask)
            except StopForward:
                pass
            keep = mask.bool()
            for L in layers:
                moment, n = second_moment(seen[L].input[keep], dtype)
                sums[L] = moment if L not in sums else sums[L] + moment
                counts[L] += n
            bar.update(int(keep.sum()))
    return {L: (sums[L], counts[L]) for L in layers if L in sums}


def key_statistics(lm: LoadedModel, layers: list[int], spec: StatsSpec, run_cache: dict | None) -> dict[int, torch.Tensor]:
    """C for each layer, from the run cache, else the disk cache, else computed in one corpus pass."""
    run_cache = run_cache if run_cache is not None else {}
    if spec.mom2_dtype not in PRECISIONS:
        raise ConfigError(f"key statistics precision '{spec.mom2_dtype}' is unknown (valid: {', '.join(PRECISIONS)})")
    found = {L: run_cache[("key_stats", L, spec)] for L in layers if ("key_stats", L, spec) in run_cache}
    missing = [L for L in layers if L not in found]
    if not missing:
        return found
    corpus_id = corpus_identity(spec.mom2_corpus, lm.name)
    fingerprint = weight_fingerprint(lm.model)
    paths = {L: _cache_file(lm, fingerprint, L, corpus_id, spec) for L in missing}
    with ExitStack() as locks:  # a second process needing the same statistics waits, then reads them
        for L in missing:
            locks.enter_context(build_lock(paths[L], log=log.info))
        to_compute = []
        for L in missing:
            moment = read_cached_moment(paths[L], lm.device)
            if moment is not None:
                log.info(f"key statistics layer {L}: cache hit {paths[L]}")
                found[L] = moment
            else:
                to_compute.append(L)
        _compute(lm, to_compute, spec, corpus_id, fingerprint, found)
    for L in missing:
        run_cache[("key_stats", L, spec)] = found[L]
    return {L: found[L] for L in layers}


def _moment_sha256(moment: torch.Tensor) -> str:
    t = moment.detach().contiguous().cpu()
    digest = hashlib.sha256(f"{t.dtype}|{tuple(t.shape)}|".encode())
    digest.update(t.numpy().data)  # the array's own buffer: no copy of a d x d float64 matrix
    return digest.hexdigest()


def read_cached_moment(path: Path, device) -> torch.Tensor | None:
    """A cached C after checking it: loadable as plain tensors (weights_only), the sha256 recorded
    when it was written, symmetric positive definite. None (with one line saying why) when it is
    absent or damaged, so it is computed again."""
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        moment = data["moment"]
        legacy = isinstance(moment, torch.Tensor) and "sha256" not in data  # written before hashes
        ok = isinstance(moment, torch.Tensor) and (legacy or data.get("sha256") == _moment_sha256(moment))
        why = "its content differs from its recorded sha256" if not ok else None
        if ok and not is_positive_definite(moment):
            why = "it is not positive definite (or not finite)"
        if ok and not why and legacy:  # record its hash from now on
            with atomic_path(path) as tmp:
                torch.save({**data, "sha256": _moment_sha256(moment)}, tmp)
    except Exception as exc:  # noqa: BLE001 - truncated, garbled or foreign files are all recomputed
        why = f"unreadable ({type(exc).__name__})"
    if why:
        log.warning(f"key statistics cache {path}: {why}; computing it again")
        return None
    return moment.to(device)


def _compute(lm: LoadedModel, to_compute: list[int], spec: StatsSpec, corpus_id: str, fingerprint: str,
             found: dict) -> None:
    if to_compute:
        texts = load_corpus(spec.mom2_corpus, lm.name, spec.mom2_n_samples)
        log.info(f"key statistics layers {to_compute}: computing over {len(texts)} documents of '{spec.mom2_corpus}'")
        started = time.perf_counter()
        sums = accumulate(lm, to_compute, texts, spec)
        log.info(f"key statistics layers {to_compute}: built in {time.perf_counter() - started:.1f}s")
        for L, (total, count) in sums.items():
            moment = total / count
            if not is_positive_definite(moment):
                raise ConfigError(
                    f"key statistics of layer {L} are singular or non-finite ({count} tokens from {len(texts)} "
                    f"documents of '{spec.mom2_corpus}'); use more samples or a larger corpus"
                )
            path = _cache_file(lm, fingerprint, L, corpus_id, spec)
            with atomic_path(path) as tmp:
                torch.save({"moment": moment.cpu(), "count": count, "corpus": corpus_id, "layer": L,
                            "model": lm.name, "fingerprint": fingerprint, "sha256": _moment_sha256(moment)}, tmp)
            log.info(f"key statistics layer {L}: {count} tokens, saved {path}")
            found[L] = moment
