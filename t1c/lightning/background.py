"""Export jobs off the training thread, one at a time and in order, like ``AsyncCheckpointIO``.

A :class:`Worker` runs the jobs the export callback submits (measuring a snapshot, writing
and reading back files) on one background thread, so they finish in the order of the
checkpoints that made them. The callback asks it at each hook whether it is busy, takes the
error of a failed job there (on the training thread), waits for it at the end of a fit, and
abandons what has not started when the fit fails.

Two modes (``T1CExport(asynchronous=...)``, :func:`export_mode`). ``"thread"`` (the default):
the thread does all the work; it overlaps training only as far as the work releases the GIL
(large torch operations, hashing, HDF5 I/O), and for small networks, whose many small
operations hold it, it mostly takes the work off the training thread's hooks. ``"process"``:
the thread keeps the order and the bookkeeping, and hands the costly calls (the measurement, the
write and the validated read-back) to a :class:`~t1c.lightning.worker_process.WorkerProcess`,
waiting for each without holding the GIL, so they run beside training on another core.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from .worker_process import WorkerProcess

#: The background modes of ``T1CExport(asynchronous=...)``; ``True`` means :data:`DEFAULT_MODE`.
MODES = ("thread", "process")
#: The faster mode measured by ``benchmarks/bench_callback.py`` (docs/export_callback.md).
DEFAULT_MODE = "thread"


def export_mode(asynchronous: bool | str) -> str | None:
    """``T1CExport(asynchronous=...)`` as a mode of :data:`MODES`, or None (synchronous).

    Raises:
        ValueError: it is none of ``True``, ``False``, ``"thread"``, ``"process"``.
    """
    if isinstance(asynchronous, bool):
        return DEFAULT_MODE if asynchronous else None
    if asynchronous in MODES:
        return asynchronous
    raise ValueError(
        f"T1CExport(asynchronous={asynchronous!r}): must be True (the default mode, {DEFAULT_MODE!r}), "
        f"False (synchronous), 'thread' or 'process'"
    )


class Worker:
    """One background thread running submitted jobs in the order they came.

    Args:
        process: the worker process its jobs hand their costly calls to (closed with it), or None.
    """

    def __init__(self, process: WorkerProcess | None = None) -> None:
        self.pool: ThreadPoolExecutor | None = None  # started at the first job
        self.futures: list[Future] = []  # jobs not yet collected, oldest first
        self.process = process

    def submit(self, job: Callable[[], Any]) -> Future:
        """Run ``job`` after every job submitted before it; its future."""
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="t1c-export")
        future = self.pool.submit(job)
        self.futures.append(future)
        return future

    @property
    def busy(self) -> bool:
        """Whether a submitted job has not finished yet."""
        return any(not f.done() for f in self.futures)

    def check(self) -> None:
        """Collect the finished jobs; raise the first one's error (the export's own exception)."""
        if not self.futures:  # the common case at a training batch's hooks
            return
        done: list[Future] = []
        running: list[Future] = []
        for future in self.futures:  # asked once each: a job finishing meanwhile is never lost
            (done if future.done() else running).append(future)
        self.futures = running
        raise_first(done)

    def wait(self) -> None:
        """Wait for every job, then raise the first one's error, if any."""
        futures, self.futures = self.futures, []
        wait(futures)
        raise_first(futures)

    def settle(self) -> None:
        """Wait for every job and keep their errors for the next :meth:`check`."""
        wait(self.futures)

    def abandon(self) -> None:
        """Drop the jobs not started, wait for the running one (it leaves no temporary file) and
        forget every error: the fit is already ending with its own."""
        for future in self.futures:
            future.cancel()
        self.settle()
        self.futures = []

    def close(self, wait: bool = True) -> None:
        """Abandon what is left and stop the thread, then the process (reaped: no zombie;
        ``wait=False``: reaped on a daemon thread, when every job is done)."""
        self.abandon()
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None
        if self.process is not None:
            self.process.close(wait=wait)
            self.process = None


def raise_first(futures: list[Future]) -> None:
    """Raise the exception of the first finished future that failed (cancelled ones are skipped)."""
    for future in futures:
        error = None if future.cancelled() else future.exception(timeout=0)
        if error is not None:
            raise error
