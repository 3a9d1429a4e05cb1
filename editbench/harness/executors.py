"""Executors: where the runs of one command execute. Each run (a method with its config cell, one
edit order, its own folder) is a `Cell`; the executor is handed the cells and a function that runs
one cell and returns a failure line or None. The runner and the store never know which executor ran
them, so a report cannot tell the results apart.

- `LocalExecutor`: here, one after another (the default; needs nothing extra).
- `ProcessExecutor`: `jobs` worker processes on this machine (`jobs`), each running one cell at
  a time with the command's fixed thread count, so the numbers are those of the local executor.
- `RayExecutor`: each cell a Ray task with its own resource request, on a local Ray instance or a
  cluster (`address`, or `RAY_ADDRESS`); Ray is imported only here (`pip install -e '.[ray]'`).
  A task that dies (a worker killed by out-of-memory, say) is a failed cell; the others go on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from editbench.core import ConfigError, setting


@dataclass(frozen=True)
class Cell:
    """One run: a method, its config overrides, an edit order, the folder it writes, its name."""

    method: str
    folder: str
    label: str
    order: int = 0
    extra: dict = field(default_factory=dict)


# run_cell(*fixed, cell) -> a failure line or None; a module-level function (Ray ships it by name)
RunCell = Callable[..., "str | None"]


class LocalExecutor:
    name = "local"

    def run(self, cells: Sequence[Cell], run_cell: RunCell, *fixed) -> list[str]:
        return [line for line in (run_cell(*fixed, c) for c in cells) if line]


class ProcessExecutor:
    name = "process"

    def __init__(self, jobs: int, log: Callable[[str], None] | None = None) -> None:
        self.jobs, self.log = jobs, log or (lambda msg: None)

    def run(self, cells: Sequence[Cell], run_cell: RunCell, *fixed) -> list[str]:
        import concurrent.futures
        import multiprocessing

        # spawned, not forked: a fresh interpreter inherits no thread pool, lock or half-used RNG
        context = multiprocessing.get_context("spawn")
        failures = []
        with concurrent.futures.ProcessPoolExecutor(max_workers=min(self.jobs, len(cells)),
                                                    mp_context=context) as pool:
            pending = {pool.submit(run_cell, *fixed, cell): cell for cell in cells}
            self.log(f"{len(cells)} run(s) in {min(self.jobs, len(cells))} worker process(es): "
                     + ", ".join(c.label for c in cells))
            for future in concurrent.futures.as_completed(pending):
                cell = pending[future]
                try:
                    line = future.result()
                except Exception as exc:  # noqa: BLE001 - the worker itself died: that cell failed
                    line = f"{cell.label}: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
                self.log(f"{cell.label}: {'failed' if line else 'done'}")
                if line:
                    failures.append(line)
        return failures


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_task: float = 1.0, gpus_per_task: float = 0.0) -> None:
        if cpus_per_task <= 0 or gpus_per_task < 0:
            raise ConfigError(f"{setting('cpus_per_task')} must be > 0 and {setting('gpus_per_task')} >= 0 (got {cpus_per_task}, "
                              f"{gpus_per_task})")
        self.address, self.cpus, self.gpus = address, cpus_per_task, gpus_per_task

    def _ray(self):
        try:
            import ray
        except ImportError:
            raise ConfigError(f"{setting('executor')} ray needs Ray: pip install -e '.[ray]'") from None
        if not ray.is_initialized():
            # address None: RAY_ADDRESS if set, else a local instance on this machine's CPUs
            ray.init(address=self.address, include_dashboard=False)
        return ray

    def run(self, cells: Sequence[Cell], run_cell: RunCell, *fixed) -> list[str]:
        ray = self._ray()
        task = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)(run_cell)
        pending = {task.remote(*fixed, cell): cell for cell in cells}
        failures = []
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                cell = pending.pop(ref)
                try:
                    line = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - the task itself died: that cell failed
                    line = f"{cell.label}: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
                if line:
                    failures.append(line)
        return failures


def get_executor(name: str, address: str | None = None, cpus_per_task: float = 1.0,
                 gpus_per_task: float = 0.0, jobs: int = 1, log: Callable[[str], None] | None = None):
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    if name == "local":
        return LocalExecutor() if jobs == 1 else ProcessExecutor(jobs, log)
    if name == "ray":
        return RayExecutor(address, cpus_per_task, gpus_per_task)
    raise ConfigError(f"unknown executor '{name}' (valid: local, ray)")
