"""MaskSnapshot: the mask at one state, copied on another thread while the document changes
(copy on write by bands of rows)."""

from __future__ import annotations

import threading

import numpy as np

from stoneseg_core.editing.mask_document import MaskDocument
from stoneseg_core.editing.snapshot import MaskSnapshot


def _document(h: int = 1000, w: int = 300) -> MaskDocument:
    rng = np.random.default_rng(0)
    return MaskDocument(np.where(rng.random((h, w)) > 0.7, 255, 0).astype(np.uint8))


def test_edits_made_during_the_copy_are_not_in_it(monkeypatch) -> None:
    monkeypatch.setattr(MaskSnapshot, "BAND_ROWS", 64)
    doc = _document()
    before = np.array(doc.mask, copy=True)
    snap = doc.snapshot()
    assert snap.state == doc.state_id
    doc.paint_disc((150, 40), 30)  # before the copy starts: band 0 kept as it was
    calls = []

    def interleave() -> bool:
        # called before each band: edit bands already copied and bands still to come
        calls.append(1)
        if len(calls) == 4:
            doc.paint_disc((100, 70), 20)  # band 1: copied already
            doc.paint_disc((200, 700), 40)  # bands 10-11: not yet
            doc.fill_region((5.0, 990.0))  # flood fill near the bottom
            doc.undo()
            doc.redo()
        if len(calls) == 9:
            doc.replace(np.zeros_like(before))  # every band at once
        return False

    copy = snap.copy(should_stop=interleave)
    assert np.array_equal(copy, before), "the copy is the mask at the snapshot's state"
    assert not np.array_equal(doc.mask, before) and not doc.mask.any()
    assert snap not in doc._snapshots, "a finished copy stops watching the document"
    doc.paint_disc((10, 10), 5)  # no more copies kept
    assert not snap._kept


def test_a_copy_on_another_thread_while_the_document_is_painted() -> None:
    doc = _document(4000, 2000)
    before = np.array(doc.mask, copy=True)
    snap = doc.snapshot()
    result = {}
    thread = threading.Thread(target=lambda: result.update(mask=snap.copy()))
    thread.start()
    for i in range(200):  # paint all over it meanwhile
        doc.paint_disc((float(i * 10 % 2000), float(i * 20 % 4000)), 25)
    thread.join(30)
    assert np.array_equal(result["mask"], before)


def test_a_snapshot_released_unused_keeps_nothing() -> None:
    doc = _document()
    snap = doc.snapshot()
    doc.paint_disc((100, 100), 20)
    assert snap._kept
    snap.release()
    assert not snap._kept and snap not in doc._snapshots
    doc.paint_disc((100, 600), 20)
    assert not snap._kept
