"""Coarse pyramid levels of a TIFF without overviews: built in one pass by bands of rows (the
block means of the photo), kept in a cache keyed by the file, checked, rebuilt when damaged
or stale."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from stoneseg_core.display import coarse, tiff_tiles
from stoneseg_core.display.coarse import (
    build_coarse_levels,
    coarse_from_level,
    load_coarse_levels,
    save_coarse_levels,
)
from stoneseg_core.display.grid import PyramidGrid, TileKey
from stoneseg_core.display.tiff_tiles import TiffTileSource

W, H = 4500, 4200  # not multiples of 8: the last blocks are partial


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(3)
    small = rng.integers(0, 255, (H // 50 + 1, W // 50 + 1, 3), dtype=np.uint8)
    rgb = cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)
    path = tmp_path_factory.mktemp("coarse") / "ortho.tif"
    tifffile.imwrite(path, rgb, tile=(256, 256), photometric="rgb", compression="zlib")
    return path, rgb


def _block_means(rgb: np.ndarray, f: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    padded = np.pad(rgb, ((0, -h % f), (0, -w % f), (0, 0)), mode="edge").astype(np.float64)
    ph, pw = padded.shape[0] // f, padded.shape[1] // f
    return padded.reshape(ph, f, pw, f, 3).mean(axis=(1, 3))


def test_coarse_levels_are_the_block_means_read_by_bands(photo, monkeypatch) -> None:
    path, rgb = photo
    monkeypatch.setattr(tiff_tiles, "BAND_BYTES", 2 * 1024 * 1024)
    source = TiffTileSource(path)
    fractions: list[float] = []
    try:
        levels = build_coarse_levels(source, progress=fractions.append)
        assert source.pixels_read == W * H, "every pixel decoded once"
        assert source.largest_read <= W * 256, "a band of file tiles at a time, never whole"
    finally:
        source.close()
    first = coarse_from_level(source.grid)
    assert first == 2, "1/4 of a photo this size fits the budget"
    assert sorted(levels) == list(range(first, source.grid.top + 1))
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) > 3
    for level, arr in levels.items():
        w, h = source.grid.level_size(level)
        assert arr.shape == (h, w, 3) and arr.dtype == np.uint8
    expected = _block_means(rgb, 1 << first)
    assert np.abs(levels[first].astype(np.float64) - expected).max() <= 1.0
    top = levels[source.grid.top]
    expected_top = _block_means(rgb, 1 << source.grid.top)
    assert np.abs(top.astype(np.float64) - expected_top).mean() < 2.0


def test_the_coarse_levels_stay_within_their_memory_budget() -> None:
    assert coarse_from_level(PyramidGrid(20000, 20000)) == 2  # 75 MB at 1/4
    assert coarse_from_level(PyramidGrid(40000, 30000)) == 3  # 1/4 would be 225 MB
    assert coarse_from_level(PyramidGrid(3000, 2000)) == 2
    assert coarse_from_level(PyramidGrid(1500, 1000)) == 2  # top: one tile
    for size in ((20000, 20000), (40000, 30000), (100000, 100000)):
        grid = PyramidGrid(*size)
        first = coarse_from_level(grid)
        total = sum(np.prod(grid.level_size(k)) * 3 for k in range(first, grid.top + 1))
        assert total <= coarse.COARSE_MAX_BYTES * 4 / 3 + 1e6


def test_tiles_and_thumbnail_come_from_the_coarse_levels(photo) -> None:
    path, rgb = photo
    source = TiffTileSource(path)
    try:
        levels = build_coarse_levels(source)
        decoded = source.pixels_read
        source.set_coarse_levels(levels)
        first = coarse_from_level(source.grid)
        key = TileKey(first, 0, 0)
        tile = source.read_tile(key)
        assert np.array_equal(tile, levels[first][:512, :512])
        assert source.thumbnail(256).shape[:2] == (239, 256)
        assert source.pixels_read == decoded, "no file read for coarse tiles"
        fine = source.read_tile(TileKey(0, 1, 1))
        assert np.array_equal(fine, rgb[512:1024, 512:1024]), "finer tiles still from the file"
    finally:
        source.close()


def test_the_cache_round_trips_and_rejects_stale_or_damaged_entries(photo, tmp_path) -> None:
    path, _ = photo
    source = TiffTileSource(path)
    try:
        levels = build_coarse_levels(source)
    finally:
        source.close()
    grid = source.grid
    cache = tmp_path / "cache"
    data_path = save_coarse_levels(path, levels, cache)
    assert data_path is not None and data_path.parent == cache
    loaded = load_coarse_levels(path, grid, cache)
    assert loaded is not None and sorted(loaded) == sorted(levels)
    assert all(np.array_equal(loaded[k], levels[k]) for k in levels)

    # damaged: one byte flipped
    data = bytearray(data_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    data_path.write_bytes(bytes(data))
    assert load_coarse_levels(path, grid, cache) is None
    assert not list(cache.iterdir()), "the damaged entry is removed"

    # truncated
    save_coarse_levels(path, levels, cache)
    data_path.write_bytes(data_path.read_bytes()[:1000])
    assert load_coarse_levels(path, grid, cache) is None

    # the photo changed since (its modification time): another key, nothing found
    save_coarse_levels(path, levels, cache)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    try:
        assert load_coarse_levels(path, grid, cache) is None
    finally:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert load_coarse_levels(path, grid, cache) is not None


def test_an_unwritable_cache_is_no_error(photo, tmp_path) -> None:
    path, _ = photo
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    levels = {3: np.zeros((525, 563, 3), np.uint8)}
    assert save_coarse_levels(path, levels, blocker / "cache") is None
