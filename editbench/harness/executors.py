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


# run_cell(*fixed, cell) -> a failure line or None; a module-level function (Ray ships it by name).
# With progress shown, ProcessExecutor calls run_cell(*fixed, cell, progress=queue) instead.
RunCell = Callable[..., "str | None"]


class ProgressRelay:
    """A progress bar in a worker process: each update goes to the parent's queue as (label, done,
    total); close sends (label, None, None). Has the update/close of the tqdm bar the runner takes."""

    def __init__(self, queue, label: str, total: int, done: int) -> None:
        self.queue, self.label, self.total, self.done = queue, label, total, done
        self.queue.put((label, done, total))

    def update(self, n: int = 1) -> None:
        self.done += n
        self.queue.put((self.label, self.done, self.total))

    def close(self) -> None:
        self.queue.put((self.label, None, None))


def relayed_bars(queue, label: str) -> Callable[[int, int], ProgressRelay]:
    """The runner's progress(total, done) factory for a worker whose parent shows the board."""
    return lambda total, done: ProgressRelay(queue, label, total, done)


class ProgressBoard:
    """One status line on a terminal: every running cell with its edits done of its total, redrawn
    as the workers report; cleared before a log line is printed."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.running: dict[str, tuple[int, int | None]] = {}

    def drain(self, queue) -> None:
        import queue as queue_module

        changed = False
        while True:
            try:
                label, done, total = queue.get_nowait()
            except (queue_module.Empty, EOFError, OSError):
                break
            self.record(label, done, total)
            changed = True
        if changed:
            self.draw()

    def record(self, label: str, done: int | None, total: int | None) -> None:
        if done is None:
            self.running.pop(label, None)
        else:
            self.running[label] = (done, total)

    def line(self) -> str:
        return " | ".join(f"{label} {done}/{total}" for label, (done, total) in self.running.items())

    def draw(self) -> None:
        import shutil

        width = shutil.get_terminal_size().columns - 1
        self.stream.write("\r" + self.line()[:width] + "\x1b[K")
        self.stream.flush()

    def clear(self) -> None:
        self.stream.write("\r\x1b[K")
        self.stream.flush()


class LocalExecutor:
    name = "local"

    def run(self, cells: Sequence[Cell], run_cell: RunCell, *fixed) -> list[str]:
        return [line for line in (run_cell(*fixed, c) for c in cells) if line]


class ProcessExecutor:
    name = "process"

    def __init__(self, jobs: int, log: Callable[[str], None] | None = None, board=None) -> None:
        # board: a ProgressBoard showing every running cell at once (run_cell must take progress=)
        self.jobs, self.log, self.board = jobs, log or (lambda msg: None), board

    def run(self, cells: Sequence[Cell], run_cell: RunCell, *fixed) -> list[str]:
        import concurrent.futures
        import contextlib
        import multiprocessing

        # spawned, not forked: a fresh interpreter inherits no thread pool, lock or half-used RNG
        context = multiprocessing.get_context("spawn")
        failures = []
        with contextlib.ExitStack() as stack:
            queue = stack.enter_context(context.Manager()).Queue() if self.board is not None else None
            pool = stack.enter_context(concurrent.futures.ProcessPoolExecutor(
                max_workers=min(self.jobs, len(cells)), mp_context=context))
            extra = {} if queue is None else {"progress": queue}
            pending = {pool.submit(run_cell, *fixed, cell, **extra): cell for cell in cells}
            self.log(f"{len(cells)} run(s) in {min(self.jobs, len(cells))} worker process(es): "
                     + ", ".join(c.label for c in cells))
            while pending:
                done, _ = concurrent.futures.wait(pending, timeout=0.5,
                                                  return_when=concurrent.futures.FIRST_COMPLETED)
                if queue is not None:
                    self.board.drain(queue)
                for future in done:
                    line = self._outcome(future, pending.pop(future))
                    if line:
                        failures.append(line)
            if self.board is not None:
                self.board.clear()
        return failures

    def _outcome(self, future, cell: Cell) -> str | None:
        """The cell's failure line or None, logged (above the board) as it finishes."""
        try:
            line = future.result()
        except Exception as exc:  # noqa: BLE001 - the worker itself died: that cell failed
            line = f"{cell.label}: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        if self.board is not None:
            self.board.clear()
        self.log(f"{cell.label}: {'failed' if line else 'done'}")
        return line


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
                 gpus_per_task: float = 0.0, jobs: int = 1, log: Callable[[str], None] | None = None,
                 board=None):
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    if name == "local":
        return LocalExecutor() if jobs == 1 else ProcessExecutor(jobs, log, board)
    if name == "ray":
        return RayExecutor(address, cpus_per_task, gpus_per_task)
    raise ConfigError(f"unknown executor '{name}' (valid: local, ray)")
