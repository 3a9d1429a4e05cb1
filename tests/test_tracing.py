"""Causal tracing held to ROME's formulas (kmeng01/rome experiments/causal_trace.py): a per-layer
transcription of its trace_with_patch / trace_important_window on a tiny Llama, one forward pass per
restored state, against editbench's batched trace."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
import torch

from editbench.harness import tracing
from editbench.harness.hooks import edit_output
from editbench.harness.models import LoadedModel
from editbench.testing import pico_model


ALPHABET = " abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,'"  # ids 1..; BOS 0 decodes to ""


class CharTokenizer:
    """One token per character, BOS first, as `tokenizer.encode` adds it for Llama."""

    def __call__(self, text, add_special_tokens=True):
        ids = [1 + ALPHABET.index(c) for c in text]
        return type("Encoding", (), {"input_ids": ([0] if add_special_tokens else []) + ids})()

    def decode(self, ids):
        return "".join(ALPHABET[i - 1] if i else "" for i in ids)


def _lm(layers: int = 4) -> LoadedModel:
    model = pico_model("llama", vocab_size=64, hidden=16, num_hidden_layers=layers, seed=3)
    return LoadedModel(model=model, tokenizer=CharTokenizer(), name="pico", hparams_key="llama")


def reference_trace(lm, prompt, subject, kind, position, samples, noise, window, seed=1):
    """The reference's loop: for each layer, one run of samples + 1 rows, fresh RandomState(seed) noise
    added to the subject's embeddings of rows 1.., the listed states restored from row 0."""
    model = lm.model
    ids = lm.tokenizer(prompt).input_ids
    b, e = tracing.subject_token_range(lm.tokenizer, ids, subject)
    inp = torch.tensor([ids] * (samples + 1))
    answer = int(model(input_ids=inp[:1]).logits[0, -1].argmax())
    n = len(model.model.layers)

    def run(states):
        prng = np.random.RandomState(seed)
        spec = defaultdict(list)
        for t, name in states:
            spec[name].append(t)

        def corrupt(x):
            x = x.clone()
            x[1:, b:e] += noise * torch.from_numpy(prng.randn(x.shape[0] - 1, e - b, x.shape[2])).float()
            return x

        hooks = [edit_output(model.get_input_embeddings(), corrupt)]
        for name, ts in spec.items():
            def restore(h, ts=ts):
                h = h.clone()
                for t in ts:
                    h[1:, t] = h[0, t]
                return h
            hooks.append(edit_output(model.get_submodule(name), restore))
        for h in hooks:
            h.__enter__()
        try:
            logits = model(input_ids=inp).logits
        finally:
            for h in reversed(hooks):
                h.__exit__(None, None, None)
        return torch.softmax(logits[1:, -1, :], dim=1).mean(dim=0)[answer].item()

    t = {"last_subject": e - 1, "last": len(ids) - 1}[position]
    low = run([])
    scores = []
    for layer in range(n):
        if kind == "hidden":
            states = [(t, f"model.layers.{layer}")]
        else:
            part = "mlp" if kind == "mlp" else "self_attn"
            states = [(t, f"model.layers.{L}.{part}")
                      for L in range(max(0, layer - window // 2), min(n, layer - (-window // 2)))]
        scores.append(run(states))
    return low, scores


@pytest.mark.parametrize("window", [1, 2, 3])
def test_the_batched_trace_equals_the_reference_loop(window):
    torch.manual_seed(0)
    lm = _lm(layers=5)
    settings = tracing.TraceSettings(samples=4, noise=0.7, window=window)
    prompt, subject = "Ada Lovelace lives in", "Ada Lovelace"
    with torch.no_grad():
        traced = tracing.trace_fact(lm, prompt, subject, settings, noise=settings.noise)
        for kind in tracing.KINDS:
            for position in tracing.POSITIONS:
                low, scores = reference_trace(lm, prompt, subject, kind, position, 4, 0.7, window)
                assert traced.low == pytest.approx(low, abs=1e-6)
                assert traced.restored[kind][position] == pytest.approx(scores, abs=1e-6), (kind, position)
    assert traced.subject_range == (1, 13) and 0 <= traced.low <= 1 and 0 <= traced.high <= 1


def test_window_and_token_range_follow_the_reference():
    assert list(tracing.window_layers(0, 10, 30)) == list(range(0, 5))
    assert list(tracing.window_layers(15, 10, 30)) == list(range(10, 20))
    assert list(tracing.window_layers(29, 10, 30)) == list(range(24, 30))
    assert list(tracing.window_layers(4, 3, 30)) == [3, 4, 5] and list(tracing.window_layers(4, 1, 30)) == [4]
    tok = CharTokenizer()
    ids = tok("The job of Ada is").input_ids
    assert tracing.subject_token_range(tok, ids, "Ada") == (12, 15)


def test_restoring_every_state_gives_back_the_clean_probability():
    """Restoring the hidden state of the last layer at the last token restores the clean output exactly,
    and the average indirect effect is the mean of the facts' effects."""
    lm = _lm(layers=3)
    settings = tracing.TraceSettings(samples=3, noise=2.0, window=1)
    with torch.no_grad():
        a = tracing.trace_fact(lm, "Ada Lovelace lives in", "Ada Lovelace", settings, noise=2.0)
        b = tracing.trace_fact(lm, "The job of Bob Stone is", "Bob Stone", settings, noise=2.0)
    assert a.restored["hidden"]["last"][-1] == pytest.approx(a.high, abs=1e-6)
    aie = tracing.average_indirect_effects([a, b])
    expected = [(x + y) / 2 for x, y in zip(a.indirect_effects("mlp", "last_subject"), b.indirect_effects("mlp", "last_subject"))]
    assert aie["mlp"]["last_subject"] == pytest.approx(expected)
    assert set(tracing.peak_layers(aie)) == set(tracing.KINDS)


def test_trace_command_writes_the_average_indirect_effects_and_the_figure(micro_world, tmp_path, capsys):
    import json

    from editbench.cli import main

    assert main(["trace", "--world", "micro", "--edits", "6", "--samples", "3", "--window", "2",
                 "--out", str(tmp_path / "trace"), "--quiet"]) == 0
    record = json.loads((tmp_path / "trace" / "trace.json").read_text())
    assert 0 < record["facts_known"] <= record["facts_drawn"] == 6 and len(record["facts"]) == record["facts_known"]
    for kind in tracing.KINDS:
        for position in tracing.POSITIONS:
            assert len(record["average_indirect_effect"][kind][position]) == 4  # the micro world's layers
    assert record["settings"]["noise_rule"].startswith("3 x std") and record["settings"]["noise"] > 0
    assert (tmp_path / "trace" / "trace.png").is_file()
    assert "known facts traced" in capsys.readouterr().out
    # a looser notion of known (the true answer's first token among the top 5) traces at least as many
    assert main(["trace", "--world", "micro", "--edits", "6", "--samples", "2", "--window", "2", "--known-top-k", "5",
                 "--out", str(tmp_path / "top5"), "--quiet"]) == 0
    loose = json.loads((tmp_path / "top5" / "trace.json").read_text())
    assert loose["known_top_k"] == 5 and loose["facts_known"] >= record["facts_known"]
