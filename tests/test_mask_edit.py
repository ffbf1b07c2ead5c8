"""MaskDocument: painting, fills, polygons, and undo kept as changed boxes only."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from stoneseg_core.editing.mask_document import MaskChange, MaskDocument
from stoneseg_core.editing.polygon import polygon_pixels
from stoneseg_core.editing.region import Region


def centres_within(shape, x, y, r):
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (cols + 0.5 - x) ** 2 + (rows + 0.5 - y) ** 2 <= r * r


def test_paint_disc_sets_exactly_the_pixels_whose_centres_are_inside() -> None:
    doc = MaskDocument(shape=(40, 50))
    region = doc.paint_disc((20.3, 15.7), 6.0)
    expected = centres_within(doc.shape, 20.3, 15.7, 6.0)
    assert np.array_equal(doc.mask > 0, expected)
    assert set(np.unique(doc.mask)) == {0, 255}
    rows, cols = np.nonzero(expected)
    assert region == Region(rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)


def test_one_pixel_brush_paints_a_connected_line() -> None:
    doc = MaskDocument(shape=(10, 30))
    doc.paint_stroke([(2.5, 4.5), (25.5, 4.5)], radius=0.5)
    assert np.array_equal(np.nonzero(doc.mask)[1], np.arange(2, 26))
    assert (np.nonzero(doc.mask)[0] == 4).all()


def test_a_stroke_is_one_undo_step_and_redo_restores_it() -> None:
    doc = MaskDocument(shape=(60, 80))
    doc.begin_stroke()
    for a, b in [((10, 10), (30, 12)), ((30, 12), (50, 30)), ((50, 30), (70, 50))]:
        doc.paint_line(a, b, radius=3)
    painted = doc.mask.copy()
    assert doc.end_stroke() is not None
    assert doc.undo_steps == 1
    assert doc.undo() is not None
    assert not doc.mask.any()
    assert doc.redo() is not None
    assert np.array_equal(doc.mask, painted)


def test_erasing_part_of_a_stroke_and_undoing_restores_the_stroke() -> None:
    doc = MaskDocument(shape=(40, 40))
    doc.paint_stroke([(5, 20), (35, 20)], radius=5)
    before = doc.mask.copy()
    doc.paint_stroke([(20, 5), (20, 35)], radius=3, value=0)
    assert doc.mask[20, 20] == 0
    doc.undo()
    assert np.array_equal(doc.mask, before)


def test_undo_stores_only_the_changed_box_never_a_full_copy() -> None:
    doc = MaskDocument(shape=(2000, 3000))
    doc.paint_stroke([(100, 100), (140, 110)], radius=4)
    # one bit per pixel of the ~50x20 box, old and new: far below one full mask
    assert 0 < doc.undo_nbytes < 1000
    assert doc.undo_nbytes < doc.mask.nbytes / 1000


def test_history_is_bounded_by_steps_and_memory() -> None:
    doc = MaskDocument(shape=(50, 50), max_steps=5)
    for i in range(12):
        doc.paint_disc((4 * i + 2, 25), 1.5)
    assert doc.undo_steps == 5
    small = MaskDocument(shape=(200, 200), max_undo_bytes=6000)
    for _ in range(6):
        small.invert()  # each full-image step holds 2 x 5000 bytes of bits
    assert small.undo_steps == 1
    assert small.undo_nbytes <= 2 * 5000


def test_a_new_edit_drops_the_redo_history() -> None:
    doc = MaskDocument(shape=(20, 20))
    doc.paint_disc((5, 5), 2)
    doc.undo()
    assert doc.can_redo
    doc.paint_disc((15, 15), 2)
    assert not doc.can_redo
    assert doc.redo() is None


def test_dirty_follows_the_saved_state_through_undo_and_redo() -> None:
    doc = MaskDocument(shape=(20, 20))
    assert not doc.dirty
    doc.paint_disc((5, 5), 2)
    assert doc.dirty
    doc.mark_saved()
    assert not doc.dirty
    doc.paint_disc((15, 15), 2)
    assert doc.dirty
    doc.undo()
    assert not doc.dirty  # back to what is on disk
    doc.undo()
    assert doc.dirty
    doc.redo()
    assert not doc.dirty


def test_an_open_stroke_counts_as_unsaved_and_undo_closes_it() -> None:
    doc = MaskDocument(shape=(20, 20))
    doc.begin_stroke()
    doc.paint_disc((10, 10), 3)
    assert doc.dirty and doc.in_stroke
    doc.undo()
    assert not doc.in_stroke
    assert not doc.mask.any()


def ring(shape, centre, r_out, r_in):
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    d2 = (cols + 0.5 - centre[0]) ** 2 + (rows + 0.5 - centre[1]) ** 2
    return ((d2 <= r_out**2) & (d2 > r_in**2)).astype(np.uint8) * 255


def test_fill_region_fills_inside_a_closed_outline_only() -> None:
    outline = ring((60, 60), (30, 30), 20, 17)
    doc = MaskDocument(outline)
    doc.fill_region((30, 30))
    inside = centres_within((60, 60), 30, 30, 17)
    assert (doc.mask[inside] == 255).all()
    assert doc.mask[2, 2] == 0  # the outside did not leak
    assert doc.undo_steps == 1
    doc.undo()
    assert np.array_equal(doc.mask, outline)


def test_fill_region_with_the_right_button_removes_the_clicked_stone() -> None:
    mask = np.zeros((30, 30), np.uint8)
    mask[5:10, 5:10] = 255
    mask[10:15, 10:15] = 255  # touches the first stone at a corner: the same stone
    mask[20:25, 20:25] = 255
    doc = MaskDocument(mask)
    doc.fill_region((6, 6), value=0)
    assert not doc.mask[5:15, 5:15].any()
    assert (doc.mask[20:25, 20:25] == 255).all()


def test_fill_holes_closes_enclosed_background_but_not_open_bays() -> None:
    mask = ring((60, 60), (30, 30), 20, 10)
    mask[0:10, 0:3] = 255
    doc = MaskDocument(mask)
    region = doc.fill_holes()
    assert region is not None
    assert (doc.mask[centres_within((60, 60), 30, 30, 20)] == 255).all()
    assert doc.mask[0:10, 0:3].all() and doc.mask[15, 2] == 0
    assert doc.fill_holes() is None  # nothing left to fill


def test_polygon_fill_covers_exactly_the_pixel_centres_inside() -> None:
    doc = MaskDocument(shape=(40, 40))
    doc.fill_polygon([(10, 5), (20, 5), (20, 15), (10, 15)])
    expected = np.zeros((40, 40), bool)
    expected[5:15, 10:20] = True
    assert np.array_equal(doc.mask > 0, expected)
    # a triangle against a brute-force point-in-triangle test of every pixel centre
    tri = [(3.2, 2.7), (37.9, 11.3), (12.4, 36.1)]
    inside = polygon_pixels(np.array(tri), Region(0, 0, 40, 40))
    rows, cols = np.mgrid[0:40, 0:40]
    px, py = cols + 0.5, rows + 0.5

    def side(a, b):
        return (b[0] - a[0]) * (py - a[1]) - (b[1] - a[1]) * (px - a[0])

    s1, s2, s3 = side(tri[0], tri[1]), side(tri[1], tri[2]), side(tri[2], tri[0])
    brute = ((s1 > 0) & (s2 > 0) & (s3 > 0)) | ((s1 < 0) & (s2 < 0) & (s3 < 0))
    assert np.array_equal(inside, brute)


def test_polygon_erase_removes_only_inside() -> None:
    doc = MaskDocument(np.full((30, 30), 255, np.uint8))
    doc.fill_polygon([(5, 5), (25, 5), (25, 25), (5, 25)], value=0)
    assert not doc.mask[5:25, 5:25].any()
    assert doc.mask[4, :].all() and doc.mask[:, 25].all()
    assert doc.undo_label == "Lasso erase"


def test_clear_invert_and_replace_are_undoable() -> None:
    start = np.zeros((20, 30), np.uint8)
    start[5:10, 5:10] = 255
    doc = MaskDocument(start)
    doc.invert()
    assert doc.mask[0, 0] == 255 and doc.mask[6, 6] == 0
    doc.clear()
    assert not doc.mask.any()
    other = np.zeros((20, 30), bool)
    other[1, 1] = True
    doc.replace(other)
    assert doc.mask[1, 1] == 255
    for _ in range(3):
        doc.undo()
    assert np.array_equal(doc.mask, start)
    with pytest.raises(ValueError):
        doc.replace(np.zeros((5, 5), np.uint8))


def test_listeners_hear_every_change_and_which_ones_are_final() -> None:
    doc = MaskDocument(shape=(50, 50))
    heard: list[MaskChange] = []
    doc.add_listener(heard.append)
    doc.paint_stroke([(10, 10), (20, 10), (30, 10)], radius=2)
    assert [c.final for c in heard] == [False, False, False, True]
    assert all(c.region.area < 50 * 50 for c in heard)
    heard.clear()
    doc.undo()
    assert len(heard) == 1 and heard[0].final and heard[0].label == "Undo Brush stroke"
    doc.remove_listener(heard.append)
    doc.redo()
    assert len(heard) == 1


def test_mask_view_is_read_only_and_shared() -> None:
    doc = MaskDocument(shape=(10, 10))
    view = doc.mask
    with pytest.raises(ValueError):
        view[0, 0] = 255
    doc.paint_disc((5, 5), 2)
    assert view[5, 5] == 255  # the same memory a canvas wraps


def test_input_masks_are_binarised() -> None:
    doc = MaskDocument(np.array([[0, 1], [2, 255]], np.uint8))
    assert doc.mask.tolist() == [[0, 255], [255, 255]]


def test_the_core_never_imports_qt() -> None:
    code = "import sys, stoneseg_core.editing.mask_document, stoneseg_core.io.project; assert not any(m.startswith(('PySide6', 'PyQt')) for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_big_step_undone_and_redone_band_by_band_is_exact(monkeypatch) -> None:
    import stoneseg_core.editing.bands as bands

    # bands of 8 rows on a 61 x 53 mask: the packed step is 8 arrays, the last one partial
    monkeypatch.setattr(bands, "BAND_PIXELS", 8 * 53)
    rng = np.random.default_rng(3)
    before = np.where(rng.random((61, 53)) > 0.6, 255, 0).astype(np.uint8)
    after = before.copy()
    after[3:60, 2:51] = np.where(rng.random((57, 49)) > 0.4, 255, 0)
    doc = MaskDocument(before)
    region = doc.replace(after)
    assert region is not None and region.height > 8  # more than one band
    assert doc.undo() == region and np.array_equal(doc.mask, before)
    assert doc.redo() == region and np.array_equal(doc.mask, after)
    assert doc.undo() == region and np.array_equal(doc.mask, before)
    # one bit a pixel (each band padded to a byte at most), old and new
    assert doc.undo_steps == 0 and doc.redo().area == region.area
    assert doc.undo_nbytes <= 2 * (region.area // 8 + 8)
