"""A run session: executes a `RunPlan` (plan.py), the one run layer under the CLI and the Python API.

A session loads what every method of the run shares (the world, the edits, the exam, the model),
builds each method's editor with its YAML and checks it against the model before anything runs,
then hands each (method, config cell, edit order) to an executor: here one after another on the one
loaded model (θ₀ put back after each), or in worker processes / Ray tasks that each receive the plan
as JSON (`run_cell`). A failure is recorded in that run's results and the next run goes on.
"""
from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from editbench.core import ConfigError, EditbenchError, EditRequest, WeightDelta, setting
from editbench.harness.ceiling import resolve_ceiling
from editbench.harness.compute import ComputeCeiling, FlopMeter
from editbench.harness.executors import Cell
from editbench.harness.prompts import PromptFormat
from editbench.harness.record import RunRecord
from editbench.plan import DEFAULT_WORLD_EDITS, RunPlan

LOGGER = logging.getLogger("editbench")


@dataclass
class RunOutcome:
    """What a session ran: every complete result of its methods, the failures, skipped records."""

    results: list[RunRecord] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    total_records: int = 0
    source: str = ""
    cells: list[tuple[dict, str]] = field(default_factory=list)  # a sweep: (config cell, folder name)

    @property
    def status(self) -> int:
        """Exit status: 1 when any run failed, else 0."""
        return 1 if self.failures else 0


class RunSession:
    """What every method of a run shares: the model, the edits, the evaluation suite.

    Made in two stages: the plan is checked when it is made (no model needed); `load` then builds
    the world and loads the data and the model. A notebook may hand in a loaded `model` and its own
    `requests` instead of having the plan's loaded."""

    def __init__(self, plan: RunPlan, model=None, requests: Sequence[EditRequest] | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.plan = plan
        self.log = log or ((lambda msg: None) if plan.quiet else log_line)
        derived = plan.derived  # parsed once, when the plan was checked
        self.classes, self.protocol, self.overrides = derived.classes, derived.protocol, derived.overrides
        self.files, self.device_map, self.max_memory = derived.hparams_files, derived.device_map, derived.max_memory
        self.guard, self.generation = derived.guard, derived.generation
        self.prompt_format = PromptFormat(plan.prompt_format, plan.answer_end)
        self.given_model, self.given_requests = model, None if requests is None else list(requests)
        self.failures: list[str] = []
        self.results: list[RunRecord] = []  # this process's complete runs, in the order they ran
        self.hparams_notes: dict[str, dict] = {}  # per method: its YAML and what its tuning found
        self.dirty = False  # the loaded model may hold a failed run's changes: load it again
        self.progress_queue = None  # in a worker: where its progress goes (run_cell), else its own bar

    # ------------------------------------------------------------------ loading

    def load(self) -> None:
        """Build the world if needed, load the edits, the exam and the model."""
        from editbench.benchmarks import registry
        from editbench.harness.context import fit_to_context
        from editbench.harness.protocols import resolve_checkpoints
        from editbench.harness.suite import EvalSuite

        p = self.plan
        self.world_path = self._world_path()
        self.model_path = p.model or str(self.world_path)
        data = self._benchmark()  # read and checked before the model loads: bad data costs no model load
        self.lm = self.given_model or self.fresh_model()
        self.prompt_format.check(self.lm.tokenizer, self.model_path)
        self.data = registry.with_exam(self._without_answered(data), registry.exam_for_run(
            p.exam_name, p.exam_dir, self.world_path, p.exam_shots, p.exam_limit, p.seed, p.exam_mode, p.exam_split))
        if self.data.already_answered:
            self.log(f"{len(self.data.already_answered)} drawn edit(s) left out: the unedited model already makes "
                     f"them (first: {self.data.already_answered[0]})")
        if p.perplexity_text is not None:
            self.data.heldout_texts = registry.heldout_texts(p.perplexity_text)
        self.data.requests = self.prompt_format.requests(self.lm.tokenizer, self.data.requests)
        self.data.fluency_prompts = [self.prompt_format.render(self.lm.tokenizer, t) for t in self.data.fluency_prompts]
        self.checkpoints = resolve_checkpoints(p.checkpoints, len(self.data.requests))
        self.save_model_at = p.save_points(self.checkpoints)
        self.data.requests = fit_to_context(self.lm, self.data.requests, "error" if p.truncate == "none" else "left")
        self.n_edits = len(self.data.requests)
        self.suite = EvalSuite(self.data.fluency_prompts, self.data.fluency_tokens, self.data.exam_name,
                               self.data.exam, self.data.exam_mode, self.data.exam_shots, self.generation,
                               self.data.heldout_texts, self.prompt_format.label)
        self.audit = self._audit()

    def _world_path(self) -> Path | None:
        from editbench.benchmarks.world import world_config
        from editbench.benchmarks.world_model import ensure_world

        p = self.plan
        if self.given_model is not None:
            folder = Path(self.given_model.name)
            return folder if (folder / "world.json").is_file() else None
        if p.model_world is not None:
            return p.model_world
        return ensure_world(world_config(p.world), log=self.log) if p.uses_world else None

    def _benchmark(self):
        from editbench.benchmarks import registry

        p = self.plan
        if self.given_requests is not None:
            return registry.requests_benchmark(self.given_requests, self.world_path)
        if p.benchmark == "world":
            n_edits = p.edits
            if n_edits is None:  # 100, or every fact of the pool when it holds fewer
                n_edits = min(DEFAULT_WORLD_EDITS, registry.world_pool_size(self.world_path, p.split))
                if n_edits < DEFAULT_WORLD_EDITS:
                    self.log(f"world '{p.world}': its {p.split} pool holds {n_edits} facts, so {n_edits} edits "
                             f"(not {DEFAULT_WORLD_EDITS}); {setting('edits')} chooses")
            return registry.world_benchmark(self.world_path, n_edits, p.seed, p.split)
        data = registry.dataset_benchmark(p.benchmark, p.data, p.limit, p.shuffle, p.seed, p.on_bad_record, p.split)
        if data.skipped:
            self.log(f"{len(data.skipped)} record(s) skipped, first: {data.skipped[0]}")
        if p.edits is not None and p.edits > len(data.requests):
            raise ConfigError(f"{setting('edits')} {p.edits} exceeds the {len(data.requests)} edits loaded from "
                              f"{data.source}")
        return data

    def _without_answered(self, data):
        """The benchmark's edits less those the loaded (unedited) model already makes: the world draws
        them again, a dataset leaves them out in file order (then its first `edits` are kept); edits a
        caller handed in are used as given."""
        from editbench.benchmarks import registry

        p = self.plan
        if self.given_requests is not None:
            return data
        if p.benchmark == "world":
            return registry.world_benchmark(self.world_path, len(data.requests), p.seed, p.split,
                                            self._already_answered)
        registry.drop_answered(data, p.edits, self._already_answered)
        if p.edits is not None:
            data.requests = data.requests[: p.edits]
        return data

    def _already_answered(self, requests: list) -> list[bool]:
        """The unedited model's verdict per edit, as the run's score basis compares answers."""
        from editbench.harness.metrics import already_answered

        return already_answered(self.lm, self.prompt_format.requests(self.lm.tokenizer, requests), self.generation)

    def ceiling(self) -> ComputeCeiling:
        """The compute ceiling this plan runs under, for the loaded model (harness/ceiling.py)."""
        return resolve_ceiling(self.plan.compute_ceiling, self.lm.hparams_key)

    def fresh_model(self):
        from editbench.harness.models import load_model

        p = self.plan
        lm = load_model(self.model_path, device=p.device, dtype=p.dtype, device_map=self.device_map,
                        max_memory=self.max_memory)
        lm.eval_batch_size, lm.eval_token_budget = p.eval_batch_size, p.eval_token_budget
        return lm

    def editor(self, method: str, extra: dict | None = None, announce: bool = True):
        """The method's editor with its config resolved and checked against the model."""
        from editbench.harness.hparams import make_editor, tuning_note

        overrides = {**self.overrides.get(method, {}), **(extra or {})}
        editor, source = make_editor(method, self.lm, self.files.get(method), overrides, self.protocol.name)
        if self.save_model_at and editor.intervention != WeightDelta.kind:
            raise ConfigError(f"{setting('save_model')}: {method} edits through a {editor.intervention} "
                              "intervention, not the weights; save_pretrained would write the unedited model "
                              "(its state is kept in the run's checkpoints under state/, which "
                              f"{setting('resume')} reads)")
        self.hparams_notes[method] = tuning_note(source)
        if announce:
            self.log(f"{method}: hparams from {source}" + (f" with {overrides}" if overrides else ""))
        return editor

    def _audit(self) -> dict:
        """What a reader needs to audit a results file: the command, and the data it read by content."""
        import hashlib
        import json

        import torch

        from editbench.harness.cache import sha256_file, sha256_tree

        p, data = self.plan, {}
        if p.data and Path(p.data).is_file():
            data[str(p.data)] = sha256_file(Path(p.data))
        if self.world_path is not None:
            data[f"world:{p.world}"] = sha256_file(Path(self.world_path) / "world.json")
        if p.exam_dir is not None:
            tree = sha256_tree(p.exam_dir)  # one digest over the folder's files and their hashes
            data[str(p.exam_dir)] = hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()
        return {"command": p.command, "cwd": str(Path.cwd()), "device": p.device, "dtype": p.dtype,
                "threads": torch.get_num_threads(), "data_sha256": data,
                "already_answered": list(self.data.already_answered)}

    # ------------------------------------------------------------------ running

    def run(self) -> RunOutcome:
        """Every method of the plan on the same edits (each in `out/<method>` when the plan has an out)."""
        methods = list(self.plan.methods)
        with _output_lock(self.plan.out):
            self.claim_outputs([self.plan.out / m for m in methods] if self.plan.out else [])
            self.load()
            editors = [self.editor(m) for m in methods]  # every config checked before anything runs
            self.execute([(m, {}, self._folder(m), m) for m in methods], editors)
        return self.outcome(methods)

    def sweep(self, grid: dict[str, list]) -> RunOutcome:
        """One method over every cell of `grid` (key -> values), each cell in its own folder."""
        import itertools

        method = self.plan.methods[0]
        cells = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
        names = [cell_name(cell) for cell in cells]
        out = self.plan.out_dir("a sweep")
        with _output_lock(out):
            self.claim_outputs([out / name for name in names])
            self.load()
            editors = [self.editor(method, cell) for cell in cells]
            self.execute([(method, cell, out / name, f"{method} {name}")
                          for cell, name in zip(cells, names)], editors)
        outcome = self.outcome([method])
        outcome.cells = list(zip(cells, names))
        return outcome

    def outcome(self, methods: list[str]) -> RunOutcome:
        from editbench.harness.results import find_results, load_results

        if self.plan.out is not None:  # every order of every method, wherever it ran
            results = [load_results(path) for path in find_results(self.plan.out)]
            results = [r for r in results if r["method"] in methods and r.get("status", "complete") == "complete"]
        else:
            results = list(self.results)
        return RunOutcome(results, list(self.failures), list(self.data.skipped), self.data.total_records,
                          self.data.source)

    def _folder(self, method: str) -> Path | None:
        return self.plan.out / method if self.plan.out is not None else None

    def claim_outputs(self, folders: list[Path]) -> None:
        """Existing results need `resume` (continue) or `overwrite` (replace, each folder just before
        its method runs, so a run that fails its checks deletes nothing)."""
        from editbench.harness.store import existing_results

        found = existing_results(folders)
        if found and not (self.plan.resume or self.plan.overwrite):
            names = ", ".join(f.name for f in found[:4]) + (" ..." if len(found) > 4 else "")
            raise ConfigError(f"{setting('out')} {self.plan.out} already holds results for {names}; pass "
                              f"{setting('resume')} to continue them or {setting('overwrite')} to replace them")

    def execute(self, runs: list[tuple[str, dict, Path | None, str]], editors: list) -> None:
        """Every (method, config cell, folder, label) on the plan's executor. Locally they share this
        process's model; in worker processes or Ray tasks each (run, edit order) loads its own."""
        import shutil

        from editbench.harness.executors import ProgressBoard

        p = self.plan
        if p.executor == "local" and p.jobs == 1:  # in this process, on its loaded model
            for (method, extra, folder, label), editor in zip(runs, editors):
                self.run_method(editor, folder, label)
            return
        cells = []
        for method, extra, folder, label in runs:
            if folder is None:  # a worker writes its results where this process reads them
                raise ConfigError(f"runs in worker processes keep their results in {setting('out')}: name a folder")
            if p.overwrite and folder.exists():
                shutil.rmtree(folder)
            cells += [Cell(method, str(order_folder(folder, k, p.orders)),
                           label + (f" order-{k}" if p.orders > 1 else ""), k, extra) for k in range(p.orders)]
        board = None if p.quiet or not sys.stderr.isatty() else ProgressBoard(sys.stderr)
        self.failures += fan_out(p, cells, run_cell, p.to_json(), self.log, board)

    def run_method(self, editor, out_dir: Path | None, label: str) -> None:
        """One method over every edit order, all on the one loaded model (each run puts θ₀ back)."""
        import shutil

        if self.plan.overwrite and out_dir is not None and out_dir.exists():
            shutil.rmtree(out_dir)
        orders = self.plan.orders
        for order in range(orders):
            where = order_folder(out_dir, order, orders) if out_dir is not None else None
            self.run_order(editor, where, label + (f" order-{order}" if orders > 1 else ""), order)

    def run_order(self, editor, where: Path | None, name: str, order: int) -> None:
        """One run: one method (config cell) on one edit order, into `where` (none: in memory only)."""
        from editbench.harness.runner import Runner
        from editbench.harness.results import upgraded
        from editbench.harness.store import NullStore, RunStore

        p = self.plan
        meta = {"benchmark": {
            "name": self.data.name, "world": None if p.model else p.world, "source": self.data.source,
            "records": self.data.total_records, "skipped_records": len(self.data.skipped),
            "limit": p.limit, "shuffle": p.shuffle, "split": p.split,
            "exam_limit": p.exam_limit,
        }, "order": order, "audit": self.audit, "hparams": self.hparams_notes.get(editor.name)}
        store = RunStore(where, meta, self.save_model_at, resume=p.resume) if where is not None else NullStore(meta)
        try:
            if self.dirty:  # a run failed: its editor may have left anything behind
                self.lm, self.dirty = self.fresh_model(), False
            runner = Runner(self.lm, editor, edit_order(self.data.requests, p.seed, order), self.suite,
                            self.checkpoints, p.seed, log=self.log, protocol=self.protocol, label=name,
                            progress=self._bar(name), guard=self.guard, eval_sample=p.eval_sample,
                            flops=FlopMeter(p.count_flops, p.seed, self.ceiling(), scoring=p.count_scoring_flops))
            results, _ = runner.run(store)
            runner.restore_base()  # θ₀ again, bit for bit: the next method shares this loaded model
            self.results.append(upgraded(store.record(dict(results))))  # as load_results reads it back
        except KeyboardInterrupt as exc:
            store.fail(exc)
            raise
        except Exception as exc:  # noqa: BLE001 - one method's failure must not end the others
            if isinstance(exc, EditbenchError) and not store.started:
                raise  # bad input found before this run wrote anything: exit 2 as usual
            store.fail(exc)
            self.dirty = True
            message = f"{name}: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
            self.failures.append(message)
            kept = f"recorded in {store.where}" if store.where is not None else "not saved: no output folder"
            print(f"editbench: {message} ({kept}; going on)", file=sys.stderr)
            free_accelerator_memory()

    def _bar(self, name: str):
        """A progress bar over edits on stderr; none when quiet or when stderr is not a terminal. In a
        worker whose parent shows every run at once, the bar's updates go to the parent instead."""
        from tqdm import tqdm

        from editbench.harness.executors import relayed_bars

        if self.progress_queue is not None:
            return relayed_bars(self.progress_queue, name)
        quiet = self.plan.quiet or not sys.stderr.isatty()
        return lambda total, done: tqdm(total=total, initial=done, desc=name, unit="edit", file=sys.stderr,
                                        disable=quiet, dynamic_ncols=True, leave=False)


def run_cell(plan_json: str, cell: Cell, progress=None) -> str | None:
    """One cell of a plan in this process (a worker or a Ray task): one method, config cell and
    edit order, on its own copy of the model. Returns a failure line or None. `progress`: a queue
    that takes the run's progress (executors.ProgressRelay), or None."""
    plan = RunPlan.from_json(plan_json).replace(overwrite=False, quiet=True, executor="local", jobs=1)
    apply_process_settings(plan)
    session = RunSession(plan)
    session.progress_queue = progress
    session.load()
    session.run_order(session.editor(cell.method, cell.extra), Path(cell.folder), cell.label, cell.order)
    return session.failures[0] if session.failures else None


def edit_order(requests: list, seed: int, order: int) -> list:
    """Order 0 is the benchmark's order; order k > 0 a shuffle seeded by (seed, k)."""
    import random

    if order == 0:
        return list(requests)
    shuffled = list(requests)
    random.Random(f"editbench-order-{seed}-{order}").shuffle(shuffled)
    return shuffled


def order_folder(folder: Path, order: int, orders: int) -> Path:
    return folder / f"order-{order}" if orders > 1 else folder


def cell_name(cell: dict) -> str:
    """A folder name for a config cell: 'density=0.2-delta_weight=0.8'; anything but letters, digits
    and . _ : + = , - [ ] becomes '_' (so a value can never name a path outside the run)."""
    import re

    text = "-".join(f"{k}={v}" for k, v in cell.items()).replace(" ", "")
    return re.sub(r"[^A-Za-z0-9._:+=,\[\]-]", "_", text).replace("..", "__")


def _output_lock(out: Path | None):
    """The output folder's lock (one command per folder at a time); nothing to lock without one."""
    import contextlib

    from editbench.harness.store import RunDirLock

    return RunDirLock(out) if out is not None else contextlib.nullcontext()


# ---------------------------------------------------------------------- console


def log_line(msg: str) -> None:
    """Progress messages on stderr, written above any progress bar."""
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


def show_library_log(quiet: bool) -> None:
    """Messages editors log (e.g. key statistics cache hits) go to stderr unless quiet."""
    if not LOGGER.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.WARNING if quiet else logging.INFO)


def quiet_transformers() -> None:
    """No weight-loading bar per model and no deprecation notices that are not ours to fix."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    # peft asks transformers' deprecated is_gradient_checkpointing on every LoRA run
    warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.* is deprecated", category=FutureWarning)


def apply_process_settings(plan: RunPlan) -> None:
    """What a run sets for its whole process: torch's thread count (fixed before anything is computed:
    the numbers depend on it), editbench's log handler, transformers' progress bars and warnings.
    Called by the entry points only (the CLI's commands, worker cells, the Python API inside
    process_state_kept), never on import or by a session."""
    import torch

    torch.set_num_threads(plan.threads)
    show_library_log(quiet=plan.quiet)
    quiet_transformers()


@contextmanager
def process_state_kept():
    """What a run sets for the whole process (torch's thread count, editbench's log handler and level,
    transformers' progress bars, warning filters) put back as it was found when the block ends: a
    notebook calling the Python API keeps its own settings. The CLI and workers keep the run's."""
    import warnings

    import torch
    from transformers.utils import logging as hf_logging

    threads, handlers, level = torch.get_num_threads(), list(LOGGER.handlers), LOGGER.level
    bars = hf_logging.is_progress_bar_enabled()
    with warnings.catch_warnings():  # restores the filters on exit
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            LOGGER.handlers[:] = handlers
            LOGGER.setLevel(level)
            (hf_logging.enable_progress_bar if bars else hf_logging.disable_progress_bar)()


def fan_out(plan: RunPlan, cells: list, worker: Callable, job: str, log: Callable[[str], None] | None = None,
            board=None) -> list[str]:
    """Every cell in its own worker process (local, `jobs` at a time) or Ray task, each calling
    `worker(cell, job)`; one line per failed cell. The one fan-out of runs and tunes."""
    from editbench.harness.executors import get_executor

    executor = get_executor(plan.executor, plan.ray_address, plan.cpus_per_task, plan.gpus_per_task, plan.jobs,
                            log, board)
    if executor.name == "ray" and log is not None:
        log(f"{len(cells)} cell(s) as Ray tasks ({plan.cpus_per_task:g} CPU, {plan.gpus_per_task:g} GPU each)")
    return executor.run(cells, worker, job)


def free_accelerator_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
