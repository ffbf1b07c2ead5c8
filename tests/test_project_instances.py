"""Per-stone labels in the project folder: instances/<stem>.png, written by the app from the
Grains panel's cuts and merges, carried into training, checked against the masks."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
from skimage.draw import disk
from synthetic import make_dataset

from stoneseg_core.errors import DataError, StonesegError
from stoneseg_core.grains.io import write_instance_png
from stoneseg_core.io import images as imageio
from stoneseg_core.io.images import read_instance_labels, read_mask, write_mask
from stoneseg_core.io.project import INSTANCES_KEY, Project
from stoneseg_core.training.dataset import load_samples


def discs(shape=(60, 80), centres=((20, 20), (20, 45), (45, 60)), radius=9) -> np.ndarray:
    labels = np.zeros(shape, np.int32)
    for i, centre in enumerate(centres, start=1):
        rr, cc = disk(centre, radius, shape=shape)
        labels[rr, cc] = i
    return labels


def mask_of(labels: np.ndarray) -> np.ndarray:
    return np.where(labels > 0, 255, 0).astype(np.uint8)


def project_with_masks(root, n=3, size=(96, 128)):
    make_dataset(root, n=n, size=size, seed=3)
    return Project.open(root)


def test_a_project_with_instances_yields_triples(tmp_path):
    project = project_with_masks(tmp_path / "data")
    images = project.image_paths()
    assert project.instances_dir == tmp_path / "data" / "instances"
    assert project.instances_path(images[1]) == tmp_path / "data" / "instances" / "img1.png"
    mask = read_mask(project.mask_path(images[1]))
    _, labels = cv2.connectedComponents((mask > 0).view(np.uint8))
    write_instance_png(project.instances_path(images[1]), labels * 300)

    pairs, notes = project.training_pairs()
    assert notes == []
    assert [len(p) for p in pairs] == [2, 3, 2]
    assert pairs[1] == (images[1], project.mask_path(images[1]), project.instances_path(images[1]))
    # the plain pairs (evaluation, export, pooling) stay pairs
    assert all(len(p) == 2 for p in project.labelled_pairs())
    samples = load_samples(pairs, 64, keep_full_mask=False)
    assert samples[1].instances is not None and samples[0].instances is None


def test_save_instances_writes_16_bit_ids_atomically_and_leaves_the_users_file(
    tmp_path, monkeypatch
):
    root = tmp_path / "proj"
    labels = discs()
    labels[labels == 2] = 40  # gaps in the ids, as cuts and merges leave them
    mask = mask_of(labels)
    for stem in ("a", "b"):
        imageio.write_png(root / "images" / f"{stem}.png", np.zeros((60, 80, 3), np.uint8))
        write_mask(root / "masks" / f"{stem}.png", mask)
    project = Project.open(root)
    a = project.image_paths()[0]

    written = []
    real = imageio.atomic_write_bytes

    def spy(path, data):
        written.append(os.path.basename(path))
        return real(path, data)

    monkeypatch.setattr("stoneseg_core.io.project.atomic_write_bytes", spy)
    path = project.save_instances(a, labels, mask)
    assert path == root / "instances" / "a.png" and "a.png" in written
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and sorted(np.unique(raw).tolist()) == [0, 1, 2, 3]
    assert np.array_equal(raw > 0, mask > 0)
    recorded = json.loads((root / "stoneseg.json").read_text())[INSTANCES_KEY]
    assert recorded == {"a": imageio.file_sha256(path)} and project.wrote_instances(a)
    # the same stones again: nothing rewritten
    written.clear()
    project.save_instances(a, labels, mask)
    assert written == []

    # stones that do not lie exactly on the mask are refused, the file stays as it was
    moved = np.roll(labels, 3, axis=1)
    before = path.read_bytes()
    with pytest.raises(StonesegError, match="exactly where its mask"):
        project.save_instances(a, moved, mask)
    assert path.read_bytes() == before

    # a labels file the user put there is never overwritten nor removed
    b = project.image_paths()[1]
    mine = project.instances_path(b)
    write_instance_png(mine, discs())
    mine_bytes = mine.read_bytes()
    with pytest.raises(StonesegError, match="did not write"):
        project.save_instances(b, labels, mask)
    assert not project.discard_instances(b) and mine.read_bytes() == mine_bytes
    # nor one the user replaced the app's with
    write_instance_png(path, discs())
    assert not project.wrote_instances(a) and not project.discard_instances(a)
    assert path.is_file()


def test_discard_removes_only_what_the_app_wrote(tmp_path):
    root = tmp_path / "proj"
    labels = discs()
    imageio.write_png(root / "images" / "a.png", np.zeros((60, 80, 3), np.uint8))
    write_mask(root / "masks" / "a.png", mask_of(labels))
    project = Project.open(root)
    a = project.image_paths()[0]
    path = project.save_instances(a, labels, mask_of(labels))
    assert project.discard_instances(a) and not path.exists()
    assert INSTANCES_KEY not in json.loads((root / "stoneseg.json").read_text())


def test_bad_instance_files_are_all_named_in_one_message(tmp_path):
    project = project_with_masks(tmp_path / "data", n=4)
    images = project.image_paths()
    masks = [read_mask(project.mask_path(p)) for p in images]
    comps = [cv2.connectedComponents((m > 0).view(np.uint8))[1] for m in masks]
    # img0: another size than its photo
    write_instance_png(project.instances_path(images[0]), comps[0][:-4])
    # img1: stones outside the mask (every label pushed 6 px to the right)
    write_instance_png(project.instances_path(images[1]), np.roll(comps[1], 6, axis=1) * 2)
    # img2: an 8-bit file whose ids saturate at 255 (300 stones written as uint8, clipped)
    many = np.zeros(masks[2].shape, np.int32)
    many[masks[2] > 0] = 1 + np.arange(int((masks[2] > 0).sum())) % 300
    cv2.imwrite(str(project.instances_path(images[2])), np.clip(many, 0, 255).astype(np.uint8))
    # img3: good
    write_instance_png(project.instances_path(images[3]), comps[3])
    before = {p.name: p.read_bytes() for p in project.instances_dir.iterdir()}

    pairs, notes = project.training_pairs()  # the user's own files: passed on, judged below
    assert [len(p) for p in pairs] == [3, 3, 3, 3] and notes == []
    with pytest.raises(DataError) as err:
        load_samples(pairs, 64, keep_full_mask=False)
    text = str(err.value)
    assert "3 of 4 labelled photos cannot be used" in text
    assert "img0.png is 128x92 pixels but its image is 128x96" in text
    assert "instances/img1.png do not fit the mask img1.png" in text and "outside the mask" in text
    assert "instances/img2.png: a 8-bit file whose ids reach 255" in text
    assert "img3" not in text
    # nothing the user made is deleted or changed
    assert {p.name: p.read_bytes() for p in project.instances_dir.iterdir()} == before


def test_strict_reading_refuses_saturated_ids_only(tmp_path):
    ok = tmp_path / "ok.png"
    cv2.imwrite(str(ok), np.arange(254, dtype=np.uint8).reshape(2, 127))
    assert read_instance_labels(ok, strict=True).max() == 253
    mask = tmp_path / "mask.png"
    cv2.imwrite(str(mask), np.array([[0, 255], [255, 0]], np.uint8))
    assert read_instance_labels(mask).max() == 255  # evaluation still reads it (with a warning)
    with pytest.raises(StonesegError, match="saturated"):
        read_instance_labels(mask, strict=True)


def test_instances_the_app_wrote_before_the_mask_changed_are_left_out_with_a_note(tmp_path):
    root = tmp_path / "proj"
    labels = discs()
    for stem in ("a", "b"):
        imageio.write_png(root / "images" / f"{stem}.png", np.zeros((60, 80, 3), np.uint8))
        write_mask(root / "masks" / f"{stem}.png", mask_of(labels))
    project = Project.open(root)
    a, b = project.image_paths()
    saved = project.save_instances(a, labels, mask_of(labels))
    assert [len(p) for p in project.training_pairs()[0]] == [3, 2]

    # a touch-up of a few pixels stays within the tolerance: the labels still train
    touched = mask_of(labels)
    touched[20, 29] = 255
    write_mask(project.mask_path(a), touched)
    assert [len(p) for p in project.training_pairs()[0]] == [3, 2]

    # a stone erased from the mask after the cut: the labels no longer fit
    edited = mask_of(np.where(labels == 3, 0, labels))
    write_mask(project.mask_path(a), edited)
    pairs, notes = Project.open(root).training_pairs()
    assert [len(p) for p in pairs] == [2, 2]
    assert len(notes) == 1 and "a.png" in notes[0] and "outside the mask" in notes[0]
    assert "Analyse" in notes[0]
    assert saved.is_file()  # left out, not deleted
    load_samples(pairs, 64, keep_full_mask=False)  # trains from the mask's pieces

    # the same file put there by the user is not the app's: a bad file, named
    project.state.pop(INSTANCES_KEY)
    project.save_state()
    pairs, notes = Project.open(root).training_pairs()
    assert [len(p) for p in pairs] == [3, 2] and notes == []
    with pytest.raises(DataError, match="instances/a.png do not fit the mask a.png"):
        load_samples(pairs, 64, keep_full_mask=False)
