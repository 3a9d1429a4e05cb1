"""Method hyper-parameters: YAML per method x model, per-method overrides of single keys, typed checks."""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from editbench.core import ConfigError, ConfigT, Editor, get_editor_class, setting

HPARAMS_DIR = Path(__file__).resolve().parent.parent / "hparams"


WORLD_KEY = "world"


def hparams_keys(hparams_key: str, model_type: str, protocol: str | None = None) -> list[str]:
    """The YAML names tried for a model, most specific first: `<key>-<protocol>`, `<key>`, and for a
    world of one size (`world-micro`) the world's shared YAMLs after its own (`world-batch`, `world`),
    then the architecture. The world sizes differ in depth and width, so one YAML need not fit all."""
    names = [hparams_key] + ([WORLD_KEY] if hparams_key.startswith(f"{WORLD_KEY}-") else [])
    keys = [k for name in names for k in ([f"{name}-{protocol}"] if protocol else []) + [name]]
    return keys + [model_type]


def hparams_file(method: str, hparams_key: str, model_type: str, protocol: str | None = None) -> Path | None:
    """The method's YAML for this model (the first of `hparams_keys` that exists): by model name first
    (`<name>-<protocol>.yaml` where the best settings differ between protocols, e.g. world-batch.yaml),
    then by architecture."""
    keys = hparams_keys(hparams_key, model_type, protocol)
    folder = HPARAMS_DIR.joinpath(*method.split(":"))  # easyedit:ROME -> hparams/easyedit/ROME
    for key in keys:
        path = folder / f"{key}.yaml"
        if path.exists():
            return path
    return None


def _coerce(config_cls: type, key: str, value: Any) -> Any:
    hint = typing.get_type_hints(config_cls)[key]
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for option in options:
        origin = typing.get_origin(option) or option
        if option is type(None) and value is None:
            return None
        if origin is tuple and isinstance(value, (list, tuple)):
            return tuple(tuple(v) if isinstance(v, list) else v for v in value)  # e.g. [[5, 10], [10, 10]]
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin in (str, bool) and isinstance(value, origin):
            return value
    raise ConfigError(f"{config_cls.__name__}.{key}: {value!r} is not of type {hint}")


# A YAML may carry this mapping: where its values come from (a reference's file, or `editbench tune`'s
# grid, split, budget and chosen cell). It documents the file and never reaches the config.
PROVENANCE_KEY = "provenance"


def build_config(config_cls: type[ConfigT], values: dict[str, Any], source: str) -> ConfigT:
    values = {k: v for k, v in values.items() if k != PROVENANCE_KEY}
    if hasattr(config_cls, "from_mapping"):  # a config whose keys another tool defines (the EasyEdit bridge)
        return getattr(config_cls, "from_mapping")(values, source)
    valid = [f.name for f in dataclasses.fields(config_cls)]
    unknown = [k for k in values if k not in valid]
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)} (valid: {', '.join(valid)})")
    return config_cls(**{k: _coerce(config_cls, k, v) for k, v in values.items()})


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such hparams file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not an hparams file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte offset {exc.start})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of hyper-parameters")
    return data


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def parse_value(raw: str) -> Any:
    """A command-line value read as YAML, except that numbers in any notation are numbers (YAML 1.1
    reads '1e-4' as a string)."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:  # also YAML tags such as !!python/object, which safe_load refuses
        raise ConfigError(f"value {raw!r} cannot be read ({str(exc).splitlines()[0]})") from None
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return float(value)
    return value


def parse_overrides(items: list[str], methods: list[str]) -> dict[str, dict[str, Any]]:
    """`METHOD.KEY=VALUE` strings -> {method: {key: value}}; values are read as YAML scalars/lists."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        head, sep, raw = item.partition("=")
        method, dot, key = head.partition(".")
        if not sep or not dot or not key:
            raise ConfigError(f"{setting('overrides')} {item!r}: expected METHOD.KEY=VALUE")
        if method not in methods:
            raise ConfigError(f"{setting('overrides')} {item!r}: method '{method}' is not in this run (running: {', '.join(methods)})")
        try:
            out.setdefault(method, {})[key] = parse_value(raw)
        except ConfigError as exc:
            raise ConfigError(f"{setting('overrides')} {item!r}: {exc}") from None
    return out


def resolve_config(
    config_cls: type[ConfigT], method: str, hparams_key: str, model_type: str,
    explicit_file: Path | None = None, overrides: dict[str, Any] | None = None, protocol: str | None = None,
) -> tuple[ConfigT, str]:
    """Config from the chosen YAML (or the dataclass defaults when a method has none) plus overrides."""
    path = explicit_file or hparams_file(method, hparams_key, model_type, protocol)
    values = load_yaml(path) if path else {}
    values.update(overrides or {})
    source = str(path) if path else f"{method} defaults"
    return build_config(config_cls, values, source), source


def tuning_note(source: str) -> dict:
    """What results record of a run's hparams: the file, and when `editbench tune` wrote it, whether
    its config passed the single-edit floor (the leaderboard marks a method whose config did not)."""
    path = Path(source)
    if not path.is_file():
        return {"source": source}
    provenance = load_yaml(path).get(PROVENANCE_KEY) or {}
    note: dict[str, Any] = {"source": str(path.relative_to(HPARAMS_DIR)) if path.is_relative_to(HPARAMS_DIR)
                            else str(path)}
    if provenance.get("tool") == "editbench tune" and "floor_passed" in provenance:
        note.update(tuned_on=f"{provenance.get('world')} dev, {provenance.get('protocol')}, "
                             f"{provenance.get('budget')} trials",
                    floor_passed=provenance["floor_passed"], floor_em=provenance.get("chosen_floor_em"),
                    floor_edits=provenance.get("floor_edits"))
    return note


def make_editor(name: str, model=None, hparams: str | Path | None = None, overrides: dict[str, Any] | None = None,
                protocol: str = "sequential", hparams_key: str | None = None,
                model_type: str | None = None) -> tuple[Editor, str]:
    """The one way to make an editor: its class by name, its config from `hparams` (a YAML) or the YAML
    for this model and protocol (hparams_file: by model name, then architecture; the world's without
    a model), `overrides` on top, checked against `model` (a LoadedModel) when one is given. Returns
    the editor and where its config came from. `hparams_key`/`model_type` stand in for a model."""
    cls = get_editor_class(name)
    key = hparams_key or (model.hparams_key if model is not None else "world")
    kind = model_type if model_type is not None else (model.model.config.model_type if model is not None else "")
    config, source = resolve_config(cls.config_class, name, key, kind, Path(hparams) if hparams else None,
                                    overrides, protocol=protocol)
    editor = cls(config)
    if model is not None:
        editor.check_model(model)
    return editor, source
