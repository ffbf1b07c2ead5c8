"""Saving a session's masks: the open photo's now, or a big one in the background.

``MaskSaver`` writes masks for ``session.AnnotationSession`` (which hands its saving calls
on to it). Rules it keeps so that nothing is lost:

- a save that fails says why, keeps the edits, and leaves a recovery copy (``recovery``);
- a mask of more than ``BACKGROUND_SAVE_PIXELS`` (an orthomosaic's) is saved from a copy on
  a worker thread (Ctrl+S, switching photo, closing the window), atomically, while the
  user may keep painting; its document stays in memory until the file is written (opening
  the photo again shows it: ``recall``), and a failed save keeps it;
- saves of one mask run one after the other; whatever needs the file on disk
  (``save_current()``, quitting) waits for them, and what can wait runs once they are
  written (``after_saving``, ``close_when_saved``), never after one failed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PySide6.QtCore import QTimer, SignalInstance

from stoneseg_core.editing.mask_document import MaskDocument
from stoneseg_core.editing.recovery import discard_recovery
from stoneseg_core.editing.snapshot import MaskSnapshot
from stoneseg_core.errors import StonesegError
from stoneseg_core.io.images import describe_os_error, write_mask
from stoneseg_core.io.project import Project
from stoneseg_core.io.project_lock import ProjectLock

from ..widgets.dialogs import Dialogs
from ..workers import Worker
from .conflicts import Decision, Stamp, conflict_copy_path, decide_write
from .recovery import OpenPhoto, RecoveryCopies

log = logging.getLogger(__name__)

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


class SavingSession(OpenPhoto, Protocol):
    """The session (``session.AnnotationSession``) as saving uses it: besides the photo
    open, the marks a save reads and clears, and the signals that report a save."""

    dirty_changed: SignalInstance  # Path, bool
    mask_saved: SignalInstance  # Path
    saving_changed: SignalInstance  # str
    bad_mask_file: bool  # the saved mask could not be used: the next save keeps it as .bak
    prediction_state: int | None  # the document's state when it was an untouched prediction
    lock: ProjectLock | None  # which window edits the project

    @property
    def read_only(self) -> bool: ...  # opened read-only, not taken over since

    def read_stamp(self, path: Path) -> Stamp: ...  # the mask file as this window knows it

    def note_mask_written(self, path: Path) -> None: ...

    def report_dirty(self, path: Path, dirty: bool) -> None: ...

    def remember_history(self, path: Path, document: MaskDocument) -> None: ...


class MaskSaver:
    """Writes one session's masks, keeps the documents whose save failed, and runs what
    waits for the saves in progress."""

    def __init__(
        self,
        session: SavingSession,
        dialogs: Dialogs,
        recovery: RecoveryCopies,
        track: Callable[[Worker], None],
    ) -> None:
        """``track`` is given every worker started (the session waits for them on quitting)."""
        self._session = session
        self._dialogs = dialogs
        self._recovery = recovery
        self._track = track
        self._saving: dict[Path, _Save] = {}  # masks being written on a worker thread
        self._unsaved: dict[Path, MaskDocument] = {}  # left photos whose save failed
        self._after_saves: list = []  # callables run once every background save succeeded

    # ------------------------------------------------------------------ queries
    @property
    def is_saving(self) -> bool:
        """A mask is being written on a worker thread."""
        return bool(self._saving)

    def unsaved_images(self) -> list[Path]:
        """Photos left with edits whose save failed (kept in memory, recovery copies)."""
        return list(self._unsaved)

    def recall(self, path: Path, shape: tuple[int, int]) -> tuple[MaskDocument | None, int | None]:
        """The document of a photo whose mask is still being written, or failed to be:
        newer than the file, so it is what the photo opens with."""
        pending = self._saving.get(path)
        if pending is not None and pending.document.shape == shape:
            return pending.document, pending.prediction_state
        document = self._unsaved.pop(path, None)
        if document is not None and document.shape == shape:
            return document, None
        return None, None

    def forget_unsaved(self) -> None:
        """Another folder is open: the documents whose save failed are dropped (their
        recovery copies stay)."""
        self._unsaved.clear()

    def may_leave_unsaved(self, doing: str) -> bool:
        """True when no photo's save failed, or the user chose ``doing`` without them."""
        if not self._unsaved:
            return True
        names = ", ".join(p.name for p in self._unsaved)
        answer = self._dialogs.ask(
            f"{doing} without these masks?",
            f"The masks of {names} could not be saved. Their edits are kept in recovery files "
            "and offered the next time you open this folder.",
            [doing, "Stay"],
            default="Stay",
        )
        return answer == doing

    # ------------------------------------------------------------------ the open photo
    def save_current(self, background: bool = False) -> bool:
        """Write the current mask if it has unsaved edits. False (after telling why) if it fails.

        ``background``: a big mask (``BACKGROUND_SAVE_PIXELS``) is written from a copy on a
        worker thread and this returns at once (True: started; the outcome follows as
        ``mask_saved`` or an error). Otherwise the mask is on disk when this returns True:
        saves in progress are waited for first."""
        session = self._session
        document = session.current_document()
        if background and document is not None and document.mask.size > BACKGROUND_SAVE_PIXELS:
            path, project = session.current_image_path(), session.project
            if path is not None and project is not None and document.dirty:
                if document.in_stroke:
                    document.end_stroke()
                self._start_save(path, project, document, session.prediction_state)
            return True
        if not self.finish_saves():
            return False
        return self._write_current()

    def _write_current(self) -> bool:
        """Write the open photo's mask on this thread, if it has unsaved edits."""
        session = self._session
        dirty = session.dirty_photo()
        if dirty is None:
            return True
        document, path, project = dirty
        if document.in_stroke:
            document.end_stroke()
        mask_path = project.mask_path(path)
        decision = self._may_write(path, mask_path)
        if decision is Decision.CANCEL:
            return False
        if decision is Decision.COPY:
            return self._save_copy(path, mask_path, document)
        try:
            if session.bad_mask_file and mask_path.exists():
                os.replace(mask_path, mask_path.with_name(mask_path.name + ".bak"))
                session.bad_mask_file = False
            write_mask(mask_path, document.mask)
        except (StonesegError, OSError) as exc:
            message = (
                str(exc) if isinstance(exc, StonesegError) else describe_os_error(exc, mask_path)
            )
            self._recovery.write_now()
            self._dialogs.error(
                "Cannot save the mask",
                f"{message}\n\nYour edits stay open, and a recovery copy is kept in {project.data_dir / '.recovery'}.",
            )
            return False
        document.mark_saved()
        session.note_mask_written(path)
        self._recovery.discard(project, path)
        predicted = self._record_predicted(
            project, path, document.state_id, session.prediction_state
        )
        if not predicted:
            session.prediction_state = None
        session.report_dirty(path, False)
        session.status_changed.emit(path, session.image_status(path), "")
        session.mask_saved.emit(path)
        session.notice.emit(f"Saved {mask_path}")
        log.info("Saved %s", mask_path)
        return True

    def _may_write(self, path: Path, mask_path: Path) -> Decision:
        """Whether this window may write the mask of ``path`` over its file (the project is
        still its own, the file as it read it), else what the user chose instead."""
        session = self._session
        return decide_write(
            self._dialogs, session.lock, session.read_only, mask_path, session.read_stamp(path)
        )

    def _save_copy(self, path: Path, mask_path: Path, document: MaskDocument) -> bool:
        """Save the edits beside the mask file, which keeps the other version."""
        session = self._session
        copy = conflict_copy_path(mask_path)
        try:
            write_mask(copy, document.mask)
        except (StonesegError, OSError) as exc:
            message = str(exc) if isinstance(exc, StonesegError) else describe_os_error(exc, copy)
            self._dialogs.error("Cannot save the copy", message)
            return False
        document.mark_saved()
        if document is session.current_document():
            session.report_dirty(path, False)
        session.notice.emit(
            f"Saved your mask as {copy.name}; {mask_path.name} keeps the other version."
        )
        log.info("Saved %s (a copy: %s was not ours to overwrite)", copy, mask_path)
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

    def may_quit(self) -> bool:
        """Before quitting: save the open photo's mask (waiting for saves in progress); when
        that fails, or other photos' saves failed, ask whether to quit without them. False
        if the user chose to stay."""
        if not self.save_current():
            current = self._session.current_image_path()
            name = current.name if current else "this photo"
            answer = self._dialogs.ask(
                "Quit without saving?",
                f"The mask of {name} could not be saved. Its edits are kept in a recovery file "
                "and offered the next time you open this folder.",
                ["Quit", "Stay"],
                default="Stay",
            )
            if answer != "Quit":
                return False
            self._recovery.write_blocking()
        return self.may_leave_unsaved("Quit")

    # ------------------------------------------------------------------ background saves
    def _start_save(
        self, path: Path, project: Project, document: MaskDocument, prediction_state: int | None
    ) -> None:
        pending = self._saving.get(path)
        if pending is not None:  # one write of a file at a time: this one follows it
            if pending.state != document.state_id:
                pending.again = True
            return
        session = self._session
        current = document is session.current_document()
        mask_path = project.mask_path(path)
        decision = self._may_write(path, mask_path)
        if decision is not Decision.WRITE:
            if decision is Decision.COPY:
                self._save_copy(path, mask_path, document)
            return
        keep_old = session.bad_mask_file and current
        if keep_old:
            session.bad_mask_file = False
        if current:  # this save holds the edits a recovery copy would
            self._recovery.cancel()
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
        self._session.saving_changed.emit(("Saving " + ", ".join(names) + "…") if names else "")

    def _on_save_done(self, record: _Save, error: str | None) -> None:
        if self._saving.get(record.path) is record:
            del self._saving[record.path]
        if error is None:
            self._on_saved(record)
        else:
            self._on_save_failed(record, error)
        self._emit_saving()
        if not self._saving and self._after_saves:
            callbacks, self._after_saves = self._after_saves, []
            for callback in callbacks:
                QTimer.singleShot(0, callback)

    def _on_saved(self, record: _Save) -> None:
        """A background save is written: the document, the photo's state and its recovery
        copy follow; it is saved again if it was edited meanwhile."""
        session = self._session
        document, path, project = record.document, record.path, record.project
        current = document is session.current_document()
        document.mark_saved(record.state)
        if project is session.project:
            session.note_mask_written(path)
        predicted = self._record_predicted(project, path, record.state, record.prediction_state)
        if current:
            if not predicted and document.state_id != session.prediction_state:
                session.prediction_state = None
            session.report_dirty(path, document.dirty)
        if not document.dirty:
            if current:
                self._recovery.cancel()
            elif project is session.project:
                session.remember_history(path, document)
            discard_recovery(project.data_dir, path.stem)
        if project is session.project:
            session.status_changed.emit(path, session.image_status(path), "")
        session.mask_saved.emit(path)
        session.notice.emit(f"Saved {record.mask_path}")
        log.info("Saved %s", record.mask_path)
        if record.again and document.dirty:
            self._start_save(path, project, document, record.prediction_state)

    def _on_save_failed(self, record: _Save, error: str) -> None:
        """A background save failed: its edits are kept (open, or in memory for the photo's
        next opening), with a recovery copy, and nothing waiting for the saves runs."""
        document, path, project = record.document, record.path, record.project
        current = document is self._session.current_document()
        self._after_saves.clear()  # a window waiting to close stays open
        if current:
            self._recovery.write_now()
        else:
            if project is self._session.project:
                self._unsaved[path] = document
            self._recovery.write_copy_of(project, path, document)
        self._dialogs.error(
            "Cannot save the mask",
            f"{error}\n\nThe edits of {path.name} are kept: "
            + ("they stay open" if current else "they come back when you open it again")
            + "; save again (Ctrl+S) once the folder can be written, and a recovery copy is "
            f"kept in {project.data_dir / '.recovery'}.",
        )

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

    # ------------------------------------------------------------------ waiting for saves
    def must_save_in_background(self) -> bool:
        """True while saves are running, or when the current mask is big and has edits: what
        needs the mask on disk should then wait for ``after_saving`` instead of holding the
        window for seconds."""
        document = self._session.current_document()
        return bool(self._saving) or (
            document is not None and document.dirty and document.mask.size > BACKGROUND_SAVE_PIXELS
        )

    def after_saving(self, action: Callable[[], object], doing: str) -> None:
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
        self._session.notice.emit(f"Saving the mask first; {doing} starts once it is written.")

    def close_when_saved(self, callback: Callable[[], object]) -> bool:
        """Before the window closes: a big mask with edits is saved in the background, and
        True says to close later: ``callback`` runs once every save in progress is written
        (never if one fails: the window stays, with the edits). False: close now."""
        document = self._session.current_document()
        if document is not None and document.dirty and document.mask.size > BACKGROUND_SAVE_PIXELS:
            self.save_current(background=True)
        if not self._saving:
            return False
        self._after_saves.append(callback)
        self._session.notice.emit(
            "Saving the mask before closing; the window closes once it is written."
        )
        return True
