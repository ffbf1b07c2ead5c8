"""Folder jobs on Ray Data (``stoneseg segment --engine ray``, ``stoneseg grains --engine ray``):
the only module that imports ray (the ``ray`` extra; an import-linter contract keeps it so).

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
import math
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stoneseg_core.errors import OutOfMemoryError, StonesegError
from stoneseg_core.model.config import InferenceConfig

if TYPE_CHECKING:  # predict imports torch: the driver needs it only once a run starts
    from stoneseg_core.jobs.grains_folder import GrainEvent, GrainPlan, GrainSummary
    from stoneseg_core.jobs.segment_folder import SegmentEvent, SegmentSummary

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


def _worker_config(config: InferenceConfig, gpus_per_worker: float) -> InferenceConfig:
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


def _failure(exc: Exception) -> tuple[str, bool]:
    """(the message naming what went wrong, whether it was running out of memory)."""
    if isinstance(exc, StonesegError):
        return str(exc), isinstance(exc, OutOfMemoryError)
    return f"{type(exc).__name__}: {exc}", False  # named in the report; the others go on


class SegmentWorker:
    """A Ray Data actor: the model loaded once, then one ``segment`` photo per row."""

    def __init__(self, model_dir: str, config: InferenceConfig):
        from stoneseg_core.inference.segmenter import (
            Segmenter,  # torch: in the actor, not at import
        )

        self.segmenter = Segmenter.load(model_dir, config)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        from stoneseg_core.io.geo import georeference_or_none
        from stoneseg_core.jobs.segment_folder import segment_photo

        rows: dict[str, list] = {k: [] for k in ("image", "status", "message", "seconds", "oom")}
        for image, output, geotiff in zip(batch["image"], batch["output"], batch["geotiff"]):
            path, out = Path(str(image)), Path(str(output))
            start = time.perf_counter()
            status, message, oom = "written", "", False
            try:
                georef = georeference_or_none(path) if geotiff else None
                segment_photo(self.segmenter, path, out, georef)
            except Exception as exc:
                status, (message, oom) = "failed", _failure(exc)
            rows["image"].append(str(path))
            rows["status"].append(status)
            rows["message"].append(message)
            rows["seconds"].append(time.perf_counter() - start)
            rows["oom"].append(oom)
        return rows


class GrainWorker:
    """A Ray Data actor: the model loaded once, then one ``grains`` photo per row (its
    instance labels, stones CSV and GeoJSON written by the actor; its stones returned)."""

    def __init__(self, model_dir: str, config: InferenceConfig, output_dir: str, options):
        from stoneseg_core.inference.segmenter import (
            Segmenter,  # torch: in the actor, not at import
        )

        self.segmenter = Segmenter.load(model_dir, config)
        self.output_dir, self.options = Path(output_dir), options

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        from stoneseg_core.io.geo import georeference_or_none
        from stoneseg_core.jobs.grains_folder import grains_photo

        keys = ("image", "status", "message", "seconds", "oom", "result")
        rows: dict[str, list] = {k: [] for k in keys}
        for image, scale, source, tiff in zip(
            batch["image"], batch["scale"], batch["source"], batch["tiff"]
        ):
            path = Path(str(image))
            mm = None if math.isnan(float(scale)) else float(scale)
            start = time.perf_counter()
            status, message, oom, result = "measured", "", False, None
            try:
                georef = georeference_or_none(path) if tiff else None
                result = grains_photo(
                    self.segmenter, path, self.output_dir, self.options, mm, source or None, georef
                )
            except Exception as exc:
                status, (message, oom) = "failed", _failure(exc)
            rows["image"].append(str(path))
            rows["status"].append(status)
            rows["message"].append(message)
            rows["seconds"].append(time.perf_counter() - start)
            rows["oom"].append(oom)
            rows["result"].append(result)  # the photo's stones (an ImageGrains), not pixels
        return rows


def _run_rows(
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
    """``jobs.segment_folder.iter_segment_images`` on Ray: the same outputs, events and summary.

    Events come in the order the photos finish. ``should_stop`` is asked after each photo;
    stopping (or closing the generator) ends the run with ``cancelled=True`` -- the photos
    already on a worker still finish and are written whole. A photo that runs out of memory
    ends the run after it is reported, as in the local engine.
    """
    from stoneseg_core.jobs.segment_folder import (
        SegmentEvent,
        SegmentSummary,
        iter_plan_events,
        plan_segment_outputs,
    )
    from stoneseg_core.model.info import read_model_info

    settings = settings or RaySettings()
    import_ray()
    read_model_info(model_dir)  # a foreign or damaged model named before any worker starts
    worker_config = _worker_config(config, settings.gpus_per_worker)
    paths = [Path(p) for p in images]  # events name them as given; rows carry absolute paths
    plan = plan_segment_outputs(paths, Path(output_dir), overwrite, geotiff_masks)
    total, failed, written = len(paths), [], 0
    yield from iter_plan_events(plan, total, failed)
    index = len(plan.skipped) + len(plan.itself)
    cancelled = False
    if not plan.todo:
        return SegmentSummary(written=0, skipped=len(plan.skipped), failed=failed)
    by_name = {str(p.absolute()): p for p in plan.todo}
    items = [
        {
            "image": str(p.absolute()),
            "output": str(plan.outputs[p].absolute()),
            "geotiff": plan.georefs.get(p) is not None,
        }
        for p in plan.todo
    ]
    stream = _run_rows(
        settings, items, SegmentWorker, (str(Path(model_dir).absolute()), worker_config)
    )
    try:
        for row in stream:
            index += 1
            p, message = by_name[row["image"]], row["message"]
            if row["status"] == "written":
                written += 1
                event = SegmentEvent(
                    index, total, p, "written", plan.outputs[p], "", row["seconds"]
                )
            else:
                failed.append((p, message))
                event = SegmentEvent(index, total, p, "failed", None, message, row["seconds"])
            yield event
            if row["oom"]:
                raise OutOfMemoryError(message)
            if should_stop is not None and should_stop():
                cancelled = index < total
                break
    finally:
        stream.close()
    return SegmentSummary(
        written=written, skipped=len(plan.skipped), failed=failed, cancelled=cancelled
    )


def iter_grains_ray(
    model_dir: str | Path,
    input_dir: str | Path,
    output_dir: str | Path,
    options=None,
    mm_per_px: float | None = None,
    scales: dict[str, float] | None = None,
    should_stop: Callable[[], bool] | None = None,
    shard: tuple[int, int] | None = None,
    settings: RaySettings | None = None,
    config: InferenceConfig | None = None,
) -> Generator[GrainEvent, None, GrainSummary]:
    """``grains.iter_grains_folder`` on Ray: each photo's tables written by an actor, the
    pooled table and percentiles by the driver at the end, from the stones the actors send
    back (in the folder's order, so the files are those of the local engine).

    Events come in the order the photos finish; ``should_stop`` is asked after each one
    (stopping pools the photos measured so far, as the local engine does). ``config``: the
    actors' inference settings (default: the model's own, as ``Segmenter.load`` gives).
    """
    from stoneseg_core.jobs.grains_folder import plan_grains_folder
    from stoneseg_core.model.info import read_model_info

    settings = settings or RaySettings()
    import_ray()
    read_model_info(model_dir)  # a foreign or damaged model named before any worker starts
    config = config or InferenceConfig()  # the model's own threshold, as Segmenter.load
    worker_config = _worker_config(config, settings.gpus_per_worker)
    output_dir = Path(output_dir)
    plan = plan_grains_folder(input_dir, output_dir, options, mm_per_px, scales, shard)
    total = len(plan.paths)
    failed: dict[Path, str] = {}
    results: dict[Path, Any] = {}
    items, index = yield from _iter_grain_items(plan, total, failed)
    cancelled = False
    if items:
        by_name = {str(p.absolute()): p for p in plan.todo}
        model = str(Path(model_dir).absolute())
        args = (model, worker_config, str(output_dir.absolute()), plan.options)
        stream = _run_rows(settings, items, GrainWorker, args)
        cancelled = yield from _iter_grain_events(
            stream, by_name, index, total, failed, results, should_stop
        )
    return _pool_grains(output_dir, plan, results, failed, shard, cancelled)


def _iter_grain_items(
    plan: GrainPlan, total: int, failed: dict[Path, str]
) -> Generator[GrainEvent, None, tuple[list[dict], int]]:
    """The actors' rows, one per photo to measure (its path, its scale and where that came
    from, whether it is a TIFF), after an event for each photo refused (into ``failed``): its
    outputs would overwrite another's (``plan.clash``), or it has no scale. Returns (the rows,
    the events yielded)."""
    from stoneseg_core.jobs.grains_folder import GrainEvent

    index = 0
    for p, message in plan.clash:
        index += 1
        failed[p] = message
        yield GrainEvent(index, total, p, "failed", message=message)
    items = []
    for p in plan.todo:
        try:
            scale, source = plan.scale_of(p)
        except StonesegError as exc:
            index += 1
            failed[p] = str(exc)
            yield GrainEvent(index, total, p, "failed", message=str(exc))
            continue
        items.append(
            {
                "image": str(p.absolute()),
                "scale": math.nan if scale is None else float(scale),
                "source": source or "",
                "tiff": p in plan.georefs,
            }
        )
    return items, index


def _iter_grain_events(
    stream: Iterator[dict[str, Any]],
    by_name: dict[str, Path],
    index: int,
    total: int,
    failed: dict[Path, str],
    results: dict[Path, Any],
    should_stop: Callable[[], bool] | None,
) -> Generator[GrainEvent, None, bool]:
    """Each row the actors send back as its photo's event, in the order they finish: its
    stones into ``results``, or its failure into ``failed``. A photo that ran out of memory
    ends the run after its event. True when ``should_stop`` stopped it before the last photo."""
    from stoneseg_core.jobs.grains_folder import GrainEvent

    try:
        for row in stream:
            index += 1
            p, message, seconds = by_name[row["image"]], row["message"], row["seconds"]
            if row["status"] == "measured":
                results[p] = result = row["result"]
                event = GrainEvent(index, total, p, "measured", len(result.stones), "", seconds)
            else:
                failed[p] = message
                event = GrainEvent(index, total, p, "failed", message=message, seconds=seconds)
            yield event
            if row["oom"]:
                raise OutOfMemoryError(message)
            if should_stop is not None and should_stop():
                return index < total
    finally:
        stream.close()
    return False


def _pool_grains(
    output_dir: Path,
    plan: GrainPlan,
    results: dict[Path, Any],
    failed: dict[Path, str],
    shard: tuple[int, int] | None,
    cancelled: bool,
) -> GrainSummary:
    """The run's pooled table and percentiles, written by the driver, and its summary."""
    from stoneseg_core.jobs.grains_folder import GrainSummary, write_pooled

    # the local engine's order: the refused photos, then the others in the folder's order
    in_order = [p for p, _ in plan.clash] + plan.todo
    done = [results[p] for p in plan.todo if p in results]
    failures = [(p, failed[p]) for p in in_order if p in failed]
    report = write_pooled(output_dir, done, failures, plan.options, shard)
    return GrainSummary(tuple(done), tuple(failures), report, cancelled)
