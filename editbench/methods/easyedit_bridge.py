"""`easyedit:ALGO`: EasyEdit's own editors (the `easyeditor` package, unmodified) inside editbench's runner.

Each call hands the batch to EasyEdit's `apply_<algo>_to_model`, which edits the weights in place
and returns their original values; the bridge turns that into a `WeightDelta` and puts the weights
back, so every metric, protocol, report and regression check applies unchanged.

What the bridge takes care of, and why:
- Only the algorithm's own modules are imported, from the source tree, under a private package
  name (`easyeditor/__init__.py` imports every editor and the multimodal stack: timm, torchvision,
  opencv, qwen_vl_utils). Each editor instance loads its own copy, so EasyEdit's module-global
  caches (context templates, covariances, AlphaEdit's P and key cache) belong to that editor, and
  its modules are in `sys.modules` only while EasyEdit runs: afterwards `sys.modules` is as it was.
- EasyEdit reads key statistics from `stats_dir` or computes them from Wikipedia (online). When
  its file is missing, the bridge writes editbench's own statistics for the same layer, corpus and
  sample count into EasyEdit's cache format (so both sides use the same C); the corpus is the one
  editbench's MEMIT uses on this model (the world's text for a world model).
- EasyEdit's `device` is set to the model's device; AlphaEdit's `P_loc` and the working folder
  (AlphaEdit writes null_space_project.pt into it) are a private temporary folder.
- GRACE wraps a layer with a codebook (a change of structure, not of weights): the bridge wraps the
  layer with EasyEdit's own GRACEAdapter holding the codebook so far, runs EasyEdit's apply on it,
  takes the codebook back out, puts the original layer back and returns a `ModulePatch` of
  editbench's `grace-codebook` adaptor in EasyEdit's reading (`query: edit_position`, its key_id and
  replacement; a golden test holds that adaptor to GRACEAdapter's forward). WISE likewise: EasyEdit's
  WISEAdapter holds the side memory, shards and thresholds so far, EasyEdit's apply trains it, and
  the bridge returns editbench's `wise-memory` adaptor with those tensors (the same routing rule as
  WISEAdapter's forward on one unpadded sequence; editbench routes each sequence of a batch on its
  own, EasyEdit the whole batch at once).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import io
import os
import re
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from editbench.core import (
    ConfigError,
    Editor,
    EditorConfig,
    Intervention,
    InvalidDeltaError,
    ModulePatch,
    WeightDelta,
    check_range,
    get_editor_class,
    register_editor,
    registered_names,
    setting,
)
from editbench.harness.arch import mlp_proj_path, num_layers
from editbench.harness.hooks import without_output_hooks
from editbench.harness.scoring import encode_prompt_target

@dataclass(frozen=True)
class Algorithm:
    """How the bridge drives one EasyEdit algorithm: where it lives and what sets it apart."""

    package: str  # under easyeditor/models
    hparams_class: str
    apply: str  # its apply_<algo>_to_model function
    one_request_per_call: bool = False  # ROME-like: EasyEdit edits one request per call
    right_padded: bool = False  # EasyEdit's BaseEditor pads on the right for it (its index arithmetic assumes it)
    stats_layers: str | None = None  # the hparams field naming the layers whose key statistics (C) it reads
    keeps_cache_c: bool = False  # AlphaEdit: a projection cache across calls, which is editor state
    # `apply` names a class whose instance's apply_to_model edits (EasyEdit's *RewriteExecutor)
    executor: bool = False
    # EasyEdit packages whose __init__ imports far more than the algorithm needs: mounted bare
    bare_packages: tuple[str, ...] = ()
    # top-level modules the algorithm's files import but never use (stubbed while mounted)
    unused_imports: tuple[str, ...] = ()
    # what a call returns: "weights" (a WeightDelta) or "codebook" (GRACE's adapter, as a ModulePatch)
    returns: str = "weights"


_LOCATE: dict[str, Any] = dict(right_padded=True, stats_layers="layers")
ALGORITHMS: dict[str, Algorithm] = {
    "ROME": Algorithm("rome", "ROMEHyperParams", "apply_rome_to_model", one_request_per_call=True, **_LOCATE),
    "R-ROME": Algorithm("r_rome", "R_ROMEHyperParams", "apply_r_rome_to_model", one_request_per_call=True, **_LOCATE),
    "MEMIT": Algorithm("memit", "MEMITHyperParams", "apply_memit_to_model", **_LOCATE),
    "AlphaEdit": Algorithm("alphaedit", "AlphaEditHyperParams", "apply_AlphaEdit_to_model", keeps_cache_c=True,
                           **_LOCATE),
    "EMMET": Algorithm("emmet", "EMMETHyperParams", "apply_emmet_to_model", **_LOCATE),
    "PMET": Algorithm("pmet", "PMETHyperParams", "apply_pmet_to_model", **_LOCATE),
    "FT": Algorithm("ft", "FTHyperParams", "apply_ft_to_model"),
    "LoRA": Algorithm("lora", "LoRAHyperParams", "apply_lora_to_model"),
    # ultraedit_main imports hydra and never uses it; its executor re-creates the lifelong normaliser
    # on every call (is_init is never set), unlike XiaojieGu/UltraEdit, which keeps it for the stream
    "ULTRAEDIT": Algorithm("ultraedit", "UltraEditHyperParams", "UltraEditRewriteExecutor", executor=True,
                           bare_packages=(".trainer", ".trainer.algs"), unused_imports=("hydra",)),
    "GRACE": Algorithm("grace", "GraceHyperParams", "apply_grace_to_model", one_request_per_call=True,
                       returns="codebook"),
    # WISE's loss treats the last row of a call as the unrelated text of its one edit
    "WISE": Algorithm("wise", "WISEHyperParams", "apply_wise_to_model", one_request_per_call=True,
                      returns="side memory"),
}
TEMPLATE_CHOICES = ("easyedit", "editbench")
ENV_VAR = "EDITBENCH_EASYEDIT"


# --------------------------------------------------------------------------- finding and loading EasyEdit


def easyedit_root() -> Path:
    """The folder holding `easyeditor/`: $EDITBENCH_EASYEDIT, an installed easyeditor, or the
    `shared/easyedit` tree next to this repository (how tests and CI find it)."""
    env = os.environ.get(ENV_VAR)
    if env:
        root = Path(env)
        if not (root / "easyeditor" / "models").is_dir():
            raise ConfigError(f"${ENV_VAR}={env}: no easyeditor/models folder there (point it at an EasyEdit checkout)")
        return root
    spec = importlib.util.find_spec("easyeditor")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0]).parent
    sibling = Path(__file__).resolve().parents[3] / "shared" / "easyedit"
    if (sibling / "easyeditor" / "models").is_dir():
        return sibling
    raise ConfigError(f"easyedit bridge: EasyEdit not found; set ${ENV_VAR} to an EasyEdit checkout (the folder "
                      "with easyeditor/) or install easyeditor")


def offered_algorithms(root: Path | None) -> list[str]:
    """The algorithm names EasyEdit's own dispatch table (util/alg_dict.py) lists, when readable."""
    try:
        if root is None:
            return []
        text = (root / "easyeditor" / "util" / "alg_dict.py").read_text(encoding="utf-8")
    except OSError:
        return []
    table = text[text.find("ALG_DICT"):]
    return sorted(set(re.findall(r"['\"]([A-Za-z][\w-]*)['\"]\s*:", table[:table.find("}") + 1])))


def canonical_algorithm(name: str) -> str:
    """'rome' -> 'ROME', 'alphaedit' -> 'AlphaEdit'; a one-line error naming the choices otherwise."""
    lookup = {k.lower(): k for k in ALGORITHMS}
    algo = lookup.get(name.lower())
    if algo is None:
        try:
            offered = offered_algorithms(easyedit_root())
        except ConfigError:
            offered = []
        also = f"; EasyEdit also offers {', '.join(a for a in offered if a not in ALGORITHMS)}" if offered else ""
        raise ConfigError(f"unknown EasyEdit algorithm '{name}' (bridged: {', '.join(ALGORITHMS)}{also})")
    return algo


class LoadedEasyEdit:
    """One private copy of the modules an algorithm needs; `mounted()` puts them into sys.modules."""

    def __init__(self, root: Path, algo: str) -> None:
        spec = ALGORITHMS[algo]
        package, hparams_class, apply_name = spec.package, spec.hparams_class, spec.apply
        self.prefix = f"_editbench_easyedit_{hashlib.sha256(str(root).encode()).hexdigest()[:8]}_{id(self):x}"
        self.modules: dict[str, types.ModuleType] = {}
        # packages whose __init__ would import everything are replaced by bare packages (only a
        # search path), so `from ...util import nethook` finds the one file it names
        for sub in ("", ".models", ".util", *spec.bare_packages):
            folder = root / "easyeditor" / sub.strip(".").replace(".", "/") if sub else root / "easyeditor"
            pkg = types.ModuleType(self.prefix + sub)
            pkg.__path__ = [str(folder)]
            pkg.__package__ = self.prefix + sub
            self.modules[self.prefix + sub] = pkg
        for name in spec.unused_imports:
            if importlib.util.find_spec(name) is None:
                self.modules[name] = types.ModuleType(name)
        environ = dict(os.environ)  # GRACE.py sets CUDA_LAUNCH_BLOCKING at import: taken back below
        with self.mounted():
            try:
                module = importlib.import_module(f"{self.prefix}.models.{package}")
            except ModuleNotFoundError as exc:
                missing = (exc.name or "").split(".")[0]
                if missing.startswith("_editbench_easyedit"):
                    raise ConfigError(f"easyedit:{algo}: {root} has no easyeditor/models/{package}") from None
                raise ConfigError(f"easyedit:{algo} needs the Python package '{missing}' (pip install "
                                  f"'editbench[easyedit]' or pip install {missing})") from None
            self.hparams_class = getattr(module, hparams_class)
            self.apply = getattr(module, apply_name)
            if spec.executor:  # one executor per editor: whatever it keeps lives as long as the editor
                self.apply = self.apply().apply_to_model
            self.main_module = sys.modules[self.apply.__module__]
            self.modules.update({k: v for k, v in sys.modules.items() if k.startswith(self.prefix)})
        os.environ.clear()
        os.environ.update(environ)

    @contextlib.contextmanager
    def mounted(self):
        before = {k: sys.modules[k] for k in self.modules if k in sys.modules}
        sys.modules.update(self.modules)
        try:
            yield
        finally:
            for key in [k for k in sys.modules if k.startswith(self.prefix)]:
                self.modules[key] = sys.modules.pop(key)
            for key in [k for k in self.modules if not k.startswith(self.prefix) and k not in before]:
                sys.modules.pop(key, None)  # a stub of an unused import leaves with the mount
            sys.modules.update(before)


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class EasyEditConfig(EditorConfig):
    """The EasyEdit hparams (its YAML, with the run's overrides) plus what the bridge itself decides."""

    algorithm: str = ""
    hparams: tuple[tuple[str, Any], ...] = ()  # EasyEdit's keys and values, in file order
    source: str = ""
    # 'easyedit': EasyEdit generates its own context templates (its defaults); 'editbench': the
    # templates editbench's ROME/MEMIT would use on this model (for an edit-by-edit parity check)
    context_templates: str = "easyedit"
    # corpus of the key statistics written for EasyEdit when its stats file is missing; '' = the
    # corpus editbench's MEMIT uses on this model
    stats_corpus: str = ""

    BRIDGE_KEYS = ("context_templates", "stats_corpus", "batch_size")

    @classmethod
    def from_mapping(cls, values: dict[str, Any], source: str) -> "EasyEditConfig":
        own = {k: values[k] for k in cls.BRIDGE_KEYS if k in values}
        theirs = tuple((k, _freeze(v)) for k, v in values.items() if k not in cls.BRIDGE_KEYS)
        # ALGORITHM: set on each algorithm's config subclass (make_bridge_class)
        return cls(algorithm=getattr(cls, "ALGORITHM"), hparams=theirs, source=source, **own)

    def check(self) -> None:
        check_range(self, "context_templates", self.context_templates in TEMPLATE_CHOICES, ", ".join(TEMPLATE_CHOICES))
        if not self.hparams:
            raise ConfigError(f"easyedit:{self.algorithm} needs EasyEdit's hparams file: {setting('hparams')} "
                              f"path/to/EasyEdit/hparams/{self.algorithm}/MODEL.yaml")
        given = dict(self.hparams).get("alg_name")
        if given is not None and str(given).lower() != self.algorithm.lower():
            raise ConfigError(f"{self.source}: alg_name is {given!r}, not {self.algorithm} (use {setting('method')} "
                              f"easyedit:{given} or EasyEdit's {self.algorithm} hparams)")

    def values(self) -> dict[str, Any]:
        return {k: _thaw(v) for k, v in self.hparams}


def _freeze(value):
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _freeze(v)) for k, v in value.items())
    return value


def _thaw(value):
    return [_thaw(v) for v in value] if isinstance(value, tuple) else value


# --------------------------------------------------------------------------- the editor


class EasyEditEditor(Editor[EasyEditConfig]):
    """Runs one EasyEdit algorithm; concrete classes are made per algorithm by `editor_class`."""

    config_class = EasyEditConfig

    def __init__(self, config: EasyEditConfig | None = None) -> None:
        super().__init__(config)
        self._loaded: LoadedEasyEdit | None = None
        self._hparams = None
        self._workdir = tempfile.TemporaryDirectory(prefix="editbench-easyedit-")

    @property
    def algorithm(self) -> Algorithm:
        return ALGORITHMS[self.config.algorithm]

    # ----- state: AlphaEdit's cross-batch key cache lives in EasyEdit's module globals
    def reset_state(self) -> None:
        self._pending_reset = True  # applied at the next call (the module may not be loaded yet)
        self._restore_cache_c: torch.Tensor | None = None

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self._restore_cache_c is not None:
            return {"easyedit/cache_c": self._restore_cache_c.clone()}
        main = self._loaded.main_module if self._loaded else None
        if self._pending_reset or main is None or not getattr(main, "cache_c_new", False):
            return {}
        return {"easyedit/cache_c": main.cache_c.detach().clone()} if hasattr(main, "cache_c") else {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if not state:
            return
        if set(state) != {"easyedit/cache_c"} or not self.algorithm.keeps_cache_c:
            raise ConfigError(f"easyedit:{self.config.algorithm} cannot take the saved state {sorted(state)[:3]}")
        self._restore_cache_c = state["easyedit/cache_c"]

    def check_model(self, lm) -> None:
        self._easyedit(lm)  # loads the modules and builds EasyEdit's hparams object: bad keys fail here

    def prepare(self, lm, cache) -> None:
        """On θ₀ (the runner calls this before the first edit, and again before a resume puts edited
        weights back): key statistics, and the context templates EasyEdit would otherwise generate
        at its first call, from whatever weights it then sees."""
        self._write_missing_stats(lm, cache)
        self._set_templates(lm, cache)
        loaded, hp = self._easyedit(lm)
        main = loaded.main_module
        if getattr(main, "CONTEXT_TEMPLATES_CACHE", None) is None and hasattr(main, "get_context_templates"):
            takes = inspect.signature(main.get_context_templates).parameters
            extra = [hp.context_template_length_params] if len(takes) > 2 else []
            with loaded.mounted(), _in_folder(self._workdir.name), contextlib.redirect_stdout(io.StringIO()):
                main.get_context_templates(lm.model, lm.tokenizer, *extra)

    def _easyedit(self, lm):
        if self._loaded is None:
            algo = self.config.algorithm
            self._loaded = LoadedEasyEdit(easyedit_root(), algo)
            # what EasyEdit's from_hparams does to a YAML's values: '5e-1' (a string in YAML 1.1) -> 0.5
            values = self._loaded.hparams_class.construct_float_from_scientific_notation(self.config.values())
            fields = {f.name for f in dataclasses.fields(self._loaded.hparams_class)}
            values = self._as_from_hparams(values)
            values.setdefault("alg_name", algo)
            if "device" in fields:
                values["device"] = str(lm.device)  # EasyEdit reads an int as a CUDA index
            if self.algorithm.executor and "batch_size" in fields:  # set to each call's size in edit()
                values["batch_size"] = self.config.batch_size
            if "v_loss_layer" in values and values["v_loss_layer"] is None:  # null: this model's last layer
                values["v_loss_layer"] = num_layers(lm.model) - 1
            if "P_loc" in fields:  # AlphaEdit's P file and the copy it saves go to our private folder
                values["P_loc"] = str(Path(self._workdir.name) / "null_space_project.pt")
            if "stats_dir" in fields:  # relative to where editbench was started (EasyEdit runs elsewhere)
                values["stats_dir"] = str(Path(values.get("stats_dir", "data/stats")).resolve())
            try:
                self._hparams = self._loaded.hparams_class(**values)
            except TypeError as exc:
                raise ConfigError(f"{self.config.source}: EasyEdit's {self._loaded.hparams_class.__name__} "
                                  f"rejects it: {exc}") from None
        return self._loaded, self._hparams

    def _as_from_hparams(self, values: dict) -> dict:
        """What the algorithm's own from_hparams does to a YAML's values beyond the float conversion."""
        return values

    # ----- key statistics in EasyEdit's cache format
    def _stats_files(self, lm) -> dict[int | tuple[int, str], Path]:
        """EasyEdit's stats file of each (layer) it reads, or (layer, module) for a module other than the
        MLP output projection (editbench computes only those)."""
        _, hp = self._easyedit(lm)
        if self.algorithm.stats_layers is None or not getattr(hp, "mom2_adjustment", True):
            return {}
        model_name = str(lm.model.config._name_or_path).rsplit("/")[-1]  # as EasyEdit's layer_stats
        folder = Path(hp.stats_dir) / model_name / f"{hp.mom2_dataset}_stats"
        files: dict[int | tuple[int, str], Path] = {}
        templates = getattr(hp, "rewrite_module_tmps", None) or [hp.rewrite_module_tmp]
        for layer in getattr(hp, self.algorithm.stats_layers):
            for template in templates:
                module = template.format(layer)
                if module != mlp_proj_path(lm.model, layer, "down"):
                    # editbench's statistics are of the MLP output projection's inputs only
                    files[(layer, module)] = folder / f"{module}_{hp.mom2_dtype}_mom2_{hp.mom2_n_samples}.npz"
                    continue
                files[layer] = folder / f"{module}_{hp.mom2_dtype}_mom2_{hp.mom2_n_samples}.npz"
        return files

    def _write_missing_stats(self, lm, cache) -> None:
        """Unless EasyEdit's stats_dir holds every file it will read, point it at editbench's cache
        (per model weights) and write there what is missing."""
        import numpy as np

        from editbench.harness.cache import cache_root
        from editbench.harness.hparams import resolve_config
        from editbench.methods.key_stats import (
            key_statistics,
            weight_fingerprint,
        )
        from editbench.methods.memit import MEMITConfig

        _, hp = self._easyedit(lm)
        if all(p.exists() for p in self._stats_files(lm).values()):
            return
        given = hp.stats_dir
        hp.stats_dir = str(cache_root() / "easyedit-stats" / weight_fingerprint(lm.model)[:16])
        found = {L: p for L, p in self._stats_files(lm).items() if not p.exists()}
        others = [key[1] for key in found if isinstance(key, tuple)]
        missing = {L: p for L, p in found.items() if isinstance(L, int)}
        if others:
            raise ConfigError(f"easyedit:{self.config.algorithm} reads key statistics of {', '.join(others)}, which "
                              f"are not in its stats_dir {given} (EasyEdit computes them from Wikipedia, online) and "
                              "editbench computes them only for MLP output projections")
        if not missing:
            return
        memit, _ = resolve_config(MEMITConfig, "memit", lm.hparams_key, lm.model.config.model_type)
        spec = dataclasses.replace(memit.stats_spec, mom2_n_samples=int(hp.mom2_n_samples),
                                   mom2_corpus=self.config.stats_corpus or memit.stats_spec.mom2_corpus)
        covs = key_statistics(lm, sorted(missing), spec, cache)
        for layer, path in missing.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            moment = covs[layer].detach().cpu().to(getattr(torch, hp.mom2_dtype)).numpy()
            # SecondMoment's state: mom2 / count is the moment EasyEdit uses; sample_size is checked on load
            arrays: dict[str, Any] = {"mom2.constructor": "SecondMoment()", "mom2.count": 1, "mom2.mom2": moment,
                                      "sample_size": int(hp.mom2_n_samples)}
            np.savez(path, **arrays)

    def _set_templates(self, lm, cache) -> None:
        """context_templates: editbench -> put editbench's templates into EasyEdit's template cache."""
        from editbench.harness.hparams import resolve_config
        from editbench.methods.memit import MEMITConfig
        from editbench.methods.rewrite import context_templates
        from editbench.methods.rome import ROMEConfig

        loaded, hp = self._easyedit(lm)
        main = loaded.main_module
        if self.config.context_templates != "editbench" or getattr(main, "CONTEXT_TEMPLATES_CACHE", None):
            return
        one_at_a_time = self.algorithm.one_request_per_call
        ours, _ = resolve_config(ROMEConfig if one_at_a_time else MEMITConfig, "rome" if one_at_a_time else "memit",
                                 lm.hparams_key, lm.model.config.model_type)
        lengths = tuple(tuple(p) for p in getattr(hp, "context_template_length_params", ours.context_template_lengths))
        groups = context_templates(lm, lengths, cache, ours.template_seed, ours.context_template_source)
        # ROME keeps a flat list, MEMIT and AlphaEdit one list per length group
        main.CONTEXT_TEMPLATES_CACHE = [t for g in groups for t in g] if one_at_a_time else [list(g) for g in groups]

    def _request(self, r) -> dict:
        return {"case_id": r.case_id, "prompt": r.prompt, "subject": r.subject, "target_new": r.target_new,
                "ground_truth": r.target_true or "<|endoftext|>", "portability": {}, "locality": {}}

    def edit(self, lm, requests, cache=None) -> Intervention:
        cache = cache if cache is not None else {}
        loaded, hp = self._easyedit(lm)
        if self.algorithm.executor and hasattr(hp, "batch_size"):
            hp.batch_size = len(requests)  # UltraEdit takes exactly its batch_size requests per call
        self._write_missing_stats(lm, cache)
        self._set_templates(lm, cache)
        one_at_a_time = self.algorithm.one_request_per_call
        chunks = [[r] for r in requests] if one_at_a_time else [list(requests)]
        params = dict(lm.model.named_parameters())
        # the weights the algorithm may write (its modules at its layers; every weight when it names none),
        # kept here because not every EasyEdit editor returns them (EMMET drops its copy unless asked)
        originals = {n: params[n].detach().clone() for n in self._writable(params, hp)}
        try:
            with _padded(lm, "right" if self.algorithm.right_padded else "left"), loaded.mounted(), \
                    _in_folder(self._workdir.name), contextlib.redirect_stdout(io.StringIO()):
                self._before_call(loaded.main_module)
                for chunk in chunks:
                    result = loaded.apply(lm.model, lm.tokenizer, [self._request(r) for r in chunk], hp, copy=False,
                                          return_orig_weights=True, keep_original_weight=False)
                    edited, weights_copy = result[0], result[1]
                    if edited is not lm.model and _is_peft(edited):  # LoRA: its adapter, as merged
                        deltas_lora = _lora_deltas(edited)
                        edited.unload()  # takes the adapter layers out without merging them
                        for name, delta in deltas_lora.items():
                            originals.setdefault(name, params[name].detach().clone())
                            with torch.no_grad():
                                params[name].add_(delta.to(params[name].dtype))
                        continue
                    if edited is not lm.model:
                        raise InvalidDeltaError(f"easyedit:{self.config.algorithm} returned a new model object "
                                                "instead of editing the weights in place; not bridged")
                    for name, value in (weights_copy or {}).items():
                        if name not in params:
                            raise InvalidDeltaError(f"easyedit:{self.config.algorithm} changed '{name}', which is "
                                                    "not a parameter of the model")
                        originals.setdefault(name, value.detach().to(params[name].device).clone())
        finally:
            with torch.no_grad():  # the contract: edit() leaves the weights as it found them
                deltas = {n: (params[n].detach() - o).to(params[n].dtype) for n, o in originals.items()
                          if not torch.equal(params[n], o)}
                for name, value in originals.items():
                    params[name].copy_(value)
        return WeightDelta(tensors=deltas, info=[{} for _ in requests])

    @staticmethod
    def _writable(params: dict, hp) -> list[str]:
        templates = getattr(hp, "rewrite_module_tmps", None) or (
            [hp.rewrite_module_tmp] if getattr(hp, "rewrite_module_tmp", None) else [])
        layers = getattr(hp, "layers", None)
        if templates and layers:
            return [name for t in templates for L in layers if (name := f"{t.format(L)}.weight") in params]
        return [] if _peft_algorithm(hp) else list(params)

    def _before_call(self, main) -> None:
        """AlphaEdit's cross-batch cache: start it afresh after a reset, or put a resumed one back."""
        if not self.algorithm.keeps_cache_c:
            return
        restore = self._restore_cache_c
        if restore is not None:
            main.cache_c, main.cache_c_new = restore.clone(), True
            self._restore_cache_c = None
        elif self._pending_reset:
            main.cache_c_new = False
        self._pending_reset = False


def _peft_algorithm(hp) -> bool:
    return str(getattr(hp, "alg_name", "")).lower() in ("lora", "qlora")


def _is_peft(model) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def _lora_deltas(peft_model) -> dict[str, torch.Tensor]:
    """The weight change each LoRA layer stands for (peft's get_delta_weight), by base parameter name."""
    deltas: dict[str, torch.Tensor] = {}
    for name, module in peft_model.named_modules():
        if hasattr(module, "get_delta_weight") and hasattr(module, "base_layer"):
            base_name = name.removeprefix("base_model.model.") + ".weight"
            for adapter in module.active_adapters:
                if adapter in getattr(module, "lora_A", {}):
                    delta = module.get_delta_weight(adapter).detach()
                    deltas[base_name] = deltas[base_name] + delta if base_name in deltas else delta
    return deltas


@contextlib.contextmanager
def _numpy_seeded_from_torch():
    """numpy's global RNG seeded from torch's for the block (which the runner seeds and a checkpoint
    saves, so a resumed run draws the same), and put back as it was after."""
    import numpy as np

    before = np.random.get_state()
    np.random.seed(int(torch.randint(0, 2**31 - 1, (1,))))
    try:
        yield
    finally:
        np.random.set_state(before)


@contextlib.contextmanager
def _in_folder(path: str):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


@contextlib.contextmanager
def _padded(lm, side: str):
    """The tokenizer padding on `side` for the block (as EasyEdit's editor sets it per algorithm)."""
    before, lm.tokenizer.padding_side = lm.tokenizer.padding_side, side
    try:
        yield
    finally:
        lm.tokenizer.padding_side = before


@contextlib.contextmanager
def _layer_put_back(lm, path: str):
    """Yields (parent, attribute, layer) of the module EasyEdit wraps; afterwards the original layer
    object is back in place with its original weight parameter (WISE-Merge assigns a merged one to the
    wrapped layer), every parameter's requires_grad is as before (GRACE and WISE freeze them all), and
    the layer's own hooks (an installed patch of an earlier step) are off while EasyEdit trains: its
    adapter replaces the layer, so nothing sits under it."""
    parent_path, _, attr = path.rpartition(".")
    parent = lm.model.get_submodule(parent_path)
    layer = getattr(parent, attr)
    weight = layer.weight
    flags = {n: p.requires_grad for n, p in lm.model.named_parameters()}
    try:
        with without_output_hooks(layer):
            yield parent, attr, layer
    finally:
        setattr(parent, attr, layer)
        layer.weight = weight
        for name, param in lm.model.named_parameters():
            param.requires_grad_(flags[name])


def inner_module_path(hp) -> str:
    """EasyEdit's inner_params[0] ('model.layers[2].mlp.down_proj.weight') as a module path."""
    name = str(hp.inner_params[0]).replace("[", ".").replace("]", "")
    return name.rsplit(".", 1)[0] if name.endswith((".weight", ".bias")) else name


class EasyEditGRACE(EasyEditEditor):
    """EasyEdit's GRACE: its GRACEAdapter and its training loop, with the codebook kept between calls
    as this editor's state (EasyEdit keeps it in the wrapped model, which the runner does not)."""

    intervention = ModulePatch.kind
    LABEL_PAD = -200  # pads the stored label rows (EasyEdit's labels hold token ids and -100)

    def reset_state(self) -> None:
        super().reset_state()
        self._codebook: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self._codebook is None:
            return {}
        book = self._codebook
        rows = book["labels"]
        width = max(r.shape[-1] for r in rows)
        labels = torch.full((len(rows), width), self.LABEL_PAD, dtype=torch.long)
        for i, row in enumerate(rows):
            labels[i, :row.shape[-1]] = row.reshape(-1).cpu()
        return {"easyedit/grace/keys": book["keys"], "easyedit/grace/values": book["values"],
                "easyedit/grace/eps": book["eps"], "easyedit/grace/labels": labels,
                "easyedit/grace/key_id": torch.tensor(book["key_id"])}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.reset_state()
        if not state:
            return
        labels = [row[row != self.LABEL_PAD][None] for row in state["easyedit/grace/labels"]]
        self._codebook = {"keys": state["easyedit/grace/keys"], "values": state["easyedit/grace/values"],
                          "eps": state["easyedit/grace/eps"], "labels": labels,
                          "key_id": int(state["easyedit/grace/key_id"])}

    def prepare(self, lm, cache) -> None:
        self._easyedit(lm)

    def edit(self, lm, requests, cache=None) -> ModulePatch:
        loaded, hp = self._easyedit(lm)
        path = inner_module_path(hp)
        infos = []
        with _layer_put_back(lm, path) as (parent, attr, _), loaded.mounted(), _in_folder(self._workdir.name), \
                contextlib.redirect_stdout(io.StringIO()):
            loaded.main_module.GRACE(model=lm.model, config=hp, device=lm.device)  # wraps the layer
            adapter = getattr(parent, attr)
            self._into(adapter, lm.device)
            for request in requests:
                loaded.apply(lm.model, lm.tokenizer, [self._request(request)], hp, copy=False)
                infos.append({"codebook_size": int(adapter.keys.shape[0])})
            self._codebook = self._out_of(adapter)
        book = self._codebook
        return ModulePatch(module=path, adaptor="grace-codebook",
                           settings={"query": "edit_position", "key_id": book["key_id"],
                                     "replacement": str(hp.replacement)},
                           tensors={"keys": book["keys"].clone(), "values": book["values"].clone(),
                                    "eps": book["eps"].clone()}, info=infos)

    def _into(self, adapter, device) -> None:
        """The codebook so far into a fresh GRACEAdapter, in EasyEdit's own layout (radii [n, 1])."""
        book = self._codebook
        if book is None:
            return
        adapter.keys = book["keys"].to(device).clone()
        adapter.values = torch.nn.Parameter(book["values"].to(device).clone(), requires_grad=True)
        adapter.epsilons = book["eps"].to(device).clone().view(-1, 1)
        adapter.key_labels = [row.to(device) for row in book["labels"]]
        adapter.edit_ids = []
        adapter.key_id = book["key_id"]

    @staticmethod
    def _out_of(adapter) -> dict[str, Any]:
        return {"keys": adapter.keys.detach().clone(), "values": adapter.values.detach().clone(),
                "eps": adapter.epsilons.detach().reshape(-1).clone(),
                "labels": [row.detach().clone() for row in adapter.key_labels], "key_id": int(adapter.key_id)}


class EasyEditWISE(EasyEditEditor):
    """EasyEdit's WISE: its WISEAdapter, loss and merges, with the side memory, shards, thresholds and
    counts kept between calls as this editor's state (EasyEdit keeps them in the wrapped model). The
    unrelated text each edit's margin loss needs (EasyEdit's `loc_prompt`) is the one editbench's
    `wise` draws for the same edit from `loc_corpus`, cut to the same length."""

    intervention = ModulePatch.kind
    LOC_CORPUS = "world"

    def reset_state(self) -> None:
        super().reset_state()
        self._memory: dict[str, torch.Tensor] | None = None

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {} if self._memory is None else {f"easyedit/wise/{k}": v for k, v in self._memory.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.reset_state()
        if state:
            self._memory = {k.removeprefix("easyedit/wise/"): v for k, v in state.items()}

    def _as_from_hparams(self, values: dict) -> dict:
        """WISEHyperParams.from_hparams: act_margin [α, β, γ] becomes alpha, beta, gamma."""
        values = dict(values)
        margin = values.pop("act_margin", None)
        if margin is not None:
            if len(margin) != 3:
                raise ConfigError(f"{self.config.source}: act_margin must be three numbers (alpha, beta, gamma)")
            values["alpha"], values["beta"], values["gamma"] = (float(m) for m in margin)
        if values.get("save_freq") and values.get("merge_freq", 0) % values["save_freq"]:
            raise ConfigError(f"{self.config.source}: merge_freq must be a multiple of save_freq (EasyEdit asserts it)")
        return values

    def check_model(self, lm) -> None:
        _, hp = self._easyedit(lm)
        if getattr(hp, "replay", False):
            raise ConfigError(f"{self.config.source}: easyedit:WISE with replay: true keeps its edit history in "
                              "EasyEdit's module globals, which a checkpoint cannot hold; not bridged (replay: false)")

    def prepare(self, lm, cache) -> None:
        """EasyEdit's context templates (greedy continuations) made once, on θ₀, for this editor."""
        loaded, hp = self._easyedit(lm)
        utils = loaded.modules[f"{loaded.prefix}.models.wise.utils"]
        with _padded(lm, "left"), loaded.mounted(), contextlib.redirect_stdout(io.StringIO()):
            utils.get_context_templates(lm.model, lm.tokenizer, length_params=[[5, 5], [10, 5]], device=lm.device)

    def _loc_prompt(self, lm, request, cache) -> str:
        from editbench.methods import wise as native

        templates = native.context_templates(lm, cache)
        longest = max(len(sum(encode_prompt_target(lm.tokenizer, t.format(request.prompt), request.target_new), []))
                      for t in templates)
        return lm.tokenizer.decode(native.unrelated_ids(lm, request, self.LOC_CORPUS, cache, longest))

    def edit(self, lm, requests, cache=None) -> ModulePatch:
        cache = {} if cache is None else cache
        loaded, hp = self._easyedit(lm)
        hp.sequential_edit = True  # the adapter carries the stream (EasyEdit's single-edit mode rebuilds it)
        path = inner_module_path(hp)
        wanted = [dict(self._request(r), loc_prompt=self._loc_prompt(lm, r, cache)) for r in requests]
        infos = []
        with _layer_put_back(lm, path) as (parent, attr, _), _padded(lm, "left"), loaded.mounted(), \
                _in_folder(self._workdir.name), contextlib.redirect_stdout(io.StringIO()):
            loaded.main_module.WISE(model=lm.model, config=hp, device=lm.device)  # wraps the layer
            adapter = getattr(parent, attr)
            self._into(adapter, loaded)
            for request in wanted:
                with _numpy_seeded_from_torch():  # WISE draws its gradient masks from numpy's global RNG
                    loaded.apply(lm.model, lm.tokenizer, [request], hp, copy=False)
                infos.append({"min_act": round(float(adapter.editing_mean_act.min_act()), 5),
                              "shards": len(adapter.memory_weight), "merges": int(adapter.merge_cnt)})
            self._memory = self._out_of(adapter)
        from editbench.methods import wise as native

        return ModulePatch(module=path, adaptor="wise-memory",
                           settings={"act": native.hidden_act(lm.model), "retrieve": bool(hp.retrieve)},
                           tensors=native.memory_tensors(self._memory, float(hp.act_ratio), bool(hp.retrieve)),
                           info=infos)

    def _into(self, adapter, loaded) -> None:
        """The memory so far into a fresh WISEAdapter, as EasyEdit's own attributes."""
        m = self._memory
        if m is None:
            return
        mean_act = loaded.modules[f"{loaded.prefix}.models.wise.utils"].EditingMeanAct
        device = adapter.new_weight.device
        adapter.new_weight = torch.nn.Parameter(m["side"].to(device).clone(), requires_grad=False)
        adapter.weight_mask = m["mask"].to(device).clone()
        adapter.memory_weight = [w.to(device).clone() for w in m["shards"]]
        adapter.memory_mean_act = [mean_act(min_a=float(a)) for a in m["shard_min_act"]]
        adapter.editing_mean_act = mean_act(min_a=float(m["min_act"]))
        adapter.editing_total_cnt, adapter.merge_cnt = int(m["edits"]), int(m["merges"])
        if not torch.equal(m["merged"].to(device), adapter.layer.weight):
            adapter.layer.weight = torch.nn.Parameter(m["merged"].to(device).clone(), requires_grad=False)

    @staticmethod
    def _out_of(adapter) -> dict[str, torch.Tensor]:
        side = adapter.new_weight.detach()
        shards = [w.detach() for w in adapter.memory_weight]
        return {"side": side.clone(), "mask": adapter.weight_mask.detach().clone(),
                "shards": torch.stack(shards) if shards else side.new_zeros((0, *side.shape)),
                "shard_min_act": torch.tensor([float(a.min_act()) for a in adapter.memory_mean_act]),
                "min_act": torch.tensor(float(adapter.editing_mean_act.min_act())),
                "merged": adapter.layer.weight.detach().clone(),
                "edits": torch.tensor(int(adapter.editing_total_cnt)), "merges": torch.tensor(int(adapter.merge_cnt))}


EDITOR_BASES = {"weights": EasyEditEditor, "codebook": EasyEditGRACE, "side memory": EasyEditWISE}


def editor_class(algorithm: str) -> type[Editor]:
    """The editor class for `easyedit:<algorithm>`, registered under that name on first use."""
    algo = canonical_algorithm(algorithm)
    name = f"easyedit:{algo}"
    if name in registered_names():
        return get_editor_class(name)
    config_cls = dataclasses.make_dataclass(f"EasyEdit{algo.replace('-', '')}Config", [], bases=(EasyEditConfig,),
                                            frozen=True, namespace={"ALGORITHM": algo})
    base = EDITOR_BASES[ALGORITHMS[algo].returns]
    cls = type(f"EasyEdit{algo.replace('-', '')}", (base,), {"config_class": config_cls})
    return register_editor(name)(cls)
