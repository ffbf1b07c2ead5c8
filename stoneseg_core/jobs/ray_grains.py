"""``stoneseg grains --engine ray``: a folder's stones measured on a pool of Ray actors, each
running the local engine's ``grains_photo`` on its rows; the driver pools the stones they send
back (``jobs.ray_engine`` starts Ray and runs them)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stoneseg_core.errors import OutOfMemoryError, StonesegError
from stoneseg_core.jobs.ray_engine import (
    RaySettings,
    actor_config,
    describe_failure,
    import_ray,
    run_rows,
)
from stoneseg_core.model.config import InferenceConfig

if TYPE_CHECKING:  # predict imports torch: the driver needs it only once a run starts
    from stoneseg_core.jobs.grains_folder import GrainEvent, GrainPlan, GrainSummary


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
                status, (message, oom) = "failed", describe_failure(exc)
            rows["image"].append(str(path))
            rows["status"].append(status)
            rows["message"].append(message)
            rows["seconds"].append(time.perf_counter() - start)
            rows["oom"].append(oom)
            rows["result"].append(result)  # the photo's stones (an ImageGrains), not pixels
        return rows


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
    worker_config = actor_config(config, settings.gpus_per_worker)
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
        stream = run_rows(settings, items, GrainWorker, args)
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
