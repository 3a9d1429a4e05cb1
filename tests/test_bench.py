"""Speed benchmarks (`make bench`): seconds per edit and evaluation time on the micro world.

Deselected from `make test`; figures are quoted in notes, never asserted as timings.
"""
import pytest

from editbench.harness.hparams import make_editor, resolve_config
from editbench.harness.metrics import edit_scores, exam_accuracy

pytestmark = pytest.mark.bench


@pytest.mark.parametrize("name", ["ft", "ft_l", "rsft", "rsft_merge", "lora", "rome", "memit"])
def test_seconds_per_edit(benchmark, name, micro_lm, micro_requests):
    editor, _ = make_editor(name, model_type="qwen2")
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


@pytest.mark.real_data
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


@pytest.mark.parametrize("batched", [False, True], ids=["one_by_one", "batched"])
def test_memit_z_phase(benchmark, batched, micro_lm, micro_requests):
    """MEMIT's z for 12 requests: one optimisation loop per request vs one padded pass for all."""
    from editbench.harness.arch import get_module, layer_path
    from editbench.methods.memit import MEMITConfig
    from editbench.methods.rewrite import context_templates, flat, optimise_target, optimise_targets

    config, _ = resolve_config(MEMITConfig, "memit", "world", "qwen2")
    layer = config.layers[-1]
    block = get_module(micro_lm.model, layer_path(micro_lm.model, layer))
    templates = flat(context_templates(micro_lm, config.context_template_lengths, {}, config.template_seed,
                                       config.context_template_source))
    requests = micro_requests[:12]
    if batched:
        run = lambda: optimise_targets(micro_lm, block, requests, templates, config.target_spec, layer)  # noqa: E731
    else:
        run = lambda: [optimise_target(micro_lm, block, r, templates, config.target_spec) for r in requests]  # noqa: E731
    targets = benchmark.pedantic(run, rounds=2, iterations=1)
    assert len(targets) == 12


@pytest.mark.parametrize("shared", [False, True], ids=["full", "shared_prefix"])
def test_letter_exam_shared_prefix(benchmark, shared, micro_lm):
    """48 letter prompts (2 subjects, instructions + 2 shots shared) on the micro world model."""
    from conftest import synthetic_letter_exam
    from editbench.harness import metrics

    prepared = synthetic_letter_exam(micro_lm, per_subject=24)
    answers = benchmark.pedantic(metrics._letter_predictions, args=(micro_lm, prepared),
                                 kwargs={"shared_prefix": shared}, rounds=3, iterations=1)
    assert len(answers) == len(prepared.questions)


@pytest.mark.parametrize("edits", [8, 16, 32])
def test_checkpoint_evaluation_against_t(benchmark, edits, micro_lm, micro_world):
    """One checkpoint's edit scoring (reliability, generalization, locality, portability in one
    stream) over the first T edits: it should grow linearly with T."""
    from editbench.benchmarks.registry import world_benchmark
    from editbench.harness.metrics import locality_top1

    requests = world_benchmark(micro_world, edits, seed=0).requests
    pre = locality_top1(micro_lm, requests)
    rows = benchmark.pedantic(edit_scores, args=(micro_lm, requests, pre), rounds=3, iterations=1)
    assert len(rows) == edits
