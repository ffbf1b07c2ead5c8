"""Folder segmentation on Ray Data (``stoneseg segment --engine ray``): the only module that
imports ray (the ``ray`` extra; an import-linter contract keeps it so).

The driver plans the run exactly as the local engine does (``predict.plan_segment_outputs``:
the mask names, the outputs kept, the refused photos), then hands Ray Data one row per photo
to segment -- its path and its output's path, never pixels. A pool of actors each loads the
model once (``Segmenter.load``) and runs ``predict.segment_photo`` on its rows: the photo read
and the mask written atomically by the actor itself, with the local engine's own code, so the
masks are the same. Each row comes back as the photo's status; the driver turns them into the
local engine's ``SegmentEvent``s and ``SegmentSummary``. An existing output is kept, so a run
killed midway resumes where it stopped.

Every Ray start has a timeout: Ray with no network (or an address nobody answers) can retry
for minutes, and a user is better served by a message naming the address and the fixes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import InferenceConfig
from .errors import OutOfMemoryError, StonesegError

if TYPE_CHECKING:  # predict imports torch: the driver needs it only once a run starts
    from .predict import SegmentEvent, SegmentSummary

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
    """Where and how wide to run. ``address`` None starts a local Ray on this machine (with
    ``workers`` CPUs, no dashboard, a small object store); "auto" or "HOST:PORT" joins a
    running cluster (``ray start --head``), which must see the same paths as this machine."""

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
        "logging_level": logging.WARNING,
        "log_to_driver": False,  # each photo's failure comes back in its row, named
        "include_dashboard": False,
    }
    if settings.address is None:
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
                "Is the cluster running (ray status) and reachable from here? "
                if settings.address is not None
                else "Without a network Ray can retry for minutes; "
            )
            + "Give it longer with --ray-timeout, or run with --engine local."
        )
    if outcome["error"] is not None:
        release.set()
        exc = outcome["error"]
        raise StonesegError(f"Ray did not start ({where}): {exc}") from exc
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


def _worker_config(config: InferenceConfig, gpus_per_worker: float) -> InferenceConfig:
    """The actors' configuration: on the CPU unless they are given a share of a GPU (Ray
    hides the GPUs from an actor that asked for none only on some platforms)."""
    if gpus_per_worker > 0:
        return config
    if config.device == "cuda":
        raise StonesegError(
            "--device cuda with the Ray engine needs --gpus-per-worker (e.g. 1, or 0.25 for "
            "four workers on each GPU)."
        )
    return config.replace(device="cpu")


class SegmentWorker:
    """A Ray Data actor: the model loaded once, then one folder-job photo per row."""

    def __init__(self, model_dir: str, config: InferenceConfig):
        from .predict import Segmenter  # torch: in the actor, not at import

        self.segmenter = Segmenter.load(model_dir, config)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        from .geo import georeference_or_none
        from .predict import segment_photo

        rows: dict[str, list] = {"image": [], "status": [], "message": [], "seconds": []}
        rows["oom"] = []
        for image, output, geotiff in zip(batch["image"], batch["output"], batch["geotiff"]):
            path, out = Path(str(image)), Path(str(output))
            start = time.perf_counter()
            status, message, oom = "written", "", False
            try:
                georef = georeference_or_none(path) if geotiff else None
                segment_photo(self.segmenter, path, out, georef)
            except StonesegError as exc:
                status, message, oom = "failed", str(exc), isinstance(exc, OutOfMemoryError)
            except Exception as exc:  # named in the report, the other photos go on
                status, message = "failed", f"{type(exc).__name__}: {exc}"
            rows["image"].append(str(path))
            rows["status"].append(status)
            rows["message"].append(message)
            rows["seconds"].append(time.perf_counter() - start)
            rows["oom"].append(oom)
        return rows


def iter_segment_ray(
    model_dir: str | Path,
    images: Sequence[str | Path],
    output_dir: str | Path,
    config: InferenceConfig,
    settings: RaySettings | None = None,
    overwrite: bool = False,
    should_stop: Callable[[], bool] | None = None,
    geotiff_masks: bool = True,
) -> Generator[SegmentEvent, None, SegmentSummary]:
    """``predict.iter_segment_images`` on Ray: the same outputs, events and summary.

    Events come in the order the photos finish. ``should_stop`` is asked after each photo;
    stopping (or closing the generator) ends the run with ``cancelled=True`` -- the photos
    already on a worker still finish and are written whole. A photo that runs out of memory
    ends the run after it is reported, as in the local engine.
    """
    from .predict import SegmentEvent, SegmentSummary, iter_plan_events, plan_segment_outputs

    settings = settings or RaySettings()
    ray = import_ray()
    worker_config = _worker_config(config, settings.gpus_per_worker)
    paths = [Path(p).absolute() for p in images]
    plan = plan_segment_outputs(paths, Path(output_dir).absolute(), overwrite, geotiff_masks)
    total, failed, written = len(paths), [], 0
    yield from iter_plan_events(plan, total, failed)
    index = len(plan.skipped) + len(plan.itself)
    cancelled = False
    if not plan.todo:
        return SegmentSummary(written=0, skipped=len(plan.skipped), failed=failed)
    by_name = {str(p): p for p in plan.todo}
    items = [
        {
            "image": str(p),
            "output": str(plan.outputs[p]),
            "geotiff": plan.georefs.get(p) is not None,
        }
        for p in plan.todo
    ]
    with ray_session(settings):
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the CLI has its own
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        workers = _worker_count(ray, settings, len(items))
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_BLOCKS))
        ds = ds.map_batches(
            SegmentWorker,
            fn_constructor_args=(str(Path(model_dir).absolute()), worker_config),
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1,
            num_gpus=settings.gpus_per_worker or None,
        )
        rows = iter(ds.iter_rows())
        try:
            for row in rows:
                index += 1
                p = by_name.get(row["image"], Path(row["image"]))
                seconds = float(row["seconds"])
                if row["status"] == "written":
                    written += 1
                    event = SegmentEvent(index, total, p, "written", plan.outputs[p], "", seconds)
                else:
                    failed.append((p, row["message"]))
                    event = SegmentEvent(index, total, p, "failed", None, row["message"], seconds)
                yield event
                if row["oom"]:
                    raise OutOfMemoryError(row["message"])
                if should_stop is not None and should_stop():
                    cancelled = index < total
                    break
        except StonesegError:
            raise
        except GeneratorExit:
            cancelled = True
            raise
        except Exception as exc:  # a worker that died, a model the actors cannot load, ...
            raise StonesegError(f"The Ray run failed: {exc}") from exc
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()
    return SegmentSummary(
        written=written, skipped=len(plan.skipped), failed=failed, cancelled=cancelled
    )
