"""Tool-options widgets: brush size (slider + pixels) and mask opacity, bound to ToolSettings."""

from __future__ import annotations

import math

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QSlider, QSpinBox, QWidget

from .tool_settings import MAX_BRUSH, MIN_BRUSH, ToolSettings

_SLIDER_STEPS = 1000


def size_to_slider(size: int) -> int:
    """Brush sizes on a logarithmic slider: 1-10 px get as much travel as 100-1000 px."""
    return round(math.log(size / MIN_BRUSH) / math.log(MAX_BRUSH / MIN_BRUSH) * _SLIDER_STEPS)


def slider_to_size(value: int) -> int:
    return round(MIN_BRUSH * (MAX_BRUSH / MIN_BRUSH) ** (value / _SLIDER_STEPS))


class BrushSizeControl(QWidget):
    def __init__(self, settings: ToolSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._settings = settings
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, _SLIDER_STEPS)
        self.slider.setFixedWidth(150)
        self.slider.setToolTip("Brush size in photo pixels ( [ smaller, ] bigger )")
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.spin = QSpinBox()
        self.spin.setRange(MIN_BRUSH, MAX_BRUSH)
        self.spin.setSuffix(" px")
        self.spin.setToolTip(self.slider.toolTip())
        self.spin.setKeyboardTracking(False)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 0, 6, 0)
        layout.addWidget(QLabel("Brush"))
        layout.addWidget(self.slider)
        layout.addWidget(self.spin)
        self.spin.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Preferred)
        self.slider.valueChanged.connect(self._on_slider_value_changed)
        self.spin.valueChanged.connect(self._on_spin_value_changed)
        settings.brush_size_changed.connect(self._on_settings_brush_size_changed)
        self._on_settings_brush_size_changed(settings.brush_size)

    def _on_slider_value_changed(self, value: int) -> None:
        self._settings.choose_brush_size(slider_to_size(value))

    def _on_spin_value_changed(self, value: int) -> None:
        self._settings.choose_brush_size(value)

    def _on_settings_brush_size_changed(self, size: int) -> None:
        with QSignalBlocker(self.slider), QSignalBlocker(self.spin):
            self.slider.setValue(size_to_slider(size))
            self.spin.setValue(size)


class OpacityControl(QWidget):
    def __init__(self, settings: ToolSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._settings = settings
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(5, 100)
        self.slider.setFixedWidth(110)
        self.slider.setToolTip("Mask opacity (Ctrl+[ and Ctrl+])")
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.value_label = QLabel()
        self.value_label.setMinimumWidth(40)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 0, 6, 0)
        layout.addWidget(QLabel("Opacity"))
        layout.addWidget(self.slider)
        layout.addWidget(self.value_label)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Preferred)
        self.slider.valueChanged.connect(self._on_slider_value_changed)
        settings.overlay_changed.connect(self._on_settings_overlay_changed)
        self._on_settings_overlay_changed()

    def _on_slider_value_changed(self, value: int) -> None:
        self._settings.set_opacity(value / 100)

    def _on_settings_overlay_changed(self) -> None:
        percent = round(self._settings.opacity * 100)
        with QSignalBlocker(self.slider):
            self.slider.setValue(percent)
        self.value_label.setText(f"{percent} %")
