import json

from editbench.benchmarks import world as world_gen
from editbench.benchmarks.world import world_config
from editbench.benchmarks.world_model import ensure_world, load_world


def test_micro_world_learned_its_facts(micro_world):
    report = json.loads((micro_world / "build_report.json").read_text())
    assert report["train_accuracy"] >= 0.95
    assert report["heldout_accuracy"] >= 0.90
    assert report["facts"] == 40 * 3


def test_the_shipped_world_is_returned_as_it_is_without_rebuilding(micro_world):
    stamp = (micro_world / "model.safetensors").stat().st_mtime_ns
    messages = []
    assert ensure_world(world_config("micro"), log=messages.append) == micro_world
    assert "shipped weights" in messages[0]
    assert (micro_world / "model.safetensors").stat().st_mtime_ns == stamp


def test_tokenizer_round_trips_through_autotokenizer(micro_world):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(str(micro_world))
    raw = Tokenizer.from_file(str(micro_world / "tokenizer.json"))  # the tokenizer as trained
    for text in ["Kamiven Dortal lives in the city of Dunmore.", "born 1953, isn't it?  Two  spaces"]:
        ids = loaded(text).input_ids
        assert ids == raw.encode(text).ids
        assert loaded.decode(ids) == text


def test_generator_is_seeded_and_splits_templates():
    cfg = world_config("micro")
    a, b = world_gen.generate_world(cfg), world_gen.generate_world(cfg)
    assert a.facts == b.facts
    for fact in a.facts:
        assert not set(fact.train_templates) & set(fact.heldout_templates)
        assert len(fact.train_templates) == cfg.train_templates_per_fact
        assert len(fact.subject.split()) == 2
    pools = a.pools
    assert not set(pools["edit"]) & set(pools["locality"]) and not set(pools["edit"]) & set(pools["exam"])


def test_requests_are_counterfactual_with_heldout_rephrases(micro_world):
    world = load_world(micro_world)
    facts = {f"world-{f.fid}": f for f in world.facts}
    requests = world_gen.make_requests(world, 10, seed=3)
    assert requests == world_gen.make_requests(world, 10, seed=3)
    for r in requests:
        fact = facts[r.case_id]
        assert r.target_new != r.target_true == fact.obj
        assert r.prompt in {fact.prompt(t) for t in fact.train_templates}
        assert set(r.rephrase_prompts) == {fact.prompt(t) for t in fact.heldout_templates}
        assert all(r.subject not in p for p, _ in r.locality)
