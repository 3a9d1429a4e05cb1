"""Editors on a GPT-2-architecture pico model: Conv1D weights ([in, out]) and the fused c_attn."""
import pytest
import torch

from conftest import assert_same_state, state_copy
from editbench.harness.models import LoadedModel
from editbench.methods import training
from editbench.methods.ft import FTM, FTConfig
from editbench.methods.lora import LoRA, LoRAConfig
from editbench.testing import pico_model


@pytest.fixture
def gpt2_lm(micro_world):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(micro_world))  # any BPE tokenizer will do
    model = pico_model("gpt2", vocab_size=len(tokenizer), hidden=32)
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(model=model, tokenizer=tokenizer, name="pico-gpt2", hparams_key="gpt2")


@pytest.mark.parametrize("editor", [
    FTM(FTConfig(layer=1, projections=("up", "down"), lr=5e-2, steps=30)),
    LoRA(LoRAConfig(rank=4, alpha=8, dropout=0.0, lr=5e-2, steps=30)),
], ids=["ft", "lora"])
def test_edit_on_conv1d_model_lowers_target_loss(editor, gpt2_lm, micro_requests):
    before = state_copy(gpt2_lm.model)
    batch = training.target_batch(gpt2_lm, micro_requests[:1])
    with torch.no_grad():
        loss_before = training.target_nll(gpt2_lm.model, batch).item()
    delta = editor.edit(gpt2_lm, micro_requests[:1], cache={})
    assert_same_state(gpt2_lm.model, before)
    if isinstance(editor, LoRA):
        assert sorted(delta.tensors) == ["transformer.h.0.attn.c_attn.weight", "transformer.h.1.attn.c_attn.weight"]
    delta.apply(gpt2_lm.model)  # validates shapes against the Conv1D storage orientation
    with torch.no_grad():
        loss_after = training.target_nll(gpt2_lm.model, batch).item()
    # tiny random tied embeddings cap how confident the pico model can get: ask for a clear drop
    assert loss_after < loss_before - 0.2
