"""iter_segment_images: the chosen photos (the window's "Predict all"), one event each."""

from __future__ import annotations

import numpy as np
from PIL import Image

from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.io.images import read_mask
from stoneseg_core.jobs.segment_folder import iter_segment_images


def photos(folder, n: int) -> list:
    folder.mkdir()
    paths = []
    for i in range(n):
        p = folder / f"p{i}.png"
        Image.fromarray(np.full((40, 50, 3), 60 * i, np.uint8)).save(p)
        paths.append(p)
    return paths


def run(gen):
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value


def test_writes_each_chosen_photo_replacing_and_reports_a_bad_one(trained_model, tmp_path) -> None:
    paths = photos(tmp_path / "images", 3)
    bad = tmp_path / "images" / "bad.png"
    bad.write_bytes(b"not a png")
    out = tmp_path / "m"
    out.mkdir()
    (out / "p0.png").write_bytes(b"an old prediction, to be replaced")
    events, summary = run(
        iter_segment_images(Segmenter.load(trained_model), [paths[0], bad, paths[1]], out)
    )
    assert [e.status for e in events] == ["written", "failed", "written"]
    assert [e.index for e in events] == [1, 2, 3] and events[0].total == 3
    assert events[1].image == bad and events[1].message and events[1].output is None
    assert summary.written == 2 and len(summary.failed) == 1 and not summary.cancelled
    mask = read_mask(out / "p0.png")  # replaced: the old bytes were no PNG
    assert mask.shape == (40, 50) and set(np.unique(mask)) <= {0, 255}
    assert not (out / "p2.png").exists()  # not chosen


def test_should_stop_ends_the_run_cancelled(trained_model, tmp_path) -> None:
    paths = photos(tmp_path / "images", 3)
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(list((tmp_path / "m").glob("*.png"))) >= 1

    events, summary = run(
        iter_segment_images(Segmenter.load(trained_model), paths, tmp_path / "m", should_stop=stop)
    )
    assert asked and summary.cancelled
    assert summary.written == len([e for e in events if e.status == "written"]) >= 1
    assert summary.written < 3
