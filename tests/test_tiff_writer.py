"""The one streaming tiled-TIFF writer (stoneseg_core/io/tiff_writer.py): rows pushed in
stripes of any height come back pixel-exact from a tiled, deflate TIFF with its
georeference; a cancelled or failed write leaves nothing behind."""

from __future__ import annotations

import errno
import threading

import numpy as np
import pytest
import tifffile

from stoneseg_core.errors import StonesegError
from stoneseg_core.io import geo, tiff_writer
from stoneseg_core.io.staged import StagedFile
from stoneseg_core.io.tiff_writer import TiledTiffWriter, rewrite_tiled_tiff

UTM33_5MM = (0.005, 0.0, 500000.0, 0.0, -0.005, 5500000.0)


def _stripes(image: np.ndarray, heights) -> list[np.ndarray]:
    """``image`` cut into stripes of the given heights, cycled, to its last row."""
    out, top, i = [], 0, 0
    while top < len(image):
        h = heights[i % len(heights)]
        out.append(image[top : top + h].copy())
        top, i = top + h, i + 1
    return out


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "stoneseg-tiff-writer"]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint32])
def test_stripes_come_back_pixel_exact_from_a_tiled_geotiff(tmp_path, dtype):
    rng = np.random.default_rng(0)
    top = 255 if dtype == np.uint8 else 2**32 - 1
    image = rng.integers(0, top, (301, 530), dtype=dtype, endpoint=True)
    georef = geo.make_georeference(UTM33_5MM, 32633)
    path = tmp_path / "out" / "labels.tif"  # its folder is made
    writer = TiledTiffWriter(path, image.shape, dtype, tile=64, georef=georef)
    assert writer.temporary.parent == path.parent and not path.exists()
    for stripe in _stripes(image, [7, 100, 1, 64, 129]):  # rows regrouped into strips
        writer.push(stripe)
    writer.finish()
    assert list(path.parent.iterdir()) == [path]  # no temporary file left
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.is_tiled and (page.tilelength, page.tilewidth) == (64, 64)
        assert page.compression == 8 and page.predictor == 1  # deflate, no predictor
        assert page.dtype == dtype and page.shape == image.shape
        assert page.software == "StoneSeg" and not tif.is_bigtiff
        assert np.array_equal(page.asarray(), image)
        assert int(tif.geotiff_metadata["ProjectedCSTypeGeoKey"]) == 32633
    assert geo.read_georeference(path) == georef
    assert _writer_threads() == []


def test_without_georeference_and_the_default_tile(tmp_path):
    image = (np.arange(300 * 260) % 251).astype(np.uint8).reshape(300, 260)
    path = tmp_path / "mask.tif"
    writer = TiledTiffWriter(path, image.shape, np.uint8)
    writer.push(image)  # one push of more than a strip
    writer.finish()
    with tifffile.TiffFile(path) as tif:
        assert (tif.pages[0].tilelength, tif.pages[0].tilewidth) == (geo.TILE, geo.TILE)
        assert np.array_equal(tif.pages[0].asarray(), image)
    assert geo.read_georeference(path) is None


def test_an_aborted_write_leaves_no_file_and_keeps_an_old_one(tmp_path):
    image = np.full((1000, 300), 255, np.uint8)
    path = tmp_path / "mask.tif"
    writer = TiledTiffWriter(path, image.shape, np.uint8, tile=64)
    for stripe in _stripes(image[:400], [50]):
        writer.push(stripe)
    writer.abort()
    assert list(tmp_path.iterdir()) == [] and _writer_threads() == []
    path.write_bytes(b"old")
    writer = TiledTiffWriter(path, image.shape, np.uint8, tile=64)
    writer.push(image[:64])
    writer.abort()
    writer.abort()  # twice is harmless
    assert list(tmp_path.iterdir()) == [path] and path.read_bytes() == b"old"
    # aborted after close, before commit: the completed file is removed too
    writer = TiledTiffWriter(path, (64, 64), np.uint8, tile=64)
    writer.push(np.zeros((64, 64), np.uint8))
    writer.close()
    assert writer.temporary.exists()
    writer.abort()
    assert list(tmp_path.iterdir()) == [path] and path.read_bytes() == b"old"


def test_a_full_disk_is_named_and_leaves_nothing(tmp_path, monkeypatch):
    def full(path, tiles, *args):
        next(iter(tiles))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tiff_writer, "write_tiled_tiff", full)
    path = tmp_path / "mask.tif"
    writer = TiledTiffWriter(path, (512, 64), np.uint8, tile=64)
    with pytest.raises(StonesegError, match="disk is full") as info:
        for _ in range(8):
            writer.push(np.zeros((64, 64), np.uint8))
        writer.close()
    assert str(path) in str(info.value)
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_too_few_rows_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "short.tif"
    writer = TiledTiffWriter(path, (200, 64), np.uint8, tile=64)
    writer.push(np.zeros((100, 64), np.uint8))
    with pytest.raises(StonesegError, match="short.tif"):
        writer.finish()
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_a_writer_that_already_took_its_last_tile_still_finishes(tmp_path):
    """tifffile stops asking for tiles once it has the last one, so the writer thread can end
    before close() says "all rows given": that is a finished file, not a stopped writer (it
    failed CI once, on a loaded machine, in test_grains_tiled)."""
    path = tmp_path / "exact.tif"
    image = np.arange(128 * 64, dtype=np.uint16).reshape(128, 64)
    writer = TiledTiffWriter(path, image.shape, np.uint16, tile=64)
    writer.push(image)
    writer._thread.join(timeout=30)  # the race's losing order, made certain
    assert not writer._thread.is_alive()
    writer.finish()
    assert np.array_equal(tifffile.imread(path), image)


def test_a_folder_that_cannot_be_made_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StonesegError, match="Cannot write"):
        TiledTiffWriter(blocker / "mask.tif", (64, 64), np.uint8)
    assert _writer_threads() == []


def test_rewritten_narrower_keeps_pixels_tiles_and_georeference(tmp_path):
    labels = np.zeros((200, 150), np.uint32)
    labels[10:60, 20:90] = 7
    labels[100:190, 5:140] = 65535
    georef = geo.make_georeference(UTM33_5MM, 32633)
    wide = tmp_path / "wide.tif"
    writer = TiledTiffWriter(wide, labels.shape, np.uint32, tile=64, georef=georef)
    writer.push(labels)
    writer.finish()
    narrow = tmp_path / "narrow.tif"
    rewrite_tiled_tiff(wide, narrow, np.uint16, georef)
    with tifffile.TiffFile(narrow) as tif:
        page = tif.pages[0]
        assert page.dtype == np.uint16 and page.tilelength == 64 and page.compression == 8
        assert np.array_equal(page.asarray(), labels)
    assert geo.read_georeference(narrow) == georef


def test_a_staged_file_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("old")
    path.chmod(0o640)
    staged = StagedFile(path)
    staged.temporary.write_text("new")
    staged.commit()
    assert path.read_text() == "new" and path.stat().st_mode & 0o777 == 0o640
    staged = StagedFile(path)
    staged.discard()
    assert list(tmp_path.iterdir()) == [path]
