"""The ``stoneseg`` command line. Scripts rely on these commands, options and exit codes.

Exit codes: 0 all went well; 1 some inputs failed (each is named on stderr); 2 a usage
or fatal error (one line, no traceback, for a user's mistake).

One module per sub-command (``train``, ``segment``, ``evaluate``, ``gui``, ``grains``), each
with ``add_parser`` and ``run``, and ``labels`` for the pair ``import`` and ``export``
(``add_parsers``); what they share is in ``common``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from stoneseg_core import __version__
from stoneseg_core.cli import evaluate, grains, gui, labels, segment, train
from stoneseg_core.cli.common import EXIT_FATAL, EXIT_OK, EXIT_SOME_FAILED, run_photo_loop
from stoneseg_core.errors import StonesegError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stoneseg",
        description="Find the stones in photographs: train a U-Net on your masks, segment folders, measure grains.",
    )
    parser.add_argument("--version", action="version", version=f"stoneseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in (train, segment, evaluate, gui, grains):
        command.add_parser(sub)
    labels.add_parsers(sub)  # import and export
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.handler(args)
    except StonesegError as exc:
        print(f"stoneseg: error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except KeyboardInterrupt:
        print("stoneseg: interrupted", file=sys.stderr)
        return 130


__all__ = [
    "EXIT_FATAL",
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "build_parser",
    "main",
    "run_photo_loop",
]
