"""Start-up: the bundled sample project, its writable copy, and ``main()``."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
from guihelpers import make_project, read_png
from PySide6.QtCore import QStandardPaths, QTimer
from PySide6.QtWidgets import QApplication

from stoneseg_gui import app as app_module
from stoneseg_gui.app import bundled_sample_dir, ensure_sample_project, main, resources_dir
from stoneseg_gui.main_window import MainWindow
from stoneseg_gui.settings import app_data_dir


def test_the_sample_project_ships_photos_masks_and_attribution() -> None:
    sample = bundled_sample_dir()
    assert sample.parent == resources_dir()
    images = sorted(p.stem for p in (sample / "images").glob("*.png"))
    masks = sorted(p.stem for p in (sample / "masks").glob("*.png"))
    # three photos left unlabelled, to predict, accept and correct on the first start
    unlabelled = ["images0107", "images0114", "images0115"]
    assert len(images) == 12 and masks == [s for s in images if s not in unlabelled]
    assert set(unlabelled) <= set(images)
    source = (sample / "SOURCE.md").read_text()
    assert "CC BY 4.0" in source and "Roboflow" in source
    first = images[0]
    mask = read_png(sample / "masks" / f"{first}.png")
    assert set(np.unique(mask)) <= {0, 255}
    assert mask.shape == read_png(sample / "images" / f"{first}.png").shape[:2]


def test_the_sample_is_copied_once_to_a_writable_user_folder(tmp_path, monkeypatch) -> None:
    # an installed, read-only copy of the resources
    installed = tmp_path / "site-packages" / "sample"
    make_project(installed, names=("s1.png", "s2.png"), masks={"s1": np.zeros((60, 80), np.uint8)})
    (installed / "SOURCE.md").write_text("attribution")
    for path in installed.rglob("*"):
        path.chmod(stat.S_IREAD | (stat.S_IEXEC if path.is_dir() else 0))
    monkeypatch.setattr(app_module, "bundled_sample_dir", lambda: installed)
    copy = ensure_sample_project()
    assert copy == app_data_dir() / "sample-project"
    assert str(tmp_path / "user-data") in str(copy)
    assert sorted(p.name for p in (copy / "images").iterdir()) == ["s1.png", "s2.png"]
    assert (copy / "SOURCE.md").read_text() == "attribution"
    for path in copy.rglob("*"):
        assert path.stat().st_mode & stat.S_IWUSR, f"{path} is not writable"
    # the user's edits survive the next start
    edited = np.full((60, 80), 255, np.uint8)
    from stoneseg_core.io.images import write_mask

    write_mask(copy / "masks" / "s1.png", edited)
    assert ensure_sample_project() == copy
    assert read_png(copy / "masks" / "s1.png").min() == 255
    assert not [p for p in copy.parent.iterdir() if p.name.startswith(".sample-project-")]
    for path in installed.rglob("*"):
        path.chmod(stat.S_IRWXU)


def run_main_until_loaded(folder: str | None) -> tuple[int, list[Path]]:
    """Run ``main()`` and close its window once a photo is shown; returns (exit code, photos)."""
    app = QApplication.instance()
    style, palette, sheet = app.style().name(), app.palette(), app.styleSheet()
    seen: list[Path] = []

    def poll() -> None:
        windows = [
            w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()
        ]
        if windows and windows[0].current_document() is not None:
            seen.append(windows[0].current_image_path())
            windows[0].close()
        else:
            QTimer.singleShot(50, poll)

    QTimer.singleShot(50, poll)
    try:
        code = main(folder)
    finally:
        app.setStyle(style)
        app.setPalette(palette)
        app.setStyleSheet(sheet)
    return code, seen


def test_main_opens_the_given_folder_and_returns_when_the_window_closes(qapp, tmp_path) -> None:
    root = make_project(tmp_path / "proj")
    code, seen = run_main_until_loaded(str(root))
    assert code == 0
    assert seen == [root / "images" / "a.png"]
    assert qapp.organizationName() == "StoneSeg" and qapp.applicationName() == "StoneSeg"


def test_main_without_a_folder_opens_a_copy_of_the_sample(qapp) -> None:
    code, seen = run_main_until_loaded(None)
    assert code == 0
    assert seen and seen[0].parent == app_data_dir() / "sample-project" / "images"


def test_main_without_a_folder_reopens_the_last_project(qapp, tmp_path) -> None:
    """The sample opens on a first start only; after that, the folder the user left."""
    root = make_project(tmp_path / "proj")
    code, seen = run_main_until_loaded(str(root))
    assert code == 0 and seen[0].parent == root / "images"
    code, seen = run_main_until_loaded(None)
    assert code == 0 and seen and seen[0].parent == root / "images"


def test_python_dash_m_reads_an_optional_folder() -> None:
    from stoneseg_gui.__main__ import _parse

    assert _parse([]).folder is None
    assert _parse(["/data/photos"]).folder == "/data/photos"


def test_user_data_folder_can_be_redirected(tmp_path, monkeypatch) -> None:
    assert app_data_dir() == tmp_path / "user-data"  # conftest points STONESEG_DATA_DIR here
    monkeypatch.delenv("STONESEG_DATA_DIR")
    location = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    assert app_data_dir() == Path(location)


def test_run_leaves_with_mains_code_and_flushed_output(tmp_path):
    """``stoneseg gui`` runs ``run``: main's exit code, its output written, and no slow
    interpreter teardown (an atexit hook never runs, which is how it skips it)."""
    import subprocess
    import sys

    code = (
        "import atexit, stoneseg_gui.app as app\n"
        "atexit.register(lambda: print('teardown ran'))\n"
        "def fake_main(folder):\n"
        "    print('saved everything in', folder, end='')\n"
        "    return 3\n"
        "app.main = fake_main\n"
        "app.run('somewhere')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3
    assert done.stdout == "saved everything in somewhere"


def test_the_sample_leaves_photos_to_predict_on_the_first_start(qtbot, window) -> None:
    """A new user can train on the sample, then predict, accept and correct a fresh photo."""
    from guihelpers import wait_loaded

    from stoneseg_core.io.project import ImageStatus

    window.open_folder(ensure_sample_project())
    wait_loaded(qtbot, window)
    counts = window.image_list.model.counts()
    assert counts[ImageStatus.LABELLED] == 9 and counts[ImageStatus.UNLABELLED] == 3
    assert window.model_side.panel.next_run.text().endswith("on 9 labelled photos.")
