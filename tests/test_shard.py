"""``--shard K/N`` for ``stoneseg segment`` and ``stoneseg grains``: disjoint, complete shards."""

import json

import numpy as np
import pytest
from synthetic import make_scene, write_rgb

from stoneseg_core.cli import main
from stoneseg_core.io.images import read_mask
from stoneseg_core.jobs.shard import parse_shard, shard_suffix, take_shard


def test_shards_are_disjoint_complete_and_by_sorted_position():
    items = list(range(7))
    shards = [take_shard(items, (k, 3)) for k in (1, 2, 3)]
    assert shards == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(sum(shards, [])) == items
    assert take_shard(items, None) == items
    assert take_shard(items[:2], (3, 3)) == []
    assert parse_shard("2/8") == (2, 8) and parse_shard(" 1/1 ") == (1, 1)
    assert shard_suffix((2, 8)) == ".shard-2-of-8" and shard_suffix(None) == ""
    for bad in ("0/3", "4/3", "x", "3", "1/0", "-1/3", "1/3/5", "a/b"):
        with pytest.raises(ValueError):
            parse_shard(bad)


@pytest.fixture
def seven_photos(tmp_path):
    src = tmp_path / "in"
    for i in range(7):  # natural order: p2 before p10
        write_rgb(src / f"p{i * 4}.png", make_scene(np.random.default_rng(i), 64, 80)[0])
    return src


@pytest.mark.parametrize("command", ["segment", "grains"])
@pytest.mark.parametrize("bad", ["0/3", "4/3", "x"])
def test_bad_shard_is_a_one_line_usage_error(trained_model, tmp_path, capsys, command, bad):
    with pytest.raises(SystemExit) as exc:
        main([command, str(trained_model), str(tmp_path), str(tmp_path / "o"), "--shard", bad])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "--shard" in errors[0] and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_segment_shards_together_are_the_unsharded_run(trained_model, seven_photos, tmp_path):
    whole = tmp_path / "whole"
    assert main(["segment", str(trained_model), str(seven_photos), str(whole)]) == 0
    sharded = tmp_path / "sharded"
    names = []
    for k in (1, 2, 3):
        before = {p.name for p in sharded.glob("*.png")}
        assert (
            main(
                [
                    "segment",
                    str(trained_model),
                    str(seven_photos),
                    str(sharded),
                    "--shard",
                    f"{k}/3",
                ]
            )
            == 0
        )
        names.append({p.name for p in sharded.glob("*.png")} - before)
    # sorted order p0 p4 p8 p12 p16 p20 p24: photo i to shard (i mod 3) + 1
    assert names == [{"p0.png", "p12.png", "p24.png"}, {"p4.png", "p16.png"}, {"p8.png", "p20.png"}]
    assert {p.name for p in whole.iterdir()} == set().union(*names)
    for name in set().union(*names):
        assert np.array_equal(read_mask(whole / name), read_mask(sharded / name))


def test_grains_shards_write_their_own_pooled_files(trained_model, seven_photos, tmp_path):
    out = tmp_path / "out"
    counted = 0
    for k in (1, 2, 3):
        assert (
            main(["grains", str(trained_model), str(seven_photos), str(out), "--shard", f"{k}/3"])
            == 0
        )
        report = json.loads((out / f"percentiles.shard-{k}-of-3.json").read_text())
        counted += report["pooled"]["stones_found"]
        assert (out / f"stones_pooled.shard-{k}-of-3.csv").is_file()
    assert not (out / "percentiles.json").exists() and not (out / "stones_pooled.csv").exists()
    stems = {f"p{i * 4}" for i in range(7)}
    assert {p.name.removesuffix("_stones.csv") for p in out.glob("*_stones.csv")} == stems
    assert len(list(out.glob("*_instances.png"))) == 7
    whole = tmp_path / "whole"
    assert main(["grains", str(trained_model), str(seven_photos), str(whole)]) == 0
    unsharded = json.loads((whole / "percentiles.json").read_text())
    assert unsharded["pooled"]["stones_found"] == counted
    # pooling the shards' per-photo tables again gives the unsharded run's figures
    assert main(["grains", "--pool-only", str(out)]) == 0
    pooled = json.loads((out / "percentiles.json").read_text())
    assert pooled["options"] == unsharded["options"] and pooled["failed"] == []
    for by in ("by_count", "by_area"):
        a, b = pooled["pooled"][by], unsharded["pooled"][by]
        assert a.keys() == b.keys() and a["n_stones"] == b["n_stones"]
        for key, value in b.items():
            if isinstance(value, float):
                assert a[key] == pytest.approx(value, rel=1e-4), key
    rows = (out / "stones_pooled.csv").read_text().splitlines()
    assert len(rows) == len((whole / "stones_pooled.csv").read_text().splitlines())


def test_pool_only_takes_one_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["grains", "--pool-only", str(tmp_path), str(tmp_path)])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["grains", str(tmp_path)])  # without --pool-only all three folders are needed
    assert exc.value.code == 2
    capsys.readouterr()
    assert main(["grains", "--pool-only", str(tmp_path)]) == 2  # no tables: one line
    assert "No per-photo tables" in capsys.readouterr().err
