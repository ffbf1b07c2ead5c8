"""Folder segmentation: the local engine against the Ray engine (a local Ray cluster), on the
dev photos with a quickly trained model, interleaved run by run; the masks compared byte by byte.

    .venv/bin/python tests/benchmarks/bench_ray.py [--reps 2] [--workers 1 2] [--copies 3] [--model DIR]

With ``--copies 3`` the photos are also timed as a folder of three links to each: the
difference between the two folders is the cost of one more photo (photos/s at the margin),
and what a run costs besides its photos (model loads, actor pool) is the rest.

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
    p.add_argument("--reps", type=int, default=2)
    p.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1, 2],
        help="Ray actor counts to time (default 1 2; the local Ray gets the most as CPUs)",
    )
    p.add_argument(
        "--copies",
        type=int,
        default=3,
        help="also time a folder of this many copies of the photos (links): the difference "
        "is the cost per photo without the fixed cost of a run (default 3; 1: skip)",
    )
    args = p.parse_args()
    setup(args)
    from stoneseg_core.inference.segmenter import Segmenter
    from stoneseg_core.io.images import list_images
    from stoneseg_core.jobs.ray_engine import RaySettings, ray_session
    from stoneseg_core.jobs.ray_segment import iter_segment_ray
    from stoneseg_core.jobs.segment_folder import iter_segment_images
    from stoneseg_core.model.config import InferenceConfig
    from stoneseg_core.model.network import read_model_info

    data = data_dir(args.data)
    model = bench_model(args.model, data)
    photos = list_images(data / "images")
    config = InferenceConfig(threshold=read_model_info(model).threshold, device=args.device)
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        folders = {len(photos): photos}
        if args.copies > 1:
            many = out / "many"
            many.mkdir()
            for c in range(args.copies):
                for f in photos:
                    (many / f"c{c}_{f.name}").symlink_to(f.resolve())
            folders[len(photos) * args.copies] = list_images(many)

        def drain(gen, n: int) -> None:
            while True:
                try:
                    next(gen)
                except StopIteration as stop:
                    summary = stop.value
                    break
            assert summary.written == n and not summary.failed, summary

        def local(n: int):
            return lambda: drain(
                iter_segment_images(Segmenter.load(model, config), folders[n], out / f"local{n}"),
                n,
            )

        def on_ray(w: int, n: int):
            def run() -> None:
                settings = RaySettings(workers=w)
                dest = out / f"ray{w}-{n}"
                drain(iter_segment_ray(model, folders[n], dest, config, settings, True), n)

            return run

        t = time.perf_counter()
        with ray_session(RaySettings(workers=max(args.workers), start_timeout=300)):
            ray_start = time.perf_counter() - t
            candidates = {}
            for n in folders:
                candidates[f"local/{n}"] = local(n)
                for w in args.workers:
                    candidates[f"ray_{w}/{n}"] = on_ray(w, n)
            times = interleaved(candidates, reps=args.reps, warmup=1)
        n0 = len(photos)
        want = {f.name: f.read_bytes() for f in (out / f"local{n0}").iterdir()}
        identical = {
            f"ray_{w}": sum(
                (out / f"ray{w}-{n0}" / name).read_bytes() == data_ for name, data_ in want.items()
            )
            for w in args.workers
        }
    engines = ["local"] + [f"ray_{w}" for w in args.workers]
    base = times[f"local/{n0}"]
    result = {
        "photos": n0,
        "reps": args.reps,
        "seconds_per_run": {k: r3(median(v)) for k, v in times.items()},
        "speed_vs_local": {
            k: r3(paired_ratio(times[f"local/{k.split('/')[1]}"], v))
            for k, v in times.items()
            if not k.startswith("local")
        },
        "ray_start_seconds": r3(ray_start),
        "masks_identical_to_local": identical,
        "machine": machine(),
        "load_before": load_before,
        "load_after": load_average(),
    }
    lines = [
        f"{n0} photos: local {median(base):.2f} s/run; "
        + "; ".join(
            f"Ray with {w} actors {median(times[f'ray_{w}/{n0}']):.2f} s/run "
            f"({paired_ratio(base, times[f'ray_{w}/{n0}']):.2f}x local, "
            f"{identical[f'ray_{w}']}/{len(want)} masks identical)"
            for w in args.workers
        )
        + f"; Ray started in {ray_start:.1f} s"
    ]
    if args.copies > 1:
        n1 = n0 * args.copies
        # the cost of one more photo, and what is left of a run without photos
        per_photo = {
            e: (median(times[f"{e}/{n1}"]) - median(times[f"{e}/{n0}"])) / (n1 - n0)
            for e in engines
        }
        fixed = {e: median(times[f"{e}/{n0}"]) - n0 * per_photo[e] for e in engines}
        result["photos_per_second_marginal"] = {e: r3(1 / per_photo[e]) for e in engines}
        result["fixed_seconds_per_run"] = {e: r3(fixed[e]) for e in engines}
        lines.append(
            f"from {n0} to {n1} photos: "
            + "; ".join(
                f"{e} {1 / per_photo[e]:.2f} photos/s, {fixed[e]:.1f} s fixed" for e in engines
            )
        )
    print("\n".join(lines), file=sys.stderr)
    emit(result)


if __name__ == "__main__":
    main()
