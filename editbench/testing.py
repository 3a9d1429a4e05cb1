"""Tiny randomly initialised models of each supported architecture, for tests, benches and scripts.

One place builds them, so a test, `scripts/speed.py` and a user's own editor test get the same weights
for the same arguments (seeded; transformers' own `from_config`)."""
from __future__ import annotations

from typing import Any

import torch

from editbench.harness.models import LoadedModel

# Two layers, two heads, a 64-token context: small enough for a CPU test, deep enough for layer choices.
PICO_SHAPES: dict[str, Any] = {
    "gpt2": lambda hidden: dict(n_embd=hidden, n_layer=2, n_head=2, n_positions=64),
    "qwen2": lambda hidden: dict(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64),
    "llama": lambda hidden: dict(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64),
}


def pico_model(model_type: str, vocab_size: int = 64, hidden: int = 16, seed: int = 0, **extra):
    """A randomly initialised tiny model of `model_type` (gpt2, qwen2, llama) in eval mode; `extra`
    config keys replace the defaults (e.g. num_hidden_layers=12)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    kwargs = {**PICO_SHAPES[model_type](hidden), **extra}
    config = AutoConfig.for_model(model_type, vocab_size=vocab_size, **kwargs)
    return AutoModelForCausalLM.from_config(config).eval()


def pico_lm(model_type: str, tokenizer, hidden: int = 16, seed: int = 0, dtype: torch.dtype | None = None,
            hparams_key: str | None = None, **extra) -> LoadedModel:
    """A pico model with `tokenizer`'s vocabulary as the handle editors take (parameters frozen, as
    `load_model` leaves them); `hparams_key` picks its YAMLs (default: none of the shipped ones)."""
    model = pico_model(model_type, vocab_size=len(tokenizer), hidden=hidden, seed=seed, **extra)
    if dtype is not None:
        model = model.to(dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(model=model, tokenizer=tokenizer, name=f"pico-{model_type}",
                       hparams_key=hparams_key or f"pico-{model_type}")
