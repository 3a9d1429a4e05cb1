"""Shared fixtures: the shipped micro world, pico models built in-session (no downloads)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# The real data is read in place, never copied: ../shared/data next to the repository, or $EDITBENCH_DATA.
SHARED_DATA = Path(os.environ.get("EDITBENCH_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


# Tiers (markers, see docs/development.md): a test that needs the trained micro world, or the cache it
# lives in, is `integration`; one that reads ../shared/data is `real_data` (and skips without it).
# `make test-fast` runs neither; `make test` (what CI runs) runs every test.
WORLD_FIXTURES = frozenset({"cache_dir", "micro_world", "micro_lm", "micro_requests"})


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if WORLD_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("real_data") and not SHARED_DATA.is_dir():
            item.add_marker(pytest.mark.skip(reason=f"real data folder {SHARED_DATA} is absent"))


def pytest_configure(config) -> None:
    # One torch thread per test process: `make test` runs one process per core (pytest-xdist), and
    # every command the tests run sets one thread anyway (the run plan's `threads`).
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """A fresh cache for the session (key statistics, the tiny worlds the build tests train). Under
    pytest-xdist every worker shares one (the session's base folder), so what one builds under the
    cache's build lock the others reuse."""
    if os.environ.get("EDITBENCH_TEST_CACHE"):
        path = Path(os.environ["EDITBENCH_TEST_CACHE"])
    elif os.environ.get("PYTEST_XDIST_WORKER"):
        path = tmp_path_factory.getbasetemp().parent / "editbench-cache"
        path.mkdir(exist_ok=True)
    else:
        path = tmp_path_factory.mktemp("editbench-cache")
    os.environ["EDITBENCH_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def micro_world(cache_dir) -> Path:
    """The shipped micro world (editbench/worlds/micro), verified: never trained by the tests."""
    from editbench.benchmarks.world_model import world_path

    return world_path("micro", log=lambda msg: None)


@pytest.fixture
def micro_lm(micro_world):
    """A freshly loaded (unedited) micro world model for each test."""
    from editbench.harness.models import load_model

    return load_model(str(micro_world))  # hparams key world-micro: its own YAMLs, then the world ones


@pytest.fixture(scope="session")
def micro_requests(micro_world):
    from editbench.benchmarks.registry import world_benchmark

    return world_benchmark(micro_world, 12, seed=0).requests


def state_copy(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(model, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, f"parameters changed: {changed[:5]}"


def synthetic_letter_exam(lm, per_subject: int, shots: int = 2, subjects=("alpha", "beta")):
    """Short MMLU-format letter prompts (instructions + shots shared per subject) that fit the micro
    world's context, with fixed distinct letter tokens: for the shared-prefix exam tests and benches."""
    import random
    from dataclasses import replace

    from editbench.benchmarks.exams import FORMATS, letter_prompt
    from editbench.core import ExamQuestion
    from editbench.harness import metrics

    rng, words = random.Random(0), "Ada works for Acme city river the of in is".split()

    def question(i, subject):
        return ExamQuestion(qid=f"{subject}-{i}", question=" ".join(rng.choice(words) for _ in range(3)) + "?",
                            options=tuple(" ".join(rng.choice(words) for _ in range(2)) for _ in range(4)),
                            answer="ABCD"[i % 4], subject=subject)

    questions = []
    for subject in subjects:
        examples = [question(100 + k, subject) for k in range(shots)]
        questions += [replace(q, prompt=letter_prompt(FORMATS["mmlu"], subject, examples, q), letter_sep=" ")
                      for q in (question(i, subject) for i in range(per_subject))]
    return metrics.PreparedExam("letter", questions, [lm.tokenizer(q.prompt).input_ids for q in questions],
                                [[10, 11, 12, 13]] * len(questions))


def strip_volatile(value, volatile: set[str]):
    """A results structure without the fields that are about the clock, the process or the machine,
    to compare the numbers of two runs."""
    if isinstance(value, dict):
        return {k: strip_volatile(v, volatile) for k, v in value.items() if k not in volatile}
    if isinstance(value, list):
        return [strip_volatile(v, volatile) for v in value]
    return value
