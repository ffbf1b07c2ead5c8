"""The smart tools (click a stone, box a stone, magic wand) on synthetic scenes whose stones
are known to the pixel, driven with plain events: no Qt, no model."""

from __future__ import annotations

import numpy as np
import pytest

from stoneseg_core.editing.mask_document import MaskDocument
from stoneseg_core.editing.region import Region
from stoneseg_core.editing.smart_regions import ArrayPhoto, LabCache, grabcut_box, wand_fill
from stoneseg_core.editing.smart_tools import (
    BoxStoneTool,
    ClickStoneTool,
    MagicWandTool,
    SmartContext,
    outlines,
)
from stoneseg_core.editing.stone_layer import LabelledStones, MaskPieces
from stoneseg_core.editing.tools import PointerEvent, ToolKind, make_tool


def ev(x: float, y: float, secondary: bool = False, shift: bool = False) -> PointerEvent:
    return PointerEvent(x, y, secondary=secondary, shift=shift)


def touching_stones(height: int = 120, width: int = 200) -> np.ndarray:
    """Int32 labels of stones that touch with no gap: a row of three blocks sharing their
    sides, two discs cut by each other's border, and one lone disc (label 6)."""
    labels = np.zeros((height, width), np.int32)
    labels[10:50, 10:40] = 1
    labels[10:50, 40:75] = 2  # shares its left side with stone 1
    labels[20:45, 75:100] = 3  # and its right side with stone 3
    y, x = np.ogrid[:height, :width]
    labels[(y - 85) ** 2 + (x - 40) ** 2 <= 20**2] = 4
    disc5 = (y - 85) ** 2 + (x - 75) ** 2 <= 20**2
    labels[disc5 & (labels == 0)] = 5  # touches stone 4 along a chord
    labels[(y - 60) ** 2 + (x - 160) ** 2 <= 15**2] = 6
    return labels


def click(tool, doc, x, y, **kw) -> None:
    tool.press(doc, ev(x, y, **kw))
    tool.release(doc, ev(x, y, **kw))


# ----------------------------------------------------------------------------- click a stone
def test_click_adds_exactly_the_stone_under_the_pointer_and_undo_redo_is_one_step():
    labels = touching_stones()
    doc = MaskDocument(shape=labels.shape)
    tool = make_tool(ToolKind.CLICK_STONE, SmartContext(stones=LabelledStones(labels)))
    assert isinstance(tool, ClickStoneTool)
    click(tool, doc, 50.5, 30.5)  # inside stone 2, which touches 1 and 3
    assert np.array_equal(doc.mask > 0, labels == 2)
    assert doc.undo_steps == 1 and doc.undo_label == "Add stone"
    assert tool.take_message().startswith("Added 1 stone ")  # the status bar says it worked
    click(tool, doc, 80.5, 85.5)  # stone 5, cut by stone 4's border
    assert np.array_equal(doc.mask > 0, (labels == 2) | (labels == 5))
    doc.undo()
    assert np.array_equal(doc.mask > 0, labels == 2)
    doc.redo()
    assert np.array_equal(doc.mask > 0, (labels == 2) | (labels == 5))
    click(tool, doc, 5.5, 5.5)  # no stone there: nothing changes, the tool says why
    assert doc.undo_steps == 2
    assert "No predicted stone" in tool.take_message()


def test_shift_click_removes_the_predicted_stone_only_and_right_click_too():
    labels = touching_stones()
    doc = MaskDocument((labels > 0).astype(np.uint8) * 255)  # every stone, one blob each
    tool = ClickStoneTool(SmartContext(stones=LabelledStones(labels)))
    click(tool, doc, 20.5, 20.5, shift=True)  # stone 1 of the 1-2-3 blob
    assert np.array_equal(doc.mask > 0, (labels > 0) & (labels != 1))
    assert doc.undo_label == "Remove stone"
    click(tool, doc, 160.5, 60.5, secondary=True)  # the lone disc
    assert np.array_equal(doc.mask > 0, (labels > 0) & ~np.isin(labels, (1, 6)))
    doc.undo()
    doc.undo()
    assert np.array_equal(doc.mask > 0, labels > 0)


def test_removing_where_the_model_has_no_stone_takes_the_masks_piece():
    labels = touching_stones()
    mask = np.zeros(labels.shape, np.uint8)
    mask[100:115, 120:190] = 255  # a stone the user painted; the model saw none there
    mask[60, 60] = 255  # and a speck elsewhere, kept
    doc = MaskDocument(mask)
    tool = ClickStoneTool(SmartContext(stones=LabelledStones(labels)))
    click(tool, doc, 150.5, 105.5, shift=True)
    assert doc.mask.sum() == 255 and doc.mask[60, 60] == 255
    # no stones at all (no prediction): removing still works, on the mask's piece
    doc2 = MaskDocument(mask)
    click(ClickStoneTool(SmartContext()), doc2, 150.5, 105.5, secondary=True)
    assert doc2.mask.sum() == 255


def test_a_drag_adds_every_stone_it_crosses_as_one_undo_step():
    labels = touching_stones()
    doc = MaskDocument(shape=labels.shape)
    tool = ClickStoneTool(SmartContext(stones=LabelledStones(labels)))
    tool.press(doc, ev(15.5, 30.5))
    for x in range(20, 95, 7):  # across stones 1, 2 and 3
        tool.move(doc, ev(x + 0.5, 30.5))
    tool.move(doc, ev(80.5, 85.5))  # then down across 3 and the gap to stone 5
    tool.release(doc, ev(80.5, 85.5))
    assert np.array_equal(doc.mask > 0, np.isin(labels, (1, 2, 3, 5)))
    assert doc.undo_steps == 1
    doc.undo()
    assert not doc.mask.any()
    doc.redo()
    assert np.array_equal(doc.mask > 0, np.isin(labels, (1, 2, 3, 5)))


def test_clicks_without_stones_wait_for_them_then_apply_one_undo_step_each():
    labels = touching_stones()
    context = SmartContext()
    doc = MaskDocument(shape=labels.shape)
    tool = ClickStoneTool(context)
    tool.press(doc, ev(20.5, 20.5))
    tool.move(doc, ev(50.5, 20.5))
    tool.release(doc, ev(50.5, 20.5))  # a drag over stones 1 and 2
    click(tool, doc, 160.5, 60.5)  # and a click on stone 6, while the model predicts
    assert tool.wants_stones and tool.busy and not doc.mask.any() and doc.undo_steps == 0
    tool.apply_pending(doc)  # still none: nothing
    assert tool.wants_stones
    context.stones = LabelledStones(labels)
    assert not tool.wants_stones  # the canvas now calls apply_pending
    tool.apply_pending(doc)
    assert np.array_equal(doc.mask > 0, np.isin(labels, (1, 2, 6)))
    assert doc.undo_steps == 2 and not tool.busy
    tool.apply_pending(doc)  # applied once
    assert doc.undo_steps == 2
    doc.undo()
    assert np.array_equal(doc.mask > 0, np.isin(labels, (1, 2)))
    # the stones arrive during a drag: it is applied on release
    context.stones = None
    tool.press(doc, ev(85.5, 30.5))
    context.stones = LabelledStones(labels)
    tool.apply_pending(doc)  # the drag goes on: not yet
    tool.release(doc, ev(85.5, 30.5))
    assert doc.mask[30, 85] == 255 and doc.undo_steps == 2
    # a click dropped (Escape, another photo) is never applied
    context.stones = None
    tool.press(doc, ev(160.5, 60.5))
    assert tool.wants_stones
    tool.cancel(doc)  # Escape
    assert not tool.busy
    context.stones = LabelledStones(labels)
    tool.apply_pending(doc)
    assert doc.mask[60, 160] == 0


# ----------------------------------------------------------------------------- box a stone
def noisy_photo(
    height: int, width: int, seed: int = 0, ground=(60, 70, 90), sigma: float = 8.0
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(ground, sigma, (height, width, 3)).clip(0, 255).astype(np.uint8)


def box(tool, doc, x0, y0, x1, y1, **kw) -> None:
    tool.press(doc, ev(x0, y0, **kw))
    tool.move(doc, ev((x0 + x1) / 2, (y0 + y1) / 2, **kw))
    tool.release(doc, ev(x1, y1, **kw))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_box_takes_the_predicted_stone_in_it_clipped_to_the_box():
    labels = touching_stones()
    photo = noisy_photo(*labels.shape)
    doc = MaskDocument(shape=labels.shape)
    tool = make_tool(ToolKind.BOX_STONE, SmartContext(ArrayPhoto(photo), LabelledStones(labels)))
    assert isinstance(tool, BoxStoneTool)
    box(tool, doc, 38, 8, 78, 52)  # round stone 2, with bits of 1 and 3 in the box
    assert np.array_equal(doc.mask > 0, labels == 2)
    assert doc.undo_steps == 1 and doc.undo_label == "Add boxed stone"
    assert "model predicted" in tool.take_message()
    # a box on part of the lone disc: the part of that stone inside the box
    box(tool, doc, 150, 50, 170, 70)
    inside = np.zeros(labels.shape, bool)
    inside[50:70, 150:170] = True
    assert np.array_equal(doc.mask > 0, (labels == 2) | ((labels == 6) & inside))
    # Shift: the boxed stone is removed
    box(tool, doc, 38, 8, 78, 52, shift=True)
    assert not (doc.mask[labels == 2]).any() and doc.undo_label == "Remove boxed stone"
    doc.undo()
    assert np.array_equal(doc.mask[labels == 2] > 0, np.ones((labels == 2).sum(), bool))
    # a slip (a box of two pixels) changes nothing
    box(tool, doc, 5, 5, 6.5, 6.5)
    assert doc.undo_steps == 2 and "Drag a box" in tool.take_message()


def disc_scene(size: int = 300, cx: int = 140, cy: int = 160, r: int = 60):
    photo = noisy_photo(size, size, seed=3)
    y, x = np.ogrid[:size, :size]
    disc = (y - cy) ** 2 + (x - cx) ** 2 <= r * r
    photo[disc] = np.random.default_rng(4).normal((205, 195, 180), 8, (disc.sum(), 3)).clip(0, 255)
    return photo, disc


def test_grabcut_finds_a_high_contrast_disc_in_a_box_without_a_prediction():
    photo, disc = disc_scene()
    doc = MaskDocument(shape=disc.shape)
    tool = BoxStoneTool(SmartContext(ArrayPhoto(photo)))
    box(tool, doc, 140 - 72, 160 - 75, 140 + 70, 160 + 68)
    assert iou(doc.mask > 0, disc) > 0.9
    assert "GrabCut" in tool.take_message() and doc.undo_steps == 1
    # a big box (GrabCut on a crop brought down to 128 px) and a box over the whole photo
    big_photo, big_disc = disc_scene(size=1400, cx=700, cy=650, r=400)
    found = grabcut_box(ArrayPhoto(big_photo), Region(200, 250, 1100, 1150))
    assert iou(found, big_disc[200:1100, 250:1150]) > 0.9
    whole = grabcut_box(ArrayPhoto(photo), Region(0, 0, 300, 300))
    assert iou(whole, disc) > 0.85


def test_grabcut_starts_from_the_models_probability_where_it_has_no_stone_label():
    photo, disc = disc_scene()
    probability = np.where(disc, 0.9, 0.1).astype(np.float32)
    stones = LabelledStones(np.zeros(disc.shape, np.int32), probability)  # stones under the floor
    doc = MaskDocument(shape=disc.shape)
    tool = BoxStoneTool(SmartContext(ArrayPhoto(photo), stones))
    box(tool, doc, 70, 90, 210, 230)
    assert iou(doc.mask > 0, disc) > 0.9
    assert "probability" in tool.take_message()


def test_a_second_box_on_a_stone_already_in_the_mask_redraws_it_with_grabcut():
    photo, disc = disc_scene()
    y, x = np.ogrid[: disc.shape[0], : disc.shape[1]]
    model_disc = (y - 150) ** 2 + (x - 130) ** 2 <= 45**2  # the model's outline: off and small
    probability = np.where(disc, 0.8, 0.2).astype(np.float32)
    stones = LabelledStones(model_disc.astype(np.int32), probability)
    doc = MaskDocument(shape=disc.shape)
    tool = BoxStoneTool(SmartContext(ArrayPhoto(photo), stones))
    box(tool, doc, 140 - 72, 160 - 75, 140 + 70, 160 + 68)
    assert np.array_equal(doc.mask > 0, model_disc)  # first box: the model's stone
    assert "model predicted" in tool.take_message()
    box(tool, doc, 140 - 72, 160 - 75, 140 + 70, 160 + 68)  # again: GrabCut redraws it
    assert iou(doc.mask > 0, disc) > 0.9 > iou(model_disc, disc)
    assert doc.undo_steps == 2 and doc.undo_label == "Redraw boxed stone"
    assert "GrabCut" in tool.take_message()
    doc.undo()
    assert np.array_equal(doc.mask > 0, model_disc)


def test_a_redraw_on_a_bed_of_like_stones_refines_the_outline_rather_than_losing_it():
    # touching stones of one colour: the margin round a box is mostly other stones, so
    # GrabCut from the box alone finds nothing; started from the model's outline it refines it
    h, w = 200, 320
    photo = noisy_photo(h, w, seed=5)
    y, x = np.ogrid[:h, :w]
    truth = np.zeros((h, w), np.int32)
    for k, cx in enumerate(range(40, 320, 56)):
        disc = (y - 100) ** 2 + (x - cx) ** 2 <= 30**2
        truth[disc & (truth == 0)] = k + 1
    stone = truth > 0
    rng = np.random.default_rng(6)
    photo[stone] = rng.normal((200, 190, 175), 10, (stone.sum(), 3)).clip(0, 255)
    target = truth == 3
    model = np.zeros((h, w), np.int32)
    model[(y - 100) ** 2 + (x - 152) ** 2 <= 25**2] = 1  # the model's outline, 5 px short
    doc = MaskDocument(shape=(h, w))
    tool = BoxStoneTool(SmartContext(ArrayPhoto(photo), LabelledStones(model)))
    corners = (116, 64, 189, 137)
    box(tool, doc, *corners)
    before = iou(doc.mask > 0, target)
    box(tool, doc, *corners)
    assert "Redrew" in tool.take_message() and doc.undo_label == "Redraw boxed stone"
    assert iou(doc.mask > 0, target) > max(0.9, before)


# ----------------------------------------------------------------------------- magic wand
def colour_regions() -> np.ndarray:
    """Flat colours: ground, an L-shaped region A, region B close to A (Delta E ~ 9), and
    C far from both; B touches A."""
    rgb = np.zeros((100, 160, 3), np.uint8)
    rgb[:] = (40, 90, 40)
    rgb[10:60, 10:40] = (150, 120, 100)  # A, L-shaped with the next line
    rgb[45:60, 40:90] = (150, 120, 100)
    rgb[10:45, 40:90] = (150, 120, 85)  # B, on A's shoulder (b* 9 apart)
    rgb[70:95, 100:150] = (30, 30, 200)  # C
    return rgb


def region_a() -> np.ndarray:
    a = np.zeros((100, 160), bool)
    a[10:60, 10:40] = True
    a[45:60, 40:90] = True
    return a


def test_wand_fills_a_flat_region_exactly_and_respects_the_tolerance():
    rgb = colour_regions()
    context = SmartContext(ArrayPhoto(rgb), wand_tolerance=3)
    doc = MaskDocument(shape=rgb.shape[:2])
    tool = make_tool(ToolKind.MAGIC_WAND, context)
    assert isinstance(tool, MagicWandTool)
    tool.hover(ev(20.5, 30.5))
    preview = tool.preview_outlines()
    assert len(preview) == 1  # the L's outline, drawn before any click
    xs = [p[0] for p in preview[0]]
    ys = [p[1] for p in preview[0]]
    assert (min(xs), max(xs), min(ys), max(ys)) == (10.5, 89.5, 10.5, 59.5)
    assert not doc.mask.any()
    tool.hover(ev(80.5, 50.5))  # still in A: the fill shown is kept, nothing recomputed
    assert tool.preview_outlines() is preview
    tool.press(doc, ev(80.5, 50.5))
    tool.release(doc, ev(80.5, 50.5))
    assert np.array_equal(doc.mask > 0, region_a())
    assert doc.undo_steps == 1 and doc.undo_label == "Magic wand fill"
    assert tool.take_message().startswith(f"Filled {int(region_a().sum()):,} pixels")
    tool.press(doc, ev(80.5, 50.5))  # again: nothing changes, and it says so
    assert doc.undo_steps == 1 and "already were stone" in tool.take_message()
    # the wheel raises the tolerance (the preview follows); B joins, C and the ground do not
    assert tool.wheel(4) and context.wand_tolerance == 11
    assert "tolerance 11" in tool.take_message()
    assert max(p[1] for p in tool.preview_outlines()[0]) == 59.5
    assert min(p[1] for p in tool.preview_outlines()[0]) == 10.5
    tool.press(doc, ev(20.5, 30.5))
    b = np.zeros_like(region_a())
    b[10:45, 40:90] = True
    assert np.array_equal(doc.mask > 0, region_a() | b)
    # the right button (or Shift) takes it away again; undo and redo are one step each
    tool.press(doc, ev(20.5, 30.5, secondary=True))
    assert not doc.mask.any() and doc.undo_label == "Magic wand erase"
    doc.undo()
    assert np.array_equal(doc.mask > 0, region_a() | b)
    doc.undo()
    assert np.array_equal(doc.mask > 0, region_a())
    doc.redo()
    assert np.array_equal(doc.mask > 0, region_a() | b)


def test_wand_tolerance_is_clamped_and_outlines_show_holes():
    rgb = colour_regions()
    context = SmartContext(ArrayPhoto(rgb))
    tool = MagicWandTool(context)
    tool.wheel(-1000)
    assert context.wand_tolerance == 1
    tool.wheel(1000)
    assert context.wand_tolerance == 100
    ring = np.ones((20, 20), bool)
    ring[5:15, 5:15] = False
    assert len(outlines(Region(0, 0, 20, 20), ring)) == 2  # outside and the hole
    # a fill thousands of pixels across is outlined at 1024 px, in the photo's coordinates
    bar = np.ones((40, 4096), bool)
    (outline,) = outlines(Region(100, 200, 140, 4296), bar)
    xs, ys = [p[0] for p in outline], [p[1] for p in outline]
    assert 200 <= min(xs) < 204 and 4292 < max(xs) <= 4296
    assert 100 <= min(ys) < 104 and 136 < max(ys) <= 140


class CountingPhoto:
    """A big photo made on demand (never held whole), counting the pixels read."""

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = height, width
        self.largest = 0
        self.reads = 0

    def read(self, region: Region, step: int = 1) -> np.ndarray:
        self.reads += 1
        self.largest = max(self.largest, region.area)
        y, x = np.ogrid[region.top : region.bottom : step, region.left : region.right : step]
        stone = (y - 7000) ** 2 + (x - 6000) ** 2 <= 300**2
        rgb = np.empty((*stone.shape, 3), np.uint8)
        rgb[:] = (60, 70, 90)
        rgb[stone] = (200, 190, 170)
        return rgb


@pytest.fixture(scope="module")
def huge():
    """A 10000 x 12000 photo (120 MP: a mask over the 50 MP that are split whole), its
    prediction as a 0/255 mask (a disc and a long band touching the photo's edge)."""
    h, w = 10_000, 12_000
    predicted = np.zeros((h, w), np.uint8)
    y, x = np.ogrid[6500:7500, 5500:6500]
    predicted[6500:7500, 5500:6500][(y - 7000) ** 2 + (x - 6000) ** 2 <= 300**2] = 255
    predicted[100:140, :] = 255  # a band across the whole photo
    return h, w, predicted


def test_the_tools_on_a_huge_photo_read_windows_only(huge):
    h, w, predicted = huge
    photo = CountingPhoto(h, w)
    context = SmartContext(photo, MaskPieces(predicted))
    doc = MaskDocument(shape=(h, w))
    click(ClickStoneTool(context), doc, 6000.5, 7000.5)
    disc = predicted[6500:7500, 5500:6500] > 0
    assert np.array_equal(doc.mask[6500:7500, 5500:6500] > 0, disc)
    assert int(np.count_nonzero(doc.mask)) == int(disc.sum())
    assert photo.reads == 0  # the click reads the model's mask, not the photo
    # the band is wider than the largest window: cut there, never a whole-photo pass
    click(ClickStoneTool(context), doc, 50.5, 120.5)
    band = np.count_nonzero(doc.mask[100:140]) / 40
    assert 4096 <= band <= 8193 and band < w
    doc.undo()
    # the wand fills the disc from the photo, reading a window round the click
    wand = MagicWandTool(context)
    wand.press(doc, ev(6000.5, 7000.5, secondary=True))
    assert not doc.mask.any() and doc.undo_label == "Magic wand erase"
    assert photo.largest <= 1024 * 1024 and context.lab_cache.reads == 1
    # GrabCut on a box round it, no stone of the model's in the box
    context.stones = MaskPieces(np.zeros((h, w), np.uint8))
    tool = BoxStoneTool(context)
    box(tool, doc, 5650, 6650, 6350, 7350)
    truth = np.zeros((h, w), bool)
    truth[6500:7500, 5500:6500] = disc
    assert iou(doc.mask[6600:7400, 5600:6400] > 0, truth[6600:7400, 5600:6400]) > 0.9
    assert photo.largest <= 1024 * 1024


def test_the_wand_grows_its_window_only_while_the_fill_reaches_its_edge():
    h, w = 3000, 5000
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:] = (50, 50, 50)
    rgb[1000:1100, 100:3900] = (200, 30, 30)  # a long red band
    photo = ArrayPhoto(rgb)
    cache = LabCache()
    fill = wand_fill(photo, 2000, 1050, 5, cache, max_window=4096)
    assert fill is not None and not fill.cut
    assert fill.region == Region(1000, 100, 1100, 3900) and fill.pixels.all()
    assert cache.size == 4096 and cache.reads == 3  # doubled twice: 1024 -> 2048 -> 4096
    cut = wand_fill(photo, 2000, 1050, 5, LabCache())  # the window stops at 2048 px
    assert cut is not None and cut.cut and cut.window == 2048
    assert cut.region == Region(1000, 976, 1100, 3024) and cut.pixels.all()
    small = wand_fill(photo, 10, 10, 5, cache, window=64, max_window=128)
    assert small is not None and small.cut  # the grey ground goes on beyond 128 px
