"""Builds (or loads from cache) the tokenizer and tiny Qwen2 model that know a synthetic world."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from editbench.core import EditbenchError
from editbench.benchmarks.world import (
    EDIT_POOLS,
    World,
    WorldConfig,
    alias_pairs,
    exam_csv,
    exam_questions,
    generate_world,
    teaching_people,
    training_sentences,
    two_hop_pairs,
    two_hop_questions,
)
from editbench.harness.cache import build_lock, cache_root, sha256_file, sha256_tree
from editbench.harness.corpus import WORLD_CORPUS_FILE
from editbench.harness.machine import cpu_model
from editbench.harness.models import LoadedModel, load_model
from editbench.harness.weights import weights_sha256
from editbench.harness.results import atomic_write_json, atomic_write_text, plain_mode, publish_dir
from editbench.harness.scoring import score_targets

WORLD_FORMAT_VERSION = 2  # bump when the generator or training changes what a config produces
# The world is trained in a child process with a fixed thread count and pinned kernels, so the same
# config gives bit-identical weights on any x86-64 CPU with AVX2, whatever its core count (measured:
# with default settings the weights differ between 1 and 2 threads and between AVX2 and AVX-512 kernels).
# - a fixed intra-op thread count (the config's build_threads), never adjusted at run time: OpenMP-
#   parallel reductions in ATen and MKL's GEMM split work by thread count, not core count, so a count
#   gives one summation order on 1 core or 64 (OMP_DYNAMIC/MKL_DYNAMIC off: neither may drop threads);
# - MKL_CBWR=AVX2: MKL's conditional numerical reproducibility, the same GEMM code path on every CPU
#   that has AVX2 (MKL would otherwise pick AVX-512 kernels where present);
# - ATEN_CPU_CAPABILITY=avx2: ATen's own vectorised kernels at the same width everywhere.
# torch.use_deterministic_algorithms and disabling oneDNN were measured too: neither changed a bit.


def reproducible_env(threads: int) -> dict[str, str]:
    """The environment a world build with `threads` intra-op threads runs in (see above)."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "OMP_DYNAMIC": "FALSE",
            "MKL_DYNAMIC": "FALSE", "MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


UNSET_FOR_BUILD = ("MKL_ENABLE_INSTRUCTIONS",)  # would override MKL_CBWR's code path
EOS = "<|endoftext|>"
# transformers 5 loads any qwen2 folder's tokenizer as Qwen2Tokenizer, which rebuilds the BPE with
# its own normalizer and pre-tokenizer. Training ours with exactly that pipeline makes the
# tokenizer load as itself: the same ids whichever class reads the files.
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


class WorldBuildError(EditbenchError):
    pass


# fields added with edition 2: left out of an edition-1 world's hash, so its cached copy stays valid
EDITION2_FIELDS = ("edition", "min_two_hop_accuracy", "n_teaching_only")
# fields added later, left out of the hash at the value every world had before them (same reason)
LATER_FIELDS = {"build_threads": 1}


def world_hash(config: WorldConfig) -> str:
    fields = asdict(config)
    if config.edition == 1:
        fields = {k: v for k, v in fields.items() if k not in EDITION2_FIELDS}
    fields = {k: v for k, v in fields.items() if k not in LATER_FIELDS or v != LATER_FIELDS[k]}
    blob = json.dumps({"v": WORLD_FORMAT_VERSION, **fields}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def world_dir(config: WorldConfig) -> Path:
    return cache_root() / "world" / f"{config.name}-{world_hash(config)}"


def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS, unk_token=EOS)


class _Corpus:
    """Samples training sequences: single fact sentences and biography passages of one entity."""

    def __init__(self, world: World, tokenizer, seed: int) -> None:
        self.rng = random.Random(seed)
        self.biography_share = world.config.biography_share
        self.eos = tokenizer.convert_tokens_to_ids(EOS)
        self.entities = []
        for _, sentences in training_sentences(world):
            first = tokenizer(sentences).input_ids
            cont = tokenizer([" " + s for s in sentences]).input_ids
            self.entities.append((first, cont))
        self.singles = [(e, i) for e, (first, _) in enumerate(self.entities) for i in range(len(first))]

    def sample_batch(self, batch_size: int) -> list[list[int]]:
        """A batch of single sentences, or (biography_share of the time) a third as many passages of
        three sentences about one entity: batches of one kind keep padding, and so step time, low."""
        if self.rng.random() < self.biography_share:
            return [self._biography(3) for _ in range(max(1, batch_size // 3))]
        return [list(self.entities[e][0][i]) + [self.eos] for e, i in self.rng.choices(self.singles, k=batch_size)]

    def _biography(self, n_sentences: int) -> list[int]:
        first, cont = self.rng.choice(self.entities)
        order = self.rng.sample(range(len(first)), k=min(len(first), n_sentences))
        ids = list(first[order[0]])
        for i in order[1:]:
            ids += cont[i]
        return ids + [self.eos]


def _new_model(config: WorldConfig, vocab_size: int, seed: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=vocab_size, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads, max_position_embeddings=256, tie_word_embeddings=True,
        # transformers 5 reads rope_theta from its legacy keywords (into rope_parameters); part of the
        # world recipe, so it stays as the shipped worlds were built
        rope_theta=10000.0, bos_token_id=0, eos_token_id=0, pad_token_id=0,  # type: ignore[call-arg]
    )
    cfg._attn_implementation = "eager"  # faster than SDPA for these tiny shapes on CPU
    return Qwen2ForCausalLM(cfg)


def train_world_model(world: World, tokenizer):
    cfg = world.config
    model = _new_model(cfg, len(tokenizer), cfg.seed)
    corpus = _Corpus(world, tokenizer, cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-100, label_smoothing=cfg.label_smoothing)
    model.train()
    bar = tqdm(range(cfg.steps), desc=f"training world '{cfg.name}'", unit="step", mininterval=2)
    for _ in bar:
        seqs = corpus.sample_batch(cfg.batch_size)
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), corpus.eos)
        labels = torch.full((len(seqs), width), -100)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            labels[i, : len(s)] = torch.tensor(s)
        logits = model(input_ids=ids).logits
        loss = loss_fn(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    model.eval()
    return model


def fact_accuracy(lm: LoadedModel, world: World) -> dict[str, Any]:
    """Share of (fact, template) prompts whose object the model gets fully right (teacher forced).

    Edition 2 adds, over the people whose such statements were never trained (edit and dev pools):
    two_hop_accuracy (e.g. "The country where X lives is" -> the country of X's city) and
    alias_accuracy (X's facts asked with X's alias); two_hop_train_accuracy is the same over the
    teaching people, whose two-hop statements were trained."""
    kinds = {"train": [(f.prompt(t), f.obj) for f in world.facts for t in f.train_templates],
             "heldout": [(f.prompt(t), f.obj) for f in world.facts for t in f.heldout_templates]}
    if world.config.features.composition:
        untaught = {p for pool in EDIT_POOLS for p in world.pools[pool]}
        kinds["two_hop"] = two_hop_pairs(world, untaught)
        kinds["two_hop_train"] = two_hop_pairs(world, teaching_people(world))
        kinds["alias"] = alias_pairs(world, untaught)
    report: dict[str, Any] = {}  # <kind>_accuracy (None: no prompts of that kind), <kind>_prompts
    for kind, pairs in kinds.items():
        scores = score_targets(lm, pairs)
        report[f"{kind}_accuracy"] = sum(s.exact for s in scores) / len(pairs) if pairs else None
        report[f"{kind}_prompts"] = len(pairs)
        if kind == "two_hop":  # which questions portability may use (World.two_hop_known)
            keys = [key for key, _, _ in two_hop_questions(world, untaught)]
            world.two_hop_known = {key for key, s in zip(keys, scores) if s.exact}
    return report


def check_tokenizer_roundtrip(path: Path, tokenizer, texts: list[str]) -> None:
    """The saved tokenizer must load through AutoTokenizer and give the same ids and text back."""
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    for text in texts:
        ids = loaded(text).input_ids
        if ids != tokenizer(text).input_ids or loaded.decode(ids) != text:
            raise WorldBuildError(
                f"world tokenizer does not round-trip through AutoTokenizer ({type(loaded).__name__}) on {text!r}"
            )


def reproducible_process(threads: int) -> bool:
    """True in a process started with reproducible_env(threads) (the settings must be in place before
    torch first calls MKL or picks its kernels, so they cannot be switched on inside a running process)."""
    return all(os.environ.get(k) == v for k, v in reproducible_env(threads).items()) and not any(
        os.environ.get(k) for k in UNSET_FOR_BUILD)


def build_environment() -> dict:
    """What the weights of a world depend on besides its config: recorded in build_report.json."""
    return {
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "machine": platform.machine(),
        "cpu": cpu_model(),  # MKL's results differ between CPU vendors even on its pinned code path
        **{k: os.environ.get(k) for k in ("MKL_CBWR", "ATEN_CPU_CAPABILITY")},
    }


def build_world(config: WorldConfig, log=print) -> Path:
    """Build the world in a child process with reproducible_env (see there); returns its folder."""
    if reproducible_process(config.build_threads):
        return build_world_here(config, log=log)
    env = {k: v for k, v in os.environ.items() if k not in UNSET_FOR_BUILD}
    env.update(reproducible_env(config.build_threads))
    cmd = [sys.executable, "-m", "editbench.benchmarks.world_model", json.dumps(asdict(config))]
    log(f"world '{config.name}': building in a child process ({config.build_threads} thread(s), MKL_CBWR=AVX2) for reproducible weights")
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=None, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0:  # the child's last line is its one-line error
        raise WorldBuildError(lines[-1] if lines else f"world build exited with code {proc.returncode}")
    for line in lines:
        log(line)
    return world_dir(config)


def build_world_here(config: WorldConfig, log=print) -> Path:
    """Generate, train and check in this process; write into a temp folder and rename it into the cache."""
    torch.set_num_threads(config.build_threads)
    target = world_dir(config)
    world = generate_world(config)
    started = time.perf_counter()
    texts = [s for _, sentences in training_sentences(world) for s in sentences]
    tokenizer = train_tokenizer(texts, config.vocab_size)
    model = train_world_model(world, tokenizer)
    train_seconds = time.perf_counter() - started
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        check_tokenizer_roundtrip(tmp, tokenizer, texts[:200] + ["Hello world, 1953 isn't  odd."])
        lm = load_model(str(tmp), hparams_key="world")
        accuracy = fact_accuracy(lm, world)
        report = {
            "world": config.name, "hash": world_hash(config), "parameters": sum(p.numel() for p in model.parameters()),
            "facts": len(world.facts), "edit_pool_facts": len(world.facts_of("edit")),
            "two_hop_facts": len(world.derived),
            "two_hop_known": None if world.two_hop_known is None else len(world.two_hop_known), "build_seconds": round(train_seconds, 1), **accuracy,
            "weights_sha256": weights_sha256(lm.model), "build_environment": build_environment(),
        }
        log(
            f"world '{config.name}': {report['parameters']:,} parameters, {report['facts']} facts, trained in "
            f"{train_seconds:.0f}s; train-template accuracy {accuracy['train_accuracy']:.3f}, held-out paraphrase "
            f"accuracy {accuracy['heldout_accuracy']:.3f}"
            + (f", held-out two-hop accuracy {accuracy['two_hop_accuracy']:.3f} (taught people "
               f"{accuracy['two_hop_train_accuracy']:.3f}), alias accuracy {accuracy['alias_accuracy']:.3f}"
               if config.features.composition else "")
            + f"; weights sha256 {report['weights_sha256'][:16]}"
        )
        if accuracy["train_accuracy"] < config.min_train_accuracy or (
            accuracy["heldout_accuracy"] < config.min_heldout_accuracy
        ):
            raise WorldBuildError(
                f"world '{config.name}' model did not learn its facts: train {accuracy['train_accuracy']:.3f} "
                f"(need {config.min_train_accuracy}), held-out {accuracy['heldout_accuracy']:.3f} "
                f"(need {config.min_heldout_accuracy})"
            )
        if config.features.composition and accuracy["two_hop_accuracy"] < config.min_two_hop_accuracy:
            raise WorldBuildError(
                f"world '{config.name}' model does not compose its facts: held-out two-hop accuracy "
                f"{accuracy['two_hop_accuracy']:.3f} (need {config.min_two_hop_accuracy})"
            )
        atomic_write_json(tmp / "world.json", world.to_json())
        write_corpus(tmp, world)
        atomic_write_text(tmp / "exam" / "world_val.csv", exam_csv(exam_questions(world)))
        # last: the content hash of every file, which ensure_world verifies before each use
        report["files"] = sha256_tree(tmp, skip=(REPORT_FILE,))
        atomic_write_json(tmp / REPORT_FILE, report)
        if (target / REPORT_FILE).exists():
            # another process finished the same build meanwhile: its weights are these bit for bit,
            # and it may be reading them, so keep it and drop ours
            shutil.rmtree(tmp, ignore_errors=True)
            return target
        os.chmod(tmp, plain_mode(directory=True))  # mkdtemp makes the folder private
        publish_dir(tmp, target)  # an incomplete folder there goes first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def write_corpus(folder: Path, world: World) -> None:
    """The world's training text, one sentence per line: the default corpus for key statistics."""
    texts = [s for _, sentences in training_sentences(world) for s in sentences]
    atomic_write_text(Path(folder) / WORLD_CORPUS_FILE, "\n".join(texts) + "\n")


# The worlds' trained files ship inside the package (editbench/worlds/<size>/): the bits every YAML,
# baseline and README table was measured on (built on an AMD EPYC, docs/measurements/
# world-fingerprints.json). A recipe's float kernels differ with the CPU vendor, an artifact does not.
SHIPPED_ROOT = Path(__file__).resolve().parents[1] / "worlds"


class WorldDamagedError(WorldBuildError):
    """A shipped world's file differs from its recorded sha256 (edited or damaged copy)."""


def shipped_dir(config: WorldConfig) -> Path | None:
    """The package's own folder of this world, when one ships for exactly this config (its recipe
    hash); None for any other config (a changed recipe is built from scratch into the cache)."""
    folder = SHIPPED_ROOT / config.name
    try:
        report = json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return folder if isinstance(report, dict) and report.get("hash") == world_hash(config) else None


def world_path(size: str, log=print) -> Path:
    """The verified folder of the world `size` (micro, default, large): shipped, never trained here."""
    from editbench.benchmarks.world import world_config

    return ensure_world(world_config(size), log=log)


def ensure_world(config: WorldConfig, log=print) -> Path:
    """The world's folder after checking every file against its recorded sha256. A shipped world
    (`shipped_dir`) is used as shipped and refused with one line when a file differs; any other
    config is built from its recipe into the cache (under a lock: a second process waits and reuses
    it) when missing, damaged or never built."""
    shipped = shipped_dir(config)
    if shipped is not None:
        report, damage = verify_world(shipped, record_hashes=False)
        if damage is not None:
            raise WorldDamagedError(
                f"shipped world '{config.name}' in {shipped}: {damage}; reinstall editbench (or `git checkout "
                f"{shipped}`), or build it from its recipe on purpose (make world-rebuild WORLD={config.name})")
        log(f"world '{config.name}': shipped weights {report['weights_sha256'][:16]} ({shipped})")
        return shipped
    target = world_dir(config)
    if (target / REPORT_FILE).exists():  # complete and verified: read without a lock (a read-only cache works)
        report, damage = verify_world(target)
        if damage is None:
            log(f"world '{config.name}' from cache {target} (held-out accuracy {report['heldout_accuracy']:.3f})")
            return target
    with build_lock(target, log=log):
        if (target / REPORT_FILE).exists():
            report, damage = verify_world(target)
            if damage is None:
                log(f"world '{config.name}' from cache {target} (held-out accuracy {report['heldout_accuracy']:.3f})")
                return target
            log(f"world '{config.name}': the cached copy is damaged ({damage}); rebuilding it")
            shutil.rmtree(target)
        return build_world(config, log=log)


ACCURACY_BARS = ("train_accuracy", "heldout_accuracy", "two_hop_accuracy", "alias_accuracy")


def rebuild_world(config: WorldConfig, log=print) -> Path:
    """Train the world from its recipe into the cache (an earlier rebuild there is replaced): the
    check that the recipe still gives the shipped bits on this machine. Used only when asked for
    (as the run plan's `model`, its folder); runs of a world size keep the shipped copy."""
    target = world_dir(config)
    with build_lock(target, log=log):
        if target.exists():
            shutil.rmtree(target)
    return build_world(config, log=log)


def fingerprint_table(config: WorldConfig, rebuilt: Path | None) -> list[str]:
    """Markdown rows: the shipped and the rebuilt world's weights sha256 and accuracy bars."""
    def report_of(folder: Path | None) -> dict:
        try:
            return json.loads((folder / REPORT_FILE).read_text(encoding="utf-8")) if folder else {}
        except (OSError, ValueError):
            return {}

    shipped, built = report_of(shipped_dir(config)), report_of(rebuilt)
    def cell(report: dict, key: str) -> str:
        value = report.get(key)
        return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)

    rows = ["| world | what | shipped | rebuilt here |", "|---|---|---|---|",
            f"| {config.name} | weights sha256 | {cell(shipped, 'weights_sha256')} | {cell(built, 'weights_sha256')} |"]
    rows += [f"| {config.name} | {key.replace('_', ' ')} | {cell(shipped, key)} | {cell(built, key)} |"
             for key in ACCURACY_BARS if key in shipped or key in built]
    same = bool(shipped) and shipped.get("weights_sha256") == built.get("weights_sha256")
    rows.append(f"| {config.name} | same bits | {'yes' if same else 'no'} | "
                f"{(built.get('build_environment') or {}).get('cpu') or '-'} |")
    return rows


def verify_world(target: Path, record_hashes: bool = True) -> tuple[dict, str | None]:
    """(the build report, None) when every recorded file has its sha256; else ({}, what is wrong).
    A world built before hashes were recorded gets them now, once its weights match their sha256
    (with `record_hashes`; a shipped world must carry them)."""
    try:
        report = json.loads((target / REPORT_FILE).read_text(encoding="utf-8"))
        if not isinstance(report, dict) or not isinstance(report.get("heldout_accuracy"), float):
            return {}, f"{REPORT_FILE} lacks its fields"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {}, f"{REPORT_FILE} unreadable: {type(exc).__name__}"
    files = report.get("files")
    if not isinstance(files, dict) and not record_hashes:
        return {}, f"{REPORT_FILE} records no file hashes"
    if not isinstance(files, dict):
        try:  # a cache from before file hashes: check the weights, then record every file's hash
            if not (target / WORLD_CORPUS_FILE).exists():
                write_corpus(target, load_world(target))
            if weights_sha256(load_model(str(target), hparams_key="world").model) != report.get("weights_sha256"):
                return {}, "model weights differ from their recorded sha256"
        except Exception as exc:  # noqa: BLE001 - any failure to load means the copy cannot be used
            return {}, f"cannot load it ({type(exc).__name__})"
        report["files"] = sha256_tree(target, skip=(REPORT_FILE,))
        try:
            atomic_write_json(target / REPORT_FILE, report)
        except OSError:  # a read-only cache: verified all the same, the hashes are recorded another time
            pass
        return report, None
    for rel, digest in files.items():
        path = target / rel
        if not path.is_file():
            return {}, f"{path} is missing"
        if sha256_file(path) != digest:
            return {}, f"{path} differs from its recorded sha256"
    return report, None


REPORT_FILE = "build_report.json"


def load_world(path: Path) -> World:
    return World.from_json(json.loads((Path(path) / "world.json").read_text()))


def _main(argv: list[str] | None = None) -> int:
    """Child-process entry of `build_world`: one JSON WorldConfig; log lines on stdout, error last."""
    parser = argparse.ArgumentParser(description="build one world in this process (used by build_world)")
    parser.add_argument("config_json")
    args = parser.parse_args(argv)
    config = WorldConfig.from_dict(json.loads(args.config_json))
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # this process's output is the parent's log: no per-file bars
    try:
        build_world_here(config, log=lambda msg: print(msg, flush=True))
    except EditbenchError as exc:
        print(str(exc), flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main())


def world_lines() -> list[str]:
    """Per world size: edit and dev pool sizes, layers and width, and the fingerprint of the shipped
    copy (or that none ships for its recipe)."""
    from editbench.benchmarks.world import WORLD_SIZES, generate_world

    lines = []
    for name, config in WORLD_SIZES.items():
        world = generate_world(config)
        folder = shipped_dir(config)
        built = "not shipped: built from its recipe on first use"
        if folder is not None:
            try:
                built = f"weights sha256 {json.loads((folder / REPORT_FILE).read_text())['weights_sha256'][:16]} (shipped)"
            except (OSError, ValueError, KeyError):
                pass
        lines.append(f"{name:12s} edition {config.edition}, {len(world.facts_of('edit'))} edit-pool facts, "
                     f"{len(world.facts_of('dev'))} dev, {config.num_layers} layers x {config.hidden_size}; {built}")
    return lines
