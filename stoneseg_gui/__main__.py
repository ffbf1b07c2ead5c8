"""``python -m stoneseg_gui [FOLDER]``"""

from __future__ import annotations

import argparse
import sys

from .app import main


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m stoneseg_gui", description="StoneSeg desktop app"
    )
    parser.add_argument("folder", nargs="?", help="folder of photos (default: the sample project)")
    args, _qt_args = parser.parse_known_args(argv)
    return args


if __name__ == "__main__":
    arguments = _parse(sys.argv[1:])
    sys.exit(main(arguments.folder, sys.argv[:1]))
