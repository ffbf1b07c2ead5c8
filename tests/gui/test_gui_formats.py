"""File > Import labels… and Export labels… in the window (offscreen, scripted dialogs)."""

from __future__ import annotations

import numpy as np
from formats_data import read_labels, run, same_partition, touching_stones, write_project
from guihelpers import wait_loaded

from stoneseg_core.formats import iter_export, iter_import
from stoneseg_core.io.images import read_mask, write_mask
from stoneseg_gui.formats import EXPORT_TITLE, IMPORT_TITLE, KEEP, REPLACE, REPLACE_TITLE


def coco_of(tmp_path, photos):
    src = write_project(tmp_path / "src", photos)
    out = tmp_path / "labels.json"
    run(iter_export("coco", src, out))
    return src, out


def copy_photos(src, dst):
    (dst / "images").mkdir(parents=True)
    for photo in (src / "images").iterdir():
        (dst / "images" / photo.name).write_bytes(photo.read_bytes())
    return dst


def wait_report(qtbot, window, dialogs, count):
    qtbot.waitUntil(lambda: len(dialogs.reports) == count, timeout=20_000)
    qtbot.waitUntil(lambda: not window.label_formats.busy, timeout=5_000)


def test_import_labels_asks_before_replacing_and_shows_the_report(qtbot, window, dialogs, tmp_path):
    a, b = touching_stones(60, 80, seed=1), touching_stones(60, 80, seed=2)
    src, coco = coco_of(tmp_path, {"a.png": a, "b.png": b})
    dst = copy_photos(src, tmp_path / "dst")
    mine = np.zeros((60, 80), np.uint8)
    mine[:5, :5] = 255
    write_mask(dst / "masks" / "a.png", mine)
    window.open_folder(dst)
    wait_loaded(qtbot, window)
    action = window.label_formats.import_action
    assert action.isEnabled() and action in window.menuBar().actions()[0].menu().actions()

    # first time: keep mine
    dialogs.answers[IMPORT_TITLE] = "COCO JSON"
    dialogs.answers[REPLACE_TITLE] = KEEP
    dialogs.files_to_open.append(coco)
    action.trigger()
    wait_report(qtbot, window, dialogs, 1)
    title, summary, details = dialogs.reports[-1]
    assert title == IMPORT_TITLE and "Imported 1 photo(s)" in summary
    assert "a.png: skipped: masks/a.png exist(s)" in details
    assert np.array_equal(read_mask(dst / "masks" / "a.png"), mine)
    assert same_partition(read_labels(dst, "b"), b)
    assert window.session.image_status(dst / "images" / "b.png").value == "labelled"

    # then: replace it; the open photo shows the imported mask
    dialogs.answers[REPLACE_TITLE] = REPLACE
    dialogs.files_to_open.append(coco)
    action.trigger()
    wait_report(qtbot, window, dialogs, 2)
    assert any(q[0] == REPLACE_TITLE for q in dialogs.questions)
    summary, details = dialogs.reports[-1][1:]
    assert "Imported 2 photo(s)" in summary and "skipped" not in summary  # a and b replaced
    assert "a.png: " in details and "exist" not in details
    assert same_partition(read_labels(dst, "a"), a)
    if window.current_image_path() == dst / "images" / "a.png":
        qtbot.waitUntil(
            lambda: (
                window.current_document() is not None
                and np.array_equal(window.current_document().mask > 0, a > 0)
            ),
            timeout=10_000,
        )
    assert not dialogs.errors


def test_export_labels_writes_a_geopackage(qtbot, window, dialogs, tmp_path):
    a = touching_stones(60, 80, seed=3)
    project = write_project(tmp_path / "p", {"a.png": a})
    window.open_folder(project)
    wait_loaded(qtbot, window)
    out = tmp_path / "stones.gpkg"
    dialogs.answers[EXPORT_TITLE] = "GeoPackage"
    dialogs.files_to_save.append(out)
    window.label_formats.export_action.trigger()
    wait_report(qtbot, window, dialogs, 1)
    assert f"Exported 1 photo(s), {int(a.max())} stone(s)" in dialogs.reports[-1][1]
    assert out.is_file()
    back = copy_photos(project, tmp_path / "back")
    report = run(iter_import("gpkg", out, back))
    assert report.photos == {"a.png": int(a.max())}
