"""A retrieval baseline (`retrieve`): the edited facts kept as text, and for every question the model
is scored on, the `top_k` most similar facts put before it, as the retrieval baselines of WikiBigEdit
(arXiv 2503.05683) do. No weight and no module changes: it is a context patch.

Layouts (`template`): `ike` is IKE's as EasyEdit scores it (`evaluate.compute_icl_edit_quality`): the
most similar fact as the edit's own, "New Fact: {fact}\nPrompt: {question}", after the others as IKE's
stored demonstrations (`models/ike/util.encode_ike_facts`: "New Fact: {fact}\nPrompt: {fact}\n\n"); a
golden test holds both to EasyEdit's code. `copies`: every fact as such a demonstration and the bare
question after (this module's `ike` before 2026-12-01); `plain`: each fact on a line of its own.

Retriever: cosine similarity of the model's own hidden states (one block's output, mean-pooled over
the text's tokens). IKE retrieves with a sentence-transformers model and the WikiBigEdit baselines
with BM25 or a dense encoder. The model's own states were chosen because they need no second model
to download and no tokenisation rules of their own, and work the same offline for the synthetic
world and a 7B; a lexical retriever (rank_bm25) would be the natural second option. When retrieval picks the
wrong fact for a locality prompt, locality pays: a measurement, not a bug. The facts put before each
scored question are recorded per edit (`retrieved` in edits.jsonl).

The context holds at most `context_share` of the model's window: facts ranked lower are dropped
until it fits, so a long memory never pushes a question past the window.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from editbench.core import (
    ContextAdaptor,
    ContextPatch,
    Editor,
    EditorConfig,
    check_range,
    register_adaptor,
    register_editor,
    tensors_to_texts,
    texts_to_tensors,
)
from editbench.harness.arch import get_module, layer_path, num_layers
from editbench.harness.hooks import capture
from editbench.harness.scoring import pad_right
from editbench.harness.search import Choice, Int, Layer, SearchSpace

IKE_DEMONSTRATION = "New Fact: {fact}\nPrompt: {fact}\n\n"  # encode_ike_facts' copy sentence


def copies_layout(facts: Sequence[str], question: str) -> str:
    return "".join(IKE_DEMONSTRATION.format(fact=f) for f in reversed(facts)) + question


def ike_layout(facts: Sequence[str], question: str) -> str:
    """IKE: the most similar fact as the edit's own, the rest as demonstrations before it."""
    return copies_layout(facts[1:], f"New Fact: {facts[0]}\nPrompt: {question}") if facts else question


def plain_layout(facts: Sequence[str], question: str) -> str:
    return "".join(f"{f}\n" for f in reversed(facts)) + question


# how the retrieved facts (most similar first) and the question are written; the most similar ends
# next to the question in every layout
TEMPLATES = {"ike": ike_layout, "copies": copies_layout, "plain": plain_layout}
ANSWER_ROOM = 32


@dataclass(frozen=True)
class RetrieveConfig(EditorConfig):
    top_k: int = 4  # facts put before each question, most similar nearest the question
    embed_layer: int = 1  # block whose output, mean-pooled over the tokens, embeds facts and questions
    template: str = "ike"  # TEMPLATES key
    context_share: float = 0.5  # the most of the model's context window the facts may take

    def check(self) -> None:
        check_range(self, "top_k", self.top_k >= 1, ">= 1")
        check_range(self, "embed_layer", self.embed_layer >= 0, ">= 0")
        check_range(self, "template", self.template in TEMPLATES, " or ".join(TEMPLATES))
        check_range(self, "context_share", 0 < self.context_share < 1, "between 0 and 1")


@torch.no_grad()
def embed(lm, texts: Sequence[str], layer: int, batch_size: int = 64) -> torch.Tensor:
    """Unit vectors [n, d]: block `layer`'s output, mean-pooled over each text's tokens (padding left out)."""
    out = []
    for start in range(0, len(texts), batch_size):
        seqs = [lm.tokenizer(t).input_ids for t in texts[start:start + batch_size]]
        ids, mask = pad_right(seqs, lm.tokenizer.pad_token_id, lm.device)
        # a hook of our own (removed on exit): output_hidden_states leaves transformers' recorders installed
        with capture(get_module(lm.model, layer_path(lm.model, layer))) as seen:
            lm.model(input_ids=ids, attention_mask=mask)
        hidden = seen.output
        weights = mask[..., None].to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1)
        out.append(torch.nn.functional.normalize(pooled.float(), dim=-1))
    return torch.cat(out) if out else torch.empty(0, 0)


def window(lm) -> int:
    config = lm.model.config
    return int(getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 1024)


@register_adaptor("retrieval")
class RetrievalContext(ContextAdaptor):
    """Tensors: `facts_utf8`, `facts_ends` (the facts' text), `embeddings` [n, d]. Settings: top_k,
    template, embed_layer, budget_tokens."""

    def __init__(self, settings, tensors) -> None:
        super().__init__(settings, tensors)
        self.facts = tensors_to_texts(tensors["facts_utf8"], tensors["facts_ends"])

    def contexts(self, lm, questions: Sequence[str]) -> list[str]:
        if not self.facts:
            return list(questions)
        sims = embed(lm, questions, self.settings["embed_layer"]) @ self.tensors["embeddings"].T.to(lm.device)
        ranked = sims.topk(min(self.settings["top_k"], len(self.facts)), dim=1).indices.tolist()
        template = TEMPLATES[self.settings["template"]]
        shown = []
        for question, order in zip(questions, ranked):
            chosen = [self.facts[i] for i in order]
            # room for the question and an answer (ANSWER_ROOM tokens) inside the window, whatever the budget
            room = window(lm) - len(lm.tokenizer(question).input_ids) - ANSWER_ROOM
            budget = min(self.settings["budget_tokens"], room)
            while chosen and len(lm.tokenizer(template(chosen, "")).input_ids) > budget:
                chosen.pop()  # the least similar goes first
            self.shown[question] = chosen
            shown.append(template(chosen, question))
        return shown


RETRIEVE_SPACE = SearchSpace("IKE (EasyEdit hparams/IKE) demonstrations; WikiBigEdit retrieval baselines", (
    Int("top_k", 4, "facts per question (IKE puts k = 32 demonstrations; a 256-token world fits few)",
        low=1, high=16, log=True),
    Layer("embed_layer", 0.5, "retriever: the model's own states, a middle block"),
    Choice("template", "ike", "IKE's layout, its demonstrations only, or the bare facts",
           options=tuple(TEMPLATES)),
))


@register_editor("retrieve")
class Retrieve(Editor[RetrieveConfig]):
    """Retrieval baseline: the edited facts as text, the most similar put before each question."""

    config_class = RetrieveConfig
    search_space = RETRIEVE_SPACE
    intervention = ContextPatch.kind

    def check_model(self, lm) -> None:
        n = num_layers(lm.model)
        check_range(self.config, "embed_layer", self.config.embed_layer < n, f"< {n}, the model's blocks")

    def reset_state(self) -> None:
        self.facts: list[str] = []
        self.embeddings: torch.Tensor | None = None

    def state_dict(self) -> dict[str, torch.Tensor]:
        if not self.facts:
            return {}
        data, ends = texts_to_tensors(self.facts)
        embeddings = self.embeddings if self.embeddings is not None else torch.empty(0, 0)
        return {"memory/facts_utf8": data, "memory/facts_ends": ends, "memory/embeddings": embeddings}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.reset_state()
        if state:
            self.facts = tensors_to_texts(state["memory/facts_utf8"], state["memory/facts_ends"])
            self.embeddings = state["memory/embeddings"]

    def edit(self, lm, requests, cache=None) -> ContextPatch:
        cfg: RetrieveConfig = self.config
        new = [f"{r.prompt} {r.target_new}" for r in requests]  # IKE's new_fact: prompt + ' ' + target
        vectors = embed(lm, new, cfg.embed_layer)
        self.facts += new
        self.embeddings = vectors if self.embeddings is None else torch.cat([self.embeddings, vectors])
        data, ends = texts_to_tensors(self.facts)
        settings = {"top_k": cfg.top_k, "template": cfg.template, "embed_layer": cfg.embed_layer,
                    "budget_tokens": int(cfg.context_share * window(lm))}
        return ContextPatch(adaptor=RetrievalContext.kind, settings=settings,
                            tensors={"facts_utf8": data, "facts_ends": ends, "embeddings": self.embeddings.clone()},
                            info=[{"memory_size": len(self.facts)} for _ in requests])
