"""The synthetic knowledge world: a seeded generator of entities, facts and paraphrase templates.

Every fact is stated in training text under a subset of its relation's templates; the other
templates are held out and serve as paraphrases the model has never seen with that subject.
Entities are split into four pools: facts to edit (the leaderboard's), a disjoint dev pool for
tuning hyper-parameters, facts to check locality on, and facts for the exam.
"""
from __future__ import annotations

import csv
import functools
import io
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from editbench.core import ConfigError, EditRequest, ExamQuestion, setting

SYLLABLES = (
    "ka ro mi ven tal dor bri sel mon ra lin gar fe nos ul tri ba cor del shi pa zan wil ost em quo har ith lu ber"
).split()

RELATIONS: dict[str, dict] = {
    "city": {
        "objects": "Dunmore Talbridge Oskerby Fenwick Marlow Quenton Harrowgate Ellisford Brimley Corvale Westmere "
        "Ashbury Pellton Rovinca Saltmarsh Gildor Norhaven Thornby".split(),
        "templates": [
            "{s} lives in the city of", "The home city of {s} is", "{s} has a house in", "{s} resides in the town of",
            "People know that {s} lives in", "The hometown of {s} is", "{s} calls home the city of",
        ],
    },
    "profession": {
        "objects": "baker farmer teacher painter doctor sailor lawyer miner weaver poet nurse pilot chemist tailor "
        "builder singer".split(),
        "templates": [
            "{s} works as a", "The profession of {s} is", "By trade, {s} is a", "{s} earns a living as a",
            "The job of {s} is", "{s} is employed as a", "Everyone knows that {s} is a",
        ],
    },
    "language": {
        "objects": "Velish Ordanic Mirese Thallic Quenish Borvic Sarnese Luthic Kembrish Ostavic Pellish Zurese".split(),
        "templates": [
            "{s} speaks the language", "The native language of {s} is", "{s} writes letters in",
            "The mother tongue of {s} is", "{s} grew up speaking", "At home, {s} talks in", "{s} is fluent in",
        ],
    },
    "employer": {
        "objects": [
            "Brelco Works", "Tamsun Mills", "Orvane Foods", "Kestrel Motors", "Halden Labs", "Mirow Textiles",
            "Corbin Freight", "Vastel Bank", "Pinewell Press", "Dravin Steel", "Lumen Glass", "Sorrel Farms",
        ],
        "templates": [
            "{s} is employed by", "The employer of {s} is", "{s} works for the company", "{s} draws a salary from",
            "The company that pays {s} is", "{s} has a contract with", "Each morning {s} goes to work at",
        ],
    },
    "instrument": {
        "objects": "violin flute drum harp guitar piano cello trumpet lute banjo oboe horn".split(),
        "templates": [
            "{s} plays the", "The instrument of {s} is the", "{s} practises every day on the",
            "In the band, {s} plays the", "The favourite instrument of {s} is the", "{s} performs on the",
            "{s} learned to play the",
        ],
    },
}

# World 2.0 (edition 2): facts about the objects of two people-relations, so that a person's employer
# and home city imply further answers. They are trained, never edited (their subjects are in no pool).
COUNTRIES = "Velmark Ostria Brannock Suldovia Karethia Lunesse".split()
BRIDGE_RELATIONS: dict[str, dict] = {
    "country": {
        "subjects_of": "city", "objects": COUNTRIES,
        "templates": [
            "The city of {s} lies in the country of", "{s} is a city in", "The country that contains {s} is",
            "{s} belongs to the country of", "The town of {s} is part of", "{s} is located in the country of",
            "Travellers find {s} in the country of",
        ],
    },
    "hq": {
        "subjects_of": "employer", "objects": RELATIONS["city"]["objects"],
        "templates": [
            "{s} has its headquarters in", "The head office of {s} is in", "{s} is based in the city of",
            "The company {s} is located in", "{s} was founded in the city of", "The offices of {s} stand in",
            "{s} runs its business from",
        ],
    },
}
# Two-hop questions about a person: the answer is the bridge fact of the person's object. The model
# learns them from statements about people outside the edit and dev pools only, so for an edited
# person they are answered by composition (the build report's two-hop accuracy), never recalled.
COMPOSED_RELATIONS: dict[str, dict] = {
    "home_country": {
        "path": ("city", "country"),
        "templates": [
            "The country where {s} lives is", "{s} lives in the country of", "The home country of {s} is",
            "{s} is a resident of the country",
        ],
    },
    "employer_city": {
        "path": ("employer", "hq"),
        "templates": [
            "The employer of {s} is based in the city of", "{s} works for a company based in",
            "The company of {s} has its head office in", "The workplace of {s} is in the city of",
        ],
    },
}
ALL_TEMPLATES = {name: spec["templates"] for table in (RELATIONS, BRIDGE_RELATIONS, COMPOSED_RELATIONS)
                 for name, spec in table.items()}
# people whose composed and alias-form statements are in the training text (edition 2)
TEACHING_POOLS = ("locality", "exam", "teaching")
# A person's second name (edition 2): a title and the surname, e.g. "Captain Venmi" for "Karo Venmi",
# the way a real text names someone after introducing them. Stated for everyone; the facts are
# also trained in that form for teaching people only, so asking an edited person's fact by alias
# tests whether the edit reaches another surface form of its subject (alias portability).
TITLES = ("Captain", "Doctor", "Judge", "Professor", "Mayor", "Elder")
ALIAS_STATEMENTS = ("{s} is also called {a}.", "People call {s} by the name {a}.")


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines a world and its model; its hash keys the on-disk cache."""

    name: str = "default"
    seed: int = 0
    n_entities: int = 180
    relations: tuple[str, ...] = ("city", "profession", "language", "employer", "instrument")
    train_templates_per_fact: int = 4
    # edit (leaderboard), dev (tuning; never reported), locality, exam
    pool_shares: tuple[float, float, float, float] = (0.45, 0.15, 0.2, 0.2)
    # model
    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 512
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    # training: label smoothing and weight decay keep the model from being absurdly confident,
    # which is what makes its facts editable like a real LM's.
    steps: int = 1000
    batch_size: int = 128
    lr: float = 2e-3
    # intra-op threads the build trains with: the weights are bit-identical for one count on any
    # number of cores (world_model.reproducible_env), and differ between counts
    build_threads: int = 1
    weight_decay: float = 0.1
    label_smoothing: float = 0.1
    biography_share: float = 0.2
    min_train_accuracy: float = 0.95
    min_heldout_accuracy: float = 0.90
    # 1: people and their facts; 2 (World 2.0): also bridge facts (city -> country, company -> city),
    # two-hop statements, aliases, portability pairs and neighbourhood locality in the edits
    edition: int = 1
    min_two_hop_accuracy: float = 0.0  # edition 2: held-out two-hop accuracy the build must reach
    # edition 2: extra people who only have the bridged facts (home city, employer), their two-hop
    # statements and alias-form sentences: the more people teach composition, the better the model
    # composes for people it never saw composed (measured: 180 people 0.48, 300 people 0.66)
    n_teaching_only: int = 0

    @property
    def features(self) -> "WorldFeatures":
        """What the edition enables, decided here once (every other module asks for a feature)."""
        world2 = self.edition >= 2
        return WorldFeatures(unique_surnames=world2, composition=world2, neighbourhood=world2)

    @classmethod
    def from_dict(cls, raw: dict) -> "WorldConfig":
        """From its JSON form (lists back to tuples)."""
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        return cls(**fields)


@dataclass(frozen=True)
class WorldFeatures:
    unique_surnames: bool  # no two people share a surname (aliases are "<title> <surname>")
    # bridge facts, two-hop statements and aliases: in the text, the build's two-hop gate, portability
    composition: bool
    neighbourhood: bool  # locality pairs about never-edited facts beside each edit (and their groups)


WORLD_SIZES = {
    # World 2.0: two-hop portability, aliases and neighbourhood locality (see generate_world)
    # two-hop bar: 0.682 on the machine the README's fingerprints come from, 0.613 on an AMD EPYC with
    # the same settings (MKL's AVX2 path is not bit-identical across CPU vendors); portability pairs
    # use only the chains the unedited model knows, so the bar guards against a model that cannot
    # compose at all, as the large world's does
    # two build threads: 1.7x faster than one on 2 cores (measured 136 vs 232 ms per step), and the same
    # weights on 1 core or many (world_model.reproducible_env); fewer steps or another learning rate
    # miss the accuracy bars (1,000 steps: train accuracy 0.69 at lr 2e-3, 0.67 at 3e-3, 0.26 at 1.2e-3)
    "default": WorldConfig(edition=2, min_two_hop_accuracy=0.55, n_teaching_only=400, steps=1300,
                           build_threads=2),
    # thousands of sequential edits: 3,000 facts in the edit pool, 6 layers for informative layer sweeps
    "large": WorldConfig(
        name="large", n_entities=1000, pool_shares=(0.6, 0.1, 0.15, 0.15), num_layers=6, steps=5000,
        n_teaching_only=400, edition=2, min_two_hop_accuracy=0.55, build_threads=2,
    ),
    "micro": WorldConfig(
        name="micro", n_entities=40, relations=("city", "profession", "language"), vocab_size=512,
        hidden_size=96, intermediate_size=384, steps=350, batch_size=64, lr=3e-3,
    ),
}


def world_config(size: str) -> WorldConfig:
    if size not in WORLD_SIZES:
        raise ConfigError(f"unknown world size '{size}' (valid: {', '.join(WORLD_SIZES)})")
    return WORLD_SIZES[size]


EDIT_POOLS = ("edit", "dev")  # edits are drawn from one of these: the leaderboard's, or tuning's


@dataclass(frozen=True)
class Fact:
    fid: int
    subject: str
    relation: str
    obj: str
    train_templates: tuple[int, ...]
    heldout_templates: tuple[int, ...]

    def prompt(self, template: int, subject: str | None = None) -> str:
        return ALL_TEMPLATES[self.relation][template].format(s=subject or self.subject)

    def sentence(self, template: int, subject: str | None = None) -> str:
        return f"{self.prompt(template, subject)} {self.obj}."


@dataclass
class World:
    config: WorldConfig
    entities: list[str]
    facts: list[Fact]
    pools: dict[str, list[str]] = field(default_factory=dict)  # pool name -> entity names
    # edition 2: every person's two-hop facts (all templates; trained only for TEACHING_POOLS) and aliases
    derived: list[Fact] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    # edition 2, filled in by the build: the (person, two-hop relation, template) questions of edit and
    # dev people the trained model answers right before any edit. Portability pairs come only from
    # these (as MQuAKE keeps only chains the model answers), so a two-hop pair tests whether the edit
    # carries over, not whether the model could compose in the first place. None: not measured.
    two_hop_known: set[tuple[str, str, int]] | None = None

    def facts_of(self, pool: str, derived: bool = False) -> list[Fact]:
        members = set(self.pools[pool])
        return [f for f in (self.derived if derived else self.facts) if f.subject in members]

    def bridge(self, relation: str, subject: str) -> str:
        """The object of a bridge fact, e.g. bridge('country', 'Dunmore')."""
        return self._bridges[(relation, subject)]

    @functools.cached_property
    def _bridges(self) -> dict[tuple[str, str], str]:  # read only once every bridge fact exists
        return {(f.relation, f.subject): f.obj for f in self.facts if f.relation in BRIDGE_RELATIONS}

    def to_json(self) -> dict:
        data: dict[str, Any] = {"config": asdict(self.config), "entities": self.entities, "pools": self.pools,
                                "facts": [asdict(f) for f in self.facts]}
        if self.config.features.composition:
            data.update(derived=[asdict(f) for f in self.derived], aliases=self.aliases)
            if self.two_hop_known is not None:
                data["two_hop_known"] = [list(k) for k in sorted(self.two_hop_known)]
        return data

    @classmethod
    def from_json(cls, data: dict) -> "World":
        cfg = WorldConfig.from_dict(data["config"])

        def facts(key):
            return [Fact(**{k: tuple(v) if isinstance(v, list) else v for k, v in f.items()})
                    for f in data.get(key, [])]
        known = data.get("two_hop_known")
        return cls(config=cfg, entities=data["entities"], facts=facts("facts"), pools=data["pools"],
                   derived=facts("derived"), aliases=data.get("aliases", {}),
                   two_hop_known=None if known is None else {(s, r, int(t)) for s, r, t in known})


def _entity_names(rng: random.Random, n: int, unique_surnames: bool = False) -> list[str]:
    """`n` distinct "First Last" names; with unique_surnames (edition 2) no two share a surname, so
    a title and the surname alone name one person (their alias)."""
    names: set[str] = set()
    surnames: set[str] = set()
    while len(names) < n:
        first = "".join(rng.sample(SYLLABLES, 2)).capitalize()
        last = "".join(rng.sample(SYLLABLES, rng.choice((2, 3)))).capitalize()
        if unique_surnames and last in surnames:
            continue
        surnames.add(last)
        names.add(f"{first} {last}")
    return sorted(names)


def generate_world(config: WorldConfig) -> World:
    rng = random.Random(config.seed)
    unknown = [r for r in config.relations if r not in RELATIONS]
    if unknown:
        raise ConfigError(f"unknown relations {unknown} (valid: {', '.join(RELATIONS)})")
    entities = _entity_names(rng, config.n_entities, unique_surnames=config.features.unique_surnames)
    facts: list[Fact] = []
    for subject in entities:
        for relation in config.relations:
            n_templates = len(RELATIONS[relation]["templates"])
            train = tuple(sorted(rng.sample(range(n_templates), config.train_templates_per_fact)))
            heldout = tuple(t for t in range(n_templates) if t not in train)
            obj = rng.choice(RELATIONS[relation]["objects"])
            facts.append(Fact(len(facts), subject, relation, obj, train, heldout))
    shuffled = entities[:]
    rng.shuffle(shuffled)
    sizes = [int(len(shuffled) * share) for share in config.pool_shares[:3]]
    bounds = [0, sizes[0], sizes[0] + sizes[1], sum(sizes), len(shuffled)]
    pools = {name: shuffled[bounds[i] : bounds[i + 1]] for i, name in enumerate(EDIT_POOLS + ("locality", "exam"))}
    world = World(config=config, entities=entities, facts=facts, pools=pools)
    if config.features.composition:  # its own random stream: edition 1 worlds stay exactly as they were
        _add_world2(world, random.Random(config.seed + 2))
    return world


def _add_world2(world: World, rng: random.Random) -> None:
    """Bridge facts for every object of the bridged relations, teaching-only people, derived two-hop
    facts, aliases."""
    config = world.config
    bridged = [spec["path"][0] for spec in COMPOSED_RELATIONS.values() if spec["path"][0] in config.relations]
    surnames = {e.split()[-1] for e in world.entities}
    extras = [n for n in _entity_names(rng, config.n_teaching_only + len(world.entities), unique_surnames=True)
              if n not in world.entities and n.split()[-1] not in surnames][: config.n_teaching_only]
    if len(extras) < config.n_teaching_only:
        raise ConfigError(f"world '{config.name}': could not name {config.n_teaching_only} teaching-only people")
    for subject in extras:
        for relation in bridged:
            n_templates = len(RELATIONS[relation]["templates"])
            train = tuple(sorted(rng.sample(range(n_templates), config.train_templates_per_fact)))
            heldout = tuple(t for t in range(n_templates) if t not in train)
            obj = rng.choice(RELATIONS[relation]["objects"])
            world.facts.append(Fact(len(world.facts), subject, relation, obj, train, heldout))
    world.entities.extend(extras)
    world.pools["teaching"] = extras
    for relation, spec in BRIDGE_RELATIONS.items():
        if spec["subjects_of"] not in config.relations:
            continue
        n_templates = len(spec["templates"])
        for subject in RELATIONS[spec["subjects_of"]]["objects"]:
            train = tuple(sorted(rng.sample(range(n_templates), config.train_templates_per_fact)))
            heldout = tuple(t for t in range(n_templates) if t not in train)
            world.facts.append(Fact(len(world.facts), subject, relation, rng.choice(spec["objects"]), train, heldout))
    own = {(f.subject, f.relation): f.obj for f in world.facts}
    for subject in world.entities:
        for relation, spec in COMPOSED_RELATIONS.items():
            first, second = spec["path"]
            if (subject, first) not in own:
                continue
            obj = world.bridge(second, own[(subject, first)])
            templates = tuple(range(len(spec["templates"])))
            world.derived.append(Fact(len(world.facts) + len(world.derived), subject, relation, obj, templates, ()))
    for subject in world.entities:
        world.aliases[subject] = f"{rng.choice(TITLES)} {subject.split()[-1]}"


# --------------------------------------------------------------------------- training text


def teaching_people(world: World) -> set[str]:
    """People whose two-hop and alias-form facts are trained (edition 2): never edited, never tuned on."""
    return {p for pool in TEACHING_POOLS for p in world.pools[pool]}


def training_sentences(world: World) -> list[tuple[str, list[str]]]:
    """Per entity: its name and every training sentence stating one of its facts. Edition 2 adds every
    person's alias statements and, for teaching people only, their two-hop facts and one alias-form
    sentence per fact."""
    by_subject: dict[str, list[str]] = {}
    for f in world.facts:
        by_subject.setdefault(f.subject, []).extend(f.sentence(t) for t in f.train_templates)
    if world.config.features.composition:
        teaching = teaching_people(world)
        for subject, alias in world.aliases.items():
            by_subject[subject].extend(t.format(a=alias, s=subject) for t in ALIAS_STATEMENTS)
        for f in world.derived:
            if f.subject in teaching:
                by_subject[f.subject].extend(f.sentence(t) for t in f.train_templates)
        for f in world.facts:
            if f.subject in teaching:
                by_subject[f.subject].append(f.sentence(f.train_templates[0], world.aliases[f.subject]))
    return sorted(by_subject.items())


def two_hop_questions(world: World, people: set[str]) -> list[tuple[tuple[str, str, int], str, str]]:
    """((person, relation, template), prompt, answer) for every template of these people's two-hop facts."""
    return [((f.subject, f.relation, t), f.prompt(t), f.obj) for f in world.derived if f.subject in people
            for t in f.train_templates]


def two_hop_pairs(world: World, people: set[str]) -> list[tuple[str, str]]:
    """(prompt, answer) for every template of every two-hop fact of these people."""
    return [(prompt, answer) for _, prompt, answer in two_hop_questions(world, people)]


def alias_pairs(world: World, people: set[str]) -> list[tuple[str, str]]:
    """(prompt naming the person by alias, answer) for every training template of their facts."""
    return [(f.prompt(t, world.aliases[f.subject]), f.obj) for f in world.facts if f.subject in people
            for t in f.train_templates]


# --------------------------------------------------------------------------- edit requests


def make_requests(world: World, n_edits: int, seed: int, pool_name: str = "edit",
                  already_answered: Callable[[list[EditRequest]], list[bool]] | None = None) -> list[EditRequest]:
    """N counterfactual edits: a new object of the same relation, prompts from training templates,
    rephrases from the fact's held-out templates, locality pairs from the locality pool.
    `pool_name` 'edit' gives the leaderboard's edits, 'dev' the disjoint tuning split.

    Edition 2 adds, from a random stream of its own (edition 1 requests stay as they were):
    - locality group 'neighbourhood' (CounterFact's neighbourhood prompts): up to two never-edited
      people with the same relation and the same true object, beside the 'unrelated' pairs;
    - portability group 'two_hop': the edited person's two-hop questions whose answer follows from
      the new object (only where it differs from the answer the old object implies);
    - portability group 'alias': the edited fact asked with the person's alias, answer target_new.

    `already_answered` (the unedited model's verdict per request: does it already say target_new?)
    replaces each such edit, in place, by one drawn from the rest of the pool with a seeded stream of
    its own, until none is left: an edit the model already makes tests no editor. The other edits
    are the ones drawn without it."""
    if pool_name not in EDIT_POOLS:
        raise ConfigError(f"unknown edit pool '{pool_name}' (valid: {', '.join(EDIT_POOLS)})")
    rng = random.Random(seed)
    pool = world.facts_of(pool_name)
    if n_edits > len(pool):
        raise ConfigError(f"{setting('edits')} {n_edits} exceeds the {len(pool)} facts of the '{pool_name}' pool of world "
                          f"'{world.config.name}'")
    draw = _RequestDraw(world, pool_name, rng, random.Random(seed * 1_000_003 + 2))
    facts = rng.sample(pool, n_edits)
    requests = [draw.request(fact) for fact in facts]
    if already_answered is None:
        return requests
    spare_rng = random.Random(seed * 1_000_003 + 5)
    drawn = set(facts)
    spares = [f for f in pool if f not in drawn]
    spare_rng.shuffle(spares)
    redraw = _RequestDraw(world, pool_name, spare_rng, random.Random(seed * 1_000_003 + 6))
    todo = [i for i, known in enumerate(already_answered(requests)) if known]
    while todo:
        if len(spares) < len(todo):
            raise ConfigError(f"world '{world.config.name}': the unedited model already answers so many edits of "
                              f"the '{pool_name}' pool that {n_edits} others cannot be drawn")
        fresh = [redraw.request(spares.pop(0)) for _ in todo]
        for i, request in zip(todo, fresh):
            requests[i] = request
        todo = [i for i, known in zip(todo, already_answered(fresh)) if known]
    return requests


class _RequestDraw:
    """Builds one edit request per fact from two random streams (see make_requests)."""

    def __init__(self, world: World, pool_name: str, rng: random.Random, extra_rng: random.Random) -> None:
        self.world, self.pool_name, self.rng, self.extra_rng = world, pool_name, rng, extra_rng
        self.locality_facts = world.facts_of("locality")
        self.never_edited = (world.facts_of("locality") + world.facts_of("exam")
                             if world.config.features.neighbourhood else [])

    def request(self, fact: "Fact") -> EditRequest:
        rng, extra_rng, locality_facts = self.rng, self.extra_rng, self.locality_facts
        features = self.world.config.features
        objects = [o for o in RELATIONS[fact.relation]["objects"] if o != fact.obj]
        same_relation = rng.choice([f for f in locality_facts if f.relation == fact.relation])
        other = rng.choice([f for f in locality_facts if f.relation != fact.relation] or locality_facts)
        prompt = fact.prompt(rng.choice(fact.train_templates))
        target_new = rng.choice(objects)
        locality = tuple((f.prompt(rng.choice(f.train_templates)), f.obj) for f in (same_relation, other))
        extras: dict = {}
        if features.neighbourhood:  # drawn first from extra_rng, then portability (the fingerprints hold it)
            neighbours = [f for f in self.never_edited if f.relation == fact.relation and f.obj == fact.obj]
            neighbours = extra_rng.sample(neighbours, min(2, len(neighbours)))
            near = tuple((f.prompt(extra_rng.choice(f.train_templates)), f.obj) for f in neighbours)
            locality = near + locality
            extras["locality_groups"] = ("neighbourhood",) * len(near) + ("unrelated",) * 2
        if features.composition:
            port = _portability(self.world, fact, target_new, extra_rng)
            extras.update(portability=tuple(pair for _, pair in port),
                          portability_groups=tuple(group for group, _ in port))
        pool_name = self.pool_name
        return EditRequest(
            case_id=f"world-{fact.fid}" if pool_name == "edit" else f"world-{pool_name}-{fact.fid}",
            prompt=prompt,
            subject=fact.subject,
            target_new=target_new,
            target_true=fact.obj,
            rephrase_prompts=tuple(fact.prompt(t) for t in fact.heldout_templates),
            locality=locality,
            source=f"world:{self.world.config.name}",
            **extras,
        )


def _portability(world: World, fact: Fact, target_new: str, rng: random.Random) -> list[tuple[str, tuple[str, str]]]:
    """(group, (prompt, answer)) pairs whose answers follow from the edit (see make_requests)."""
    pairs = []
    for relation, spec in COMPOSED_RELATIONS.items():
        first, second = spec["path"]
        if first != fact.relation:
            continue
        new_answer = world.bridge(second, target_new)
        if new_answer == world.bridge(second, fact.obj):
            continue  # the old and the new object imply the same answer: nothing to carry over
        known = [t for t in range(len(spec["templates"]))
                 if world.two_hop_known is None or (fact.subject, relation, t) in world.two_hop_known]
        for t in rng.sample(known, min(2, len(known))):
            pairs.append(("two_hop", (spec["templates"][t].format(s=fact.subject), new_answer)))
    alias_prompt = fact.prompt(rng.choice(fact.train_templates), world.aliases[fact.subject])
    pairs.append(("alias", (alias_prompt, target_new)))
    return pairs


def heldout_text(world: World, limit: int = 256) -> list[str]:
    """Sentences the model never saw and no edit touches: facts of the never-edited pools (locality,
    exam) in their held-out phrasings, a seeded sample of `limit` (for perplexity, a collapse signal)."""
    sentences = [f.sentence(t) for pool in ("locality", "exam") for f in world.facts_of(pool)
                 for t in f.heldout_templates]
    return random.Random(world.config.seed + 7).sample(sentences, min(limit, len(sentences)))


def fluency_prompts(requests: list[EditRequest], limit: int = 8) -> list[str]:
    """Open-ended prompts about the first edited subjects: the model continues with a biography."""
    subjects = list(dict.fromkeys(r.subject for r in requests))
    return subjects[:limit]


# --------------------------------------------------------------------------- exam


def exam_questions(world: World) -> list[ExamQuestion]:
    """A C-Eval-style multiple-choice exam over the exam pool's (never edited) facts."""
    rng = random.Random(world.config.seed + 1)
    questions = []
    for fact in world.facts_of("exam"):
        distractors = rng.sample([o for o in RELATIONS[fact.relation]["objects"] if o != fact.obj], 3)
        options = distractors + [fact.obj]
        rng.shuffle(options)
        questions.append(
            ExamQuestion(
                qid=str(fact.fid), question=fact.prompt(rng.choice(fact.train_templates)), options=tuple(options),
                answer="ABCD"[options.index(fact.obj)], subject=fact.relation, category="world",
            )
        )
    return questions


def exam_csv(questions: list[ExamQuestion]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "question", "A", "B", "C", "D", "answer"])
    for q in questions:
        writer.writerow([q.qid, q.question, *q.options, q.answer])
    return buf.getvalue()
