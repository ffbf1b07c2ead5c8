"""A file written beside its place and moved there when whole: a cancelled or failed job
leaves the folder as it was. No torch."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from stoneseg_core.io.images import new_file_mode


class StagedFile:
    """A temporary file beside ``path`` (``.<name>.*.tmp``, in the same folder so that the
    move is atomic), moved over ``path`` by ``commit`` or removed by ``discard``.

    ``commit`` gives it the mode the replaced file had, or what a plain ``open()`` would
    give a new one (``mkstemp`` makes 0600: colleagues could not read it). OSError from
    ``tempfile`` or the move is the caller's to name."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        fd, temporary = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        os.close(fd)
        self.temporary = Path(temporary)

    def commit(self) -> None:
        os.chmod(self.temporary, new_file_mode(self.path))
        os.replace(self.temporary, self.path)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.temporary.unlink()
