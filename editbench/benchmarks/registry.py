"""Named benchmarks (edit datasets) and exams, and what a run draws from them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from editbench.core import ConfigError, EditRequest, ExamQuestion
from editbench.benchmarks import world as world_gen
from editbench.benchmarks.exams import load_ceval_csv
from editbench.benchmarks.world_model import load_world

BENCHMARKS = {
    "world": "synthetic knowledge world: counterfactual edits of facts the world model learned (embedded default)",
}
EXAMS = {
    "world": "multiple choice over the world's never-edited facts (C-Eval CSV layout, cloze scoring)",
}


@dataclass
class BenchmarkData:
    name: str
    requests: list[EditRequest]
    fluency_prompts: list[str]
    fluency_tokens: int
    exam_name: str
    exam: list[ExamQuestion]


def check_names(benchmark: str, exam: str | None) -> None:
    if benchmark not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark '{benchmark}' (valid: {', '.join(BENCHMARKS)})")
    if exam is not None and exam not in EXAMS:
        raise ConfigError(f"unknown exam '{exam}' (valid: {', '.join(EXAMS)})")


def world_benchmark(world_path: Path, n_edits: int, seed: int) -> BenchmarkData:
    world = load_world(world_path)
    requests = world_gen.make_requests(world, n_edits, seed)
    return BenchmarkData(
        name="world", requests=requests, fluency_prompts=world_gen.fluency_prompts(requests), fluency_tokens=24,
        exam_name="world", exam=load_ceval_csv(Path(world_path) / "exam" / "world_val.csv", subject="world"),
    )
