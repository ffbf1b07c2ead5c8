"""What to label next: the uncertainty overlay of the photo shown (U), the photo list's most
useful order, and Next most useful photo (N).

Each prediction made in the window (one photo, or every unlabelled one) measures how unsure
the model is (``inference.uncertainty``); the controller keeps the score in the project's
state. This part shows the map of the photo predicted last over it, hands the scores to the
photo list and opens the photo first in the list's order to label in (the model unsure of
it, spread over the kinds of photo: ``inference.label_order``) that has not been opened
since the project was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QAction, QColor, QIcon, QPainter, QPixmap, QPolygonF
from PySide6.QtWidgets import QToolBar

from stoneseg_core.inference.uncertainty import UncertaintyScore, stored_scores
from stoneseg_core.io.project import ImageStatus, Project

from ..actions import make_action
from ..host import WindowHost
from .controller import ModelController
from .uncertainty_overlay import UNCERTAINTY_COLOR, UncertaintyItem, UncertaintyLegend


@dataclass
class LabelNextActions:
    show_uncertainty: QAction
    next_useful: QAction


class LabelNext(QObject):
    """The uncertainty overlay, the list's scores and Next most useful photo, for one window."""

    def __init__(self, window: WindowHost, controller: ModelController) -> None:
        super().__init__(window)
        self.window, self.controller = window, controller
        self.item = UncertaintyItem()
        window.canvas.scene().addItem(self.item)
        self.legend = UncertaintyLegend(window.canvas.viewport())
        self.visited: set[Path] = set()  # opened since the project was
        self.actions = LabelNextActions(
            show_uncertainty=make_action(
                window,
                "Show &uncertainty",
                self.set_shown,
                ("U",),
                "Where the model is unsure of the photo shown (magenta), from its prediction",
                checkable=True,
            ),
            next_useful=make_action(
                window,
                "Next most useful &photo",
                self.next_most_useful,
                ("N",),
                "Open the photo not labelled yet that is most useful to label: one the model "
                "is unsure of, and unlike the photos labelled so far",
            ),
        )
        self.actions.show_uncertainty.setIcon(_icon(next_arrow=False))
        self.actions.next_useful.setIcon(_icon(next_arrow=True))
        window.addActions(list(vars(self.actions).values()))
        window.view_menu.addSeparator()
        window.view_menu.addActions(list(vars(self.actions).values()))
        self.toolbar = QToolBar("Label next", window)
        self.toolbar.setObjectName("label_next_toolbar")
        self.toolbar.setIconSize(QSize(22, 22))
        self.toolbar.addActions(list(vars(self.actions).values()))
        window.addToolBar(self.toolbar)
        session = window.session
        session.project_opened.connect(self._on_session_project_opened)
        session.image_changed.connect(self._on_session_image_changed)
        controller.prediction_ready.connect(self._on_controller_prediction_ready)
        controller.uncertainty_scored.connect(window.image_list.set_uncertainty)

    # ------------------------------------------------------------------ the overlay
    @property
    def shown(self) -> bool:
        return self.actions.show_uncertainty.isChecked()

    def set_shown(self, shown: bool) -> None:
        """Show (U) or hide the uncertainty of the photo shown; says what to do without one."""
        if self.actions.show_uncertainty.isChecked() != shown:
            self.actions.show_uncertainty.setChecked(shown)  # comes back here
            return
        self._refresh()
        if shown and self.item.uncertainty is None and self.window.current_image_path():
            self.window.statusBar().showMessage(
                "No uncertainty map for this photo yet: predict it (Ctrl+P), the map comes "
                "with the prediction.",
                8000,
            )

    def _refresh(self) -> None:
        unc = self.item.uncertainty
        visible = self.shown and unc is not None
        self.item.setVisible(visible)
        if visible:
            self.legend.show_for(unc)
        else:
            self.legend.hide()

    def _on_controller_prediction_ready(self, path: Path) -> None:
        prediction = self.controller.prediction
        display = self.window.session.current_display()
        if path != self.window.current_image_path() or prediction is None or display is None:
            return
        size = (int(getattr(display, "width", 0)), int(getattr(display, "height", 0)))
        self.item.set_uncertainty(prediction.uncertainty, size)
        self._refresh()

    def _on_session_image_changed(self, path: Path | None) -> None:
        self.item.set_uncertainty(None, (0, 0))
        self._refresh()
        if path is not None:
            self.visited.add(Path(path))

    def _on_session_project_opened(self, project: Project) -> None:
        self.visited.clear()
        scores = stored_scores(project.state)
        self.window.image_list.set_uncertainties(
            {p: scores[p.stem] for p in self.window.session.images() if p.stem in scores}
        )

    # ------------------------------------------------------------------ next most useful
    def ranked(self) -> list[tuple[Path, UncertaintyScore]]:
        """The photos not labelled yet that have a score, the most useful to label first
        (the photo list's order, ``ImageListModel.useful_order``)."""
        if self.window.project is None:
            return []
        model = self.window.image_list.model
        return [(path, model.uncertainty_of(path)) for path in model.useful_order()]

    def next_most_useful(self) -> Path | None:
        """Open the photo not labelled yet, not opened since the project was, that comes first
        in the order to label in; the path opened, or None (said why, or offered to
        predict)."""
        if self.window.project is None:
            return None
        ranked = self.ranked()
        current = self.window.current_image_path()
        todo = [(p, s) for p, s in ranked if p not in self.visited and p != current]
        if todo:
            path, score = todo[0]
            if self.window.session.open_image(path):
                # short enough for the status bar of a 1366-px screen; the list's tooltip
                # has the score in a sentence
                if any(s.score > score.score for _p, s in todo[1:]):
                    why = "first because fewer photos like it are labelled"
                else:
                    why = "where it is unsure, its prediction is likeliest to be wrong"
                message = f"{path.name}: {score.short_words()}; {why}."
                self.window.statusBar().showMessage(message, 15000)
                return path
            return None
        if ranked:
            self.window.statusBar().showMessage(
                f"You have opened all {len(ranked)} photos the model scored. Label them, or "
                "train again and predict the unlabelled photos for a new order.",
                10000,
            )
            return None
        self._offer_prediction()
        return None

    def _offer_prediction(self) -> None:
        """No photo has a score: say how to get them, and offer to predict every unlabelled
        photo (in the background, Esc or Ctrl+. cancels)."""
        dialogs, session = self.window.dialogs, self.window.session
        title = "No photo ranked yet"
        if self.controller.predicting_model() is None:
            dialogs.info(
                title,
                "The photos are ranked by how unsure a model is of them. Label a few photos and "
                "train a model (Ctrl+T), then predict the unlabelled photos (Ctrl+Shift+P).",
            )
            return
        unlabelled = [
            p for p in session.images() if session.image_status(p) is ImageStatus.UNLABELLED
        ]
        if not unlabelled:
            dialogs.info(
                title,
                "No photo without a mask is left to predict, and no prediction made here has a "
                "score yet: predict a photo not reviewed yet (Ctrl+P) to rank it.",
            )
            return
        answer = dialogs.ask(
            title,
            f"No photo has an uncertainty score yet. Predict the {len(unlabelled)} unlabelled "
            "photos with the active model now? It runs in the background (Ctrl+. cancels); "
            "then N opens the photo most useful to label.",
            ["Predict all unlabelled", "Not now"],
            default="Not now",
        )
        if answer == "Predict all unlabelled":
            self.controller.predict_unlabelled()


def _icon(next_arrow: bool) -> QIcon:
    """A magenta heat blob (the overlay); with an arrow: go to the most useful photo."""
    pixmap = QPixmap(64, 64)
    pixmap.fill(Qt.GlobalColor.transparent)
    p = QPainter(pixmap)
    p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    p.setPen(Qt.PenStyle.NoPen)
    for radius, alpha in ((24, 70), (16, 140), (8, 230)):
        color = QColor(UNCERTAINTY_COLOR)
        color.setAlpha(alpha)
        p.setBrush(color)
        centre = QPointF(24, 32) if next_arrow else QPointF(32, 32)
        p.drawEllipse(centre, radius, radius)
    if next_arrow:
        p.setBrush(QColor(222, 224, 229))
        p.drawPolygon(QPolygonF([QPointF(42, 14), QPointF(62, 32), QPointF(42, 50)]))
    else:
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(QColor(222, 224, 229))
        p.drawRect(QRectF(6, 6, 52, 52))
    p.end()
    return QIcon(pixmap)
