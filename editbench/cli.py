"""`editbench` command line: run, report, methods, benchmarks."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from editbench.core import ConfigError, EditbenchError, editor_names, get_editor_class


def _csv_ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="editbench", description="Benchmark harness for knowledge editing.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="apply N edits sequentially with each method and score them at checkpoints")
    run.add_argument("--method", action="append", required=True, help="editor name; repeat for several")
    run.add_argument("--benchmark", default="world")
    run.add_argument("--world", default="default", help="world size when the world model or data is used")
    run.add_argument("--model", help="Hugging Face id or local path (default: the world model)")
    run.add_argument("--device", default="cpu")
    run.add_argument("--dtype", default="float32")
    run.add_argument("--edits", type=int, default=100)
    run.add_argument("--checkpoints", type=_csv_ints, help="e.g. 1,10,100 (the last edit is always one)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", type=Path, required=True, help="run directory; results go to OUT/<method>/")
    run.add_argument("--hparams", action="append", default=[], help="YAML file (one method) or METHOD=FILE")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="METHOD.KEY=VALUE")
    run.add_argument("--quiet", action="store_true")

    report = sub.add_parser("report", help="write leaderboard tables and plots for a run directory")
    report.add_argument("run_dir", type=Path)

    sub.add_parser("methods", help="list registered editors")
    sub.add_parser("benchmarks", help="list benchmarks and exams")
    return parser


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


def cmd_run(args: argparse.Namespace) -> int:
    from editbench.benchmarks.registry import check_names, world_benchmark
    from editbench.benchmarks.world import world_config
    from editbench.benchmarks.world_model import ensure_world
    from editbench.harness.hparams import parse_overrides, resolve_config
    from editbench.harness.models import load_model
    from editbench.harness.runner import EvalSuite, SequentialRunner, resolve_checkpoints, write_run
    from editbench.reports.tables import summary_table

    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    if args.quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    methods = list(dict.fromkeys(args.method))
    classes = {m: get_editor_class(m) for m in methods}
    check_names(args.benchmark, None)
    resolve_checkpoints(args.checkpoints, args.edits)
    overrides = parse_overrides(args.overrides, methods)
    files = _hparams_files(args.hparams, methods)

    world_path = ensure_world(world_config(args.world), log=log)
    model_path = args.model or str(world_path)
    hparams_key = None if args.model else "world"

    def fresh_model():
        return load_model(model_path, device=args.device, dtype=args.dtype, hparams_key=hparams_key)

    lm = fresh_model()
    data = world_benchmark(world_path, args.edits, args.seed)
    suite = EvalSuite(data.fluency_prompts, data.fluency_tokens, data.exam_name, data.exam)
    # Every config is built and checked against the model before anything runs or is written.
    editors = {}
    for m in methods:
        config, source = resolve_config(classes[m].config_class, m, lm.hparams_key, lm.model.config.model_type,
                                        files.get(m), overrides.get(m))
        editors[m] = classes[m](config)
        editors[m].check_model(lm)
        log(f"{m}: hparams from {source}")
    all_results = []
    for i, m in enumerate(methods):
        if i > 0:
            lm = fresh_model()  # each method starts from the unedited weights
        runner = SequentialRunner(lm, editors[m], data.requests, suite, args.checkpoints, args.seed, log=log)
        results, edit_rows = runner.run()
        results["benchmark"] = {"name": data.name, "world": args.world if not args.model else None}
        write_run(args.out / m, results, edit_rows)
        all_results.append(results)
    print(summary_table(all_results))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from editbench.reports.leaderboard import write_report

    for path in write_report(args.run_dir):
        print(path)
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    for name in editor_names():
        cls = get_editor_class(name)
        doc = (sys.modules[cls.__module__].__doc__ or "").strip().splitlines()
        print(f"{name:12s} {cls.__module__}" + (f"  {doc[0]}" if doc else ""))
    return 0


def cmd_benchmarks(args: argparse.Namespace) -> int:
    from editbench.benchmarks.registry import BENCHMARKS, EXAMS

    print("benchmarks:")
    for name, text in BENCHMARKS.items():
        print(f"  {name:12s} {text}")
    print("exams:")
    for name, text in EXAMS.items():
        print(f"  {name:12s} {text}")
    return 0


COMMANDS = {"run": cmd_run, "report": cmd_report, "methods": cmd_methods, "benchmarks": cmd_benchmarks}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except EditbenchError as exc:
        print(f"editbench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
