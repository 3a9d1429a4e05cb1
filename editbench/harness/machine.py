"""What a number depends on besides the code, the model and the data: the CPU and its float kernels.
Recorded in every results file (`machine`) and every world's build report."""
from __future__ import annotations

import os
import platform
import resource
import sys

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


# --------------------------------------------------------------------------- peak memory of a run


def reset_peak_memory(device: torch.device) -> bool:
    """Start a fresh peak for this run, so methods run in one process each get their own figure.

    Linux resets the peak resident set size (VmHWM) on writing 5 to /proc/self/clear_refs; elsewhere
    the process-wide peak (ru_maxrss) is all there is, and the results say so.
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _vm_hwm_kb() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_memory_mb(device: torch.device, since_reset: bool = False) -> dict:
    hwm_kb: float | None = _vm_hwm_kb() if since_reset else None
    scope = "run"
    if hwm_kb is None:
        rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        hwm_kb, scope = (rss_kb if sys.platform != "darwin" else rss_kb / 1024), "process"
    cuda = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"cpu_rss_mb": round(hwm_kb / 1024, 1), "cuda_max_allocated_mb": cuda, "cpu_rss_scope": scope}
