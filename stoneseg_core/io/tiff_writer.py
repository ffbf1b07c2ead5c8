"""One streaming tiled-TIFF writer: rows in, a tiled TIFF out, the image never whole.

Both window-by-window jobs write their big raster through it: the windowed segmentation its
0/255 mask (``inference.large``: uint8, with the photo's georeference and CRS) and the
window-by-window grain measurement its stone labels (``grains.tiled``: uint32, rewritten
uint16 by ``rewrite_tiled_tiff`` when the ids fit, since the count is known only at the end).

- **Format** (``write_tiled_tiff``, the one place it is set): grey ("minisblack") tiles of
  ``tile`` x ``tile`` pixels (256 by default, ``geo.TILE``), deflate without predictor,
  BigTIFF past 4 GB, the georeference's GeoTIFF tags copied unchanged, software "StoneSeg",
  no tifffile metadata.
- **Streaming**: rows are pushed in any number and gathered into strips of one row of tiles,
  handed to a writer thread through a queue of two strips: tifffile compresses while the
  caller computes the next rows. Memory: about three strips (two queued, one gathered).
- **Atomic**: the file is written to a temporary file beside its path (fsynced) and moved
  into place by ``commit`` (``finish``: ``close`` then ``commit``). ``abort`` -- a cancel,
  a failure, a closed generator -- stops the thread and removes the temporary file: nothing
  is left at the path, and an existing file there is kept.
- **Errors** are StonesegErrors naming the file (a full disk, a read-only folder: what
  ``describe_os_error`` says), raised on the caller's thread at the next push or at close.

No torch.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from stoneseg_core.errors import StonesegError
from stoneseg_core.io.geo import TILE, Georeference, geotiff_extratags, import_tifffile
from stoneseg_core.io.images import describe_os_error
from stoneseg_core.io.staged import StagedFile

# past this many bytes of pixels a TIFF is written as a BigTIFF (a classic TIFF's offsets
# end at 4 GB; 32 MB are left for the tile tables and tags)
BIGTIFF_ABOVE_BYTES = 2**32 - 2**25


def write_tiled_tiff(
    path: str | Path,
    tiles: Iterable[np.ndarray],
    shape: tuple[int, int],
    dtype,
    tile: int = TILE,
    georef: Georeference | None = None,
) -> None:
    """Write a grey tiled TIFF of ``shape`` and ``dtype`` from its ``tiles`` in row-major
    order (edge tiles may be partial), deflate-compressed, with ``georef``'s GeoTIFF tags."""
    import_tifffile().imwrite(
        path,
        tiles,
        shape=shape,
        dtype=dtype,
        photometric="minisblack",
        tile=(tile, tile),
        compression="zlib",
        predictor=None,
        extratags=geotiff_extratags(georef),
        metadata=None,
        software="StoneSeg",
        bigtiff=shape[0] * shape[1] * np.dtype(dtype).itemsize > BIGTIFF_ABOVE_BYTES,
    )


def rewrite_tiled_tiff(
    src: str | Path, dst: str | Path, dtype, georef: Georeference | None = None
) -> None:
    """The tiled TIFF ``src`` again at ``dst`` with pixels of ``dtype`` (every value must
    fit), tile by tile: its shape and tiles kept, ``georef``'s tags written."""
    with import_tifffile().TiffFile(src) as tif:
        page = tif.pages[0]
        shape = (int(page.imagelength), int(page.imagewidth))
        tile = int(page.tilelength)
        empty = np.zeros((tile, tile), dtype)  # a tile never written (tifffile: None)
        tiles = (
            empty if seg is None else seg.reshape(seg.shape[-3], seg.shape[-2]).astype(dtype)
            for seg, _, _ in page.segments()
        )
        write_tiled_tiff(dst, tiles, shape, dtype, tile, georef)


class _Aborted(Exception):
    """Raised in the writer thread to end tifffile's write at ``abort``."""


_ABORT = object()  # the queue's item for "stop"; None is "all rows given"


class TiledTiffWriter:
    """A tiled TIFF at ``path`` of ``shape`` (height, width) and ``dtype``, written from a
    thread as rows are pushed (module docstring). ``push`` keeps the arrays it is given
    until they are written: do not change them afterwards."""

    def __init__(
        self,
        path: str | Path,
        shape: tuple[int, int],
        dtype,
        *,
        tile: int = TILE,
        georef: Georeference | None = None,
    ) -> None:
        import_tifffile()  # a missing tifffile is named before any file is made
        self.path = Path(path)
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype, self.tile, self.georef = np.dtype(dtype), int(tile), georef
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._staged = StagedFile(self.path)
        except OSError as exc:
            raise StonesegError(describe_os_error(exc, self.path)) from exc
        self._gathered: list[np.ndarray] = []  # rows pushed, not yet a whole strip
        self._gathered_rows = 0
        self._committed = False
        self._error: BaseException | None = None  # what ended the writer thread
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._thread = threading.Thread(
            target=self._write, name="stoneseg-tiff-writer", daemon=True
        )
        self._thread.start()

    @property
    def temporary(self) -> Path:
        """The file being written, moved to ``path`` by ``commit``."""
        return self._staged.temporary

    # the caller's side ---------------------------------------------------------------
    def push(self, rows: np.ndarray) -> None:
        """The next rows of the image, any number of them."""
        self._gathered.append(rows)
        self._gathered_rows += len(rows)
        while self._gathered_rows >= self.tile:
            gathered = self._gathered
            strip = np.concatenate(gathered) if len(gathered) > 1 else gathered[0]
            self._hand_over(strip[: self.tile])
            rest = strip[self.tile :]
            self._gathered, self._gathered_rows = ([rest] if len(rest) else []), len(rest)

    def close(self) -> None:
        """Every row was pushed: the file is completed and fsynced, not yet moved into
        place. StonesegError naming the file (its temporary file removed) if it failed."""
        try:
            if self._gathered_rows:
                self._hand_over(np.concatenate(self._gathered))
                self._gathered, self._gathered_rows = [], 0
            self._hand_over(None)
            self._thread.join()
            self._raise_error()
        except BaseException:
            self._staged.discard()
            raise

    def commit(self) -> None:
        """The completed file moved to ``path`` (with the mode a replaced file had)."""
        try:
            self._staged.commit()
        except OSError as exc:
            self._staged.discard()
            raise StonesegError(describe_os_error(exc, self.path)) from exc
        self._committed = True

    def finish(self) -> None:
        """``close`` then ``commit``."""
        self.close()
        self.commit()

    def abort(self) -> None:
        """Stop writing (the strips queued are dropped) and remove the temporary file;
        nothing after ``commit``. Never raises what the writer met."""
        if self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                while True:
                    self._queue.get_nowait()
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(_ABORT)
            self._thread.join()
        if not self._committed:
            self._staged.discard()

    def _hand_over(self, item) -> None:
        """Queue a strip (or None, or _ABORT) for the thread; its error raised here."""
        while True:
            alive = self._thread.is_alive()  # before the error: set before the thread ends
            self._raise_error()
            if not alive:
                if item is None:
                    # tifffile stops asking for tiles once it has the last one, so the thread
                    # may end (the file complete) before "all rows given" reaches it
                    return
                raise StonesegError(f"Cannot write {self.path}: the writer stopped.")
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _raise_error(self) -> None:
        exc = self._error
        if exc is None or isinstance(exc, _Aborted):
            return
        if isinstance(exc, OSError):
            raise StonesegError(describe_os_error(exc, self.path)) from exc
        raise StonesegError(f"Cannot write {self.path}: {exc}") from exc

    # the writer thread -----------------------------------------------------------------
    def _tiles(self) -> Iterator[np.ndarray]:
        while True:
            strip = self._queue.get()
            if strip is None:
                return
            if strip is _ABORT:
                raise _Aborted
            for x in range(0, self.shape[1], self.tile):
                yield np.ascontiguousarray(strip[:, x : x + self.tile])

    def _write(self) -> None:
        try:
            write_tiled_tiff(
                self.temporary, self._tiles(), self.shape, self.dtype, self.tile, self.georef
            )
            with open(self.temporary, "rb+") as fh:
                os.fsync(fh.fileno())
        except BaseException as exc:  # _Aborted, a full disk...: raised on the caller's side
            self._error = exc
