"""--engine local|ray and the Ray options, shared by ``segment`` and ``grains``.

Apart from common.py because the Ray engine brings the model (torch) when a run starts,
and common.py is part of the start-up that never imports torch.
"""

from __future__ import annotations

import argparse

from stoneseg_core.cli.common import non_negative_float, positive_float, positive_int
from stoneseg_core.errors import StonesegError

ENGINE_OPTIONS = "--address, --workers, --gpus-per-worker and --ray-timeout need --engine ray."


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """--engine local|ray and the Ray engine's options (stoneseg_core/jobs/ray_engine.py)."""
    g = parser.add_argument_group("engine", "where the photos are segmented")
    g.add_argument(
        "--engine",
        default="local",
        choices=["local", "ray"],
        help="local: this process (default); ray: a pool of Ray actors (the 'ray' extra)",
    )
    g.add_argument(
        "--address",
        default=None,
        help="ray: the cluster to join ('auto' or HOST:PORT, see ray start --head); "
        "default: a local Ray on this machine",
    )
    g.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="ray: actors, each with the model loaded (default: one per CPU, or per GPU share)",
    )
    g.add_argument(
        "--gpus-per-worker",
        type=non_negative_float,
        default=None,
        metavar="F",
        help="ray: the GPU share of each actor, e.g. 0.25 for four on a GPU (default 0: CPU)",
    )
    g.add_argument(
        "--ray-timeout",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="ray: give up starting or joining Ray after this long (default 60)",
    )


def ray_settings(args: argparse.Namespace):
    """The RaySettings of ``--engine ray`` (None for the local engine, which takes none of
    the Ray options: StonesegError if one is given)."""
    options = (args.address, args.workers, args.gpus_per_worker, args.ray_timeout)
    if args.engine != "ray":
        if any(o is not None for o in options):
            raise StonesegError(ENGINE_OPTIONS)
        return None
    from stoneseg_core.jobs.ray_engine import (
        RaySettings,  # no ray: it is imported when a run starts
    )

    return RaySettings(
        address=args.address,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker or 0.0,
        start_timeout=args.ray_timeout or 60.0,
    )
