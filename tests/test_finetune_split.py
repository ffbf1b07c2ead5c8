"""Fine-tuning never validates on a photo any ancestor trained on; one validation set per
lineage; a new model is compared with the one it would replace on the same photos."""

from __future__ import annotations

import json

import pytest
from synthetic import make_dataset

from stoneseg_core.errors import DataError
from stoneseg_core.io.project import Project, joins_validation, split_continuing
from stoneseg_core.model.config import TrainConfig
from stoneseg_core.model.network import CONFIG_FILE, read_model_info
from stoneseg_core.training.train import compare_on_validation, run_training

TINY = TrainConfig(epochs=1, crop=64, work_size=96, batch_size=2, samples_per_image=1, seed=0)


def test_continuing_split_keeps_validation_and_never_leaks():
    stems = [f"p{i}" for i in range(12)]
    train, val = split_continuing(
        stems, 0.2, earlier_val=["p1", "p2"], trained_before=["p0", "p3", "p4", "p5"]
    )
    assert {"p1", "p2"} <= set(val)
    assert not {"p0", "p3", "p4", "p5"} & set(val)
    assert set(train) | set(val) == set(stems) and not set(train) & set(val)
    # new photos follow the name rule, which does not depend on the other photos
    for s in stems[6:]:
        assert (s in val) == joins_validation(s, 0.2)
    again = split_continuing(
        [*stems, "q0"], 0.2, earlier_val=["p1", "p2"], trained_before=["p0", "p3", "p4", "p5"]
    )
    assert set(again[1]) - {"q0"} == set(val)


def test_an_earlier_validation_photo_that_an_ancestor_trained_on_is_dropped():
    train, val = split_continuing(
        ["a", "b", "c"], 0.2, earlier_val=["a", "b"], trained_before=["a"]
    )
    assert "a" in train and "a" not in val and "b" in val


def test_continuing_split_refuses_what_cannot_be_honest():
    with pytest.raises(DataError, match="none is left to validate on honestly"):
        split_continuing(["a", "b"], 0.2, earlier_val=[], trained_before=["a", "b"])
    with pytest.raises(DataError, match="trained on by the model being fine-tuned"):
        split_continuing(["a", "b", "c"], 0.2, [], ["a"], val_images=("a",))
    # no new photo passes the name rule: the lowest-scoring new photo validates
    train, val = split_continuing(["a", "b", "c"], 0.0, earlier_val=[], trained_before=["a"])
    assert len(val) == 1 and val[0] in ("b", "c")


def _add_photos(root, names, seed):
    src = make_dataset(root.parent / f"extra{seed}", n=len(names), size=(96, 96), seed=seed)
    for (img, mask), name in zip(Project.open(src).labelled_pairs(), names):
        (root / "images" / f"{name}{img.suffix}").write_bytes(img.read_bytes())
        (root / "masks" / f"{name}.png").write_bytes(mask.read_bytes())


@pytest.mark.slow
def test_fine_tuning_chain_never_validates_on_an_ancestors_training_photo(tmp_path):
    root = make_dataset(tmp_path / "data", n=5, size=(96, 96), seed=11)
    a = run_training(Project.open(root).labelled_pairs(), tmp_path / "a", TINY)
    _add_photos(root, ["new1", "new2", "new3"], seed=12)
    b = run_training(
        Project.open(root).labelled_pairs(), tmp_path / "b", TINY, from_model=a.model_dir
    )
    assert not set(b.val_images) & set(a.train_images)
    assert set(a.val_images) <= set(b.val_images)
    info_b = read_model_info(b.model_dir)
    assert info_b.trained_before == list(a.train_images)
    # compared with its parent on the same photos, none of which either trained on
    assert b.comparison is not None and b.comparison.other == a.model_dir
    assert set(b.comparison.images) == set(b.val_images)
    _add_photos(root, ["new4", "new5"], seed=13)
    c = run_training(
        Project.open(root).labelled_pairs(), tmp_path / "c", TINY, from_model=b.model_dir
    )
    assert not set(c.val_images) & (set(a.train_images) | set(b.train_images))
    assert set(read_model_info(c.model_dir).lineage_train_images) == (
        set(a.train_images) | set(b.train_images) | set(c.train_images)
    )

    # a model file written before "trained_before" existed: the ancestors are read from disk
    cfg = json.loads((b.model_dir / CONFIG_FILE).read_text())
    cfg.pop("trained_before")
    (b.model_dir / CONFIG_FILE).write_text(json.dumps(cfg))
    assert read_model_info(b.model_dir).trained_before == list(a.train_images)


@pytest.mark.slow
def test_comparison_scores_both_models_on_the_same_unseen_photos(tmp_path):
    root = make_dataset(tmp_path / "data", n=4, size=(96, 96), seed=21)
    pairs = Project.open(root).labelled_pairs()
    a = run_training(pairs, tmp_path / "a", TINY)
    by_stem = {p[0].stem: p for p in pairs}
    same = compare_on_validation(a.model_dir, a.best_per_image, by_stem)
    # a model against itself: the same figures, so it is "not worse"
    assert same is not None and same.images == a.val_images
    assert same.new.iou == pytest.approx(same.other_scores.iou, abs=1e-9)
    assert same.new_is_not_worse
    # photos the other model trained on are left out; with none left there is no comparison
    info = json.loads((a.model_dir / CONFIG_FILE).read_text())
    info["train_images"] = list(info["train_images"]) + list(a.val_images)
    (a.model_dir / CONFIG_FILE).write_text(json.dumps(info))
    assert compare_on_validation(a.model_dir, a.best_per_image, by_stem) is None


def test_cli_from_model_follows_the_rule(tmp_path, capsys):
    from stoneseg_core.cli import main

    root = make_dataset(tmp_path / "data", n=4, size=(96, 96), seed=31)
    common = ["--epochs", "1", "--crop", "64", "--work-size", "96", "--batch-size", "2"]
    assert main(["train", str(root), "--out", str(tmp_path / "a"), *common]) == 0
    a = read_model_info(tmp_path / "a")
    _add_photos(root, ["z1", "z2"], seed=32)
    args = ["train", str(root), "--out", str(tmp_path / "b"), "--from-model", str(tmp_path / "a")]
    assert main([*args, *common]) == 0
    b = read_model_info(tmp_path / "b")
    assert not set(b.val_images) & set(a.train_images)
    out = capsys.readouterr()
    assert f"the parent model {a.work_size and 'a'}" in out.out
    # naming a validation photo the parent trained on is refused, with the photo named
    bad = ["--val-images", a.train_images[0], "--overwrite"]
    assert main([*args, *common, *bad]) == 2
    assert a.train_images[0] in capsys.readouterr().err
