"""What the plugin's widgets share: the Qt binding check, layer pickers, background work on
napari's thread workers, and putting layers into the viewer."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from typing import Any

from magicgui.widgets import ComboBox, Label
from napari.layers import Image, Labels, Layer
from napari.qt.threading import create_worker

from stoneseg_core.errors import StonesegError

from .jobs import CANCELLED
from .layers import LayerData


def check_binding() -> None:
    """StoneSeg's widgets are PySide6 (the app's own table and plot); napari must run on it
    too, since one process cannot mix two Qt bindings."""
    from qtpy import API_NAME

    if API_NAME != "PySide6":
        raise ImportError(
            f"StoneSeg's napari widgets need napari on PySide6 (StoneSeg's Qt binding); this "
            f"napari runs on {API_NAME}. Start napari with QT_API=pyside6, or install napari "
            'without a Qt extra: pip install "stoneseg[napari]".'
        )


def layer_picker(viewer, kind: type[Layer], label: str) -> ComboBox:
    """A drop-down of the viewer's layers of one kind, newest first (napari refreshes it
    when layers come and go: ``reset_choices``)."""

    def choices(_widget) -> list[tuple[str, Layer]]:
        return [(layer.name, layer) for layer in reversed(viewer.layers) if isinstance(layer, kind)]

    return ComboBox(label=label, choices=choices, nullable=False)


def image_picker(viewer) -> ComboBox:
    return layer_picker(viewer, Image, "image")


def labels_picker(viewer) -> ComboBox:
    return layer_picker(viewer, Labels, "labels")


def put_layer(viewer, data: LayerData) -> Layer:
    """Add a layer, or give the layer of that name (an earlier run's) the new data."""
    array, kwargs, layer_type = data
    name = kwargs.get("name")
    if name in viewer.layers:
        layer = viewer.layers[name]
        if isinstance(layer, {"image": Image, "labels": Labels}.get(layer_type, ())):
            layer.metadata = kwargs.get("metadata", {})
            layer.data = array
            if "features" in kwargs:
                layer.features = kwargs["features"]
            return layer
        viewer.layers.remove(layer)
    return viewer.add_layer(Layer.create(array, kwargs, layer_type))


class Job:
    """One core call on a napari thread worker: its steps (the generator's yields, as
    strings) go to the status label and napari's activity dock, its result to ``done``,
    an error (or a stop) to the label and a notification. ``stop()`` asks the job to end;
    the job gets the flag as ``should_stop``. ``running(True)`` is called as it starts,
    ``running(False)`` when it has ended, however it ended."""

    def __init__(self, status: Label, title: str, running: Callable[[bool], None]) -> None:
        self.status = status
        self.title = title
        self.on_running = running
        self.worker = None
        self.stop_flag = threading.Event()

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(
        self,
        job: Callable[..., Generator[str, None, Any]],
        steps: int,
        done: Callable[[Any], None],
        *args: Any,
    ) -> None:
        if self.running:
            raise StonesegError(f"{self.title} is already running.")
        self.stop_flag = threading.Event()
        worker = create_worker(
            job,
            *args,
            should_stop=self.stop_flag.is_set,
            _progress={"total": steps, "desc": f"StoneSeg: {self.title}"},
            _ignore_errors=True,
            _start_thread=False,
        )
        worker.yielded.connect(self._on_step)
        worker.returned.connect(done)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.status.value = f"{self.title}…"
        self.on_running(True)
        worker.start()

    def stop(self) -> None:
        self.stop_flag.set()

    def _on_step(self, text: str) -> None:
        self.status.value = text

    def _on_error(self, exc: BaseException) -> None:
        if str(exc) == CANCELLED:
            self.status.value = f"{self.title}: stopped."
            return
        self.status.value = f"{self.title} failed: {exc}"
        show_error(f"StoneSeg: {exc}", exc)

    def _on_finished(self) -> None:
        self.worker = None
        self.on_running(False)


def show_error(message: str, exc: BaseException | None = None) -> None:
    """A napari notification; an error that is no StoneSeg message keeps its traceback."""
    from napari.utils.notifications import notification_manager, show_error

    if exc is not None and not isinstance(exc, StonesegError):
        notification_manager.receive_error(type(exc), exc, exc.__traceback__)
    else:
        show_error(message)
