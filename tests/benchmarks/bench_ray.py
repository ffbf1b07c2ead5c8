"""Folder segmentation: the local engine against the Ray engine (a local Ray cluster), on the
dev photos with a quickly trained model, interleaved run by run; the masks compared byte by byte.

    .venv/bin/python tests/benchmarks/bench_ray.py [--reps 3] [--workers 2] [--model DIR]

A "run" is what ``stoneseg segment`` does once the command has started: local = load the model
and segment every photo (``iter_segment_images``); Ray = plan, start an actor pool whose actors
each load the model, segment every photo on them, end the pool (``iter_segment_ray``). Ray
itself is started once (its start is timed apart: a CLI run pays it every time, a cluster's
driver does not). Every run rewrites every mask (overwrite).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    add_common_args,
    bench_model,
    data_dir,
    emit,
    interleaved,
    load_average,
    machine,
    median,
    paired_ratio,
    r3,
    setup,
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p)
    p.add_argument("--model", help="a model folder (default: a 3-epoch model, cached)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[2],
        help="Ray actor counts to time (default 2; the local Ray gets max of them as CPUs)",
    )
    args = p.parse_args()
    setup(args)
    from stoneseg_core.config import InferenceConfig
    from stoneseg_core.imageio import list_images
    from stoneseg_core.model import read_model_info
    from stoneseg_core.predict import Segmenter, iter_segment_images
    from stoneseg_core.ray_engine import RaySettings, iter_segment_ray, ray_session

    data = data_dir(args.data)
    model = bench_model(args.model, data)
    photos = list_images(data / "images")
    config = InferenceConfig(threshold=read_model_info(model).threshold, device=args.device)
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)

        steady: dict[str, list[float]] = {}

        def drain(name: str, gen) -> None:
            seen = []
            while True:
                try:
                    next(gen)
                    seen.append(time.perf_counter())
                except StopIteration as stop:
                    summary = stop.value
                    break
            assert summary.written == len(photos) and not summary.failed, summary
            # photos per second once the first is out: the model loaded, the pool started
            steady.setdefault(name, []).append((len(seen) - 1) / (seen[-1] - seen[0]))

        def local() -> None:
            drain(
                "local", iter_segment_images(Segmenter.load(model, config), photos, out / "local")
            )

        def on_ray(n: int):
            def run() -> None:
                gen = iter_segment_ray(
                    model, photos, out / f"ray{n}", config, RaySettings(workers=n), overwrite=True
                )
                drain(f"ray_{n}", gen)

            return run

        t = time.perf_counter()
        with ray_session(RaySettings(workers=max(args.workers), start_timeout=300)):
            ray_start = time.perf_counter() - t
            candidates = {"local": local} | {f"ray_{n}": on_ray(n) for n in args.workers}
            times = interleaved(candidates, reps=args.reps, warmup=1)
        want = {f.name: f.read_bytes() for f in (out / "local").iterdir()}
        identical = {
            f"ray_{n}": sum(
                (out / f"ray{n}" / name).read_bytes() == data_ for name, data_ in want.items()
            )
            for n in args.workers
        }
    base = times["local"]
    rate = {k: median(v[1:] or v) for k, v in steady.items()}  # not the warm-up run
    result = {
        "photos": len(photos),
        "reps": args.reps,
        "seconds_per_run": {k: r3(median(v)) for k, v in times.items()},
        "photos_per_second": {k: r3(len(photos) / median(v)) for k, v in times.items()},
        "photos_per_second_after_the_first": {k: r3(v) for k, v in rate.items()},
        "speed_vs_local": {k: r3(paired_ratio(base, v)) for k, v in times.items() if k != "local"},
        "ray_start_seconds": r3(ray_start),
        "masks_identical_to_local": identical,
        "machine": machine(),
        "load_before": load_before,
        "load_after": load_average(),
    }
    print(
        f"{len(photos)} photos: local {median(base):.2f} s/run; "
        + "; ".join(
            f"Ray with {n} actors {median(times[f'ray_{n}']):.2f} s/run "
            f"({paired_ratio(base, times[f'ray_{n}']):.2f}x local; after the first photo "
            f"{rate[f'ray_{n}']:.2f} photos/s against {rate['local']:.2f}; "
            f"{identical[f'ray_{n}']}/{len(want)} masks identical)"
            for n in args.workers
        )
        + f"; Ray started in {ray_start:.1f} s",
        file=sys.stderr,
    )
    emit(result)


if __name__ == "__main__":
    main()
