"""A metric declared once, from any module (one MetricSpec with its per-edit function), is computed for
every edit, aggregated at each checkpoint, kept per edit and shown in the tables: nothing else names it."""
import pytest

from editbench.harness.metric_registry import METRICS, MetricSpec, register_metric


def mean_target_logprob(evidence) -> float:
    """The mean log-probability of target_new's tokens after the edit prompt (teacher forced)."""
    logprobs = evidence.edit_prompt.logprobs
    return sum(logprobs) / len(logprobs)


@pytest.mark.integration
def test_a_metric_declared_once_reaches_the_edits_the_checkpoint_and_the_table(micro_world):
    import editbench
    from editbench.reports import tables

    register_metric(MetricSpec("target_logprob", "token", "mean log p(target_new token) after the edit prompt",
                               interval=True, per_edit=mean_target_logprob))
    try:
        results = editbench.run("ft", world="micro", edits=3, checkpoints=[3])
        [record] = results.results
        cp = record["checkpoints"][-1]
        per_edit = [e["target_logprob"] for e in cp["per_edit"]]
        assert len(per_edit) == 3 and all(v <= 0 for v in per_edit)
        assert cp["target_logprob"] == pytest.approx(sum(per_edit) / 3)
        [row] = tables.final_rows(results.results)
        assert row["target_logprob"] == cp["target_logprob"] and len(row["target_logprob_ci"]) == 2
    finally:
        METRICS.remove("target_logprob")
    assert "target_logprob" not in METRICS
