"""`editbench` command line: run, report, methods, benchmarks."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

import editbench
from editbench.benchmarks.world import WORLD_SIZES
from editbench.core import ConfigError, EditbenchError, editor_names, get_editor_class, render_settings
from editbench.harness.protocols import PROTOCOLS


def _csv_ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="editbench", description="Benchmark harness for knowledge editing.")
    parser.add_argument("--version", action="version", version=f"editbench {editbench.__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        return subparsers.add_parser(name, formatter_class=_DefaultsHelp, **kwargs)  # --help shows defaults

    run = command("run", help="apply N edits sequentially with each method and score them at checkpoints")
    run.add_argument("--method", action="append", required=True,
                     help="editor name; repeat for several; 'all' = every registered editor")
    _add_run_options(run)

    compare = command("compare", help="run methods on the same edits and compare each with the first")
    compare.add_argument("--method", action="append", required=True, help="reference method first")
    _add_run_options(compare)

    regress = command("regress", help="compare a run with a baseline, or this tree with a commit; exit 0 "
                             "ok, 1 regression, 2 bad input")
    regress.add_argument("run_dir", type=Path, nargs="?", help="a run directory (with --baseline), or where "
                         "--against writes the working tree's run (default: a temporary folder)")
    gate = regress.add_mutually_exclusive_group(required=True)
    gate.add_argument("--baseline", type=Path, help="baseline JSON file or another run directory (same weights)")
    gate.add_argument("--against", metavar="GIT_REF", help="run the suite at this commit (temporary worktree) and "
                      "in the working tree, on this machine, and compare them edit by edit")
    regress.add_argument("--suite", help="the `editbench run` options of the suite for --against, as one string "
                         "(--suite='--method ft --world micro --edits 20'); default: --method all --world micro --edits 20 "
                         "--checkpoints 20 --seed 0")
    regress.add_argument("--tolerances", type=Path, help="YAML of absolute tolerances per metric")
    regress.add_argument("--tolerance", action="append", default=[], metavar="METRIC=VALUE")

    baseline = command("baseline", help="store a run's final metrics as a baseline file for `regress`")
    baseline.add_argument("run_dir", type=Path)
    baseline.add_argument("--out", type=Path, required=True)

    sweep = command("sweep", help="run one method over a grid of config values; tables and heat maps")
    sweep.add_argument("--method", required=True)
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...")
    _add_run_options(sweep)

    tune = command("tune", help="choose one method's hyper-parameters on the world's dev split (never the "
                          "leaderboard's edits): a seeded Optuna search of the space the method declares, the same "
                          "trial budget for every method, a single-edit floor; writes a YAML with provenance")
    tune.add_argument("--method", action="append", required=True, help="repeat for several (each its own "
                      "study in --out/METHOD; --jobs N runs N studies at once); 'all' = every editor with a space")
    tune.add_argument("--budget", type=int, default=32, help="trials (complete, pruned or under the floor); the "
                      "first is the space's reference point")
    tune.add_argument("--floor-em", type=float, default=0.9, help="generated-answer exact match a config needs on "
                      "20 independent dev edits to count")
    tune.add_argument("--write", type=Path, help="write the chosen YAML here too; {method} stands for the "
                      "method (e.g. 'editbench/hparams/{method}/world-micro.yaml')")
    _add_run_options(tune)

    report = command("report", help="write leaderboard tables and plots for a run directory")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--format", help="md,csv,json,html: which files (default: all four)")
    report.add_argument("--metrics", help="figures to draw, e.g. reliability,locality (default: every metric)")
    report.add_argument("--checkpoint", type=int, help="rank at this T instead of each run's last checkpoint")
    report.add_argument("--score-basis", choices=("generation", "token"), help="what the score's edit success and "
                        "locality rest on: generated exact match or teacher-forced token accuracy (default: what "
                        "the runs recorded; generation unless they ran --eval-mode teacher-forced)")

    command("methods", help="list registered editors")
    command("benchmarks", help="list benchmarks and exams")
    return parser


DEFAULT_WORLD_EDITS = 100


class _DefaultsHelp(argparse.HelpFormatter):
    """Adds '(default: X)' to an option's help unless it has no default or already names one."""

    def _get_help_string(self, action):
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == [] \
            or action.default == argparse.SUPPRESS
        if not action.option_strings or unset or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


def _hparams_files(items: list[str], methods: list[str]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for item in items:
        method, sep, path = item.partition("=")
        if not sep:
            if len(methods) != 1:
                raise ConfigError(f"--hparams {item!r}: with several methods write METHOD=FILE")
            method, path = methods[0], item
        if method not in methods:
            raise ConfigError(f"--hparams {item!r}: method '{method}' is not in this run")
        files[method] = Path(path)
    return files


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--benchmark", default="world", help="world (default), zsre, counterfact, wikibigedit, "
                        "knowedit, mquake")
    parser.add_argument("--data", help="the benchmark's JSON/JSONL file (or a Hugging Face dataset id)")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("EDITBENCH_DATA"),
                        help="folder that a relative --data or --exam-dir is read from when it is not found "
                             "from the current folder (default: $EDITBENCH_DATA)")
    parser.add_argument("--limit", type=int, help="take the first N records (after --shuffle)")
    parser.add_argument("--shuffle", action="store_true", help="shuffle records with --seed before --limit")
    parser.add_argument("--on-bad-record", default="fail", choices=("fail", "skip"),
                        help="a record that cannot become an edit: stop (default) or skip and count it")
    parser.add_argument("--exam", help="world, ceval or mmlu (default: world with the world model, else none)")
    parser.add_argument("--exam-dir", type=Path, help="C-Eval / MMLU folder (dev/, val/, subject_mapping.json)")
    parser.add_argument("--exam-shots", type=int, default=5, help="k-shot examples from dev (letter mode)")
    parser.add_argument("--exam-limit", type=int, help="K questions per subject (seeded), for cheap checkpoints")
    parser.add_argument("--exam-mode", choices=("letter", "cloze"), help="default: letter for ceval/mmlu")
    parser.add_argument("--exam-split", help="split scored (default: MMLU test when present, else val; C-Eval val)")
    parser.add_argument("--eval-mode", default="generation", choices=("teacher-forced", "generation", "wild"),
                        help="what edits are scored on besides teacher-forced token accuracy: generation = the "
                             "model's greedy answer to the prompt, cut at the sentence end, exact match (the "
                             "score's basis); wild = the Mirage paper's WILD evaluation (question-only context, "
                             "50 tokens, its stop strings); teacher-forced = token accuracy alone (the score's "
                             "basis then)")
    parser.add_argument("--gen-margin", type=int, default=4, help="generation: new tokens allowed beyond the gold "
                        "answer's own length")
    parser.add_argument("--wild-context", default="question", choices=("question", "qa_inst", "chat"),
                        help="wild: the question alone, the paper's QA instruction, or the chat template")
    parser.add_argument("--protocol", default="sequential", choices=tuple(PROTOCOLS),
                        help="sequential: batches of the method's batch_size, never reset (default); batch: for "
                             "each checkpoint T, the first T edits in one call from the unedited weights; "
                             "independent: each edit alone from the unedited weights; immediate: as sequential, "
                             "each edit scored right after its own call (no retention)")
    parser.add_argument("--split", default="edit", choices=("edit", "dev"),
                        help="world edits: 'edit' (the leaderboard's pool, default) or 'dev' (the disjoint "
                             "tuning pool)")
    parser.add_argument("--world", default="default", choices=tuple(WORLD_SIZES),
                        help="world size when the world model or data is used (editbench benchmarks lists them)")
    parser.add_argument("--model", help="Hugging Face id or local path (default: the world model)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps")
    parser.add_argument("--device-map", help="split the model across devices with accelerate: auto, balanced, or "
                        "a JSON file {module: device}; --device is then ignored")
    parser.add_argument("--max-memory", help="per-device memory for --device-map, e.g. 0=20GiB,1=20GiB,cpu=64GiB")
    parser.add_argument("--eval-batch-size", type=int, default=64, help="rows per evaluation forward pass")
    parser.add_argument("--eval-token-budget", type=int, help="padded tokens per evaluation forward pass "
                        "(rows are cut to fit; default: no limit)")
    parser.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16")
    parser.add_argument("--edits", type=int, help="number of edits (default: 100 on the world, every fact of its "
                        "pool when it holds fewer; else every record)")
    parser.add_argument("--checkpoints", type=_csv_ints, help="e.g. 1,10,100 (the last edit is always one; default: "
                        "powers of ten up to N, and N)")
    parser.add_argument("--seed", type=int, default=0, help="edit sampling and order, generation, training")
    parser.add_argument("--orders", type=int, default=1,
                        help="run K seeded orders of the same edits; reports give mean ± std across orders")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue an interrupted run in --out from its last "
                       "checkpoint (same numbers as an uninterrupted run); methods already complete are kept")
    again.add_argument("--overwrite", action="store_true", help="replace this run's results already in --out")
    parser.add_argument("--save-model", action="store_true", help="save the edited model (save_pretrained, with "
                        "its tokenizer) at the final checkpoint, under <out>/<method>/model-T<N>")
    parser.add_argument("--save-model-at", type=_csv_ints, metavar="T,...", help="save the edited model at these "
                        "checkpoints")
    parser.add_argument("--hparams", action="append", default=[], help="YAML file (one method) or METHOD=FILE")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="METHOD.KEY=VALUE")
    parser.add_argument("--on-diverged", default="reject", choices=("reject", "apply"),
                        help="an update whose editor's objective ended worse than it started, or whose norm "
                             "exceeds --max-update-ratio times its weight's: not applied (default) or applied; "
                             "either way recorded as 'diverged'")
    parser.add_argument("--max-update-ratio", type=float, default=10.0,
                        help="bound on ||update|| / ||weight|| per parameter")
    parser.add_argument("--truncate", default="none", choices=("none", "left"),
                        help="an edit text longer than the model's context: an error (default), or keep its "
                             "last tokens (recorded per edit as truncated_tokens)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every editing and scoring "
                        "computation: fixed, so the numbers do not depend on the machine's cores (recorded)")
    parser.add_argument("--jobs", type=int, default=1, help="runs (method, config cell, edit order) at once, each "
                        "in its own worker process with --threads threads; 1: here, one after another. The "
                        "numbers are the same for any value (make leaderboard uses every core)")
    parser.add_argument("--executor", default="local", choices=("local", "ray"),
                        help="local: runs one after another here (default); ray: each (method, cell, edit order) "
                             "a Ray task (pip install -e '.[ray]')")
    parser.add_argument("--ray-address", help="an existing Ray cluster (ray start --head; default: RAY_ADDRESS, "
                        "else a local instance)")
    parser.add_argument("--cpus-per-task", type=float, default=1.0, help="Ray: CPUs per task")
    parser.add_argument("--gpus-per-task", type=float, default=0.0, help="Ray: GPUs per task")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or log lines")


def _show_library_log(quiet: bool) -> None:
    """Messages editors log (e.g. key statistics cache hits) go to stderr unless --quiet."""
    import logging

    logger = logging.getLogger("editbench")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


class _RunContext:
    """What every method of a run shares: the model source, the edits, the evaluation suite.

    Built in two stages: the constructor checks everything that needs no model (names, files,
    numbers, keys) so a bad option fails at once; `load` then builds the world and loads the data
    and the model."""

    def __init__(self, args: argparse.Namespace, methods: list[str]) -> None:
        from editbench.benchmarks import registry
        from editbench.harness.hparams import parse_overrides
        from editbench.harness.protocols import get_protocol

        self.args = args
        self.log = (lambda msg: None) if args.quiet else _log_line
        if not 1 <= args.threads <= 1024:
            raise ConfigError(f"--threads must be in 1..1024, got {args.threads}")
        if args.jobs < 1:
            raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
        import torch

        torch.set_num_threads(args.threads)  # fixed before anything is computed: the numbers depend on it
        _show_library_log(quiet=args.quiet)
        _quiet_transformers()
        self.classes = {m: get_editor_class(m) for m in methods}
        self.protocol = get_protocol(args.protocol)
        # --model naming a world folder: that world's edits, exam and YAMLs, as with --world
        self.model_world = Path(args.model) if args.model and _is_world_folder(args.model) else None
        self.exam_name = args.exam or ("world" if args.model is None or self.model_world else None)
        registry.check_names(args.benchmark, self.exam_name)
        if args.orders < 1:
            raise ConfigError(f"--orders must be >= 1, got {args.orders}")
        if args.benchmark != "world" and not args.data:
            raise ConfigError(f"benchmark '{args.benchmark}' needs --data FILE (e.g. ../shared/data/zsre/zsre_3k.json)")
        _check_paths(args)
        self.overrides = parse_overrides(args.overrides, methods)
        _check_override_keys(self.overrides, self.classes)
        self.files = _hparams_files(args.hparams, methods)
        for method, path in self.files.items():
            if not path.is_file():
                raise ConfigError(f"--hparams {path}: no such file")
        _check_numbers(args)
        self.device_map, self.max_memory = _placement(args)
        from editbench.harness.runner import UpdateGuard

        self.guard = UpdateGuard(max_update_ratio=args.max_update_ratio, policy=args.on_diverged)
        from editbench.harness.generation import parse_eval_mode

        self.generation = parse_eval_mode(args.eval_mode, args.gen_margin,
                                          args.wild_context if args.eval_mode == "wild" else "question")
        self.failures: list[str] = []
        self.hparams_notes: dict[str, dict] = {}  # per method: its YAML and what its tuning found
        self.dirty = False  # the loaded model may hold a failed run's changes: load it again

    def load(self) -> None:
        """Build the world if needed, load the edits, the exam and the model."""
        from editbench.benchmarks import registry
        from editbench.benchmarks.world import world_config
        from editbench.benchmarks.world_model import ensure_world
        from editbench.harness.runner import EvalSuite, resolve_checkpoints

        args = self.args
        uses_world = args.model is None or args.benchmark == "world" or self.exam_name == "world"
        self.world_path = self.model_world or (ensure_world(world_config(args.world), log=self.log) if uses_world
                                               else None)
        if args.benchmark == "world":
            n_edits = args.edits
            if n_edits is None:  # 100, or every fact of the pool when it holds fewer
                n_edits = min(DEFAULT_WORLD_EDITS, registry.world_pool_size(self.world_path, args.split))
                if n_edits < DEFAULT_WORLD_EDITS:
                    self.log(f"world '{args.world}': its {args.split} pool holds {n_edits} facts, so {n_edits} edits "
                             f"(not {DEFAULT_WORLD_EDITS}); --edits chooses")
            data = registry.world_benchmark(self.world_path, n_edits, args.seed, args.split)
        else:
            data = registry.dataset_benchmark(args.benchmark, args.data, args.limit, args.shuffle, args.seed,
                                              args.on_bad_record)
            if data.skipped:
                self.log(f"{len(data.skipped)} record(s) skipped, first: {data.skipped[0]}")
            if args.edits is not None:
                if args.edits > len(data.requests):
                    raise ConfigError(f"--edits {args.edits} exceeds the {len(data.requests)} edits loaded from "
                                      f"{data.source}")
                data.requests = data.requests[: args.edits]
        exam = registry.exam_for_run(self.exam_name, args.exam_dir, self.world_path, args.exam_shots,
                                     args.exam_limit, args.seed, args.exam_mode, args.exam_split)
        self.data = registry.with_exam(data, exam)
        self.n_edits = len(self.data.requests)
        self.checkpoints = resolve_checkpoints(args.checkpoints, self.n_edits)
        self.save_model_at = _save_points(args, self.checkpoints)
        self.model_path = args.model or str(self.world_path)
        # a world folder given as --model is a world model: the world's YAMLs, whatever its folder is called
        self.hparams_key = None  # a world folder gets world-<size> (its own YAMLs, then the shared world ones)
        self.lm = self.fresh_model()
        from editbench.harness.context import fit_to_context

        self.data.requests = fit_to_context(self.lm, self.data.requests, "error" if args.truncate == "none" else "left")
        self.n_edits = len(self.data.requests)
        self.suite = EvalSuite(self.data.fluency_prompts, self.data.fluency_tokens, self.data.exam_name,
                               self.data.exam, self.data.exam_mode, self.data.exam_shots, self.generation)
        self.audit = _audit(args, self.world_path)

    def fresh_model(self):
        from editbench.harness.models import load_model

        a = self.args
        lm = load_model(self.model_path, device=a.device, dtype=a.dtype, hparams_key=self.hparams_key,
                        device_map=self.device_map, max_memory=self.max_memory)
        lm.eval_batch_size, lm.eval_token_budget = a.eval_batch_size, a.eval_token_budget
        return lm

    def editor(self, method: str, extra: dict | None = None, announce: bool = True):
        """The method's editor with its config resolved and checked against the model."""
        from editbench.harness.hparams import resolve_config, tuning_note

        cls = self.classes[method]
        overrides = {**self.overrides.get(method, {}), **(extra or {})}
        config, source = resolve_config(cls.config_class, method, self.lm.hparams_key,
                                        self.lm.model.config.model_type, self.files.get(method), overrides,
                                        protocol=self.protocol.name)
        editor = cls(config)
        editor.check_model(self.lm)
        self.hparams_notes[method] = tuning_note(source)
        if announce:
            self.log(f"{method}: hparams from {source}" + (f" with {overrides}" if overrides else ""))
        return editor

    def run(self, editor, out_dir: Path, label: str) -> None:
        """One method over every edit order, each saved as it goes, all on the one loaded model (each
        run puts θ₀ back when it ends). A failure is recorded in that run's results and in
        `self.failures`, the model is loaded again, and the next run goes on."""
        import shutil

        if self.args.overwrite and out_dir.exists():
            shutil.rmtree(out_dir)
        for order in range(self.args.orders):
            self.run_order(editor, order_folder(out_dir, order, self.args.orders),
                           label + (f" order-{order}" if self.args.orders > 1 else ""), order)

    def run_order(self, editor, where: Path, name: str, order: int) -> None:
        """One run: one method (config cell) on one edit order, into `where`."""
        from editbench.core import EditbenchError
        from editbench.harness.runner import Runner
        from editbench.harness.store import RunStore

        a = self.args
        meta = {"benchmark": {
            "name": self.data.name, "world": None if a.model else a.world, "source": self.data.source,
            "records": self.data.total_records, "skipped_records": len(self.data.skipped),
            "limit": a.limit, "shuffle": a.shuffle, "split": a.split if a.model is None else None,
            "exam_limit": a.exam_limit,
        }, "order": order, "audit": self.audit, "hparams": self.hparams_notes.get(editor.name)}
        store = RunStore(where, meta, self.save_model_at, resume=a.resume)
        try:
            if self.dirty:  # a run failed: its editor may have left anything behind
                self.lm, self.dirty = self.fresh_model(), False
            requests = edit_order(self.data.requests, a.seed, order)
            runner = Runner(self.lm, editor, requests, self.suite, self.checkpoints, a.seed, log=self.log,
                            protocol=self.protocol, label=name, progress=self._bar(name), guard=self.guard)
            runner.run(store)
            runner.restore_base()  # θ₀ again, bit for bit: the next method shares this loaded model
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
            print(f"editbench: {message} (recorded in {where / 'results.json'}; going on)", file=sys.stderr)
            _free_accelerator_memory()

    def execute(self, runs: list[tuple[str, dict, Path, str]], editors: list) -> None:
        """Every (method, config cell, folder, label) of the command, on the chosen executor. Locally
        they share this process's model; on Ray each (run, edit order) is a task that loads its own."""
        import shutil

        from editbench.harness.executors import Cell, get_executor

        a = self.args
        executor = get_executor(a.executor, a.ray_address, a.cpus_per_task, a.gpus_per_task, a.jobs, self.log)
        if executor.name == "local":
            for (method, extra, folder, label), editor in zip(runs, editors):
                self.run(editor, folder, label)
            return
        cells = []
        for method, extra, folder, label in runs:
            if a.overwrite and folder.exists():
                shutil.rmtree(folder)
            cells += [Cell(method, str(order_folder(folder, k, a.orders)),
                           label + (f" order-{k}" if a.orders > 1 else ""), k, extra) for k in range(a.orders)]
        if executor.name == "ray":
            self.log(f"{len(cells)} run(s) as Ray tasks ({a.cpus_per_task:g} CPU, {a.gpus_per_task:g} GPU each)")
        self.failures += executor.run(cells, run_cell, list(a.argv))

    def _bar(self, name: str):
        """A progress bar over edits on stderr; none under --quiet or when stderr is not a terminal."""
        from tqdm import tqdm

        quiet = self.args.quiet or not sys.stderr.isatty()
        return lambda total, done: tqdm(total=total, initial=done, desc=name, unit="edit", file=sys.stderr,
                                        disable=quiet, dynamic_ncols=True, leave=False)

    def finish(self) -> int:
        """Exit status of the whole run: 1 when any method failed (listed), else 0."""
        if not self.failures:
            return 0
        print(f"{len(self.failures)} run(s) failed:", file=sys.stderr)
        for line in self.failures:
            print(f"  {line}", file=sys.stderr)
        return 1


def _log_line(msg: str) -> None:
    """Progress messages on stderr, written above any progress bar."""
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


def _quiet_transformers() -> None:
    """No weight-loading bar per model and no deprecation notices that are not ours to fix."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    # peft asks transformers' deprecated is_gradient_checkpointing on every LoRA run
    warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.* is deprecated", category=FutureWarning)


def _free_accelerator_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _from_data_dir(args: argparse.Namespace) -> None:
    """A relative --data / --exam-dir missing here is looked up in --data-dir ($EDITBENCH_DATA), so the
    README's `--data zsre/zsre_3k.json` works from any clone location."""
    base = args.data_dir
    if base is None:
        return
    if args.data and not Path(args.data).is_absolute() and not Path(args.data).exists() \
            and (Path(base) / args.data).exists():
        args.data = str(Path(base) / args.data)
    if args.exam_dir is not None and not args.exam_dir.is_absolute() and not args.exam_dir.exists() \
            and (Path(base) / args.exam_dir).is_dir():
        args.exam_dir = Path(base) / args.exam_dir


def _is_world_folder(path: str) -> bool:
    return (Path(path) / "world.json").is_file()


def _check_paths(args: argparse.Namespace) -> None:
    """Files named on the command line exist and are what they should be (before any model work)."""
    _from_data_dir(args)
    if args.data:
        path = Path(args.data)
        if path.is_dir():
            raise ConfigError(f"--data {args.data}: is a directory; name the benchmark's JSON or JSONL file")
        if not path.exists() and (path.suffix in (".json", ".jsonl") or args.data.startswith((".", "/", "~"))):
            raise ConfigError(f"--data {args.data}: no such file")
    if args.exam in ("ceval", "mmlu") and args.exam_dir is None:
        raise ConfigError(f"exam '{args.exam}' needs --exam-dir (the folder with dev/ val/ and subject_mapping.json)")
    if args.exam_dir is not None and not args.exam_dir.is_dir():
        raise ConfigError(f"--exam-dir {args.exam_dir}: no such directory")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out}: exists and is not a directory")
    if args.benchmark == "world" and (args.limit is not None or args.shuffle or args.data):
        flag = "--limit" if args.limit is not None else "--shuffle" if args.shuffle else "--data"
        raise ConfigError(f"{flag} applies to dataset benchmarks; the world draws its edits with --edits and --seed")


def _check_numbers(args: argparse.Namespace) -> None:
    if args.edits is not None and args.edits < 1:
        raise ConfigError(f"--edits must be >= 1, got {args.edits}")
    for flag, value, low in (("--seed", args.seed, 0), ("--limit", args.limit, 1), ("--exam-limit", args.exam_limit, 1),
                             ("--exam-shots", args.exam_shots, 0), ("--orders", args.orders, 1),
                             ("--eval-batch-size", args.eval_batch_size, 1),
                             ("--eval-token-budget", args.eval_token_budget, 1)):
        if value is not None and not low <= value < 2**63:
            raise ConfigError(f"{flag} must be in [{low}, 2**63), got {value}")
    _check_device(args.device)
    n = args.edits  # without --edits, N is known only once the benchmark is loaded (checked again there)
    for flag, points in (("--checkpoints", args.checkpoints), ("--save-model-at", args.save_model_at)):
        bad = [t for t in points or [] if t < 1 or (n is not None and t > n)]
        if bad:
            raise ConfigError(f"{flag} {bad} out of range (valid: 1.." + (f"{n}, the number of edits)" if n else
                                                                         "the number of edits)"))
    if args.save_model_at and args.checkpoints and not set(args.save_model_at) <= set(args.checkpoints) | {n}:
        raise ConfigError(f"--save-model-at {args.save_model_at}: a model is saved at a checkpoint; add them to "
                          f"--checkpoints ({args.checkpoints})")


def _placement(args: argparse.Namespace) -> tuple[str | dict | None, dict | None]:
    """--device-map and --max-memory, read and checked before any model is loaded."""
    import json

    device_map = args.device_map
    if device_map is not None and device_map not in ("auto", "balanced", "balanced_low_0", "sequential"):
        path = Path(device_map)
        if not path.is_file():
            raise ConfigError(f"--device-map {device_map!r}: auto, balanced, sequential or a JSON file")
        try:
            device_map = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--device-map {path}: not a JSON object ({type(exc).__name__})") from None
        if not isinstance(device_map, dict) or not all(isinstance(k, str) for k in device_map):
            raise ConfigError(f"--device-map {path}: expected a JSON object of module -> device")
    memory = None
    if args.max_memory:
        if device_map is None:
            raise ConfigError("--max-memory needs --device-map")
        memory = {}
        for item in args.max_memory.split(","):
            key, sep, value = item.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise ConfigError(f"--max-memory {item!r}: expected DEVICE=SIZE, e.g. 0=20GiB or cpu=64GiB")
            memory[int(key) if key.strip().isdigit() else key.strip()] = value.strip()
    return device_map, memory


def _check_device(device: str) -> None:
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {device!r}: not a device (e.g. cpu, cuda, cuda:1, mps)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available to this torch ({torch.__version__}); use "
                          "--device cpu or install a CUDA build")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {device}: MPS is not available on this machine")


def _check_override_keys(overrides: dict, classes: dict) -> None:
    import dataclasses

    for method, values in overrides.items():
        if hasattr(classes[method].config_class, "from_mapping"):
            continue  # its keys are another tool's (EasyEdit's), checked when its config is built
        valid = [f.name for f in dataclasses.fields(classes[method].config_class)]
        for key in values:
            if key not in valid:
                raise ConfigError(f"--set {method}.{key}: unknown key for {method} (valid: {', '.join(valid)})")


def _save_points(args: argparse.Namespace, checkpoints: list[int]) -> set[int]:
    points = set(args.save_model_at or [])
    if args.save_model:
        points.add(checkpoints[-1])
    missing = sorted(points - set(checkpoints))
    if missing:
        raise ConfigError(f"--save-model-at {missing}: not among the checkpoints {checkpoints}")
    return points


def _audit(args: argparse.Namespace, world_path: Path | None) -> dict:
    """What a reader needs to audit a results file: the command, and the data it read by content."""
    import hashlib
    import json
    import shlex

    import torch

    from editbench.harness.cache import sha256_file, sha256_tree

    data = {}
    if args.data and Path(args.data).is_file():
        data[str(args.data)] = sha256_file(Path(args.data))
    if world_path is not None:
        data[f"world:{args.world}"] = sha256_file(Path(world_path) / "world.json")
    if args.exam_dir is not None:
        tree = sha256_tree(args.exam_dir)  # one digest over the folder's files and their hashes
        data[str(args.exam_dir)] = hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()
    return {"command": shlex.join(["editbench", *getattr(args, "argv", [])]), "cwd": str(Path.cwd()),
            "device": args.device, "dtype": args.dtype, "threads": torch.get_num_threads(), "data_sha256": data}


def _claim_outputs(args: argparse.Namespace, folders: list[Path]) -> None:
    """This run's folders in --out: existing results need --resume (continue) or --overwrite (replace,
    each folder just before its method runs, so a run that fails its checks deletes nothing)."""
    from editbench.harness.store import existing_results

    found = existing_results(folders)
    if found and not (args.resume or args.overwrite):
        names = ", ".join(f.name for f in found[:4]) + (" ..." if len(found) > 4 else "")
        raise ConfigError(f"--out {args.out} already holds results for {names}; pass --resume to continue them or "
                          "--overwrite to replace them")


def order_folder(folder: Path, order: int, orders: int) -> Path:
    return folder / f"order-{order}" if orders > 1 else folder


def run_cell(argv: list[str], cell) -> str | None:
    """One cell of a command in this process (a Ray worker): the command's own options, rebuilt from
    its argv, for one method, config cell and edit order. Returns a failure line or None."""
    args = build_parser().parse_args(argv)
    args.argv, args.overwrite, args.quiet, args.executor, args.jobs = argv, False, True, "local", 1
    methods = _methods(args.method) if isinstance(args.method, list) else [args.method]
    ctx = _RunContext(args, methods)
    ctx.load()
    ctx.run_order(ctx.editor(cell.method, cell.extra), Path(cell.folder), cell.label, cell.order)
    return ctx.failures[0] if ctx.failures else None


def edit_order(requests: list, seed: int, order: int) -> list:
    """Order 0 is the benchmark's order; order k > 0 a shuffle seeded by (seed, k)."""
    import random

    if order == 0:
        return list(requests)
    shuffled = list(requests)
    random.Random(f"editbench-order-{seed}-{order}").shuffle(shuffled)
    return shuffled


def _methods(names: list[str]) -> list[str]:
    """The requested editors, 'all' expanded to every registered one (entry-point plugins included)."""
    out: list[str] = []
    for name in names:
        out += editor_names() if name == "all" else [name]
    return list(dict.fromkeys(out))


def cmd_run(args: argparse.Namespace) -> int:
    from editbench.harness.results import find_results, load_results
    from editbench.harness.store import RunDirLock
    from editbench.reports.tables import summary_table

    methods = _methods(args.method)
    ctx = _RunContext(args, methods)
    with RunDirLock(args.out):
        _claim_outputs(args, [args.out / m for m in methods])
        ctx.load()
        # Every config is built and checked against the model before anything runs or is written.
        editors = [ctx.editor(m) for m in methods]
        ctx.execute([(m, {}, args.out / m, m) for m in methods], editors)
    results = [load_results(p) for p in find_results(args.out)]  # every order of every method
    done = [r for r in results if r["method"] in methods and r.get("status", "complete") == "complete"]
    if done:
        print(summary_table(done))
    if ctx.data.skipped:
        print(f"{len(ctx.data.skipped)} of {ctx.data.total_records} records of {ctx.data.source} skipped "
              "(--on-bad-record skip)")
    return ctx.finish()


def cmd_compare(args: argparse.Namespace) -> int:
    from editbench.reports.compare import write_comparison
    from editbench.reports.leaderboard import write_report

    methods = _methods(args.method)
    if len(methods) < 2:
        raise ConfigError("compare needs at least two methods (the first is the reference)")
    status = cmd_run(args)
    if status != 0:
        return status
    for path in write_comparison(args.out, methods) + write_report(args.out):
        if path.suffix in (".md", ".html"):
            print(path)
    print((args.out / "comparison.md").read_text())
    return 0


def cmd_regress(args: argparse.Namespace) -> int:
    import shlex
    import tempfile

    from editbench.reports import regress

    overrides = {}
    for item in args.tolerance:
        key, sep, value = item.partition("=")
        try:
            overrides[key] = float(value)
        except ValueError:
            raise ConfigError(f"--tolerance {item!r}: expected METRIC=NUMBER") from None
        if not sep:
            raise ConfigError(f"--tolerance {item!r}: expected METRIC=NUMBER")
    tolerances = regress.load_tolerances(args.tolerances, overrides)
    if args.baseline is not None:
        if args.run_dir is None:
            raise ConfigError("regress --baseline needs the run directory to judge")
        base = regress.load_baseline(args.baseline)
        run = regress.summarise_run(args.run_dir)
    else:
        suite = shlex.split(args.suite) if args.suite else list(regress.DEFAULT_SUITE)
        log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
        out = args.run_dir or Path(tempfile.mkdtemp(prefix="editbench-regress-")) / "run"
        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"{out} is not empty; name an empty or new folder for the working tree's run")
        run, base = regress.against(args.against, suite, out, log)
    regress.check_comparable(run, base, same_weights=args.baseline is not None)
    if run.get("fingerprint") != base.get("fingerprint"):
        print(f"note: the reference's model weights differ (sha256 {str(base.get('fingerprint'))[:16]} -> "
              f"{str(run.get('fingerprint'))[:16]}): the change rebuilt the world", file=sys.stderr)
    findings = regress.compare(run, base, tolerances)
    print(regress.report(findings, same=regress.identical(run, base)))
    return 1 if regress.regressed(findings) else 0


def cmd_baseline(args: argparse.Namespace) -> int:
    from editbench.harness.results import atomic_write_json
    from editbench.reports.regress import summarise_run

    atomic_write_json(args.out, summarise_run(args.run_dir))
    print(args.out)
    return 0


def _split_top_level(text: str) -> list[str]:
    """'[0,1],[1,2]' -> ['[0,1]', '[1,2]']: commas inside brackets belong to the value."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return parts + [current]


def _parse_grid(items: list[str]) -> dict[str, list]:
    from editbench.harness.hparams import parse_value

    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise ConfigError(f"--grid {item!r}: expected KEY=V1,V2,...")
        try:
            grid[key] = [parse_value(v) for v in _split_top_level(values)]
        except ConfigError as exc:
            raise ConfigError(f"--grid {item!r}: {exc}") from None
    if not grid:
        raise ConfigError("sweep needs at least one --grid KEY=V1,V2,...")
    return grid


def _cell_name(cell: dict) -> str:
    """A folder name for a config cell: 'density=0.2-delta_weight=0.8'; anything but letters, digits
    and . _ : + = , - [ ] becomes '_' (so a value can never name a path outside the run)."""
    import re

    text = "-".join(f"{k}={v}" for k, v in cell.items()).replace(" ", "")
    return re.sub(r"[^A-Za-z0-9._:+=,\[\]-]", "_", text).replace("..", "__")


def _run_cells(ctx: "_RunContext", method: str, cells: list[dict], out: Path):
    """Each config cell of one method into its own folder under `out`; yields (cell, folder name).
    Every cell's config is built and checked before the first one runs."""
    editors = [ctx.editor(method, cell) for cell in cells]
    names = [_cell_name(cell) for cell in cells]
    ctx.execute([(method, cell, out / name, f"{method} {name}") for cell, name in zip(cells, names)], editors)
    yield from zip(cells, names)


def cmd_sweep(args: argparse.Namespace) -> int:
    import itertools

    from editbench.harness.results import atomic_write_json
    from editbench.harness.store import RunDirLock
    from editbench.reports.sweep import SWEEP_FILE, write_sweep_report

    grid = _parse_grid(args.grid)
    ctx = _RunContext(args, [args.method])
    cells = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    with RunDirLock(args.out):
        _claim_outputs(args, [args.out / _cell_name(c) for c in cells])
        ctx.load()
        spec = {"method": args.method, "keys": list(grid),
                "cells": [{"dir": name, "values": cell} for cell, name in _run_cells(ctx, args.method, cells,
                                                                                      args.out)]}
        atomic_write_json(args.out / SWEEP_FILE, spec)
        if ctx.failures:
            return ctx.finish()
        for path in write_sweep_report(args.out):
            print(path)
    return 0


class _TuneEvaluator:
    """A tune's trials on the loaded world: the floor (independent edits, no fluency or exam) and the
    dev run (the tune's protocol, intermediate checkpoints reported to the pruner), each from θ₀."""

    def __init__(self, ctx: "_RunContext", method: str, out: Path) -> None:
        from editbench.harness.runner import EvalSuite
        from editbench.tuning import FLOOR_EDITS

        self.ctx, self.method, self.out = ctx, method, out
        suite = ctx.suite
        self.floor_requests = ctx.data.requests[:FLOOR_EDITS]
        self.floor_suite = EvalSuite([], suite.fluency_tokens, suite.exam_name, [], suite.exam_mode, 0,
                                     suite.generation)
        n = ctx.n_edits
        self.checkpoints = [n] if ctx.protocol.name == "batch" else [t for t in (10, 30) if t < n] + [n]

    def _run(self, values: dict, requests, suite, checkpoints, protocol, on_checkpoint=None):
        from editbench.harness.runner import Runner
        from editbench.tuning import Pruned

        ctx = self.ctx
        runner = Runner(ctx.lm, ctx.editor(self.method, values, announce=False), requests, suite, checkpoints, ctx.args.seed,
                        log=lambda msg: None, protocol=protocol, guard=ctx.guard, on_checkpoint=on_checkpoint)
        try:
            return runner.run()
        except (EditbenchError, Pruned):
            raise
        except Exception as exc:  # noqa: BLE001 - a trial that breaks is a failed trial, not a failed tune
            ctx.lm = ctx.fresh_model()  # whatever it left behind goes with the old copy
            raise EditbenchError(f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}") from exc
        finally:
            runner.restore_base()

    def floor(self, slot: int, values: dict) -> tuple[float, float]:
        from editbench.harness.protocols import get_protocol

        results, _ = self._run(values, self.floor_requests, self.floor_suite, [len(self.floor_requests)],
                               get_protocol("independent"))
        final = results["checkpoints"][-1]
        em = final.get("reliability_gen")
        em = final.get("reliability_em") or 0.0 if em is None else em  # token EM without generation
        return em, final.get("reliability") or 0.0

    def run(self, slot: int, values: dict, report) -> float:
        from editbench.harness.runner import write_run
        from editbench.reports.tables import checkpoint_row

        n = self.ctx.n_edits

        def observe(results: dict, row: dict) -> None:
            if row["edits"] < n:
                report(row["edits"], checkpoint_row(results, row)["score"] or 0.0)

        results, edit_rows = self._run(values, self.ctx.data.requests, self.ctx.suite, self.checkpoints,
                                       self.ctx.protocol, observe)
        write_run(self.out / f"trial-{slot:03d}", results, edit_rows)
        return checkpoint_row(results, results["checkpoints"][-1])["score"] or 0.0


def _check_tune(args: argparse.Namespace) -> None:
    if args.model is not None or args.benchmark != "world":
        raise ConfigError("tune runs on the world's dev split (--benchmark world, no --model)")
    if args.split != "dev":
        raise ConfigError("tune draws its edits from the dev split only (--split dev); the leaderboard's "
                          "edits are never used for tuning")
    if args.protocol not in ("sequential", "batch"):
        raise ConfigError(f"tune chooses configs for the sequential or batch protocol, not {args.protocol!r}")
    for method in _tune_methods(args.method):
        if get_editor_class(method).search_space is None:
            raise ConfigError(f"{method} declares no search space: nothing to tune")


def _tune_methods(names: list[str]) -> list[str]:
    """The methods to tune; 'all': every registered editor that declares a search space."""
    spaced = [m for m in editor_names() if get_editor_class(m).search_space is not None]
    return list(dict.fromkeys(m for name in names for m in (spaced if name == "all" else [name])))


def cmd_tune(args: argparse.Namespace) -> int:
    """Each method's study in its own folder (`--out/<method>`); several methods go through the executor
    (`--jobs N` worker processes, or Ray), one study per task: a study's trials run one after another,
    which keeps it seeded and resumable."""
    from editbench.harness.executors import Cell, get_executor

    _check_tune(args)
    methods = _tune_methods(args.method)
    if args.executor == "local" and (args.jobs == 1 or len(methods) == 1):
        codes = [_tune_method(args, method) for method in methods]
        return max(codes)
    executor = get_executor(args.executor, args.ray_address, args.cpus_per_task, args.gpus_per_task, args.jobs,
                            None if args.quiet else _log_line)
    cells = [Cell(m, str(args.out / m), f"tune {m}") for m in methods]
    failures = executor.run(cells, run_tune_cell, list(args.argv))
    for line in failures:
        print(f"editbench: {line}", file=sys.stderr)
    return 1 if failures else 0


def run_tune_cell(argv: list[str], cell) -> str | None:
    """One method's tune in this process (a worker or a Ray task); a failure line or None."""
    import contextlib
    import io

    args = build_parser().parse_args(argv)
    args.argv, args.executor, args.jobs = argv, "local", 1
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = _tune_method(args, cell.method)
        except EditbenchError as exc:
            return f"{cell.label}: {exc}"
    lines = [line for line in err.getvalue().splitlines() if line.startswith("editbench:")]
    return None if code == 0 else (lines[-1].removeprefix("editbench: ") if lines else f"{cell.label}: exit {code}")


def _tune_method(args: argparse.Namespace, method: str) -> int:
    import dataclasses
    import shutil

    from editbench import tuning
    from editbench.harness.hparams import hparams_file, load_yaml
    from editbench.harness.results import atomic_write_json, atomic_write_text, git_sha
    from editbench.harness.store import LOCK_FILE, RunDirLock

    settings = tuning.TuneSettings(budget=args.budget, seed=args.seed, floor_em=args.floor_em)
    ctx = _RunContext(args, [method])
    space = ctx.classes[method].search_space
    out = args.out / method
    write = Path(str(args.write).replace("{method}", method)) if args.write else None
    with RunDirLock(out):
        if args.overwrite:  # everything but the lock this command holds
            for item in out.iterdir():
                if not item.name.startswith(LOCK_FILE):
                    shutil.rmtree(item) if item.is_dir() else item.unlink()
        elif (out / tuning.STUDY_FILE).exists() and not args.resume:
            raise ConfigError(f"--out {out} already holds a tune; pass --resume to continue it or --overwrite to "
                              "start again")
        ctx.load()
        evaluator = _TuneEvaluator(ctx, method, out)
        settings = dataclasses.replace(settings, floor_edits=len(evaluator.floor_requests))
        tuned = tuning.search(space, ctx.lm.model.config.num_hidden_layers, evaluator, out,
                              f"{method}-{args.world}-{args.protocol}", settings, log=ctx.log)
        run = {"protocol": args.protocol, "n_edits": ctx.n_edits, "checkpoints": evaluator.checkpoints,
               "world": args.world, "fingerprint": ctx.lm.fingerprint(), "git_sha": git_sha()}
        provenance = tuning.provenance_block(tuned, run)
        base_file = hparams_file(method, ctx.lm.hparams_key, ctx.lm.model.config.model_type, args.protocol)
        base_values = load_yaml(base_file) if base_file else {}
        text = tuning.tuned_yaml(method, base_values, tuned["chosen"], provenance)
        atomic_write_json(out / "tune.json", provenance)
        for target in [out / "tuned.yaml"] + ([write] if write else []):
            atomic_write_text(target, text)
    if not tuned["floor_passed"]:  # the method, not the input, failed: exit 1, like a failed run
        print(f"editbench: {method} on world '{args.world}' ({args.protocol}): no point of its space passed the "
              f"single-edit floor (generated-answer EM >= {args.floor_em} on {settings.floor_edits} independent dev "
              f"edits) in {args.budget} trials; best floor EM {tuned['chosen_floor_em']} at {tuned['chosen']} "
              f"(kept, marked floor_passed: false)", file=sys.stderr)
        print(write or out / "tuned.yaml")
        return 1
    print(f"{method}: chose {tuned['chosen']} (trial {tuned['chosen_trial']}, dev score {tuned['dev_score']:.4f}, "
          f"floor EM {tuned['chosen_floor_em']:.2f}; {tuned['trials_complete']} complete, {tuned['trials_pruned']} "
          f"pruned, {tuned['trials_under_floor']} under the floor of {args.budget} trials, {tuned['seconds']:.0f}s)")
    print(write or out / "tuned.yaml")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from editbench.reports.leaderboard import FORMATS, write_report

    split = lambda text: tuple(x.strip() for x in text.split(",") if x.strip()) if text else None  # noqa: E731
    for path in write_report(args.run_dir, log=lambda msg: print(msg, file=sys.stderr),
                             formats=split(args.format) or FORMATS, metrics=split(args.metrics),
                             checkpoint=args.checkpoint, score_basis=args.score_basis):
        print(path)
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    for name in editor_names():
        cls = get_editor_class(name)
        own = cls.__dict__.get("__doc__")  # the class's own line first: ft / ft_l share a module
        doc = (own or sys.modules[cls.__module__].__doc__ or "").strip().splitlines()
        print(f"{name:12s} {cls.__module__}" + (f"  {doc[0]}" if doc else ""))
    from editbench.core import EDITOR_FAMILIES

    for family, module in EDITOR_FAMILIES.items():
        mod = importlib.import_module(module)
        doc = (mod.__doc__ or "").strip().splitlines()
        members = ", ".join(getattr(mod, "ALGORITHMS", {}))
        line = f"{family + ':ALGO':12s} {module}" + (f"  {doc[0]}" if doc else "")
        print(line + (f" ({members})" if members else ""))
    return 0


def cmd_benchmarks(args: argparse.Namespace) -> int:
    from editbench.benchmarks.registry import BENCHMARKS, EXAMS

    print("benchmarks:")
    for name, text in BENCHMARKS.items():
        print(f"  {name:12s} {render_settings(text, flag_of)}")
    print("exams:")
    for name, text in EXAMS.items():
        print(f"  {name:12s} {render_settings(text, flag_of)}")
    print("worlds (--world; the synthetic world's sizes, built on first use and cached):")
    for line in _world_lines():
        print(f"  {line}")
    return 0


def _world_lines() -> list[str]:
    """Per world size: edit and dev pool sizes, layers and width, and the fingerprint of the cached
    copy (or that it is not built yet on this machine)."""
    import json

    from editbench.benchmarks.world import generate_world
    from editbench.benchmarks.world_model import REPORT_FILE, world_dir

    lines = []
    for name, config in WORLD_SIZES.items():
        world = generate_world(config)
        report_path = world_dir(config) / REPORT_FILE
        try:
            built = f"weights sha256 {json.loads(report_path.read_text())['weights_sha256'][:16]} (cached)"
        except (OSError, ValueError, KeyError):
            built = "not built on this machine yet"
        lines.append(f"{name:12s} edition {config.edition}, {len(world.facts_of('edit'))} edit-pool facts, "
                     f"{len(world.facts_of('dev'))} dev, {config.num_layers} layers x {config.hidden_size}; {built}")
    return lines


COMMANDS = {"run": cmd_run, "compare": cmd_compare, "regress": cmd_regress, "baseline": cmd_baseline,
            "sweep": cmd_sweep, "tune": cmd_tune, "report": cmd_report, "methods": cmd_methods, "benchmarks": cmd_benchmarks}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in results for audit
    try:
        return COMMANDS[args.command](args)
    except EditbenchError as exc:
        print(f"editbench: error: {exc.render(flag_of)}", file=sys.stderr)
        return 2


# run settings whose command-line option is not --<name with dashes>
_FLAGS = {"overrides": "--set"}


def flag_of(setting_name: str) -> str:
    """The command-line option of a run setting that a library error names (core.setting)."""
    return _FLAGS.get(setting_name, "--" + setting_name.replace("_", "-"))


if __name__ == "__main__":
    sys.exit(main())
