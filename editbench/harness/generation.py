"""What the model says: batched greedy decoding with stop rules, and answer matching.

Teacher-forced token accuracy gives credit for a target the model would never say on its own
("The Mirage of Model Editing", arXiv 2502.11177). Here the model answers freely: the prompt alone,
greedy decoding with a KV cache, stopped at EOS, a stop string or a token limit, and the answer is
compared with the gold one after SQuAD-style normalisation.

Two modes (`GenerationSpec.mode`):
- `generation`: the edit's own prompt as context, stop at the first "." or newline (the world's
  sentence end), at most the gold answer's token count + `margin` new tokens.
- `wild`: the Mirage paper's WILD evaluation as its code defines it (WanliYoung/Revisit-Editing-
  Evaluation, `easyeditor/evaluate/evaluate_utils.py: test_prediction_acc_real`): question-only
  context (or its QA instruction, or a chat template), 50 new tokens at most, stop strings
  ".", "\\n", "</s>", "<|endoftext|>", one trailing stop string removed, exact match after
  normalisation. An LLM judge is out of scope: `Judge` is the hook where one plugs in.
"""
from __future__ import annotations

import inspect
import re
import string
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from editbench.core import ConfigError
from editbench.harness.models import LoadedModel
from editbench.harness.scoring import cache_argument, eval_batching, length_batches

EVAL_MODES = ("teacher-forced", "generation", "wild")
WILD_CONTEXTS = ("question", "qa_inst", "chat")

# The Mirage reference's strings, byte for byte (test_prediction_acc_real).
WILD_QA_INSTRUCTION = "Please answer the question:\n\nQ: {question}\nA:"
WILD_LLAMA2_CHAT = ("<s>[INST] <<SYS>>\nYou are a helpful, respectful and honest assistant.\n<</SYS>>\n\n"
                    "{user_prompt} [/INST]</s>")
WILD_STOP_STRINGS = (".", "\n", "</s>", "<|endoftext|>")
WILD_MAX_NEW_TOKENS = 50
# The world states every fact as one sentence: its answer ends at the full stop.
SENTENCE_STOP_STRINGS = (".", "\n")


@dataclass(frozen=True)
class GenerationSpec:
    """How free answers are produced and cut. Recorded in every results file (`evaluation`)."""

    mode: str = "generation"  # 'generation' or 'wild' (see the module docstring)
    # new tokens allowed beyond the gold answer's own token count ('generation' mode); the limit
    # bounds a model that keeps talking, and is recorded beside the answer's length
    margin: int = 4
    context: str = "question"  # 'wild' only: question | qa_inst (the paper's QA instruction) | chat

    def __post_init__(self) -> None:
        if self.mode not in EVAL_MODES[1:]:
            raise ConfigError(f"evaluation mode {self.mode!r} generates no text (valid: {', '.join(EVAL_MODES[1:])})")
        if not (isinstance(self.margin, int) and 0 <= self.margin <= 256):
            raise ConfigError(f"generation margin must be an integer in 0..256, got {self.margin!r}")
        if self.context not in WILD_CONTEXTS:
            raise ConfigError(f"generation context {self.context!r} is unknown (valid: {', '.join(WILD_CONTEXTS)})")
        if self.mode == "generation" and self.context != "question":
            raise ConfigError("a generation context other than 'question' needs evaluation mode 'wild'")

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return WILD_STOP_STRINGS if self.mode == "wild" else SENTENCE_STOP_STRINGS

    def max_new_tokens(self, answer_tokens: int) -> int:
        return WILD_MAX_NEW_TOKENS if self.mode == "wild" else answer_tokens + self.margin


def parse_eval_mode(mode: str, margin: int = 4, context: str = "question") -> GenerationSpec | None:
    """None for teacher forcing alone; else the spec of the free answers scored beside it."""
    if mode not in EVAL_MODES:
        raise ConfigError(f"evaluation mode {mode!r} is unknown (valid: {', '.join(EVAL_MODES)})")
    return None if mode == "teacher-forced" else GenerationSpec(mode, margin, context)


# --------------------------------------------------------------------------- answer matching


_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation, as the Mirage reference applies it: lower case, punctuation removed,
    the articles a/an/the removed, whitespace collapsed (in that order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(gold)


def contains(prediction: str, gold: str) -> bool:
    """The normalised gold answer occurs in the normalised prediction as whole words."""
    pred, ref = normalize_answer(prediction), normalize_answer(gold)
    return bool(ref) and f" {ref} " in f" {pred} "


# A judge takes (question, gold, answer) and returns 1.0 or 0.0. editbench ships exact match; an LLM
# judge (the Mirage paper's gpt-4o-mini grader) would be another function of this shape.
Judge = Callable[[str, str, str], float]


# --------------------------------------------------------------------------- contexts and stop rules


def context_text(spec: GenerationSpec, tokenizer, question: str) -> str:
    """What the model sees before it answers."""
    if spec.context == "qa_inst":
        return WILD_QA_INSTRUCTION.format(question=question)
    if spec.context == "chat":
        if getattr(tokenizer, "chat_template", None):  # an instruct model's own template
            return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                                 add_generation_prompt=True)
        return WILD_LLAMA2_CHAT.format(user_prompt=question)  # the reference's Llama-2 template
    return question


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """The text before the first stop string ('generation' mode: the answer ends at the sentence end)."""
    ends = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[: min(ends)] if ends else text


def strip_stop_suffix(text: str, stops: Sequence[str]) -> str:
    """'wild' mode: each stop string, in order, removed once from the end when the text ends with it.

    The reference writes `gen_content.rstrip(suffix)`, which strips any trailing *characters* of the
    suffix ("Paris</s>" -> "Pari"); EasyEdit's later copy of the same code removes the suffix once,
    which is what the reference means and what this does (the golden test shows both).
    """
    for stop in stops:
        if stop and text.endswith(stop):
            text = text[: -len(stop)]
    return text


@dataclass(frozen=True)
class Answer:
    raw: str  # everything generated, decoded (special tokens kept), up to the stop
    answer: str  # what is compared with the gold answer
    new_tokens: int  # tokens generated
    limit: int  # the most new tokens allowed


def _finished(text: str, stops: Sequence[str], wild: bool) -> bool:
    # the reference's stop criterion fires when the text ends with a stop string; 'generation' stops as
    # soon as one occurs anywhere (a token such as ".\n" or ". The" ends the sentence too)
    return any(text.endswith(s) for s in stops) if wild else any(s in text for s in stops)


def _accepts(model, name: str) -> bool:
    return name in inspect.signature(model.forward).parameters


@torch.inference_mode()
def greedy_answers(lm: LoadedModel, questions: Sequence[str], answer_tokens: Sequence[int], spec: GenerationSpec,
                   batch_size: int | None = None) -> list[Answer]:
    """Each question answered by greedy decoding: left-padded batches (longest first), one prefill and
    then one token per step with a KV cache; a row stops at EOS, at a stop string or at its own token
    limit (`spec.max_new_tokens(answer_tokens[i])`). Every row is cut at its own limit whatever the
    batch, so the answers do not depend on the batch size (tested)."""
    tok = lm.tokenizer
    contexts = [tok(context_text(spec, tok, q)).input_ids for q in questions] if questions else []
    limits = [spec.max_new_tokens(n) for n in answer_tokens]
    order = sorted(range(len(contexts)), key=lambda i: -len(contexts[i]))
    answers: list[Answer | None] = [None] * len(contexts)
    for chunk in length_batches(order, [len(c) + limits[i] for i, c in enumerate(contexts)],
                                *eval_batching(lm, batch_size)):
        new = _decode_batch(lm, [contexts[i] for i in chunk], [limits[i] for i in chunk], spec)
        for i, ids in zip(chunk, new):
            answers[i] = _answer(tok, ids, limits[i], spec)
    return answers  # type: ignore[return-value]


def _answer(tok, ids: list[int], limit: int, spec: GenerationSpec) -> Answer:
    raw = tok.decode(ids) if ids else ""
    eos = getattr(tok, "eos_token", None)
    if spec.mode == "wild":
        # the model's own end-of-sequence text too (an instruct model's '<|im_end|>' is none of the
        # reference's suffixes, and would fail every match), as EasyEdit's copy of this code does
        text = strip_stop_suffix(raw, (*spec.stop_strings, *([eos] if eos else [])))
    else:  # the answer ends at the sentence end; the end-of-sequence token is not part of it
        text = cut_at_stop(raw, spec.stop_strings)
        text = text.split(eos)[0] if eos else text
    return Answer(raw=raw, answer=text.strip(), new_tokens=len(ids), limit=limit)


def _decode_batch(lm: LoadedModel, contexts: list[list[int]], limits: list[int], spec: GenerationSpec) -> list[list[int]]:
    """Greedy new tokens of each row (without padding), each row cut at its stop and its own limit."""
    model, tok, device = lm.model, lm.tokenizer, lm.device
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    eos = getattr(tok, "eos_token_id", None)
    width = max(map(len, contexts))
    ids = torch.full((len(contexts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(contexts), width), dtype=torch.long)
    for r, c in enumerate(contexts):
        ids[r, width - len(c):] = torch.tensor(c, dtype=torch.long)
        mask[r, width - len(c):] = 1
    ids, mask = ids.to(device), mask.to(device)
    cache_name = cache_argument(model) if _accepts(model, "use_cache") else None
    positional = _accepts(model, "position_ids")
    # only the last position's logits are needed: the prefill's other positions skip the output layer
    last_only = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}
    new: list[list[int]] = [[] for _ in contexts]
    done = [False] * len(contexts)
    step_ids, past, seq = ids, None, ids
    for _ in range(max(limits)):
        kwargs = {"attention_mask": mask, **last_only}
        if positional:  # left padding: each row's positions count from its first real token
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            kwargs["position_ids"] = positions[:, -step_ids.shape[1]:]
        if cache_name is not None:
            out = model(input_ids=step_ids, use_cache=True, **{cache_name: past}, **kwargs)
            past = getattr(out, "cache", None) or out.past_key_values
        else:  # a model without a cache (the tests' hand-made ones) reruns the whole sequence
            out = model(input_ids=seq, **kwargs)
        nxt = out.logits[:, -1].argmax(-1)
        for r, token in enumerate(nxt.tolist()):
            if done[r]:
                continue
            new[r].append(token)
            text = tok.decode(new[r])
            done[r] = (token == eos or len(new[r]) >= limits[r]
                       or _finished(text, spec.stop_strings, spec.mode == "wild"))
        if all(done):
            break
        step_ids = nxt.unsqueeze(-1)
        seq = torch.cat([seq, step_ids], 1)
        mask = torch.cat([mask, torch.ones_like(step_ids)], 1)
    return new
