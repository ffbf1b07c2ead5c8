import numpy as np
import pytest

from stoneseg_core.scoring.pixels import Confusion, confusion, pooled


def test_confusion_counts_by_hand():
    truth = np.array([[1, 1, 0, 0], [1, 1, 0, 0]], np.uint8) * 255
    pred = np.array([[1, 0, 1, 0], [1, 1, 0, 0]], np.uint8) * 255
    c = confusion(pred, truth)
    assert (c.tp, c.fp, c.fn, c.tn) == (3, 1, 1, 3)
    s = c.scores()
    assert s.accuracy == pytest.approx(6 / 8)
    assert s.iou == pytest.approx(3 / 5)
    assert s.f1 == pytest.approx(6 / 8)
    assert s.precision == pytest.approx(3 / 4)
    assert s.recall == pytest.approx(3 / 4)


def test_pooled_adds_counts_before_dividing():
    a = Confusion(tp=90, fp=10, fn=0, tn=900)  # IoU 0.9
    b = Confusion(tp=0, fp=0, fn=10, tn=0)  # IoU 0.0
    s = pooled([a, b])
    assert s.iou == pytest.approx(90 / 110)  # not the mean 0.45 of per-image IoUs
    assert s.recall == pytest.approx(90 / 100)
    assert s.accuracy == pytest.approx(990 / 1010)


def test_empty_truth_and_prediction_is_perfect_but_one_sided_is_zero():
    z = np.zeros((3, 3), np.uint8)
    assert confusion(z, z).scores().iou == 1.0
    one = z.copy()
    one[0, 0] = 255
    s = confusion(one, z).scores()
    assert s.iou == 0.0 and s.precision == 0.0 and s.accuracy == pytest.approx(8 / 9)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError):
        confusion(np.zeros((2, 2)), np.zeros((2, 3)))
