"""What a run measures besides the edits, and the identities that make two runs the same run: the
suite (fluency prompts, exam, evaluation mode, held-out text, prompt format) and the edits in order."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Sequence

from editbench.core import EditRequest, ExamQuestion
from editbench.harness.generation import GenerationSpec


@dataclass
class EvalSuite:
    """What is measured besides the edits themselves: fluency prompts and a general-capability exam."""

    fluency_prompts: list[str]
    fluency_tokens: int  # total length of each scored text, prompt included (ROME: 100)
    exam_name: str
    exam: list[ExamQuestion]
    exam_mode: str = "cloze"  # 'letter' (next-token logits of A-D) or 'cloze' (option log-likelihood)
    exam_shots: int = 0
    # free answers scored beside teacher forcing (None: teacher forcing alone, no generation metrics)
    generation: GenerationSpec | None = None
    # held-out text (never trained on, never edited) whose perplexity is a collapse signal; none: skipped
    perplexity_texts: list[str] = dataclasses.field(default_factory=list)
    # how every prompt was put to the model ('bare' or 'chat': harness/prompts.py); the edits and the
    # fluency prompts arrive rendered, so this records what was done, it does not do it
    prompt_format: str = "bare"

    def evaluation(self) -> dict:
        """The evaluation mode as results record it; its score basis is what reports rank by."""
        spec = self.generation
        if spec is None:
            return {"mode": "teacher-forced", "score_basis": "token", "prompt_format": self.prompt_format}
        return {**dataclasses.asdict(spec), "score_basis": "generation", "stop_strings": list(spec.stop_strings),
                "max_new_tokens": "50" if spec.mode == "wild" else f"answer tokens + {spec.margin}",
                "prompt_format": self.prompt_format}


def requests_sha256(requests: Sequence[EditRequest]) -> str:
    """Identity of the edits in their order (the file they came from is left out: data may move)."""
    rows = [{k: v for k, v in dataclasses.asdict(r).items()
             if k != "source" and not (k == "truncated_tokens" and v == 0)} for r in requests]
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def suite_sha256(suite: EvalSuite) -> str:
    """Identity of what is measured besides the edits: fluency prompts and length, exam and its prompts."""
    exam = [dataclasses.asdict(q) for q in suite.exam]
    blob = {"fluency": suite.fluency_prompts, "tokens": suite.fluency_tokens, "exam": suite.exam_name,
            "questions": exam, "mode": suite.exam_mode, "shots": suite.exam_shots}
    if suite.generation is not None:  # teacher-forced suites keep the identity they had before generation
        blob["generation"] = dataclasses.asdict(suite.generation)
    if suite.perplexity_texts:  # likewise suites without held-out text
        blob["perplexity_texts"] = suite.perplexity_texts
    if suite.prompt_format != "bare":  # likewise bare prompts
        blob["prompt_format"] = suite.prompt_format
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()
