"""The outputs of a tiled grain analysis (``grains.tiled``): the stones' CSV and GeoJSON and
the label TIFF, written beside their places as the windows go and moved into place together."""

from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path

import numpy as np

from stoneseg_core.grains.analyse import GrainOptions, ImageGrains
from stoneseg_core.grains.io import CSV_COLUMNS, MAX_INSTANCES_PNG, csv_cell, csv_row, stone_feature
from stoneseg_core.grains.measure import Stone
from stoneseg_core.io.staged import StagedFile
from stoneseg_core.io.tiff_writer import TiledTiffWriter, rewrite_tiled_tiff


class StoneTables:
    """The stones' CSV rows and GeoJSON features, written to temporary files beside
    ``csv_path`` and ``geojson_path`` as the windows go (``commit`` moves them into place)."""

    def __init__(self, csv_path: Path, geojson_path: Path, blank: ImageGrains, georef, header):
        self.blank, self.georef = blank, georef
        self._staged: list[StagedFile] = []
        self._files: list = []  # the CSV's, the GeoJSON's
        try:
            self._staged += [StagedFile(csv_path), StagedFile(geojson_path)]
            self._files.append(open(self._staged[0].temporary, "w", newline="", encoding="utf-8"))
            self._files.append(open(self._staged[1].temporary, "w", encoding="utf-8"))
        except BaseException:
            self.discard()
            raise
        self._rows = csv.writer(self._files[0], lineterminator="\n")
        self._rows.writerow(CSV_COLUMNS)
        self._files[1].write(
            "{"
            + "".join(
                f"{json.dumps(k)}: {json.dumps(v, allow_nan=False)}, " for k, v in header.items()
            )
            + '"features": [\n'
        )
        self._first_feature = True

    def add(self, stones: list[Stone], outlines: dict, options: GrainOptions) -> None:
        """A window's stones (``outlines``: their rings by local label 1..k)."""
        for k, s in enumerate(stones, start=1):
            self._rows.writerow([csv_cell(v) for v in csv_row(self.blank, s, options)])
            feature = stone_feature(self.blank, s, outlines[k], options, self.georef)
            self._files[1].write(
                ("" if self._first_feature else ",\n") + json.dumps(feature, allow_nan=False)
            )
            self._first_feature = False

    def close(self) -> None:
        """Every stone added: the GeoJSON's feature list ended, both files closed."""
        self._files[1].write("\n]}\n")
        self._close_files()

    def _close_files(self) -> None:
        for f in self._files:
            f.close()

    def commit(self) -> None:
        for staged in self._staged:
            staged.commit()

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._close_files()
        for staged in self._staged:
            staged.discard()


class AnalysisFiles:
    """The three outputs of a tiled analysis (``paths``: "instances", "csv", "geojson"),
    written beside their places as the windows go and moved into place together by
    ``commit``: the label TIFF streamed as uint32 (``TiledTiffWriter``), the tables."""

    def __init__(self, paths: dict[str, Path], shape, tile: int, georef, blank, header):
        self.paths, self.georef = paths, georef
        self.labels: TiledTiffWriter | None = None
        self.tables = StoneTables(paths["csv"], paths["geojson"], blank, georef, header)
        try:
            self.labels = TiledTiffWriter(
                paths["instances"], shape, np.uint32, tile=tile, georef=georef
            )
        except BaseException:
            self.tables.discard()
            raise

    def commit(self, top_id: int) -> None:
        """All windows done, ``top_id`` the last stone's: the labels rewritten uint16 when
        every id fits (``MAX_INSTANCES_PNG``), then every file moved into place."""
        self.tables.close()
        self.labels.close()
        if top_id <= MAX_INSTANCES_PNG:
            narrowed = StagedFile(self.paths["instances"])
            try:
                rewrite_tiled_tiff(
                    self.labels.temporary, narrowed.temporary, np.uint16, self.georef
                )
                self.labels.abort()  # the uint32 file is not needed any more
                narrowed.commit()
            except BaseException:
                narrowed.discard()
                raise
        else:
            self.labels.commit()
        self.tables.commit()

    def abort(self) -> None:
        """Cancelled or failed: every temporary file removed, the folder as it was."""
        if self.labels is not None:
            self.labels.abort()
        self.tables.discard()
