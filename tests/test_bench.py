"""Speed benchmarks (`make bench`): seconds per edit and evaluation time on the micro world.

Deselected from `make test`; figures are quoted in notes, never asserted as timings.
"""
import pytest

from editbench.core import get_editor_class
from editbench.harness.hparams import resolve_config
from editbench.harness.metrics import edit_scores, exam_accuracy

pytestmark = pytest.mark.bench


@pytest.mark.parametrize("name", ["ft", "ft_l", "rsft", "rsft_merge", "lora"])
def test_seconds_per_edit(benchmark, name, micro_lm, micro_requests):
    cls = get_editor_class(name)
    config, _ = resolve_config(cls.config_class, name, "world", "qwen2")
    editor = cls(config)
    delta = benchmark.pedantic(editor.edit, args=(micro_lm, micro_requests[:1]), kwargs={"cache": {}},
                               rounds=5, iterations=1)
    assert delta.tensors


def test_evaluation_speed(benchmark, micro_lm, micro_world):
    from editbench.benchmarks.registry import world_benchmark

    data = world_benchmark(micro_world, 20, seed=0)
    rows = benchmark(edit_scores, micro_lm, data.requests, None)
    assert len(rows) == 20
    assert exam_accuracy(micro_lm, data.exam) > 0.9
