"""The open project and the photo being edited: opening, status, undo history per photo.

``AnnotationSession`` is the controller between the folder on disk (``Project``) and the
views. It holds no widgets: views listen to its signals, and the one thing it asks the
user goes through ``Dialogs``. Rules it keeps so that nothing is lost:

- a photo is decoded on a worker thread (``loading.load_for_editing``); a result that
  arrives after the user moved on is dropped;
- switching photo, opening another folder and quitting save the mask first; if that save
  fails the user stays where the edits are;
- a finished edit schedules a recovery copy; saving deletes it.

Saving (the open photo's mask now, a big one in the background) is ``saving.MaskSaver``'s
job, recovery copies and restoring them ``recovery.RecoveryCopies``'s; the session owns
both and hands its saving calls on to them.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

from stoneseg_core.editing.mask_document import MaskChange, MaskDocument
from stoneseg_core.errors import StonesegError
from stoneseg_core.io.images import describe_os_error
from stoneseg_core.io.project import ImageStatus, Project
from stoneseg_core.io.project_lock import ProjectLock

from ..settings import fallback_data_dir
from ..widgets.dialogs import Dialogs
from ..workers import Worker
from .conflicts import Stamp, file_stamp
from .display import DisplayImage
from .loading import LoadedImage, close_display, load_for_editing
from .recovery import RecoveryCopies
from .saving import MaskSaver
from .tiled_photo import TiledPhoto

log = logging.getLogger(__name__)

HISTORY_IMAGES = 8  # photos whose undo history survives switching away and back
HISTORY_BYTES = 768 * 1024 * 1024  # ...within this much memory (masks + histories)


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
        self._last_dirty = False  # what dirty_changed said last
        # the saved mask could not be used: the next save keeps it as .bak (saving reads it)
        self.bad_mask_file = False
        # the document's state when it was an untouched prediction: saved so, the photo stays
        # 'predicted, not reviewed' (saving reads it)
        self.prediction_state: int | None = None
        self._workers: set[Worker] = set()
        # documents of photos left with everything saved, so their undo history survives
        self._history: OrderedDict[Path, tuple[MaskDocument, tuple[int, int] | None]] = (
            OrderedDict()
        )
        # which window edits the project (io.project_lock), and whether this one opened it
        # read-only; each photo's mask file as it was when this window read it (saving
        # checks both before it writes: editor/conflicts.py)
        self.lock: ProjectLock | None = None
        self._opened_read_only = False
        self._read_stamps: dict[Path, Stamp] = {}
        self._recovery = RecoveryCopies(self, dialogs, self._track, parent=self)
        self._saver = MaskSaver(self, dialogs, self._recovery, self._track)

    # ------------------------------------------------------------------ queries
    def images(self) -> list[Path]:
        return list(self._images)

    def current_image_path(self) -> Path | None:
        return self._current

    def current_document(self) -> MaskDocument | None:
        return self._document

    def dirty_photo(self) -> tuple[MaskDocument, Path, Project] | None:
        """The open photo's document, path and project when it has unsaved edits."""
        document, path, project = self._document, self._current, self.project
        if document is None or path is None or project is None or not document.dirty:
            return None
        return document, path, project

    def current_display(self) -> DisplayImage | TiledPhoto | None:
        return self._display

    @property
    def read_only(self) -> bool:
        """This window opened the project read-only (another window edits it) and has not
        taken it over since."""
        return self._opened_read_only and not (self.lock is not None and self.lock.held)

    def read_stamp(self, path: Path) -> Stamp:
        """The mask file of ``path`` as this window last read or wrote it."""
        return self._read_stamps.get(Path(path))

    def note_mask_written(self, path: Path) -> None:
        """This window wrote the mask of ``path``: that is the version it knows now."""
        if self.project is not None:
            self._read_stamps[Path(path)] = file_stamp(self.project.mask_path(path))

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
        return self._saver.is_saving

    def unsaved_images(self) -> list[Path]:
        """Photos left with edits whose save failed (kept in memory, recovery copies)."""
        return self._saver.unsaved_images()

    # ------------------------------------------------------------------ project
    def open_folder(self, folder: str | Path) -> bool:
        """Open a folder (``images/`` + ``masks/``, or plain photos). False if it cannot."""
        folder = Path(folder).expanduser()
        if self.must_save_in_background():
            self.after_saving(lambda: self.open_folder(folder), f"opening {folder.name}")
            return True
        if not self.save_current():
            return False
        if not self._saver.may_leave_unsaved("Open another folder"):
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
        lock = ProjectLock(project.data_dir)
        read_only = self._claim(project, lock)
        if read_only is None:
            return False
        self._close_image()
        self._history.clear()
        self._saver.forget_unsaved()
        self.release_project()
        self.lock, self._opened_read_only = lock, read_only
        self._read_stamps = {}
        self.project = project
        self._images = images
        self._unreadable = {}
        log.info("Opened %s (%d photos, masks in %s)", project.root, len(images), project.masks_dir)
        self.project_opened.emit(project)
        if project.data_dir != project.root:
            self.notice.emit(f"This folder is read-only: masks are saved in {project.masks_dir}")
        self._recovery.offer_restore(project, images)
        if images:
            wanted = self.start_image_name(project) if self.start_image_name else None
            start = next((p for p in images if p.name == wanted), images[0])
            self.open_image(start)
        else:
            self.image_changed.emit(None)
        return True

    def _claim(self, project: Project, lock: ProjectLock) -> bool | None:
        """Lock the project for this window; when another window holds it, the user picks:
        read-only (True), take over (False) or cancel (None)."""
        other = lock.acquire()
        if other is None:
            return False
        answer = self._dialogs.ask(
            "Open in another window",
            f"{project.root.name} is open in {other.describe()}. Two windows saving the same "
            "masks lose each other's work.\n\nOpen it here read-only (look, predict and "
            "analyse; saving asks first), or take it over (the other window then saves "
            "nothing over your work)?",
            ["Open read-only", "Take over", "Cancel"],
            default="Open read-only",
        )
        if answer == "Take over":
            lock.take_over()
            return False
        return True if answer == "Open read-only" else None

    def release_project(self) -> None:
        """Give up this window's lock on the project (closing, or opening another)."""
        if self.lock is not None:
            self.lock.release()
        self.lock = None

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
        self._read_stamps[path] = file_stamp(self.project.mask_path(path))  # before reading
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
        self._recovery.cancel()
        if self._document is not None:
            self._document.remove_listener(self._on_document_changed)
            if self._current is not None and not self._document.dirty and not self.bad_mask_file:
                self.remember_history(self._current, self._document)
        self._token += 1
        self._current = None
        self._document = None
        close_display(self._display)  # a big photo's tile threads and file
        self._display = None
        self._loading = False
        self._last_dirty = False
        self.bad_mask_file = False
        self.prediction_state = None

    def _on_load_succeeded(self, token: int, loaded: LoadedImage) -> None:
        if token != self._token:
            close_display(loaded.display)
            return  # the user moved on while this photo was decoding
        self._loading = False
        h, w = loaded.display.height, loaded.display.width
        document, prediction_state = self._saver.recall(loaded.path, (h, w))
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
        self.bad_mask_file = loaded.mask_error is not None
        status = self.project.status(loaded.path) if self.project else ImageStatus.UNLABELLED
        self.prediction_state = document.state_id if status == ImageStatus.PREDICTED else None
        if prediction_state is not None:
            self.prediction_state = prediction_state
        if self._unreadable.pop(loaded.path, None) is not None:
            self.status_changed.emit(loaded.path, status, "")
        self.image_opened.emit(loaded.path)
        self.image_changed.emit(loaded.path)
        self.history_changed.emit()
        if document.dirty:  # edits not yet on disk (being saved, or their save failed)
            self.report_dirty(loaded.path, True)
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

    # ------------------------------------------------------------------ undo history per photo
    def _mask_stamp(self, path: Path) -> tuple[int, int] | None:
        if self.project is None:
            return None
        try:
            st = self.project.mask_path(path).stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def remember_history(self, path: Path, document: MaskDocument) -> None:
        """Keep the document of ``path``, left with everything saved, so that its undo
        history is there when the photo opens again (the last few photos, within memory)."""
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
            self.report_dirty(self._current, dirty)
        if change.final:
            self.history_changed.emit()
            if dirty:
                self._recovery.schedule()
            elif self.project is not None and self._current is not None:
                self._recovery.discard(self.project, self._current)

    def report_dirty(self, path: Path, dirty: bool) -> None:
        """Tell the views whether ``path`` (the photo open) has unsaved edits."""
        self._last_dirty = dirty
        self.dirty_changed.emit(path, dirty)

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
        self.prediction_state = self._document.state_id

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
        self.prediction_state = None
        self.status_changed.emit(self._current, self.image_status(self._current), "")
        self.notice.emit(f"{self._current.name} is marked as reviewed.")

    # ------------------------------------------------------------------ saving (saving.py)
    def save_current(self, background: bool = False) -> bool:
        """Write the current mask if it has unsaved edits (``MaskSaver.save_current``)."""
        return self._saver.save_current(background)

    def must_save_in_background(self) -> bool:
        """Whether what needs the mask on disk should wait for ``after_saving``
        (``MaskSaver.must_save_in_background``)."""
        return self._saver.must_save_in_background()

    def after_saving(self, action: Callable[[], object], doing: str) -> None:
        """Run ``action`` once the current mask is on disk (``MaskSaver.after_saving``)."""
        self._saver.after_saving(action, doing)

    def close_when_saved(self, callback: Callable[[], object]) -> bool:
        """Before the window closes: True to close later, once a big mask is written
        (``MaskSaver.close_when_saved``)."""
        return self._saver.close_when_saved(callback)

    # ------------------------------------------------------------------ shutdown
    def shutdown(self) -> bool:
        """Save before the window closes (waiting for saves in progress). False if the user
        chose to stay."""
        if not self._saver.may_quit():
            return False
        self._recovery.stop()
        for worker in list(self._workers):  # a big mask's recovery copy takes seconds
            worker.wait(120_000)
        self._recovery.discard_if_saved()
        self.release_project()
        return True

    def _track(self, worker: Worker) -> None:
        self._workers.add(worker)
        worker.finished.connect(lambda w=worker: self._workers.discard(w))
