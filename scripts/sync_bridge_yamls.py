"""Keep the EasyEdit bridge's world YAMLs (editbench/hparams/easyedit/ALGO/world*.yaml) on the values
of editbench's own YAMLs they mirror (`provenance.values_from`), so `easyedit:ALGO` and the native
method run the same settings after every `make tune`. Only the shared keys are copied, in place
(comments and EasyEdit's own keys stay as they are); a twin for a world size (micro, large) is created
from the default one when the native method has that size's YAML and the bridge has none.

  python scripts/sync_bridge_yamls.py          # rewrite what differs; prints each file it changed
  python scripts/sync_bridge_yamls.py --check  # exit 1 naming the twins that differ (what a test runs)
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

HPARAMS = Path(__file__).resolve().parents[1] / "editbench" / "hparams"
NATIVE = {"ROME": "rome", "MEMIT": "memit", "AlphaEdit": "alphaedit", "GRACE": "grace"}
# editbench key -> EasyEdit key, for every setting both implementations read
LOCATE_THEN_EDIT = {"layers": "layers", "v_num_grad_steps": "v_num_grad_steps", "v_lr": "v_lr",
                    "v_weight_decay": "v_weight_decay", "clamp_norm_factor": "clamp_norm_factor",
                    "kl_factor": "kl_factor", "mom2_adjustment": "mom2_adjustment",
                    "mom2_update_weight": "mom2_update_weight", "nullspace_threshold": "nullspace_threshold",
                    "l2": "L2", "context_template_lengths": "context_template_length_params"}
SHARED = {"ROME": LOCATE_THEN_EDIT, "MEMIT": LOCATE_THEN_EDIT, "AlphaEdit": LOCATE_THEN_EDIT,
          "GRACE": {"eps": "eps", "edit_lr": "edit_lr", "n_iter": "n_iter", "val_init": "val_init",
                    "eps_expand": "eps_expand"}}


def derived(algo: str, native: dict) -> dict:
    """EasyEdit keys whose value is built from an editbench one: GRACE names its codebook's module
    (`inner_params`) where editbench names the block."""
    if algo == "GRACE" and "layer" in native:
        return {"inner_params": [f"model.layers[{native['layer']}].mlp.down_proj.weight"]}
    return {}


def expected(algo: str, twin: Path) -> tuple[dict, dict]:
    """(the twin's values, what they should be) for the shared keys the twin holds."""
    values = yaml.safe_load(twin.read_text())
    native = yaml.safe_load((HPARAMS.parent.parent / values["provenance"]["values_from"]).read_text())
    want = {theirs: native[ours] for ours, theirs in SHARED[algo].items() if ours in native and theirs in values}
    want.update({k: v for k, v in derived(algo, native).items() if k in values})
    return {k: values[k] for k in want}, want


def _dump(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def rewrite(twin: Path, want: dict) -> None:
    """Each top-level `key: value` (block lists included) replaced by `key: <flow value>`."""
    lines, out, skip = twin.read_text().splitlines(), [], False
    for line in lines:
        key = re.match(r"^([A-Za-z_0-9]+):", line)
        if skip and (line.startswith(("- ", "  ")) and not key):
            continue
        skip = False
        if key and key.group(1) in want:
            out.append(f"{key.group(1)}: {_dump(want[key.group(1)])}")
            skip = True
            continue
        out.append(line)
    twin.write_text("\n".join(out) + "\n")


SIZES = ("micro", "large")  # the world sizes that may have YAMLs of their own (world-<size>.yaml)


def size_twins() -> list[Path]:
    """Twins to create: the native method has world-<size>.yaml and the bridge only world.yaml (the
    bridge would otherwise run the default world's values on that world)."""
    made = []
    for algo, method in NATIVE.items():
        default = HPARAMS / "easyedit" / algo / "world.yaml"
        for size in SIZES:
            twin = HPARAMS / "easyedit" / algo / f"world-{size}.yaml"
            if (HPARAMS / method / f"world-{size}.yaml").exists() and not twin.exists() and default.exists():
                text = default.read_text().replace(f"editbench/hparams/{method}/world.yaml",
                                                   f"editbench/hparams/{method}/world-{size}.yaml")
                twin.write_text(text)
                made.append(twin)
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    if not args.check:
        for path in size_twins():
            print(f"created {path}")
    stale = []
    # the twins of NATIVE's algorithms; other bridge YAMLs (ULTRAEDIT) hold their own values
    for algo, twin in sorted((a, t) for a in NATIVE for t in (HPARAMS / "easyedit" / a).glob("world*.yaml")):
        have, want = expected(algo, twin)
        if have != want:
            stale.append(twin)
            if not args.check:
                rewrite(twin, want)
                print(f"synced {twin}")
    if args.check and stale:
        print("out of sync with editbench's YAMLs: " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
