"""Every metric editbench reports, declared once as data.

A metric is a `MetricSpec`: its family, which way is better, whether it is shown with an interval
(and gated by `editbench regress`, with its default tolerance), whether and where it is drawn as a
curve over T, and a one-line definition with its reference. The lists the rest of the code used to
spell out by hand come from here: the per-edit metrics the runner aggregates
(`metrics.edit_metrics()`), the table columns and intervals (`reports/tables`),
the curves (`reports/plots`), the gated metrics and their tolerances (`reports/regress`).
docs/metrics.md holds the long definitions; a test holds its table to this registry.

Adding a per-edit metric is one declaration: `register_metric(MetricSpec(..., per_edit=fn))`, below or
from your own module, where `fn(evidence)` reads one edit's teacher-forced scores (`EditEvidence`) and
returns a number or None; the runner aggregates it, the tables show it, per-edit rows keep it. The
built-in ones are computed in `harness/metrics.py` (they share one scoring pass with generation).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from editbench.core import Registry

# token: teacher-forced, per edit; generation: the model's greedy answer, per edit; derived: computed by
# the reports from other metrics; model: the whole model at a checkpoint; cost: time and compute
FAMILIES = ("token", "generation", "derived", "model", "cost")
PER_EDIT_FAMILIES = ("token", "generation")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    family: str  # one of FAMILIES
    definition: str  # one line; docs/metrics.md has the long one
    reference: str = "editbench"
    higher_is_better: bool = True
    interval: bool = False  # shown with its uncertainty (bootstrap CI over edits, or std over orders)
    tolerance: float | None = None  # gated by `editbench regress` with this default absolute tolerance
    curve: int | None = None  # drawn over T, in this order among the curves (None: not drawn)
    # a token metric computed from one edit's evidence (harness/metrics.py EditEvidence) -> float | None;
    # None: a built-in metric, computed in harness/metrics.py
    per_edit: Callable[[Any], float | None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"metric {self.name!r}: family {self.family!r} is not one of {', '.join(FAMILIES)}")
        if self.tolerance is not None and self.tolerance < 0:
            raise ValueError(f"metric {self.name!r}: a tolerance is >= 0")


METRICS: Registry[MetricSpec] = Registry("metric")


def register_metric(spec: MetricSpec) -> MetricSpec:
    return METRICS.add(spec.name, spec)


def metric_names(*families: str, interval: bool | None = None, gated: bool | None = None) -> tuple[str, ...]:
    """Registered metric names in registration order, filtered by family, interval and gating."""
    specs = [METRICS.get(n) for n in METRICS.names()]
    return tuple(s.name for s in specs if (not families or s.family in families)
                 and (interval is None or s.interval == interval)
                 and (gated is None or (s.tolerance is not None) == gated))


def computed_per_edit() -> dict[str, Callable[[Any], float | None]]:
    """Name -> per-edit function of the metrics declared with one (e.g. a user's), in registration order."""
    return {s.name: s.per_edit for s in map(METRICS.get, METRICS.names()) if s.per_edit is not None}


def curve_names() -> tuple[str, ...]:
    curves = {s.name: s.curve for s in map(METRICS.get, METRICS.names()) if s.curve is not None}
    return tuple(sorted(curves, key=curves.__getitem__))


def default_tolerances() -> dict[str, float]:
    return {n: METRICS.get(n).tolerance for n in metric_names(gated=True)}  # type: ignore[misc]


# The gated tolerances are one edit's (or one exam question's) worth at the regression suite's N = 20:
# one edit moves reliability_em and efficacy by 0.05 and token-level metrics by up to 0.05; the micro
# world's exam has 24 questions (one answer = 0.042); fluency is in bits.
EDIT = 0.05
_EASYEDIT = "EasyEdit / KnowEdit"
_MIRAGE = "arXiv 2502.11177 (The Mirage of Model Editing)"
for _spec in (
    # -- teacher-forced, per edit
    MetricSpec("reliability", "token", "token accuracy of target_new after the edit prompt", _EASYEDIT,
               interval=True, tolerance=EDIT, curve=6),
    MetricSpec("reliability_em", "token", "every target_new token is the top-1", _EASYEDIT, tolerance=EDIT),
    MetricSpec("efficacy", "token", "P(target_new) > P(target_true) after the edit prompt",
               "ROME compute_rewrite_quality_counterfact", tolerance=EDIT),
    MetricSpec("generalization", "token", "reliability on the rephrased prompts", _EASYEDIT,
               interval=True, tolerance=EDIT, curve=7),
    MetricSpec("locality", "token", "unrelated prompts' top-1 tokens unchanged", _EASYEDIT,
               interval=True, tolerance=EDIT, curve=8),
    MetricSpec("portability", "token", "token accuracy on answers that follow from the edit", _EASYEDIT,
               interval=True, tolerance=EDIT, curve=9),
    MetricSpec("reliability_gain", "token", "reliability's gain over the unedited model, (x - x0)/(1 - x0)"),
    MetricSpec("generalization_gain", "token", "generalization's gain over the unedited model"),
    # -- the model's own answer, per edit
    MetricSpec("reliability_gen", "generation", "the greedy answer to the edit prompt equals target_new (EM)",
               _MIRAGE, interval=True, tolerance=EDIT, curve=1),
    MetricSpec("generalization_gen", "generation", "reliability_gen on the rephrased prompts", _MIRAGE,
               interval=True, tolerance=EDIT, curve=2),
    MetricSpec("locality_gen", "generation", "unrelated prompts' greedy answers unchanged", _MIRAGE,
               interval=True, tolerance=EDIT, curve=3),
    MetricSpec("portability_gen", "generation", "greedy answers equal the answers that follow from the edit",
               _MIRAGE, interval=True, tolerance=EDIT, curve=4),
    MetricSpec("reliability_gen_contains", "generation", "the greedy answer contains target_new as whole words",
               _MIRAGE),
    MetricSpec("generalization_gen_contains", "generation", "the same on the rephrased prompts", _MIRAGE),
    MetricSpec("reliability_gen_gain", "generation", "reliability_gen's gain over the unedited model"),
    MetricSpec("generalization_gen_gain", "generation", "generalization_gen's gain over the unedited model"),
    # -- computed by the reports
    MetricSpec("score", "derived", "harmonic mean of edit success and preservation on the recorded basis",
               interval=True, curve=0),
    MetricSpec("reliability_gap", "derived", "reliability - reliability_gen: credit teacher forcing gives",
               _MIRAGE, higher_is_better=False, curve=10),
    # -- the whole model at a checkpoint
    MetricSpec("exam_accuracy", "model", "multiple-choice accuracy on the exam",
               "C-Eval evaluator / lm-evaluation-harness", interval=True, tolerance=EDIT, curve=12),
    MetricSpec("fluency", "model", "n-gram entropy of generated text", "ROME compute_n_gram_entropy",
               interval=True, tolerance=0.1, curve=11),
    MetricSpec("perplexity", "model", "perplexity of held-out text (a collapse signal)", "arXiv 2402.09656",
               higher_is_better=False, curve=13),
    MetricSpec("max_norm_ratio", "model", "largest ||W_T|| / ||W_0|| over the edited matrices (collapse)",
               higher_is_better=False, curve=14),
    # -- cost
    MetricSpec("seconds_per_edit", "cost", "editing wall time per edit so far", higher_is_better=False, curve=15),
    MetricSpec("eval_seconds", "cost", "this checkpoint's scoring wall time", higher_is_better=False, curve=16),
    MetricSpec("flops_per_edit", "cost", "FLOPs of the editor's calls per edit, counted on a seeded sample of calls",
               "torch.utils.flop_counter.FlopCounterMode", higher_is_better=False),
):
    register_metric(_spec)
