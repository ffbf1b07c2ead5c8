"""Opening a StoneSeg project in napari: the reader (through the plugin's manifest) and the
"Open StoneSeg project" widget."""

from __future__ import annotations

import cv2
import numpy as np
from napari.layers import Image, Labels
from npe2 import PluginManifest

from stoneseg_core.io.images import read_image
from stoneseg_gui.napari_plugin.reader import get_reader, is_project_folder


def test_the_manifest_is_installed_with_its_reader_and_widgets():
    manifest = PluginManifest.from_distribution("stoneseg")
    assert manifest.name == "stoneseg"
    assert [r.command for r in manifest.contributions.readers] == ["stoneseg.get_reader"]
    assert {w.display_name for w in manifest.contributions.widgets} == {
        "Open StoneSeg project",
        "Segment with a StoneSeg model",
        "Stones and grain sizes",
        "Save to StoneSeg project",
    }


def test_reader_opens_a_project_as_images_masks_and_stones(viewer, project):
    layers = viewer.open(str(project), plugin="stoneseg")
    by_name = {layer.name: layer for layer in layers}
    assert list(by_name) == [
        "img0",
        "img0 mask",
        "img0 stones",
        "img1",
        "img1 mask",
        "img2",
    ]
    for stem in ("img0", "img1", "img2"):
        photo = by_name[stem]
        assert isinstance(photo, Image) and photo.rgb
        np.testing.assert_array_equal(photo.data, read_image(project / "images" / f"{stem}.png"))
        assert photo.visible == (stem == "img0")  # one photo shown at a time
    for stem in ("img0", "img1"):
        mask = by_name[f"{stem} mask"]
        truth = cv2.imread(str(project / "masks" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
        assert isinstance(mask, Labels)
        np.testing.assert_array_equal(mask.data, (truth > 0).astype(np.uint8))
    assert by_name["img0 mask"].metadata["stoneseg"]["kind"] == "mask"
    assert by_name["img1 mask"].metadata["stoneseg"]["kind"] == "prediction"  # stoneseg.json
    stones = by_name["img0 stones"]
    truth = cv2.imread(str(project / "instances" / "img0.png"), cv2.IMREAD_UNCHANGED)
    assert isinstance(stones, Labels) and truth.max() > 1
    np.testing.assert_array_equal(stones.data, truth)
    assert stones.metadata["stoneseg"]["image"] == str(project / "images" / "img0.png")


def test_reader_leaves_other_folders_to_napari(tmp_path, project):
    assert is_project_folder(project)
    assert get_reader(str(project)) is not None
    plain = tmp_path / "photos"
    (plain / "images").mkdir(parents=True)  # photos but neither masks/ nor stoneseg.json
    assert get_reader(str(plain)) is None
    assert get_reader(str(project / "images" / "img0.png")) is None
    assert get_reader([str(project), str(plain)]) is None


def test_open_project_widget_adds_one_photo(viewer, project):
    _, widget = viewer.window.add_plugin_dock_widget("stoneseg", "Open StoneSeg project")
    widget.folder.value = project
    assert [p.name for p in widget.photo.choices] == ["img0.png", "img1.png", "img2.png"]
    widget.photo.value = project / "images" / "img0.png"
    widget.open_button.clicked.emit()
    assert [layer.name for layer in viewer.layers] == ["img0", "img0 mask", "img0 stones"]
    widget.open_photo()  # again: the same layers get the data, none is added
    assert len(viewer.layers) == 3
