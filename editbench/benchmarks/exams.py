"""General-capability exams: C-Eval and MMLU directories (and single C-Eval-layout CSV files).

C-Eval: `<dir>/{dev,val}/<subject>_<split>.csv` with header `id,question,A,B,C,D,answer[,explanation]`;
MMLU: the same folders, CSVs without a header (question,A,B,C,D,answer). Both need
`<dir>/subject_mapping.json` ({subject: {"name", "category"}} or C-Eval's {subject: [en, zh, category]}).
The scored split is `exam_split` (default: MMLU `test` when the folder has it, as published MMLU
numbers and lm-evaluation-harness use; C-Eval `val`, whose test answers are not public); `dev`
gives the k-shot examples of letter-mode prompts. Prompt formats (pinned byte for byte by tests):
- MMLU: lm-evaluation-harness's `mmlu` task: description "The following are multiple choice
  questions (with answers) about {subject}.\n\n", each question `question.strip()` then
  "\nA. ..\nB. ..\nC. ..\nD. ..\nAnswer:", shots answered with " X" and joined by "\n\n".
- C-Eval: C-Eval's own evaluator (ceval/ceval-exam): "以下是中国关于{name}考试的单项选择题，请选出其中的
  正确答案。\n\n", the same question block with "\n答案：" and the letter right after it.
"""
from __future__ import annotations

import csv
import random
from dataclasses import dataclass, replace
from pathlib import Path

from editbench.core import ConfigError, DataError, ExamQuestion, setting
from editbench.harness.results import read_json

CEVAL_COLUMNS = ("id", "question", "A", "B", "C", "D", "answer")
MMLU_COLUMNS = ("question", "A", "B", "C", "D", "answer")
EXAM_MODES = ("letter", "cloze")


@dataclass(frozen=True)
class ExamFormat:
    description: str  # one line, for `editbench benchmarks`
    header: bool  # CSV has a header row
    default_mode: str
    default_splits: tuple[str, ...]  # the first of these the folder has is scored
    instruction: str  # formatted with the subject's display name
    answer_cue: str
    letter_sep: str


FORMATS = {
    # C-Eval's official prompt (ceval/ceval-exam evaluator), answer letter right after "答案："
    "ceval": ExamFormat(f"C-Eval: 52 subjects, val scored, dev k-shot, letter scoring, per-category accuracy "
                        f"({setting('exam_dir')})", True, "letter", ("val",),
                        "以下是中国关于{name}考试的单项选择题，请选出其中的正确答案。\n\n", "答案：", ""),
    # MMLU's reference prompt (hendrycks/test), " A" after "Answer:"
    "mmlu": ExamFormat(f"MMLU: 57 subjects, header-less CSVs, test scored (val when the folder has no test/; "
                       f"{setting('exam_split')}), dev k-shot, letter scoring ({setting('exam_dir')})", False, "letter",
                       ("test", "val"), "The following are multiple choice questions (with answers) about {name}.\n\n",
                       "Answer:", " "),
}


@dataclass
class Exam:
    name: str
    mode: str
    questions: list[ExamQuestion]
    shots: int = 0
    subjects: int = 0
    split: str = ""


def load_exam_csv(path: Path, subject: str = "", category: str = "", header: bool = True) -> list[ExamQuestion]:
    """One exam CSV; every problem is reported with the file, row and field."""
    path = Path(path)
    columns = CEVAL_COLUMNS if header else MMLU_COLUMNS
    subject = subject or path.stem
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            if header:
                reader = csv.DictReader(fh)
                head = tuple(reader.fieldnames or ())
                missing = [c for c in CEVAL_COLUMNS if c not in head]
                if missing:
                    raise DataError(f"{path}: header lacks column(s) {', '.join(missing)} (has: {', '.join(head)})")
                rows = ((n, row) for n, row in enumerate(reader, start=2))
            else:
                rows = ((n, dict(zip(columns, values))) for n, values in enumerate(csv.reader(fh), start=1))
            questions = []
            for row_no, row in rows:
                empty = [c for c in columns if row.get(c) is None]
                if empty:
                    raise DataError(f"{path}: row {row_no}: field '{empty[0]}' is missing")
                answer = row["answer"].strip()
                if answer not in ("A", "B", "C", "D"):
                    raise DataError(f"{path}: row {row_no}: field 'answer' must be one of A, B, C, D, got {answer!r}")
                qid = f"{subject}-{row['id'] if header else row_no - 1}"
                try:
                    questions.append(ExamQuestion(
                        qid=qid, question=row["question"], options=(row["A"], row["B"], row["C"], row["D"]),
                        answer=answer, subject=subject, category=category,
                    ))
                except DataError as exc:  # the question names itself by id; the reader needs file and row
                    raise DataError(f"{path}: row {row_no}: {str(exc).removeprefix(ExamQuestion.where(qid) + ': ')}") \
                        from None
    except FileNotFoundError:
        raise DataError(f"{path}: no such exam file") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    return questions


def load_ceval_csv(path: Path, subject: str = "", category: str = "") -> list[ExamQuestion]:
    return load_exam_csv(path, subject, category, header=True)


def _mapping(directory: Path) -> dict[str, tuple[str, str]]:
    path = directory / "subject_mapping.json"
    raw = read_json(path, "no such file (the subject -> category mapping is required)")
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{path}: expected a non-empty object of subject -> category")
    out = {}
    for subject, value in raw.items():
        if isinstance(value, dict) and isinstance(value.get("category"), str):
            out[subject] = (value.get("name") or subject.replace("_", " "), value["category"])
        elif isinstance(value, list) and len(value) == 3:  # C-Eval's own [english, chinese, category]
            out[subject] = (value[1], value[2])
        else:
            raise DataError(f"{path}: subject {subject!r}: field 'category' is missing")
    return out


def _split_file(directory: Path, subject: str, split: str) -> Path:
    nested = directory / split / f"{subject}_{split}.csv"
    return nested if nested.exists() else directory / f"{subject}_{split}.csv"


def letter_prompt(fmt: ExamFormat, name: str, shots: list[ExamQuestion], question: ExamQuestion) -> str:
    def block(q: ExamQuestion, with_answer: bool) -> str:
        options = "".join(f"\n{letter}. {text}" for letter, text in zip("ABCD", q.options))
        return f"{q.question.strip()}{options}\n{fmt.answer_cue}" + (f"{fmt.letter_sep}{q.answer}\n\n" if with_answer else "")

    return fmt.instruction.format(name=name) + "".join(block(s, True) for s in shots) + block(question, False)


def load_exam(name: str, directory: Path, shots: int = 5, limit_per_subject: int | None = None, seed: int = 0,
              mode: str | None = None, split: str | None = None) -> Exam:
    """A C-Eval or MMLU directory: every subject of the mapping, `split` scored (None: the exam's
    default, see the module doc), `dev` as k-shot examples."""
    if name not in FORMATS:
        raise ConfigError(f"unknown exam '{name}' (valid: world, {', '.join(FORMATS)})")
    fmt = FORMATS[name]
    mode = mode or fmt.default_mode
    if mode not in EXAM_MODES:
        raise ConfigError(f"{setting('exam_mode')} {mode!r} (valid: {', '.join(EXAM_MODES)})")
    if shots < 0 or (limit_per_subject is not None and limit_per_subject < 1):
        raise ConfigError(f"{setting('exam_shots')} must be >= 0 and {setting('exam_limit')} >= 1")
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"exam directory '{directory}' does not exist")
    if split is None:
        split = next((s for s in fmt.default_splits if (directory / s).is_dir()), fmt.default_splits[-1])
    if split == "dev":
        raise ConfigError(f"{setting('exam_split')} dev: dev holds the k-shot examples and cannot be scored")
    if not (directory / split).is_dir() and not list(directory.glob(f"*_{split}.csv")):
        raise ConfigError(f"exam directory '{directory}' has no '{split}' split")
    questions = []
    mapping = _mapping(directory)
    for subject, (display, category) in sorted(mapping.items()):
        scored = load_exam_csv(_split_file(directory, subject, split), subject, category, fmt.header)
        if limit_per_subject is not None and len(scored) > limit_per_subject:
            picked = sorted(random.Random(f"{seed}-{subject}").sample(range(len(scored)), limit_per_subject))
            scored = [scored[i] for i in picked]
        examples = []
        if shots and mode == "letter":
            examples = load_exam_csv(_split_file(directory, subject, "dev"), subject, category, fmt.header)[:shots]
        for q in scored:
            prompt = letter_prompt(fmt, display, examples, q) if mode == "letter" else ""
            questions.append(replace(q, prompt=prompt, letter_sep=fmt.letter_sep))
    if not questions:
        raise DataError(f"exam directory '{directory}': its '{split}' split holds no questions for the "
                        f"{len(mapping)} subject(s) of subject_mapping.json")
    return Exam(name=name, mode=mode, questions=questions, shots=shots if mode == "letter" else 0,
                subjects=len(mapping), split=split)
