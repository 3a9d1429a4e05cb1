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
    counted = editbench.run([method], world="micro", edits=4, checkpoints=[2, 4], seed=0, count_flops=2).results[0]
    assert _scores(plain) == _scores(counted)
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
