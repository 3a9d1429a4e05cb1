"""`editbench tune`: a method's hyper-parameters chosen on a dev split, with the same trial budget for
every method, by a seeded Optuna search over the space the method declares (harness/search.py).

- The search never sees the leaderboard's edits: the CLI draws them from the world's dev pool (people
  disjoint from the edit pool) and refuses anything else.
- **The single-edit floor.** Before a trial's run, its config edits `FLOOR_EDITS` dev edits one at a
  time, each from θ₀ (protocol `independent`); a config whose exact match on the generated answers
  stays under `FLOOR_EM` cannot write one fact and does not count: its trial value is the mean of its
  floor EM and teacher-forced token accuracy, minus 1 (below every real score, and graded so that the
  sampler can climb towards the floor where exact match is 0 everywhere), and it is never chosen while
  any trial passes. When none does, the tune keeps the config with the best dev score (its dev run
  ran all the same), marks it (`floor_passed: false`, which the leaderboard shows) and exits 1:
  choosing by floor EM alone picked, on the micro world, configs (MEMIT at lambda 1.3) that write
  half the single edits and wreck the model by T = 20.
- **The compute ceiling.** The floor's first edit is counted (harness/compute.py); a config that spends
  more FLOPs per edit than the model's compute ceiling (harness/ceiling.py) is infeasible: its trial stops
  there, is told -1 (below every trial that ran) and is recorded `over_ceiling`. A tune under
  `compute_ceiling` none has no such trials, and says so in its provenance (`compute_ceiling: null`).
- **The run.** The trial then runs the tune's protocol over N dev edits; its value is the ranking
  score (reports/stats.py, generation basis) at the final checkpoint. In the sequential protocol the
  intermediate checkpoints (`prune_at`, e.g. T = 10 and 30) are reported to a median pruner, which
  stops trials below the median of earlier trials at the same T. A pruned trial is never chosen.
- **Budget.** `budget` trials count (complete, pruned or under the floor); the first is the space's
  reference point (the defaults it is centred on).
- **Resume.** The study lives in a journal file in the output folder: an interrupted tune continues
  where it stopped. Every trial samples with a TPE sampler seeded by (seed, trials done), so a resumed
  tune asks exactly the trials an uninterrupted one would (a trial cut off mid-run is marked failed and
  asked again).
- **Rebuild.** The journal stays in the output folder and a fresh clone has none; the YAML a tune wrote
  travels with the code and records every counted trial. A study with no trial can be rebuilt from that
  record (`prior_mismatch` says whether it comes from the same tune: world, protocol, edits,
  checkpoints, space, seed, floor) and grown from there. The rebuilt trials hold the values the YAML
  kept (three significant digits, scores to four decimals), not the journal's, so the trials after
  them are close to, not always the ones a journal resume would ask; the record says it was rebuilt.
"""
from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import yaml

from editbench.core import ConfigError, EditbenchError
from editbench.harness.compute import OverCeiling
from editbench.harness.search import OUTSIDE, SearchSpace

DEFAULT_BUDGET = 32  # trials per method: the same for every method tuned for a leaderboard
FLOOR_EDITS = 20  # independent dev edits of the single-edit floor
FLOOR_EM = 0.9  # generated-answer exact match a config needs on them
STARTUP_TRIALS = 8  # trials sampled at random (after the reference point) before TPE models the rest
PRUNER_STARTUP = 6  # complete trials before the median pruner stops any
STUDY_FILE = "study.journal"


class TuneError(EditbenchError):
    """No trial of a tune produced a floor score."""


class Evaluator(Protocol):
    """Runs one config: its single-edit floor and its dev run (the CLI's uses the loaded world)."""

    def floor(self, slot: int, values: dict) -> tuple[float, float]:
        """(generated-answer exact match, teacher-forced token accuracy) over the floor's independent
        edits: the first decides; the second grades configs under the floor for the sampler."""

    def run(self, slot: int, values: dict, report: Callable[[int, float], None]) -> float:
        """The dev run's final score; `report(T, score)` at each intermediate checkpoint may raise
        `Pruned` to stop it. `slot`: the trial's place in the budget (0 first), which names its files:
        a trial cut off and asked again after a resume keeps its slot."""


class Pruned(Exception):
    """Raised through a trial's run when the pruner stops it."""


@dataclass(frozen=True)
class TuneSettings:
    budget: int = DEFAULT_BUDGET
    seed: int = 0
    floor_em: float = FLOOR_EM
    floor_edits: int = FLOOR_EDITS  # fewer when the dev pool is smaller (the micro world's 18)
    startup_trials: int = STARTUP_TRIALS
    pruner_startup: int = PRUNER_STARTUP

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise ConfigError(f"budget must be >= 1, got {self.budget}")
        if not 0.0 <= self.floor_em <= 1.0:
            raise ConfigError(f"floor exact match must be in [0, 1], got {self.floor_em}")


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("tune needs Optuna: pip install -e . (it is a dependency)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _plain(value: Any) -> Any:
    """Tuples as lists (YAML and JSON)."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _counted(study) -> list:
    optuna = _optuna()
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [t for t in study.get_trials(deepcopy=False) if t.state in done]


def open_study(folder: Path, name: str, settings: TuneSettings, n_done: int = 0):
    """The study in `folder` (created, or loaded to resume), with a sampler seeded by (seed, n_done)."""
    optuna = _optuna()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    folder.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(folder / STUDY_FILE)))
    sampler = optuna.samplers.TPESampler(seed=settings.seed * 100_003 + n_done,
                                         n_startup_trials=settings.startup_trials)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=settings.pruner_startup, n_warmup_steps=0)
    return optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                               direction="maximize", load_if_exists=True)


def search(space: SearchSpace, n_layers: int, evaluator: Evaluator, folder: Path, name: str,
           settings: TuneSettings, log: Callable[[str], None] = print, incumbent: dict | None = None,
           prior: dict | None = None, given: Sequence[GivenTrial] = ()) -> dict:
    """Runs the study up to its budget and returns the tune's record (see `record`). `incumbent`: the
    config the method runs now (every field of the config its YAML gives); when the space holds it and it
    is not the reference point, it is the second trial, so a re-tune cannot end worse on the dev split
    than what it replaces without saying so (it counts in the budget like any trial). `prior`: a YAML's
    provenance from this same tune (`prior_mismatch` is None for it) whose trials seed the study when
    it has none (its journal lost). `given`: configs tried as they are after those two (each once,
    also in a study grown from an earlier one), e.g. a related method's incumbent mapped into this space."""
    optuna = _optuna()
    state = optuna.trial.TrialState
    given_params = [_params_of_given(space, n_layers, g) for g in given]  # a bad one fails before the study exists
    study = open_study(folder, name, settings)
    if prior is not None and not study.get_trials(deepcopy=False):
        rebuild(study, space, n_layers, prior)
        log(f"{name}: no journal; rebuilt {len(prior['trials'])} trials from the YAML's provenance")
    for stale in study.get_trials(deepcopy=False, states=(state.RUNNING,)):
        study.tell(stale.number, state=state.FAIL)  # cut off by an interruption: asked again
    reference = space.reference_params(n_layers)
    incumbent_found = space.params_of(incumbent, n_layers) if incumbent else None  # None: outside the space
    queue = [reference] + ([incumbent_found] if incumbent_found not in (None, reference) else [])
    queue += [p for p in given_params if p not in queue]
    started = time.perf_counter()
    while (n_done := len(_counted(study))) < settings.budget:
        study = open_study(folder, name, settings, n_done)
        # the first trials are given: the reference point, the incumbent, then the given configs; one at a
        # time, so that a trial cut off by an interruption is asked again as it was
        untried = _first_untried(study, space, n_layers, queue)
        if untried is not None and not study.get_trials(deepcopy=False, states=(state.WAITING,)):
            study.enqueue_trial(untried)
        trial = study.ask()
        values = space.sample(trial, n_layers)
        trial.set_user_attr("config", _plain_values(values))
        trial.set_user_attr("slot", n_done)
        em = None
        try:
            em, token = evaluator.floor(n_done, values)
            trial.set_user_attr("floor_em", round(em, 4))
            trial.set_user_attr("floor_token", round(token, 4))

            def report(t: int, score: float) -> None:
                trial.report(score, t)
                if trial.should_prune():
                    raise Pruned

            score = evaluator.run(n_done, values, report)
            trial.set_user_attr("dev_score", round(score, 4))
            if em < settings.floor_em:
                # in [-1, 0): below every real score, and graded, so that the sampler can climb towards
                # the floor even where every config's exact match is still 0
                study.tell(trial, (em + token) / 2 - 1.0)
                log(f"{name} trial {n_done}: under the floor (EM {em:.2f}; dev score {score:.4f}) {values}")
                continue
            trial.set_user_attr("passed_floor", True)
            study.tell(trial, score)
            log(f"{name} trial {n_done}: score {score:.4f} (floor EM {em:.2f}) {values}")
        except Pruned:
            study.tell(trial, state=state.PRUNED)
            log(f"{name} trial {n_done}: pruned {values}")
        except EditbenchError as exc:  # OverCeiling too: a config over the compute ceiling is infeasible
            trial.set_user_attr("error", str(exc).splitlines()[0])
            if isinstance(exc, OverCeiling):
                trial.set_user_attr("over_ceiling", True)
            study.tell(trial, -1.0 if em is None else em - 1.0)
            log(f"{name} trial {n_done}: failed ({exc}) {values}")
    done = record(study, space, settings, time.perf_counter() - started)
    if incumbent:
        tried = _plain_values(space.values_of(incumbent_found, n_layers)) if incumbent_found is not None else None
        done["incumbent"] = {"config": _plain_values({k: incumbent[k] for k in space.fields if k in incumbent}),
                             "trial": next((t["trial"] for t in done["trials"] if t["config"] == tried), None)}
    if given:
        done["given"] = [{"source": g.source, "config": config, "trial": next(
            (t["trial"] for t in done["trials"] if t["config"] == config), None)}
            for g, config in ((g, _plain_values(space.values_of(p, n_layers))) for g, p in zip(given, given_params))]
    return done


@dataclass(frozen=True)
class GivenTrial:
    """A config a tune tries as it is (`search`'s `given`): some of the space's fields (`values`, the
    rest at the reference point) and where they come from (`source`, recorded in the provenance)."""
    source: str
    values: dict

    def config(self, space: SearchSpace, n_layers: int) -> dict:
        """Every field of the space: the reference point's values with `values` on top."""
        unknown = sorted(set(self.values) - set(space.fields))
        if unknown:
            raise ConfigError(f"{self.source}: field {unknown[0]!r} is not searched (the space's fields: "
                              f"{', '.join(space.fields)})")
        return {**space.values_of(space.reference_params(n_layers), n_layers), **self.values}


def _params_of_given(space: SearchSpace, n_layers: int, given: GivenTrial) -> dict:
    config = given.config(space, n_layers)
    params = space.params_of(config, n_layers)
    if params is None:
        knob = next(k for k in space.knobs if k.param_of(config, n_layers) is OUTSIDE)
        raise ConfigError(f"{given.source}: {knob.name} lies outside the search space ({knob.describe()})")
    return params


def _first_untried(study, space: SearchSpace, n_layers: int, queue: list[dict]) -> dict | None:
    """The first of the given trial parameters whose config no counted trial holds yet."""
    tried = [t.user_attrs.get("config") for t in _counted(study)]
    return next((p for p in queue if _plain_values(space.values_of(p, n_layers)) not in tried), None)


def _plain_values(values: dict) -> dict:
    return {k: _plain(v) for k, v in values.items()}


def _trial_seconds(study) -> float:
    """The counted trials' run time, summed from the journal: the whole study's cost, also when it
    was resumed (`seconds` is the wall time of the last call only); rebuilt trials count what their
    YAML recorded."""
    ran = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in _counted(study)
              if t.datetime_start and t.datetime_complete and not t.user_attrs.get("rebuilt"))
    return ran + study.user_attrs.get("rebuilt", {}).get("trial_seconds", 0.0)


def _sampler_line(settings: TuneSettings) -> str:
    return (f"TPE (seed per trial: seed * 100003 + trials done; {settings.startup_trials} random startup trials "
            "after the reference point)")


def _pruner_line(settings: TuneSettings) -> str:
    return f"median at intermediate checkpoints (after {settings.pruner_startup} trials)"


def _floor_block(settings: TuneSettings) -> dict:
    return {"protocol": "independent", "edits": settings.floor_edits, "metric": "reliability_gen",
            "min": settings.floor_em}


def prior_mismatch(provenance: dict, space: SearchSpace, settings: TuneSettings, run: dict,
                   given: Sequence[GivenTrial] = ()) -> str | None:
    """Why a YAML's provenance cannot seed this tune's study (None: it can): it must come from a tune
    of the same world, protocol, edits and checkpoints, over the same space with the same seed, floor,
    sampler, pruner and given trials, and hold no more trials than this tune's budget."""
    if provenance.get("tool") != "editbench tune" or not provenance.get("trials"):
        return "it records no tune"
    wanted = {"world_fingerprint": run["fingerprint"], "protocol": run["protocol"], "n_edits": run["n_edits"],
              "compute_ceiling": run.get("compute_ceiling"),
              "checkpoints": run["checkpoints"], "space": space.describe(), "seed": settings.seed,
              "floor": _floor_block(settings), "sampler": _sampler_line(settings), "pruner": _pruner_line(settings)}
    as_yaml = yaml.safe_load(yaml.dump(wanted, Dumper=_NoAliases))  # tuples as lists, as the YAML holds them
    differing = [key for key, value in as_yaml.items() if provenance.get(key) != value]
    if differing:
        return f"its tune differs in {', '.join(differing)}"
    configs = [_plain_values(g.config(space, run["n_layers"])) for g in given]
    if [g.get("config") for g in provenance.get("given") or []] != yaml.safe_load(yaml.dump(configs, Dumper=_NoAliases)):
        return "its tune differs in given"
    if len(provenance["trials"]) > settings.budget:
        return f"it holds {len(provenance['trials'])} trials, more than the budget of {settings.budget}"
    if any(space.params_of(t["config"] or {}, run["n_layers"]) is None for t in provenance["trials"]):
        return "a trial's config lies outside the space"
    return None


def _recorded_value(trial: dict) -> float:
    """The value `search` told the study for a trial the YAML records as complete."""
    if trial["score"] is not None:
        return trial["score"]
    if trial["floor_em"] is None:
        return -1.0
    if "error" in trial:
        return trial["floor_em"] - 1.0
    return (trial["floor_em"] + (trial["floor_token"] or 0.0)) / 2 - 1.0


def rebuild(study, space: SearchSpace, n_layers: int, prior: dict) -> None:
    """Adds the counted trials a YAML's provenance records to an empty study, in slot order, with the
    states, values, checkpoint reports and attributes `search` gave them."""
    optuna = _optuna()
    state = optuna.trial.TrialState
    for recorded in sorted(prior["trials"], key=lambda t: t["trial"]):
        # Optuna's FixedTrial gives the recorded parameters and keeps the distributions the space names
        trial = optuna.trial.FixedTrial(space.params_of(recorded["config"], n_layers))
        space.sample(trial, n_layers)
        attrs = {"config": recorded["config"], "slot": recorded["trial"], "rebuilt": True,
                 **{k: recorded[k] for k in ("floor_em", "floor_token", "dev_score", "error", "over_ceiling")
                    if recorded.get(k) is not None}}
        pruned = recorded["state"] == "pruned"
        if recorded["score"] is not None:
            attrs["passed_floor"] = True
        study.add_trial(optuna.trial.create_trial(
            state=state.PRUNED if pruned else state.COMPLETE, value=None if pruned else _recorded_value(recorded),
            params=trial.params, distributions=trial.distributions, user_attrs=attrs,
            intermediate_values={int(t): v for t, v in (recorded.get("checkpoints") or {}).items()}))
    study.set_user_attr("rebuilt", {"trials": len(prior["trials"]), "date": prior.get("date"),
                                    "git_sha": prior.get("git_sha"),
                                    "trial_seconds": prior.get("trial_seconds") or prior.get("seconds") or 0.0})


def record(study, space: SearchSpace, settings: TuneSettings, seconds: float) -> dict:
    """Every counted trial, the chosen one and the search's settings. Chosen: the best complete trial
    that passed the floor; when none did, `floor_passed` is False and the chosen one is the complete
    trial with the best dev score, else the one with the highest floor EM (what the leaderboard then
    runs, marked as under the floor)."""
    trials = []
    for t in sorted(_counted(study), key=lambda t: t.user_attrs["slot"]):
        trials.append({"trial": t.user_attrs["slot"], "state": t.state.name.lower(), "config": t.user_attrs.get("config"),
                       "floor_em": t.user_attrs.get("floor_em"), "floor_token": t.user_attrs.get("floor_token"),
                       "score": round(t.value, 4) if t.value is not None and t.user_attrs.get("passed_floor") else None,
                       "dev_score": t.user_attrs.get("dev_score"),
                       "checkpoints": {int(k): round(v, 4) for k, v in sorted(t.intermediate_values.items())},
                       **({"error": t.user_attrs["error"]} if "error" in t.user_attrs else {}),
                       **({"over_ceiling": True} if t.user_attrs.get("over_ceiling") else {})})
    qualified = [t for t in trials if t["state"] == "complete" and t["score"] is not None]
    passed = bool(qualified)
    if passed:
        chosen = max(qualified, key=lambda t: (t["score"], -t["trial"]))
    else:  # the best it found, kept and marked as under the floor: by dev score, else by floor EM
        ran = [t for t in trials if t["state"] == "complete" and t["dev_score"] is not None]
        floored = [t for t in trials if t["floor_em"] is not None]
        if not floored:
            over = sum(bool(t.get("over_ceiling")) for t in trials)
            raise TuneError(f"no trial of {len(trials)} produced a floor score (every one failed"
                            + (f", {over} over the compute ceiling)" if over else ")"))
        chosen = (max(ran, key=lambda t: (t["dev_score"], -t["trial"])) if ran else
                  max(floored, key=lambda t: (t["floor_em"], t["floor_token"] or 0.0, -t["trial"])))
    return {"space": space.describe(), "budget": settings.budget, "seed": settings.seed,
            "sampler": _sampler_line(settings), "pruner": _pruner_line(settings), "floor": _floor_block(settings),
            **({"rebuilt_from": {k: v for k, v in study.user_attrs["rebuilt"].items() if k != "trial_seconds"}}
               if "rebuilt" in study.user_attrs else {}),
            "floor_passed": passed, "floor_edits": settings.floor_edits,
            "chosen": chosen["config"], "chosen_trial": chosen["trial"], "dev_score": chosen["dev_score"],
            "chosen_floor_em": chosen["floor_em"], "seconds": round(seconds, 1),
            "trial_seconds": round(_trial_seconds(study), 1),
            "trials_complete": sum(t["state"] == "complete" for t in trials),
            "trials_pruned": sum(t["state"] == "pruned" for t in trials),
            "trials_under_floor": sum(t["floor_em"] is not None and t["floor_em"] < settings.floor_em
                                      for t in trials),
            "trials_over_ceiling": sum(bool(t.get("over_ceiling")) for t in trials),
            "trials": trials}


class _NoAliases(yaml.SafeDumper):
    """Writes a repeated dict out in full, not as &id001."""

    def ignore_aliases(self, data) -> bool:
        return True


def tuned_yaml(method: str, base_values: dict, chosen: dict, provenance: dict) -> str:
    """The YAML text: base values with the chosen config on top, and the provenance block first."""
    values = {k: v for k, v in base_values.items() if k != "provenance"}
    values.update(chosen)
    if provenance.get("benchmark"):  # a real model on a dataset's dev split
        header = (f"# {method} on this model, chosen by `editbench tune` on the dev split of {provenance['data']} "
                  f"(records disjoint from the leaderboard's edits). Provenance below.\n")
    else:
        header = (f"# {method} on the world model, chosen by `editbench tune` on the dev split "
                  f"(people disjoint from the leaderboard's edits). Provenance below; `make tune` refreshes it.\n")
    body = yaml.dump({"provenance": provenance}, Dumper=_NoAliases, sort_keys=False, default_flow_style=None,
                     width=110)

    def line(key, value) -> str:  # block mapping, lists in flow style as in the hand-written YAMLs
        if isinstance(value, list):
            return f"{key}: {yaml.dump(value, Dumper=_NoAliases, default_flow_style=True).strip()}\n"
        return yaml.dump({key: value}, Dumper=_NoAliases, default_flow_style=False)

    return header + body + "".join(line(k, _plain(v)) for k, v in values.items())


def provenance_block(tuned: dict, run: dict) -> dict:
    """The YAML's provenance: where the tune ran and everything `record` says."""
    return {"tool": "editbench tune", "split": "dev", "protocol": run["protocol"], "n_edits": run["n_edits"],
            "checkpoints": run["checkpoints"], **{k: run[k] for k in ("world", "benchmark", "data") if k in run},
            "compute_ceiling": run.get("compute_ceiling"),  # FLOPs per edit; a trial over it was infeasible
            "world_fingerprint": run["fingerprint"],
            "criterion": "ranking score (generation basis) at the final checkpoint, among trials that passed "
                         "the floor", **tuned, "date": datetime.date.today().isoformat(), "git_sha": run["git_sha"]}
