"""The run plan (editbench/plan.py) checks every setting when it is made, with no model and no world:
errors name the field; the CLI shows the same error with its flag (one thin CLI test per path lives
in test_cli.py and test_hardening.py)."""
from pathlib import Path

import pytest

from editbench.core import ConfigError
from editbench.plan import RunPlan, plan_fields


@pytest.mark.parametrize("settings, message", [
    (dict(methods=("nosuch",)), "unknown method 'nosuch'"),
    (dict(methods=()), "`methods`: name at least one method"),
    (dict(orders=0), "`orders` must be >= 1, got 0"),
    (dict(edits=0), "`edits` must be >= 1, got 0"),
    (dict(seed=-1), "`seed` must be in [0, 2**63), got -1"),
    (dict(threads=0), "`threads` must be in 1..1024, got 0"),
    (dict(jobs=0), "`jobs` must be >= 1, got 0"),
    (dict(resume=True, overwrite=True), "`resume` and `overwrite` exclude each other"),
    (dict(jobs=2, out=None), "need `out`"),
    (dict(protocol="nosuch"), "`protocol` 'nosuch' is not one of sequential, batch, independent, immediate"),
    (dict(world="huge"), "`world` 'huge' is not one of"),
    (dict(benchmark="zsre"), "benchmark 'zsre' needs `data` FILE"),
    (dict(benchmark="zsre", data="/nonexistent.json"), "`data` /nonexistent.json: no such file"),
    (dict(limit=3), "`limit` applies to dataset benchmarks"),
    (dict(exam="ceval"), "exam 'ceval' needs `exam_dir`"),
    (dict(exam_dir="/nonexistent"), "`exam_dir` /nonexistent: no such directory"),
    (dict(overrides=["ft.nokey=1"]), "`overrides` ft.nokey: unknown key for ft"),
    (dict(overrides=["rome.v_lr=1"]), "method 'rome' is not in this run"),
    (dict(hparams=["/nonexistent.yaml"]), "`hparams` /nonexistent.yaml: no such file"),
    (dict(checkpoints=[0, 5], edits=5), "`checkpoints` [0] out of range (valid: 1..5"),
    (dict(save_model_at=[3], checkpoints=[5], edits=5), "`save_model_at` [3]: a model is saved at a checkpoint"),
    (dict(max_memory="0=1GiB"), "`max_memory` needs `device_map`"),
    (dict(device_map="/nonexistent.json"), "`device_map` '/nonexistent.json': auto, balanced"),
    (dict(device="cuda:0"), "CUDA is not available"),
    (dict(eval_mode="nosuch"), "`eval_mode` 'nosuch' is not one of"),
    (dict(protocol="batch", step_size=5), "`step_size` does not apply to it"),
    (dict(protocol="lifelong-k100", step_size=5), "contradicts it"),
    (dict(step_size=0), "`step_size` must be >= 1"),
    (dict(eval_sample=0), "`eval_sample` must be in [1, 2**63)"),
    (dict(perplexity_text="/nonexistent.txt"), "`perplexity_text` /nonexistent.txt: no such file"),
])
def test_bad_settings_fail_when_the_plan_is_made(settings, message, tmp_path):
    settings = {"methods": ("ft",), "out": tmp_path / "run", **settings}
    with pytest.raises(ConfigError) as error:
        RunPlan(**settings)
    assert message in str(error.value)
    assert not (tmp_path / "run").exists()


def test_a_plan_goes_to_json_and_back_unchanged(tmp_path):
    plan = RunPlan(methods=("ft", "rome"), world="micro", edits=5, checkpoints=[1, 5], overrides=["ft.steps=3"],
                   out=tmp_path, orders=2, command="editbench run ...")
    again = RunPlan.from_json(plan.to_json())
    assert again == plan and isinstance(again.out, Path) and again.checkpoints == (1, 5)


def test_all_means_every_registered_editor_and_names_are_kept_in_order():
    from editbench.core import editor_names

    assert RunPlan(methods=("rome", "all")).methods[0] == "rome"
    assert set(RunPlan(methods=("all",)).methods) == set(editor_names())


def test_every_field_has_help_and_a_group():
    from editbench.plan import GROUPS

    assert all(f.metadata["help"] and f.metadata["group"] in GROUPS for f in plan_fields())
    assert len(plan_fields()) >= 40


def test_the_cli_offers_every_field_as_a_flag():
    from editbench.cli import build_parser, flag_of

    run = build_parser()._subparsers._group_actions[0].choices["run"]
    flags = {s for action in run._actions for s in action.option_strings}
    assert {flag_of(f.name) for f in plan_fields()} <= flags
