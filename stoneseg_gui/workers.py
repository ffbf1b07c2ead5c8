"""Run any core function or generator on a QThread, so the window never freezes.

The house pattern: long work is a core generator that yields small progress objects and
returns its result. ``Worker`` runs it on its own QThread and emits, in the GUI thread
(collected from a queue every ``POLL_MS``; the worker thread itself never calls Qt):

- ``progressed(item)`` for every yielded item,
- exactly one of ``succeeded(result)``, ``failed(message)`` or ``stopped()``,
- then ``finished()``.

Stopping: ``request_stop()`` sets the worker's one stop flag (a ``threading.Event``);
nothing else stops a job. A job that takes a ``should_stop`` parameter (as the core's
``iter_training``, ``iter_segment_folder``, ``iter_grains_folder`` do) is given the flag
as that callable, asks it at its own checkpoints (a batch, a tile, a photo) and ends
itself, returning what it has (the best model so far, the photos done): the worker
reports ``succeeded`` with it and never closes such a job. Any other generator is closed
at its next yield (so its ``finally`` blocks run) and the worker reports ``stopped``.
A plain function (not a generator) simply succeeds with its return value. Workers never
touch widgets: connect their signals to slots instead.

Example::

    worker = start_worker(iter_training, config)
    worker.progressed.connect(loss_plot.add_point)
    worker.succeeded.connect(self._on_training_succeeded)
    worker.failed.connect(dialogs.error_message)
"""

from __future__ import annotations

import inspect
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from pyqtgraph.util.garbage_collector import GarbageCollector
from PySide6.QtCore import QDeadlineTimer, QObject, QThread, QTimer, Signal, Slot

from stoneseg_core.errors import StonesegError

log = logging.getLogger(__name__)


class _Thread(QThread):
    """A QThread that runs one Python callable and touches no Qt object while doing so.

    The worker thread never calls into Qt (no signal emitted, no moveToThread): Qt calls
    made there hold the Python GIL while waiting for Qt's internal mutexes, and the GUI
    thread takes those mutexes and then waits for the GIL (destroying a QObject asks
    PySide for Python overrides). That lock-order inversion froze the whole application
    once (a worker's final moveToThread against an animation being deleted). Results go
    through a plain queue instead, which the GUI thread drains on a timer.
    """

    def __init__(self, job: Callable[[], None]):
        super().__init__()
        self._job = job

    def run(self) -> None:
        self._job()


POLL_MS = 25  # how often the GUI thread collects a worker's progress (about 40 times a second)

# Python's cyclic garbage collector runs on whichever thread happens to allocate. Run on a
# worker, it can free a QObject of the GUI (a closed dock, a dialog's widgets), and the
# QObject's destructor then waits for the GIL that very thread holds: the worker hung
# forever inside a torch op (seen under load, in the fine-tuning GUI test). pyqtgraph's
# GarbageCollector turns the automatic collection off and collects from a GUI-thread timer
# instead, so Qt objects are only ever freed there. Installed when the first worker starts.
_GUI_GC: GarbageCollector | None = None


def collect_garbage_on_gui_thread() -> None:
    """From the GUI thread: cyclic garbage is collected there, never on a worker thread."""
    global _GUI_GC
    if _GUI_GC is None:
        _GUI_GC = GarbageCollector(interval=1.0)


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
        self._thread: _Thread | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._timer: QTimer | None = None
        self._fn, self._args, self._kwargs = fn, args, kwargs
        # a job that checks for itself gets the stop flag and is left to end on its own
        self._stops_itself = _takes_should_stop(fn, args, kwargs)
        if self._stops_itself:
            self._kwargs = {**kwargs, "should_stop": self._stop.is_set}
        self._running = False
        self._done = False
        self._outcome_seen = False
        self._delivered = False  # its result, error or stop has reached the GUI thread
        self.name = getattr(fn, "__name__", "task")

    @property
    def is_running(self) -> bool:
        return self._running

    @property
    def is_working(self) -> bool:
        """Started and its outcome not yet delivered. Once ``succeeded``, ``failed`` or
        ``stopped`` has been emitted the job is over for the user, though its thread may take a
        moment more to end (``is_running`` until then): the next job may start."""
        return self._running and not self._delivered

    @property
    def is_done(self) -> bool:
        return self._done

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def start(self) -> Worker:
        if self._thread is not None:
            raise RuntimeError("A Worker can only be started once.")
        collect_garbage_on_gui_thread()
        self._thread = _Thread(self._run)
        self._thread.setObjectName(f"stoneseg-{self.name}")
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._drain)
        _LIVE.add(self)
        self._running = True
        self._timer.start()
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask the job to stop: at its next check of ``should_stop``, else its next yield."""
        self._stop.set()

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Block until the thread has ended (for shutdown and tests). True if it ended.

        The job's last signals are delivered by the next pass of the event loop.
        """
        if self._thread is None:
            return True
        return self._thread.wait(QDeadlineTimer(timeout_ms))

    def deliver(self) -> None:
        """From the GUI thread: deliver at once what the job has reported so far (after
        ``wait``, for a caller that cannot return to the event loop first: quitting)."""
        if self._thread is not None:
            self._drain()

    # ------------------------------------------------------------------ worker thread
    def _run(self) -> None:
        put = self._queue.put
        try:
            if self._stop.is_set():
                put(("stopped", None))
                return
            result = self._fn(*self._args, **self._kwargs)
            if inspect.isgenerator(result):
                gen = result
                while True:
                    if self._stop.is_set() and not self._stops_itself:
                        gen.close()
                        put(("stopped", None))
                        return
                    try:
                        item = next(gen)
                    except StopIteration as stop:
                        result = stop.value
                        break
                    put(("progressed", item))
            put(("succeeded", result))
        except StonesegError as exc:
            log.info("Background task failed: %s", exc)
            put(("failed", str(exc)))
        except MemoryError:
            log.exception("Background task ran out of memory")
            put(
                (
                    "failed",
                    "The computer ran out of memory. Close other programs or use smaller images.",
                )
            )
        except Exception as exc:
            log.exception(
                "Unexpected error in background task %s", getattr(self._fn, "__name__", self._fn)
            )
            put(("failed", f"Unexpected error: {exc.__class__.__name__}: {exc}"))
        finally:
            put(("done", None))

    # --------------------------------------------------------------------- GUI thread
    @Slot()
    def _drain(self) -> None:
        """Deliver what the job has reported, in order; end once the thread has ended."""
        while True:
            try:
                kind, value = self._queue.get_nowait()
            except queue.Empty:
                break
            if kind in ("succeeded", "failed", "stopped"):
                self._delivered = True
            if kind == "progressed":
                self.progressed.emit(value)
            elif kind == "succeeded":
                self.succeeded.emit(value)
            elif kind == "failed":
                self.failed.emit(value)
            elif kind == "stopped":
                self.stopped.emit()
            elif kind == "done":
                self._outcome_seen = True
            if self._thread is None:  # a slot above ended us re-entrantly
                return
        if self._outcome_seen and self._thread is not None and self._thread.isFinished():
            self._finish()

    def _finish(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._running = False
        self._done = True
        _LIVE.discard(self)
        thread, self._thread = self._thread, None
        self.finished.emit()
        if thread is not None:
            thread.deleteLater()


def _takes_should_stop(fn: Callable[..., Any], args: tuple, kwargs: dict) -> bool:
    """``fn`` has a ``should_stop`` parameter that the caller left for the worker to give."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    if "should_stop" not in signature.parameters:
        return False
    try:
        bound = signature.bind_partial(*args, **kwargs)
    except TypeError:
        return False
    return "should_stop" not in bound.arguments


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
