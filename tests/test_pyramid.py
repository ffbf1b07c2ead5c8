"""The display pyramid of big photos: tile maths, the byte-bounded cache, tiles from TIFF
windows (with and without overview levels), mask coverage tiles, the background loader."""

import threading
import time
import tracemalloc

import cv2
import numpy as np
import pytest
import tifffile

from stoneseg_core.display import tiff_tiles
from stoneseg_core.display.grid import PyramidGrid, TileKey
from stoneseg_core.display.mask_tiles import MaskOccupancy, mask_tile, update_mask_tile
from stoneseg_core.display.tiff_tiles import TiffTileSource
from stoneseg_core.display.tile_cache import TileCache
from stoneseg_core.display.tile_loader import TileLoader
from stoneseg_core.errors import ImageReadError, StonesegError


def _photo(width, height, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    return np.ascontiguousarray(cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR))


def _write(path, arr, overviews=0, tile=256, **kw):
    with tifffile.TiffWriter(path) as w:
        w.write(
            arr, tile=(tile, tile), compression="zlib", photometric="rgb", subifds=overviews, **kw
        )
        level = arr
        for _ in range(overviews):
            level = cv2.resize(
                level, (level.shape[1] // 2, level.shape[0] // 2), interpolation=cv2.INTER_AREA
            )
            w.write(level, tile=(tile, tile), compression="zlib", photometric="rgb", subfiletype=1)
    return path


# ------------------------------------------------------------------------------ the grid
def test_grid_levels_tiles_and_the_level_for_a_zoom():
    grid = PyramidGrid(20000, 15000, 512)
    assert grid.level_size(0) == (20000, 15000)
    assert grid.level_size(3) == (2500, 1875)
    assert grid.top == 6 and max(grid.level_size(6)) <= 512 < max(grid.level_size(5))
    assert grid.tile_counts(0) == (40, 30)
    # the tiles of a level cover the photo exactly once
    for level in (0, 2, 5, 6):
        area = 0
        cols, rows = grid.tile_counts(level)
        xs, ys = np.zeros(20000, np.int32), np.zeros(15000, np.int32)
        for r in range(rows):
            for c in range(cols):
                x0, y0, x1, y1 = grid.image_rect(TileKey(level, c, r))
                assert x1 <= 20000 and y1 <= 15000 and x1 > x0 and y1 > y0
                w, h = grid.tile_size(TileKey(level, c, r))
                assert (w, h) == (-(-(x1 - x0) // (1 << level)), -(-(y1 - y0) // (1 << level)))
                area += (x1 - x0) * (y1 - y0)
                if r == 0:
                    xs[x0:x1] += 1
                if c == 0:
                    ys[y0:y1] += 1
        assert area == 20000 * 15000 and (xs == 1).all() and (ys == 1).all(), level
    # at least one photo pixel per screen pixel, the coarsest such level
    assert grid.level_for_scale(1.0) == 0
    assert grid.level_for_scale(4.0) == 0
    assert grid.level_for_scale(0.5) == 1
    assert grid.level_for_scale(0.3) == 1
    assert grid.level_for_scale(0.24) == 2
    assert grid.level_for_scale(1e-6) == grid.top
    keys = grid.tiles_in(0, (1000, 1000, 2100, 1500))
    assert {(k.col, k.row) for k in keys} == {(c, r) for c in range(1, 5) for r in range(1, 3)}
    assert grid.tiles_in(0, (-50, -50, -1, -1)) == []
    assert (
        grid.parent(TileKey(0, 7, 3)) == TileKey(1, 3, 1) and grid.parent(TileKey(6, 0, 0)) is None
    )


# ----------------------------------------------------------------------------- the cache
def test_cache_is_bounded_in_bytes_and_drops_the_least_recently_used():
    tile = np.zeros((512, 512, 3), np.uint8)  # 786 KB
    cache = TileCache(10 * tile.nbytes + 100)
    for i in range(30):
        cache.put(i, tile.copy())
        if i == 5:
            assert cache.get(0) is not None  # used again: kept longer
        assert cache.nbytes <= cache.max_bytes
    assert len(cache) == 10 and cache.nbytes == 10 * tile.nbytes
    assert 0 not in cache and 29 in cache and cache.evictions == 20
    cache2 = TileCache(100)
    cache2.put("big", tile)  # larger than the whole cache: not kept
    assert len(cache2) == 0 and cache2.nbytes == 0
    cache.put(29, np.zeros(10, np.uint8))  # replaced: counted once
    assert cache.nbytes == 9 * tile.nbytes + 10
    cache.discard(29)
    cache.clear()
    assert cache.nbytes == 0 and len(cache) == 0


# ------------------------------------------------------------------------- mask tiles
def _block_mean_reference(mask, x0, y0, x1, y1, f):
    """Each output pixel: the mean of mask samples every f/4 pixels inside its block."""
    step = max(1, f // 4)
    region = mask[y0:y1, x0:x1]
    h, w = -(-region.shape[0] // f), -(-region.shape[1] // f)
    out = np.zeros((h, w), np.float64)
    for r in range(h):
        for c in range(w):
            block = region[r * f : (r + 1) * f : step, c * f : (c + 1) * f : step]
            out[r, c] = block.mean()
    return out


def test_mask_tiles_are_coverage_and_an_edit_updates_only_what_it_touched():
    rng = np.random.default_rng(1)
    mask = np.zeros((1300, 2100), np.uint8)
    for _ in range(40):
        cv2.circle(mask, tuple(int(v) for v in rng.integers(0, 2000, 2)), 60, 255, -1)
    grid = PyramidGrid(2100, 1300, 128)
    for key in (TileKey(0, 3, 2), TileKey(2, 1, 1), TileKey(3, 2, 1), TileKey(4, 1, 0)):
        tile = mask_tile(mask, grid, key)
        assert tile.shape[::-1] == grid.tile_size(key)
        ref = _block_mean_reference(mask, *grid.image_rect(key), 1 << key.level)
        if key.col * 128 * (1 << key.level) + 128 * (1 << key.level) <= 2100:  # interior
            assert np.abs(tile.astype(float) - ref).max() <= 1.0
    assert set(np.unique(mask_tile(mask, grid, TileKey(0, 3, 2)))) <= {0, 255}

    tiles = {k: mask_tile(mask, grid, k) for k in grid.tiles_in(3, (0, 0, 2100, 1300))}
    edited = mask.copy()
    cv2.circle(edited, (1500, 700), 45, 255, -1)
    cv2.rectangle(edited, (2050, 1250), (2099, 1299), 0, -1)  # the photo's corner
    box = (1455, 655, 1546, 746)
    for key, tile in tiles.items():
        before = tile.copy()
        hit = update_mask_tile(tile, edited, grid, key, box)
        update_mask_tile(tile, edited, grid, key, (2050, 1250, 2100, 1300))
        assert np.array_equal(tile, mask_tile(edited, grid, key))
        if not hit and not np.array_equal(before, tile):
            x0, y0, x1, y1 = grid.image_rect(key)
            assert x1 >= 2050 and y1 >= 1250  # only the corner's tile changed otherwise
    assert not update_mask_tile(tiles[TileKey(3, 0, 0)], edited, grid, TileKey(3, 0, 0), box)


# ------------------------------------------------------------------------ TIFF source
def test_level_zero_tiles_are_the_photo_and_coarse_ones_its_decimation(tmp_path):
    arr = _photo(3000, 2200)
    path = _write(tmp_path / "p.tif", arr)
    source = TiffTileSource(path, tile=512)
    assert (source.width, source.height, source.overview_count) == (3000, 2200, 0)
    key = TileKey(0, 2, 1)
    x0, y0, x1, y1 = source.grid.image_rect(key)
    assert np.array_equal(source.read_tile(key), arr[y0:y1, x0:x1])
    edge = TileKey(0, 5, 4)  # 3000 = 5*512 + 440; 2200 = 4*512 + 152
    assert source.read_tile(edge).shape == (152, 440, 3)
    coarse = TileKey(2, 1, 0)
    x0, y0, x1, y1 = source.grid.image_rect(coarse)
    ref = cv2.resize(arr[y0:y1, x0:x1], source.grid.tile_size(coarse), interpolation=cv2.INTER_AREA)
    got = source.read_tile(coarse)
    assert got.shape == ref.shape and np.abs(got.astype(int) - ref).max() <= 2
    source.close()


def test_overview_levels_of_the_file_are_used(tmp_path):
    arr = _photo(4096, 4096)
    path = _write(tmp_path / "ov.tif", arr, overviews=3)
    source = TiffTileSource(path, tile=512)
    assert source.overview_count == 3
    top = TileKey(3, 0, 0)  # 512 x 512: the file's third overview itself
    tile = source.read_tile(top)
    with tifffile.TiffFile(path) as tif:
        stored = tif.series[0].levels[3].asarray()
    assert np.array_equal(tile, stored)
    assert source.pixels_read == 512 * 512  # nothing of the full-size image was read
    mid = TileKey(2, 1, 1)  # 1/4: the second overview, a 512 window of it
    source.read_tile(mid)
    assert source.largest_read == 512 * 512
    source.close()


def test_a_coarse_tile_reads_bands_never_the_whole_window(tmp_path, monkeypatch):
    arr = _photo(4096, 4096)
    path = _write(tmp_path / "big.tif", arr)
    del arr
    monkeypatch.setattr(tiff_tiles, "BAND_BYTES", 3 * 1024 * 1024)  # one row of file tiles
    source = TiffTileSource(path, tile=512)
    tracemalloc.start()
    try:
        tile = source.read_tile(TileKey(3, 0, 0))  # the whole photo at 1/8
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert tile.shape == (512, 512, 3)
    assert source.largest_read == 256 * 4096 and source.window_reads == 16
    assert source.pixels_read == 4096 * 4096  # every pixel once, no more
    assert peak < 4 * 3 * 1024 * 1024  # a few bands: a quarter of the 48 MB photo
    source.close()


def test_a_grey_16_bit_tiff_is_shown_stretched(tmp_path):
    rng = np.random.default_rng(0)
    arr = (rng.random((1200, 900)) * 4095).astype(np.uint16)  # 12-bit camera data
    path = tmp_path / "g16.tif"
    tifffile.imwrite(path, arr, tile=(256, 256), compression="zlib")
    source = TiffTileSource(path, tile=512)
    tile = source.read_tile(TileKey(0, 0, 0))
    assert tile.dtype == np.uint8 and tile.shape == (512, 512, 3)
    assert tile.max() >= 250 and tile.min() <= 5  # stretched, not 0..16
    source.close()


def test_unreadable_tiffs_name_the_file(tmp_path):
    arr = _photo(1024, 1024)
    truncated = _write(tmp_path / "cut.tif", arr)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.tif.*truncated"):
        TiffTileSource(truncated)

    big = tmp_path / "cut_big.tif"
    tifffile.imwrite(big, arr, tile=(256, 256), compression="zlib", bigtiff=True)
    big.write_bytes(big.read_bytes()[:200])
    with pytest.raises(ImageReadError, match=r"cut_big\.tif"):
        TiffTileSource(big)

    odd = tmp_path / "lerc.tif"
    tifffile.imwrite(odd, arr, tile=(256, 256), compression=None, photometric="rgb")
    with tifffile.TiffFile(odd, mode="r+b") as tif:
        tif.pages[0].tags["Compression"].overwrite(34887)  # LERC: no decoder here
    with pytest.raises(ImageReadError, match=r"lerc\.tif.*compression"):
        TiffTileSource(odd)

    garbage = tmp_path / "junk.tif"
    garbage.write_bytes(b"II*\x00" + b"\xff" * 64)
    with pytest.raises(StonesegError, match=r"junk\.tif"):
        TiffTileSource(garbage)


def test_big_tiff_photo_is_decided_from_the_header(tmp_path):
    path = tmp_path / "wide.tif"
    # 5000 x 4000 = 20 MP, mostly empty (sparse writes keep the test fast)
    tifffile.imwrite(
        path, shape=(4000, 5000, 3), dtype=np.uint8, tile=(256, 256), photometric="rgb"
    )
    assert tiff_tiles.is_big_tiff_photo(path) and not tiff_tiles.is_big_tiff_photo(path, 30_000_000)
    assert not tiff_tiles.is_big_tiff_photo(tmp_path / "x.png")
    (tmp_path / "bad.tif").write_bytes(b"nope")
    assert not tiff_tiles.is_big_tiff_photo(tmp_path / "bad.tif")


# ------------------------------------------------------------------------ the loader
def test_loader_builds_wanted_tiles_in_the_background_and_reports_failures():
    cache = TileCache(1 << 30)
    built, threads = [], set()
    gate = threading.Event()

    def build(key, should_stop):
        gate.wait(5)
        threads.add(threading.current_thread().name)
        if key.col == 99:
            raise StonesegError("tile 99 is damaged")
        built.append(key)
        return np.full((4, 4, 3), key.col, np.uint8)

    loader = TileLoader(build, cache, workers=2)
    try:
        keys = [TileKey(0, c, 0) for c in range(6)]
        loader.want(keys)
        loader.want(keys[3:])  # the view moved on: the first ones are no longer wanted...
        gate.set()
        assert loader.wait_idle(10)
        ready = loader.take_ready()
        assert set(keys[3:]) <= set(ready) and set(built) <= set(keys)
        assert len(built) <= 5  # ...at most those two threads had already started are built
        assert all(cache.get(k)[0, 0, 0] == k.col for k in keys[3:])
        assert threading.current_thread().name not in threads
        loader.want(keys[3:])  # cached: nothing to build again
        assert not loader.pending and loader.take_ready() == []
        loader.want([TileKey(0, 99, 0)])
        assert loader.wait_idle(10)
        assert loader.take_ready() == [TileKey(0, 99, 0)] and loader.errors == [
            "tile 99 is damaged"
        ]
        loader.want([TileKey(0, 99, 0)])  # not retried
        assert not loader.pending
    finally:
        loader.close()
    assert not any(t.is_alive() for t in loader._threads)


def test_thumbnails_of_big_tiffs_decode_a_sample_of_tiles_or_the_smallest_overview(tmp_path):
    y, x = np.mgrid[0:3072, 0:4096]  # large-scale structure, as in a landscape
    arr = np.stack([x * 255 // 4095, y * 255 // 3071, (x + y) * 255 // 7166], -1).astype(np.uint8)
    source = TiffTileSource(_write(tmp_path / "t.tif", arr), tile=512)
    thumb = source.thumbnail(128, max_segments=4)  # 16 x 12 file tiles: every 4th of each
    assert thumb.shape == (96, 128, 3)
    assert source.window_reads == 4 * 3 and source.pixels_read == 12 * 256 * 256
    ref = cv2.resize(arr, (128, 96), interpolation=cv2.INTER_AREA)
    assert np.abs(thumb.astype(int) - ref).mean() < 20  # a likeness, from 1/16 of the tiles
    assert (thumb.reshape(-1, 3).max(axis=0) > 0).all()  # no block left empty
    source.close()
    source = TiffTileSource(_write(tmp_path / "ov.tif", arr, overviews=4), tile=512)
    thumb = source.thumbnail(128, max_segments=4)
    assert thumb.shape == (96, 128, 3) and source.largest_read == 256 * 192  # 1/16 level
    assert np.abs(thumb.astype(int) - ref).mean() < 4
    source.close()


def test_closing_the_loader_does_not_wait_and_the_last_thread_releases_the_file():
    started, release, exited = threading.Event(), threading.Event(), threading.Event()

    def build(key, should_stop):
        started.set()
        release.wait(10)  # a long band being decoded
        return None if should_stop() else np.zeros((2, 2, 3), np.uint8)

    cache = TileCache(1 << 20)
    loader = TileLoader(build, cache, workers=2)
    loader.want([TileKey(0, 0, 0), TileKey(0, 1, 0), TileKey(0, 2, 0)])
    assert started.wait(5)
    t = time.perf_counter()
    loader.close(wait=False, on_exit=exited.set)
    assert time.perf_counter() - t < 0.5 and not exited.is_set()
    release.set()
    assert exited.wait(10)
    assert len(cache) == 0  # the tile being built when it closed was dropped
    assert not any(th.is_alive() for th in loader._threads) or exited.is_set()


def test_occupancy_skips_empty_blocks_and_follows_edits():
    mask = np.zeros((1000, 1300), np.uint8)
    cv2.circle(mask, (300, 200), 40, 255, -1)
    mask[999, 1299] = 255  # the last, partial block
    occupancy = MaskOccupancy(mask, block=64)
    brute = np.zeros_like(occupancy.any)
    for r in range(brute.shape[0]):
        for c in range(brute.shape[1]):
            brute[r, c] = mask[r * 64 : (r + 1) * 64, c * 64 : (c + 1) * 64].any()
    assert np.array_equal(occupancy.any, brute) and brute.shape == (16, 21)
    assert occupancy.any_in((250, 150, 350, 250)) and not occupancy.any_in((600, 500, 900, 900))
    grid = PyramidGrid(1300, 1000, 128)
    for key in grid.tiles_in(2, (0, 0, 1300, 1000)) + grid.tiles_in(0, (0, 0, 1300, 1000)):
        assert np.array_equal(mask_tile(mask, grid, key, occupancy), mask_tile(mask, grid, key))
    cv2.rectangle(mask, (700, 600), (760, 640), 255, -1)
    occupancy.update((700, 600, 761, 641))
    assert occupancy.any_in((600, 500, 900, 900))
    mask[:] = 0
    occupancy.update((0, 0, 1300, 1000))
    assert not occupancy.any.any()


def test_a_paused_loader_builds_nothing_until_resumed():
    built = []
    loader = TileLoader(
        lambda k, s: built.append(k) or np.zeros(3, np.uint8), TileCache(1 << 20), paused=True
    )
    try:
        loader.want([TileKey(0, 0, 0), TileKey(0, 1, 0)])
        time.sleep(0.2)
        assert built == [] and loader.pending
        loader.resume()
        assert loader.wait_idle(10)
        assert sorted(built) == [TileKey(0, 0, 0), TileKey(0, 1, 0)]
    finally:
        loader.close()
