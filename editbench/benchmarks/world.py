"""The synthetic knowledge world: a seeded generator of entities, facts and paraphrase templates.

Every fact is stated in training text under a subset of its relation's templates; the other
templates are held out and serve as paraphrases the model has never seen with that subject.
Entities are split into four pools: facts to edit (the leaderboard's), a disjoint dev pool for
tuning hyper-parameters, facts to check locality on, and facts for the exam.
"""
from __future__ import annotations

import csv
import io
import random
from dataclasses import asdict, dataclass, field

from editbench.core import ConfigError, EditRequest, ExamQuestion

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
    weight_decay: float = 0.1
    label_smoothing: float = 0.1
    biography_share: float = 0.2
    min_train_accuracy: float = 0.95
    min_heldout_accuracy: float = 0.90

    @classmethod
    def from_dict(cls, raw: dict) -> "WorldConfig":
        """From its JSON form (lists back to tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


WORLD_SIZES = {
    "default": WorldConfig(),
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

    def prompt(self, template: int) -> str:
        return RELATIONS[self.relation]["templates"][template].format(s=self.subject)

    def sentence(self, template: int) -> str:
        return f"{self.prompt(template)} {self.obj}."


@dataclass
class World:
    config: WorldConfig
    entities: list[str]
    facts: list[Fact]
    pools: dict[str, list[str]] = field(default_factory=dict)  # pool name -> entity names

    def facts_of(self, pool: str) -> list[Fact]:
        members = set(self.pools[pool])
        return [f for f in self.facts if f.subject in members]

    def to_json(self) -> dict:
        return {"config": asdict(self.config), "entities": self.entities, "pools": self.pools,
                "facts": [asdict(f) for f in self.facts]}

    @classmethod
    def from_json(cls, data: dict) -> "World":
        cfg = WorldConfig.from_dict(data["config"])
        facts = [Fact(**{k: tuple(v) if isinstance(v, list) else v for k, v in f.items()}) for f in data["facts"]]
        return cls(config=cfg, entities=data["entities"], facts=facts, pools=data["pools"])


def _entity_names(rng: random.Random, n: int) -> list[str]:
    names: set[str] = set()
    while len(names) < n:
        first = "".join(rng.sample(SYLLABLES, 2)).capitalize()
        last = "".join(rng.sample(SYLLABLES, rng.choice((2, 3)))).capitalize()
        names.add(f"{first} {last}")
    return sorted(names)


def generate_world(config: WorldConfig) -> World:
    rng = random.Random(config.seed)
    unknown = [r for r in config.relations if r not in RELATIONS]
    if unknown:
        raise ConfigError(f"unknown relations {unknown} (valid: {', '.join(RELATIONS)})")
    entities = _entity_names(rng, config.n_entities)
    facts = []
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
    return World(config=config, entities=entities, facts=facts, pools=pools)


# --------------------------------------------------------------------------- training text


def training_sentences(world: World) -> list[tuple[str, list[str]]]:
    """Per entity: its name and every training sentence stating one of its facts."""
    by_subject: dict[str, list[str]] = {}
    for f in world.facts:
        by_subject.setdefault(f.subject, []).extend(f.sentence(t) for t in f.train_templates)
    return sorted(by_subject.items())


# --------------------------------------------------------------------------- edit requests


def make_requests(world: World, n_edits: int, seed: int, pool_name: str = "edit") -> list[EditRequest]:
    """N counterfactual edits: a new object of the same relation, prompts from training templates,
    rephrases from the fact's held-out templates, locality pairs from the locality pool.
    `pool_name` 'edit' gives the leaderboard's edits, 'dev' the disjoint tuning split."""
    if pool_name not in EDIT_POOLS:
        raise ConfigError(f"unknown edit pool '{pool_name}' (valid: {', '.join(EDIT_POOLS)})")
    rng = random.Random(seed)
    pool = world.facts_of(pool_name)
    if n_edits > len(pool):
        raise ConfigError(f"--edits {n_edits} exceeds the {len(pool)} facts of the '{pool_name}' pool of world "
                          f"'{world.config.name}'")
    locality_facts = world.facts_of("locality")
    requests = []
    for fact in rng.sample(pool, n_edits):
        objects = [o for o in RELATIONS[fact.relation]["objects"] if o != fact.obj]
        same_relation = rng.choice([f for f in locality_facts if f.relation == fact.relation])
        other = rng.choice([f for f in locality_facts if f.relation != fact.relation] or locality_facts)
        requests.append(
            EditRequest(
                case_id=f"world-{fact.fid}" if pool_name == "edit" else f"world-{pool_name}-{fact.fid}",
                prompt=fact.prompt(rng.choice(fact.train_templates)),
                subject=fact.subject,
                target_new=rng.choice(objects),
                target_true=fact.obj,
                rephrase_prompts=tuple(fact.prompt(t) for t in fact.heldout_templates),
                locality=tuple((f.prompt(rng.choice(f.train_templates)), f.obj) for f in (same_relation, other)),
                source=f"world:{world.config.name}",
            )
        )
    return requests


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
