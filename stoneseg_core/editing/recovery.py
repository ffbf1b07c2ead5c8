"""Crash recovery files: unsaved edits written beside the project's masks.

After each finished edit (debounced) the session writes ``<data_dir>/.recovery/<stem>.png``
and a small ``<stem>.json`` saying which photo it belongs to; saving the mask deletes them.
If the app dies in between, the next opening of the project finds them and offers to
restore them. No Qt here.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stoneseg_core.errors import MaskError, StonesegError
from stoneseg_core.io.images import atomic_write_bytes, image_size, read_mask, write_mask

log = logging.getLogger(__name__)

RECOVERY_DIR = ".recovery"


@dataclass(frozen=True)
class RecoveryEntry:
    stem: str
    image_name: str
    mask_file: Path
    saved_at: float  # seconds since the epoch
    width: int
    height: int

    @property
    def saved_at_text(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(self.saved_at))


def recovery_dir(data_dir: Path) -> Path:
    return Path(data_dir) / RECOVERY_DIR


def write_recovery(data_dir: Path, image_path: Path, mask: np.ndarray) -> Path:
    """Write the unsaved mask of ``image_path`` (runs on a worker thread)."""
    folder = recovery_dir(data_dir)
    stem = Path(image_path).stem
    png = folder / f"{stem}.png"
    write_mask(png, mask)
    meta = {
        "image": Path(image_path).name,
        "saved_at": time.time(),
        "width": int(mask.shape[1]),
        "height": int(mask.shape[0]),
    }
    atomic_write_bytes(folder / f"{stem}.json", json.dumps(meta, indent=2).encode("utf-8"))
    return png


def discard_recovery(data_dir: Path, stem: str) -> None:
    folder = recovery_dir(data_dir)
    for suffix in (".png", ".json"):
        try:
            (folder / f"{stem}{suffix}").unlink(missing_ok=True)
        except OSError as exc:
            log.warning("Cannot delete recovery file %s%s: %s", stem, suffix, exc)
    try:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    except OSError:
        pass


def list_recoveries(data_dir: Path) -> list[RecoveryEntry]:
    folder = recovery_dir(data_dir)
    if not folder.is_dir():
        return []
    entries = []
    for meta_path in sorted(folder.glob("*.json")):
        png = meta_path.with_suffix(".png")
        if not png.is_file():
            continue
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            entries.append(
                RecoveryEntry(
                    stem=meta_path.stem,
                    image_name=str(meta["image"]),
                    mask_file=png,
                    saved_at=float(meta.get("saved_at", png.stat().st_mtime)),
                    width=int(meta["width"]),
                    height=int(meta["height"]),
                )
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("Ignoring damaged recovery file %s: %s", meta_path, exc)
    return entries


def restore_recovery(entry: RecoveryEntry, image_path: Path, mask_path: Path) -> None:
    """Write a recovered mask as the image's mask; raises StonesegError if it does not fit."""
    try:
        w, h = image_size(image_path)
    except StonesegError as exc:
        raise StonesegError(f"Cannot restore the edits of {entry.image_name}: {exc}") from exc
    try:
        mask = read_mask(entry.mask_file, expected_size=(h, w))
    except MaskError as exc:
        raise StonesegError(f"Cannot restore the edits of {entry.image_name}: {exc}") from exc
    write_mask(mask_path, mask)
