"""The bottom layer: edit requests, interventions (weight deltas, module patches), the Editor
interface and its registry.

Everything else in editbench depends on this module; it depends on nothing of editbench.
"""
from __future__ import annotations

import abc
import dataclasses
import importlib
import math
import pkgutil
import re
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, ClassVar, Generic, Sequence, TypeVar

import torch

ENTRY_POINT_GROUP = "editbench.editors"

# The built-in editors: nothing is imported at import time; every module of this package's `methods` folder is imported once, before the
# first lookup, and registers its editors itself (@register_editor); a new editor is one new file.
BUILTIN_EDITOR_PACKAGE = "editbench.methods"
# Families of editors named FAMILY:MEMBER, made on first use by the module's editor_class(MEMBER):
# easyedit:ROME runs EasyEdit's own ROME (methods/easyedit_bridge.py).
EDITOR_FAMILIES = {"easyedit": "editbench.methods.easyedit_bridge"}


class EditbenchError(Exception):
    """A user-facing error: its message is printed as one line and the CLI exits with code 2.

    A message names a run setting through `setting(name)`, never as a command-line flag: each front
    end shows the name its own way (`render`: the CLI writes a flag); str() shows `name`, the
    keyword of the run plan and of the Python API."""

    def __str__(self) -> str:
        return self.render(lambda name: f"`{name}`")

    def render(self, show: "Callable[[str], str]") -> str:
        """The message with each setting shown by `show(name)`."""
        return render_settings(super().__str__(), show)


_SETTING = re.compile(r"\u27e8([a-z_]+)\u27e9")  # ⟨name⟩


def render_settings(text: str, show: "Callable[[str], str]") -> str:
    """Text that names settings through `setting(name)`, with each shown by `show(name)`."""
    return _SETTING.sub(lambda m: show(m.group(1)), text)


def setting(name: str) -> str:
    """A run setting (a plan field such as `truncate`, `exam_mode`, `out`) named in an error message."""
    return f"\u27e8{name}\u27e9"


class ConfigError(EditbenchError, ValueError):
    pass


class DataError(EditbenchError, ValueError):
    pass


class InvalidDeltaError(EditbenchError, ValueError):
    """An editor produced an update that must not be applied (non-finite, unknown or misshapen)."""


# --------------------------------------------------------------------------- requests


GROUP_NAME = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")


def _require(ok: bool, record: str, field_name: str, why: str) -> None:
    if not ok:
        raise DataError(f"{record}: field '{field_name}' {why}")


@dataclass(frozen=True)
class EditRequest:
    """One fact to write into the model: after `prompt` the model should say `target_new`."""

    case_id: str
    prompt: str
    subject: str
    target_new: str
    target_true: str | None = None
    rephrase_prompts: tuple[str, ...] = ()
    locality: tuple[tuple[str, str], ...] = ()
    portability: tuple[tuple[str, str], ...] = ()
    # optional name per locality / portability pair (e.g. 'neighbourhood', 'two_hop', 'alias'): each
    # group is also scored on its own; empty, or one lower-case name per pair
    locality_groups: tuple[str, ...] = ()
    portability_groups: tuple[str, ...] = ()
    source: str = ""  # file or benchmark the record came from, for error messages
    truncated_tokens: int = 0  # prompt tokens cut to fit the model's context (truncate 'left')

    def __post_init__(self) -> None:
        where = f"{self.source or 'request'} record {self.case_id!r}"
        _require(isinstance(self.prompt, str) and self.prompt.strip() != "", where, "prompt", "is empty")
        _require(isinstance(self.subject, str) and self.subject.strip() != "", where, "subject", "is empty")
        _require(
            self.subject in self.prompt, where, "subject", f"{self.subject!r} does not occur in prompt {self.prompt!r}"
        )
        _require(isinstance(self.target_new, str) and self.target_new.strip() != "", where, "target_new", "is empty")
        if self.target_true is not None:
            _require(isinstance(self.target_true, str), where, "target_true", "is not a string")
        for name in ("rephrase_prompts", "locality", "portability"):
            _require(isinstance(getattr(self, name), tuple), where, name, "must be a tuple")
        for text in self.rephrase_prompts:
            _require(isinstance(text, str) and text.strip() != "", where, "rephrase_prompts",
                     f"must hold non-empty strings, got {text!r}")
        for name in ("locality", "portability"):
            for pair in getattr(self, name):
                _require(
                    len(pair) == 2 and all(isinstance(x, str) and x.strip() for x in pair),
                    where,
                    name,
                    "must hold non-empty (prompt, answer) pairs",
                )
            groups = getattr(self, f"{name}_groups")
            _require(isinstance(groups, tuple) and (not groups or len(groups) == len(getattr(self, name))),
                     where, f"{name}_groups", f"must be empty or name each of the {len(getattr(self, name))} pairs")
            for group in groups:
                _require(isinstance(group, str) and GROUP_NAME.fullmatch(group) is not None, where,
                         f"{name}_groups", f"names must be lower-case words joined by '_', got {group!r}")


@dataclass(frozen=True)
class ExamQuestion:
    """A multiple-choice question in C-Eval layout (options A-D, answer is a letter)."""

    qid: str
    question: str
    options: tuple[str, ...]
    answer: str
    subject: str = ""
    category: str = ""
    # Letter scoring: the whole prompt (instructions, k-shot examples, this question, the answer cue)
    # and what joins the cue to the letter (" " after "Answer:", "" after C-Eval's "答案：").
    prompt: str = ""
    letter_sep: str = " "

    @staticmethod
    def where(qid: str) -> str:
        """How a question names itself in errors (a loader that knows the file and row says those)."""
        return f"exam question {qid!r}"

    def __post_init__(self) -> None:
        where = self.where(self.qid)
        letters = "ABCDEFGH"[: len(self.options)]
        _require(self.question.strip() != "", where, "question", "is empty")
        _require(len(self.options) >= 2, where, "options", "needs at least two options")
        _require(self.answer in letters, where, "answer", f"must be one of {', '.join(letters)}, got {self.answer!r}")

    @property
    def answer_index(self) -> int:
        return "ABCDEFGH".index(self.answer)


# --------------------------------------------------------------------------- interventions


class Intervention(abc.ABC):
    """What one editor call returns: a change the runner validates, commits, removes exactly (back to
    θ₀), saves at checkpoints and restores on resume, without knowing which method made it.

    Kinds: `WeightDelta` (added to parameters in place: ROME, MEMIT, fine-tuning), `ModulePatch`
    (an adaptor with its own tensors rewriting one module's output, every weight untouched: GRACE's
    codebook, a side memory) and `ContextPatch` (what the model is shown before each scored question
    changes, the model does not: retrieval of the edited facts). `info` holds one dict per request
    (objective before/after, steps)."""

    kind: ClassVar[str] = ""
    info: list[dict[str, Any]]

    @abc.abstractmethod
    def validate(self, model: torch.nn.Module) -> None:
        """Raise InvalidDeltaError if this cannot be committed to `model` (unknown module or parameter,
        wrong shape, non-finite values)."""

    @abc.abstractmethod
    def commit(self, applied: Any, model: torch.nn.Module) -> None:
        """Make the change on `model`, after telling `applied` (the runner's record of what differs from
        θ₀: harness/interventions.Applied) what it needs to undo it."""

    @abc.abstractmethod
    def changes_model(self) -> bool:
        """False when committing this would leave the model as it was (recorded as a no-op call)."""

    def weight_tensors(self) -> dict[str, torch.Tensor]:
        """The parameter updates in it, for the guard's bound on update norms (none for a patch)."""
        return {}


@dataclass
class WeightDelta(Intervention):
    """Additive update: parameter name -> tensor to add. `info` holds one dict per request."""

    kind: ClassVar[str] = "weights"
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    info: list[dict[str, Any]] = field(default_factory=list)

    def commit(self, applied: Any, model: torch.nn.Module) -> None:
        applied.remember(self.tensors)  # a parameter not touched before still holds θ₀
        self.apply(model, validated=True)

    def changes_model(self) -> bool:
        # any nonzero entry (no float64 copy of a 7B model's MLP update, as a norm would take)
        return any(bool(t.any()) for t in self.tensors.values())

    def weight_tensors(self) -> dict[str, torch.Tensor]:
        return self.tensors

    def validate(self, model: torch.nn.Module) -> None:
        params = dict(model.named_parameters())
        for name, delta in self.tensors.items():
            if name not in params:
                raise InvalidDeltaError(f"delta names unknown parameter '{name}'")
            if tuple(delta.shape) != tuple(params[name].shape):
                raise InvalidDeltaError(
                    f"delta for '{name}' has shape {tuple(delta.shape)}, parameter has {tuple(params[name].shape)}"
                )
            if not torch.isfinite(delta).all():
                raise InvalidDeltaError(f"delta for '{name}' has non-finite values")

    @torch.no_grad()
    def apply(self, model: torch.nn.Module, sign: float = 1.0, validated: bool = False) -> None:
        if not validated:  # a bad delta is never applied
            self.validate(model)
        params = dict(model.named_parameters())
        for name, delta in self.tensors.items():
            p = params[name]
            p.add_(delta.to(device=p.device, dtype=p.dtype), alpha=sign)

    def norm(self) -> float:
        return math.sqrt(sum(float(t.double().pow(2).sum()) for t in self.tensors.values()))


class _Rebuilt:
    """Made from `settings` (JSON values) and named tensors only, so a saved patch is rebuilt exactly
    on resume. Registered by kind (`register_adaptor`), as editors are by name."""

    kind: ClassVar[str] = ""

    def __init__(self, settings: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.settings = settings
        self.tensors = tensors


class Adaptor(_Rebuilt, abc.ABC):
    """What a `ModulePatch` installs on a module: output = adaptor(module input, module output)."""

    @abc.abstractmethod
    def __call__(self, inputs: torch.Tensor, output: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The patched output, given the module's first input [batch, tokens, d_in], its own output and
        the pass's attention mask for those tokens ([batch, tokens], 1 = a real token; None: all real)."""


class ContextAdaptor(_Rebuilt, abc.ABC):
    """What a `ContextPatch` installs: the text a model is shown for each question it is scored on."""

    def __init__(self, settings: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        super().__init__(settings, tensors)
        self.shown: dict[str, list[str]] = {}  # question -> what was put before it (the drill-down)

    @abc.abstractmethod
    def contexts(self, lm: Any, questions: Sequence[str]) -> list[str]:
        """Each question as the model sees it (with whatever this adaptor puts before it)."""


T = TypeVar("T")


class Registry(Generic[T]):
    """Names to objects, each registered once: the one registry behind every extension point (editors,
    module-patch adaptors, metrics). Registering a second, different object under a name is an error;
    the same object again is a no-op (a module imported twice)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, T] = {}

    def add(self, name: str, obj: T) -> T:
        if name in self._items and self._items[name] is not obj:
            raise ConfigError(f"{self.what} '{name}' is registered twice "
                              f"({_origin(self._items[name])}, {_origin(obj)})")
        self._items[name] = obj
        return obj

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ConfigError(f"unknown {self.what} '{name}' (known: {', '.join(sorted(self._items)) or 'none'})")
        return self._items[name]

    def remove(self, name: str) -> None:
        self._items.pop(name, None)

    def names(self) -> list[str]:
        """In registration order."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


def _origin(obj: object) -> str:
    return getattr(obj, "__module__", None) or type(obj).__module__


ADAPTORS: Registry[type] = Registry("module-patch adaptor")


def register_adaptor(kind: str):
    def decorate(cls: type) -> type:
        ADAPTORS.add(kind, cls)
        setattr(cls, "kind", kind)  # what its patches are saved under (harness/store.py)
        return cls

    return decorate


def adaptor_class(kind: str) -> type:
    _load_plugins()  # a resumed run may rebuild a patch before its editor's module was imported
    return ADAPTORS.get(kind)


@dataclass
class _AdaptorPatch(Intervention):
    """A patch made of a registered adaptor kind, its settings and its tensors: the whole patch after
    this call (it replaces the one in force; an editor keeps its memory as its own state and returns
    it whole), so taking it off puts the model back exactly. No parameter changes."""

    adaptor: str = ""  # registered adaptor kind
    settings: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    info: list[dict[str, Any]] = field(default_factory=list)

    def _check_tensors(self) -> None:
        for name, tensor in self.tensors.items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise InvalidDeltaError(f"{self.kind} patch '{self.adaptor}' tensor '{name}' has non-finite values")

    def build(self):
        return adaptor_class(self.adaptor)(self.settings, self.tensors)

    def changes_model(self) -> bool:
        return any(t.numel() for t in self.tensors.values())


@dataclass
class ModulePatch(_AdaptorPatch):
    """One module's output rewritten by an `Adaptor` (a forward hook; the module's weights untouched)."""

    kind: ClassVar[str] = "module"
    module: str = ""  # dotted path of the patched module (model.get_submodule)

    def validate(self, model: torch.nn.Module) -> None:
        try:
            model.get_submodule(self.module)
        except AttributeError:
            raise InvalidDeltaError(f"module patch names unknown module '{self.module}'") from None
        if not issubclass(adaptor_class(self.adaptor), Adaptor):
            raise InvalidDeltaError(f"module patch names '{self.adaptor}', which is not a module adaptor")
        self._check_tensors()

    def commit(self, applied: Any, model: torch.nn.Module) -> None:
        applied.install(self)


@dataclass
class ContextPatch(_AdaptorPatch):
    """What scoring shows the model before each edit question: `adaptor.contexts(lm, questions)`
    instead of the bare questions. No parameter, no module."""

    kind: ClassVar[str] = "context"

    def validate(self, model: torch.nn.Module) -> None:
        if not issubclass(adaptor_class(self.adaptor), ContextAdaptor):
            raise InvalidDeltaError(f"context patch names '{self.adaptor}', which is not a context adaptor")
        self._check_tensors()

    def commit(self, applied: Any, model: torch.nn.Module) -> None:
        applied.set_context(self)


def texts_to_tensors(texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Strings as tensors (for editor state and checkpoints, which hold tensors only): their UTF-8
    bytes end to end, and each string's end offset."""
    encoded = [t.encode("utf-8") for t in texts]
    ends = torch.tensor([0] + [len(b) for b in encoded], dtype=torch.long).cumsum(0)[1:]
    data = torch.frombuffer(bytearray(b"".join(encoded)), dtype=torch.uint8) if any(encoded) else \
        torch.empty(0, dtype=torch.uint8)
    return data.clone(), ends


def tensors_to_texts(data: torch.Tensor, ends: torch.Tensor) -> list[str]:
    raw = bytes(data.to("cpu").tolist())
    starts = [0] + ends.tolist()[:-1]
    return [raw[a:b].decode("utf-8") for a, b in zip(starts, ends.tolist())]


# --------------------------------------------------------------------------- editors


def nest_state(flat: dict[str, torch.Tensor], groups: Sequence[str]) -> dict[str, dict[str, torch.Tensor]]:
    """{'adapter/x': t} -> {'adapter': {'x': t}}: the flat names of `Editor.state_dict` by group."""
    out: dict[str, dict[str, torch.Tensor]] = {g: {} for g in groups}
    for key, value in flat.items():
        group, sep, name = key.partition("/")
        if not sep or group not in out:
            raise ConfigError(f"saved editor state has an unexpected entry '{key}' (groups: {', '.join(groups)})")
        out[group][name] = value
    return out


def flatten_state(groups: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {f"{group}/{name}": t for group, tensors in groups.items() for name, t in tensors.items()}


@dataclass(frozen=True)
class EditorConfig:
    """Base of every method's frozen config. Subclasses add fields and range checks in `check`."""

    batch_size: int = 1

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # no config number may be inf or NaN (YAML reads .inf)
            value = getattr(self, f.name)
            check_range(self, f.name, all(_finite(v) for v in _numbers_in(value)), "finite numbers")
        check_range(self, "batch_size", self.batch_size >= 1, ">= 1")
        self.check()

    def check(self) -> None:
        """Raise ConfigError (via check_range) for out-of-range fields."""

    def replace(self, **changes: Any) -> "EditorConfig":
        return dataclasses.replace(self, **changes)


def _numbers_in(value: Any):
    if isinstance(value, (tuple, list)):
        for item in value:
            yield from _numbers_in(item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


def _finite(value: float) -> bool:
    return math.isfinite(value) if isinstance(value, float) else True


def check_range(config: Any, name: str, ok: bool, valid: str) -> None:
    if not ok:
        raise ConfigError(f"{type(config).__name__}.{name}={getattr(config, name)!r} is out of range (valid: {valid})")


ConfigT = TypeVar("ConfigT", bound="EditorConfig")


class Editor(abc.ABC, Generic[ConfigT]):
    """A knowledge editor. `edit` computes an update; it must leave the model exactly as it found it.

    Generic over its config class (`class ROME(LocateEditor[ROMEConfig])`), so `self.config`'s fields
    are typed where the editor reads them."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[EditorConfig]] = EditorConfig
    # An editor that is meant to change weights: a call that changes none is recorded `no-op`, not
    # `ok` (a search that diverged and was silently zeroed looks exactly like that). The no-edit
    # baseline says False.
    writes_weights: ClassVar[bool] = True
    # What its calls return (an Intervention kind): 'weights' (WeightDelta), 'module' (ModulePatch) or
    # 'context' (ContextPatch).
    # Only weights can be saved as a model (save_model); a patch lives in the run's checkpoints.
    intervention: ClassVar[str] = WeightDelta.kind
    # Where `editbench tune` searches this editor's config (harness/search.py: a SearchSpace), declared
    # beside the config; None: nothing to tune (the no-edit baseline, bridged editors).
    search_space: ClassVar[Any] = None

    def __init__(self, config: ConfigT | None = None) -> None:
        self.config: ConfigT = config if config is not None else self.config_class()  # type: ignore[assignment]
        self.reset_state()  # an editor with cross-call state starts with none

    def check_model(self, lm: Any) -> None:
        """Raise ConfigError if this config cannot work on `lm` (layer out of range, unknown module).

        Called before a run starts, so a bad setting fails before anything is computed or written.
        """

    def reset_state(self) -> None:
        """Forget whatever this editor keeps across `edit` calls (a continual adapter, a cumulative
        merge's fine-tuned weights). `Editor.__init__` calls it once (after setting `config`), so the
        state is set up here, not in a constructor; the runner calls it when a run starts and whenever
        its protocol puts the weights back to θ₀. Editors without cross-call state need not override it."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What this editor keeps across `edit` calls, as named tensors, so a run interrupted after a
        checkpoint can continue exactly (see harness/store.py). Stateless editors keep nothing."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Take back what `state_dict` returned (called after `reset_state`)."""
        if state:
            raise ConfigError(f"editor '{self.name}' keeps no state across calls, but was handed {sorted(state)[:3]}")

    def prepare(self, lm: Any, cache: dict) -> None:
        """Fill the run's cache with what depends only on the unedited model (key statistics, context
        templates). The runner calls it once on θ₀ before the first edit, so an interrupted run that is
        resumed on edited weights finds the same cache as an uninterrupted one."""

    @abc.abstractmethod
    def edit(self, lm: Any, requests: Sequence[EditRequest], cache: dict | None = None) -> Intervention:
        """Return the intervention that writes `requests` into `lm.model` (lm: harness.models.LoadedModel).

        `cache` is owned by the caller (the runner) and survives across calls of one run; it holds
        what depends only on the unedited model (key statistics, context templates). State that
        depends on earlier edits belongs to the editor itself (see `reset_state`).
        """


EDITORS: Registry[type[Editor]] = Registry("editor")
_plugins_loaded = False


def register_editor(name: str):
    def decorate(cls: type[Editor]) -> type[Editor]:
        EDITORS.add(name, cls)
        cls.name = name
        return cls

    return decorate


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    package = importlib.import_module(BUILTIN_EDITOR_PACKAGE)
    families = set(EDITOR_FAMILIES.values())  # made on first use of FAMILY:MEMBER, not here
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if f"{BUILTIN_EDITOR_PACKAGE}.{info.name}" not in families:
            importlib.import_module(f"{BUILTIN_EDITOR_PACKAGE}.{info.name}")
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        obj = ep.load()  # importing the module runs its @register_editor
        if isinstance(obj, type) and issubclass(obj, Editor) and ep.name not in EDITORS:
            register_editor(ep.name)(obj)


def editor_names() -> list[str]:
    """The registered editors (family members made on demand, such as easyedit:ROME, left out)."""
    _load_plugins()
    return sorted(n for n in EDITORS.names() if ":" not in n)


def registered_names() -> set[str]:
    """Every name registered so far (family members such as easyedit:ROME appear once first used)."""
    return set(EDITORS.names())


def get_editor_class(name: str) -> type[Editor]:
    _load_plugins()
    family, sep, member = name.partition(":")
    if sep and name not in EDITORS:
        if family not in EDITOR_FAMILIES:
            raise ConfigError(f"unknown method family '{family}' in '{name}' (valid: {', '.join(EDITOR_FAMILIES)})")
        return importlib.import_module(EDITOR_FAMILIES[family]).editor_class(member)
    if name not in EDITORS:
        raise ConfigError(f"unknown method '{name}' (valid: {', '.join(sorted(EDITORS.names()))}, or easyedit:ALGO)")
    return EDITORS.get(name)
