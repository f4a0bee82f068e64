"""The export's worker process: calls run there, their errors and warnings come back, it is reaped."""

from __future__ import annotations

import os
import signal
import warnings

import pytest
import torch
from test_async_export import _gone

from t1c.lightning.background import Worker, export_mode
from t1c.lightning.exporting import T1CExportError
from t1c.lightning.worker_process import RemoteTraceback, WorkerProcess, start_process


class NeedsArgs(Exception):
    """An exception that does not survive pickling (its constructor takes two arguments)."""

    def __init__(self, code: int, text: str):
        super().__init__(f"{code}: {text}")


def fail_export(step: int) -> None:
    raise T1CExportError(f"the export of step {step} failed")


def fail_unpicklable() -> None:
    raise NeedsArgs(7, "odd error")


def warn_and_return(value: int) -> int:
    warnings.warn(f"careful with {value}", UserWarning, stacklevel=2)
    return value + 1


def threads_and_sigint() -> tuple[int, bool]:
    return torch.get_num_threads(), signal.getsignal(signal.SIGINT) is signal.SIG_IGN


@pytest.fixture(scope="module")
def process():
    worker = WorkerProcess()
    yield worker
    worker.close()


def test_calls_run_in_the_process_with_one_thread_and_sigint_ignored(process):
    assert process.call(os.getpid) == process.process.pid != os.getpid()
    assert process.call(threads_and_sigint) == (1, True)
    assert process.call(sorted, [3, 1, 2]) == [1, 2, 3]


def test_an_export_error_comes_back_with_its_message_and_the_process_traceback(process):
    with pytest.raises(T1CExportError, match="the export of step 8 failed") as raised:
        process.call(fail_export, 8)
    assert isinstance(raised.value.__cause__, RemoteTraceback)
    assert "fail_export" in str(raised.value.__cause__)
    with pytest.raises(RuntimeError, match="NeedsArgs: 7: odd error"):  # not picklable: type and message kept
        process.call(fail_unpicklable)
    assert process.call(sorted, [2, 1]) == [1, 2]  # still serving


def test_warnings_come_back_and_unpicklable_calls_run_here_with_one_warning(process):
    with pytest.warns(UserWarning, match="careful with 4"):
        assert process.call(warn_and_return, 4) == 5
    here = os.getpid()
    with pytest.warns(UserWarning, match=r"unpicklable_calls.*<lambda> cannot be sent to the export process"):
        assert process.call(lambda: os.getpid()) == here
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per kind of call
        assert process.call(lambda: os.getpid()) == here


def test_a_killed_process_is_reported_and_every_process_is_reaped():
    worker = WorkerProcess()
    pid = worker.process.pid
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(RuntimeError, match=r"export process ended \(exit code -9\).*asynchronous='thread'"):
        worker.call(os.getpid)
    worker.close()
    assert _gone(pid)
    thread = Worker(WorkerProcess())
    pid = thread.process.process.pid
    thread.submit(lambda: thread.process.call(os.getpid)).result()
    thread.close()  # stops the thread, then the process
    assert thread.process is None and _gone(pid)


def test_modes_and_the_fallback_for_metrics_that_do_not_pickle():
    assert export_mode(True) == "thread" and export_mode(False) is None
    assert export_mode("thread") == "thread" and export_mode("process") == "process"
    with pytest.raises(ValueError, match="asynchronous='threads'.*'thread' or 'process'"):
        export_mode("threads")

    class LocalMetric:  # a local class does not pickle
        pass

    with pytest.warns(
        UserWarning, match=r"metrics=\.\.\.\) cannot be sent.*LocalMetric.*asynchronous='thread'"
    ):
        assert start_process(LocalMetric()) is None
