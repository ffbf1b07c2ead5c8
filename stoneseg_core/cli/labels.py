"""``stoneseg import`` and ``stoneseg export``: label files of other tools (COCO, labelme,
CVAT, GeoJSON, GeoPackage, shapefiles) into a project's masks and stones, and back out
(the work is ``stoneseg_core.formats``; docs/formats.md)."""

from __future__ import annotations

import argparse
import json
import sys

from stoneseg_core.cli.common import EXIT_OK, EXIT_SOME_FAILED

# the names only: the formats package (shapely, pycocotools) loads when a command runs
IMPORT_FORMATS = ("coco", "labelme", "cvat", "geojson", "gpkg", "shp")
EXPORT_FORMATS = ("coco", "labelme", "geojson", "gpkg")


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``import`` and ``export`` on the ``stoneseg`` sub-command parser."""
    i = subparsers.add_parser(
        "import",
        help="import another tool's labels (COCO, labelme, CVAT masks, GeoJSON/GeoPackage/"
        "shapefile) into PROJECT_DIR's masks/ and instances/",
        description="Read SRC (a file, a folder or a zip) and write masks/<photo>.png and "
        "instances/<photo>.png for every photo of PROJECT_DIR it has stones for; print what was "
        "imported, skipped and why. Exit 1 when something was skipped.",
    )
    i.add_argument("--from", dest="fmt", required=True, choices=IMPORT_FORMATS)
    i.add_argument("source", metavar="SRC")
    i.add_argument("project_dir", metavar="PROJECT_DIR")
    i.add_argument(
        "--overwrite", action="store_true", help="replace masks and instances already there"
    )
    i.add_argument(
        "--label",
        action="append",
        default=None,
        metavar="NAME",
        help="a label or category that is a stone (repeat for several; default: all but "
        "'background')",
    )
    i.add_argument(
        "--image",
        default=None,
        metavar="PHOTO",
        help="GeoJSON/GeoPackage/shapefile: every feature lies on this photo",
    )
    i.add_argument(
        "--empty",
        action="store_true",
        help="a photo the file lists without stones becomes an empty mask (StoneSeg's own "
        "exports say which photos were labelled; other tools' do not)",
    )
    i.add_argument("--json", action="store_true", help="print the report as one JSON object")
    i.set_defaults(handler=run_import)
    e = subparsers.add_parser(
        "export",
        help="export PROJECT_DIR's masks and stones as COCO, labelme, GeoJSON or a GeoPackage",
        description="Write every photo's stones (its instances/ labels, else its mask split as "
        "the grains split it) to OUT: coco and gpkg a file, labelme and geojson a folder with a "
        "file per photo. GeoJSON and GeoPackage carry each stone's measurements.",
    )
    e.add_argument("--to", dest="fmt", required=True, choices=EXPORT_FORMATS)
    e.add_argument("project_dir", metavar="PROJECT_DIR")
    e.add_argument("out", metavar="OUT")
    e.add_argument("--overwrite", action="store_true", help="replace files already there")
    e.add_argument(
        "--include-predicted",
        action="store_true",
        help="also the masks a model predicted that nobody has reviewed",
    )
    e.add_argument(
        "--split",
        choices=("grains", "pieces"),
        default="grains",
        help="a mask without instances/ labels: split as the grains split it (default), or "
        "its connected pieces",
    )
    e.add_argument("--json", action="store_true", help="print the report as one JSON object")
    e.set_defaults(handler=run_export)


def run_report(gen, as_json: bool) -> int:
    """Drive an import or export with a progress bar; print its report; the exit code."""
    from tqdm import tqdm  # 0.25 s to import: only when a command runs

    with tqdm(file=sys.stderr, dynamic_ncols=True, disable=None, unit="photo") as bar:
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                report = stop.value
                break
            if event.total:
                bar.total = event.total
                bar.n = event.done
                bar.set_postfix_str(event.what[-40:], refresh=True)
    if as_json:
        print(json.dumps(report.to_dict()))
    else:
        print(report.text())
    return EXIT_SOME_FAILED if report.skipped else EXIT_OK


def run_import(args: argparse.Namespace) -> int:
    from stoneseg_core.formats import iter_import

    gen = iter_import(
        args.fmt,
        args.source,
        args.project_dir,
        overwrite=args.overwrite,
        labels=args.label,
        image=args.image,
        empty=args.empty,
    )
    return run_report(gen, args.json)


def run_export(args: argparse.Namespace) -> int:
    from stoneseg_core.formats import iter_export

    gen = iter_export(
        args.fmt,
        args.project_dir,
        args.out,
        overwrite=args.overwrite,
        include_predicted=args.include_predicted,
        split=args.split,
    )
    return run_report(gen, args.json)
