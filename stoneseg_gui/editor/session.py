"""The open project and the photo being edited: loading, saving, autosave and recovery.

``AnnotationSession`` is the controller between the folder on disk (``Project``) and the
views. It holds no widgets: views listen to its signals, and the one thing it asks the
user goes through ``Dialogs``. Rules it keeps so that nothing is lost:

- a photo is decoded on a worker thread; a result that arrives after the user moved on
  is dropped;
- switching photo, opening another folder and quitting save the mask first; if that save
  fails the user stays where the edits are;
- a finished edit schedules a recovery file (written on a worker thread); saving deletes
  it; the next opening of the project offers to restore what a crash left behind;
- a mask of more than ``BACKGROUND_SAVE_PIXELS`` (an orthomosaic's) is saved from a copy on
  a worker thread (Ctrl+S, switching photo, closing the window), atomically, while the
  user may keep painting; its document stays in memory until the file is written (opening
  the photo again shows it, and a failed save keeps it, says why, and leaves a recovery
  copy); saves of one mask run one after the other; whatever needs the file on disk
  (``save_current()``, quitting) waits for them.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from stoneseg_core.display.tiff_tiles import is_big_tiff_photo
from stoneseg_core.editing.mask_document import MaskChange, MaskDocument, MaskSnapshot
from stoneseg_core.editing.recovery import (
    discard_recovery,
    list_recoveries,
    restore_recovery,
    write_recovery,
)
from stoneseg_core.errors import MaskError, StonesegError
from stoneseg_core.io.images import describe_os_error, read_image, read_mask, write_mask
from stoneseg_core.io.project import ImageStatus, Project

from ..settings import fallback_data_dir
from ..widgets.dialogs import Dialogs
from ..workers import Worker
from .display import DisplayImage, make_display_image
from .tiled_photo import TiledPhoto

log = logging.getLogger(__name__)

RECOVERY_DELAY_MS = 1500  # quiet time after the last edit before the recovery copy
RECOVERY_MAX_WAIT_S = 10.0  # ...but never longer than this while the user keeps editing
HISTORY_IMAGES = 8  # photos whose undo history survives switching away and back
HISTORY_BYTES = 768 * 1024 * 1024  # ...within this much memory (masks + histories)
# masks of more pixels than this are saved on a worker thread (a 16 MP PNG takes ~0.3 s)
BACKGROUND_SAVE_PIXELS = 16_000_000
SAVE_WAIT_MS = 30 * 60 * 1000  # the longest a quit waits for a save in progress


@dataclass
class _Save:
    """A mask being written on a worker thread, from ``snapshot`` (the content ``state``)."""

    path: Path  # the photo
    mask_path: Path
    project: Project
    document: MaskDocument
    state: int
    prediction_state: int | None  # the document's state when it was an untouched prediction
    worker: Worker | None = None
    again: bool = False  # saved again once this one is written (edited meanwhile)


def write_mask_job(mask_path: Path, snapshot: MaskSnapshot, keep_old_as_bak: bool) -> Path:
    """Write a mask on a worker thread (atomically), copied there from the document's
    ``snapshot``; a bad old file is kept as ``.bak``."""
    mask = snapshot.copy()
    try:
        if keep_old_as_bak and mask_path.exists():
            os.replace(mask_path, mask_path.with_name(mask_path.name + ".bak"))
        write_mask(mask_path, mask)
    except OSError as exc:
        raise StonesegError(describe_os_error(exc, mask_path)) from exc
    return mask_path


def write_recovery_job(data_dir: Path, image_path: Path, snapshot: MaskSnapshot) -> Path:
    """A recovery copy, written on a worker thread from the document's ``snapshot``."""
    return write_recovery(data_dir, image_path, snapshot.copy())


@dataclass(frozen=True)
class LoadedImage:
    path: Path
    display: DisplayImage | TiledPhoto  # a TiledPhoto for a TIFF too big to hold whole
    mask: np.ndarray | None  # None: no mask saved yet
    mask_error: str | None  # the saved mask exists but cannot be used
    # a big photo's document, made on the worker too (its mask is hundreds of MB to copy)
    document: MaskDocument | None = None


def load_for_editing(image_path: Path, mask_path: Path) -> LoadedImage:
    """Decode a photo and its mask (runs on a worker thread). Raises ImageReadError.

    A TIFF of more than ``BIG_PHOTO_PIXELS`` (an orthomosaic) is not decoded: its header is
    checked and the canvas draws it tile by tile (``TiledPhoto``)."""
    if is_big_tiff_photo(image_path):
        display: DisplayImage | TiledPhoto = TiledPhoto.open(image_path)
    else:
        display = make_display_image(read_image(image_path))
    mask, error = None, None
    if mask_path.is_file():
        try:
            mask = read_mask(mask_path, expected_size=(display.height, display.width))
        except MaskError as exc:
            error = str(exc)
        except BaseException:
            _close_display(display)
            raise
    document = None
    if isinstance(display, TiledPhoto):  # made (and its memory mapped in) here
        shape = (display.height, display.width)
        document = MaskDocument(mask) if mask is not None else MaskDocument(shape=shape)
    return LoadedImage(Path(image_path), display, mask, error, document)


def _close_display(display: DisplayImage | TiledPhoto | None) -> None:
    if isinstance(display, TiledPhoto):
        display.close()


class AnnotationSession(QObject):
    project_opened = Signal(object)  # Project
    image_load_started = Signal(object)  # Path
    image_opened = Signal(object)  # Path: photo and mask ready (current_display/current_document)
    image_failed = Signal(object, str)  # Path, why it cannot be read
    image_changed = Signal(object)  # Path | None: the photo now current (opened or failed)
    status_changed = Signal(object, object, str)  # Path, ImageStatus, reason (for unreadable)
    dirty_changed = Signal(object, bool)  # Path, has unsaved edits
    history_changed = Signal()  # undo/redo availability may have changed
    mask_saved = Signal(object)  # Path of the photo whose mask was written
    images_rescanned = Signal(object)  # list[Path]: the folder's photos, looked up again
    notice = Signal(str)  # a short message for the status bar
    saving_changed = Signal(str)  # what is being saved in the background ("" when nothing)

    def __init__(self, dialogs: Dialogs, parent: QObject | None = None) -> None:
        super().__init__(parent)
        # Callable[[Project], str | None]: the photo to open first (the window remembers it)
        self.start_image_name = None
        self._dialogs = dialogs
        self.project: Project | None = None
        self._images: list[Path] = []
        self._unreadable: dict[Path, str] = {}
        self._current: Path | None = None
        self._document: MaskDocument | None = None
        self._display: DisplayImage | TiledPhoto | None = None
        self._loading = False
        self._token = 0
        self._last_dirty = False
        self._bad_mask = False
        self._prediction_state: int | None = None
        self._workers: set[Worker] = set()
        # documents of photos left with everything saved, so their undo history survives
        self._history: OrderedDict[Path, tuple[MaskDocument, tuple[int, int] | None]] = (
            OrderedDict()
        )
        self._recovery_timer = QTimer(self)
        self._recovery_timer.setSingleShot(True)
        self._recovery_timer.setInterval(RECOVERY_DELAY_MS)
        self._recovery_timer.timeout.connect(self.write_recovery_now)
        self._recovery_due: float | None = None  # monotonic time by which a copy must be made
        self._saving: dict[Path, _Save] = {}  # masks being written on a worker thread
        self._unsaved: dict[Path, MaskDocument] = {}  # left photos whose save failed
        self._after_saves: list = []  # callables run once every background save succeeded
        self._recovery_worker: Worker | None = None  # the recovery copy being written

    # ------------------------------------------------------------------ queries
    def images(self) -> list[Path]:
        return list(self._images)

    def current_image_path(self) -> Path | None:
        return self._current

    def current_document(self) -> MaskDocument | None:
        return self._document

    def current_display(self) -> DisplayImage | TiledPhoto | None:
        return self._display

    @property
    def is_loading(self) -> bool:
        return self._loading

    def image_status(self, path: Path) -> ImageStatus:
        if path in self._unreadable:
            return ImageStatus.UNREADABLE
        if self.project is None:
            return ImageStatus.UNLABELLED
        return self.project.status(path)

    def current_status(self) -> ImageStatus | None:
        return self.image_status(self._current) if self._current is not None else None

    @property
    def is_dirty(self) -> bool:
        return self._document is not None and self._document.dirty

    @property
    def is_saving(self) -> bool:
        """A mask is being written on a worker thread."""
        return bool(self._saving)

    def unsaved_images(self) -> list[Path]:
        """Photos left with edits whose save failed (kept in memory, recovery copies)."""
        return list(self._unsaved)

    # ------------------------------------------------------------------ project
    def open_folder(self, folder: str | Path) -> bool:
        """Open a folder (``images/`` + ``masks/``, or plain photos). False if it cannot."""
        folder = Path(folder).expanduser()
        if self.must_save_in_background():
            self.after_saving(lambda: self.open_folder(folder), f"opening {folder.name}")
            return True
        if not self.save_current():
            return False
        if self._unsaved and not self._leave_unsaved("Open another folder"):
            return False
        try:
            project = Project.open(folder, fallback_data_dir=fallback_data_dir(folder))
            images = project.image_paths()
        except StonesegError as exc:
            self._dialogs.error("Cannot open folder", str(exc))
            return False
        except OSError as exc:
            self._dialogs.error("Cannot open folder", describe_os_error(exc, folder))
            return False
        self._close_image()
        self._history.clear()
        self._unsaved.clear()
        self.project = project
        self._images = images
        self._unreadable = {}
        log.info("Opened %s (%d photos, masks in %s)", project.root, len(images), project.masks_dir)
        self.project_opened.emit(project)
        if project.data_dir != project.root:
            self.notice.emit(f"This folder is read-only: masks are saved in {project.masks_dir}")
        self._offer_recovery()
        if images:
            wanted = self.start_image_name(project) if self.start_image_name else None
            start = next((p for p in images if p.name == wanted), images[0])
            self.open_image(start)
        else:
            self.image_changed.emit(None)
        return True

    def rescan(self) -> list[Path]:
        """Look again for photos in the folder (added or removed since); returns the new ones."""
        project = self.project
        if project is None:
            return []
        try:
            images = project.image_paths()
        except (StonesegError, OSError) as exc:
            log.warning("Cannot rescan %s: %s", project.images_dir, exc)
            return []
        if images == self._images:
            return []
        added = [p for p in images if p not in set(self._images)]
        self._images = images
        self.images_rescanned.emit(images)
        if added:
            self.notice.emit(
                f"{len(added)} new photo{'s' if len(added) != 1 else ''} in the folder: "
                + ", ".join(p.name for p in added[:5])
                + (" …" if len(added) > 5 else "")
            )
        return added

    def mark_unreadable(self, path: Path, reason: str) -> None:
        """Another part (the thumbnails) found that a photo cannot be read."""
        path = Path(path)
        if self._unreadable.get(path) == reason:
            return
        self._unreadable[path] = reason
        self.status_changed.emit(path, ImageStatus.UNREADABLE, reason)

    # ------------------------------------------------------------------ images
    def open_image(self, path: str | Path) -> bool:
        """Save the current mask, then load ``path`` in the background. False if refused."""
        if self.project is None:
            return False
        path = Path(path)
        if path == self._current and (self._document is not None or self._loading):
            return True
        if not self.save_current(background=True):
            return False
        self._close_image()
        self._current = path
        self._loading = True
        token = self._token
        self.image_load_started.emit(path)
        self.history_changed.emit()
        worker = Worker(load_for_editing, path, self.project.mask_path(path))
        worker.succeeded.connect(lambda loaded, t=token: self._on_load_succeeded(t, loaded))
        worker.failed.connect(lambda message, t=token, p=path: self._on_load_failed(t, p, message))
        self._track(worker)
        worker.start()
        return True

    def reload_current(self) -> bool:
        """Read the current photo's mask again from disk (another job wrote it). Refused
        (False) while it has unsaved edits: the user's strokes always win."""
        path = self._current
        if path is None or self.is_dirty:
            return False
        self._close_image()
        return self.open_image(path)

    def open_relative(self, step: int) -> bool:
        """Open the next (+1) or previous (-1) photo."""
        if not self._images:
            return False
        if self._current in self._images:
            index = self._images.index(self._current) + step
        else:
            index = 0
        if not 0 <= index < len(self._images):
            self.notice.emit("This is the last photo." if step > 0 else "This is the first photo.")
            return False
        return self.open_image(self._images[index])

    def _close_image(self) -> None:
        self._recovery_timer.stop()
        self._recovery_due = None
        if self._document is not None:
            self._document.remove_listener(self._on_document_changed)
            if self._current is not None and not self._document.dirty and not self._bad_mask:
                self._remember_history(self._current, self._document)
        self._token += 1
        self._current = None
        self._document = None
        _close_display(self._display)  # a big photo's tile threads and file
        self._display = None
        self._loading = False
        self._last_dirty = False
        self._bad_mask = False
        self._prediction_state = None

    def _on_load_succeeded(self, token: int, loaded: LoadedImage) -> None:
        if token != self._token:
            _close_display(loaded.display)
            return  # the user moved on while this photo was decoding
        self._loading = False
        h, w = loaded.display.height, loaded.display.width
        document, prediction_state = self._recall_in_memory(loaded.path, (h, w))
        if document is None:
            document = self._recall_history(loaded)
        if document is None:
            document = loaded.document
        if document is None:
            document = (
                MaskDocument(loaded.mask) if loaded.mask is not None else MaskDocument(shape=(h, w))
            )
        document.add_listener(self._on_document_changed)
        self._document = document
        self._display = loaded.display
        self._bad_mask = loaded.mask_error is not None
        status = self.project.status(loaded.path) if self.project else ImageStatus.UNLABELLED
        self._prediction_state = document.state_id if status == ImageStatus.PREDICTED else None
        if prediction_state is not None:
            self._prediction_state = prediction_state
        if self._unreadable.pop(loaded.path, None) is not None:
            self.status_changed.emit(loaded.path, status, "")
        self.image_opened.emit(loaded.path)
        self.image_changed.emit(loaded.path)
        self.history_changed.emit()
        if document.dirty:  # edits not yet on disk (being saved, or their save failed)
            self._last_dirty = True
            self.dirty_changed.emit(loaded.path, True)
        if loaded.mask_error:
            self._dialogs.error(
                "Saved mask not used",
                f"{loaded.mask_error}\n\nThe photo opens with an empty mask. If you paint and save, "
                f"the old file is kept as {loaded.path.stem}.png.bak.",
            )

    def _on_load_failed(self, token: int, path: Path, message: str) -> None:
        if token != self._token:
            return
        self._loading = False
        self._unreadable[path] = message
        self.status_changed.emit(path, ImageStatus.UNREADABLE, message)
        self.image_failed.emit(path, message)
        self.image_changed.emit(path)
        self.history_changed.emit()

    def _recall_in_memory(
        self, path: Path, shape: tuple[int, int]
    ) -> tuple[MaskDocument | None, int | None]:
        """The document of a photo whose mask is still being written, or failed to be:
        newer than the file, so it is what the photo opens with."""
        pending = self._saving.get(path)
        if pending is not None and pending.document.shape == shape:
            return pending.document, pending.prediction_state
        document = self._unsaved.pop(path, None)
        if document is not None and document.shape == shape:
            return document, None
        return None, None

    # ------------------------------------------------------------------ undo history per photo
    def _mask_stamp(self, path: Path) -> tuple[int, int] | None:
        if self.project is None:
            return None
        try:
            st = self.project.mask_path(path).stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _remember_history(self, path: Path, document: MaskDocument) -> None:
        if not document.can_undo and not document.can_redo:
            return
        self._history.pop(path, None)
        self._history[path] = (document, self._mask_stamp(path))
        total = sum(d.mask.nbytes + d.undo_nbytes for d, _ in self._history.values())
        while self._history and (len(self._history) > HISTORY_IMAGES or total > HISTORY_BYTES):
            _, (dropped, _) = self._history.popitem(last=False)
            total -= dropped.mask.nbytes + dropped.undo_nbytes

    def _recall_history(self, loaded: LoadedImage) -> MaskDocument | None:
        """The document left earlier, if the mask on disk is still the one it saved."""
        entry = self._history.pop(loaded.path, None)
        if entry is None or loaded.mask_error:
            return None
        document, stamp = entry
        if stamp != self._mask_stamp(loaded.path):
            return None  # changed on disk meanwhile (another program, a restore...)
        if document.shape != (loaded.display.height, loaded.display.width):
            return None
        on_disk = loaded.mask if loaded.mask is not None else np.zeros(document.shape, np.uint8)
        if not np.array_equal(document.mask, on_disk):
            return None
        return document

    # ------------------------------------------------------------------ editing
    def _on_document_changed(self, change: MaskChange) -> None:
        document = self._document
        if document is None:
            return
        dirty = document.dirty
        if dirty != self._last_dirty:
            self._last_dirty = dirty
            self.dirty_changed.emit(self._current, dirty)
        if change.final:
            self.history_changed.emit()
            if dirty:
                now = time.monotonic()
                if self._recovery_due is None:
                    self._recovery_due = now + RECOVERY_MAX_WAIT_S
                if now >= self._recovery_due:
                    self.write_recovery_now()
                else:
                    self._recovery_timer.start()
            elif self.project is not None and self._current is not None:
                self._recovery_timer.stop()
                self._recovery_due = None
                discard_recovery(self.project.data_dir, self._current.stem)

    def undo(self) -> None:
        if self._document is not None and self._document.undo() is None:
            self.notice.emit("Nothing to undo.")

    def redo(self) -> None:
        if self._document is not None and self._document.redo() is None:
            self.notice.emit("Nothing to redo.")

    def fill_holes(self) -> None:
        if self._document is not None and self._document.fill_holes() is None:
            self.notice.emit("No holes to fill: every background area reaches the border.")

    def clear_mask(self) -> None:
        if self._document is not None:
            self._document.clear()

    def invert_mask(self) -> None:
        if self._document is not None:
            self._document.invert()

    def accept_prediction(self, mask: np.ndarray) -> None:
        """Put a model's mask into the editor as one undoable step.

        Saved untouched, the photo stays 'predicted, not reviewed' (training skips it);
        once the user edits it, saving marks it labelled.
        """
        if self._document is None:
            raise StonesegError("Open a photo before accepting a prediction.")
        self._document.replace(mask, "Accept prediction")
        self._prediction_state = self._document.state_id

    def mark_reviewed(self) -> None:
        """The user checked a predicted mask and accepts it as it is."""
        if self.project is None or self._current is None:
            return
        if self.must_save_in_background():
            self.after_saving(self.mark_reviewed, "marking it reviewed")
            return
        if not self.save_current():
            return
        try:
            self.project.set_predicted(self._current.stem, False)
        except StonesegError as exc:
            self._dialogs.error("Cannot mark as reviewed", str(exc))
            return
        self._prediction_state = None
        self.status_changed.emit(self._current, self.image_status(self._current), "")
        self.notice.emit(f"{self._current.name} is marked as reviewed.")

    # ------------------------------------------------------------------ saving
    def save_current(self, background: bool = False) -> bool:
        """Write the current mask if it has unsaved edits. False (after telling why) if it fails.

        ``background``: a big mask (``BACKGROUND_SAVE_PIXELS``) is written from a copy on a
        worker thread and this returns at once (True: started; the outcome follows as
        ``mask_saved`` or an error). Otherwise the mask is on disk when this returns True:
        saves in progress are waited for first."""
        document, path, project = self._document, self._current, self.project
        if background and document is not None and document.mask.size > BACKGROUND_SAVE_PIXELS:
            if path is not None and project is not None and document.dirty:
                if document.in_stroke:
                    document.end_stroke()
                self._start_save(path, project, document, self._prediction_state)
            return True
        if not self.finish_saves():
            return False
        document, path, project = self._document, self._current, self.project
        if document is None or path is None or project is None or not document.dirty:
            return True
        if document.in_stroke:
            document.end_stroke()
        mask_path = project.mask_path(path)
        try:
            if self._bad_mask and mask_path.exists():
                os.replace(mask_path, mask_path.with_name(mask_path.name + ".bak"))
                self._bad_mask = False
            write_mask(mask_path, document.mask)
        except (StonesegError, OSError) as exc:
            message = (
                str(exc) if isinstance(exc, StonesegError) else describe_os_error(exc, mask_path)
            )
            self.write_recovery_now()
            self._dialogs.error(
                "Cannot save the mask",
                f"{message}\n\nYour edits stay open, and a recovery copy is kept in {project.data_dir / '.recovery'}.",
            )
            return False
        document.mark_saved()
        self._recovery_timer.stop()
        self._recovery_due = None
        discard_recovery(project.data_dir, path.stem)
        predicted = self._record_predicted(project, path, document.state_id, self._prediction_state)
        if not predicted:
            self._prediction_state = None
        self._last_dirty = False
        self.dirty_changed.emit(path, False)
        self.status_changed.emit(path, self.image_status(path), "")
        self.mask_saved.emit(path)
        self.notice.emit(f"Saved {mask_path}")
        log.info("Saved %s", mask_path)
        return True

    def _record_predicted(
        self, project: Project, path: Path, saved_state: int, prediction_state: int | None
    ) -> bool:
        """After a save: the photo is 'predicted, not reviewed' when what was saved is the
        accepted prediction untouched. Returns that."""
        predicted = prediction_state is not None and saved_state == prediction_state
        try:
            project.set_predicted(path.stem, predicted)
        except StonesegError as exc:
            self._dialogs.error("Cannot update the project state", str(exc))
        return predicted

    # ------------------------------------------------------------------ background saves
    def _start_save(
        self, path: Path, project: Project, document: MaskDocument, prediction_state: int | None
    ) -> None:
        pending = self._saving.get(path)
        if pending is not None:  # one write of a file at a time: this one follows it
            if pending.state != document.state_id:
                pending.again = True
            return
        keep_old = self._bad_mask and document is self._document
        if keep_old:
            self._bad_mask = False
        if document is self._document:  # this save holds the edits a recovery copy would
            self._recovery_timer.stop()
            self._recovery_due = None
        mask_path = project.mask_path(path)
        # the copy is what gets written, made on the worker: the user may paint on meanwhile
        snapshot = document.snapshot()
        record = _Save(path, mask_path, project, document, snapshot.state, prediction_state)
        worker = Worker(write_mask_job, mask_path, snapshot, keep_old)
        worker.finished.connect(snapshot.release)  # in case it never ran
        worker.succeeded.connect(lambda _r, rec=record: self._on_save_done(rec, None))
        worker.failed.connect(lambda message, rec=record: self._on_save_done(rec, message))
        record.worker = worker
        self._saving[path] = record
        self._track(worker)
        worker.start()
        log.info("Saving %s in the background", mask_path)
        self._emit_saving()

    def _emit_saving(self) -> None:
        names = [rec.mask_path.name for rec in self._saving.values()]
        self.saving_changed.emit(("Saving " + ", ".join(names) + "…") if names else "")

    def _on_save_done(self, record: _Save, error: str | None) -> None:
        if self._saving.get(record.path) is record:
            del self._saving[record.path]
        document, path, project = record.document, record.path, record.project
        current = document is self._document
        if error is None:
            document.mark_saved(record.state)
            predicted = self._record_predicted(project, path, record.state, record.prediction_state)
            if current:
                if not predicted and document.state_id != self._prediction_state:
                    self._prediction_state = None
                self._last_dirty = document.dirty
                self.dirty_changed.emit(path, document.dirty)
            if not document.dirty:
                if current:
                    self._recovery_timer.stop()
                    self._recovery_due = None
                elif project is self.project:
                    self._remember_history(path, document)
                discard_recovery(project.data_dir, path.stem)
            if project is self.project:
                self.status_changed.emit(path, self.image_status(path), "")
            self.mask_saved.emit(path)
            self.notice.emit(f"Saved {record.mask_path}")
            log.info("Saved %s", record.mask_path)
            if record.again and document.dirty:
                self._start_save(path, project, document, record.prediction_state)
        else:
            self._after_saves.clear()  # a window waiting to close stays open
            if current:
                self.write_recovery_now()
            else:
                if project is self.project:
                    self._unsaved[path] = document
                snapshot = document.snapshot()
                worker = Worker(write_recovery_job, project.data_dir, path, snapshot)
                worker.finished.connect(snapshot.release)
                self._track(worker)
                worker.start()
            self._dialogs.error(
                "Cannot save the mask",
                f"{error}\n\nThe edits of {path.name} are kept: "
                + ("they stay open" if current else "they come back when you open it again")
                + "; save again (Ctrl+S) once the folder can be written, and a recovery copy is "
                f"kept in {project.data_dir / '.recovery'}.",
            )
        self._emit_saving()
        if not self._saving and self._after_saves:
            callbacks, self._after_saves = self._after_saves, []
            for callback in callbacks:
                QTimer.singleShot(0, callback)

    def finish_saves(self, timeout_ms: int = SAVE_WAIT_MS) -> bool:
        """Wait (blocking) for the background saves and deliver their outcomes. False if one
        failed (the user was told) or did not end in time."""
        ok = True
        while self._saving:
            record = next(iter(self._saving.values()))
            worker = record.worker
            if worker is None or not worker.wait(timeout_ms):
                return False
            failed: list[str] = []
            worker.failed.connect(failed.append)
            worker.deliver()
            if self._saving.get(record.path) is record:  # nothing delivered: treat as failed
                del self._saving[record.path]
                ok = False
            ok = ok and not failed
        return ok

    def must_save_in_background(self) -> bool:
        """True while saves are running, or when the current mask is big and has edits: what
        needs the mask on disk should then wait for ``after_saving`` instead of holding the
        window for seconds."""
        document = self._document
        return bool(self._saving) or (
            document is not None and document.dirty and document.mask.size > BACKGROUND_SAVE_PIXELS
        )

    def after_saving(self, action, doing: str) -> None:
        """Run ``action`` once the current mask is on disk, without holding the window: a big
        mask is written in the background (and any save in progress finished) first, and
        ``action`` runs after, on the window's thread; never if a save fails (the user was
        told, the edits are kept). A small mask is saved now and ``action`` runs now."""
        if not self.must_save_in_background():
            if self.save_current():
                action()
            return
        self.save_current(background=True)
        if not self._saving:  # nothing left to write after all
            action()
            return
        self._after_saves.append(action)
        self.notice.emit(f"Saving the mask first; {doing} starts once it is written.")

    def close_when_saved(self, callback) -> bool:
        """Before the window closes: a big mask with edits is saved in the background, and
        True says to close later: ``callback`` runs once every save in progress is written
        (never if one fails: the window stays, with the edits). False: close now."""
        document = self._document
        if document is not None and document.dirty and document.mask.size > BACKGROUND_SAVE_PIXELS:
            self.save_current(background=True)
        if not self._saving:
            return False
        self._after_saves.append(callback)
        self.notice.emit("Saving the mask before closing; the window closes once it is written.")
        return True

    def _leave_unsaved(self, doing: str) -> bool:
        names = ", ".join(p.name for p in self._unsaved)
        answer = self._dialogs.ask(
            f"{doing} without these masks?",
            f"The masks of {names} could not be saved. Their edits are kept in recovery files "
            "and offered the next time you open this folder.",
            [doing, "Stay"],
            default="Stay",
        )
        return answer == doing

    def write_recovery_now(self) -> None:
        """Write the unsaved mask to the recovery folder on a worker thread."""
        self._recovery_timer.stop()
        self._recovery_due = None
        document, path, project = self._document, self._current, self.project
        if document is None or path is None or project is None or not document.dirty:
            return
        if self._recovery_worker is not None and self._recovery_worker.is_running:
            # one copy at a time (a big mask's takes seconds): this one comes after it
            self._recovery_timer.start()
            return
        snapshot = document.snapshot()  # copied on the worker (400 MB for an orthomosaic)
        data_dir = project.data_dir
        worker = Worker(write_recovery_job, data_dir, path, snapshot)
        self._recovery_worker = worker
        worker.finished.connect(snapshot.release)
        worker.succeeded.connect(
            lambda _result, d=document, p=path: self._on_recovery_written(d, p, data_dir)
        )
        worker.failed.connect(
            lambda message: self.notice.emit(f"Recovery copy not written: {message}")
        )
        self._track(worker)
        worker.start()

    def _on_recovery_written(self, document: MaskDocument, path: Path, data_dir: Path) -> None:
        # written after the mask was saved (or the photo left): the copy is stale
        if not (document is self._document and document.dirty):
            discard_recovery(data_dir, path.stem)

    def _offer_recovery(self) -> None:
        project = self.project
        if project is None:
            return
        by_name = {p.name: p for p in self._images}
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
            self.status_changed.emit(image, self.image_status(image), "")
        restored = len(entries) - len(problems)
        if restored:
            self.notice.emit(f"Restored the unsaved edits of {restored} photo(s).")
        if problems:
            self._dialogs.error("Some edits could not be restored", "\n\n".join(problems))

    # ------------------------------------------------------------------ shutdown
    def shutdown(self) -> bool:
        """Save before the window closes (waiting for saves in progress). False if the user
        chose to stay."""
        if not self.save_current():
            name = self._current.name if self._current else "this photo"
            answer = self._dialogs.ask(
                "Quit without saving?",
                f"The mask of {name} could not be saved. Its edits are kept in a recovery file "
                "and offered the next time you open this folder.",
                ["Quit", "Stay"],
                default="Stay",
            )
            if answer != "Quit":
                return False
            self._write_recovery_blocking()
        if self._unsaved and not self._leave_unsaved("Quit"):
            return False
        self._recovery_timer.stop()
        for worker in list(self._workers):  # a big mask's recovery copy takes seconds
            worker.wait(120_000)
        # a recovery copy finished after the last save would otherwise be offered needlessly
        if self.project is not None and self._current is not None and not self.is_dirty:
            discard_recovery(self.project.data_dir, self._current.stem)
        return True

    def _write_recovery_blocking(self) -> None:
        document, path, project = self._document, self._current, self.project
        if document is None or path is None or project is None:
            return
        try:
            write_recovery(project.data_dir, path, np.array(document.mask))
        except (StonesegError, OSError) as exc:
            log.error("Cannot write the recovery file of %s: %s", path, exc)

    def _track(self, worker: Worker) -> None:
        self._workers.add(worker)
        worker.finished.connect(lambda w=worker: self._workers.discard(w))
