"""A validation photo beside its ground truth and the model's prediction."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QDialog, QGridLayout, QLabel

from stoneseg_core.inference.segmenter import Segmenter
from stoneseg_core.io.images import read_image, read_mask
from stoneseg_core.scoring.pixels import confusion

TRUTH_RGB = (255, 200, 0)
PRED_RGB = (230, 0, 200)


def overlay(image: np.ndarray, mask: np.ndarray, rgb) -> np.ndarray:
    out = image.copy()
    sel = mask > 0
    out[sel] = (0.5 * out[sel] + 0.5 * np.array(rgb)).astype(np.uint8)
    contours, _ = cv2.findContours(sel.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, rgb, max(1, image.shape[1] // 400))
    return out


def comparison_job(model_dir: Path, image_path: Path, mask_path: Path, max_side: int = 900):
    """Runs in a worker: predict and build three small RGB views."""
    image = read_image(image_path)
    truth = read_mask(mask_path, expected_size=image.shape[:2])
    pred = Segmenter.load(model_dir).predict(image).mask
    scores = confusion(pred, truth).scores()
    f = min(1.0, max_side / max(image.shape[:2]))
    size = (max(1, round(image.shape[1] * f)), max(1, round(image.shape[0] * f)))

    def small(a):
        return cv2.resize(a, size, interpolation=cv2.INTER_AREA)

    return (
        image_path.name,
        scores,
        small(image),
        small(overlay(image, truth, TRUTH_RGB)),
        small(overlay(image, pred, PRED_RGB)),
    )


def to_pixmap(rgb: np.ndarray) -> QPixmap:
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QPixmap.fromImage(QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy())


class CompareDialog(QDialog):
    def __init__(self, result, parent=None):
        super().__init__(parent)
        name, scores, image, truth, pred = result
        self.setWindowTitle(f"{name}: ground truth and prediction")
        grid = QGridLayout(self)
        for col, (title, rgb) in enumerate(
            (("Photo", image), ("Ground truth (yellow)", truth), ("Prediction (magenta)", pred))
        ):
            head = QLabel(f"<b>{title}</b>")
            head.setAlignment(Qt.AlignmentFlag.AlignCenter)
            view = QLabel()
            pix = to_pixmap(rgb)
            view.setPixmap(
                pix.scaled(
                    360,
                    360,
                    Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                )
            )
            grid.addWidget(head, 0, col)
            grid.addWidget(view, 1, col)
        self.scores_label = QLabel(
            f"IoU {100 * scores.iou:.1f} %   F1 {100 * scores.f1:.1f} %   precision {100 * scores.precision:.1f} %   "
            f"recall {100 * scores.recall:.1f} %   accuracy {100 * scores.accuracy:.1f} %"
        )
        grid.addWidget(self.scores_label, 2, 0, 1, 3)
