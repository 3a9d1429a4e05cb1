#!/usr/bin/env bash
# The GPU check a lent machine runs in a few minutes (issue 17): the micro world's suite, every
# editor, on cuda in float32 and bfloat16 and on the CPU, compared number by number with
# `editbench regress --baseline` (float32 vs CPU with the regression gate's tolerances; bfloat16
# reported), peak CUDA memory per method, with two or more GPUs a --device-map balanced run against
# the one-GPU run, then scripts/gpu_check.py (batched z, frozen prefix).
# Without CUDA it says so and exits 0.
#   usage: scripts/gpu_check.sh [OUT_DIR]      (needs the micro and default worlds in $EDITBENCH_CACHE)
set -u
out=${1:-runs/gpu-check}
py=${PYTHON:-python3}
if ! $py -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)" 2>/dev/null; then
  echo "gpu_check: no CUDA device here; skipped"
  exit 0
fi
mkdir -p "$out"
suite=(--method all --world micro --edits 20 --checkpoints 20 --seed 0 --quiet --overwrite)
status=0
for spec in "cpu float32" "cuda float32" "cuda bfloat16"; do
  set -- $spec
  start=$SECONDS
  $py -m editbench run "${suite[@]}" --device "$1" --dtype "$2" --out "$out/$1-$2" > "$out/$1-$2.txt" 2>&1 || status=1
  echo "$1 $2: $((SECONDS - start)) s" | tee -a "$out/times.txt"
done
gpus=$($py -c "import torch; print(torch.cuda.device_count())")
if [ "$gpus" -ge 2 ]; then  # the model split across the GPUs by accelerate: the same numbers as on one
  start=$SECONDS
  $py -m editbench run "${suite[@]}" --device-map balanced --out "$out/cuda-split" > "$out/cuda-split.txt" 2>&1 || status=1
  echo "cuda split over $gpus GPUs: $((SECONDS - start)) s" | tee -a "$out/times.txt"
  echo "== device_map balanced over $gpus GPUs against one GPU"
  $py -m editbench regress "$out/cuda-split" --baseline "$out/cuda-float32" | tee "$out/split-vs-one.md" || status=1
else
  echo "one GPU: the device_map split run needs two or more; skipped"
fi
echo "== cuda float32 against cpu float32 (regression-gate tolerances)"
$py -m editbench regress "$out/cuda-float32" --baseline "$out/cpu-float32" | tee "$out/float32-vs-cpu.md" || status=1
echo "== final metrics per method: cpu float32 | cuda float32 | cuda bfloat16, and peak CUDA memory"
$py - "$out" <<'PY'
import json, pathlib, sys
root = pathlib.Path(sys.argv[1])
keys = ("reliability", "generalization", "locality")
for method in sorted(p.name for p in (root / "cpu-float32").iterdir() if (p / "results.json").is_file()):
    cells, peak = [], []
    for run in ("cpu-float32", "cuda-float32", "cuda-bfloat16"):
        r = json.loads((root / run / method / "results.json").read_text())
        cp = r["checkpoints"][-1]
        cells.append(" ".join(f"{cp[k]:.3f}" if cp.get(k) is not None else "-" for k in keys)
                     + f" exam {cp['general']['accuracy']:.3f}")
        if run.startswith("cuda"):
            peak.append(f"{r['memory']['cuda_max_allocated_mb'] or 0:.0f}")
    print(f"{method:11s} " + " | ".join(cells) + f" | peak CUDA MB {'/'.join(peak)}")
PY
if [ "${GPU_CHECK_SUITE_ONLY:-0}" != 1 ]; then
  $py scripts/gpu_check.py --out "$out" || status=1
fi
exit $status
