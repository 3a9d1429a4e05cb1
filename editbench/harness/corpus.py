"""Text corpora for key statistics: the world's own text, a local text/JSON/JSONL file, or a
Hugging Face dataset (`hf:NAME[:CONFIG]`, only when a hub is reachable).

A file may be named relative to the data folder (`data:wikibigedit/wikibigedit_3k.json`: under
$EDITBENCH_DATA, else ../shared/data), and records without a `text` field become documents through
templates after a `#`: `FILE#{prompt} {target_new}|{locality_prompt} {locality_ground_truth}` makes
two documents of every record (its fields filled in; a record lacking a field is an error naming it).
That is how a model with no Wikipedia here gets real text of fixed bits (docs/real-model.md)."""
from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

from editbench.core import ConfigError, DataError

WORLD_CORPUS_FILE = "corpus.txt"  # written next to a world model by its build


DATA_PREFIX = "data:"
DEFAULT_DATA_DIR = Path("../shared/data")


def data_dir() -> Path:
    """Where `data:` corpora are read from: $EDITBENCH_DATA, else ../shared/data (from the current folder)."""
    return Path(os.environ.get("EDITBENCH_DATA") or DEFAULT_DATA_DIR)


def _split_templates(spec: str) -> tuple[str, list[str]]:
    path, sep, templates = spec.partition("#")
    if sep and not templates.strip():
        raise ConfigError(f"corpus '{spec}': nothing after '#' (write FILE#{{field}} {{field}}|...)")
    return path, templates.split("|") if sep else []


def _templates(spec: str) -> list[str]:
    """The record templates a file corpus names after '#' (none for 'world' and hub corpora)."""
    return [] if spec == "world" or spec.startswith("hf:") else _split_templates(spec)[1]


def _templated(path: Path, records, templates: list[str]) -> list[str]:
    texts = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"{path}: record {i}: a corpus template needs JSON objects")
        for template in templates:
            try:
                texts.append(template.format(**record))
            except KeyError as exc:
                raise DataError(f"{path}: record {i}: field {exc.args[0]!r} (named by the corpus template "
                                f"{template!r}) is missing") from None
            except (IndexError, ValueError) as exc:
                raise ConfigError(f"corpus template {template!r}: {exc}") from None
    return texts


def _file_texts(path: Path, templates: list[str] | None = None) -> list[str]:
    if not path.is_file():
        raise ConfigError(f"corpus file '{path}' does not exist")
    raw = path.read_text(encoding="utf-8")
    if templates and path.suffix not in (".json", ".jsonl"):
        raise ConfigError(f"corpus '{path}': templates after '#' need a .json or .jsonl file of records")
    if path.suffix == ".jsonl":
        from editbench.harness.results import read_jsonl

        if templates:
            return _templated(path, (record for _, record in read_jsonl(path)), templates)
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
        if templates:
            return _templated(path, records, templates)
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
    if spec.startswith("hf:"):
        return spec
    name = _split_templates(spec)[0]
    return data_dir() / name[len(DATA_PREFIX):] if name.startswith(DATA_PREFIX) else Path(name)


def is_corpus_spec(text: str) -> bool:
    """Whether a file setting names a corpus (a `data:` path or records through templates), not a text file."""
    return text.startswith(DATA_PREFIX) or "#" in text


def check_corpus(spec: str, model_dir: str | None) -> None:
    """Fail before a run starts when a corpus file named by `spec` is missing (hub corpora load lazily)."""
    source = corpus_source(spec, model_dir)
    if isinstance(source, Path) and not source.is_file():
        where = f" (the data folder: $EDITBENCH_DATA or {DEFAULT_DATA_DIR})" if spec.startswith(DATA_PREFIX) else ""
        raise ConfigError(f"corpus file '{source}' does not exist{where}")


def corpus_identity(spec: str, model_dir: str | None) -> str:
    """A name for cache keys that changes with a file's content and its templates (hub corpora: their id)."""
    source = corpus_source(spec, model_dir)
    if isinstance(source, Path):
        check_corpus(spec, model_dir)
        digest = hashlib.sha256(source.read_bytes())
        templates = _templates(spec)
        if templates:
            digest.update("\0".join(templates).encode())
        return f"{source.name}-{digest.hexdigest()[:12]}"
    return source.replace("/", "_").replace(":", "_")


def load_corpus(spec: str, model_dir: str | None, n_samples: int, seed: int = 0) -> list[str]:
    """Up to n_samples documents of the corpus, a seeded sample."""
    source = corpus_source(spec, model_dir)
    texts = _file_texts(source, _templates(spec)) if isinstance(source, Path) else _hub_texts(source)
    if not texts:
        raise DataError(f"corpus '{spec}' holds no text")
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    return [texts[i] for i in order[:n_samples]]
