"""`editbench tune`: search spaces, the single-edit floor, pruning, resume, dev split only, provenance."""
import json
import re
import time

import optuna
import torch
import pytest
import yaml

from editbench.benchmarks.world import make_requests
from editbench.benchmarks.world_model import load_world
from editbench.cli import main
from editbench.core import ConfigError, editor_names, get_editor_class
from editbench.harness.hparams import build_config
from editbench.harness.search import Choice, Layer, LayerSpan, LogFloat, SearchSpace, depth_to_layer
from editbench.tuning import GivenTrial, TuneError, TuneSettings, prior_mismatch, provenance_block, search

SPACED = [m for m in editor_names() if get_editor_class(m).search_space is not None]


def test_every_weight_editor_declares_a_space_centred_on_a_named_reference():
    assert set(SPACED) >= {"ft", "ft_l", "lora", "rsft", "rsft_merge", "rome", "memit", "alphaedit"}
    for method in SPACED:
        space = get_editor_class(method).search_space
        assert space.reference and space.knobs, method
        fields = get_editor_class(method).config_class.__dataclass_fields__
        assert all(f in fields for f in space.fields), method  # a paired knob sets each of its fields
        for knob in space.knobs:  # log ranges span at least a decade and hold their reference
            if isinstance(knob, LogFloat):
                assert knob.high / knob.low >= 10 and knob.low <= knob.reference <= knob.high, (method, knob.name)


@pytest.mark.parametrize("n_layers", [2, 4, 6, 32])
def test_sampled_points_are_valid_configs_for_any_depth(n_layers):
    for method in SPACED:
        cls = get_editor_class(method)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=n_layers))
        points = [cls.search_space.sample(study.ask(), n_layers) for _ in range(12)]
        points.append(cls.search_space.sample(optuna.trial.FixedTrial(cls.search_space.reference_params(n_layers)),
                                              n_layers))
        for values in points:
            config = build_config(cls.config_class, values, f"{method} sample")  # runs the config's checks
            layers = [getattr(config, f) for f in ("layer",) if hasattr(config, f)] + list(getattr(config, "layers", None) or [])
            assert all(0 <= layer < n_layers for layer in layers), (method, values)


def test_a_choice_of_paired_values_sets_each_of_its_fields():
    """WISE's shard size and merge period are chosen together (merge_freq must be a multiple)."""
    space = get_editor_class("wise").search_space
    knob = next(k for k in space.knobs if k.name == "shards")
    values = space.sample(optuna.trial.FixedTrial({**space.reference_params(4), "shards": "10,20"}), 4)
    assert values["save_freq"] == 10 and values["merge_freq"] == 20 and "shards" not in values
    assert knob.describe()["fields"] == ["save_freq", "merge_freq"]
    with pytest.raises(ConfigError, match="one value per field"):
        Choice("pair", (1, 2), "", options=((1, 2), 3), fields=("a", "b"))


def test_relative_depth_maps_onto_every_model():
    assert [depth_to_layer(d, 4) for d in (0.0, 0.16, 0.5, 0.68, 1.0)] == [0, 0, 2, 2, 3]
    assert depth_to_layer(0.16, 32) == 5 and depth_to_layer(0.68, 32) == 21  # the references' layers
    span = LayerSpan("layers", (0.13, 5), low=0.0, high=0.67, min_width=1, max_width=5)
    assert span.value((4, 5), 32) == (4, 5, 6, 7, 8) and span.value((2, 5), 4) == (2, 3)  # cut at the last block
    assert span.reference_param(32) == {"layers_first": 4, "layers_width": 5}
    # locate-then-edit spans spare the last block: an edit at the subject's position reaches the answer only
    # through attention in later blocks (measured on micro: MEMIT with layers [2, 3] moved no token)
    spared = LayerSpan("layers", (0.13, 5), low=0.0, high=1.0, min_width=1, max_width=5, spare_last=1)
    assert spared.value((2, 5), 4) == (2,) and spared._first_range(4) == (0, 2)
    assert Layer("layers", 1.0, low=0.0, high=1.0, spare_last=1).reference_param(4) == 2
    for method in ("rome", "memit", "alphaedit"):
        space = get_editor_class(method).search_space
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        assert all(max(space.sample(study.ask(), 4)["layers"]) <= 2 for _ in range(30)), method


class _Fake:
    """A method whose quality is a known function of its config (no model): the floor passes when
    x >= 0.3; the run reports x at T = 10 and ends at 1 - |x - 0.6| (so early reports mislead)."""

    def __init__(self, stop_at_slot=None):
        self.stop_at_slot, self.floor_calls, self.runs = stop_at_slot, [], []

    def floor(self, slot, values):
        self.floor_calls.append(values)
        return (1.0, 1.0) if values["x"] >= 0.3 else (0.1, values["x"])

    def run(self, slot, values, report):
        if slot == self.stop_at_slot:
            raise KeyboardInterrupt  # the tune is interrupted mid-trial
        self.runs.append(values)
        report(10, values["x"])
        return 1.0 - abs(values["x"] - 0.6)


SPACE = SearchSpace("a made-up reference", (LogFloat("x", 0.5, low=0.01, high=1.0), Choice("c", "a", options=("a", "b"))))


def _timeless(tuned: dict) -> dict:
    """A tune's record without its timings (they differ between two runs of the same trials)."""
    return {k: v for k, v in tuned.items() if k not in ("seconds", "trial_seconds")}


def _search(folder, evaluator, budget=16, incumbent=None, prior=None, given=(), **kw):
    return search(SPACE, 4, evaluator, folder, "fake", TuneSettings(budget=budget, seed=0, **kw), log=lambda m: None,
                  incumbent=incumbent, prior=prior, given=given)


def test_floor_and_pruning_decide_which_trials_can_be_chosen(tmp_path):
    fake = _Fake()
    tuned = _search(tmp_path / "t", fake)
    trials = tuned["trials"]
    assert len(trials) == 16 and trials[0]["config"] == {"x": 0.5, "c": "a"}  # the reference point first
    under = [t for t in trials if t["floor_em"] < 0.9]
    pruned = [t for t in trials if t["state"] == "pruned"]
    assert under and pruned, "the fake space must exercise both the floor and the pruner"
    assert all(t["score"] is None for t in under) and tuned["trials_under_floor"] == len(under)
    assert len(fake.runs) == 16  # every config gets its dev run (the fallback when none passes)
    chosen = next(t for t in trials if t["trial"] == tuned["chosen_trial"])
    assert chosen["state"] == "complete" and chosen["floor_em"] >= 0.9 and chosen["config"] == tuned["chosen"]
    assert tuned["dev_score"] == max(t["score"] for t in trials if t["state"] == "complete" and t["score"] is not None)


def test_no_point_over_the_floor_keeps_the_best_floor_and_says_so(tmp_path):
    class Never(_Fake):
        def floor(self, slot, values):
            return 0.5 * values["x"], 0.5

    tuned = _search(tmp_path / "t", Never(), budget=4)
    assert tuned["floor_passed"] is False and tuned["trials_under_floor"] == 4
    ran = [t for t in tuned["trials"] if t["state"] == "complete"]
    assert tuned["dev_score"] == max(t["dev_score"] for t in ran)  # the best dev run, not the best floor EM

    class Broken(_Fake):
        def floor(self, slot, values):
            raise ConfigError("no floor")

    with pytest.raises(TuneError, match="no trial of 2 produced a floor score"):
        _search(tmp_path / "b", Broken(), budget=2)


def test_a_resumed_tune_asks_and_chooses_what_an_uninterrupted_one_does(tmp_path):
    clean = _search(tmp_path / "clean", _Fake(), budget=10)
    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path / "cut", _Fake(stop_at_slot=6), budget=10)
    resumed = _search(tmp_path / "cut", _Fake(), budget=10)
    assert _timeless(resumed) == _timeless(clean)


def test_a_study_resumed_with_a_larger_budget_equals_one_run_at_that_budget(tmp_path):
    """Raising the budget of a finished study (16 -> 32 in session 13) asks the trials a tune with the
    larger budget asks from the start: the first ones are the smaller tune's, the choice among all."""
    incumbent = {"x": 0.2, "c": "b"}
    whole = _search(tmp_path / "whole", _Fake(), budget=10, incumbent=incumbent)
    half = _search(tmp_path / "grown", _Fake(), budget=5, incumbent=incumbent)
    grown = _search(tmp_path / "grown", _Fake(), budget=10, incumbent=incumbent)
    assert half["trials"] == whole["trials"][:5]
    assert _timeless(grown) == _timeless(whole)


def test_a_grown_study_counts_the_run_time_of_all_its_trials(tmp_path):
    """`trial_seconds` sums every counted trial from the journal; `seconds` is the last call's wall."""
    class Slow(_Fake):
        def run(self, slot, values, report):
            time.sleep(0.2)
            return super().run(slot, values, report)

    half = _search(tmp_path / "t", Slow(), budget=3)
    grown = _search(tmp_path / "t", Slow(), budget=6)
    assert half["trial_seconds"] >= 0.6 and grown["trial_seconds"] >= 1.2  # 3 and 6 runs of 0.2 s
    assert grown["trial_seconds"] > half["trial_seconds"] and grown["seconds"] < grown["trial_seconds"]


RUN = {"protocol": "batch", "n_edits": 100, "checkpoints": [100], "world": "default", "fingerprint": "abc",
       "git_sha": "0123", "n_layers": 4}


def _written(tuned: dict) -> dict:
    """A tune's provenance as its YAML holds it (through a YAML file and back)."""
    return yaml.safe_load(yaml.safe_dump(provenance_block(tuned, RUN)))


def test_a_study_rebuilt_from_its_yaml_keeps_every_trial_and_runs_only_the_new_ones(tmp_path):
    """A fresh clone has the YAML, not the journal: the YAML's trials seed the study, counted in the
    budget and never run again; the choice is made among old and new alike."""
    class Slow(_Fake):
        def run(self, slot, values, report):
            time.sleep(0.1)
            return super().run(slot, values, report)

    half = _search(tmp_path / "lost", Slow(), budget=6, incumbent={"x": 0.2, "c": "b"}, pruner_startup=2)
    fresh = Slow()
    grown = _search(tmp_path / "clone", fresh, budget=10, prior=_written(half), pruner_startup=2)
    assert len(fresh.runs) == 4 and len(fresh.floor_calls) == 4  # slots 6-9 only
    assert grown["trials"][:6] == half["trials"] and [t["trial"] for t in grown["trials"]] == list(range(10))
    assert grown["rebuilt_from"] == {"trials": 6, "date": provenance_block(half, RUN)["date"], "git_sha": "0123"}
    # the recorded cost and four new runs of at least 0.1 s (both sums are rounded to 0.1 s)
    assert grown["trial_seconds"] >= half["trial_seconds"] + 0.3
    assert grown["dev_score"] >= half["dev_score"]
    states = {t["state"] for t in grown["trials"][:6]}
    assert "pruned" in states and any(t["score"] is None for t in grown["trials"][:6])  # all kinds came back
    # a study that has trials is resumed from its journal, never seeded again
    again = _search(tmp_path / "clone", Slow(), budget=10, prior=_written(half), pruner_startup=2)
    assert _timeless(again) == _timeless(grown)


def test_only_a_yaml_from_the_same_tune_can_seed_a_study(tmp_path):
    prov = _written(_search(tmp_path / "t", _Fake(), budget=3, floor_edits=20))
    settings = TuneSettings(budget=8, seed=0, floor_edits=20)
    assert prior_mismatch(prov, SPACE, settings, RUN) is None
    for change, why in (({"protocol": "sequential"}, "protocol"), ({"world_fingerprint": "old"}, "world_fingerprint"),
                        ({"seed": 1}, "seed"), ({"checkpoints": [10, 30, 100]}, "checkpoints"),
                        ({"space": {**prov["space"], "reference": "another"}}, "space"),
                        ({"tool": "hand"}, "records no tune"),
                        ({"trials": prov["trials"] * 3}, "more than the budget of 8"),
                        ({"trials": [{**prov["trials"][0], "config": {"x": 7.0, "c": "a"}}]}, "outside the space")):
        assert why in prior_mismatch({**prov, **change}, SPACE, settings, RUN), change
    for other in (TuneSettings(budget=8, seed=0, floor_edits=18), TuneSettings(budget=8, seed=0, startup_trials=4)):
        assert prior_mismatch(prov, SPACE, other, RUN) is not None


def test_the_incumbent_is_the_second_trial_and_a_resume_keeps_it(tmp_path):
    """The config a method runs now is tried as it is (trial 1, inside the budget): a re-tune cannot
    end worse on the dev split than the YAML it replaces without saying so."""
    incumbent = {"x": 0.62, "c": "b", "batch_size": 1}  # a YAML holds fields the space does not move
    tuned = _search(tmp_path / "t", _Fake(), budget=6, incumbent=incumbent)
    assert tuned["trials"][1]["config"] == {"x": 0.62, "c": "b"} and len(tuned["trials"]) == 6
    assert tuned["incumbent"] == {"config": {"x": 0.62, "c": "b"}, "trial": 1}
    assert tuned["chosen_trial"] == 1  # 1 - |0.62 - 0.6|: no sampled point of 6 beats it here
    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path / "cut", _Fake(stop_at_slot=1), budget=6, incumbent=incumbent)
    resumed = _search(tmp_path / "cut", _Fake(), budget=6, incumbent=incumbent)
    assert _timeless(resumed) == _timeless(tuned)
    # outside the space (x above its range), or the reference point itself: nothing extra is tried
    for other, trial in (({"x": 3.0, "c": "b"}, None), ({"x": 0.5, "c": "a"}, 0)):
        done = _search(tmp_path / f"o{other['x']}", _Fake(), budget=3, incumbent=other)
        assert done["incumbent"] == {"config": other, "trial": trial}
        assert done["trials"][1]["config"] != other


def test_a_given_trial_follows_the_incumbent_and_a_grown_study_gets_it_once(tmp_path):
    """A given config (e.g. ROME's incumbent mapped into MEMIT's space) is tried as it is, after the
    reference point and the incumbent; fields it leaves out are at the reference point; a study grown
    from one without it tries it at its next slot, once; a YAML's trials seed only a tune with the
    same given configs."""
    given = (GivenTrial("given.yaml", {"x": 0.59}),)
    tuned = _search(tmp_path / "t", _Fake(), budget=5, incumbent={"x": 0.2, "c": "b"}, given=given)
    assert [t["config"] for t in tuned["trials"][:3]] == [{"x": 0.5, "c": "a"}, {"x": 0.2, "c": "b"},
                                                          {"x": 0.59, "c": "a"}]
    assert tuned["given"] == [{"source": "given.yaml", "config": {"x": 0.59, "c": "a"}, "trial": 2}]
    assert tuned["chosen_trial"] == 2  # 1 - |0.59 - 0.6|: the best of five here
    _search(tmp_path / "g", _Fake(), budget=3)  # a study without it ...
    grown = _search(tmp_path / "g", _Fake(), budget=5, given=given)  # ... grown with it: slot 3, not again
    configs = [t["config"] for t in grown["trials"]]
    assert configs[3] == {"x": 0.59, "c": "a"} and configs.count({"x": 0.59, "c": "a"}) == 1
    assert grown["given"][0]["trial"] == 3
    prov = _written(tuned)
    settings = TuneSettings(budget=8, seed=0)
    assert prior_mismatch(prov, SPACE, settings, RUN, given) is None
    assert "given" in prior_mismatch(prov, SPACE, settings, RUN)
    assert "given" in prior_mismatch(prov, SPACE, settings, RUN, (GivenTrial("other.yaml", {"x": 0.3}),))


def test_a_given_trial_outside_the_space_or_with_an_unknown_field_is_refused(tmp_path):
    for values, why in (({"x": 3.0}, r"given\.yaml: x lies outside the search space"),
                        ({"y": 1.0}, r"given\.yaml: field 'y' is not searched")):
        with pytest.raises(ConfigError, match=why):
            _search(tmp_path / str(values), _Fake(), budget=2, given=(GivenTrial("given.yaml", values),))


@pytest.mark.parametrize("n_layers", [4, 6])
def test_every_sampled_point_is_found_again_from_its_config(n_layers):
    """params_of inverts sample: a YAML written by tune is tried as exactly that config."""
    for method in SPACED:
        space = get_editor_class(method).search_space
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=n_layers))
        for _ in range(8):
            values = space.sample(study.ask(), n_layers)
            params = space.params_of(yaml.safe_load(yaml.safe_dump(_as_lists(values))), n_layers)  # via a YAML
            assert params is not None and space.values_of(params, n_layers) == values, (method, values)
    memit = get_editor_class("memit").search_space
    point = memit.values_of(memit.reference_params(4), 4)
    assert memit.params_of({**point, "layers": [0, 2]}, 4) is None  # not consecutive
    assert memit.params_of({**point, "layers": [3]}, 4) is None  # the last block is spared
    assert memit.params_of({**point, "mom2_update_weight": 1e9}, 4) is None  # out of range
    # a YAML older than a knob (R-SFT+Merge's before merge_scope) is tried with the knob at its default
    from pathlib import Path

    from editbench.tuning_session import _config_of

    merge = get_editor_class("rsft_merge")
    older = {k: v for k, v in _as_lists(merge.search_space.values_of(merge.search_space.reference_params(4), 4)).items()
             if k != "merge_scope"}
    assert merge.search_space.params_of(older, 4) is None
    assert merge.search_space.params_of(_config_of(merge, older, Path("old.yaml")), 4)["merge_scope"] == "batch"


def _without_seconds(text: str) -> str:
    return re.sub(r", \d+s\)", ")", text)


def _as_lists(values):
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def test_tune_reads_only_dev_edits_and_writes_provenance(micro_world, tmp_path, capsys):
    out, target = tmp_path / "tune", tmp_path / "ft.yaml"
    code = main(["tune", "--method", "ft", "--budget", "2", "--world", "micro", "--split", "dev", "--edits", "3",
                 "--out", str(out), "--write", str(target), "--quiet", "--floor-em", "0"])
    assert code == 0
    world = load_world(micro_world)
    board_ids = {f"world-{f.fid}" for f in world.facts_of("edit")}
    dev_ids = {f"world-dev-{f.fid}" for f in world.facts_of("dev")}
    edits = list(out.glob("ft/trial-*/edits.jsonl"))
    assert len(edits) == 2
    for path in edits:
        ids = {json.loads(line)["case_id"] for line in path.read_text().splitlines()}
        assert ids <= dev_ids and not ids & board_ids
    written = yaml.safe_load(target.read_text())
    prov = written["provenance"]
    assert prov["split"] == "dev" and prov["budget"] == 2 and len(prov["trials"]) == 2
    assert prov["space"]["knobs"].keys() == {"layer", "lr", "steps", "projections"}
    assert all(written[k] == v for k, v in prov["chosen"].items()) and prov["world_fingerprint"]
    assert prov["floor"]["protocol"] == "independent" and prov["trials"][0]["floor_em"] is not None
    from editbench.methods.ft import FTConfig

    build_config(FTConfig, written, str(target))  # the provenance block never reaches the config
    # the leaderboard's pool is refused, and so is a method with nothing to tune
    assert main(["tune", "--method", "ft", "--world", "micro", "--edits", "3", "--split", "edit",
                 "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "dev split only" in capsys.readouterr().err
    assert main(["tune", "--method", "noedit", "--world", "micro", "--split", "dev", "--edits", "3",
                 "--out", str(tmp_path / "y"), "--quiet"]) == 2
    assert "no search space" in capsys.readouterr().err
    # a given-trial file that is not there, or names a field the space does not search: one line, exit 2
    base = ["tune", "--method", "ft", "--world", "micro", "--edits", "3", "--budget", "3", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "g1"), "--given", str(tmp_path / "none.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"editbench: error: {tmp_path / 'none.yaml'}: no such given-trial file"
    (tmp_path / "ft-given.yaml").write_text("lr: 0.001\nbatch_size: 2\n")
    assert main([*base, "--out", str(tmp_path / "g2"), "--given", str(tmp_path / "{method}-given.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"editbench: error: {tmp_path / 'ft-given.yaml'}: field 'batch_size' is not searched")
    assert "\n" not in err


def test_a_quiet_resume_says_whether_its_yaml_rebuilt_the_study(micro_world, tmp_path, capsys, monkeypatch):
    """`make tune RESUME=1` runs quiet: the summary line, not the log, says whether the YAML's trials
    seeded the study (and only the new slots ran) or why it started afresh."""
    import editbench.harness.hparams as hparams

    common = ["tune", "--method", "ft", "--world", "micro", "--split", "dev", "--edits", "3", "--floor-em", "0",
              "--quiet", "--resume"]
    target = tmp_path / "ft.yaml"
    assert main([*common, "--budget", "2", "--out", str(tmp_path / "lost"), "--write", str(target)]) == 0
    out = capsys.readouterr().out  # the committed micro YAML's tune ran 18 edits at the floor of 0.9
    assert "cannot seed one (its tune differs in checkpoints, compute_ceiling, floor, n_edits), started afresh" in out
    monkeypatch.setattr(hparams, "hparams_file", lambda *args, **kwargs: target)  # as if it were committed
    assert main([*common, "--budget", "3", "--out", str(tmp_path / "clone")]) == 0
    assert "resume: rebuilt from its YAML's 2 trials" in capsys.readouterr().out
    ran = sorted(p.name for p in (tmp_path / "clone" / "ft").glob("trial-*"))
    assert ran == ["trial-002"]  # slots 0 and 1 came from the YAML
    assert main([*common, "--budget", "3", "--seed", "1", "--out", str(tmp_path / "other")]) == 0
    assert "cannot seed one (its tune differs in seed), started afresh" in capsys.readouterr().out


def test_the_floor_rejects_a_config_that_does_not_write(micro_world, tmp_path, capsys):
    """ft with 1 step at a tiny learning rate writes nothing: its floor EM is recorded, it is never
    chosen, and with nothing else in the budget the tune fails with exit 1 naming what it reached."""
    tiny = SearchSpace("test", (LogFloat("lr", 1e-7, low=1e-8, high=1e-7), Layer("layer", 0.5)))
    from editbench.methods.ft import FTM

    original = FTM.search_space
    FTM.search_space = tiny
    try:
        code = main(["tune", "--method", "ft", "--budget", "2", "--world", "micro", "--split", "dev", "--edits", "3",
                     "--set", "ft.steps=1", "--out", str(tmp_path / "t"), "--quiet"])
    finally:
        FTM.search_space = original
    assert code == 1
    err = capsys.readouterr().err
    assert "no point of its space passed the single-edit floor" in err
    prov = yaml.safe_load((tmp_path / "t" / "ft" / "tuned.yaml").read_text())["provenance"]
    assert prov["floor_passed"] is False and prov["chosen_floor_em"] < 0.9 and prov["floor_edits"] == 3
    best = max(t["floor_em"] for t in prov["trials"])  # the line names the best floor EM, not the kept one's
    assert f"best floor EM {best} (trial" in err and f"kept trial {prov['chosen_trial']}" in err


def test_world_dev_and_leaderboard_edit_pools_are_disjoint(micro_world):
    world = load_world(micro_world)
    assert not set(world.pools["dev"]) & set(world.pools["edit"])
    assert world.pools["dev"] and all(not set(world.pools["dev"]) & set(world.pools[p]) for p in ("locality", "exam"))
    dev = make_requests(world, len(world.facts_of("dev")), seed=0, pool_name="dev")
    board = make_requests(world, len(world.facts_of("edit")), seed=0)
    assert not {r.subject for r in dev} & {r.subject for r in board}


def test_studies_of_several_methods_in_worker_processes_equal_one_after_another(micro_world, tmp_path, capsys):
    common = ["tune", "--method", "ft", "--method", "rsft", "--budget", "2", "--world", "micro", "--split", "dev",
              "--edits", "3", "--floor-em", "0", "--quiet", "--write", str(tmp_path / "{method}.yaml")]
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    one = {m: (tmp_path / f"{m}.yaml").read_text() for m in ("ft", "rsft")}
    printed = capsys.readouterr().out
    assert main([*common, "--out", str(tmp_path / "two"), "--jobs", "2"]) == 0
    # the workers' summary lines and YAML paths reach the caller's stdout as one process prints them
    assert _without_seconds(capsys.readouterr().out) == _without_seconds(printed) and "rsft: chose" in printed
    for method in ("ft", "rsft"):
        a, b = (json.loads((tmp_path / run / method / "tune.json").read_text()) for run in ("one", "two"))
        assert _timeless(a) == _timeless(b)
        assert (tmp_path / f"{method}.yaml").read_text().split("seconds:")[0] == one[method].split("seconds:")[0]


def test_a_pruned_dev_run_reaches_the_study_as_pruned_not_failed(micro_world, tmp_path):
    from editbench.plan import RunPlan
    from editbench.session import RunSession
    from editbench.tuning import Pruned
    from editbench.tuning_session import TuneEvaluator

    ctx = RunSession(RunPlan(methods=("ft",), world="micro", split="dev", edits=12, out=tmp_path, quiet=True))
    ctx.load()
    evaluator = TuneEvaluator(ctx, "ft", tmp_path)
    assert evaluator.checkpoints == [10, 12]
    seen = []

    def prune(t, score):
        seen.append(t)
        raise Pruned

    before = {n: p.detach().clone() for n, p in ctx.lm.model.named_parameters()}
    with pytest.raises(Pruned):
        evaluator.run(0, {"steps": 2}, prune)
    assert seen == [10]
    assert all(torch.equal(p, before[n]) for n, p in ctx.lm.model.named_parameters())  # θ₀ restored


def test_half_budget_choice_is_read_off_the_same_study(tmp_path):
    """scripts/budget_sensitivity.py: a tune with budget B/2 asks the first B/2 trials of the budget-B
    tune (seeded per trial), so its choice is the best of those; checked against a real half tune."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("budget_sensitivity",
                                                  Path(__file__).parent.parent / "scripts" / "budget_sensitivity.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    full = _search(tmp_path / "full" / "fake", _Fake(), budget=12)
    half = _search(tmp_path / "half", _Fake(), budget=6)
    assert [t["config"] for t in full["trials"][:6]] == [t["config"] for t in half["trials"]]
    (tmp_path / "full" / "fake" / "tune.json").write_text(json.dumps(full))
    (tmp_path / "full" / "fake" / "tuned.yaml").write_text(yaml.safe_dump({"provenance": {}, "x": 0.5, "c": "a"}))
    script.choose(tmp_path / "full", 6, tmp_path / "out")
    assert yaml.safe_load((tmp_path / "out" / "fake.yaml").read_text()) == half["chosen"]


def test_bridge_yamls_mirror_editbench_yamls():
    """`easyedit:ALGO` and the native method run the same settings: the bridge's world YAMLs hold the
    values of the YAMLs they name (`make tune` syncs them through scripts/sync_bridge_yamls.py)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "sync_bridge_yamls.py"
    check = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
