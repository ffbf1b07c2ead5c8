"""``stoneseg import`` and ``stoneseg export`` end to end: real files, the exit codes, the
report on stdout."""

from __future__ import annotations

import json

import numpy as np
from formats_data import read_labels, touching_stones, write_project

from stoneseg_core import formats
from stoneseg_core.cli import labels, main


def test_the_cli_names_the_formats_the_core_has():
    assert labels.IMPORT_FORMATS == formats.IMPORT_FORMATS
    assert labels.EXPORT_FORMATS == formats.EXPORT_FORMATS


def test_export_then_import_end_to_end(tmp_path, capsys):
    stones = touching_stones(50, 70, seed=4)
    src = write_project(tmp_path / "src", {"a.png": stones, "b.png": None})
    out = tmp_path / "stones.gpkg"
    assert main(["export", "--to", "gpkg", str(src), str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"Exported 1 photo(s), {int(stones.max())} stone(s)" in printed
    assert "a.png: " in printed and out.is_file()
    assert main(["export", "--to", "gpkg", str(src), str(out)]) == 2  # in the way
    assert "--overwrite" in capsys.readouterr().err

    dst = tmp_path / "dst"
    (dst / "images").mkdir(parents=True)
    for photo in ("a.png", "b.png"):
        (dst / "images" / photo).write_bytes((src / "images" / photo).read_bytes())
    assert main(["import", "--from", "gpkg", str(out), str(dst)]) == 0
    assert f"Imported 1 photo(s), {int(stones.max())} stone(s)" in capsys.readouterr().out
    assert np.array_equal(read_labels(dst, "a"), stones)

    # again: the masks are there now, kept without --overwrite (exit 1: something skipped)
    assert main(["import", "--from", "gpkg", "--json", str(out), str(dst)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["photos"] == {}
    assert [(line["what"], line["reason"]) for line in report["lines"]] == [("a.png", "exists")]
    assert main(["import", "--from", "gpkg", "--overwrite", str(out), str(dst)]) == 0


def test_a_malformed_file_is_a_line_and_exit_1(tmp_path, capsys):
    dst = write_project(tmp_path / "dst", {"a.png": None})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["import", "--from", "coco", str(bad), str(dst)]) == 1
    out = capsys.readouterr().out
    assert "bad.json: skipped: not valid JSON (line 1, column 2" in out
    assert main(["import", "--from", "coco", str(tmp_path / "gone.json"), str(dst)]) == 2
    assert "Not found" in capsys.readouterr().err
