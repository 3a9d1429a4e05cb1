"""What a number depends on besides the code, the model and the data: the CPU and its float kernels.
Recorded in every results file (`machine`) and every world's build report."""
from __future__ import annotations

import os
import platform

import torch

# environment settings that choose float kernels (and so the last bits of a number): MKL's code path and
# ATen's vector width (the thread count, the other one, is `threads`: the run sets it, whatever the
# environment says)
KERNEL_SETTINGS = ("MKL_CBWR", "ATEN_CPU_CAPABILITY")


def cpu_model() -> str | None:
    """The CPU's model name (Linux), for explaining numbers that differ between machines."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_record(device: str) -> dict:
    """The machine a run scored on: threads, ATen's kernels in use, CPU, the kernel settings."""
    return {"threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "device": device, "cpu": cpu_model(), "arch": platform.machine(),
            "kernel_env": {k: os.environ[k] for k in KERNEL_SETTINGS if k in os.environ}}
