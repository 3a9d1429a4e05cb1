"""What a loaded model's weights are: their sha256 (a model's identity in every record), and the
check that the files gave every tensor (transformers fills missing ones at random)."""
from __future__ import annotations

import hashlib

import torch
from torch import nn

from editbench.core import ConfigError


def weights_sha256(model: nn.Module) -> str:
    """sha256 over every tensor of the state dict in name order: name, dtype, shape and raw bytes.

    Independent of the file format, so the same weights give the same hash however they were saved.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().contiguous().cpu()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def check_loading_info(name_or_path: str, info: dict) -> None:
    """transformers fills weights missing from the files with random values, and drops unexpected
    ones, with a warning at most: a benchmark must not score such a model."""
    problems = []
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        names = sorted(str(k) for k in info.get(kind) or ())
        if names:
            problems.append(f"{len(names)} {kind.replace('_keys', '')} ({', '.join(names[:3])}"
                            + (", ..." if len(names) > 3 else "") + ")")
    if info.get("error_msgs"):
        problems.append(f"errors ({str(info['error_msgs'][0]).splitlines()[0]})")
    if problems:
        raise ConfigError(f"model '{name_or_path}' does not match its weights files: {'; '.join(problems)} tensors")
