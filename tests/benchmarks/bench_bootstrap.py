"""How long does the bootstrap interval of D10 ... D90 take? ``percentile_intervals`` on n
stones from one lognormal (areas growing with the square of the size), by count and by
area, 1000 resamples, for a few n; with ``--scipy``, ``scipy.stats.bootstrap`` on the same
stones for comparison (D50 by count only: it has no area-weighted statistic to call).

    python tests/benchmarks/bench_bootstrap.py [--sizes 1000 10000 100000] [--repeats 5] [--scipy]

Prints wall and CPU seconds (medians) and the load average before and after, since these
machines are shared; one JSON line at the end. Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

import numpy as np

from stoneseg_core.grains import percentile_intervals


def stones(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = rng.lognormal(math.log(20.0), 0.6, n)
    return sizes, sizes**2 * rng.uniform(0.6, 1.0, n)


def timed(repeats: int, fn, *args) -> tuple[float, float]:
    """(median wall s, median CPU s) of ``fn(*args)`` over ``repeats`` runs."""
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn(*args)
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scipy", action="store_true", help="time scipy.stats.bootstrap too")
    args = parser.parse_args()
    out: dict = {"load_before": os.getloadavg()[0], "cpus": os.cpu_count(), "runs": []}
    print(f"load average {out['load_before']:.2f} on {out['cpus']} CPUs")
    for n in args.sizes:
        sizes, areas = stones(n)
        for by in ("count", "area"):
            wall, cpu = timed(args.repeats, percentile_intervals, sizes, by, areas)
            out["runs"].append({"stones": n, "by": by, "wall_s": wall, "cpu_s": cpu})
            print(f"{n:>8} stones by {by:5s}  wall {wall:7.3f} s  cpu {cpu:7.3f} s")
        if args.scipy:
            from scipy import stats

            def scipy_d50(sizes: np.ndarray) -> None:
                stats.bootstrap(
                    (sizes,),
                    lambda s, axis: np.percentile(s, 50, axis=axis),
                    n_resamples=1000,
                    method="percentile",
                    batch=50,
                    random_state=0,
                )

            wall, cpu = timed(1, scipy_d50, sizes)
            out["runs"].append({"stones": n, "by": "scipy D50", "wall_s": wall, "cpu_s": cpu})
            print(f"{n:>8} stones scipy D50   wall {wall:7.3f} s  cpu {cpu:7.3f} s")
    out["load_after"] = os.getloadavg()[0]
    print(f"load average {out['load_after']:.2f}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
