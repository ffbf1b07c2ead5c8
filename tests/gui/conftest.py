"""GUI tests: offscreen Qt, settings and user folders isolated per test, scripted dialogs."""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before anything imports Qt

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from PySide6.QtCore import QCoreApplication, QSettings  # noqa: E402

from stoneseg_gui.dialogs import Dialogs  # noqa: E402
from stoneseg_gui.workers import stop_all_workers  # noqa: E402

QCoreApplication.setOrganizationName("StoneSeg")
QCoreApplication.setApplicationName("StoneSeg")


@pytest.fixture(autouse=True)
def isolated_user_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """QSettings (INI) and the user's data folder live in this test's tmp_path."""
    monkeypatch.setenv("STONESEG_DATA_DIR", str(tmp_path / "user-data"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(
        QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings")
    )
    yield
    assert stop_all_workers(20_000), "a background worker did not stop"


class FakeDialogs(Dialogs):
    """Records what would have been shown and answers questions from ``answers``."""

    def __init__(self) -> None:
        super().__init__(None)
        self.errors: list[tuple[str, str]] = []
        self.infos: list[tuple[str, str]] = []
        self.questions: list[tuple[str, str, tuple[str, ...]]] = []
        self.answers: dict[str, str] = {}
        self.folders_to_choose: list[Path] = []
        self.shown_folders: list[Path] = []
        self.files_to_open: list[Path] = []
        self.files_to_save: list[Path] = []
        self.numbers: list[float | None] = []  # answers to ask_number, in order
        self.number_questions: list[tuple[str, str]] = []

    def error(self, title: str, text: str) -> None:
        self.errors.append((title, text))

    def info(self, title: str, text: str) -> None:
        self.infos.append((title, text))

    def ask(self, title, text, choices, default):  # noqa: ANN001, ANN201
        self.questions.append((title, text, tuple(choices)))
        return self.answers.get(title, default)

    def choose_folder(self, title, start=None):  # noqa: ANN001, ANN201
        return self.folders_to_choose.pop(0) if self.folders_to_choose else None

    def show_folder(self, folder: Path) -> None:
        self.shown_folders.append(Path(folder))

    def choose_open_file(self, title, start=None, filters=""):  # noqa: ANN001, ANN201
        return self.files_to_open.pop(0) if self.files_to_open else None

    def choose_save_file(self, title, suggested, filters=""):  # noqa: ANN001, ANN201
        return self.files_to_save.pop(0) if self.files_to_save else None

    def ask_number(self, title, text, value, minimum, maximum, decimals=3):  # noqa: ANN001, ANN201
        self.number_questions.append((title, text))
        return self.numbers.pop(0) if self.numbers else None


@pytest.fixture
def dialogs() -> FakeDialogs:
    return FakeDialogs()


@pytest.fixture
def make_window(qtbot, dialogs):  # noqa: ANN001, ANN201
    """Factory for shown MainWindows that use the scripted dialogs (closed at teardown)."""
    from stoneseg_gui.main_window import MainWindow

    def make(dialogs_override: FakeDialogs | None = None) -> MainWindow:
        window = MainWindow(dialogs=dialogs_override or dialogs)
        qtbot.addWidget(window)
        window.resize(1100, 750)
        window.show()
        qtbot.waitExposed(window)
        window.activateWindow()
        return window

    return make


@pytest.fixture
def window(make_window):  # noqa: ANN001, ANN201
    return make_window()
