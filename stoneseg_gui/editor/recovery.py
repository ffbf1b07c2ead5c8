"""Recovery copies of the mask being edited, so that a crash loses no edits.

A finished edit that leaves the mask unsaved schedules a copy (``schedule``): after a quiet
moment, or at once when the user has kept editing for ``RECOVERY_MAX_WAIT_S``. Copies are
written on a worker thread, one at a time; saving the mask deletes its copy. The next opening
of the project offers to restore what a crash left behind (``offer_restore``). The files
themselves are the core's (``stoneseg_core.editing.recovery``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
from PySide6.QtCore import QObject, QTimer, SignalInstance

from stoneseg_core.editing.mask_document import MaskDocument
from stoneseg_core.editing.recovery import (
    discard_recovery,
    list_recoveries,
    restore_recovery,
    write_recovery,
)
from stoneseg_core.editing.snapshot import MaskSnapshot
from stoneseg_core.errors import StonesegError
from stoneseg_core.io.project import ImageStatus, Project

from ..widgets.dialogs import Dialogs
from ..workers import Worker

log = logging.getLogger(__name__)

RECOVERY_DELAY_MS = 1500  # quiet time after the last edit before the recovery copy
RECOVERY_MAX_WAIT_S = 10.0  # ...but never longer than this while the user keeps editing


def write_recovery_job(data_dir: Path, image_path: Path, snapshot: MaskSnapshot) -> Path:
    """A recovery copy, written on a worker thread from the document's ``snapshot``."""
    return write_recovery(data_dir, image_path, snapshot.copy())


class OpenPhoto(Protocol):
    """The session (``session.AnnotationSession``) as recovery copies use it: the photo open,
    its mask, and where to report."""

    notice: SignalInstance  # str
    status_changed: SignalInstance  # Path, ImageStatus, str

    @property
    def project(self) -> Project | None: ...

    @property
    def read_only(self) -> bool: ...  # another window edits the project

    def current_image_path(self) -> Path | None: ...

    def current_document(self) -> MaskDocument | None: ...

    def dirty_photo(self) -> tuple[MaskDocument, Path, Project] | None: ...

    def image_status(self, path: Path) -> ImageStatus: ...


class RecoveryCopies(QObject):
    """The recovery copies of one session's masks: when to write them, writing, restoring."""

    def __init__(
        self,
        session: OpenPhoto,
        dialogs: Dialogs,
        track: Callable[[Worker], None],
        parent: QObject | None = None,
    ) -> None:
        """``track`` is given every worker started (the session waits for them on quitting)."""
        super().__init__(parent)
        self._session = session
        self._dialogs = dialogs
        self._track = track
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(RECOVERY_DELAY_MS)
        self._timer.timeout.connect(self.write_now)
        self._due: float | None = None  # monotonic time by which a copy must be made
        self._worker: Worker | None = None  # the copy being written

    # ------------------------------------------------------------------ when
    def schedule(self) -> None:
        """A finished edit left the mask unsaved: a copy after a quiet moment, or now when the
        user has kept editing for ``RECOVERY_MAX_WAIT_S``."""
        now = time.monotonic()
        if self._due is None:
            self._due = now + RECOVERY_MAX_WAIT_S
        if now >= self._due:
            self.write_now()
        else:
            self._timer.start()

    def cancel(self) -> None:
        """No copy is due (the mask is being saved, or the photo is left)."""
        self._timer.stop()
        self._due = None

    def stop(self) -> None:
        """No more copies on a timer: the window closes."""
        self._timer.stop()

    def discard(self, project: Project, path: Path) -> None:
        """The mask of ``path`` has no unsaved edits any more: no copy is due, and the one
        written is deleted."""
        self.cancel()
        discard_recovery(project.data_dir, path.stem)

    def discard_if_saved(self) -> None:
        """On quitting: the open photo's copy, when its mask has no unsaved edits (a copy
        written after the last save would otherwise be offered needlessly)."""
        project, path = self._session.project, self._session.current_image_path()
        document = self._session.current_document()
        dirty = document is not None and document.dirty
        if project is not None and path is not None and not dirty:
            discard_recovery(project.data_dir, path.stem)

    # ------------------------------------------------------------------ writing
    def write_now(self) -> None:
        """Write the unsaved mask to the recovery folder on a worker thread."""
        self._timer.stop()
        self._due = None
        dirty = self._session.dirty_photo()
        if dirty is None:
            return
        document, path, project = dirty
        if self._worker is not None and self._worker.is_running:
            # one copy at a time (a big mask's takes seconds): this one comes after it
            self._timer.start()
            return
        snapshot = document.snapshot()  # copied on the worker (400 MB for an orthomosaic)
        data_dir = project.data_dir
        worker = Worker(write_recovery_job, data_dir, path, snapshot)
        self._worker = worker
        worker.finished.connect(snapshot.release)
        worker.succeeded.connect(
            lambda _result, d=document, p=path: self._on_written(d, p, data_dir)
        )
        worker.failed.connect(
            lambda message: self._session.notice.emit(f"Recovery copy not written: {message}")
        )
        self._track(worker)
        worker.start()

    def _on_written(self, document: MaskDocument, path: Path, data_dir: Path) -> None:
        # written after the mask was saved (or the photo left): the copy is stale
        if not (document is self._session.current_document() and document.dirty):
            discard_recovery(data_dir, path.stem)

    def write_copy_of(self, project: Project, path: Path, document: MaskDocument) -> None:
        """A copy of a photo left behind (its background save failed), on a worker thread."""
        snapshot = document.snapshot()
        worker = Worker(write_recovery_job, project.data_dir, path, snapshot)
        worker.finished.connect(snapshot.release)
        self._track(worker)
        worker.start()

    def write_blocking(self) -> None:
        """The open photo's copy, written now on this thread (the user quits without saving)."""
        session = self._session
        document, path, project = (
            session.current_document(),
            session.current_image_path(),
            session.project,
        )
        if document is None or path is None or project is None:
            return
        try:
            write_recovery(project.data_dir, path, np.array(document.mask))
        except (StonesegError, OSError) as exc:
            log.error("Cannot write the recovery file of %s: %s", path, exc)

    # ------------------------------------------------------------------ restoring
    def offer_restore(self, project: Project, images: list[Path]) -> None:
        """Offer the copies a crash left behind for ``images`` (the project just opened):
        restore them as the photos' masks, discard them, or keep them for later. Not in a
        window that opened the project read-only: the copies may be the live work of the
        window that edits it."""
        if self._session.read_only:
            return
        by_name = {p.name: p for p in images}
        entries = [e for e in list_recoveries(project.data_dir) if e.image_name in by_name]
        if not entries:
            return
        listing = "\n".join(
            f"  •  {e.image_name}  (edited {e.saved_at_text})" for e in entries[:12]
        )
        if len(entries) > 12:
            listing += f"\n  …and {len(entries) - 12} more"
        answer = self._dialogs.ask(
            "Restore unsaved edits?",
            "StoneSeg closed before these masks were saved:\n\n"
            f"{listing}\n\nRestore them? Restoring saves them as the photos' masks.",
            ["Restore", "Discard", "Not now"],
            default="Restore",
        )
        if answer == "Discard":
            for entry in entries:
                discard_recovery(project.data_dir, entry.stem)
            return
        if answer != "Restore":
            return
        problems = []
        for entry in entries:
            image = by_name[entry.image_name]
            try:
                restore_recovery(entry, image, project.mask_path(image))
                project.set_predicted(image.stem, False)
            except StonesegError as exc:
                problems.append(str(exc))
                continue
            discard_recovery(project.data_dir, entry.stem)
            self._session.status_changed.emit(image, self._session.image_status(image), "")
        restored = len(entries) - len(problems)
        if restored:
            self._session.notice.emit(f"Restored the unsaved edits of {restored} photo(s).")
        if problems:
            self._dialogs.error("Some edits could not be restored", "\n\n".join(problems))
