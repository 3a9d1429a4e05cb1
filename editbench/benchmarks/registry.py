"""Named benchmarks (edit datasets) and exams, and what a run draws from them."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from editbench.benchmarks import world as world_gen
from editbench.benchmarks.editdata import DATASETS, load_edits
from editbench.benchmarks.exams import FORMATS, Exam, load_ceval_csv, load_exam
from editbench.benchmarks.world_model import load_world
from editbench.core import ConfigError, EditRequest, ExamQuestion, setting

WORLD_BENCHMARK = "synthetic knowledge world: counterfactual edits of facts the world model learned (embedded default)"
WORLD_EXAM = "multiple choice over the world's never-edited facts (C-Eval CSV layout, cloze scoring)"


def benchmarks() -> dict[str, str]:
    """Every benchmark by name, with its line: the world, then the registered datasets (editdata)."""
    return {"world": WORLD_BENCHMARK, **{n: DATASETS.get(n).description for n in DATASETS.names()}}


def exams() -> dict[str, str]:
    """Every exam by name, with its line: the world's, then the exam formats (exams.FORMATS)."""
    return {"world": WORLD_EXAM, **{n: f.description for n, f in FORMATS.items()}}

# Fluency texts are this many tokens, prompt included: ROME's generate_fast(max_out_len=100). It fits
# the world model's 256-token context as it is, so the world uses it too.
FLUENCY_TOKENS = 100


@dataclass
class BenchmarkData:
    name: str
    requests: list[EditRequest]
    fluency_prompts: list[str]
    fluency_tokens: int
    exam_name: str
    exam: list[ExamQuestion]
    exam_mode: str = "cloze"
    exam_shots: int = 0
    source: str = ""
    total_records: int = 0
    skipped: list[str] = field(default_factory=list)
    heldout_texts: list[str] = field(default_factory=list)  # perplexity's text: never trained on, never edited
    # case ids of drawn edits the unedited model already made, left out (world: drawn again instead)
    already_answered: list[str] = field(default_factory=list)


Answered = Callable[[list[EditRequest]], list[bool]]  # the unedited model's verdict per request


def check_names(benchmark: str, exam: str | None) -> None:
    if benchmark not in benchmarks():
        raise ConfigError(f"unknown benchmark '{benchmark}' (valid: {', '.join(benchmarks())})")
    if exam is not None and exam not in exams():
        raise ConfigError(f"unknown exam '{exam}' (valid: {', '.join(exams())})")


def world_exam(world_path: Path) -> Exam:
    questions = load_ceval_csv(Path(world_path) / "exam" / "world_val.csv", subject="world", category="world")
    return Exam(name="world", mode="cloze", questions=questions, subjects=1)


def world_pool_size(world_path: Path, split: str = "edit") -> int:
    """How many facts the world's edit (or dev) pool holds: the most edits a world run can draw."""
    return len(load_world(world_path).facts_of(split))


def world_benchmark(world_path: Path, n_edits: int, seed: int, split: str = "edit",
                    already_answered: Answered | None = None) -> BenchmarkData:
    """The world's edits: split 'edit' is the leaderboard's pool, 'dev' the disjoint tuning pool. With
    `already_answered`, an edit the unedited model already makes is drawn again (make_requests)."""
    world = load_world(world_path)
    left_out: list[str] = []

    def answered(judge: Answered) -> Answered:
        def verdicts_noted(requests: list[EditRequest]) -> list[bool]:
            verdicts = judge(requests)
            left_out.extend(r.case_id for r, known in zip(requests, verdicts) if known)
            return verdicts

        return verdicts_noted

    requests = world_gen.make_requests(world, n_edits, seed, split,
                                       answered(already_answered) if already_answered else None)
    exam = world_exam(world_path)
    return BenchmarkData(
        name="world", requests=requests, fluency_prompts=world_gen.fluency_prompts(requests),
        fluency_tokens=FLUENCY_TOKENS,
        exam_name="world", exam=exam.questions, source=f"world:{world.config.name}", total_records=len(requests),
        heldout_texts=world_gen.heldout_text(world), already_answered=left_out,
    )


def drop_answered(data: BenchmarkData, wanted: int | None, already_answered: Answered, chunk: int = 64) -> None:
    """Leave out of a dataset's edits those the unedited model already makes, in file order, checking
    only as many as the first `wanted` clean edits need (every edit when None)."""
    kept: list[EditRequest] = []
    checked = 0
    while checked < len(data.requests) and (wanted is None or len(kept) < wanted):
        part = data.requests[checked:checked + (chunk if wanted is None else wanted - len(kept))]
        for request, known in zip(part, already_answered(part)):
            if known:
                data.already_answered.append(request.case_id)
            else:
                kept.append(request)
        checked += len(part)
    data.requests = kept + data.requests[checked:]


def dataset_benchmark(name: str, data: str, limit: int | None, shuffle: bool, seed: int,
                      on_bad_record: str, split: str = "all") -> BenchmarkData:
    loaded = load_edits(name, data, limit=limit, shuffle=shuffle, seed=seed, on_bad_record=on_bad_record, split=split)
    # CounterFact's original layout brings generation prompts; otherwise the model continues edit prompts
    fluency = loaded.fluency_prompts or [r.prompt for r in loaded.requests[:8]]
    return BenchmarkData(name=name, requests=loaded.requests, fluency_prompts=fluency, fluency_tokens=FLUENCY_TOKENS,
                         exam_name="", exam=[], source=loaded.source, total_records=loaded.total_records,
                         skipped=loaded.skipped)


def requests_benchmark(requests: list[EditRequest], world_path: Path | None) -> BenchmarkData:
    """Edits handed in by a caller (the Python API): fluency and held-out texts as for the world's
    edits on a world model, as for a dataset's otherwise."""
    world = load_world(world_path) if world_path is not None else None
    fluency = world_gen.fluency_prompts(requests) if world else [r.prompt for r in requests[:8]]
    return BenchmarkData(name="requests", requests=list(requests), fluency_prompts=fluency,
                         fluency_tokens=FLUENCY_TOKENS, exam_name="", exam=[], source="python",
                         total_records=len(requests), heldout_texts=world_gen.heldout_text(world) if world else [])


HELDOUT_DOCUMENTS = 200  # a corpus given as held-out text: this many of its documents (seeded)


def heldout_texts(spec: Path) -> list[str]:
    """Held-out texts for perplexity: a text file's non-empty lines, or a seeded sample of a corpus
    (`data:PATH#TEMPLATE`, as key statistics name theirs)."""
    from editbench.harness.corpus import is_corpus_spec, load_corpus

    if is_corpus_spec(str(spec)):
        return [t for t in load_corpus(str(spec), None, HELDOUT_DOCUMENTS) if t.strip()]
    return text_lines(spec)


def text_lines(path: Path) -> list[str]:
    """The non-empty lines of a UTF-8 text file (held-out text for perplexity)."""
    try:
        lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{setting('perplexity_text')} {path}: unreadable ({type(exc).__name__})") from None
    if not lines:
        raise ConfigError(f"{setting('perplexity_text')} {path}: holds no text")
    return lines


def with_exam(data: BenchmarkData, exam: Exam | None) -> BenchmarkData:
    if exam is None:
        data.exam_name, data.exam, data.exam_mode, data.exam_shots = "", [], "cloze", 0
    else:
        data.exam_name, data.exam, data.exam_mode, data.exam_shots = exam.name, exam.questions, exam.mode, exam.shots
    return data


def exam_for_run(name: str | None, exam_dir: Path | None, world_path: Path | None, shots: int,
                 limit: int | None, seed: int, mode: str | None, split: str | None = None) -> Exam | None:
    if name is None:
        return None
    if name == "world":
        if world_path is None:
            raise ConfigError("exam 'world' needs the world (it is built with the world model)")
        exam = world_exam(world_path)
        if mode not in (None, "cloze"):
            raise ConfigError("exam 'world' is scored in cloze mode only (its questions have no letter prompts)")
        return exam
    if exam_dir is None:
        raise ConfigError(f"exam '{name}' needs {setting('exam_dir')} (the folder with dev/ val/ and subject_mapping.json)")
    return load_exam(name, exam_dir, shots=shots, limit_per_subject=limit, seed=seed, mode=mode, split=split)
