"""`editbench trace`: causal tracing (harness/tracing.py) over a benchmark's facts that the model knows,
on the run plan's model and data; writes trace.json and trace.png."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from editbench.core import ConfigError
from editbench.harness.tracing import (
    KINDS, TraceSettings, average_indirect_effects, peak_layers, subject_embedding_std, trace_fact,
)
from editbench.plan import RunPlan

TRACE_FILE = "trace.json"


def known_facts(lm, requests, top_k: int = 1) -> list[tuple]:
    """(request, the true answer's first token) for each request whose true answer's first token is
    among the model's `top_k` next tokens after the prompt. top_k 1 is the reference's choice (facts
    the model predicts: its known_1000); a small model predicts few facts greedily ("Reedy Glacier is
    in" -> " the"), so a larger k traces the ones it ranks high."""
    import torch

    from editbench.harness.scoring import encode_prompt_target

    known = []
    with torch.no_grad():
        for request in requests:
            if not request.target_true:
                continue
            prompt_ids, target_ids = encode_prompt_target(lm.tokenizer, request.prompt, request.target_true)
            logits = lm.model(input_ids=torch.tensor([prompt_ids], device=lm.device)).logits[0, -1]
            if target_ids and target_ids[0] in logits.topk(top_k).indices.tolist():
                known.append((request, target_ids[0]))
    return known


def trace(plan: RunPlan, settings: TraceSettings, log: Callable[[str], None] = print, top_k: int = 1) -> dict:
    """Trace the plan's facts that its model knows (`known_facts`), each for its true answer's first
    token; returns (and writes under plan.out) the record."""
    from editbench.harness.results import atomic_write_json
    from editbench.reports.plots import trace_figure
    from editbench.session import RunSession

    session = RunSession(plan, log=log)
    session.load()
    lm = session.lm
    facts = known_facts(lm, session.data.requests, top_k)
    log(f"trace: {len(facts)} of {len(session.data.requests)} facts known to the model (the true answer's "
        f"first token among its top {top_k})")
    if not facts:
        raise ConfigError(f"none of the {len(session.data.requests)} facts is known to the model: nothing to trace")
    noise = settings.noise if settings.noise is not None else \
        3 * subject_embedding_std(lm, [fact.subject for fact, _ in facts])
    started = time.perf_counter()
    traces = []
    for i, (fact, answer) in enumerate(facts):
        traces.append(trace_fact(lm, fact.prompt, fact.subject, settings, noise, answer=answer))
        log(f"trace: fact {i + 1}/{len(facts)} {fact.prompt!r} -> {traces[-1].answer!r} (p {traces[-1].high:.2f}, "
            f"corrupted {traces[-1].low:.2f})")
    aie = average_indirect_effects(traces)
    record = {
        "model": {"name": lm.name, "fingerprint": lm.fingerprint(), "provenance": lm.provenance},
        "benchmark": plan.benchmark, "data": str(plan.data) if plan.data else None, "seed": plan.seed,
        "settings": {"samples": settings.samples, "noise": noise, "noise_rule": "given" if settings.noise else
                     "3 x std of the subjects' token embeddings", "window": settings.window, "seed": settings.seed},
        "facts_drawn": len(session.data.requests), "facts_known": len(facts), "known_top_k": top_k,
        "seconds": round(time.perf_counter() - started, 1), "kinds": list(KINDS),
        "average_indirect_effect": aie, "peak_layer_last_subject": peak_layers(aie),
        "mean_high": sum(t.high for t in traces) / len(traces), "mean_low": sum(t.low for t in traces) / len(traces),
        "facts": [{"prompt": t.prompt, "subject": t.subject, "answer": t.answer, "high": t.high, "low": t.low,
                   "subject_range": list(t.subject_range), "restored": t.restored} for t in traces],
    }
    if plan.out is not None:
        out = Path(plan.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / TRACE_FILE, record)
        trace_figure(record, out)
    return record
