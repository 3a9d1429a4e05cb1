"""`editbench` command line: run, report, methods, benchmarks."""
from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path
from typing import Any

import editbench
from editbench.core import ConfigError, EditbenchError, editor_names, get_editor_class, render_settings
from editbench.plan import GROUPS, RunPlan, plan_fields
from editbench.benchmarks.world import WORLD_SIZES
from editbench.tuning import DEFAULT_BUDGET, FLOOR_EM


class _OneLineErrors(argparse.ArgumentParser):
    """Every argument error is one line, `editbench: error: --world: 'nosuch' is not one of default,
    large, micro`, exit 2, like every other error of the CLI; --help still shows the whole usage."""

    def _check_value(self, action, value):
        if action.choices is not None and value not in action.choices:
            raise argparse.ArgumentError(action, f"{value!r} is not one of {', '.join(map(str, action.choices))}")

    def error(self, message: str):
        message = re.sub(r"^argument ([^:]+): ", lambda m: f"{m.group(1).split('/')[-1]}: ", message)
        self.exit(2, f"editbench: error: {' '.join(message.split())}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(prog="editbench", description="Benchmark harness for knowledge editing.")
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
    tune.add_argument("--budget", type=int, default=DEFAULT_BUDGET, help="trials (complete, pruned or under the floor); the "
                      "first is the space's reference point")
    tune.add_argument("--floor-em", type=float, default=FLOOR_EM, help="generated-answer exact match a config needs on "
                      "20 independent dev edits to count")
    tune.add_argument("--write", help="write the chosen YAML here too; {method} stands for the "
                      "method (e.g. 'editbench/hparams/{method}/world-micro.yaml')")
    tune.add_argument("--given", metavar="YAML", help="a config tried as it is after the reference point and the "
                      "incumbent: a YAML of some searched fields (the rest at the reference point); {method} stands "
                      "for the method, and a method without such a file gets none")
    _add_run_options(tune, defaults={"split": "dev"})

    trace = command("trace", help="causal tracing as ROME does it: where in the model the facts it knows live "
                           "(average indirect effect per layer of hidden states, MLP and attention); trace.json, trace.png")
    trace.add_argument("--samples", type=int, default=10, help="corrupted runs per fact")
    trace.add_argument("--noise", type=float, help="the noise's standard deviation (default: 3 x the std of the "
                       "subjects' token embeddings, the paper's rule)")
    trace.add_argument("--window", type=int, default=10, help="MLP and attention: modules restored around each layer")
    trace.add_argument("--known-top-k", type=int, default=1, help="trace a fact when its true answer's first token "
                       "is among the model's top K next tokens (1: the facts it predicts, as the reference)")
    _add_run_options(trace, defaults={"edits": 20})

    report = command("report", help="write leaderboard tables and plots for a run directory")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--format", help="md,csv,json,html: which files (default: all four)")
    report.add_argument("--metrics", help="figures to draw, e.g. reliability,locality (default: every metric)")
    report.add_argument("--checkpoint", type=int, help="rank at this T instead of each run's last checkpoint")
    report.add_argument("--score-basis", choices=("generation", "token"), help="what the score's edit success and "
                        "locality rest on: generated exact match or teacher-forced token accuracy (default: what "
                        "the runs recorded; generation unless they ran --eval-mode teacher-forced)")

    agree = command("agreement", help="Kendall's tau between two run folders' rankings (e.g. the world against "
                    "a real model), with a bootstrap interval, and each method's rank on both")
    agree.add_argument("run_a", type=Path)
    agree.add_argument("run_b", type=Path)
    agree.add_argument("--score-basis", choices=("generation", "token"), default="generation")

    world = command("world", help="the shipped worlds: check their files, or rebuild one from its recipe and "
                           "compare the fingerprints")
    world.add_argument("action", choices=("check", "rebuild"), help="check: verify the shipped files' sha256; "
                       "rebuild: train from the recipe into the cache (used only through --model FOLDER)")
    world.add_argument("--world", choices=tuple(WORLD_SIZES), default="default", help="world size")

    command("methods", help="list registered editors")
    command("benchmarks", help="list benchmarks and exams")
    return parser



class _DefaultsHelp(argparse.HelpFormatter):
    """Adds '(default: X)' to an option's help unless it has no default or already names one."""

    def _get_help_string(self, action):
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == [] \
            or action.default == argparse.SUPPRESS
        if not action.option_strings or unset or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


def _add_run_options(parser: argparse.ArgumentParser, defaults: dict | None = None) -> None:
    """One option per run plan field, grouped by what it sets (the plan holds their help); `defaults`
    replaces a field's default for this command (tune's split is dev: the only one it reads)."""
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    for f in plan_fields():
        meta = f.metadata
        kwargs: dict[str, Any] = {"help": render_settings(meta["help"], flag_of), "dest": f.name}
        if meta.get("repeat"):
            kwargs.update(action="append", default=[])
        elif f.default is False:
            kwargs.update(action="store_true")
        else:
            kwargs.update(default=(defaults or {}).get(f.name, f.default))
            kwargs.update({k: meta[k] for k in ("type", "choices", "required") if k in meta})
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
        groups[meta["group"]].add_argument(flag_of(f.name), **kwargs)


def _plan(args: argparse.Namespace, methods: list[str]) -> RunPlan:
    """The run plan of a command's arguments (the command line recorded for the audit), its
    process-wide settings (threads, logging) applied: a command is this process's one run."""
    import shlex

    from editbench.session import apply_process_settings

    plan = RunPlan.from_mapping({**vars(args), "methods": methods, "command": shlex.join(["editbench", *args.argv])})
    apply_process_settings(plan)
    return plan


def cmd_run(args: argparse.Namespace) -> int:
    from editbench.reports.tables import summary_table
    from editbench.session import RunSession

    outcome = RunSession(_plan(args, args.method)).run()
    if outcome.results:
        print(summary_table(outcome.results))
    if outcome.skipped:
        print(f"{len(outcome.skipped)} of {outcome.total_records} records of {outcome.source} skipped "
              "(--on-bad-record skip)")
    return _report_failures(outcome.failures)


def _report_failures(failures: list[str]) -> int:
    """Exit status of a command: 1 when any run failed (listed), else 0."""
    if failures:
        print(f"{len(failures)} run(s) failed:", file=sys.stderr)
        for line in failures:
            print(f"  {line}", file=sys.stderr)
    return 1 if failures else 0


def cmd_compare(args: argparse.Namespace) -> int:
    from editbench.reports.compare import write_comparison
    from editbench.reports.leaderboard import write_report

    methods = list(_plan(args, args.method).methods)
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


def cmd_sweep(args: argparse.Namespace) -> int:
    from editbench.harness.results import atomic_write_json
    from editbench.reports.sweep import SWEEP_FILE, write_sweep_report
    from editbench.session import RunSession

    grid = _parse_grid(args.grid)
    outcome = RunSession(_plan(args, [args.method])).sweep(grid)
    spec = {"method": args.method, "keys": list(grid),
            "cells": [{"dir": name, "values": cell} for cell, name in outcome.cells]}
    atomic_write_json(args.out / SWEEP_FILE, spec)
    if outcome.failures:
        return _report_failures(outcome.failures)
    for path in write_sweep_report(args.out):
        print(path)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    """Each method's study in its own folder (`--out/<method>`), several at once with --jobs or Ray."""
    from editbench.session import log_line
    from editbench.tuning import TuneSettings
    from editbench.tuning_session import tune, tune_methods

    plan = _plan(args, tune_methods(args.method))
    settings = TuneSettings(budget=args.budget, seed=args.seed, floor_em=args.floor_em)
    outcomes = tune(plan, settings, args.write, log=None if args.quiet else log_line, given=args.given)
    for outcome in outcomes:
        if outcome.passed and outcome.summary:
            print(outcome.summary)
        elif not outcome.passed:
            print(f"editbench: {outcome.summary}", file=sys.stderr)
        if outcome.yaml is not None:
            print(outcome.yaml)
    return 0 if all(o.passed for o in outcomes) else 1


def cmd_trace(args: argparse.Namespace) -> int:
    from editbench.harness.tracing import TraceSettings
    from editbench.session import log_line
    from editbench.tracing_session import trace

    settings = TraceSettings(samples=args.samples, noise=args.noise, window=args.window)
    record = trace(_plan(args, ["noedit"]), settings, log=(lambda msg: None) if args.quiet else log_line,
                   top_k=args.known_top_k)
    peaks = ", ".join(f"{kind} {layer}" for kind, layer in record["peak_layer_last_subject"].items())
    print(f"{record['facts_known']} known facts traced in {record['seconds']} s; largest average indirect effect at "
          f"the last subject token: {peaks}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from editbench.reports.leaderboard import FORMATS, write_report

    split = lambda text: tuple(x.strip() for x in text.split(",") if x.strip()) if text else None  # noqa: E731
    for path in write_report(args.run_dir, log=lambda msg: print(msg, file=sys.stderr),
                             formats=split(args.format) or FORMATS, metrics=split(args.metrics),
                             checkpoint=args.checkpoint, score_basis=args.score_basis):
        print(path)
    return 0


def cmd_agreement(args: argparse.Namespace) -> int:
    from editbench.reports.agreement import agreement, markdown

    print(markdown(agreement(args.run_a, args.run_b, args.score_basis)), end="")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from editbench.core import EDITOR_FAMILIES

    for name in editor_names():
        cls = get_editor_class(name)
        own = cls.__dict__.get("__doc__")  # the class's own line first: ft / ft_l share a module
        doc = (own or sys.modules[cls.__module__].__doc__ or "").strip().splitlines()
        print(f"{name:12s} {cls.__module__}" + (f"  {doc[0]}" if doc else ""))
    for family, module in EDITOR_FAMILIES.items():
        mod = importlib.import_module(module)
        doc = (mod.__doc__ or "").strip().splitlines()
        members = ", ".join(getattr(mod, "ALGORITHMS", {}))
        line = f"{family + ':ALGO':12s} {module}" + (f"  {doc[0]}" if doc else "")
        print(line + (f" ({members})" if members else ""))
    return 0


def cmd_benchmarks(args: argparse.Namespace) -> int:
    from editbench.benchmarks.registry import benchmarks, exams
    from editbench.benchmarks.world_model import world_lines

    print("benchmarks:")
    for name, text in benchmarks().items():
        print(f"  {name:12s} {render_settings(text, flag_of)}")
    print("exams:")
    for name, text in exams().items():
        print(f"  {name:12s} {render_settings(text, flag_of)}")
    print("worlds (--world; the synthetic world's sizes, shipped with the package):")
    for line in world_lines():
        print(f"  {line}")
    return 0


def cmd_world(args: argparse.Namespace) -> int:
    from editbench.benchmarks.world import world_config
    from editbench.benchmarks.world_model import ensure_world, fingerprint_table, rebuild_world

    config = world_config(args.world)
    if args.action == "check":
        print(ensure_world(config, log=print))
        return 0
    rebuilt = rebuild_world(config, log=print)
    print("\n".join(fingerprint_table(config, rebuilt)))
    print(f"the rebuilt world is used only when named: editbench run --model {rebuilt} ...")
    return 0


COMMANDS = {"run": cmd_run, "compare": cmd_compare, "regress": cmd_regress, "baseline": cmd_baseline,
            "sweep": cmd_sweep, "tune": cmd_tune, "trace": cmd_trace, "report": cmd_report, "agreement": cmd_agreement, "methods": cmd_methods, "benchmarks": cmd_benchmarks,
            "world": cmd_world}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in results for audit
    try:
        return COMMANDS[args.command](args)
    except EditbenchError as exc:
        print(f"editbench: error: {exc.render(flag_of)}", file=sys.stderr)
        return 2


# run settings whose command-line option is not --<name with dashes>
_FLAGS = {"overrides": "--set", "methods": "--method"}


def flag_of(setting_name: str) -> str:
    """The command-line option of a run setting that a library error names (core.setting)."""
    return _FLAGS.get(setting_name, "--" + setting_name.replace("_", "-"))


if __name__ == "__main__":
    sys.exit(main())
