"""World 2.0 (edition 2): bridge facts, two-hop portability, aliases, neighbourhood locality."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from editbench.benchmarks import world as world_gen
from editbench.benchmarks.world import COMPOSED_RELATIONS, WorldConfig, world_config
from editbench.benchmarks.world_model import WorldBuildError, build_world, ensure_world, world_hash
from editbench.core import DataError, EditRequest
from editbench.harness.results import upgraded

# a world small enough to train in seconds: the tests check the plumbing, not what it learns
NANO = WorldConfig(name="nano2", n_entities=40, relations=("city", "employer", "profession"), vocab_size=384,
                   hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, num_kv_heads=1, steps=30,
                   batch_size=32, min_train_accuracy=0.0, min_heldout_accuracy=0.0, edition=2)


def test_edition_one_worlds_keep_their_identity():
    """Adding edition 2 must not invalidate any cached edition-1 world: the micro world's hash and
    generated facts are what they were before World 2.0 (3f7350c48097: its cache key since format 2)."""
    micro = world_config("micro")
    assert micro.edition == 1
    assert world_hash(micro) == "3f7350c48097"
    w = world_gen.generate_world(micro)
    assert not w.derived and not w.aliases and all(f.relation in world_gen.RELATIONS for f in w.facts)
    assert all(not r.portability and not r.locality_groups for r in world_gen.make_requests(w, 10, seed=0))


def test_bridges_derived_facts_and_aliases_are_consistent():
    w = world_gen.generate_world(NANO)
    own = {(f.subject, f.relation): f.obj for f in w.facts}
    assert {s for (s, r) in own if r == "country"} == set(world_gen.RELATIONS["city"]["objects"])
    assert {s for (s, r) in own if r == "hq"} == set(world_gen.RELATIONS["employer"]["objects"])
    for f in w.derived:
        first, second = COMPOSED_RELATIONS[f.relation]["path"]
        assert f.obj == own[(own[(f.subject, first)], second)]
    assert len(w.derived) == 2 * NANO.n_entities
    aliases = list(w.aliases.values())
    assert len(set(aliases)) == len(aliases) and not set(aliases) & set(w.entities)
    assert all(w.aliases[p].split()[-1] == p.split()[-1] for p in w.entities)
    # two-hop and alias-form statements are trained for teaching people only
    teaching = world_gen.teaching_people(w)
    text = dict(world_gen.training_sentences(w))
    for f in w.derived:
        stated = any(f.sentence(t) in text[f.subject] for t in f.train_templates)
        assert stated == (f.subject in teaching)
    statements = {t.format(a=a, s=s) for s, a in w.aliases.items() for t in world_gen.ALIAS_STATEMENTS}
    for person in w.pools["edit"] + w.pools["dev"]:  # their alias appears only in the naming statements
        assert [s for s in text[person] if w.aliases[person] in s and s not in statements] == []
    assert any(w.aliases[p] in s and s not in statements for p in teaching for s in text[p])


def test_edition_two_requests_carry_portability_and_neighbourhood_groups():
    w = world_gen.generate_world(NANO)
    never_edited = {p for pool in ("locality", "exam") for p in w.pools[pool]}
    facts = {f"world-{f.fid}": f for f in w.facts}
    prompts_of = {}
    for f in w.facts:
        for t in range(len(world_gen.ALL_TEMPLATES[f.relation])):
            prompts_of[f.prompt(t)] = f
    requests = world_gen.make_requests(w, 30, seed=1)
    assert requests == world_gen.make_requests(w, 30, seed=1)
    seen_two_hop = 0
    for r in requests:
        fact = facts[r.case_id]
        assert len(r.locality_groups) == len(r.locality) and len(r.portability_groups) == len(r.portability)
        for (prompt, answer), group in zip(r.locality, r.locality_groups):
            other = prompts_of[prompt]
            assert other.subject != r.subject and answer == other.obj
            if group == "neighbourhood":
                assert other.subject in never_edited
                assert other.relation == fact.relation and other.obj == fact.obj
        for (prompt, answer), group in zip(r.portability, r.portability_groups):
            if group == "alias":
                assert w.aliases[r.subject] in prompt and answer == r.target_new and r.subject not in prompt
            else:
                assert group == "two_hop" and r.subject in prompt
                spec = next(s for s in COMPOSED_RELATIONS.values() if s["path"][0] == fact.relation)
                assert answer == w.bridge(spec["path"][1], r.target_new) != w.bridge(spec["path"][1], fact.obj)
                seen_two_hop += 1
        assert r.portability_groups.count("alias") == 1
    assert seen_two_hop > 0


def test_group_names_are_checked():
    base = dict(case_id="c", prompt="Ann lives in", subject="Ann", target_new="Rome")
    EditRequest(**base, locality=(("Bob lives in", "Oslo"),), locality_groups=("neighbourhood",))
    with pytest.raises(DataError, match="locality_groups"):
        EditRequest(**base, locality=(("Bob lives in", "Oslo"),), locality_groups=("a", "b"))
    with pytest.raises(DataError, match="portability_groups"):
        EditRequest(**base, portability=(("Bob lives in", "Oslo"),), portability_groups=("Two Hop",))


def test_nano_world_build_reports_two_hop_and_alias_accuracy_and_enforces_its_bar(cache_dir):
    with pytest.raises(WorldBuildError, match="two-hop accuracy .* \\(need 1.01\\)"):
        build_world(replace(NANO, name="nano2-bar", min_two_hop_accuracy=1.01), log=lambda m: None)
    folder = ensure_world(NANO, log=lambda m: None)
    report = json.loads((folder / "build_report.json").read_text())
    for key in ("two_hop_accuracy", "two_hop_train_accuracy", "alias_accuracy", "train_accuracy",
                "heldout_accuracy", "build_seconds", "parameters", "edit_pool_facts"):
        assert isinstance(report[key], (int, float)), key
    w = world_gen.generate_world(NANO)
    untaught = {p for pool in ("edit", "dev") for p in w.pools[pool]}
    assert report["two_hop_prompts"] == len(world_gen.two_hop_pairs(w, untaught)) > 0
    assert report["alias_prompts"] == len(world_gen.alias_pairs(w, untaught)) > 0


def test_group_scores_are_means_over_their_pairs(micro_lm):
    from editbench.harness.metrics import edit_scores, locality_top1
    from editbench.harness.scoring import score_targets

    loc = (("Kamiven Dortal lives in the city of", "Dunmore"), ("The job of Kamiven Dortal is", "baker"),
           ("Kamiven Dortal speaks the language", "Velish"))
    port = (("Kamiven Dortal works as a", "baker"), ("Kamiven Dortal plays the", "harp"))
    r = EditRequest(case_id="g", prompt="Kamiven Dortal lives in the city of", subject="Kamiven Dortal",
                    target_new="Oskerby", locality=loc, locality_groups=("neighbourhood", "unrelated", "unrelated"),
                    portability=port, portability_groups=("two_hop", "alias"))
    pre = locality_top1(micro_lm, [r])
    [row] = edit_scores(micro_lm, [r], pre)
    assert row["locality_neighbourhood"] == row["locality_unrelated"] == row["locality"] == 1.0  # unedited
    accs = [s.token_accuracy for s in score_targets(micro_lm, list(port))]
    assert row["portability_two_hop"] == pytest.approx(accs[0]) and row["portability_alias"] == pytest.approx(accs[1])
    assert row["portability"] == pytest.approx(sum(accs) / 2)


def test_nano_world_runs_end_to_end_with_group_columns(cache_dir):
    """A World 2.0 run: every edit has alias portability, the unedited model keeps every locality
    group, and the report has the group table."""
    from editbench.benchmarks.registry import world_benchmark
    from editbench.harness.models import load_model
    from editbench.harness.runner import Runner
    from editbench.harness.suite import EvalSuite
    from editbench.methods.noedit import NoEdit
    from editbench.reports import tables

    folder = ensure_world(NANO, log=lambda m: None)
    data = world_benchmark(folder, 4, seed=0)
    lm = load_model(str(folder), hparams_key="world")
    suite = EvalSuite(data.fluency_prompts[:1], 8, data.exam_name, data.exam[:4])
    results, _ = Runner(lm, NoEdit(), data.requests, suite, [4], 0, log=lambda m: None).run()
    cp = results["checkpoints"][-1]
    assert cp["portability"] is not None and cp["groups"]["locality_unrelated"] == 1.0
    assert "portability_alias" in cp["groups"]
    assert all("portability_alias" in e for e in cp["per_edit"])
    md = tables.groups_markdown(tables.final_rows([upgraded({**results, "method": "noedit"})]))
    assert "portability_alias" in md and "locality_unrelated" in md


def _build_report_in_child(config: WorldConfig, cache: Path, one_core: bool) -> dict:
    """Build `config` in a child process with the build's pinned environment, on one core or all of
    them (the affinity is set before torch, OpenMP or MKL start, as `taskset -c 0` would)."""
    from editbench.benchmarks.world_model import REPORT_FILE, reproducible_env

    pin = "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); " if one_core else ""
    code = (f"import os, runpy, sys; {pin}sys.argv = ['world_model', sys.argv[1]]; "
            "runpy.run_module('editbench.benchmarks.world_model', run_name='__main__')")
    env = {**os.environ, **reproducible_env(config.build_threads), "EDITBENCH_CACHE": str(cache)}
    subprocess.run([sys.executable, "-c", code, json.dumps(asdict(config))], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads(next(cache.glob(f"world/{config.name}-*/{REPORT_FILE}")).read_text())


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity (Linux)")
def test_a_build_thread_count_gives_the_same_weights_on_one_core_or_many(tmp_path):
    """build_threads=2 on one core equals build_threads=2 on every core (work is split by thread
    count, not core count); the count is part of the world's identity (its weights differ)."""
    two = replace(NANO, name="nano2-threads", build_threads=2)
    one_core = _build_report_in_child(two, tmp_path / "one-core", one_core=True)
    all_cores = _build_report_in_child(two, tmp_path / "all-cores", one_core=False)
    assert one_core["build_environment"]["threads"] == all_cores["build_environment"]["threads"] == 2
    assert one_core["weights_sha256"] == all_cores["weights_sha256"]
    assert world_hash(two) != world_hash(replace(two, build_threads=1))
