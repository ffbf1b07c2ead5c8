"""Who edits a project: a lock file that names the window (process) editing it.

Two windows on one project overwrite each other's masks without a word (a second click on the
launcher is enough). Desktop programs lock what they edit; StoneSeg writes ``stoneseg.lock``
in the project's data folder when a window opens it, naming the process, host and user. A
second window finds it and offers the user: open read-only, or take over (the first window
then finds, before its next save, that the project is no longer its own, and saves nothing
over the other's work). A lock whose process is gone (a crash) is stale and taken silently.
No torch, no Qt.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from stoneseg_core.io.images import atomic_write_bytes

log = logging.getLogger(__name__)

LOCK_FILE = "stoneseg.lock"


@dataclass(frozen=True)
class LockOwner:
    """What a lock file says about the window that holds it."""

    pid: int
    host: str
    user: str
    started: float  # seconds since the epoch
    token: str

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.started))
        where = "" if self.host == socket.gethostname() else f" on {self.host}"
        who = f", {self.user}" if self.user else ""
        return f"another StoneSeg window (process {self.pid}{where}{who}, since {when})"

    def is_alive(self) -> bool:
        """Whether the process that wrote the lock still runs (always True for another host:
        it cannot be asked)."""
        if self.host != socket.gethostname():
            return True
        if self.pid == os.getpid():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # someone else's process: it exists
        return True


def read_owner(path: Path) -> LockOwner | None:
    """The lock file's owner; None when there is no lock or it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return LockOwner(
            int(data["pid"]),
            str(data["host"]),
            str(data.get("user", "")),
            float(data["started"]),
            str(data["token"]),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("Ignoring an unreadable lock file %s: %s", path, exc)
        return None


class ProjectLock:
    """This window's claim on a project folder (its data folder, where masks are saved)."""

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self.me = LockOwner(
            os.getpid(), socket.gethostname(), _user(), time.time(), uuid.uuid4().hex
        )
        self.held = False

    def other_owner(self) -> LockOwner | None:
        """Who else holds the project now (None: nobody, or a stale lock of a dead process)."""
        owner = read_owner(self.path)
        if owner is None or owner.token == self.me.token or not owner.is_alive():
            return None
        return owner

    def acquire(self) -> LockOwner | None:
        """Claim the project unless another live window holds it: returns that window's
        owner (and claims nothing), else None (claimed, or the folder cannot take a lock
        file: then nothing is locked, as on a read-only folder)."""
        other = self.other_owner()
        if other is not None:
            return other
        self.take_over()
        return None

    def take_over(self) -> None:
        """Claim the project whoever holds it (the user chose to)."""
        try:
            atomic_write_bytes(self.path, json.dumps(self.me.__dict__, indent=2).encode("utf-8"))
            self.held = True
        except OSError as exc:
            log.info("No lock file in %s (%s): the project is not locked", self.path.parent, exc)
            self.held = False

    def still_ours(self) -> bool:
        """Whether this window may write: it holds the lock and nobody took it over (a
        window that could not write a lock file cannot tell: it may)."""
        if not self.held:
            return True
        owner = read_owner(self.path)
        return owner is None or owner.token == self.me.token

    def taken_by(self) -> LockOwner | None:
        """The window that took the project over from this one (None: nobody did)."""
        if not self.held:
            return None
        owner = read_owner(self.path)
        return owner if owner is not None and owner.token != self.me.token else None

    def release(self) -> None:
        """Give the project up (the window closes or opens another folder)."""
        if self.held and self.still_ours():
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("Could not remove %s: %s", self.path, exc)
        self.held = False


def _user() -> str:
    try:
        return os.getlogin()
    except OSError:
        return os.environ.get("USER") or os.environ.get("USERNAME") or ""
