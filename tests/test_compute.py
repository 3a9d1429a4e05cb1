"""FLOPs per edit: counted on replays, so counting changes no number; divided over a call's requests."""
import pytest
import torch

import editbench
from editbench.core import ConfigError, Editor, EditorConfig, WeightDelta
from editbench.harness.compute import FlopMeter
from editbench.reports.plots import pareto_front
from editbench.reports.tables import flop_text


def _scores(result):
    drop = ("edit_seconds", "eval_seconds", "flops_per_edit", "flops_counted_edits")
    return [{k: v for k, v in cp.items() if k not in drop} for cp in result["checkpoints"]]


@pytest.mark.parametrize("method", ["rome", "alphaedit", "grace"])  # stateless, earlier keys, a codebook
def test_counting_flops_changes_no_number(micro_world, method):
    plain = editbench.run([method], world="micro", edits=4, checkpoints=[2, 4], seed=0, count_flops=0).results[0]
    counted = editbench.run([method], world="micro", edits=4, checkpoints=[2, 4], seed=0, count_flops=2,
                            count_scoring_flops=True).results[0]
    assert _scores(plain) == _scores(counted)
    # the pre-edit scoring is replayed under the counter too (scoring's cost): its scores stay the same
    assert "scoring_flops" not in plain["pre"] and counted["pre"]["scoring_flops"] > 1e6
    assert {k: v for k, v in plain["pre"].items() if k != "seconds"} == \
        {k: v for k, v in counted["pre"].items() if k not in ("seconds", "scoring_flops")}
    assert "flops_per_edit" not in plain["checkpoints"][-1]
    final = counted["checkpoints"][-1]
    assert final["flops_counted_edits"] == 2 and final["flops_per_edit"] > 1e6


class _Matmul(Editor):
    """A toy editor whose call costs one known matrix product: 2·m·n·k FLOPs, whatever the batch."""

    name = "toy_matmul"
    config_class = EditorConfig

    def edit(self, lm, requests, cache=None):
        a, b = torch.ones(8, 16), torch.ones(16, 4)
        (a @ b).sum()
        name, param = next(iter(lm.model.named_parameters()))
        return WeightDelta({name: torch.zeros_like(param)})


def test_a_counted_call_is_its_matrix_products_shared_by_its_requests(micro_lm):
    requests = editbench.world_edits(micro_lm, 2, seed=0)
    meter = FlopMeter(calls=1)
    assert meter.count(_Matmul(), micro_lm, requests, {}) == 2 * 8 * 16 * 4
    assert meter.counted_steps(10) == {0} and FlopMeter(calls=3).counted_steps(10) == FlopMeter(calls=3).counted_steps(10)
    assert len(FlopMeter(calls=3).counted_steps(10)) == 3 and FlopMeter(calls=5).counted_steps(2) == {0, 1}
    assert FlopMeter(calls=0).counted_steps(10) == set()
    with pytest.raises(ConfigError, match="count_flops"):
        FlopMeter(calls=-1)


def test_cost_table_text_and_pareto_front():
    assert (flop_text(None), flop_text(8.29e9), flop_text(1.2e12), flop_text(512)) == ("-", "8.29 G", "1.2 T", "512")
    # b is cheaper and better than c; a is cheapest; d is best
    points = [(1e9, 0.2, "a"), (2e9, 0.5, "b"), (3e9, 0.4, "c"), (9e9, 0.9, "d"), (9e9, 0.1, "e")]
    assert pareto_front(points) == ["a", "b", "d"]


def test_one_rome_edit_costs_its_closed_form(micro_world):
    """ROME's counted FLOPs on a pico GPT-2 against its closed form, from the model's shapes alone.

    With B prompts (the context templates, the bare prompt, the KL prompt) padded to T tokens, hidden h,
    vocabulary V, L layers, the edit at layer l and S steps of the v* search (none stopped early):
    one pass through layers 0..l fills the frozen prefix, then S + 1 forward passes through layers l..L-1
    and the head (the unedited read, then one per step), S - 1 backward passes through the layers above l
    and the head (the last step stops before its backward; frozen weights take no gradient, so a linear
    layer's backward is its input gradient alone: as many FLOPs as its forward). A GPT-2 layer's forward:
    24·B·T·h² in its four linear maps, 4·B·T²·h in attention's two score products (its backward, torch's
    formula: 10·B·T²·h, the scores recomputed). The solves (none here: no key statistics) and the
    elementwise work are not counted by torch's counter."""
    from editbench.harness.hparams import make_editor
    from editbench.harness.models import load_model
    from editbench.harness.scoring import encode_prompt_target
    from editbench.methods.rewrite import context_templates, flat
    from editbench.testing import pico_lm

    tok = load_model(str(micro_world)).tokenizer
    n_layers, layer, hidden, steps, lengths = 4, 1, 32, 5, ((5, 5),)
    lm = pico_lm("gpt2", tok, hidden=hidden, num_hidden_layers=n_layers)
    request = editbench.world_edits(load_model(str(micro_world)), 1, seed=0)[0]
    editor, _ = make_editor("rome", lm, overrides=dict(layers=(layer,), mom2_adjustment=False, v_num_grad_steps=steps,
                                                       early_stop_loss=0.0, context_template_lengths=lengths))
    cache: dict = {}
    editor.prepare(lm, cache)  # the context templates: one-time preparation, not the edit's cost
    counted = FlopMeter(calls=1).count(editor, lm, [request], cache)

    _, target = encode_prompt_target(tok, request.prompt, request.target_new)
    lens = [len(tok(t.format(request.prompt))["input_ids"]) + len(target) - 1
            for t in flat(context_templates(lm, lengths, cache, 0, "prefixes"))]
    lens.append(len(tok(f"{request.subject} is a")["input_ids"]))
    b, t, h, v = len(lens), max(lens), hidden, len(tok)
    forward_layer = 24 * b * t * h * h + 4 * b * t * t * h
    backward_layer = 24 * b * t * h * h + 10 * b * t * t * h
    head = 2 * b * t * h * v
    closed = ((layer + 1) * forward_layer + (steps + 1) * ((n_layers - layer) * forward_layer + head)
              + (steps - 1) * ((n_layers - layer - 1) * backward_layer + head))
    assert abs(counted / closed - 1) < 0.05, (counted, closed)
