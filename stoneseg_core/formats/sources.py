"""Where the label files of an import are: a file, a folder of them, or a zip (CVAT and
Label Studio export zips) unpacked into a temporary folder for the import's length."""

from __future__ import annotations

import contextlib
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from stoneseg_core.errors import StonesegError

SUFFIXES = {
    "coco": (".json",),
    "labelme": (".json",),
    "geojson": (".geojson", ".json", ".gpkg", ".shp"),
}
SUFFIXES["gpkg"] = SUFFIXES["shp"] = SUFFIXES["geojson"]


@contextlib.contextmanager
def unpacked(source: str | Path) -> Iterator[Path]:
    """``source`` itself, or the folder a zip was unpacked into (removed afterwards)."""
    source = Path(source)
    if not source.exists():
        raise StonesegError(f"Not found: {source}")
    if not (source.is_file() and zipfile.is_zipfile(source)):
        yield source
        return
    with tempfile.TemporaryDirectory(prefix="stoneseg-import-") as tmp:
        try:
            with zipfile.ZipFile(source) as archive:
                archive.extractall(tmp)  # names with ".." or a root are made safe by zipfile
        except (zipfile.BadZipFile, OSError, RuntimeError) as exc:
            raise StonesegError(f"Cannot unpack {source.name}: {exc}") from exc
        yield Path(tmp)


def label_files(fmt: str, place: Path) -> list[Path]:
    """The files of format ``fmt`` at ``place`` (a file, or every one below a folder, in
    order); StonesegError when there is none."""
    suffixes = SUFFIXES[fmt]
    if place.is_file():
        return [place]
    found = sorted(
        p
        for p in place.rglob("*")
        if p.suffix.lower() in suffixes and p.is_file() and not p.name.startswith(".")
    )
    if not found:
        raise StonesegError(f"No {' or '.join(suffixes)} file in {place}.")
    return found
