"""Hostile input, corrupt caches, concurrent runs: one clear line and exit 2 (or the stated policy),
nothing half-written, nothing silently wrong. Table-driven per loader and per CLI option."""
import json
import logging
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from editbench import cli
from editbench.benchmarks.editdata import load_edits
from editbench.core import ConfigError, DataError, EditRequest
from editbench.harness.results import upgraded

ZSRE = {"subject": "Charity Creek", "src": "Which river system contains Charity Creek?", "rephrase": "Where?",
        "alt": "Chichester River", "answers": ["Parramatta River"], "loc": "nq question: who", "loc_ans": "12"}
CF_FLAT = {"prompt": "Charity Creek is in", "subject": "Charity Creek", "target_new": "Asia", "ground_truth": "Europe",
           "rephrase_prompt": "Where is Charity Creek?", "locality_prompt": "Paris is in",
           "locality_ground_truth": "Europe"}
CF_ROME = {"case_id": 0, "requested_rewrite": {"prompt": "{} is in", "subject": "Charity Creek",
                                               "target_new": {"str": "Asia"}, "target_true": {"str": "Europe"}},
           "paraphrase_prompts": ["Where is Charity Creek?"], "neighborhood_prompts": ["Paris is in"],
           "generation_prompts": ["Charity Creek is"]}
MQUAKE = {"case_id": 1, "requested_rewrite": [{"prompt": "{} is a citizen of", "subject": "Ellie Kemper",
                                               "target_new": {"str": "Croatia"}, "target_true": {"str": "USA"}}],
          "questions": ["Where does Ellie Kemper live?"], "new_answer": "Croatia"}


def _write(tmp_path, name, records, encoding="utf-8"):
    path = tmp_path / name
    text = "\n".join(json.dumps(r, ensure_ascii=False) for r in records) if name.endswith(".jsonl") else \
        json.dumps(records, ensure_ascii=False)
    path.write_bytes(text.encode(encoding))
    return str(path)


LOADER_CASES = [
    ("zsre", [{**ZSRE, "rephrase": [1, 2]}], "field 'rephrase[0]' must be a string, got int"),
    ("zsre", [{**ZSRE, "rephrase": "   "}], "field 'rephrase' is empty"),
    ("zsre", [{**ZSRE, "src": ""}], "field 'src' is empty"),
    ("zsre", [{**ZSRE, "subject": "Nowhere"}], "field 'subject' 'Nowhere' does not occur"),
    ("zsre", [{**ZSRE, "case_id": 7}, {**ZSRE, "case_id": 7}], "record 1 (case_id 7): field 'case_id' repeats record 0"),
    ("counterfact", [{**CF_FLAT, "rephrase_prompt": [1, 2]}], "field 'rephrase_prompt[0]' must be a string"),
    ("counterfact", [{**CF_FLAT, "rephrase_prompt": ["ok", ""]}], "field 'rephrase_prompt[1]' is empty"),
    ("counterfact", [{**CF_ROME, "generation_prompts": 5}], "field 'generation_prompts' must be str/list, got int"),
    ("counterfact", [{**CF_ROME, "paraphrase_prompts": [3, None]}], "field 'paraphrase_prompts[0]' must be a string"),
    ("counterfact", [{**CF_ROME, "requested_rewrite": {**CF_ROME["requested_rewrite"],
                                                       "prompt": "{} is in {continent}"}}], "stray format field"),
    ("counterfact", [{**CF_ROME, "requested_rewrite": {**CF_ROME["requested_rewrite"], "prompt": "{} is in {}"}}],
     "must contain '{}' exactly once"),
    ("mquake", [{**MQUAKE, "requested_rewrite": [{**MQUAKE["requested_rewrite"][0], "prompt": "{} of {x}"}]}],
     "field 'requested_rewrite[0].prompt' has a stray format field"),
    ("mquake", [{**MQUAKE, "questions": [None]}], "field 'questions[0]' must be a string"),
]


@pytest.mark.parametrize("name, records, message", LOADER_CASES)
@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_malformed_records_give_one_line_naming_file_record_and_field(tmp_path, name, records, message, suffix):
    path = _write(tmp_path, f"data{suffix}", records)
    with pytest.raises(DataError) as err:
        load_edits(name, path)
    text = str(err.value)
    assert "\n" not in text and text.startswith(path) and message in text, text


@pytest.mark.parametrize("encoding, subject", [("latin-1", "Crème"), ("utf-16", "Crème"), ("gbk", "长江")])
@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_files_that_are_not_utf8_are_one_line(tmp_path, encoding, subject, suffix):
    path = _write(tmp_path, f"data{suffix}", [{**ZSRE, "subject": subject, "src": f"Où est {subject}?"
                                                if encoding != "gbk" else f"{subject}在哪里?"}], encoding)
    with pytest.raises(DataError, match="not UTF-8"):
        load_edits("zsre", path)


def test_limit_reads_only_the_records_it_takes(tmp_path):
    """Records past --limit are never parsed: a broken third line does not matter with --limit 2."""
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps(ZSRE) + "\n" + json.dumps({**ZSRE, "case_id": 1}) + "\n{not json\n")
    assert len(load_edits("zsre", str(path), limit=2).requests) == 2
    listed = tmp_path / "big.json"
    listed.write_text("[" + json.dumps(ZSRE) + ", " + json.dumps({**ZSRE, "case_id": 1}) + ", {broken")
    assert len(load_edits("zsre", str(listed), limit=2).requests) == 2
    with pytest.raises(DataError, match="not valid JSON"):
        load_edits("zsre", str(listed))


def test_limit_memory_follows_the_records_taken(tmp_path):
    """RSS of loading 2 records from a ~40 MB JSONL stays far below the file's parsed size."""
    path = tmp_path / "huge.jsonl"
    line = json.dumps({**ZSRE, "loc": "nq question: " + "x" * 2000}) + "\n"
    with open(path, "w") as fh:
        for i in range(20_000):
            fh.write(line.replace('"subject"', f'"case_id": {i}, "subject"', 1))
    grown_kb = _rss_growth_of_two_records_kb(path)
    assert grown_kb < 20_000, f"loading 2 records grew RSS by {grown_kb} KB"


def _rss_growth_of_two_records_kb(path) -> int:
    """How much the peak RSS of a fresh process grows while it loads the first 2 records of `path`."""
    code = ("import resource, sys; from editbench.benchmarks.editdata import load_edits; "
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            f"load_edits('zsre', {str(path)!r}, limit=2); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)")
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def test_json_list_memory_follows_the_records_taken(tmp_path):
    """RSS of loading 2 records from a ~40 MB JSON list stays far below the file's size (the list is
    read in blocks, not as one string), and a record cut at a block boundary still decodes."""
    from editbench.benchmarks import editdata

    path = tmp_path / "huge.json"
    record = json.dumps({**ZSRE, "loc": "nq question: " + "x" * 2000})
    with open(path, "w") as fh:
        fh.write("[\n")
        fh.write(",\n".join(record.replace('"subject"', f'"case_id": {i}, "subject"', 1) for i in range(20_000)))
        fh.write("\n]\n")
    grown_kb = _rss_growth_of_two_records_kb(path)
    assert grown_kb < 20_000, f"loading 2 records of a JSON list grew RSS by {grown_kb} KB"
    small = tmp_path / "small.json"  # blocks of 7 characters: every record and separator is cut somewhere
    small.write_text("[ " + ", ".join(json.dumps({**ZSRE, "case_id": i}) for i in range(5)) + " ]  \n")
    old_block = editdata._TextStream.BLOCK
    editdata._TextStream.BLOCK = 7
    try:
        assert [r.case_id for r in load_edits("zsre", str(small)).requests] == [str(i) for i in range(5)]
        small.write_text("[ " + json.dumps(ZSRE) + " ] x")
        with pytest.raises(DataError, match="text after the closing"):
            load_edits("zsre", str(small))
    finally:
        editdata._TextStream.BLOCK = old_block


CLI_CASES = [
    (["--method", "ft", "--seed", str(2**70)], "--seed must be in [0, 2**63)"),
    (["--method", "ft", "--set", "ft.weight_decay=-1"], "weight_decay=-1.0 is out of range"),
    (["--method", "memit", "--set", "memit.mom2_batch_size=0"], "mom2_batch_size=0 is out of range"),
    (["--method", "ft", "--set", "ft.lr=[1,"], "--set 'ft.lr=[1,': value '[1,' cannot be read"),
    (["--method", "ft", "--set", "ft.lr=!!python/object/apply:os.system [\"touch /tmp/pwned\"]"], "cannot be read"),
    (["--method", "ft", "--set", "ft.lr=.inf"], "lr=inf is out of range (valid: finite numbers)"),
    (["--method", "ft", "--set", "ft.lr=.nan"], "(valid: finite numbers)"),
    (["--method", "rome", "--set", "rome.context_template_lengths=[[5,-1]]"], "context_template_lengths"),
    (["--method", "ft", "--device", "cuda"], "--device cuda: CUDA is not available"),
    (["--method", "ft", "--device", "warp9"], "not a device"),
    (["--method", "ft", "--max-update-ratio", "inf"], "--max-update-ratio must be a finite number"),
    (["--method", "ft", "--exam-limit", "0"], "--exam-limit must be in"),
]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the --device cuda case needs a machine without CUDA")
@pytest.mark.parametrize("args, message", CLI_CASES)
def test_bad_cli_values_exit_2_with_one_line_and_write_nothing(micro_world, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    code = cli.main(["run", *args, "--world", "micro", "--edits", "2", "--out", str(out), "--quiet"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("editbench:")]
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists() and not Path("/tmp/pwned").exists()


def test_bad_paths_and_files_exit_2(micro_world, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    latin = tmp_path / "ft.yaml"
    latin.write_bytes("lr: 0.001 # café\n".encode("latin-1"))
    cases = [
        (["--benchmark", "zsre", "--data", str(tmp_path)], "is a directory"),
        (["--out", str(a_file)], "exists and is not a directory"),
        (["--hparams", str(latin)], "not UTF-8"),
        (["--exam", "ceval"], "needs --exam-dir"),
    ]
    for extra, message in cases:
        args = ["run", "--method", "ft", "--world", "micro", "--edits", "2", "--quiet", *extra]
        if "--out" not in extra:
            args += ["--out", str(tmp_path / "out")]
        assert cli.main(args) == 2, extra
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("editbench:")]
        assert len(err) == 1 and message in err[0], (extra, err)
    assert not (tmp_path / "out").exists()
    grid = ["sweep", "--method", "ft", "--grid", "lr=[1,", "--world", "micro", "--out", str(tmp_path / "s")]
    assert cli.main(grid) == 2 and "cannot be read" in capsys.readouterr().err


def _small_run(tmp_path, method="noedit"):
    out = tmp_path / "run"
    assert cli.main(["run", "--method", method, "--world", "micro", "--edits", "2", "--checkpoints", "2",
                     "--out", str(out), "--quiet"]) == 0
    return out


def test_report_refuses_broken_or_escaping_results(micro_world, tmp_path, capsys):
    out = _small_run(tmp_path)
    path = out / "noedit" / "results.json"
    good = json.loads(path.read_text())
    for broken, message in [({k: v for k, v in good.items() if k != "model"}, "field 'model' is missing"),
                            ({**good, "n_edits": "2"}, "field 'n_edits' has type str"),
                            ({**good, "method": "x/../../../escaped"}, "is not a safe name")]:
        path.write_text(json.dumps(broken))
        capsys.readouterr()
        assert cli.main(["report", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not list(tmp_path.parent.glob("escaped*")) and not (tmp_path / "escaped").exists()


def test_report_cleans_temporaries_of_a_killed_report(micro_world, tmp_path):
    out = _small_run(tmp_path)
    stale = out / ".leaderboard.md.a1b2c3d4.md"
    stale.write_text("half")
    assert cli.main(["report", str(out)]) == 0
    assert not stale.exists() and (out / "leaderboard.md").is_file()


def test_outputs_are_strict_json_and_nan_is_a_regression(tmp_path):
    from editbench.harness.results import atomic_write_json
    from editbench.reports import regress

    atomic_write_json(tmp_path / "x.json", {"a": float("inf"), "b": [1.0, float("nan")]})
    text = (tmp_path / "x.json").read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON token {c}"))
    assert data["a"] is None and data["b"] == [1.0, None] and len(data["non_finite"]) == 2
    finding = regress._judge("ft", "reliability", {"reliability": 0.9}, {"reliability": math.nan}, 0.05, 0)
    assert finding.status == "missing" and regress.regressed([finding])


def test_diverging_update_is_rejected_and_counted(micro_lm, micro_world):
    from editbench.benchmarks.registry import world_benchmark
    from editbench.harness.guard import UpdateGuard
    from editbench.harness.runner import Runner
    from editbench.harness.suite import EvalSuite
    from editbench.methods.ft import FTM, FTConfig

    data = world_benchmark(micro_world, 2, seed=0)
    before = {k: v.clone() for k, v in micro_lm.model.state_dict().items()}
    suite = EvalSuite([], 8, "", [])
    results, rows = Runner(micro_lm, FTM(FTConfig(layer=0, lr=1e30)), data.requests, suite, [2], 0,
                           log=lambda m: None).run()
    assert results["diverged_edits"] == 2 and all(r["status"] == "diverged" for r in rows)
    assert all(torch.equal(before[k], v) for k, v in micro_lm.model.state_dict().items())
    applied, rows = Runner(micro_lm, FTM(FTConfig(layer=0, lr=1e30)), data.requests, suite, [2], 0,
                           log=lambda m: None, guard=UpdateGuard(policy="apply")).run()
    assert applied["diverged_edits"] >= 1  # once applied, the broken model may not move any further
    assert any(not torch.equal(before[k], v) for k, v in micro_lm.model.state_dict().items())


def test_memit_singular_solve_fails_the_edit_not_the_run(micro_lm, micro_world):
    from editbench.benchmarks.registry import world_benchmark
    from editbench.harness.runner import EvalSuite, Runner
    from editbench.harness.hparams import resolve_config
    from editbench.methods.memit import MEMIT, MEMITConfig

    data = world_benchmark(micro_world, 2, seed=0)
    config, _ = resolve_config(MEMITConfig, "memit", "world", "qwen2", overrides={"mom2_update_weight": 1e-300})
    results, rows = Runner(micro_lm, MEMIT(config), data.requests, EvalSuite([], 8, "", []), [2], 0,
                           log=lambda m: None).run()
    assert all(r["status"] in ("failed", "ok") for r in rows)
    assert all(math.isfinite(p.sum().item()) for p in micro_lm.model.parameters())


def test_prompts_longer_than_the_context_are_an_error_or_cut(micro_lm):
    from editbench.harness.context import fit_to_context, model_context

    context = model_context(micro_lm)
    long_prompt = "the " * (context + 50) + "Ada Lovelace works for"
    request = EditRequest(case_id="long", prompt=long_prompt, subject="Ada Lovelace", target_new="Acme",
                          source="data.json")
    with pytest.raises(DataError, match=r"data.json: record 'long': field 'prompt' is \d+ tokens.*`truncate` left"):
        fit_to_context(micro_lm, [request])
    [cut] = fit_to_context(micro_lm, [request], "left")
    assert cut.truncated_tokens > 50 and cut.prompt.endswith("Ada Lovelace works for")
    ids = micro_lm.tokenizer(cut.prompt + " Acme", add_special_tokens=False).input_ids
    assert len(ids) < context
    lost = EditRequest(case_id="lost", prompt="Ada Lovelace " + "the " * (context + 50), subject="Ada Lovelace",
                       target_new="Acme")
    with pytest.raises(DataError, match="loses its subject"):
        fit_to_context(micro_lm, [lost], "left")


def test_damaged_key_statistics_are_recomputed_with_one_line(micro_lm, caplog, cache_dir):
    from editbench.methods.key_stats import StatsSpec, _cache_file, key_statistics, weight_fingerprint
    from editbench.harness.corpus import corpus_identity

    spec = StatsSpec(mom2_n_samples=50)
    good = key_statistics(micro_lm, [0], spec, {})[0]
    path = _cache_file(micro_lm, weight_fingerprint(micro_lm.model), 0,
                       corpus_identity(spec.mom2_corpus, micro_lm.name), spec)
    data = path.read_bytes()
    for damage, why in [(data[:1000] + bytes(range(256)) * 16 + data[1000 + 4096:], "unreadable"),
                        (None, "differs from its recorded sha256"),
                        ("nan", "not positive definite")]:
        if damage is None:  # valid file, values changed behind the hash
            saved = torch.load(path, weights_only=True)
            saved["moment"] = saved["moment"] * 2
            torch.save(saved, path)
        elif damage == "nan":  # NaN with a matching hash
            from editbench.methods.key_stats import _moment_sha256

            saved = torch.load(path, weights_only=True)
            saved["moment"][0, 0] = float("nan")
            saved["sha256"] = _moment_sha256(saved["moment"])
            torch.save(saved, path)
        else:
            path.write_bytes(damage)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="editbench"):
            again = key_statistics(micro_lm, [0], spec, {})[0]
        assert torch.equal(again, good), why
        assert any(why in r.getMessage() and "computing it again" in r.getMessage() for r in caplog.records), why


def test_damaged_world_copy_is_detected(micro_world, tmp_path):
    from editbench.benchmarks.world_model import verify_world

    copy = tmp_path / "world"
    shutil.copytree(micro_world, copy)
    assert verify_world(copy)[1] is None
    tok = json.loads((copy / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    keys = list(vocab)
    rotated = dict(zip(keys, [vocab[k] for k in keys[1:] + keys[:1]]))  # valid JSON, wrong ids
    tok["model"]["vocab"] = rotated
    (copy / "tokenizer.json").write_text(json.dumps(tok))
    assert "tokenizer.json differs from its recorded sha256" in verify_world(copy)[1]
    (copy / "build_report.json").write_text("{garbled")
    assert "unreadable" in verify_world(copy)[1]


def test_model_folder_with_missing_tensors_is_refused(micro_world, tmp_path):
    from safetensors.torch import load_file, save_file

    from editbench.harness.models import load_model

    copy = tmp_path / "model"
    shutil.copytree(micro_world, copy)
    weights = load_file(str(copy / "model.safetensors"))
    dropped = sorted(k for k in weights if "mlp.down_proj" in k)[0]
    save_file({k: v for k, v in weights.items() if k != dropped}, str(copy / "model.safetensors"),
              metadata={"format": "pt"})
    with pytest.raises(ConfigError, match=f"1 missing \\({dropped}\\)"):
        load_model(str(copy))
    (copy / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(ConfigError, match="cannot load model"):
        load_model(str(copy))


def test_a_locked_out_folder_is_refused_naming_the_holder(micro_world, tmp_path, capsys):
    import os

    from editbench.harness.store import RunDirLock

    out = tmp_path / "busy"
    with RunDirLock(out):
        code = cli.main(["run", "--method", "noedit", "--world", "micro", "--edits", "2", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and f"in use by another editbench run (PID {os.getpid()})" in err
    assert not (out / "noedit").exists()


def test_cache_builds_wait_for_each_other(tmp_path):
    """A second process needing the same cache entry waits for the first (filelock), then reuses it."""
    from editbench.harness.cache import build_lock

    target = tmp_path / "entry"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from editbench.harness.cache import build_lock\n"
        f"with build_lock(Path({str(target)!r})):\n"
        "    print('locked', flush=True); time.sleep(1.5); Path(" + repr(str(target)) + ").write_text('built')\n")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    waited = []
    with build_lock(target, log=waited.append):
        assert target.read_text() == "built"  # the first one's result, not a second build
    holder.wait(timeout=30)
    assert waited and "waiting for another process" in waited[0]


def test_exam_folder_without_questions_is_an_error(tmp_path):
    from editbench.benchmarks.exams import load_exam

    (tmp_path / "val").mkdir()
    (tmp_path / "dev").mkdir()
    (tmp_path / "subject_mapping.json").write_text(json.dumps({"algebra": {"name": "algebra", "category": "STEM"}}))
    (tmp_path / "val" / "algebra_val.csv").write_text("")
    with pytest.raises(DataError, match="holds no questions"):
        load_exam("mmlu", tmp_path, shots=0)
    (tmp_path / "subject_mapping.json").write_bytes('{"algèbre": {"category": "STEM"}}'.encode("latin-1"))
    with pytest.raises(DataError, match="subject_mapping.json: not UTF-8"):
        load_exam("mmlu", tmp_path, shots=0)


# --------------------------------------------------------------------------- the last hostile inputs (issue 32)


def test_an_editor_call_that_changes_nothing_is_no_op_not_ok(micro_lm, micro_world):
    from editbench.benchmarks.registry import world_benchmark
    from editbench.core import Editor, WeightDelta
    from editbench.harness.runner import EvalSuite, Runner
    from editbench.reports.tables import summary_table

    class Silent(Editor):  # meant to write (writes_weights defaults to True), returns an all-zero update
        name = "silent"

        def edit(self, lm, requests, cache=None):
            name, p = next(iter(lm.model.named_parameters()))
            return WeightDelta(tensors={name: torch.zeros_like(p)}, info=[{} for _ in requests])

    data = world_benchmark(micro_world, 2, seed=0)
    results, rows = Runner(micro_lm, Silent(), data.requests, EvalSuite([], 8, "", []), [2], 0,
                           log=lambda m: None).run()
    assert [r["status"] for r in rows] == ["no-op", "no-op"] and results["noop_edits"] == 2
    assert "2 no-op edit(s) of 2" in summary_table([upgraded({**results, "method": "silent"})])


def test_a_diverging_rome_search_is_not_recorded_as_a_successful_edit(micro_world, tmp_path):
    """ROME with v_lr = 1e30: the clamp's float32 norm overflowed to inf and zeroed the update, so
    every edit was `ok` with delta_norm 0. Now the search's loss is seen to blow up: `diverged`."""
    out = tmp_path / "run"
    assert cli.main(["run", "--method", "rome", "--world", "micro", "--edits", "2", "--checkpoints", "2",
                     "--set", "rome.v_lr=1e30", "--set", "rome.clamp_norm_factor=1e30", "--out", str(out),
                     "--quiet"]) == 0
    rows = [json.loads(line) for line in (out / "rome" / "edits.jsonl").read_text().splitlines()]
    assert all(r["status"] in ("diverged", "failed") for r in rows), [r["status"] for r in rows]
    from editbench.methods.rewrite import _norm

    huge = torch.full((96,), 1e30)
    assert torch.isfinite(_norm(huge)) and _norm(torch.ones(4)) == 2.0  # finite norms are the float32 ones


def test_report_refuses_a_nan_in_a_results_file_naming_file_and_field(micro_world, tmp_path, capsys):
    out = _small_run(tmp_path)
    path = out / "noedit" / "results.json"
    text = path.read_text()
    data = json.loads(text)
    data["checkpoints"][0]["reliability"] = float("nan")
    data["checkpoints"][0]["locality"] = float("nan")
    path.write_text(json.dumps(data))  # json writes bare NaN, which editbench never does
    assert cli.main(["report", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(path) in err and "checkpoints[0].reliability" in err and "by hand" in err


def test_a_read_only_cache_serves_a_verified_world_and_says_what_to_do_otherwise(micro_world, tmp_path, monkeypatch):
    """Root ignores permission bits, so the read-only mount is played by a lock that cannot be created."""
    from editbench.benchmarks.world import world_config
    from editbench.benchmarks.world_model import ensure_world
    from editbench.harness import cache

    def refuse(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr("filelock.FileLock.acquire", refuse)
    assert ensure_world(world_config("micro"), log=lambda m: None) == micro_world  # verified: no lock needed
    with pytest.raises(cache.CacheError) as err:
        with cache.build_lock(tmp_path / "something"):
            pass
    assert "cannot be written (Read-only file system)" in str(err.value) and "EDITBENCH_CACHE" in str(err.value)


def test_exam_errors_name_the_csv_file_and_row(tmp_path):
    from editbench.benchmarks.exams import load_exam_csv

    path = tmp_path / "accountant_val.csv"
    path.write_text("id,question,A,B,C,D,answer\n0,What?,a,b,c,d,A\n1,,a,b,c,d,B\n")
    with pytest.raises(DataError) as err:
        load_exam_csv(path, "accountant")
    assert str(err.value) == f"{path}: row 3: field 'question' is empty"


def test_benchmarks_lists_the_worlds_and_world_choices(capsys):
    from editbench.benchmarks.world import WORLD_SIZES

    assert cli.main(["benchmarks"]) == 0
    out = capsys.readouterr().out
    assert "MMLU" in out and "val scored" not in out.split("mmlu")[1].split("\n")[0].split("(")[0]
    for name in WORLD_SIZES:
        line = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        assert "edit-pool facts" in line and "layers" in line and ("sha256" in line or "not built" in line)
    world_option = next(a for a in cli.build_parser()._subparsers._group_actions[0].choices["run"]._actions
                        if "--world" in a.option_strings)
    assert tuple(world_option.choices) == tuple(WORLD_SIZES)


def test_version_is_importable():
    import editbench

    assert editbench.__version__ == cli.editbench.__version__ and editbench.__version__[0].isdigit()


def test_a_method_has_one_style_in_every_figure():
    from editbench.reports.plots import PALETTE, method_styles

    rows = [{"method": m} for m in ("rome", "alphaedit", "noedit", "ft", "ft_l", "lora", "rsft", "rsft_merge", "memit")]
    by_rank = method_styles(rows)
    assert method_styles(list(reversed(rows))) == by_rank  # the order rows come in does not matter
    assert len({s["color"] for s in by_rank.values()}) == 9 <= len(PALETTE)  # nine methods, nine colours


def test_guard_judges_a_call_by_its_summed_objective():
    """A call of K requests diverged when the sum of their objectives rose (or one is not finite),
    not when one request of many ended a hair above its start; with K = 1 both agree."""
    from editbench.harness.guard import UpdateGuard

    guard = UpdateGuard()
    one_rose = [{"initial_loss": 3.358, "final_loss": 3.448}] + [{"initial_loss": 3.0, "final_loss": 0.5}] * 99
    assert guard.objective_verdict(one_rose) is None
    assert "request 0" in guard.objective_verdict(one_rose[:1])
    all_rose = [{"initial_loss": 1.0, "final_loss": 1.5}] * 3 + [{"initial_loss": 1.0, "final_loss": 0.9}]
    assert "summed over 4 requests, 3 rose" in guard.objective_verdict(all_rose)
    blown = one_rose[1:] + [{"initial_loss": 3.0, "final_loss": float("inf")}]
    assert "request 99" in guard.objective_verdict(blown)
    assert guard.objective_verdict([{"v_steps": 3}, {}]) is None  # an editor that reports no objective
