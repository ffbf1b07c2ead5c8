"""Pooling the per-photo tables of ``stoneseg grains`` again (``stoneseg grains --pool-only``):
after an array job whose shards each wrote their own pooled files (``--shard K/N``), the
``<stem>_stones.csv`` of every photo in the folder are read back and pooled into one
``stones_pooled.csv`` and ``percentiles.json``, as one unsharded run would have written them.

The CSV keeps 6 significant digits, so a re-pooled percentile can differ from the unsharded
run's in that digit. A photo in which no stone was found has no rows, and so no entry in
the report's ``images``. The split options (minimum separation, neck ratio, probability)
are not in the CSV: the report states ``stoneseg grains``'s, the only ones it uses.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from stoneseg_core.errors import DataError
from stoneseg_core.grains.analyse import GrainOptions, ImageGrains
from stoneseg_core.grains.io import percentiles_report, stones_csv, write_json, write_text
from stoneseg_core.grains.measure import Stone
from stoneseg_core.io.images import natural_key

STONES_SUFFIX = "_stones.csv"


def _float(text: str) -> float | None:
    return None if text == "" else float(text)


def _bool(text: str) -> bool:
    return text.strip().lower() == "true"


def read_stones_csv(path: Path) -> tuple[list[ImageGrains], set[tuple]]:
    """The photos of one stones CSV (``grains/io.stones_csv``) and the options on its rows."""
    by_image: dict[str, list[Stone]] = {}
    scales: dict[str, float | None] = {}
    options: set[tuple] = set()
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                name = row["image"]
                mm = _float(row["mm_per_px"])
                scales[name] = mm
                options.add(
                    (
                        _bool(row["exclude_edge"]),
                        float(row["min_size_px"] or 0),
                        _float(row["min_size_mm"]),
                        row["weighting"],
                    )
                )
                by_image.setdefault(name, []).append(
                    Stone(
                        label=int(row["label"]),
                        area_px=int(float(row["area_px"])),
                        equivalent_diameter_px=float(row["equivalent_diameter_px"]),
                        a_axis_px=float(row["a_axis_px"]),
                        b_axis_px=float(row["b_axis_px"]),
                        perimeter_px=float(row["perimeter_px"]),
                        circularity=float(row["circularity"]),
                        centroid_x=float(row["centroid_x_px"]),
                        centroid_y=float(row["centroid_y_px"]),
                        bbox=(0, 0, 0, 0),  # not in the table; pooling never needs it
                        touches_edge=_bool(row["touches_edge"]),
                        mm_per_px=mm,
                        excluded=_bool(row["excluded"]),
                        exclusion_reason=row["exclusion_reason"],
                    )
                )
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"Cannot read the stones table {path}: {exc}") from exc
    results = [ImageGrains(name, scales[name], tuple(stones)) for name, stones in by_image.items()]
    return results, options


def pool_folder(output_dir: str | Path) -> dict:
    """Pool every ``<stem>_stones.csv`` of ``output_dir`` into ``stones_pooled.csv`` and
    ``percentiles.json`` (the failures listed in the shards' ``percentiles.shard-*.json``
    are carried over); returns the report."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise DataError(f"Folder not found: {output_dir}")
    # the folder's natural order, as one unsharded run lists the photos
    tables = sorted(output_dir.glob(f"*{STONES_SUFFIX}"), key=lambda p: natural_key(p.name))
    if not tables:
        raise DataError(f"No per-photo tables (*{STONES_SUFFIX}) in {output_dir} to pool.")
    results: list[ImageGrains] = []
    options: set[tuple] = set()
    for path in tables:
        found, opts = read_stones_csv(path)
        results += found
        options |= opts
    if len(options) > 1:
        raise DataError(
            f"The tables in {output_dir} were made with different options "
            "(--exclude-edge, --min-size); pool only runs made alike."
        )
    exclude_edge, min_px, min_mm, weighting = (
        options.pop() if options else (False, 0.0, None, "count")
    )
    grain_options = GrainOptions(
        exclude_edge=exclude_edge, min_size_px=min_px, min_size_mm=min_mm, weighting=weighting
    )
    report = percentiles_report(results, grain_options)
    failed = []
    for shard_report in sorted(output_dir.glob("percentiles.shard-*.json")):
        try:
            failed += json.loads(shard_report.read_text(encoding="utf-8")).get("failed", [])
        except (OSError, ValueError) as exc:
            raise DataError(f"Cannot read {shard_report}: {exc}") from exc
    report["failed"] = failed
    write_text(output_dir / "stones_pooled.csv", stones_csv(results, grain_options))
    write_json(output_dir / "percentiles.json", report)
    return report
