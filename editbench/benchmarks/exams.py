"""General-capability exams in C-Eval CSV layout (`id,question,A,B,C,D,answer`)."""
from __future__ import annotations

import csv
from pathlib import Path

from editbench.core import DataError, ExamQuestion

CEVAL_COLUMNS = ("id", "question", "A", "B", "C", "D", "answer")


def load_ceval_csv(path: Path, subject: str = "", category: str = "") -> list[ExamQuestion]:
    """One C-Eval-layout CSV file; every problem is reported with the file, row and field."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = tuple(reader.fieldnames or ())
            missing = [c for c in CEVAL_COLUMNS if c not in header]
            if missing:
                raise DataError(f"{path}: header lacks column(s) {', '.join(missing)} (has: {', '.join(header)})")
            questions = []
            for row_no, row in enumerate(reader, start=2):
                empty = [c for c in CEVAL_COLUMNS if row.get(c) is None]
                if empty:
                    raise DataError(f"{path}: row {row_no}: field '{empty[0]}' is missing")
                if row["answer"].strip() not in ("A", "B", "C", "D"):
                    raise DataError(f"{path}: row {row_no}: field 'answer' must be one of A, B, C, D, got {row['answer']!r}")
                questions.append(
                    ExamQuestion(
                        qid=f"{subject or path.stem}-{row['id']}", question=row["question"],
                        options=(row["A"], row["B"], row["C"], row["D"]), answer=row["answer"].strip(),
                        subject=subject or path.stem, category=category,
                    )
                )
    except FileNotFoundError:
        raise DataError(f"{path}: no such exam file") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    return questions
