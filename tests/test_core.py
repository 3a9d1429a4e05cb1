import pytest
import torch

from editbench.core import (
    ConfigError, DataError, EditRequest, ExamQuestion, InvalidDeltaError, WeightDelta, editor_names,
    get_editor_class,
)


def request(**over):
    fields = dict(case_id="r1", prompt="Ada Lovelace lives in", subject="Ada Lovelace", target_new="Paris",
                  source="file.json")
    fields.update(over)
    return EditRequest(**fields)


def test_valid_request():
    r = request(locality=(("Bob lives in", "Rome"),))
    assert r.subject in r.prompt


@pytest.mark.parametrize(
    "over, field",
    [
        (dict(subject="Grace Hopper"), "subject"),
        (dict(target_new=" "), "target_new"),
        (dict(prompt=""), "prompt"),
        (dict(locality=(("only prompt",),)), "locality"),
        (dict(portability=(("q", ""),)), "portability"),
        (dict(rephrase_prompts=["a list"]), "rephrase_prompts"),
    ],
)
def test_bad_request_names_record_and_field(over, field):
    with pytest.raises(DataError) as err:
        request(**over)
    msg = str(err.value)
    assert "file.json" in msg and "'r1'" in msg and f"'{field}'" in msg
    assert "\n" not in msg


def test_exam_answer_letter_checked():
    with pytest.raises(DataError, match="'answer'"):
        ExamQuestion(qid="q", question="2+2?", options=("1", "2", "3", "4"), answer="E")
    assert ExamQuestion(qid="q", question="2+2?", options=("1", "2", "3", "4"), answer="D").answer_index == 3


def test_delta_validation_rejects_bad_updates():
    model = torch.nn.Linear(3, 2)
    before = model.weight.detach().clone()
    for delta, message in [
        ({"weight": torch.full((2, 3), float("nan"))}, "non-finite"),
        ({"weight": torch.zeros(3, 2)}, "shape"),
        ({"nope": torch.zeros(1)}, "unknown parameter"),
    ]:
        with pytest.raises(InvalidDeltaError, match=message):
            WeightDelta(tensors=delta).apply(model)
        assert torch.equal(model.weight, before)  # nothing applied
    WeightDelta(tensors={"weight": torch.ones(2, 3)}).apply(model)
    assert torch.equal(model.weight, before + 1)


def test_registry_lists_builtins_and_rejects_unknown():
    names = editor_names()
    assert {"noedit", "ft", "ft_l", "rsft", "rsft_merge", "lora"} <= set(names)
    with pytest.raises(ConfigError, match="valid: .*noedit"):
        get_editor_class("nosuch")


def test_config_ranges_are_checked():
    cls = get_editor_class("rsft_merge").config_class
    for bad in (dict(delta_weight=1.5), dict(merge_scope="global"), dict(density=0.0), dict(epochs=0), dict(max_steps_per_sample=0), dict(tau=0.0),
                dict(projections=("ffn",))):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            cls(**bad)
    lora = get_editor_class("lora").config_class
    for bad in (dict(rank=0), dict(mode="sometimes"), dict(target="embeddings")):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            lora(**bad)


def test_every_shipped_hparams_file_builds_a_valid_config():
    """Each YAML under editbench/hparams/<method>/ parses, has only known keys and passes range checks."""
    from editbench.harness.hparams import HPARAMS_DIR, build_config, load_yaml

    files = sorted(HPARAMS_DIR.glob("*/*.yaml"))
    assert len(files) >= 30
    for path in files:
        cls = get_editor_class(path.parent.name)
        config = build_config(cls.config_class, load_yaml(path), str(path))
        assert isinstance(config, cls.config_class)


def test_output_hooks_come_off_for_a_block_and_back_in_order():
    """`without_output_hooks`: an editor that trains its own replacement of a module's output (GRACE's,
    WISE's reference reading) sees the module's own output, and every hook is back after, in its order,
    even when the block raises."""
    from editbench.harness.hooks import without_output_hooks

    layer = torch.nn.Linear(3, 3)
    x = torch.randn(2, 3)
    layer.register_forward_hook(lambda m, a, out: out + 1)
    layer.register_forward_hook(lambda m, a, out: out * 2)
    hooked = layer(x)
    with without_output_hooks(layer):
        assert torch.equal(layer(x), layer.forward(x))
    assert torch.equal(layer(x), hooked)
    with pytest.raises(RuntimeError), without_output_hooks(layer):
        raise RuntimeError("inside")
    assert torch.equal(layer(x), hooked) and torch.equal(hooked, (layer.forward(x) + 1) * 2)


def test_one_registry_for_every_extension_point():
    from editbench.core import ADAPTORS, EDITORS, Registry
    from editbench.harness.metric_registry import METRICS, MetricSpec, register_metric

    assert all(isinstance(r, Registry) for r in (EDITORS, ADAPTORS, METRICS))
    registry: Registry[object] = Registry("widget")
    first = object()
    assert registry.add("a", first) is first and registry.add("a", first) is first  # again: a no-op
    with pytest.raises(ConfigError, match="widget 'a' is registered twice"):
        registry.add("a", object())
    with pytest.raises(ConfigError, match=r"unknown widget 'b' \(known: a\)"):
        registry.get("b")
    with pytest.raises(ConfigError, match="metric 'reliability' is registered twice"):
        register_metric(MetricSpec("reliability", "token", "another reliability"))
    with pytest.raises(ValueError, match="family"):
        MetricSpec("x", "vibes", "no such family")
