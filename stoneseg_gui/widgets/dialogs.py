"""Every dialog that waits for the user goes through ``Dialogs``.

Widgets and the session receive a ``Dialogs`` object in ``__init__`` and never open a
blocking message box themselves, so tests pass a scripted replacement (see
``tests/gui/conftest.py``) and nothing ever waits for a click that will not come.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHeaderView,
    QInputDialog,
    QLabel,
    QMessageBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

log = logging.getLogger(__name__)


class Dialogs:
    """Blocking questions and messages, in one replaceable place."""

    def __init__(self, parent: QWidget | None = None) -> None:
        self.parent = parent

    def error(self, title: str, text: str) -> None:
        log.warning("%s: %s", title, text)
        QMessageBox.warning(self.parent, title, text)

    def info(self, title: str, text: str) -> None:
        log.info("%s: %s", title, text)
        QMessageBox.information(self.parent, title, text)

    def report(self, title: str, summary: str, details: str) -> None:
        """A summary with its details (one line each) behind "Show Details..."."""
        log.info("%s: %s", title, summary)
        box = QMessageBox(self.parent)
        box.setIcon(QMessageBox.Icon.Information)
        box.setWindowTitle(title)
        box.setText(summary)
        if details:
            box.setDetailedText(details)
        box.exec()

    def ask(self, title: str, text: str, choices: Sequence[str], default: str) -> str:
        """Ask a question with labelled buttons; returns the chosen label.

        Closing the box with Escape returns the last choice, which callers make the
        harmless one.
        """
        box = QMessageBox(self.parent)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle(title)
        box.setText(text)
        buttons = {}
        for label in choices:
            role = (
                QMessageBox.ButtonRole.AcceptRole
                if label == default
                else QMessageBox.ButtonRole.RejectRole
            )
            buttons[box.addButton(label, role)] = label
        default_button = next(b for b, label in buttons.items() if label == default)
        box.setDefaultButton(default_button)
        box.setEscapeButton(next(b for b, label in buttons.items() if label == choices[-1]))
        box.exec()
        return buttons.get(box.clickedButton(), choices[-1])

    def choose_folder(self, title: str, start: Path | None = None) -> Path | None:
        folder = QFileDialog.getExistingDirectory(self.parent, title, str(start or Path.home()))
        return Path(folder) if folder else None

    def show_folder(self, folder: Path) -> None:
        """Open ``folder`` in the system's file manager."""
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            self.info("Masks folder", f"The masks are saved in:\n{folder}")

    def choose_open_file(
        self, title: str, start: Path | None = None, filters: str = "All files (*)"
    ) -> Path | None:
        """An existing file to read; None when the user cancels."""
        name, _ = QFileDialog.getOpenFileName(
            self.parent, title, str(start or Path.home()), filters
        )
        return Path(name) if name else None

    def choose_save_file(
        self, title: str, suggested: Path, filters: str = "All files (*)"
    ) -> Path | None:
        """Where to write a file (the system dialog asks before overwriting); None when cancelled."""
        name, _ = QFileDialog.getSaveFileName(self.parent, title, str(suggested), filters)
        return Path(name) if name else None

    def ask_number(
        self,
        title: str,
        text: str,
        value: float,
        minimum: float,
        maximum: float,
        decimals: int = 3,
    ) -> float | None:
        """A number typed by the user; None when cancelled."""
        number, ok = QInputDialog.getDouble(
            self.parent, title, text, value, minimum, maximum, decimals
        )
        return float(number) if ok else None


def shortcut_text(action: QAction) -> str:
    keys = [k.toString(QKeySequence.SequenceFormat.NativeText) for k in action.shortcuts()]
    return ",  ".join(k for k in keys if k)


class ShortcutsDialog(QDialog):
    """Help > Keyboard shortcuts: every action with its keys, plus the mouse gestures."""

    def __init__(
        self,
        actions: Sequence[QAction],
        extra: Sequence[tuple[str, str, str]] = (),
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.resize(820, 640)
        rows: list[tuple[str, str, str]] = []
        for action in actions:
            keys = shortcut_text(action)
            tip = action.statusTip() or action.toolTip().split("\n")[-1]
            rows.append((action.text().replace("&", ""), keys, tip))
        rows.extend(extra)
        self.table = QTableWidget(len(rows), 3, self)
        self.table.setHorizontalHeaderLabels(["Action", "Keys", "What it does"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(True)  # "What it does" wraps instead of being cut off
        for r, (name, keys, tip) in enumerate(rows):
            for c, text in enumerate((name, keys, tip)):
                item = QTableWidgetItem(text)
                item.setToolTip(tip)
                if c == 1:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(r, c, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        note = QLabel("Keys work anywhere in the window, except while typing in a number box.")
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.close)
        buttons.accepted.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(note)
        layout.addWidget(buttons)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)

    def rows(self) -> list[tuple[str, str]]:
        """(action, keys) for every row, for tests and for a printed cheat sheet."""
        return [
            (self.table.item(r, 0).text(), self.table.item(r, 1).text())
            for r in range(self.table.rowCount())
        ]
