"""iter_segment_images: the chosen photos, one event each, stop between photos."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from PIL import Image

from stoneseg_core.imageio import read_mask
from stoneseg_core.segment_images import iter_segment_images


class FakeSegmenter:
    def __init__(self) -> None:
        self.calls = 0

    def predict(self, image: np.ndarray, should_stop=None):  # noqa: ANN001, ANN201
        self.calls += 1
        mask = np.zeros(image.shape[:2], np.uint8)
        mask[: image.shape[0] // 2] = 255
        return SimpleNamespace(mask=mask)


def photos(folder, n: int) -> list:  # noqa: ANN001
    folder.mkdir()
    paths = []
    for i in range(n):
        p = folder / f"p{i}.png"
        Image.fromarray(np.full((8, 10, 3), 100, np.uint8)).save(p)
        paths.append(p)
    return paths


def run(gen):  # noqa: ANN001, ANN201
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value


def test_writes_each_chosen_photo_and_reports_a_bad_one(tmp_path) -> None:  # noqa: ANN001
    paths = photos(tmp_path / "images", 2)
    bad = tmp_path / "images" / "bad.png"
    bad.write_bytes(b"not a png")
    events, summary = run(
        iter_segment_images(FakeSegmenter(), [paths[0], bad, paths[1]], tmp_path / "m")
    )
    assert [e.status for e in events] == ["written", "failed", "written"]
    assert [e.index for e in events] == [1, 2, 3] and events[0].total == 3
    assert summary.written == 2 and len(summary.failed) == 1 and not summary.cancelled
    assert read_mask(tmp_path / "m" / "p0.png").shape == (8, 10)


def test_should_stop_ends_the_run_cancelled(tmp_path) -> None:  # noqa: ANN001
    paths = photos(tmp_path / "images", 3)
    seg = FakeSegmenter()
    events, summary = run(
        iter_segment_images(seg, paths, tmp_path / "m", should_stop=lambda: seg.calls >= 1)
    )
    assert len(events) == 1 and summary.written == 1 and summary.cancelled
