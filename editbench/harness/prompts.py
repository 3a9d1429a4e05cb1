"""How an edit's prompts are put to the model: as they are ('bare') or through its chat template.

An instruct model asked a bare question may answer nothing at all (SmolLM2-135M-Instruct says
`<|im_end|>`), and a fact written on the bare question does not reach the same question asked
through the chat template (measured: docs/real-model.md). So the format is one axis of a run: every
prompt of every edit (the edit prompt, its paraphrases, locality and portability prompts) and the
fluency prompts are rendered once, before any editor or metric sees them. Editing and scoring then
read the same text, as EasyEdit's `use_chat_template` does for the editors that have it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

from editbench.core import ConfigError, EditRequest, setting

PROMPT_FORMATS = ("bare", "chat")
ANSWER_ENDS = ("none", "eos")


@dataclass(frozen=True)
class PromptFormat:
    """'bare': the text as the benchmark writes it; 'chat': one user turn of the tokenizer's own chat
    template, with the generation prompt (the assistant's turn) opened after it.

    `answer_end` 'eos': the edit's targets (target_new, and target_true beside it) end with the
    tokenizer's end-of-sequence token (an instruct model's end of turn), so an editor writes a complete
    answer, not the first words of one. A free answer is cut at that token and compared with the target
    without it (`metrics.spoken`); teacher-forced scores include it."""

    name: str = "bare"
    answer_end: str = "none"

    def __post_init__(self) -> None:
        if self.name not in PROMPT_FORMATS:
            raise ConfigError(f"{setting('prompt_format')} {self.name!r} is unknown (valid: {', '.join(PROMPT_FORMATS)})")
        if self.answer_end not in ANSWER_ENDS:
            raise ConfigError(f"{setting('answer_end')} {self.answer_end!r} is unknown (valid: {', '.join(ANSWER_ENDS)})")

    @property
    def label(self) -> str:
        return self.name + ("" if self.answer_end == "none" else f", answers end with {self.answer_end}")

    def check(self, tokenizer, model_name: str) -> None:
        if self.name == "chat" and not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"{setting('prompt_format')} chat: model {model_name!r} has no chat template; "
                              "use bare")
        if self.answer_end == "eos" and not getattr(tokenizer, "eos_token", None):
            raise ConfigError(f"{setting('answer_end')} eos: model {model_name!r} has no end-of-sequence token")

    def render(self, tokenizer, text: str) -> str:
        if self.name == "bare":
            return text
        return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)

    def request(self, tokenizer, request: EditRequest) -> EditRequest:
        """The edit with every prompt rendered and its targets ended (other answers, subject and groups as
        they were)."""
        if self.answer_end == "eos":
            end = tokenizer.eos_token
            request = dataclasses.replace(
                request, target_new=request.target_new + end,
                target_true=None if request.target_true is None else request.target_true + end)
        if self.name == "bare":
            return request
        show = lambda text: self.render(tokenizer, text)  # noqa: E731
        return dataclasses.replace(
            request, prompt=show(request.prompt), rephrase_prompts=tuple(map(show, request.rephrase_prompts)),
            locality=tuple((show(q), a) for q, a in request.locality),
            portability=tuple((show(q), a) for q, a in request.portability))

    def requests(self, tokenizer, requests: Sequence[EditRequest]) -> list[EditRequest]:
        return [self.request(tokenizer, r) for r in requests]
