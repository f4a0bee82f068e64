"""A worker process for the export's work that holds the GIL: measuring, writing, reading back.

The export thread (:class:`t1c.lightning.background.Worker`) keeps the order of the jobs and
the ledger's bookkeeping; the calls that cost (the quantized run of the validation data,
:func:`t1c.ir.write` and the validated read-back) go through :meth:`WorkerProcess.call` to
one process per fit, while the export thread waits on a pipe without holding the GIL. The
process is forked, as a DataLoader's workers are on Linux: it starts in milliseconds with
everything imported (no re-import of the user's script, which ``spawn`` and ``forkserver``
would run again), and sets torch to one thread, so no OpenMP pool the parent used is entered.
It ignores SIGINT: a Ctrl-C stops the fit, which waits for the call in flight (its file is
written atomically) or abandons the rest. A call whose function or arguments do not pickle
runs on the export thread instead, with one warning naming it.
"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from typing import Any

from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

#: Seconds :meth:`WorkerProcess.close` waits for the process to stop before it is terminated.
STOP_TIMEOUT = 10.0


class RemoteTraceback(Exception):
    """The traceback of an exception raised in the worker process (the ``__cause__`` of its copy)."""

    def __str__(self) -> str:
        return "\n" + str(self.args[0])


class WorkerProcess:
    """One forked process running picklable calls, one at a time, for one fit."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("fork")
        self.connection, child = context.Pipe()
        self.process = context.Process(
            target=serve, args=(child, self.connection), name="t1c-export", daemon=True
        )
        self.process.start()
        child.close()
        # one call at a time: the export thread's, or the training thread's on resume
        self.lock = threading.Lock()
        self.fallbacks: set[str] = set()  # what was run here instead (warned once each)

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` run in the process; its result, or its exception raised here
        (with the process's traceback as its cause). Run here when it does not pickle.

        Raises:
            RuntimeError: the process ended (killed) before it answered.
        """
        try:
            message = pickle.dumps((function, args), protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as err:
            self.fall_back(function, err)
            return function(*args)
        try:
            with self.lock:
                self.connection.send_bytes(message)
                ok, value, caught = self.connection.recv()
        except (EOFError, OSError):
            self.process.join(timeout=1.0)
            raise RuntimeError(
                f"T1CExport's export process ended (exit code {self.process.exitcode}) before finishing "
                f"{getattr(function, '__qualname__', type(function).__name__)}; pass "
                "T1CExport(asynchronous='thread') if it keeps being killed (e.g. out of memory)"
            ) from None
        for text, category in caught:
            warnings.warn(text, category, stacklevel=2)
        if not ok:
            error, trace = value
            error.__cause__ = RemoteTraceback(trace)
            raise error
        return value

    def fall_back(self, function: Callable[..., Any], err: Exception) -> None:
        """Warn once per kind of call that it runs on the export thread, naming what did not pickle."""
        name = getattr(function, "__qualname__", type(function).__name__)
        if name in self.fallbacks:
            return
        self.fallbacks.add(name)
        warnings.warn(
            f"T1CExport(asynchronous='process'): {name} cannot be sent to the export process ({err}); "
            "it runs on the export thread instead, beside training (define the object at module level to "
            "make it picklable, or pass T1CExport(asynchronous='thread') to silence this)",
            stacklevel=3,
        )

    def close(self, wait: bool = True) -> None:
        """Stop the process and reap it (terminated if it does not stop in :data:`STOP_TIMEOUT`).

        ``wait=False``: return at once and reap it on a daemon thread; a process exits in about
        as long as a small export takes (its memory is torn down), which a fit need not wait for.
        """
        try:
            self.connection.send_bytes(b"")
        except OSError:  # it already ended
            pass
        if wait:
            self.reap()
        else:
            threading.Thread(target=self.reap, name="t1c-export-reaper", daemon=True).start()

    def reap(self) -> None:
        """Wait for the process to stop (terminate it after :data:`STOP_TIMEOUT`) and release it."""
        self.process.join(timeout=STOP_TIMEOUT)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        self.connection.close()
        self.process.close()


def serve(connection: Any, parent_end: Any) -> None:
    """The process's loop: run each call received, answer ``(ok, result or (error, traceback),
    warnings)``, until an empty message or the parent's end closes."""
    parent_end.close()  # so that the parent's exit ends the loop below
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_num_threads(1)
    while True:
        try:
            message = connection.recv_bytes()
        except (EOFError, OSError):
            return
        if not message:
            return
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                function, args = pickle.loads(message)
                reply: tuple[bool, Any] = (True, function(*args))
            except Exception as err:
                reply = (False, (portable(err), traceback.format_exc()))
        found = [(str(w.message), w.category) for w in caught]
        try:
            try:
                connection.send((*reply, found))
            except (pickle.PicklingError, TypeError, AttributeError) as err:  # a result that does not pickle
                connection.send((False, (portable(err), traceback.format_exc()), found))
        except OSError:  # the parent is gone: its call ended with it
            return


def portable(error: BaseException) -> BaseException:
    """``error`` if it survives pickling, else a RuntimeError with its type and message."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


def start_process(metrics: Any) -> WorkerProcess | None:
    """A worker process for one fit, or None when ``T1CExport(asynchronous="process")`` cannot
    use one (then its export thread does all the work, as ``"thread"`` does), saying why once:
    not on Linux (no safe fork), or the ``metrics`` the process would receive do not pickle."""
    suffix = "the export thread does all the work, as with T1CExport(asynchronous='thread')"
    if sys.platform != "linux":
        rank_zero_info(f"T1CExport: export processes are forked on Linux only; {suffix}")
        return None
    try:
        pickle.dumps(metrics)
    except (pickle.PicklingError, TypeError, AttributeError) as err:
        rank_zero_warn(
            f"T1CExport(metrics=...) cannot be sent to the export process ({err}); {suffix} "
            "(define the metric at module level, or pass asynchronous='thread' to silence this)"
        )
        return None
    return WorkerProcess()
