"""``stoneseg segment --engine ray``: a folder segmented on a pool of Ray actors, each running
the local engine's ``segment_photo`` on its rows (``jobs.ray_engine`` starts Ray and runs them)."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stoneseg_core.errors import OutOfMemoryError
from stoneseg_core.jobs.ray_engine import (
    RaySettings,
    actor_config,
    describe_failure,
    import_ray,
    run_rows,
)
from stoneseg_core.model.config import InferenceConfig

if TYPE_CHECKING:  # predict imports torch: the driver needs it only once a run starts
    from stoneseg_core.jobs.segment_folder import SegmentEvent, SegmentSummary


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
                status, (message, oom) = "failed", describe_failure(exc)
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
    worker_config = actor_config(config, settings.gpus_per_worker)
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
    stream = run_rows(
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
