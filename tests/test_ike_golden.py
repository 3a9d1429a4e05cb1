"""Golden test of the retrieval baseline's `ike` layout against EasyEdit's IKE: the text EasyEdit's
`compute_icl_edit_quality` scores for an edit (every question kind) and the demonstration sentence its
`encode_ike_facts` stores, run from an unmodified EasyEdit source tree with a recording tokenizer."""
from __future__ import annotations

import ast
import os
import pickle
import typing
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

EASYEDIT = Path(os.environ.get("EDITBENCH_EASYEDIT") or Path(__file__).resolve().parents[1].parent / "shared" / "easyedit")
pytestmark = pytest.mark.skipif(not (EASYEDIT / "easyeditor" / "models" / "ike").is_dir(),
                                reason=f"EasyEdit's source is not at {EASYEDIT} (set EDITBENCH_EASYEDIT)")


def _easyedit_functions(relative: str, names: tuple[str, ...], **namespace):
    """EasyEdit's functions `names`, as written, from `relative`; their module's imports (metrics,
    sentence-transformers, the device helper) replaced by `namespace`: only these functions run."""
    path = EASYEDIT / "easyeditor" / relative
    tree = ast.parse(path.read_text())
    found = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in names]
    assert sorted(n.name for n in found) == sorted(names), f"{path} no longer defines {names}"
    scope = {"typing": typing, "np": np, "torch": torch, "os": os, "pickle": pickle, **namespace}
    exec(compile(ast.Module(body=found, type_ignores=[]), str(path), "exec"), scope)
    return [scope[n] for n in names]


class RecordingTokenizer:
    """Records every text it is given; the ids have the right shape and nothing else."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def __call__(self, text: str, return_tensors=None):
        self.texts.append(text)
        n = len(text) + 1
        return {"input_ids": torch.zeros(1, n, dtype=torch.long), "attention_mask": torch.ones(1, n)}


def _easyedit_scored_texts(record: dict) -> dict[str, str]:
    """The input EasyEdit's IKE evaluation gives the model for each question of `record` after the
    edit, without stored demonstrations (`use_icl_examples: false`: `apply_ike_to_model` returns [])."""
    quality, _ = _easyedit_functions(
        "evaluate/evaluate.py", ("compute_icl_edit_quality", "icl_lm_eval"),
        HyperParams=object, AutoTokenizer=object, normalize_device=lambda device: "cpu",
        attach_metric_meta=lambda *a, **k: None, build_icl_metric_meta=lambda *a, **k: None,
        build_locality_metric_meta=lambda *a, **k: None)
    tok = RecordingTokenizer()
    model = lambda input_ids, attention_mask: SimpleNamespace(logits=torch.zeros(*input_ids.shape, 3))  # noqa: E731
    quality(model, "qwen2-world", SimpleNamespace(device="cpu", alg_name="IKE"), tok, [], record, "cpu")
    inputs = tok.texts[1::2]  # each icl_lm_eval tokenizes the target, then the model's input
    # rewrite, rephrase, then per locality prompt the bare model's input and the edited one's, portability
    return {"reliability": inputs[0], "generalization": inputs[1], "locality": inputs[3], "portability": inputs[4]}


def _easyedit_demonstration(tmp_path: Path, prompt: str, target: str) -> str:
    (encode,) = _easyedit_functions("models/ike/util.py", ("encode_ike_facts",), SentenceTransformer=object,
                                    Dataset=object, IKEHyperParams=object)
    sentence_model = SimpleNamespace(encode=lambda sentences: np.zeros((len(sentences), 2)))
    hparams = SimpleNamespace(results_dir=str(tmp_path), alg_name="IKE", sentence_model_name="sentence/model")
    encode(sentence_model, [{"prompt": prompt, "target_new": target}], hparams)
    stored = pickle.loads(next(tmp_path.rglob("*.pkl")).read_bytes())
    return stored["sentences"][0]


RECORD = {"prompt": "Orla Vance works as a", "target_new": "potter", "ground_truth": "baker",
          "rephrase_prompt": "The job of Orla Vance is",
          "locality": {"neighborhood": {"prompt": "Tomas Reyd lives in", "ground_truth": "Calder"}},
          "portability": {"reasoning": {"prompt": "Orla Vance shapes", "ground_truth": "clay"}}}


def test_ike_layout_scores_the_text_easyedits_ike_scores(tmp_path):
    from editbench.methods.retrieve import ike_layout

    own = f"{RECORD['prompt']} {RECORD['target_new']}"
    theirs = _easyedit_scored_texts(RECORD)
    questions = {"reliability": (RECORD["prompt"], RECORD["target_new"]),
                 "generalization": (RECORD["rephrase_prompt"], RECORD["target_new"]),
                 "locality": (RECORD["locality"]["neighborhood"]["prompt"], "Calder"),
                 "portability": (RECORD["portability"]["reasoning"]["prompt"], "clay")}
    for kind, (question, answer) in questions.items():
        assert ike_layout([own], question) + " " + answer == theirs[kind], kind
    # a second retrieved fact comes before it as the demonstration IKE stores for that fact
    other = ("Pell Aster works as a", "miller")
    demo = _easyedit_demonstration(tmp_path, *other)
    assert ike_layout([own, " ".join(other)], RECORD["prompt"]) == demo + theirs["reliability"][:-len(" potter")]


def test_retrieval_puts_the_ike_layout_before_each_question(micro_lm, micro_requests):
    """End to end on the adaptor: one fact in memory, top_k 1: the model is given EasyEdit's text."""
    from editbench.methods.retrieve import Retrieve, RetrieveConfig, RetrievalContext

    request = micro_requests[0]
    patch = Retrieve(RetrieveConfig(top_k=1, template="ike")).edit(micro_lm, [request])
    adaptor = RetrievalContext(patch.settings, patch.tensors)
    (near, near_answer), rephrase = request.locality[0], request.rephrase_prompts[0]
    record = {"prompt": request.prompt, "target_new": request.target_new, "ground_truth": request.target_true,
              "rephrase_prompt": rephrase, "locality": {"neighborhood": {"prompt": near, "ground_truth": near_answer}},
              "portability": {"one": {"prompt": request.prompt, "ground_truth": request.target_new}}}
    theirs = _easyedit_scored_texts(record)
    ours = adaptor.contexts(micro_lm, [request.prompt, rephrase, near])
    assert ours[0] + " " + request.target_new == theirs["reliability"]
    assert ours[1] + " " + request.target_new == theirs["generalization"]
    assert ours[2] + " " + near_answer == theirs["locality"]
