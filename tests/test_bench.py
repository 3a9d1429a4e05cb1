"""Speed benchmarks (`make bench`): seconds per edit and evaluation time on the micro world.

Deselected from `make test`; figures are quoted in notes, never asserted as timings.
"""
import pytest

from editbench.core import get_editor_class
from editbench.harness.hparams import resolve_config
from editbench.harness.metrics import edit_scores, exam_accuracy

pytestmark = pytest.mark.bench


@pytest.mark.parametrize("name", ["ft", "ft_l", "rsft", "rsft_merge", "lora", "rome", "memit"])
def test_seconds_per_edit(benchmark, name, micro_lm, micro_requests):
    cls = get_editor_class(name)
    config, _ = resolve_config(cls.config_class, name, "world", "qwen2")
    editor = cls(config)
    cache: dict = {}
    editor.edit(micro_lm, micro_requests[:1], cache)  # warm the run cache (key statistics, templates) as a run does
    delta = benchmark.pedantic(editor.edit, args=(micro_lm, micro_requests[:1]), kwargs={"cache": cache},
                               rounds=5, iterations=1)
    assert delta.tensors


def test_key_statistics_build(benchmark, micro_lm, tmp_path, monkeypatch):
    """Seconds to build C for two layers over the whole micro-world corpus, without any cache."""
    from editbench.methods.key_stats import StatsSpec, key_statistics

    rounds = iter(range(100))  # a fresh disk cache for every round
    spec = StatsSpec()

    def build():
        monkeypatch.setenv("EDITBENCH_CACHE", str(tmp_path / str(next(rounds))))
        return key_statistics(micro_lm, [0, 1], spec, run_cache={})

    stats = benchmark.pedantic(build, rounds=3, iterations=1)
    assert set(stats) == {0, 1}


def test_evaluation_speed(benchmark, micro_lm, micro_world):
    from editbench.benchmarks.registry import world_benchmark

    data = world_benchmark(micro_world, 20, seed=0)
    rows = benchmark(edit_scores, micro_lm, data.requests, None)
    assert len(rows) == 20
    assert exam_accuracy(micro_lm, data.exam) > 0.9


def test_ceval_letter_exam_speed(benchmark, micro_lm):
    """Scoring one C-Eval question per subject (52, 5-shot letter prompts) on the micro world model."""
    from conftest import SHARED_DATA

    from editbench.benchmarks.exams import load_exam
    from editbench.harness.metrics import exam_scores, prepare_exam

    if not (SHARED_DATA / "ceval").is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    exam = load_exam("ceval", SHARED_DATA / "ceval", shots=5, limit_per_subject=1, seed=0)
    prepared = prepare_exam(micro_lm, exam.questions, exam.mode)
    scores = benchmark.pedantic(exam_scores, args=(micro_lm, prepared), rounds=3, iterations=1)
    assert len(exam.questions) == 52 and 0.0 <= scores["accuracy"] <= 1.0
