"""A field the user did not click never changes under the mouse wheel.

Spin boxes, combo boxes and sliders take the wheel by default, and Qt even gives them focus
when the wheel turns over them. In a scrolled panel that turns "scroll down to Stop" into
"the learning rate went from 0.0005 to 0.00001, without a word" (seen at 1366 x 768). Most
desktop programs let such a field take the wheel only once it has focus (a click or Tab);
until then the wheel scrolls the panel around it. ``WheelGuard`` does that for every such
field of the application: installed once on the ``QApplication``.
"""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication, QEvent, QObject, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QAbstractSlider,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QScrollBar,
    QWidget,
)


def is_guarded(obj: QObject) -> bool:
    """A value field the wheel would change (a scroll bar is not one: it is the scrolling)."""
    return isinstance(obj, (QAbstractSpinBox, QComboBox, QAbstractSlider)) and not isinstance(
        obj, QScrollBar
    )


class WheelGuard(QObject):
    """Application-wide event filter: see the module's docstring."""

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind == QEvent.Type.Polish and is_guarded(obj):
            # the wheel no longer gives focus: only a click or Tab does
            if obj.focusPolicy() == Qt.FocusPolicy.WheelFocus:
                obj.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        elif kind == QEvent.Type.Wheel and is_guarded(obj) and not obj.hasFocus():
            scroller = enclosing_scroll_area(obj)
            if scroller is not None:  # the panel around the field scrolls instead
                QCoreApplication.sendEvent(scroller.viewport(), moved_to(event, obj, scroller))
            return True
        return False


def install_wheel_guard(app: QApplication | None = None) -> WheelGuard:
    """Install the guard on ``app`` (the running application) once; returns it."""
    app = app or QApplication.instance()
    guard = app.findChild(WheelGuard)
    if guard is None:
        guard = WheelGuard(app)
        app.installEventFilter(guard)
    return guard


def enclosing_scroll_area(widget: QWidget) -> QAbstractScrollArea | None:
    """The nearest scroll area around ``widget`` (a list or a field's own popup are not)."""
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QAbstractScrollArea):
        parent = parent.parentWidget()
    return parent


def moved_to(event: QWheelEvent, source: QWidget, scroller: QAbstractScrollArea) -> QWheelEvent:
    """``event`` as the scroll area's viewport would have received it. Qt never passes a
    synthesized wheel event on to the parents, so it goes to the viewport directly."""
    viewport = scroller.viewport()
    position = QPointF(viewport.mapFrom(source, event.position().toPoint()))
    return QWheelEvent(
        position,
        event.globalPosition(),
        event.pixelDelta(),
        event.angleDelta(),
        event.buttons(),
        event.modifiers(),
        event.phase(),
        event.inverted(),
    )
