"""Start the desktop app: ``stoneseg gui [FOLDER]`` or ``python -m stoneseg_gui [FOLDER]``.

With no folder the bundled sample project opens, first copied to the user's data folder so
the installed files stay untouched and the user's edits have somewhere to go.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
from importlib import resources
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from .settings import app_data_dir
from .workers import stop_all_workers

log = logging.getLogger(__name__)

ORGANIZATION = "StoneSeg"
APPLICATION = "StoneSeg"
SAMPLE_DIR_NAME = "sample-project"


def resources_dir() -> Path:
    """The packaged ``stoneseg_gui.resources`` folder (``resources/`` in a checkout)."""
    try:
        path = Path(str(resources.files("stoneseg_gui.resources")))
        if path.is_dir():
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[1] / "resources"


def bundled_sample_dir() -> Path:
    return resources_dir() / "sample"


def _copy_tree_writable(source: Path, target: Path) -> None:
    """Copy files only (no permission bits): installed resources may be read-only."""
    for folder, _dirs, files in os.walk(source):
        rel = Path(folder).relative_to(source)
        if any(part.startswith("__") for part in rel.parts):
            continue
        (target / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            shutil.copyfile(Path(folder) / name, target / rel / name)


def ensure_sample_project(destination: Path | None = None) -> Path:
    """The user's writable copy of the sample project, made on first use only.

    An existing copy is never overwritten: it holds the user's edits. The copy is made in a
    temporary folder beside the destination and moved into place, so an interrupted copy
    never looks complete.
    """
    destination = Path(destination) if destination is not None else app_data_dir() / SAMPLE_DIR_NAME
    if (destination / "images").is_dir():
        return destination
    source = bundled_sample_dir()
    if not (source / "images").is_dir():
        raise FileNotFoundError(f"The bundled sample project is missing: {source}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}-", dir=destination.parent))
    try:
        _copy_tree_writable(source, staging)
        if destination.exists():  # an empty or broken leftover without images/
            shutil.rmtree(destination)
        os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("Copied the sample project to %s", destination)
    return destination


def create_application(argv: list[str] | None = None) -> QApplication:
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("StoneSeg")
    return app  # type: ignore[return-value]


def share_cores_with_window() -> int:
    """Leave one core to the window: PyTorch may use the others. Returns the thread count.

    With as many PyTorch threads as cores, a training kept the window waiting up to
    120 ms at a time on a 2-core machine (tests/benchmarks/bench_gui.py). Someone who sets
    OMP_NUM_THREADS keeps their choice.
    """
    from stoneseg_core.model.device import leave_cores

    return leave_cores(1)


def preload_model_libraries() -> threading.Thread:
    """Import segmentation_models_pytorch (and timm, torch._dynamo under it) in the
    background now, while the window opens, not when the user first clicks Train: that
    import holds the interpreter for a quarter of a second at a time."""

    def load() -> None:
        try:
            from stoneseg_core.model.network import import_smp

            import_smp()
        except Exception:
            log.debug("preloading the model libraries failed", exc_info=True)

    thread = threading.Thread(target=load, name="stoneseg-preload", daemon=True)
    thread.start()
    return thread


def main(folder: str | None = None, argv: list[str] | None = None) -> int:
    """Run the app on ``folder`` (or the sample project) until the window closes."""
    from .main_window import MainWindow
    from .widgets.theme import apply_theme

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = create_application(argv)
    apply_theme(app)
    share_cores_with_window()
    window = MainWindow()
    window.show()
    QTimer.singleShot(300, preload_model_libraries)

    def open_start_folder() -> None:
        from PySide6.QtCore import QSettings

        from .settings import recent_folders

        last = [p for p in recent_folders(QSettings()) if p.is_dir()]
        if folder:
            target = Path(folder).expanduser()
        elif last:
            target = last[0]  # where the user left off; the sample only on a first start
        else:
            try:
                target = ensure_sample_project()
            except OSError as exc:
                window.dialogs.error("Cannot open the sample project", str(exc))
                return
        window.open_folder(target)

    QTimer.singleShot(0, open_start_folder)  # after the window has its size, so the photo fits
    code = app.exec()
    stop_all_workers()  # no thread may outlive the application object
    return code


def run(folder: str | None = None) -> int:
    """``stoneseg gui``: run the app, then leave at once.

    By the time ``main`` returns, every mask is saved, the window state is synced and every
    worker has stopped. Tearing the interpreter down after that (Qt's widgets, PyTorch's
    libraries) took 2-7 s on the 2-core machine, which the user saw as a slow Ctrl+Q; so
    the streams are flushed and the process ends without that teardown.
    """
    code = main(folder)
    return _leave(int(code or 0))


def _leave(code: int) -> int:
    """Flush what was written and end the process now, with ``code``."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
