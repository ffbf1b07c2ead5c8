"""The generic worker: any core generator or function on a QThread."""

from __future__ import annotations

import threading

import pytest

from stoneseg_core.errors import DataError
from stoneseg_gui.workers import Worker, running_workers, start_worker


def counting(n: int):
    total = 0
    for i in range(n):
        total += i
        yield i
    return total


def test_generator_progress_and_return_value_arrive_in_order(qtbot) -> None:
    seen: list[object] = []
    worker = Worker(counting, 5)
    worker.progressed.connect(seen.append)
    worker.succeeded.connect(lambda result: seen.append(("result", result)))
    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.start()
    assert seen == [0, 1, 2, 3, 4, ("result", 10)]
    assert worker.is_done and not worker.is_running
    assert worker not in running_workers()


def test_plain_function_succeeds_with_its_value(qtbot) -> None:
    worker = start_worker(lambda a, b: a * b, 6, b=7)
    with qtbot.waitSignal(worker.succeeded, timeout=5000) as blocker:
        pass
    assert blocker.args == [42]


def test_core_errors_become_their_message_and_others_are_named(qtbot) -> None:
    def fails():
        raise DataError("Training needs at least two labelled images.")
        yield  # pragma: no cover

    worker = start_worker(fails)
    with qtbot.waitSignal(worker.failed, timeout=5000) as blocker:
        pass
    assert blocker.args == ["Training needs at least two labelled images."]

    worker = start_worker(lambda: 1 / 0)
    with qtbot.waitSignal(worker.failed, timeout=5000) as blocker:
        pass
    assert "ZeroDivisionError" in blocker.args[0]


def test_stop_takes_effect_between_yields_and_closes_the_generator(qtbot) -> None:
    gate = threading.Event()
    closed = threading.Event()
    produced: list[int] = []

    def slow():
        try:
            for i in range(100):
                produced.append(i)
                yield i
                gate.wait(5)
        finally:
            closed.set()

    worker = Worker(slow)
    results: list[object] = []
    worker.succeeded.connect(results.append)
    with qtbot.waitSignal(worker.progressed, timeout=5000):
        worker.start()
    worker.request_stop()
    with qtbot.waitSignals([worker.stopped, worker.finished], timeout=5000):
        gate.set()
    assert closed.is_set()
    assert results == []
    assert len(produced) <= 2


def test_a_worker_starts_only_once(qtbot) -> None:
    worker = start_worker(counting, 1)
    with pytest.raises(RuntimeError):
        worker.start()
    assert worker.wait(5000)


def test_a_job_that_takes_should_stop_is_given_the_stop_flag_and_ends_itself(qtbot) -> None:
    gate = threading.Event()

    def checks(n: int, should_stop=None):
        done = 0
        for i in range(n):
            if should_stop():
                return ("stopped after", done)
            done += 1
            yield i
            gate.wait(5)
        return ("all", done)

    worker = Worker(checks, 100)
    results: list[object] = []
    stopped: list[bool] = []
    worker.succeeded.connect(results.append)
    worker.stopped.connect(lambda: stopped.append(True))
    with qtbot.waitSignal(worker.progressed, timeout=5000):
        worker.start()
    worker.request_stop()
    with qtbot.waitSignal(worker.finished, timeout=5000):
        gate.set()
    assert stopped == []  # not closed: the job returned what it had
    assert results and results[0][0] == "stopped after" and results[0][1] <= 2


def test_cyclic_garbage_is_freed_on_the_gui_thread_not_on_a_worker(qtbot) -> None:
    # A QObject freed by the collector on a worker thread deadlocked the app (its destructor
    # waits for the GIL the worker holds). Garbage made here must die here, whatever the
    # worker allocates meanwhile.
    import gc

    freed_on: list[str] = []

    class Cyclic:
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            freed_on.append(threading.current_thread().name)

    def churn() -> int:  # lots of container allocations: enough to trigger collections
        junk = []
        for i in range(200_000):
            junk.append([i])
            if len(junk) > 1000:
                junk.clear()
        return 1

    worker = start_worker(churn)
    assert not gc.isenabled()  # automatic collection off: a GUI-thread timer collects
    for _ in range(2000):  # past the collector's threshold (700 new containers)
        Cyclic()
    with qtbot.waitSignal(worker.finished, timeout=30_000):
        pass
    qtbot.waitUntil(lambda: len(freed_on) == 2000, timeout=10_000)
    assert set(freed_on) == {threading.main_thread().name}


def test_a_job_whose_outcome_arrived_no_longer_holds_the_next_one_back(qtbot) -> None:
    """Its thread may still be ending when ``succeeded`` (or ``failed``) is delivered: the
    job is over for the user then, and another may start (the window's Ctrl+P right after a
    prediction was refused as "another task is running")."""

    def job(fail: bool):
        yield 1
        if fail:
            raise DataError("bad photo")
        return "done"

    for fail, signal in ((False, "succeeded"), (True, "failed")):
        seen = {}
        worker = Worker(job, fail)

        def on_outcome(*_args, w=worker, seen=seen):
            seen["working"], seen["running"] = w.is_working, w.is_running

        getattr(worker, signal).connect(on_outcome)
        assert not worker.is_working
        worker.start()
        assert worker.is_working
        qtbot.waitUntil(lambda seen=seen: "working" in seen, timeout=5000)
        # delivered from the drain that ends the worker only after its slots have run
        assert seen == {"working": False, "running": True}
        qtbot.waitUntil(lambda w=worker: w.is_done, timeout=5000)
        assert not worker.is_working and not worker.is_running
