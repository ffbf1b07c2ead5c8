"""A big tiled GeoTIFF (an orthomosaic) in the real window: drawn from the tile pyramid at the
level the zoom needs, never read whole, painted and undone tile by tile, its scale taken from
the georeference; unreadable big TIFFs are named and the other photos still open."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile
from guihelpers import drag, wait_loaded, write_photo
from PySide6.QtCore import QPointF

from stoneseg_core.display import tiff_tiles
from stoneseg_core.display.grid import TileKey
from stoneseg_core.display.mask_tiles import mask_tile
from stoneseg_core.io import geo
from stoneseg_gui.editor.canvas_items import PLACEHOLDER_COLOR
from stoneseg_gui.editor.tiled_photo import TiledPhoto

SIZE = 8000  # 64 MP: four times the threshold above which TIFFs go through the pyramid
UTM33_4MM = (0.004, 0.0, 500000.0, 0.0, -0.004, 5500000.0)


def _ortho_pixels(rows: slice, cols: slice) -> np.ndarray:
    """The synthetic orthomosaic: red grows to the right, green downwards, blue a texture."""
    y = np.arange(rows.start, rows.stop)[:, None]
    x = np.arange(cols.start, cols.stop)[None, :]
    out = np.empty((len(y), x.shape[1], 3), np.uint8)
    out[..., 0] = x * 255 // (SIZE - 1)
    out[..., 1] = y * 255 // (SIZE - 1)
    out[..., 2] = ((x // 16 + y // 16) % 2) * 120 + 60
    return out


def _write_geotiff(path: Path, width: int, height: int, pixels=None, **kw) -> Path:
    georef = geo.make_georeference(UTM33_4MM, 32633)
    extratags = [
        (code, "H" if code == geo.GEO_KEY_DIRECTORY else "d", len(v), tuple(v), True)
        for code, v in georef.tags
    ]

    def tiles():
        for r in range(0, height, 256):
            for c in range(0, width, 256):
                rows, cols = slice(r, min(height, r + 256)), slice(c, min(width, c + 256))
                block = np.zeros((256, 256, 3), np.uint8)
                if pixels is not None:
                    part = pixels(rows, cols)
                    block[: part.shape[0], : part.shape[1]] = part
                yield block

    tifffile.imwrite(
        path,
        tiles(),
        shape=(height, width, 3),
        dtype=np.uint8,
        tile=(256, 256),
        photometric="rgb",
        compression="zlib",
        compressionargs={"level": 1},
        extratags=extratags,
        metadata=None,
        **kw,
    )
    return path


@pytest.fixture(scope="module")
def ortho_file(tmp_path_factory) -> Path:
    return _write_geotiff(tmp_path_factory.mktemp("ortho") / "ortho.tif", SIZE, SIZE, _ortho_pixels)


@pytest.fixture
def ortho_project(tmp_path, ortho_file) -> Path:
    (tmp_path / "proj" / "images").mkdir(parents=True)
    (tmp_path / "proj" / "images" / "ortho.tif").symlink_to(ortho_file)
    return tmp_path / "proj"


def _wait_tiles(qtbot, canvas) -> None:
    photo = canvas.display_image
    assert isinstance(photo, TiledPhoto)

    def done() -> bool:
        canvas.viewport().repaint()  # paint asks for what is missing
        loader = photo.loader
        return (
            loader is not None
            and not loader.pending
            and not photo.preview_pending
            and not photo.coarse_pending
        )

    qtbot.waitUntil(done, timeout=60_000)
    canvas.viewport().repaint()


def _screen_rgb(canvas, x: float, y: float) -> tuple[int, int, int]:
    image = canvas.viewport().grab().toImage()
    c = image.pixelColor(canvas.image_to_viewport(x, y).toPoint())
    return c.red(), c.green(), c.blue()


def _open(qtbot, window, project: Path) -> TiledPhoto:
    window.session.open_folder(project)
    wait_loaded(qtbot, window, timeout=30_000)
    photo = window.canvas.display_image
    assert isinstance(photo, TiledPhoto)
    return photo


def test_a_big_geotiff_opens_at_the_level_of_the_zoom_never_read_whole(
    qtbot, window, ortho_project, monkeypatch
) -> None:
    monkeypatch.setattr(tiff_tiles, "BAND_BYTES", 4 * 1024 * 1024)
    canvas = window.canvas
    tracemalloc.start()
    try:
        photo = _open(qtbot, window, ortho_project)
        _wait_tiles(qtbot, canvas)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (photo.width, photo.height) == (SIZE, SIZE)
    assert canvas.is_fitted() and canvas.zoom() < 0.1
    level = photo.grid.level_for_scale(canvas.zoom())
    assert level == 3  # ~1/12 on screen: the 1/8 level, not finer, not coarser
    assert canvas.tiled_item.drawn_levels == {level}
    visible = photo.grid.tiles_in(level, (0, 0, SIZE, SIZE))
    assert all(k in photo.cache for k in visible)
    # never whole: each pixel was decoded once, a band of file tiles at a time (and every
    # other file tile once more for the quick preview), and the memory used is the mask
    # plus a few bands (the RGB photo alone would be 192 MB)
    source = photo.source
    assert photo.preview is not None and photo.preview.shape == (500, 500, 4)
    assert source.pixels_read == SIZE * SIZE + (15 * 256 + 64) ** 2  # 8000 = 31 * 256 + 64
    assert source.largest_read <= SIZE * 256
    mask_bytes = SIZE * SIZE
    assert peak < mask_bytes + SIZE * SIZE * 3 / 3
    # the right pixels at the right place: red follows x, green y
    for x, y in ((1000, 1000), (6500, 2000), (4000, 7000)):
        r, g, b = _screen_rgb(canvas, x, y)
        assert abs(r - x * 255 / SIZE) <= 8 and abs(g - y * 255 / SIZE) <= 8, (x, y, r, g)
        assert (r, g, b) != PLACEHOLDER_COLOR.getRgb()[:3]
    window.grab().save(str(ortho_project / "shot_fit.png"))

    # zoom to 100 % somewhere: level 0 tiles of that place only
    canvas.set_zoom(1.0)
    canvas.centerOn(5000, 3000)
    before = source.window_reads
    _wait_tiles(qtbot, canvas)
    assert 0 in canvas.tiled_item.drawn_levels
    assert source.window_reads - before <= 12  # the few 512-px tiles on screen
    r, g, _ = _screen_rgb(canvas, 5000, 3000)
    assert abs(r - 5000 * 255 / SIZE) <= 2 and abs(g - 3000 * 255 / SIZE) <= 2
    assert photo.cache.nbytes <= photo.cache.max_bytes


def test_painting_the_big_photo_updates_its_mask_tiles_and_undo_restores_them(
    qtbot, window, ortho_project
) -> None:
    canvas = window.canvas
    photo = _open(qtbot, window, ortho_project)
    document = canvas.document
    assert canvas.mask_item.tiled and document.mask.nbytes == SIZE * SIZE
    canvas.set_zoom(1.0)
    canvas.centerOn(3000, 3000)
    _wait_tiles(qtbot, canvas)
    window.tool_settings.choose_brush_size(30)
    before = _screen_rgb(canvas, 3000, 3000)

    drag(qtbot, canvas, [(2950, 3000), (3000, 3000), (3050, 3000)])
    assert document.mask[3000, 3000] == 255 and document.mask[3000, 2900] == 0
    assert document.undo_nbytes < 64 * 1024  # the stroke's box, bit-packed
    tile = canvas.mask_item.tile_cache.peek(TileKey(0, 3000 // 512, 3000 // 512))
    assert tile is not None and tile[3000 % 512, 3000 % 512] == 255
    canvas.viewport().repaint()
    painted = _screen_rgb(canvas, 3000, 3000)
    assert painted != before

    # zoomed out, the coarse coverage tile shows the stroke...
    canvas.fit_to_window()
    canvas.viewport().repaint()
    level = photo.grid.level_for_scale(canvas.zoom())
    coarse_key = TileKey(level, 3000 // (512 << level), 3000 // (512 << level))
    coarse = canvas.mask_item.tile_cache.peek(coarse_key)
    assert coarse is not None and coarse.max() > 0
    # ...and undo puts every cached tile back, level 0 included
    window.session.undo()
    assert document.mask.max() == 0
    assert coarse.max() == 0 and tile.max() == 0
    window.session.redo()
    assert document.mask[3000, 3000] == 255
    assert np.array_equal(coarse, mask_tile(document.mask, photo.grid, coarse_key))
    # the outline view and a model's prediction work on the big mask too
    window.tool_settings.set_outline_only(True)
    canvas.viewport().repaint()
    window.tool_settings.set_outline_only(False)
    prediction = np.zeros((SIZE, SIZE), np.uint8)
    prediction[100:600, 100:600] = 255
    canvas.set_prediction(prediction)
    assert canvas.prediction_item.tiled
    canvas.viewport().repaint()
    canvas.set_prediction(None)
    window.session.undo()

    canvas.set_zoom(1.0)
    canvas.centerOn(3000, 3000)
    _wait_tiles(qtbot, canvas)
    assert _screen_rgb(canvas, 3000, 3000) == before

    # a whole-mask edit of a 64 MP mask keeps its undo bit-packed: before and after,
    # 8 MB each, where two uint8 copies would take 128 MB
    document.invert()
    assert document.mask.min() == 255
    assert document.undo_nbytes <= 2 * (SIZE * SIZE // 8) + 4096
    window.session.undo()
    assert document.mask.max() == 0

    # leaving the photo never waits for its decoders; the last one to stop closes the file
    loader = photo.loader
    photo.close()
    assert photo.loader is None and photo.closed
    qtbot.waitUntil(lambda: not any(t.is_alive() for t in loader._threads), timeout=20_000)
    assert not photo.source._handles


def test_the_scale_panel_shows_the_georeference_mm_per_px(qtbot, window, ortho_project) -> None:
    _open(qtbot, window, ortho_project)
    panel = window.grain_side.panel
    assert panel.scale.value() == pytest.approx(4.0)
    assert window.grain_side.scale == pytest.approx(4.0)
    text = panel.scale_source.text()
    assert "from the georeference" in text and "EPSG:32633" in text
    assert panel.scale_source.isVisibleTo(panel)
    panel.scale.setValue(3.5)  # the user's own scale wins, and is no longer "from" anything
    assert window.grain_side.scale == pytest.approx(3.5)
    assert not panel.scale_source.isVisibleTo(panel)


def test_unreadable_big_tiffs_are_named_and_the_other_photos_still_open(
    qtbot, window, dialogs, tmp_path
) -> None:
    images = tmp_path / "proj" / "images"
    images.mkdir(parents=True)
    write_photo(images / "a.png", 120, 90)
    cut = _write_geotiff(images / "b_cut.tif", 5000, 4000, bigtiff=True)
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    odd = _write_geotiff(images / "c_lerc.tif", 5000, 4000)
    with tifffile.TiffFile(odd, mode="r+b") as tif:
        tif.pages[0].tags["Compression"].overwrite(34887)  # LERC: no decoder here

    window.session.open_folder(tmp_path / "proj")
    wait_loaded(qtbot, window)
    session, canvas = window.session, window.canvas
    for name, why in (("b_cut.tif", "truncated"), ("c_lerc.tif", "compression")):
        failed = []
        session.image_failed.connect(lambda p, m, f=failed: f.append((p, m)))
        session.open_image(images / name)
        qtbot.waitUntil(lambda f=failed: bool(f), timeout=20_000)
        path, message = failed[0]
        assert path.name == name and name in message and why in message
        assert name in canvas.message and canvas.document is None
    session.open_image(images / "a.png")
    wait_loaded(qtbot, window, images / "a.png")
    assert canvas.document is not None and canvas.document.shape == (90, 120)
    assert not dialogs.errors
    canvas.set_zoom(2.0, QPointF(10, 10))  # still a working canvas


def test_photos_held_whole_keep_the_shared_overlay(qtbot, window) -> None:
    from stoneseg_core.editing.mask_document import MaskDocument
    from stoneseg_gui.editor.display import make_display_image

    canvas = window.canvas
    display = make_display_image(np.zeros((4000, 6000, 3), np.uint8))  # a 24 MP JPEG's way
    canvas.show_image(display, MaskDocument(shape=(4000, 6000)))
    assert not canvas.mask_item.tiled and canvas.tiled_item.photo is None
    canvas.set_prediction(np.zeros((4000, 6000), np.uint8))
    assert not canvas.prediction_item.tiled


def test_a_saved_mask_of_the_big_photo_opens_on_it(qtbot, window, ortho_project) -> None:
    from stoneseg_core.io.images import write_mask

    saved = np.zeros((SIZE, SIZE), np.uint8)
    saved[2000:2600, 5000:5900] = 255
    write_mask(ortho_project / "masks" / "ortho.png", saved)
    photo = _open(qtbot, window, ortho_project)
    canvas = window.canvas
    assert np.array_equal(canvas.document.mask, saved)
    canvas.viewport().repaint()
    level = photo.grid.level_for_scale(canvas.zoom())
    span = 512 << level
    key = TileKey(level, 5400 // span, 2300 // span)
    tile = canvas.mask_item.tile_cache.peek(key)
    assert tile is not None and np.array_equal(tile, mask_tile(saved, photo.grid, key))
    assert tile.max() == 255 and canvas.mask_item._occupancy.any_in((5000, 2000, 5900, 2600))
    assert not canvas.mask_item._occupancy.any_in((0, 0, 4000, 1900))


def test_coarse_levels_build_once_in_the_background_then_come_from_the_cache(
    qtbot, make_window, ortho_project, tmp_path
) -> None:
    """A file without overviews: the first opening builds the coarse levels on a thread
    (progress in the status bar, the fine tiles and painting work meanwhile); the second
    opening takes them from the cache and decodes almost nothing for the first screen."""
    window = make_window()
    canvas = window.canvas
    progress: list[float] = []
    canvas.pyramid_progress.connect(progress.append)
    photo = _open(qtbot, window, ortho_project)
    assert not photo.coarse_from_cache
    # at 100 % while the levels are built: level-0 tiles load, painting works
    canvas.set_zoom(1.0)
    canvas.centerOn(5000, 3000)
    fine_during_build = []

    def fine_tiles_came() -> bool:
        canvas.viewport().repaint()
        if photo.coarse_pending and any(k.level == 0 for k in photo.cache.keys()):
            fine_during_build.append(True)
        return bool(fine_during_build) or photo.coarse_ready.is_set()

    qtbot.waitUntil(fine_tiles_came, timeout=60_000)
    building = photo.coarse_pending
    drag(qtbot, canvas, [(4990, 2990), (5010, 3010)])
    assert window.current_document().mask[3000, 5000] == 255
    if building:
        assert "overview" in window.status.busy_text()
    qtbot.waitUntil(photo.coarse_ready.is_set, timeout=120_000)
    assert fine_during_build, "level-0 tiles came while the levels were built"
    qtbot.waitUntil(lambda: progress[-1] == -1.0, timeout=10_000)  # over: the bar goes
    building_steps = [f for f in progress if f >= 0]
    assert building_steps == sorted(building_steps) and max(building_steps) > 0
    canvas.fit_to_window()
    _wait_tiles(qtbot, canvas)
    assert window.status.busy_text() == ""
    cache = tmp_path / "pyramid-cache"
    assert len(list(cache.glob("*.bin"))) == 1 and len(list(cache.glob("*.json"))) == 1
    window.session.save_current()
    window.close()

    # the second opening (another window): from the cache, no preview, no whole decode
    second = make_window()
    photo2 = _open(qtbot, second, ortho_project)
    assert photo2.coarse_from_cache and photo2.source.coarse
    _wait_tiles(qtbot, second.canvas)
    assert photo2.preview is None
    level = photo2.grid.level_for_scale(second.canvas.zoom())
    assert second.canvas.tiled_item.drawn_levels == {level}
    assert photo2.source.pixels_read < SIZE * SIZE / 100, photo2.source.pixels_read
    r, g, _ = _screen_rgb(second.canvas, 6500, 2000)
    assert abs(r - 6500 * 255 / SIZE) <= 8 and abs(g - 2000 * 255 / SIZE) <= 8
