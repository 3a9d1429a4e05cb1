"""A run plan: a frozen, validated description of one run of editbench, whichever front end made it.

`RunPlan` holds every setting of a run (methods, data, exam, scoring, model and placement, protocol
and checkpoints, editors' YAMLs and overrides, update guard, output, execution). The CLI builds one
from its arguments (`from_mapping(vars(namespace))`), the Python API from keyword arguments; a
`RunSession` (session.py) executes it; worker processes and Ray tasks receive it as JSON. Every check
that needs no model runs when the plan is made, so a bad setting fails before anything is loaded;
errors name the field (`core.setting`), and each front end shows it its own way.

Each field carries its help text and the group it belongs to, from which the CLI builds its options
(its run help lists them by group) and the Python API its documentation.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from editbench.benchmarks.world import WORLD_SIZES
from editbench.core import ConfigError, Editor, editor_names, get_editor_class, setting
from editbench.harness.ceiling import check_ceiling_setting
from editbench.harness.protocols import PROTOCOL_NAMES

GROUPS = ("data", "exam", "scoring", "model and placement", "protocol and checkpoints", "editors",
          "update guard", "output and resume", "execution")
DEFAULT_WORLD_EDITS = 100  # without `edits`: 100 world edits, or every fact of a smaller pool
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")


def _opt(default: Any, group: str, help: str, **cli: Any) -> Any:
    """A plan field with its help and group; `cli` holds what the command line needs beyond the
    field's default (a type, choices, a metavar, `repeat` for options given several times)."""
    make = {"default_factory": default} if callable(default) else {"default": default}
    return field(**make, metadata={"group": group, "help": help, **cli})


def _ints(text: str) -> list[int]:
    """'1,10,100' -> [1, 10, 100] (the command line's lists of checkpoints)."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None


@dataclass(frozen=True)
class DerivedSettings:
    """What a plan's settings parse to, made once when the plan is checked (plan.derived)."""

    classes: dict[str, type[Editor]]  # method -> editor class
    protocol: Any  # harness.protocols.Protocol
    overrides: dict[str, dict]  # method -> config field -> value (METHOD.FIELD=VALUE settings)
    hparams_files: dict[str, Path]  # method -> its YAML named on the command line
    device_map: str | dict | None
    max_memory: dict | None
    generation: Any  # harness.generation.GenerationSpec, or None under teacher-forced scoring
    guard: Any  # harness.guard.UpdateGuard

@dataclass(frozen=True)
class RunPlan:
    methods: tuple[str, ...]
    # --- data
    benchmark: str = _opt("world", "data", "world (default), zsre, counterfact, wikibigedit, knowedit, mquake")
    data: str | None = _opt(None, "data", "the benchmark's JSON/JSONL file (or a Hugging Face dataset id)")
    data_dir: Path | None = _opt(None, "data", f"folder that a relative {setting('data')} or {setting('exam_dir')} is "
                                 "read from when it is not found from the current folder (default: $EDITBENCH_DATA)",
                                 type=Path)
    limit: int | None = _opt(None, "data", f"take the first N records (after {setting('shuffle')})", type=int)
    shuffle: bool = _opt(False, "data", f"shuffle records with {setting('seed')} before {setting('limit')}")
    on_bad_record: str = _opt("fail", "data", "a record that cannot become an edit: stop (default) or skip and "
                              "count it", choices=("fail", "skip"))
    split: str = _opt("edit", "data", "'edit' (the leaderboard's pool), 'dev' (the disjoint tuning pool, the only "
                      "one tune reads) or 'all' (a dataset's every record); a dataset's records are split by a "
                      "salted hash of their content, one in five dev", choices=("edit", "dev", "all"))
    world: str = _opt("default", "data", "world size when the world model or data is used (editbench benchmarks "
                      "lists them)", choices=tuple(WORLD_SIZES))
    edits: int | None = _opt(None, "data", "number of edits (default: 100 on the world, every fact of its pool when "
                             "it holds fewer; else every record)", type=int)
    seed: int = _opt(0, "data", "edit sampling and order, generation, training", type=int)
    truncate: str = _opt("none", "data", "an edit text longer than the model's context: an error (default), or keep "
                         "its last tokens (recorded per edit as truncated_tokens)", choices=("none", "left"))
    # --- exam
    exam: str | None = _opt(None, "exam", "world, ceval or mmlu (default: world with the world model, else none)")
    exam_dir: Path | None = _opt(None, "exam", "C-Eval / MMLU folder (dev/, val/, subject_mapping.json)", type=Path)
    exam_shots: int = _opt(5, "exam", "k-shot examples from dev (letter mode)", type=int)
    exam_limit: int | None = _opt(None, "exam", "K questions per subject (seeded), for cheap checkpoints", type=int)
    exam_mode: str | None = _opt(None, "exam", "default: letter for ceval/mmlu", choices=("letter", "cloze"))
    exam_split: str | None = _opt(None, "exam", "split scored (default: MMLU test when present, else val; C-Eval "
                                  "val)")
    # --- scoring
    eval_mode: str = _opt("generation", "scoring", "what edits are scored on besides teacher-forced token "
                          "accuracy: generation = the model's greedy answer to the prompt, cut at the sentence end, "
                          "exact match (the score's basis); wild = the Mirage paper's WILD evaluation (question-only "
                          "context, 50 tokens, its stop strings); teacher-forced = token accuracy alone (the score's "
                          "basis then)", choices=("teacher-forced", "generation", "wild"))
    gen_margin: int = _opt(4, "scoring", "generation: new tokens allowed beyond the gold answer's own length",
                           type=int)
    wild_context: str = _opt("question", "scoring", "wild: the question alone, the paper's QA instruction, or the "
                             "chat template", choices=("question", "qa_inst", "chat"))
    prompt_format: str = _opt("bare", "scoring", "how every prompt is put to the model, for editing and scoring "
                              "alike: as the benchmark writes it (bare) or as one user turn of the tokenizer's chat "
                              "template (chat; an instruct model's own format)", choices=("bare", "chat"))
    answer_end: str = _opt("none", "scoring", "eos: every edit's target ends with the model's end-of-sequence token "
                           "(an instruct model's end of turn), so editors write a complete answer; free answers are "
                           "compared without it, teacher-forced scores include it", choices=("none", "eos"))
    count_flops: int = _opt(3, "scoring", "editor calls per run whose FLOPs are counted (the first and a seeded "
                            "sample of the rest, each replayed under torch's FlopCounterMode before the real call, "
                            "which is never counted: counting changes float paths); 0: none", type=int)
    count_scoring_flops: bool = _opt(False, "scoring", "replay the pre-edit scoring (every edit, fluency, exam, "
                                     "perplexity) once under torch's FlopCounterMode: scoring's FLOPs in the results "
                                     "(pre.scoring_flops) and the leaderboard's header; on a CPU the replay costs "
                                     "about three pre-edit scorings (the counter's dispatch), so it is off by default")
    compute_ceiling: str = _opt("declared", "scoring", "FLOPs per edit a method may spend (harness/ceiling.py): "
                                "declared (the model's, by its rule: the costliest reference configuration; none "
                                "declared: no ceiling), none, or a number; recorded, and the leaderboard marks a "
                                "method over it; tune stops a trial over it at its first edit (infeasible)")
    eval_batch_size: int = _opt(64, "scoring", "rows per evaluation forward pass", type=int)
    eval_sample: int | None = _opt(None, "scoring", "retention at each checkpoint but the last scored on a seeded "
                                   "sample of this many earlier edits (the last scores all): the evaluation cost "
                                   "stays flat on long streams, the intervals widen accordingly", type=int)
    perplexity_text: Path | None = _opt(None, "scoring", "a UTF-8 text file whose non-empty lines are held-out texts "
                                       "(never trained on, never edited): their perplexity is measured before the "
                                       "first edit and at every checkpoint (default: the world's held-out sentences "
                                       "on the world, none otherwise); or a corpus named as key statistics name one "
                                       "(data:PATH#TEMPLATE: 200 of its documents, a seeded sample)", type=Path)
    eval_token_budget: int | None = _opt(None, "scoring", "padded tokens per evaluation forward pass (rows are cut "
                                         "to fit; default: no limit)", type=int)
    # --- model and placement
    model: str | None = _opt(None, "model and placement", "Hugging Face id, local path or named model (smollm2-135m: "
                             "make smollm2 installs it) (default: the world model)")
    device: str = _opt("cpu", "model and placement", "cpu, cuda, cuda:1, mps")
    device_map: str | None = _opt(None, "model and placement", "split the model across devices with accelerate: "
                                  f"auto, balanced, or a JSON file {{module: device}}; {setting('device')} is then "
                                  "ignored")
    max_memory: str | None = _opt(None, "model and placement", f"per-device memory for {setting('device_map')}, "
                                  "e.g. 0=20GiB,1=20GiB,cpu=64GiB")
    dtype: str = _opt("float32", "model and placement", "float32, bfloat16 or float16")
    # --- protocol and checkpoints
    protocol: str = _opt("sequential", "protocol and checkpoints", "sequential: batches of the method's "
                         "batch_size, never reset (default); batch: for each checkpoint T, the first T edits in one "
                         "call from the unedited weights; independent: each edit alone from the unedited weights; "
                         "immediate: as sequential, each edit scored right after its own call (no retention); "
                         "presets: lifelong-k1 (sequential, 1 edit per call: WISE), lifelong-k100 (sequential, 100 "
                         "per call: AlphaEdit, ENCORE, LyapLock, UltraEdit), easyedit-immediate (immediate, 1 per "
                         "call: EasyEdit's edit())", choices=PROTOCOL_NAMES)
    step_size: int | None = _opt(None, "protocol and checkpoints", "edits per editor call, for any method "
                                 "(sequential, immediate, independent; default: the method's batch_size, 1 for "
                                 "every built-in editor); recorded, and named in reports as K", type=int)
    checkpoints: tuple[int, ...] | None = _opt(None, "protocol and checkpoints", "e.g. 1,10,100 (the last edit is "
                                               "always one; default: powers of ten up to N, and N)", type=_ints)
    orders: int = _opt(1, "protocol and checkpoints", "run K seeded orders of the same edits; reports give mean ± "
                       "std across orders", type=int)
    # --- editors
    hparams: tuple[str, ...] = _opt(tuple, "editors", "YAML file (one method) or METHOD=FILE", repeat=True)
    overrides: tuple[str, ...] = _opt(tuple, "editors", "METHOD.KEY=VALUE", repeat=True,
                                      metavar="METHOD.KEY=VALUE")
    # --- update guard
    on_diverged: str = _opt("reject", "update guard", "an update whose editor's objective ended worse than it "
                            f"started, or whose norm exceeds {setting('max_update_ratio')} times its weight's: not "
                            "applied (default) or applied; either way recorded as 'diverged'",
                            choices=("reject", "apply"))
    max_update_ratio: float = _opt(10.0, "update guard", "bound on ||update|| / ||weight|| per parameter",
                                   type=float)
    # --- output and resume
    out: Path | None = _opt(None, "output and resume", "output directory (the Python API: none = results in "
                            "memory only)", type=Path, required=True)
    resume: bool = _opt(False, "output and resume", "continue an interrupted run in the output folder from its "
                        "last checkpoint (same numbers as an uninterrupted run); methods already complete are kept")
    overwrite: bool = _opt(False, "output and resume", "replace this run's results already in the output folder")
    save_model: bool = _opt(False, "output and resume", "save the edited model (save_pretrained, with its "
                            "tokenizer) at the final checkpoint, under <out>/<method>/model-T<N>")
    save_model_at: tuple[int, ...] | None = _opt(None, "output and resume", "save the edited model at these "
                                                 "checkpoints", type=_ints, metavar="T,...")
    quiet: bool = _opt(False, "output and resume", "no progress bars or log lines")
    # --- execution
    threads: int = _opt(1, "execution", "torch threads for every editing and scoring computation: fixed, so the "
                        "numbers do not depend on the machine's cores (recorded)", type=int)
    jobs: int = _opt(1, "execution", "runs (method, config cell, edit order) at once, each in its own worker "
                     f"process with {setting('threads')} threads; 1: here, one after another. The numbers are the "
                     "same for any value (make leaderboard uses every core)", type=int)
    executor: str = _opt("local", "execution", "local: runs here or in worker processes (default); ray: each "
                         "(method, cell, edit order) a Ray task (pip install -e '.[ray]')", choices=("local", "ray"))
    ray_address: str | None = _opt(None, "execution", "the address of an existing Ray cluster (default: "
                                   "RAY_ADDRESS, else a local instance)")
    cpus_per_task: float = _opt(1.0, "execution", "Ray: CPUs per task", type=float)
    gpus_per_task: float = _opt(0.0, "execution", "Ray: GPUs per task", type=float)
    # what the audit block records as the command (the CLI: its arguments; the API: the call)
    command: str = ""

    def __post_init__(self) -> None:
        fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen: normalise once
        fix("methods", tuple(dict.fromkeys(m for name in self.methods
                                           for m in (editor_names() if name == "all" else [name]))))
        for name in ("hparams", "overrides"):
            fix(name, tuple(getattr(self, name) or ()))
        for name in ("checkpoints", "save_model_at"):
            if getattr(self, name) is not None:
                fix(name, tuple(getattr(self, name)))
        for name in ("data_dir", "exam_dir", "out", "perplexity_text"):
            if getattr(self, name) is not None:
                fix(name, Path(getattr(self, name)))
        if self.data_dir is None and os.environ.get("EDITBENCH_DATA"):
            fix("data_dir", Path(os.environ["EDITBENCH_DATA"]))
        self._resolve_data_dir(fix)
        self._check()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_mapping(cls, values: dict) -> "RunPlan":
        """A plan from a mapping that may hold other keys too (an argparse namespace's `vars`)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def replace(self, **changes) -> "RunPlan":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        """The plan as JSON (paths as text): what a worker process or a Ray task receives."""
        return json.dumps({f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)})

    @classmethod
    def from_json(cls, text: str) -> "RunPlan":
        return cls(**json.loads(text))

    # ------------------------------------------------------------------ what the settings imply

    @property
    def model_world(self) -> Path | None:
        """A `model` naming a world folder: that world's edits, exam and YAMLs, as with `world`."""
        return Path(self.model) if self.model and (Path(self.model) / "world.json").is_file() else None

    @property
    def exam_name(self) -> str | None:
        return self.exam or ("world" if self.model is None or self.model_world else None)

    @property
    def uses_world(self) -> bool:
        return self.model is None or self.benchmark == "world" or self.exam_name == "world"

    def out_dir(self, needed_by: str) -> Path:
        """The output folder, for what cannot keep its results in memory only (tune, sweeps)."""
        if self.out is None:
            raise ConfigError(f"{needed_by} keeps its results in {setting('out')}: name a folder")
        return self.out

    def editor_classes(self) -> dict[str, type[Editor]]:
        return {m: get_editor_class(m) for m in self.methods}

    def parsed_overrides(self) -> dict[str, dict]:
        from editbench.harness.hparams import parse_overrides

        return parse_overrides(list(self.overrides), list(self.methods))

    def hparams_files(self) -> dict[str, Path]:
        files: dict[str, Path] = {}
        for item in self.hparams:
            method, sep, path = item.partition("=")
            if not sep:
                if len(self.methods) != 1:
                    raise ConfigError(f"{setting('hparams')} {item!r}: with several methods write METHOD=FILE")
                method, path = self.methods[0], item
            if method not in self.methods:
                raise ConfigError(f"{setting('hparams')} {item!r}: method '{method}' is not in this run")
            files[method] = Path(path)
        return files

    def placement(self) -> tuple[str | dict | None, dict | None]:
        """`device_map` and `max_memory` read (a JSON file, DEVICE=SIZE pairs)."""
        device_map = self.device_map
        if device_map is not None and device_map not in DEVICE_MAPS:
            path = Path(device_map)
            if not path.is_file():
                raise ConfigError(f"{setting('device_map')} {device_map!r}: auto, balanced, sequential or a JSON file")
            try:
                device_map = json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ConfigError(f"{setting('device_map')} {path}: not a JSON object ({type(exc).__name__})") from None
            if not isinstance(device_map, dict) or not all(isinstance(k, str) for k in device_map):
                raise ConfigError(f"{setting('device_map')} {path}: expected a JSON object of module -> device")
        if not self.max_memory:
            return device_map, None
        if device_map is None:
            raise ConfigError(f"{setting('max_memory')} needs {setting('device_map')}")
        memory: dict = {}
        for item in self.max_memory.split(","):
            key, sep, value = item.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise ConfigError(f"{setting('max_memory')} {item!r}: expected DEVICE=SIZE, e.g. 0=20GiB or cpu=64GiB")
            memory[int(key) if key.strip().isdigit() else key.strip()] = value.strip()
        return device_map, memory

    def generation(self):
        from editbench.harness.generation import parse_eval_mode

        return parse_eval_mode(self.eval_mode, self.gen_margin,
                               self.wild_context if self.eval_mode == "wild" else "question")

    def guard(self):
        from editbench.harness.guard import UpdateGuard

        return UpdateGuard(max_update_ratio=self.max_update_ratio, policy=self.on_diverged)

    def save_points(self, checkpoints: list[int]) -> set[int]:
        points = set(self.save_model_at or ())
        if self.save_model:
            points.add(checkpoints[-1])
        missing = sorted(points - set(checkpoints))
        if missing:
            raise ConfigError(f"{setting('save_model_at')} {missing}: not among the checkpoints {checkpoints}")
        return points

    # ------------------------------------------------------------------ checks that need no model

    def _resolve_data_dir(self, fix) -> None:
        """A relative `data` / `exam_dir` missing here is read from `data_dir` ($EDITBENCH_DATA), so the
        README's `zsre/zsre_3k.json` works from any clone location."""
        base = self.data_dir
        if base is None:
            return
        if self.data and not Path(self.data).is_absolute() and not Path(self.data).exists() \
                and (base / self.data).exists():
            fix("data", str(base / self.data))
        if self.exam_dir is not None and not self.exam_dir.is_absolute() and not self.exam_dir.exists() \
                and (base / self.exam_dir).is_dir():
            fix("exam_dir", base / self.exam_dir)

    def _check(self) -> None:
        from editbench.benchmarks import registry
        from editbench.harness.protocols import get_protocol

        if not self.methods:
            raise ConfigError(f"{setting('methods')}: name at least one method")
        classes = self.editor_classes()  # unknown names fail here
        for f in plan_fields():
            value, choices = getattr(self, f.name), f.metadata.get("choices")
            if choices and value is not None and value not in choices:
                raise ConfigError(f"{setting(f.name)} {value!r} is not one of {', '.join(map(str, choices))}")
        protocol = get_protocol(self.protocol, self.step_size)
        if not 1 <= self.threads <= 1024:
            raise ConfigError(f"{setting('threads')} must be in 1..1024, got {self.threads}")
        if self.jobs < 1:
            raise ConfigError(f"{setting('jobs')} must be >= 1, got {self.jobs}")
        if self.orders < 1:
            raise ConfigError(f"{setting('orders')} must be >= 1, got {self.orders}")
        if self.resume and self.overwrite:
            raise ConfigError(f"{setting('resume')} and {setting('overwrite')} exclude each other")
        if self.out is None and (self.jobs > 1 or self.executor != "local" or self.resume or self.save_model
                                 or self.save_model_at):
            raise ConfigError(f"{setting('jobs')} > 1, Ray, {setting('resume')} and saved models need "
                              f"{setting('out')}")
        registry.check_names(self.benchmark, self.exam_name)
        if self.benchmark != "world" and not self.data:
            raise ConfigError(f"benchmark '{self.benchmark}' needs {setting('data')} FILE (e.g. "
                              "../shared/data/zsre/zsre_3k.json)")
        self._check_paths()
        overrides, files = self.parsed_overrides(), self.hparams_files()
        self._check_override_keys(overrides, classes)
        for path in files.values():
            if not path.is_file():
                raise ConfigError(f"{setting('hparams')} {path}: no such file")
        self._check_numbers()
        device_map, max_memory = self.placement()
        # what the settings parse to, kept: the session reads these, nothing parses them twice
        object.__setattr__(self, "_derived", DerivedSettings(
            classes, protocol, overrides, files, device_map, max_memory, self.generation(),
            self.guard()))

    @property
    def derived(self) -> DerivedSettings:
        """The settings as parsed and checked when the plan was made."""
        return self.__dict__["_derived"]  # set by _check (not a field: no part of the plan's identity)

    def _check_paths(self) -> None:
        if self.data:
            path = Path(self.data)
            if path.is_dir():
                raise ConfigError(f"{setting('data')} {self.data}: is a directory; name the benchmark's JSON or "
                                  "JSONL file")
            if not path.exists() and (path.suffix in (".json", ".jsonl") or self.data.startswith((".", "/", "~"))):
                raise ConfigError(f"{setting('data')} {self.data}: no such file")
        if self.exam in ("ceval", "mmlu") and self.exam_dir is None:
            raise ConfigError(f"exam '{self.exam}' needs {setting('exam_dir')} (the folder with dev/ val/ and "
                              "subject_mapping.json)")
        if self.perplexity_text is not None:
            from editbench.harness.corpus import check_corpus, is_corpus_spec

            if is_corpus_spec(str(self.perplexity_text)):
                check_corpus(str(self.perplexity_text), None)
            elif not self.perplexity_text.is_file():
                raise ConfigError(f"{setting('perplexity_text')} {self.perplexity_text}: no such file")
        if self.exam_dir is not None and not self.exam_dir.is_dir():
            raise ConfigError(f"{setting('exam_dir')} {self.exam_dir}: no such directory")
        if self.out is not None and self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"{setting('out')} {self.out}: exists and is not a directory")
        if self.benchmark == "world" and (self.limit is not None or self.shuffle or self.data):
            name = "limit" if self.limit is not None else "shuffle" if self.shuffle else "data"
            raise ConfigError(f"{setting(name)} applies to dataset benchmarks; the world draws its edits with "
                              f"{setting('edits')} and {setting('seed')}")
        if self.prompt_format == "chat" and self.eval_mode == "wild" and self.wild_context != "question":
            raise ConfigError(f"{setting('prompt_format')} chat already puts every question in the chat template; "
                              f"{setting('wild_context')} {self.wild_context} would wrap it again (use question)")
        if self.benchmark == "world" and self.split == "all":
            raise ConfigError(f"{setting('split')} all applies to dataset benchmarks; the world's pools are edit and dev")

    def _check_numbers(self) -> None:
        if self.edits is not None and self.edits < 1:
            raise ConfigError(f"{setting('edits')} must be >= 1, got {self.edits}")
        for name, low in (("seed", 0), ("limit", 1), ("eval_sample", 1), ("exam_limit", 1), ("exam_shots", 0), ("orders", 1),
                          ("eval_batch_size", 1), ("eval_token_budget", 1)):
            value = getattr(self, name)
            if value is not None and not low <= value < 2**63:
                raise ConfigError(f"{setting(name)} must be in [{low}, 2**63), got {value}")
        _check_device(self.device)
        check_ceiling_setting(self.compute_ceiling)
        n = self.edits  # without `edits`, N is known only once the benchmark is loaded (checked again there)
        for name in ("checkpoints", "save_model_at"):
            bad = [t for t in getattr(self, name) or () if t < 1 or (n is not None and t > n)]
            if bad:
                raise ConfigError(f"{setting(name)} {list(bad)} out of range (valid: 1.."
                                  + (f"{n}, the number of edits)" if n else "the number of edits)"))
        if self.save_model_at and self.checkpoints and not set(self.save_model_at) <= set(self.checkpoints) | {n}:
            raise ConfigError(f"{setting('save_model_at')} {list(self.save_model_at)}: a model is saved at a "
                              f"checkpoint; add them to {setting('checkpoints')} ({list(self.checkpoints)})")

    def _check_override_keys(self, overrides: dict, classes: dict[str, type[Editor]]) -> None:
        for method, values in overrides.items():
            if hasattr(classes[method].config_class, "from_mapping"):
                continue  # its keys are another tool's (EasyEdit's), checked when its config is built
            valid = [f.name for f in dataclasses.fields(classes[method].config_class)]
            for key in values:
                if key not in valid:
                    raise ConfigError(f"{setting('overrides')} {method}.{key}: unknown key for {method} (valid: "
                                      f"{', '.join(valid)})")


def _check_device(device: str) -> None:
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise ConfigError(f"{setting('device')} {device!r}: not a device (e.g. cpu, cuda, cuda:1, mps)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{setting('device')} {device}: CUDA is not available to this torch "
                          f"({torch.__version__}); use cpu or install a CUDA build")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{setting('device')} {device}: MPS is not available on this machine")


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def plan_fields() -> list[dataclasses.Field]:
    """The settings a front end offers, in declaration order (with their help and group)."""
    return [f for f in dataclasses.fields(RunPlan) if "group" in f.metadata]
