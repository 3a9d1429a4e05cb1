"""Search spaces: where `editbench tune` looks for a method's hyper-parameters.

Each method declares its space beside its config (methods/*.py, `Editor.search_space`): log-scaled
ranges for continuous knobs, integer ranges, categorical choices, and layers as *relative depth*
(0 = the first block, 1 = the last), so that one space serves the micro, default and large worlds
and a 28-layer real model. Every knob names the reference default the space is centred on, and the
space's `reference_point` is tried first, so a tune never ends worse than the reference it started
from without saying so.

A space samples through a trial object with Optuna's `suggest_float / suggest_int /
suggest_categorical` interface (duck-typed: this module does not import Optuna), and `resolve`
turns the sampled values into config values for a model of `n_layers` blocks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from editbench.core import ConfigError


class Trial(Protocol):
    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...
    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int: ...
    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


@dataclass(frozen=True)
class Knob:
    """One config field the search moves. `reference`: the reference implementation's default (what
    the space is centred on), in the config's own units; `help` says where it comes from."""

    name: str
    reference: Any
    help: str = ""

    def sample(self, trial: Trial, n_layers: int) -> Any:
        raise NotImplementedError

    def reference_param(self, n_layers: int) -> Any:
        """The reference default as the trial parameter that `sample` would return for it."""
        return self.reference

    def value(self, param: Any, n_layers: int) -> Any:
        """The config value of a sampled trial parameter."""
        return param

    def param_of(self, config: dict, n_layers: int) -> Any:
        """The trial parameter whose config value is `config`'s, or OUTSIDE when this knob cannot give
        that value (out of range, not an option)."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {"kind": type(self).__name__, "reference": self.reference, "help": self.help}


OUTSIDE = object()  # a config value that no trial parameter of a knob gives


def _number_in(value: Any, low: float, high: float, integer: bool = False) -> Any:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    return value if ok and not isinstance(value, bool) and low <= value <= high else OUTSIDE


@dataclass(frozen=True)
class LogFloat(Knob):
    low: float = 0.0
    high: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high:
            raise ConfigError(f"search knob {self.name}: log range needs 0 < low < high, got {self.low}, {self.high}")

    def sample(self, trial: Trial, n_layers: int) -> float:
        return trial.suggest_float(self.name, self.low, self.high, log=True)

    def value(self, param: float, n_layers: int) -> float:
        return float(f"{param:.3g}")  # three significant digits: what a YAML should hold

    def param_of(self, config: dict, n_layers: int) -> Any:
        return _number_in(config.get(self.name), self.low, self.high)

    def describe(self) -> dict:
        return {**super().describe(), "low": self.low, "high": self.high, "log": True}


@dataclass(frozen=True)
class Float(Knob):
    low: float = 0.0
    high: float = 1.0

    def sample(self, trial: Trial, n_layers: int) -> float:
        return trial.suggest_float(self.name, self.low, self.high)

    def value(self, param: float, n_layers: int) -> float:
        return float(f"{param:.3g}")

    def param_of(self, config: dict, n_layers: int) -> Any:
        return _number_in(config.get(self.name), self.low, self.high)

    def describe(self) -> dict:
        return {**super().describe(), "low": self.low, "high": self.high}


@dataclass(frozen=True)
class Int(Knob):
    low: int = 1
    high: int = 1
    log: bool = False

    def sample(self, trial: Trial, n_layers: int) -> int:
        return trial.suggest_int(self.name, self.low, self.high, log=self.log)

    def param_of(self, config: dict, n_layers: int) -> Any:
        return _number_in(config.get(self.name), self.low, self.high, integer=True)

    def describe(self) -> dict:
        return {**super().describe(), "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class Choice(Knob):
    """Categorical. Tuples (e.g. projections) are offered to the sampler as comma-joined strings.
    With `fields`, each option is a tuple that sets those config fields together (values that are
    only valid in pairs, such as WISE's shard size and merge period)."""

    options: tuple = ()
    fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.fields and not all(isinstance(o, tuple) and len(o) == len(self.fields) for o in self.options):
            raise ConfigError(f"search knob {self.name}: every option must give one value per field {self.fields}")

    def _encode(self, option: Any) -> Any:
        return ",".join(map(str, option)) if isinstance(option, tuple) else option

    def sample(self, trial: Trial, n_layers: int) -> Any:
        return trial.suggest_categorical(self.name, [self._encode(o) for o in self.options])

    def reference_param(self, n_layers: int) -> Any:
        return self._encode(self.reference)

    def value(self, param: Any, n_layers: int) -> Any:
        decoded = {self._encode(o): o for o in self.options}
        if param not in decoded:
            raise ConfigError(f"search knob {self.name}: {param!r} is not one of its options")
        return decoded[param]

    def param_of(self, config: dict, n_layers: int) -> Any:
        value = tuple(config.get(f) for f in self.fields) if self.fields else config.get(self.name)
        value = tuple(value) if isinstance(value, list) else value  # a YAML list is a tuple option
        return self._encode(value) if value in self.options else OUTSIDE

    def describe(self) -> dict:
        described = {**super().describe(), "options": [list(o) if isinstance(o, tuple) else o for o in self.options]}
        return {**described, "fields": list(self.fields)} if self.fields else described


def depth_to_layer(depth: float, n_layers: int) -> int:
    """Relative depth in [0, 1] -> a block index of a model with n_layers blocks (0 first, 1 last)."""
    return min(n_layers - 1, max(0, round(depth * (n_layers - 1))))


def layer_range(low: float, high: float, n_layers: int, spare_last: int) -> tuple[int, int]:
    """The block indices between two relative depths, never among the last `spare_last` blocks."""
    top = n_layers - 1 - spare_last
    return min(top, depth_to_layer(low, n_layers)), min(top, depth_to_layer(high, n_layers))


@dataclass(frozen=True)
class Layer(Knob):
    """One block, searched between relative depths `low` and `high` (as indices of this model: the
    sampler sees integers, so a 4-layer world has at most 4 values to try). `reference`: a depth."""

    low: float = 0.0
    high: float = 1.0
    as_tuple: bool = False  # the config field holds a tuple of layers (ROME's `layers`)
    # final blocks never edited: an edit written at the subject's position reaches the answer only
    # through attention in later blocks (locate-then-edit methods: 1; in the last block it does nothing)
    spare_last: int = 0

    def _range(self, n_layers: int) -> tuple[int, int]:
        return layer_range(self.low, self.high, n_layers, self.spare_last)

    def sample(self, trial: Trial, n_layers: int) -> int:
        low, high = self._range(n_layers)
        return trial.suggest_int(self.name, low, high)

    def reference_param(self, n_layers: int) -> int:
        low, high = self._range(n_layers)
        return min(high, max(low, depth_to_layer(self.reference, n_layers)))

    def value(self, param: int, n_layers: int) -> Any:
        return (int(param),) if self.as_tuple else int(param)

    def param_of(self, config: dict, n_layers: int) -> Any:
        value = config.get(self.name)
        if self.as_tuple:
            value = value[0] if isinstance(value, (list, tuple)) and len(value) == 1 else OUTSIDE
        return OUTSIDE if value is OUTSIDE else _number_in(value, *self._range(n_layers), integer=True)

    def describe(self) -> dict:
        return {**super().describe(), "depth_low": self.low, "depth_high": self.high, "spare_last": self.spare_last}


@dataclass(frozen=True)
class LayerSpan(Knob):
    """Consecutive blocks (MEMIT's and AlphaEdit's `layers`): the first searched between relative
    depths `low` and `high`, the count between `min_width` and `max_width` (cut at the last block).
    `reference`: (depth of the first, count). Two trial parameters: `<name>_first`, `<name>_width`."""

    low: float = 0.0
    high: float = 1.0
    min_width: int = 1
    max_width: int = 1
    spare_last: int = 0  # final blocks the span never reaches (see Layer)

    def _top(self, n_layers: int) -> int:
        return n_layers - 1 - self.spare_last

    def _first_range(self, n_layers: int) -> tuple[int, int]:
        return layer_range(self.low, self.high, n_layers, self.spare_last)

    def sample(self, trial: Trial, n_layers: int) -> tuple[int, int]:
        first = trial.suggest_int(f"{self.name}_first", *self._first_range(n_layers))
        width = trial.suggest_int(f"{self.name}_width", self.min_width, self.max_width)
        return first, width

    def reference_param(self, n_layers: int) -> dict:
        depth, width = self.reference
        low, high = self._first_range(n_layers)
        first = min(high, max(low, depth_to_layer(depth, n_layers)))
        return {f"{self.name}_first": first, f"{self.name}_width": min(self.max_width, max(self.min_width, width))}

    def value(self, param: tuple[int, int], n_layers: int) -> tuple[int, ...]:
        first, width = param
        return tuple(range(first, min(self._top(n_layers) + 1, first + width)))  # cut at the last block allowed

    def param_of(self, config: dict, n_layers: int) -> Any:
        layers = tuple(config.get(self.name) or ())
        if not layers or _number_in(layers[0], *self._first_range(n_layers), integer=True) is OUTSIDE:
            return OUTSIDE
        width = len(layers)
        if not self.min_width <= width <= self.max_width or self.value((layers[0], width), n_layers) != layers:
            return OUTSIDE  # not consecutive, or past the last block the span may reach
        return {f"{self.name}_first": layers[0], f"{self.name}_width": width}

    def describe(self) -> dict:
        return {**super().describe(), "reference": list(self.reference), "depth_low": self.low,
                "depth_high": self.high, "width": [self.min_width, self.max_width], "spare_last": self.spare_last}


@dataclass(frozen=True)
class SearchSpace:
    """A method's knobs, and the reference (paper or code) whose defaults the space is centred on."""

    reference: str
    knobs: tuple[Knob, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        names = [k.name for k in self.knobs]
        if len(set(names)) != len(names):
            raise ConfigError(f"search space repeats a knob: {names}")

    @property
    def names(self) -> list[str]:
        return [k.name for k in self.knobs]

    @property
    def fields(self) -> list[str]:
        """The config fields the space sets (a paired knob sets several)."""
        return [f for k in self.knobs for f in (getattr(k, "fields", ()) or (k.name,))]

    def sample(self, trial: Trial, n_layers: int) -> dict[str, Any]:
        """Config values for one trial (fields of the method's config)."""
        values: dict[str, Any] = {}
        for knob in self.knobs:
            value = knob.value(knob.sample(trial, n_layers), n_layers)
            fields = getattr(knob, "fields", ())
            values.update(dict(zip(fields, value)) if fields else {knob.name: value})
        return values

    def reference_params(self, n_layers: int) -> dict[str, Any]:
        """The trial parameters of the reference point (for Optuna's `enqueue_trial`)."""
        return _joined(self.knobs, [knob.reference_param(n_layers) for knob in self.knobs])

    def values_of(self, params: dict[str, Any], n_layers: int) -> dict[str, Any]:
        """The config values that these trial parameters give (what `sample` returns for them)."""
        return self.sample(_FixedTrial(params), n_layers)

    def params_of(self, config: dict, n_layers: int) -> dict[str, Any] | None:
        """The trial parameters that give `config`'s values of every knob (for `enqueue_trial`: a
        config from a YAML tried as it is), or None when some value lies outside the space."""
        params = [knob.param_of(config, n_layers) for knob in self.knobs]
        return None if any(p is OUTSIDE for p in params) else _joined(self.knobs, params)

    def describe(self) -> dict:
        return {"reference": self.reference, "knobs": {k.name: k.describe() for k in self.knobs}}


def _joined(knobs: Sequence[Knob], params: list[Any]) -> dict[str, Any]:
    """One dict of trial parameters from each knob's own (a knob with several gives a dict)."""
    out: dict[str, Any] = {}
    for knob, param in zip(knobs, params):
        out.update(param if isinstance(param, dict) else {knob.name: param})
    return out


class _FixedTrial:
    """A trial whose every suggestion is given (Optuna's FixedTrial, without importing Optuna)."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        return self.params[name]

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int:
        return self.params[name]

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self.params[name]
