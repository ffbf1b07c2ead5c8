"""The house's own rules that no other test sees: what a wheel carries."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+, as the README's quick start asks

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed_for_the_wheel():
    # Editable installs and the tests (run from the source tree) find a package that
    # pyproject.toml forgot; a wheel does not, and the installed app fails to start.
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("stoneseg_core", "stoneseg_gui")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert on_disk - listed == set(), "packages missing from [tool.setuptools] packages"
    assert listed - on_disk == {"stoneseg_gui.resources"}  # mapped onto resources/
