"""Status bar: pixel under the pointer, zoom, tool, brush size, image size, masks folder."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar, QToolButton, QWidget

from stoneseg_core.editing.tools import ToolKind

from ..widgets.icons import icon
from .display import PixelInfo


class EditorStatusBar(QStatusBar):
    masks_folder_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("status_bar")
        self.masks_button = QToolButton()
        self.masks_button.setAutoRaise(True)
        self.masks_button.setIcon(icon("masks_folder"))
        self.masks_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.masks_button.clicked.connect(self.masks_folder_clicked)
        self.pixel_label = self._label("pixel_label", "x 00000  y 00000  ·  background")
        self.size_label = self._label("size_label", "00000 × 00000 px")
        self.zoom_label = self._label("zoom_label", "Zoom 3200 %")
        self.tool_label = self._label("tool_label", "Lasso erase")
        self.brush_label = self._label("brush_label", "Brush 1000 px")
        # work on the photo in the background (a big mask being saved, a pyramid built)
        self.busy_label = QLabel()
        self.busy_label.setObjectName("busy_label")
        self.busy_label.setVisible(False)
        self.busy_bar = QProgressBar()
        self.busy_bar.setObjectName("busy_bar")
        self.busy_bar.setFixedWidth(110)
        self.busy_bar.setVisible(False)
        self._busy_jobs: dict[str, tuple[str, float | None]] = {}
        for widget in (
            self.busy_label,
            self.busy_bar,
            self.masks_button,
            self.pixel_label,
            self.size_label,
            self.zoom_label,
            self.tool_label,
            self.brush_label,
        ):
            self.addPermanentWidget(widget)
        self.show_masks_folder(None)
        self.show_pixel(None)
        self.show_image_size(None)
        # a message gets the room: the fields that matter least step aside while it shows,
        # and the whole text stays in the bar's tooltip (with the ones before it)
        self._width = 0
        self.recent_messages: list[str] = []
        self.messageChanged.connect(self._on_message_changed)

    def minimumSizeHint(self):
        # never the reason a window cannot shrink to a small screen: fit_width drops labels
        hint = super().minimumSizeHint()
        hint.setWidth(min(hint.width(), 480))
        return hint

    def fit_width(self, width: int) -> None:
        """A narrow window (a small laptop screen) keeps what matters: under the pointer,
        zoom and brush; the tool (shown in the tool bar) and the photo size go."""
        self._width = width
        messaging = bool(self.currentMessage())
        narrow = width < 1100 or messaging
        self.tool_label.setVisible(not narrow)
        self.size_label.setVisible(not narrow)
        self.pixel_label.setVisible(not (messaging and width < 1100))
        self.masks_button.setToolButtonStyle(
            Qt.ToolButtonStyle.ToolButtonIconOnly
            if width < 900 or messaging
            else Qt.ToolButtonStyle.ToolButtonTextBesideIcon
        )

    def _on_message_changed(self, text: str) -> None:
        if text and (not self.recent_messages or self.recent_messages[-1] != text):
            self.recent_messages = [*self.recent_messages[-4:], text]
        self.setToolTip(
            "Recent messages:\n" + "\n".join(f"• {m}" for m in reversed(self.recent_messages))
            if self.recent_messages
            else ""
        )
        self.fit_width(self._width or self.width())

    def show_busy(self, text: str | None, fraction: float | None = None, job: str = "") -> None:
        """A bar for background work on the photo (a big mask being saved, its overview
        built, a prediction): ``fraction`` 0..1, None for 'busy' (a bar that moves);
        ``text`` None ends that ``job``. The latest job still running is shown."""
        self._busy_jobs.pop(job, None)
        if text is not None:
            self._busy_jobs[job] = (text, fraction)
        bar, label = self.busy_bar, self.busy_label
        if not self._busy_jobs:
            bar.setVisible(False)
            label.setVisible(False)
            return
        text, fraction = next(reversed(self._busy_jobs.values()))
        if fraction is None:
            bar.setRange(0, 0)  # a bar that moves
            bar.setTextVisible(False)
        else:
            bar.setRange(0, 1000)
            bar.setValue(int(round(1000 * min(1.0, max(0.0, fraction)))))
            bar.setFormat("%p%")
            bar.setTextVisible(True)
        label.setText(text)
        bar.setToolTip(text)
        label.setVisible(True)
        bar.setVisible(True)

    def busy_text(self) -> str:
        """What the busy bar says ("" when hidden)."""
        return self.busy_label.text() if self.busy_bar.isVisible() else ""

    def _label(self, name: str, widest: str) -> QLabel:
        label = QLabel()
        label.setObjectName(name)
        label.setMinimumWidth(QFontMetrics(label.font()).horizontalAdvance(widest) + 12)
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        return label

    def show_pixel(self, info: PixelInfo | None) -> None:
        if info is None:
            self.pixel_label.setText("x –  y –")
            return
        parts = [f"x {info.x}  y {info.y}"]
        if info.stone is not None:
            parts.append("stone" if info.stone else "background")
        if info.rgb is not None:
            parts.append("RGB {} {} {}".format(*info.rgb))
        self.pixel_label.setText("  ·  ".join(parts))

    def show_zoom(self, zoom: float | None) -> None:
        if zoom is None:
            self.zoom_label.setText("Zoom –")
            return
        percent = zoom * 100
        text = f"{percent:.0f} %" if percent >= 10 else f"{percent:.1f} %"
        self.zoom_label.setText(f"Zoom {text}")

    def show_tool(self, tool: ToolKind) -> None:
        self.tool_label.setText(tool.title)

    def show_brush_size(self, size: int) -> None:
        self.brush_label.setText(f"Brush {size} px")

    def show_image_size(self, size: tuple[int, int] | None) -> None:
        self.size_label.setText("no photo" if size is None else f"{size[0]} × {size[1]} px")

    def show_masks_folder(self, folder: Path | None, read_only_source: bool = False) -> None:
        if folder is None:
            self.masks_button.setText("Masks: –")
            self.masks_button.setToolTip("No folder open")
            self.masks_button.setEnabled(False)
            return
        self.masks_button.setEnabled(True)
        metrics = QFontMetrics(self.masks_button.font())
        self.masks_button.setText(
            metrics.elidedText(f"Masks: {folder}", Qt.TextElideMode.ElideMiddle, 320)
        )
        note = (
            "\nThe photo folder is read-only, so masks are saved here instead."
            if read_only_source
            else ""
        )
        self.masks_button.setToolTip(
            f"Masks are saved in {folder}{note}\nClick to open this folder."
        )
