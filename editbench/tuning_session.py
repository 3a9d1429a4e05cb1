"""A tune as a session: each method's Optuna study (tuning.py) run on a plan's world and dev split.

`tune(plan, settings)` runs one study per method, here or through the plan's executor (worker
processes, Ray: one study per task, its trials one after another, which keeps it seeded and
resumable); `tune_method` is one study on a loaded `RunSession`. Each returns `TuneOutcome`s the front
ends print.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from editbench.core import ConfigError, EditbenchError, editor_names, get_editor_class, setting
from editbench.harness.compute import FlopMeter
from editbench.harness.executors import Cell
from editbench.plan import RunPlan
from editbench.session import RunSession, apply_process_settings, fan_out
from editbench.tuning import FLOOR_EDITS, STUDY_FILE, Pruned, TuneSettings

SUMMARY_FILE = "summary.txt"  # a method's outcome line, for the caller of a worker that tuned it
TUNED_FILE = "tuned.yaml"  # the chosen YAML in the study's folder (also written where the plan's `write` says)

TUNE_PROTOCOLS = ("sequential", "batch")


@dataclass
class TuneOutcome:
    method: str
    yaml: Path | None = None  # the chosen YAML (also when the floor was not passed)
    summary: str = ""  # one line: what was chosen, or why nothing passed
    passed: bool = False


def tune_methods(names: list[str]) -> list[str]:
    """The methods to tune; 'all': every registered editor that declares a search space."""
    spaced = [m for m in editor_names() if get_editor_class(m).search_space is not None]
    return list(dict.fromkeys(m for name in names for m in (spaced if name == "all" else [name])))


def check_tune(plan: RunPlan) -> None:
    if (plan.model is None) != (plan.benchmark == "world"):
        raise ConfigError(f"tune runs on the world's dev split with the world model, or on a dataset's dev split "
                          f"with a {setting('model')}")
    if plan.split != "dev":
        raise ConfigError(f"tune draws its edits from the dev split only ({setting('split')} dev); the "
                          "leaderboard's edits are never used for tuning")
    if plan.protocol not in TUNE_PROTOCOLS:
        raise ConfigError(f"tune chooses configs for the sequential or batch protocol, not {plan.protocol!r}")
    if plan.step_size is not None:
        raise ConfigError(f"tune chooses configs for the method's own call size; a {setting('step_size')} is not "
                          "tuned for (run the chosen YAML with one)")
    plan.out_dir("tune")
    for method in plan.methods:
        if get_editor_class(method).search_space is None:
            raise ConfigError(f"{method} declares no search space: nothing to tune")


def tune(plan: RunPlan, settings: TuneSettings, write: str | None = None, log=None,
         given: str | None = None) -> list[TuneOutcome]:
    """Every method of the plan, each its own study in `out/<method>`; `given`: a YAML of config values
    each study tries as they are (see `given_trials`)."""

    check_tune(plan)
    for m in plan.methods:  # bad given files fail here, before any study starts
        given_trials(given, m)
    if plan.executor == "local" and (plan.jobs == 1 or len(plan.methods) == 1):
        return [tune_method(plan.replace(methods=(m,)), settings, write, given) for m in plan.methods]
    job = json.dumps({"plan": plan.to_json(), "settings": dataclasses.asdict(settings), "write": write,
                      "given": given})
    out = plan.out_dir("tune")
    cells = [Cell(m, str(out / m), f"tune {m}") for m in plan.methods]
    failures = fan_out(plan, cells, tune_cell, job, log)
    outcomes = []
    for m in plan.methods:
        failure = next((f for f in failures if f.startswith(f"tune {m}:")), None)
        line = out / m / SUMMARY_FILE  # a passed method's line, written where it ran
        written = _target(write, m) or out / m / TUNED_FILE
        outcomes.append(TuneOutcome(m, written if written.exists() else None,
                                    failure or (line.read_text().strip() if line.exists() else ""), failure is None))
    return outcomes


def _target(write: str | None, method: str) -> Path | None:
    """Where the chosen YAML is also written: `write` with `{method}` standing for the method."""
    return Path(write.replace("{method}", method)) if write else None


def given_trials(given: str | None, method: str) -> list:
    """The given trial a method's study tries after its reference point and incumbent: the YAML at
    `given` ({method} standing for the method; with {method}, a method without such a file gets none),
    a mapping of some of the searched fields to values."""
    from editbench import tuning
    from editbench.harness.hparams import load_yaml

    path = _target(given, method)
    if path is None or (not path.exists() and "{method}" in str(given)):
        return []
    if not path.is_file():
        raise ConfigError(f"{path}: no such given-trial file")
    values = load_yaml(path)
    if not isinstance(values, dict) or not values:
        raise ConfigError(f"{path}: a given trial is a mapping of searched fields to values")
    return [tuning.GivenTrial(str(path), {k: v for k, v in values.items() if k != "provenance"})]


def tune_cell(job: str, cell: Cell) -> str | None:
    """One method's tune in this process (a worker or a Ray task); a failure line or None."""
    spec = json.loads(job)
    plan = RunPlan.from_json(spec["plan"]).replace(methods=(cell.method,), executor="local", jobs=1, quiet=True)
    apply_process_settings(plan)
    try:
        outcome = tune_method(plan, TuneSettings(**spec["settings"]), spec["write"], spec.get("given"))
    except EditbenchError as exc:
        return f"{cell.label}: {exc}"
    return None if outcome.passed else f"{cell.label}: {outcome.summary}"


class TuneEvaluator:
    """A tune's trials on the loaded world: the floor (independent edits, no fluency or exam) and the
    dev run (the tune's protocol, intermediate checkpoints reported to the pruner), each from θ₀."""

    def __init__(self, session: RunSession, method: str, out: Path) -> None:
        from editbench.harness.suite import EvalSuite

        self.session, self.method, self.out = session, method, out
        suite = session.suite
        self.floor_requests = session.data.requests[:FLOOR_EDITS]
        self.floor_suite = EvalSuite([], suite.fluency_tokens, suite.exam_name, [], suite.exam_mode, 0,
                                     suite.generation, prompt_format=suite.prompt_format)
        n = session.n_edits
        self.checkpoints = [n] if session.protocol.name == "batch" else [t for t in (10, 30) if t < n] + [n]
        self.ceiling = session.ceiling()  # read once: every trial's floor is held to it

    def _run(self, values: dict, requests, suite, checkpoints, protocol, on_checkpoint=None, flops=None):
        from editbench.harness.runner import Runner

        s = self.session
        runner = Runner(s.lm, s.editor(self.method, values, announce=False), requests, suite, checkpoints,
                        s.plan.seed, log=lambda msg: None, protocol=protocol, guard=s.guard,
                        on_checkpoint=on_checkpoint, flops=flops)
        try:
            return runner.run()
        except (EditbenchError, Pruned):
            raise
        except Exception as exc:  # noqa: BLE001 - a trial that breaks is a failed trial, not a failed tune
            s.lm = s.fresh_model()  # whatever it left behind goes with the old copy
            raise EditbenchError(f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}") from exc
        finally:
            runner.restore_base()

    def floor(self, slot: int, values: dict) -> tuple[float, float]:
        from editbench.harness.protocols import get_protocol

        # the first floor edit is counted: a config over the compute ceiling stops there (OverCeiling)
        meter = (FlopMeter(1, self.session.plan.seed, self.ceiling, stop_over_ceiling=True)
                 if self.ceiling.flops_per_edit else None)
        results, _ = self._run(values, self.floor_requests, self.floor_suite, [len(self.floor_requests)],
                               get_protocol("independent"), flops=meter)
        final = results["checkpoints"][-1]
        em = final.get("reliability_gen")
        em = final.get("reliability_em") or 0.0 if em is None else em  # token EM without generation
        return em, final.get("reliability") or 0.0

    def run(self, slot: int, values: dict, report) -> float:
        from editbench.harness.runner import write_run
        from editbench.harness.record import CheckpointRow, RunRecord
        from editbench.harness.results import upgraded, upgraded_checkpoint
        from editbench.reports.tables import checkpoint_row

        n = self.session.n_edits

        def observe(results: RunRecord, row: CheckpointRow) -> None:
            if row["edits"] < n:
                report(row["edits"], checkpoint_row(upgraded(dict(results)), upgraded_checkpoint(dict(row)))["score"] or 0.0)

        results, edit_rows = self._run(values, self.session.data.requests, self.session.suite, self.checkpoints,
                                       self.session.protocol, observe)
        write_run(self.out / f"trial-{slot:03d}", results, edit_rows)
        final = upgraded(dict(results))
        return checkpoint_row(final, final["checkpoints"][-1])["score"] or 0.0


def tune_method(plan: RunPlan, settings: TuneSettings, write: str | None = None,
                given: str | None = None) -> TuneOutcome:
    """One method's study (resumed when its journal is there and the plan says resume); writes
    `out/<method>/tuned.yaml` (and `write`, `{method}` standing for the method) with provenance."""
    from editbench import tuning
    from editbench.harness.hparams import hparams_file, load_yaml
    from editbench.harness.results import atomic_write_json, atomic_write_text, git_sha
    from editbench.harness.store import RunDirLock

    method = plan.methods[0]
    check_tune(plan)
    session = RunSession(plan)
    out = plan.out_dir("tune") / method
    target = _target(write, method)
    with RunDirLock(out):
        _claim_study(plan, out)
        session.load()
        evaluator = TuneEvaluator(session, method, out)
        settings = dataclasses.replace(settings, floor_edits=len(evaluator.floor_requests))
        # the YAML this world and protocol run now: its values are tried as they are (the incumbent)
        base_file = hparams_file(method, session.lm.hparams_key, session.lm.model.config.model_type, plan.protocol)
        base = load_yaml(base_file) if base_file else {}
        space, n_layers = session.classes[method].search_space, session.lm.model.config.num_hidden_layers
        subject = {"world": plan.world} if plan.benchmark == "world" else {
            "benchmark": plan.benchmark, "data": Path(str(plan.data)).name, "split": plan.split}
        run = {"protocol": plan.protocol, "n_edits": session.n_edits, "checkpoints": evaluator.checkpoints,
               **subject, "fingerprint": session.lm.fingerprint(), "git_sha": git_sha(), "n_layers": n_layers,
               "compute_ceiling": evaluator.ceiling.flops_per_edit}
        incumbent = _config_of(session.classes[method], base, base_file) if base_file else None
        source = base_file.name if base_file else None
        extra = given_trials(given, method)  # checked against the space where `search` starts
        prior, start = _prior(plan, out, base.get("provenance"), space, settings, run, session.log, extra)
        if prior is not None:  # the rebuilt study's incumbent is the one it started from, not its outcome
            started_from = prior.get("incumbent") or {}
            incumbent, source = started_from.get("config"), started_from.get("source")
        try:
            tuned = tuning.search(space, n_layers, evaluator, out, f"{method}-{subject.get('world') or plan.benchmark}-{plan.protocol}",
                                  settings, log=session.log, incumbent=incumbent, prior=prior, given=extra)
        except tuning.TuneError as exc:  # every trial failed: the method, not the input (exit 1, as a failed run)
            return TuneOutcome(method, None, f"{method} on {_subject(plan)} ({plan.protocol}): {exc}; nothing written")
        if "incumbent" in tuned:
            tuned["incumbent"] = {"source": source, **tuned["incumbent"]}
        provenance = tuning.provenance_block(tuned, run)
        text = tuning.tuned_yaml(method, base, tuned["chosen"], provenance)
        atomic_write_json(out / "tune.json", provenance)
        for path in [out / TUNED_FILE] + ([target] if target else []):
            atomic_write_text(path, text)
    yaml_path = target or out / TUNED_FILE
    outcome = _outcome(method, yaml_path, tuned, plan, settings, start)
    atomic_write_text(out / SUMMARY_FILE, outcome.summary + "\n")  # what a worker's caller prints
    return outcome


def _outcome(method: str, yaml_path: Path, tuned: dict, plan: RunPlan, settings: TuneSettings,
             start: str) -> TuneOutcome:
    if not tuned["floor_passed"]:  # the method, not the input, failed: exit 1, like a failed run
        best = max((t for t in tuned["trials"] if t["floor_em"] is not None),
                   key=lambda t: (t["floor_em"], -t["trial"]))
        return TuneOutcome(method, yaml_path, f"{method} on {_subject(plan)} ({plan.protocol}): no point of its "
                           f"space passed the single-edit floor (generated-answer EM >= {settings.floor_em} on "
                           f"{settings.floor_edits} independent dev edits) in {settings.budget} trials; best floor "
                           f"EM {best['floor_em']} (trial {best['trial']}, {best['state']}); kept trial "
                           f"{tuned['chosen_trial']}, the best dev score ({tuned['dev_score']}, floor EM "
                           f"{tuned['chosen_floor_em']}): {tuned['chosen']}, marked floor_passed: false{start}")
    return TuneOutcome(method, yaml_path, f"{method}: chose {tuned['chosen']} (trial {tuned['chosen_trial']}, dev "
                       f"score {tuned['dev_score']:.4f}, floor EM {tuned['chosen_floor_em']:.2f}; "
                       f"{tuned['trials_complete']} complete, {tuned['trials_pruned']} pruned, "
                       f"{tuned['trials_under_floor']} under the floor of {settings.budget} trials, "
                       f"{tuned['seconds']:.0f}s){start}", passed=True)


def _subject(plan: RunPlan) -> str:
    return f"world '{plan.world}'" if plan.benchmark == "world" else f"{plan.benchmark} (dev split)"


def _prior(plan: RunPlan, out: Path, provenance: dict | None, space, settings: TuneSettings, run: dict,
           log, given: list) -> tuple[dict | None, str]:
    """The provenance whose trials rebuild a study: only when resuming one whose journal is not there,
    from the YAML this world and protocol run now, and only when that YAML comes from the same tune.
    With it, how the study started, for the summary line (a quiet plan hides the log, not the summary:
    a resume that silently reran every trial would look like a resume that grew a study)."""
    from editbench import tuning

    if not plan.resume or (out / STUDY_FILE).exists():
        return None, ""
    if not provenance:
        return None, "; resume: no journal and no tuned YAML, started afresh"
    mismatch = tuning.prior_mismatch(provenance, space, settings, run, given)
    if mismatch:
        log(f"{plan.methods[0]}: no journal to resume, and its YAML's trials cannot seed a new one ({mismatch}): "
            "starting afresh")
        return None, f"; resume: no journal, and its YAML cannot seed one ({mismatch}), started afresh"
    return provenance, f"; resume: rebuilt from its YAML's {len(provenance.get('trials') or [])} trials"


def _config_of(cls, yaml_values: dict, path: Path) -> dict:
    """Every field of the config a YAML gives (the fields it leaves out at their defaults: an old YAML
    without a knob the space gained since still runs, and is tried, at that knob's default)."""
    from editbench.harness.hparams import build_config

    values = {k: v for k, v in yaml_values.items() if k != "provenance"}
    return dataclasses.asdict(build_config(cls.config_class, values, str(path)))


def _claim_study(plan: RunPlan, out: Path) -> None:
    """`overwrite`: everything in the study's folder but the lock this command holds goes; an existing
    study without `resume` is an error."""
    import shutil

    from editbench.harness.store import LOCK_FILE

    if plan.overwrite:
        for item in out.iterdir():
            if not item.name.startswith(LOCK_FILE):
                shutil.rmtree(item) if item.is_dir() else item.unlink()
    elif (out / STUDY_FILE).exists() and not plan.resume:
        raise ConfigError(f"{setting('out')} {out} already holds a tune; pass {setting('resume')} to continue it or "
                          f"{setting('overwrite')} to start again")
