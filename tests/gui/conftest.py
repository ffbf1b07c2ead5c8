"""GUI tests: offscreen Qt, settings and user folders isolated per test, scripted dialogs."""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before anything imports Qt

from pathlib import Path

import pytest
from guihelpers import FakeDialogs
from PySide6.QtCore import QCoreApplication, QSettings

from stoneseg_gui.workers import stop_all_workers

QCoreApplication.setOrganizationName("StoneSeg")
QCoreApplication.setApplicationName("StoneSeg")


@pytest.fixture(autouse=True)
def isolated_user_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """QSettings (INI) and the user's data folder live in this test's tmp_path."""
    monkeypatch.setenv("STONESEG_DATA_DIR", str(tmp_path / "user-data"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setattr("stoneseg_core.display.coarse.COARSE_CACHE_DIR", tmp_path / "pyramid-cache")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(
        QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings")
    )
    yield
    assert stop_all_workers(20_000), "a background worker did not stop"


@pytest.fixture(autouse=True)
def no_installed_stone_model(monkeypatch: pytest.MonkeyPatch):
    """The window as it is without the stone model installed with StoneSeg: tests that
    train or predict use their own tiny models (test_gui_stone_model.py puts one back)."""
    monkeypatch.setattr("stoneseg_gui.model.controller.installed_stone_model", lambda: None)
    monkeypatch.setattr("stoneseg_gui.model.train_panel.installed_stone_model", lambda: None)


@pytest.fixture
def dialogs() -> FakeDialogs:
    return FakeDialogs()


@pytest.fixture
def make_window(qtbot, dialogs):
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
def window(make_window):
    return make_window()
