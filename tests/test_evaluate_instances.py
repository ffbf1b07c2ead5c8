"""`stoneseg evaluate` with instance truth: the stone figures geologists publish.

The known answers come from constructed photos and a stand-in segmenter whose prediction is
drawn into the photo itself (the test says where every predicted stone is); one test runs the
real tiny model end to end.
"""

import json
import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from synthetic import make_dataset

import stoneseg_core.jobs.evaluate as evaluate_module
from stoneseg_core.cli import main
from stoneseg_core.grains import write_instance_png
from stoneseg_core.grains.instances import (
    IOU_THRESHOLDS,
    InstanceEvaluation,
    InstanceScores,
    evaluate_instances_detailed,
    match_instances_over_ious,
    pool_instance_evaluations,
)

# ------------------------------------------------------------------------------- the scenes

SIDES = (4, 6, 8, 10, 12)  # true squares; the prediction's are twice as wide


def squares(shape, boxes):
    """Labels 1..N: one square (row, col, side) each."""
    labels = np.zeros(shape, np.int32)
    for k, (r, c, side) in enumerate(boxes, start=1):
        labels[r : r + side, c : c + side] = k
    return labels


def twice_as_big():
    """(predicted labels, true labels): every predicted square twice the true one's side, so
    every b-axis is exactly 2x (the pixel-moment b-axis of a k x k square is 4k/sqrt(12))."""
    cols = [5 + 40 * i for i in range(len(SIDES))]
    true = squares((60, 210), [(5, c, s) for c, s in zip(cols, SIDES)])
    pred = squares((60, 210), [(5, c, 2 * s) for c, s in zip(cols, SIDES)])
    return pred, true


def shifted_to_iou_07():
    """Two true 17 x 17 squares; the prediction has one exactly and one shifted 3 px sideways:
    IoU 14 * 17 / (20 * 17) = 0.7."""
    true = squares((40, 90), [(10, 5, 17), (10, 50, 17)])
    pred = squares((40, 90), [(10, 5, 17), (10, 53, 17)])
    return pred, true


def write_photo(root, stem, pred, true):
    """images/<stem>.png draws the prediction (the stand-in segmenter reads it back),
    masks/<stem>.png is the true mask, instances/<stem>.png the true stones."""
    for sub in ("images", "masks", "instances"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    photo = np.where(pred > 0, 230, 20).astype(np.uint8)
    cv2.imwrite(str(root / "images" / f"{stem}.png"), np.dstack([photo] * 3))
    cv2.imwrite(str(root / "masks" / f"{stem}.png"), np.where(true > 0, 255, 0).astype(np.uint8))
    write_instance_png(root / "instances" / f"{stem}.png", true)


class StandInSegmenter:
    """Segmenter.load's stand-in: the stones are where the photo is bright."""

    scales_seen: list = []
    min_stone_px = 0.0  # the speck floor a real prediction carries

    def __init__(self, train_images=()):
        self.info = SimpleNamespace(train_images=list(train_images), val_images=[])
        self.config = SimpleNamespace(threshold=0.5)

    def predict(self, image, should_stop=None, scale=None, mm_per_px=None):
        StandInSegmenter.scales_seen.append(mm_per_px)
        prob = np.where(image[..., 0] > 127, 0.9, 0.05).astype(np.float32)
        return SimpleNamespace(
            probability=prob,
            mask=np.where(prob >= 0.5, 255, 0).astype(np.uint8),
            boundary=None,
            min_stone_px=StandInSegmenter.min_stone_px,
        )


@pytest.fixture
def stand_in(monkeypatch):
    """Patch the evaluation's Segmenter; set ``.train_images`` to mark photos as trained on."""
    state = SimpleNamespace(train_images=())
    StandInSegmenter.scales_seen = []
    monkeypatch.setattr(StandInSegmenter, "min_stone_px", 0.0)
    monkeypatch.setattr(
        evaluate_module,
        "Segmenter",
        SimpleNamespace(load=lambda model_dir, config=None: StandInSegmenter(state.train_images)),
    )
    return state


def run_json(args, capsys):
    assert main(args + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


# ------------------------------------------------------------------------ the known answers


def test_every_b_axis_twice_the_truth_is_plus_one_psi_everywhere(tmp_path, stand_in, capsys):
    data = tmp_path / "data"
    pred, true = twice_as_big()
    write_photo(data, "a", pred, true)
    write_photo(data, "b", pred, true)
    stand_in.train_images = ("a",)
    args = ["evaluate", "m", str(data), "--instances", "--mm-per-px", "0.5"]
    result = run_json(args, capsys)
    keys = [f"d{p}_psi_error{w}" for p in (16, 50, 84) for w in ("", "_area")]
    for block in (r["stones"] for r in result["per_image"]):
        assert (block["n_pred"], block["n_true"], block["unit"]) == (5, 5, "mm")
        for k in keys:
            assert block[k] == pytest.approx(1.0, abs=1e-9), k
    for block in (result["stones"], result["not_trained_on"]["stones"]):
        for k in keys:
            assert block[k] == pytest.approx(1.0, abs=1e-9), k
        # true b-axes 4k/sqrt(12) px * 0.5 mm/px for k = 4, 6, ..., 12: the curve passes
        # (k = 6, 40 %) and (k = 8, 60 %), so D50 is at k = 7
        assert block["d50_true_mm"] == pytest.approx(2 * 7 / 12**0.5)
        assert block["d50_pred_mm"] == pytest.approx(4 * 7 / 12**0.5)
    assert (result["stones"]["n_images"], result["not_trained_on"]["stones"]["n_images"]) == (2, 1)
    assert result["stones"]["n_true"] == 10 and result["stones"]["unit"] == "mm"
    # the scale reached the segmenter (a stone-size model with --stone-mm needs it)
    assert StandInSegmenter.scales_seen == [0.5, 0.5]
    # a prediction twice as wide overlaps each true square by 1/4: no stone matches
    assert result["stones"]["tp"] == 0 and result["stones"]["f1_50_95"] == 0.0


def test_a_stone_at_iou_07_counts_up_to_07_and_is_missed_above(tmp_path, stand_in, capsys):
    pred, true = shifted_to_iou_07()
    by_iou = match_instances_over_ious(pred, true)
    assert set(by_iou) == set(IOU_THRESHOLDS)
    for t, s in by_iou.items():
        assert (s.tp, s.fp, s.fn) == ((2, 0, 0) if t <= 0.7 else (1, 1, 1)), t

    data = tmp_path / "data"
    write_photo(data, "a", pred, true)
    write_photo(data, "b", pred, true)
    result = run_json(["evaluate", "m", str(data), "--instances"], capsys)
    for st in [r["stones"] for r in result["per_image"]] + [result["stones"]]:
        assert st["f1"] == 1.0  # at IoU 0.5 both stones are found
        assert st["f1_by_iou"]["0.70"] == 1.0 and st["f1_by_iou"]["0.75"] == 0.5
        # F1 1 at 0.50 ... 0.70, 2 / (2 + 1 + 1) = 0.5 at 0.75 ... 0.95
        assert st["f1_50_95"] == pytest.approx(0.75)
    assert (result["stones"]["tp"], result["stones"]["n_images"]) == (4, 2)
    # no scale anywhere: sizes in pixels
    assert result["stones"]["unit"] == "px" and "d50_true_px" in result["stones"]


def test_stones_under_the_speck_floor_are_not_scored(tmp_path, stand_in, capsys):
    """The evaluation splits as `grains` does: a speck under the prediction's floor is no stone."""
    pred, true = shifted_to_iou_07()
    pred[2:4, 80:82] = 9  # a 2 x 2 speck the truth does not have
    data = tmp_path / "data"
    write_photo(data, "a", pred, true)
    st = run_json(["evaluate", "m", str(data)], capsys)["stones"]
    assert (st["n_pred"], st["fp"]) == (3, 1)
    StandInSegmenter.min_stone_px = 10.0
    st = run_json(["evaluate", "m", str(data)], capsys)["stones"]
    assert (st["n_pred"], st["fp"], st["f1"]) == (2, 0, 1.0)


def test_pooled_f1_over_ious_sums_the_counts_of_photos():
    """The evaluation keeps counts at each threshold, not label images, and pools them."""
    pred, true = shifted_to_iou_07()
    good = evaluate_instances_detailed(np.where(true > 0, 255, 0).astype(np.uint8), true)
    shifted = evaluate_instances_detailed(np.where(pred > 0, 255, 0).astype(np.uint8), true)
    assert all(isinstance(s, InstanceScores) for _, s in good.scores_by_iou)
    assert not any(isinstance(v, np.ndarray) for v in vars(good).values())
    pooled = pool_instance_evaluations([good, shifted])
    # above 0.7: tp 2 + 1, fp 0 + 1, fn 0 + 1 -> F1 6 / 8
    assert pooled["f1_by_iou"]["0.80"] == pytest.approx(6 / 8)
    assert pooled["f1_50_95"] == pytest.approx((5 * 1.0 + 5 * 6 / 8) / 10)
    # an evaluation made without the counts over IoUs still pools (old callers)
    old = InstanceEvaluation(InstanceScores(1, 0, 0), (2.0,), (4.0,), (2.0,), (4.0,))
    d = pool_instance_evaluations([old, good])
    assert d["f1_50_95"] is None and d["tp"] == 3 and d["d50_psi_error"] is not None
    json.dumps(d, allow_nan=False)


def test_text_output_prints_the_stone_block(tmp_path, stand_in, capsys):
    data = tmp_path / "data"
    pred, true = shifted_to_iou_07()
    write_photo(data, "a", pred, true)
    (data / "images" / "c.png").write_bytes((data / "images" / "a.png").read_bytes())
    (data / "masks" / "c.png").write_bytes((data / "masks" / "a.png").read_bytes())
    # no instances/c.png: scored for pixels only
    assert main(["evaluate", "m", str(data)]) == 0  # DATA_DIR/instances exists: used
    captured = capsys.readouterr()
    assert "instances" in captured.err and "--no-instances" in captured.err
    out = captured.out
    assert "Stones, against the instance truth in" in out
    assert "F1 .5-.95" in out and "dD50" in out
    stones = out[out.index("Stones, against") :]  # under the pixel table
    line = next(x for x in stones.splitlines() if x.startswith("a.png"))
    assert line.split()[2:4] == ["2", "2"]  # found, true
    assert "0.750" in line
    assert "pooled, by area" in out and "D16 / D50 / D84 by count" in out
    assert "(1 scored photo without an instance mask)" in out
    # --no-instances: pixel scores only
    assert main(["evaluate", "m", str(data), "--no-instances"]) == 0
    assert "Stones" not in capsys.readouterr().out


def test_instances_dir_given_still_works_and_no_folder_means_no_stones(tmp_path, stand_in, capsys):
    data = tmp_path / "data"
    pred, true = shifted_to_iou_07()
    write_photo(data, "a", pred, true)
    elsewhere = tmp_path / "truth"
    (data / "instances").rename(elsewhere)
    result = run_json(["evaluate", "m", str(data)], capsys)
    assert "stones" not in result  # nothing to find
    result = run_json(["evaluate", "m", str(data), "--instances", str(elsewhere)], capsys)
    assert result["stones"]["n_images"] == 1 and result["instances"] == str(elsewhere)
    # a bare --instances names DATA_DIR/instances, which is not there: one-line error
    assert main(["evaluate", "m", str(data), "--instances"]) == 2
    assert "Instance mask folder not found" in capsys.readouterr().err


def test_labels_the_app_wrote_for_a_mask_edited_since_are_no_truth(tmp_path, stand_in, capsys):
    from stoneseg_core.io.project import Project

    data = tmp_path / "data"
    pred, true = shifted_to_iou_07()
    for stem in ("a", "b"):
        write_photo(data, stem, pred, true)
        (data / "instances" / f"{stem}.png").unlink()
        mask = np.where(true > 0, 255, 0).astype(np.uint8)
        Project.open(data).save_instances(data / "images" / f"{stem}.png", true, mask)
    # b's mask loses a stone after its cuts and merges were saved: its labels no longer fit
    edited = np.where(true == 1, 255, 0).astype(np.uint8)
    cv2.imwrite(str(data / "masks" / "b.png"), edited)
    assert main(["evaluate", "m", str(data), "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert [r["image"] for r in result["per_image"] if "stones" in r] == ["a.png"]
    assert result["stones"]["n_images"] == 1 and not result["failed"]
    assert "b.png" in result["notes"][0] and "b.png" in captured.err
    # the same files given as --instances DIR elsewhere are taken as they are
    elsewhere = tmp_path / "copy"
    elsewhere.mkdir()
    for f in (data / "instances").iterdir():
        (elsewhere / f.name).write_bytes(f.read_bytes())
    result = run_json(["evaluate", "m", str(data), "--instances", str(elsewhere)], capsys)
    assert result["stones"]["n_images"] == 2 and "notes" not in result


def test_photo_scales_come_from_the_project_file(tmp_path, stand_in, capsys):
    from stoneseg_core.grains.scale import PROJECT_FOLDER_SCALE_KEY, PROJECT_SCALES_KEY

    data = tmp_path / "data"
    pred, true = twice_as_big()
    write_photo(data, "a", pred, true)
    write_photo(data, "b", pred, true)
    state = {PROJECT_SCALES_KEY: {"a": 0.25}, PROJECT_FOLDER_SCALE_KEY: 0.5}
    (data / "stoneseg.json").write_text(json.dumps(state))
    result = run_json(["evaluate", "m", str(data)], capsys)
    rows = {r["image"]: r for r in result["per_image"]}
    assert (rows["a.png"]["mm_per_px"], rows["b.png"]["mm_per_px"]) == (0.25, 0.5)
    assert result["stones"]["unit"] == "mm" and rows["a.png"]["stones"]["unit"] == "mm"
    # photo a at 0.25 mm/px, b at 0.5: the pooled true D50 lies between their own
    a, b = rows["a.png"]["stones"]["d50_true_mm"], rows["b.png"]["stones"]["d50_true_mm"]
    assert b == pytest.approx(2 * a) and a < result["stones"]["d50_true_mm"] < b
    # --mm-per-px overrides the project's
    result = run_json(["evaluate", "m", str(data), "--mm-per-px", "1"], capsys)
    assert {r["mm_per_px"] for r in result["per_image"]} == {1.0}


def test_the_app_and_the_core_keep_scales_under_the_same_keys():
    pytest.importorskip("PySide6")
    from stoneseg_core.grains.scale import PROJECT_FOLDER_SCALE_KEY, PROJECT_SCALES_KEY
    from stoneseg_gui.grains import controller

    assert controller.SCALES_KEY == PROJECT_SCALES_KEY
    assert controller.FOLDER_SCALE_KEY == PROJECT_FOLDER_SCALE_KEY


# ------------------------------------------------------------------------------- --plot


def test_plot_writes_png_svg_and_pdf(tmp_path, stand_in, capsys):
    data = tmp_path / "data"
    pred, true = twice_as_big()
    write_photo(data, "a", pred, true)
    write_photo(data, "b", pred, true)
    stand_in.train_images = ("a",)
    png = tmp_path / "out" / "curves.png"
    result = run_json(["evaluate", "m", str(data), "--plot", str(png)], capsys)
    assert result["plot"] == str(png) and not result["failed"]
    image = cv2.imread(str(png))
    # two panels of 5.2 x 4.6 inches at 120 dpi
    assert image is not None and image.shape == (552, 1248, 3)
    assert image.std() > 10  # not blank
    for ext, head in ((".svg", b"<?xml"), (".pdf", b"%PDF")):
        path = tmp_path / f"curves{ext}"
        assert main(["evaluate", "m", str(data), "--plot", str(path)]) == 0
        assert path.read_bytes().startswith(head) and path.stat().st_size > 2000
    assert "Grain-size curves drawn in" in capsys.readouterr().out


def test_plot_needs_instance_truth_and_a_picture_format(tmp_path, stand_in, capsys):
    data = tmp_path / "data"
    pred, true = twice_as_big()
    write_photo(data, "a", pred, true)
    assert main(["evaluate", "m", str(data), "--plot", str(tmp_path / "c.gif")]) == 2
    assert ".png, .svg or .pdf" in capsys.readouterr().err
    args = ["evaluate", "m", str(data), "--no-instances", "--plot", str(tmp_path / "c.png")]
    assert main(args) == 2
    assert "needs instance ground truth" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()


def test_the_plot_is_drawn_without_qt(tmp_path):
    """matplotlib through its Agg canvas only: the core never loads Qt, even to draw."""
    code = (
        "import sys\n"
        "from stoneseg_core.grains.curve_plot import plot_grain_size_curves\n"
        "from stoneseg_core.grains.distribution import grain_size_distribution\n"
        "c = grain_size_distribution([1.0, 2.0, 4.0, 8.0])\n"
        f"plot_grain_size_curves({str(tmp_path / 'p.png')!r}, [('x', [('true', c)])], 't')\n"
        "assert not [m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph'))]\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "p.png").stat().st_size > 1000


# ------------------------------------------------------------------- the real tiny model


def test_real_model_bare_instances_flag_finds_data_dir_instances(trained_model, tmp_path, capsys):
    data = make_dataset(tmp_path / "data", n=2, size=(128, 160), seed=5)
    (data / "instances").mkdir()
    for i in range(2):
        mask = cv2.imread(str(data / "masks" / f"img{i}.png"), cv2.IMREAD_GRAYSCALE)
        _, labels = cv2.connectedComponents((mask > 0).astype(np.uint8))
        write_instance_png(data / "instances" / f"img{i}.png", labels)
    png = tmp_path / "curves.png"
    args = ["evaluate", str(trained_model), str(data), "--instances", "--plot", str(png)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"instance truth in {data / 'instances'}" in out and "pooled (2 photos)" in out
    assert cv2.imread(str(png)).shape == (552, 1248, 3)
    result = run_json(["evaluate", str(trained_model), str(data), "--instances"], capsys)
    st = result["stones"]
    assert st["n_images"] == 2 and st["n_true"] > 0 and 0.0 <= st["f1_50_95"] <= st["f1"] + 1e-9
    for k in ("d16_psi_error", "d84_psi_error", "d16_psi_error_area", "d84_psi_error_area"):
        assert k in st
    json.dumps(result, allow_nan=False)
