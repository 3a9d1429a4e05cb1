"""Text corpora for key statistics: the world's own text, a local text/JSON/JSONL file, or a
Hugging Face dataset (`hf:NAME[:CONFIG]`, only when a hub is reachable)."""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from editbench.core import ConfigError, DataError

WORLD_CORPUS_FILE = "corpus.txt"  # written next to a world model by its build


def _file_texts(path: Path) -> list[str]:
    if not path.is_file():
        raise ConfigError(f"corpus file '{path}' does not exist")
    raw = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        from editbench.harness.results import read_jsonl

        texts = []
        for line_no, record in read_jsonl(path):
            if not isinstance(record.get("text"), str):
                raise DataError(f"{path}: line {line_no}: field 'text' is missing or not a string")
            texts.append(record["text"])
        return texts
    if path.suffix == ".json":
        try:
            records = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(records, list):
            raise DataError(f"{path}: expected a list of strings or of {{'text': ...}} records")
        texts = []
        for i, record in enumerate(records):
            text = record.get("text") if isinstance(record, dict) else record
            if not isinstance(text, str):
                raise DataError(f"{path}: record {i}: field 'text' is missing or not a string")
            texts.append(text)
        return texts
    return [line for line in raw.splitlines() if line.strip()]  # plain text: one document per line


def _hub_texts(spec: str) -> list[str]:
    name, _, config = spec[len("hf:"):].partition(":")
    try:
        import datasets

        ds = datasets.load_dataset(name, config or None, split="train")
    except Exception as exc:  # offline, unknown name: say what to pass instead
        raise ConfigError(
            f"cannot load corpus '{spec}' from the Hugging Face hub ({type(exc).__name__}); "
            "pass a local .txt/.jsonl file as the stats corpus instead"
        ) from None
    return [t for t in ds["text"] if t.strip()]


def corpus_source(spec: str, model_dir: str | None) -> str | Path:
    """What a corpus spec names: 'world' is the corpus saved with a world model."""
    if spec == "world":
        path = Path(model_dir or "") / WORLD_CORPUS_FILE
        if not path.is_file():
            raise ConfigError(
                f"stats corpus 'world' needs {WORLD_CORPUS_FILE} in the model folder ({model_dir}); "
                "for other models set the corpus to a text/JSONL file or hf:DATASET"
            )
        return path
    return spec if spec.startswith("hf:") else Path(spec)


def check_corpus(spec: str, model_dir: str | None) -> None:
    """Fail before a run starts when a corpus file named by `spec` is missing (hub corpora load lazily)."""
    source = corpus_source(spec, model_dir)
    if isinstance(source, Path) and not source.is_file():
        raise ConfigError(f"corpus file '{source}' does not exist")


def corpus_identity(spec: str, model_dir: str | None) -> str:
    """A name for cache keys that changes with a file's content (hub corpora: their id)."""
    source = corpus_source(spec, model_dir)
    if isinstance(source, Path):
        check_corpus(spec, model_dir)
        return f"{source.name}-{hashlib.sha256(source.read_bytes()).hexdigest()[:12]}"
    return source.replace("/", "_").replace(":", "_")


def load_corpus(spec: str, model_dir: str | None, n_samples: int, seed: int = 0) -> list[str]:
    """Up to n_samples documents of the corpus, a seeded sample."""
    source = corpus_source(spec, model_dir)
    texts = _file_texts(source) if isinstance(source, Path) else _hub_texts(source)
    if not texts:
        raise DataError(f"corpus '{spec}' holds no text")
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    return [texts[i] for i in order[:n_samples]]
