"""``stoneseg gui``: open the desktop app, found through its entry point."""

from __future__ import annotations

import argparse

from stoneseg_core.errors import StonesegError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``gui`` on the ``stoneseg`` sub-command parser."""
    g = subparsers.add_parser("gui", help="open the desktop app")
    g.add_argument("folder", nargs="?", default=None, metavar="FOLDER")
    g.set_defaults(handler=run)
    return g


APP_ENTRY_POINTS = "stoneseg.apps"  # the desktop app plugs in here (pyproject.toml): the
# library never imports it, so it runs where Qt is missing or broken


def run(args: argparse.Namespace) -> int:
    # looked up when the command runs: 0.1 s to import, and a test replaces it
    from importlib.metadata import entry_points

    found = entry_points(group=APP_ENTRY_POINTS, name="gui")
    if not found:
        raise StonesegError(
            "The desktop app is not installed with this StoneSeg. "
            "Install StoneSeg with pip (pip install -e . in its folder) to get it."
        )
    try:
        launch = next(iter(found)).load()
    except ImportError as exc:
        raise StonesegError(f"The desktop app cannot start: {exc}") from exc
    return int(launch(args.folder) or 0)
