"""benchmarks/batch.py --layer on a tiny archive: what it writes is what a batch writes."""

from __future__ import annotations

import argparse

import pytest

shapely = pytest.importorskip("shapely")

from dakd_edge.atomic import file_sha256  # noqa: E402
from dakd_edge.batch.layer import read_layer, read_parts  # noqa: E402
from dakd_edge.batch.manifest import read_manifest, scene_outputs, verified  # noqa: E402


def test_layer_archive_overlaps_across_seams_only_and_rebuilds_agree(tmp_path, load_benchmark) -> None:
    bench = load_benchmark("batch")
    out = tmp_path / "archive"
    stats = bench.layer_archive(out, 4, 30, take=2, overlap_km=3.0, seed=1)
    records = read_manifest(out)
    assert sorted(records) == ["S1_0000_00", "S1_0000_01", "S1_0001_00", "S1_0001_01"]
    assert all(r["status"] == "ok" for r in records.values())
    parts = {}
    for sid, rec in records.items():
        assert rec["sha256"]["vector"] == file_sha256(scene_outputs(out, sid)["vector"])
        parts[sid], unplaced = read_parts(scene_outputs(out, sid)["vector"], rec)
        assert unplaced == 0 and len(parts[sid]) == rec["spills"]
        geoms = [p.geom for p in parts[sid]]
        a, b = shapely.STRtree(geoms).query(geoms, predicate="overlaps")
        assert len(a) == 0  # polygons of one scene never overlap: components of one class map
    assert stats == {"scenes": 4, "parts": sum(map(len, parts.values())), "seam_slicks": 2}
    assert stats["parts"] == 123

    row = bench.layer_rebuilds(out, "parquet")
    n_last = len(parts["S1_0001_01"])
    assert row["cold"]["features"] == 123 - n_last - 2  # the seam slick of datatake 0, one small blob
    assert row["one_more"]["features"] == row["unchanged"]["features"] == 123 - 3  # + datatake 1's slick
    merged = [f for f in read_layer(out / "spills.parquet") if f["n_scenes"] > 1]
    assert [(f["scene_ids"], f["n_parts"]) for f in merged] == [
        ("S1_0000_00,S1_0000_01", 2),
        ("S1_0000_00,S1_0000_01", 2),
        ("S1_0001_00,S1_0001_01", 2),
    ]
    assert not any(verified(out, r) for r in records.values())  # no class map: never a resumable scene


def test_layer_sizes_parse_as_scenes_x_polygons(load_benchmark) -> None:
    bench = load_benchmark("batch")
    assert bench._size("500x200") == (500, 200) and bench._size("2000X500") == (2000, 500)
    with pytest.raises(argparse.ArgumentTypeError, match="expected N x P, e.g. 500x500, not '500'"):
        bench._size("500")
