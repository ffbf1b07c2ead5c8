"""Folder jobs on Ray Data (``stoneseg segment --engine ray``, ``stoneseg grains --engine ray``):
the only module that imports ray (the ``ray`` extra; an import-linter contract keeps it so). It
starts Ray and runs a job's rows on a pool of actors; the jobs are ``jobs.ray_segment``
(``iter_segment_ray``) and ``jobs.ray_grains`` (``iter_grains_ray``).

The driver plans the run exactly as the local engine does (``jobs.segment_folder.plan_segment_outputs``:
the mask names, the outputs kept, the refused photos), then hands Ray Data one row per photo
to segment -- its path and its output's path, never pixels. A pool of actors each loads the
model once (``Segmenter.load``) and runs ``jobs.segment_folder.segment_photo`` on its rows: the photo read
and the mask written atomically by the actor itself, with the local engine's own code, so the
masks are the same. Each row comes back as the photo's status; the driver turns them into the
local engine's ``SegmentEvent``s and ``SegmentSummary``. An existing output is kept, so a run
killed midway resumes where it stopped. ``grains`` runs the same way on
``jobs.grains_folder.grains_photo``; the driver pools the stones the actors send back.

Every Ray start has a timeout: Ray with no network (or an address nobody answers) can retry
for minutes, and a user is better served by a message naming the address and the fixes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from stoneseg_core.errors import OutOfMemoryError, StonesegError
from stoneseg_core.model.config import InferenceConfig

log = logging.getLogger(__name__)

RAY_MISSING = (
    "The Ray engine needs Ray, which is not installed: pip install 'stoneseg[ray]' "
    "(or pip install 'ray[data]>=2.60'), or run with --engine local."
)
# a local Ray needs little shared memory: its rows are two paths and a status
OBJECT_STORE_BYTES = 100 * 2**20
# at most this many Ray Data blocks: one photo each for a small folder, balanced for a large one
MAX_BLOCKS = 2000


@dataclass(frozen=True)
class RaySettings:
    """Where and how wide to run. ``address`` None starts a Ray of the run's own on this
    machine (with ``workers`` CPUs, no dashboard, a small object store), even where another
    is running; "auto" or "HOST:PORT" joins a running cluster (``ray start --head``), whose
    machines must see the photos and the output folder at the same paths as this one."""

    address: str | None = None
    workers: int | None = None  # actors; default one per CPU (per GPU share with gpus_per_worker)
    gpus_per_worker: float = 0.0  # e.g. 0.25: four actors share one GPU
    start_timeout: float = 60.0  # seconds ray.init may take


def import_ray():
    """The ray module, or a StonesegError saying how to install it."""
    try:
        import ray
        import ray.data  # Ray Data: the "data" extra of ray
    except ImportError as exc:
        raise StonesegError(RAY_MISSING) from exc
    return ray


def _describe(address: str | None) -> str:
    return "a local Ray on this machine" if address is None else f"the Ray cluster at {address}"


@contextmanager
def ray_session(settings: RaySettings) -> Iterator[Any]:
    """Ray started (or joined) for the length of the block, and shut down after it.

    A Ray the caller started already is used and left running. ``ray.init`` runs on a thread
    so that a start that hangs ends in a StonesegError after ``settings.start_timeout``.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {
        "logging_level": logging.ERROR,  # not Ray's notes on threads, tokens, progress bars
        "log_to_driver": False,  # each photo's failure comes back in its row, named
        "include_dashboard": False,
    }
    if settings.address is None:
        # "local": a new Ray of this command's own, never one a `ray start` left running
        # (nor a dead one whose address is still in /tmp/ray/ray_current_cluster)
        kwargs["address"] = "local"
        kwargs["num_cpus"] = settings.workers or os.cpu_count() or 1
        kwargs["object_store_memory"] = OBJECT_STORE_BYTES
    else:
        kwargs["address"] = settings.address
    outcome: dict[str, BaseException | None] = {}
    started, release = threading.Event(), threading.Event()

    def start() -> None:
        # this thread lives until Ray is shut down: the processes of a local Ray die with
        # the thread that started them (Linux's parent-death signal is per thread)
        try:
            ray.init(**kwargs)
            outcome["error"] = None
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc
        started.set()
        release.wait()
        if ray.is_initialized():  # the caller gave up waiting, or left before shutting down
            ray.shutdown()

    where = _describe(settings.address)
    log.info("starting %s", where)
    t = time.perf_counter()
    thread = threading.Thread(target=start, name="stoneseg-ray-init", daemon=True)
    thread.start()
    if not started.wait(settings.start_timeout):
        release.set()  # should it start after all, it shuts down at once
        raise StonesegError(
            f"Ray did not start within {settings.start_timeout:g} s ({where}). "
            + (
                "Is the cluster running (ray status), reachable from here, and given its "
                "token (RAY_AUTH_MODE=token)? "
                if settings.address is not None
                else "Without a network Ray can retry for minutes; "
            )
            + "Give it longer with --ray-timeout, or run with --engine local."
        )
    if outcome["error"] is not None:
        release.set()
        exc = outcome["error"]
        hint = ""
        if settings.address is not None and "RAY_AUTH_MODE" not in os.environ:
            hint = (
                " A cluster started by `ray start` uses token authentication by default: run "
                "this command with RAY_AUTH_MODE=token (the token of ~/.ray/auth_token, or "
                "RAY_AUTH_TOKEN)."
            )
        message = str(exc).strip().rstrip(".")
        raise StonesegError(f"Ray did not start ({where}): {message}.{hint}") from exc
    log.info("Ray started in %.1f s", time.perf_counter() - t)
    try:
        yield ray
    finally:
        ray.shutdown()
        release.set()
        thread.join(30)


def _worker_count(ray, settings: RaySettings, photos: int) -> int:
    if settings.workers:
        n = settings.workers
    else:
        resources = ray.cluster_resources()
        if settings.gpus_per_worker > 0:
            n = int(resources.get("GPU", 0) / settings.gpus_per_worker + 1e-9)
            if n < 1:
                raise StonesegError(
                    f"--gpus-per-worker {settings.gpus_per_worker:g}: the Ray cluster has "
                    f"{resources.get('GPU', 0):g} GPUs."
                )
        else:
            n = int(resources.get("CPU", 1))
    return max(1, min(n, photos))


def actor_config(config: InferenceConfig, gpus_per_worker: float) -> InferenceConfig:
    """The actors' configuration: on the CPU unless they are given a share of a GPU (an
    actor that Ray gave no GPU must not take one that others were given)."""
    if gpus_per_worker > 0:
        return config
    if config.device == "cuda":
        raise StonesegError(
            "--device cuda with the Ray engine needs --gpus-per-worker (e.g. 1, or 0.25 for "
            "four workers on each GPU)."
        )
    return config.replace(device="cpu")


def describe_failure(exc: Exception) -> tuple[str, bool]:
    """(the message naming what went wrong, whether it was running out of memory)."""
    if isinstance(exc, StonesegError):
        return str(exc), isinstance(exc, OutOfMemoryError)
    return f"{type(exc).__name__}: {exc}", False  # named in the report; the others go on


def run_rows(
    settings: RaySettings, items: list[dict], worker: type, args: tuple
) -> Iterator[dict[str, Any]]:
    """Ray started for the run; ``items`` through a pool of ``worker(*args)`` actors, one row
    per batch; each result row as it comes (in the order they finish)."""
    with ray_session(settings) as ray:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the CLI has its own
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        workers = _worker_count(ray, settings, len(items))
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_BLOCKS))
        ds = ds.map_batches(
            worker,
            fn_constructor_args=args,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1,
            num_gpus=settings.gpus_per_worker or None,
        )
        rows = iter(ds.iter_rows())
        try:
            while True:
                try:
                    row = next(rows)
                except StopIteration:
                    return
                except StonesegError:
                    raise
                except Exception as exc:  # a worker that died, a model it cannot load, ...
                    raise StonesegError(f"The Ray run failed: {exc}") from exc
                yield row
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()
