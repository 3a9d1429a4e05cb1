"""Loading causal LMs (any Hugging Face id or local path) into one handle the harness passes around."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, cast

import torch

from editbench.core import ConfigError
from editbench.harness.arch import ArchSpec, arch_for
from editbench.harness.weights import check_loading_info, weights_sha256

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


@dataclass
class LoadedModel:
    # a transformers causal LM (PreTrainedModel) and its tokenizer; typed Any because nn.Module's
    # __getattr__ types every attribute `Tensor | Module` and the tokenizer classes differ per model
    model: Any
    tokenizer: Any
    name: str  # Hugging Face id or local path, as given
    hparams_key: str  # which hparams file fits this model (e.g. 'world', 'gpt2-xl', 'qwen2')
    # evaluation batches: at most `eval_batch_size` rows, and (when set) at most `eval_token_budget`
    # padded tokens per forward pass, so a 7B model's checkpoint fits its memory
    eval_batch_size: int = 64
    eval_token_budget: int | None = None
    _fingerprint: str | None = field(default=None, repr=False)
    # a ContextAdaptor in force (a retrieval editor's memory), set and removed by the runner's Applied:
    # scoring shows the model `in_context(questions)`; None: the bare questions
    context: Any = field(default=None, repr=False)
    # a named artifact's origin (named_models: package, GGUF sha256, 'dequantized from Q4_1'); None otherwise
    provenance: dict | None = None

    def fingerprint(self) -> str:
        """sha256 of the weights as loaded (first call; call it before editing). Cached on this handle."""
        if self._fingerprint is None:
            self._fingerprint = weights_sha256(self.model)
        return self._fingerprint

    @property
    def arch(self) -> ArchSpec:
        return arch_for(self.model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def parse_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype '{name}' (valid: {', '.join(DTYPES)})")
    return DTYPES[name]


def default_hparams_key(name_or_path: str, model_type: str) -> str:
    """Hparams files are named by the model's base name (e.g. qwen2.5-7b-instruct) or its model_type;
    a world folder (it holds world.json) takes the world's YAMLs, whatever the folder is called."""
    if (Path(name_or_path) / "world.json").is_file():
        return world_hparams_key(name_or_path)
    return Path(name_or_path.rstrip("/")).name.lower() or model_type


def world_hparams_key(folder: str | Path) -> str:
    """`world-<size>` for a world folder (its own YAMLs first, then the shared world ones)."""
    import json

    try:
        name = json.loads((Path(folder) / "world.json").read_text(encoding="utf-8"))["config"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return "world"
    return f"world-{name}" if isinstance(name, str) and name.isidentifier() else "world"


def in_context(lm, questions: Sequence[str]) -> list[str]:
    """Each question as scoring shows it to the model: the context in force (`lm.context`, a
    ContextAdaptor) put before it, or the bare question (also for stand-ins of a LoadedModel)."""
    context = getattr(lm, "context", None)
    return list(questions) if context is None else context.contexts(lm, questions)


def load_model(
    name_or_path: str | Path, device: str = "cpu", dtype: str = "float32", hparams_key: str | None = None,
    device_map: str | dict | None = None, max_memory: dict | None = None,
) -> LoadedModel:
    """`device_map` ('auto', 'balanced', or {module: device}) splits the model across devices with
    accelerate (`max_memory` per device passes through); `device` is then ignored. A `Path` works too."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from editbench.harness.named_models import ensure_named_model, named_model, provenance_of

    name_or_path = str(name_or_path)
    spec = named_model(name_or_path)
    if spec is not None:  # a named artifact (e.g. smollm2-135m): its converted folder, its name's YAMLs
        lm = load_model(ensure_named_model(spec), device, dtype, hparams_key or spec.name, device_map, max_memory)
        lm.name = spec.name
        return lm
    local = os.path.isdir(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=local)
        placement = {"device_map": device_map, **({"max_memory": max_memory} if max_memory else {})} \
            if device_map is not None else {}
        # (model, loading info) with output_loading_info
        model, info = cast(tuple[Any, dict], AutoModelForCausalLM.from_pretrained(
            name_or_path, dtype=parse_dtype(dtype), local_files_only=local, output_loading_info=True, **placement))
    except Exception as exc:  # noqa: BLE001 - missing, truncated or garbled files (safetensors has its own errors)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"cannot load model '{name_or_path}': {first}") from None
    check_loading_info(name_or_path, info)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if device_map is None:
        model.to(device)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    arch_for(model)  # fail early on unsupported architectures
    key = hparams_key or default_hparams_key(name_or_path, model.config.model_type)
    return LoadedModel(model=model, tokenizer=tokenizer, name=name_or_path, hparams_key=key,
                       provenance=provenance_of(name_or_path) if local else None)
