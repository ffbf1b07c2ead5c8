"""Run any core function or generator on a QThread, so the window never freezes.

The house pattern: long work is a core generator that yields small progress objects and
returns its result. ``Worker`` runs it on its own thread and re-emits, in the GUI thread:

- ``progressed(item)`` for every yielded item,
- exactly one of ``succeeded(result)``, ``failed(message)`` or ``stopped()``,
- then ``finished()``.

``request_stop()`` takes effect between two yields (the generator is closed, so its
``finally`` blocks run). A plain function (not a generator) simply succeeds with its
return value. Workers never touch widgets: connect their signals to slots instead.

Example::

    worker = start_worker(iter_training, config)
    worker.progressed.connect(loss_plot.add_point)
    worker.succeeded.connect(self._on_training_succeeded)
    worker.failed.connect(dialogs.error_message)
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QCoreApplication, QDeadlineTimer, QObject, Qt, QThread, Signal, Slot

from stoneseg_core.errors import StonesegError, TrainingCancelled

log = logging.getLogger(__name__)


class _Runner(QObject):
    """Lives on the worker thread; its signals are relayed by ``Worker`` to the GUI thread."""

    progressed = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str)
    stopped = Signal()
    done = Signal()

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict, stop: threading.Event):
        super().__init__()
        self._fn, self._args, self._kwargs, self._stop = fn, args, kwargs, stop

    @Slot()
    def run(self) -> None:
        try:
            self._run()
        finally:
            app = QCoreApplication.instance()
            if app is not None:
                self.moveToThread(app.thread())  # so the GUI thread may delete us safely
            self.done.emit()

    def _run(self) -> None:
        try:
            if self._stop.is_set():
                self.stopped.emit()
                return
            result = self._fn(*self._args, **self._kwargs)
            if inspect.isgenerator(result):
                gen = result
                while True:
                    if self._stop.is_set():
                        gen.close()
                        self.stopped.emit()
                        return
                    try:
                        item = next(gen)
                    except StopIteration as stop:
                        result = stop.value
                        break
                    self.progressed.emit(item)
            self.succeeded.emit(result)
        except TrainingCancelled:
            self.stopped.emit()
        except StonesegError as exc:
            log.info("Background task failed: %s", exc)
            self.failed.emit(str(exc))
        except MemoryError:
            log.exception("Background task ran out of memory")
            self.failed.emit(
                "The computer ran out of memory. Close other programs or use smaller images."
            )
        except Exception as exc:  # noqa: BLE001 - the one place an unexpected error becomes a message
            log.exception(
                "Unexpected error in background task %s", getattr(self._fn, "__name__", self._fn)
            )
            self.failed.emit(f"Unexpected error: {exc.__class__.__name__}: {exc}")


class Worker(QObject):
    """One background job. Create it, connect its signals, then ``start()`` it."""

    progressed = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str)
    stopped = Signal()
    finished = Signal()

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self._stop = threading.Event()
        self._thread: QThread | None = None
        self._runner: _Runner | None = None
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._running = False
        self._done = False
        self.name = getattr(fn, "__name__", "task")

    @property
    def is_running(self) -> bool:
        return self._running

    @property
    def is_done(self) -> bool:
        return self._done

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def start(self) -> Worker:
        if self._thread is not None:
            raise RuntimeError("A Worker can only be started once.")
        self._thread = QThread()
        self._thread.setObjectName(f"stoneseg-{self.name}")
        self._runner = _Runner(self._fn, self._args, self._kwargs, self._stop)
        self._runner.moveToThread(self._thread)
        self._thread.started.connect(self._runner.run)
        # signal-to-signal: queued into this object's (the GUI) thread
        self._runner.progressed.connect(self.progressed)
        self._runner.succeeded.connect(self.succeeded)
        self._runner.failed.connect(self.failed)
        self._runner.stopped.connect(self.stopped)
        self._runner.done.connect(self._thread.quit, Qt.ConnectionType.DirectConnection)
        self._thread.finished.connect(self._on_thread_finished)
        _LIVE.add(self)
        self._running = True
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask the job to stop at its next yield."""
        self._stop.set()

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Block until the thread has ended (for shutdown and tests). True if it ended."""
        if self._thread is None:
            return True
        return self._thread.wait(QDeadlineTimer(timeout_ms))

    @Slot()
    def _on_thread_finished(self) -> None:
        self._running = False
        self._done = True
        _LIVE.discard(self)
        self.finished.emit()
        self._runner = None
        if self._thread is not None:
            self._thread.deleteLater()
            self._thread = None


_LIVE: set[Worker] = set()  # keeps running workers (and their threads) alive


def start_worker(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Worker:
    """Create and start a ``Worker``. Connect its signals right after (events are queued)."""
    return Worker(fn, *args, **kwargs).start()


def running_workers() -> list[Worker]:
    return [w for w in _LIVE if w.is_running]


def stop_all_workers(timeout_ms: int = 10_000) -> bool:
    """Ask every running worker to stop and wait for them; True if all ended in time."""
    workers = list(_LIVE)
    for worker in workers:
        worker.request_stop()
    return all(worker.wait(timeout_ms) for worker in workers)
