"""Label files of other tools, in and out: COCO JSON, labelme JSON, CVAT's mask export,
GeoJSON, GeoPackage and shapefiles (docs/formats.md says what each maps to).

``iter_import`` reads one into a project's ``masks/`` and ``instances/``; ``iter_export``
writes a project's masks and stones as one. Both are generators of ``FormatProgress`` that
return a ``FormatReport`` (what was done, skipped and why, and notes), run alike by the CLI
(``stoneseg import``, ``stoneseg export``) and the window (File > Import labels, Export
labels).

The modules: ``shapes`` (stones as a file gives them), ``raster`` (painted by pixel
centres, pycocotools), ``rle`` (COCO RLE), ``geometry`` (shapely outlines, map <-> pixel,
CRSs), ``photos`` (the project's photos, scales and stones), ``writing`` (masks and
instances written safely), ``sources`` (files, folders, zips), one module per format
(``coco``, ``labelme``, ``cvat``, ``vector`` and ``vector_out``), ``importing`` and
``exporting``, ``report``. Uses ``grains`` (splitting, measuring, outlines) and ``io``;
never torch.
"""

from __future__ import annotations

from stoneseg_core.formats.exporting import (
    EXPORT_FORMATS,
    export_photos,
    export_targets,
    iter_export,
)
from stoneseg_core.formats.importing import IMPORT_FORMATS, iter_import
from stoneseg_core.formats.photos import SPLITS
from stoneseg_core.formats.report import FormatProgress, FormatReport, ReportLine
from stoneseg_core.formats.writing import forget_predictions

__all__ = [
    "EXPORT_FORMATS",
    "IMPORT_FORMATS",
    "SPLITS",
    "FormatProgress",
    "FormatReport",
    "ReportLine",
    "export_photos",
    "export_targets",
    "forget_predictions",
    "iter_export",
    "iter_import",
]
