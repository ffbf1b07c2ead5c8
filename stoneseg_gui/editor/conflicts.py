"""Before a mask is written over: is it still this window's to write?

Two windows on one project (a second click on the launcher) used to overwrite each other's
masks without a word: the first window's stroke, saved, was gone when the second saved
(0 % of it kept). Now each save asks two things first and, when either says no, the user
chooses; nothing is overwritten silently and nothing made is thrown away:

- the project lock (``io.project_lock``): this window opened the project read-only, or
  another window took the project over since -> take over and save, save a copy, or cancel;
- the mask file itself: changed on disk since this window read it (another window, another
  program, a script) -> keep both (ours as a copy beside it), overwrite, or cancel.

A copy is ``masks/<stem>.conflict-<date>-<time>.png``: no photo has that name, so training and
the grains never take it for a mask; the user compares the two and keeps one.
"""

from __future__ import annotations

import stat
import time
from enum import Enum
from pathlib import Path

from stoneseg_core.io.project_lock import ProjectLock

from ..widgets.dialogs import Dialogs

Stamp = tuple[int, int] | None  # (modification time in ns, size) of a file; None: no file


class Decision(str, Enum):
    WRITE = "write"  # write the mask over the file
    COPY = "copy"  # write it beside the file, as a copy
    CANCEL = "cancel"  # write nothing; the edits stay open


def file_stamp(path: Path) -> Stamp:
    """The file at ``path`` as (modification time, size); None when there is no file there
    (nothing, or something that is not a file: writing will say why it cannot)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size) if stat.S_ISREG(st.st_mode) else None


def conflict_copy_path(mask_path: Path) -> Path:
    """Where a mask that must not overwrite ``mask_path`` is saved instead."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = mask_path.with_name(f"{mask_path.stem}.conflict-{stamp}{mask_path.suffix}")
    n = 2
    while path.exists():
        path = mask_path.with_name(f"{mask_path.stem}.conflict-{stamp}-{n}{mask_path.suffix}")
        n += 1
    return path


def decide_write(
    dialogs: Dialogs,
    lock: ProjectLock | None,
    read_only: bool,
    mask_path: Path,
    read_stamp: Stamp,
) -> Decision:
    """Whether the mask may be written over ``mask_path`` (see the module's docstring);
    ``read_stamp`` is the file as this window read it. Takes the project over when the user
    says so."""
    if lock is not None and (read_only or not lock.still_ours()):
        decision = _ask_about_the_other_window(dialogs, lock, read_only, mask_path)
        if decision is not Decision.WRITE:
            return decision
    if file_stamp(mask_path) != read_stamp:
        answer = dialogs.ask(
            "The mask changed on disk",
            f"{mask_path} was changed by another window or program since this window read "
            "it. Saving would replace that version with yours.\n\nKeep both (yours saved as "
            "a copy beside it), overwrite it with yours, or cancel (your edits stay open)?",
            ["Keep both", "Overwrite", "Cancel"],
            default="Keep both",
        )
        return {"Keep both": Decision.COPY, "Overwrite": Decision.WRITE}.get(
            answer, Decision.CANCEL
        )
    return Decision.WRITE


def _ask_about_the_other_window(
    dialogs: Dialogs, lock: ProjectLock, read_only: bool, mask_path: Path
) -> Decision:
    owner = lock.taken_by() or lock.other_owner()
    who = owner.describe() if owner is not None else "another StoneSeg window"
    why = (
        f"This window opened the project read-only: {who} edits it"
        if read_only
        else f"The project was taken over by {who}"
    )
    answer = dialogs.ask(
        "Another window edits this project",
        f"{why}. Saving {mask_path.name} here could overwrite work saved there.\n\n"
        "Save your mask as a copy beside it, take the project over and save (the other "
        "window then saves nothing over yours), or cancel (your edits stay open)?",
        ["Save a copy", "Take over and save", "Cancel"],
        default="Save a copy",
    )
    if answer == "Take over and save":
        lock.take_over()
        return Decision.WRITE
    return Decision.COPY if answer == "Save a copy" else Decision.CANCEL
