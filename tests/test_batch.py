"""`dakd-edge batch` on a local Ray (2 CPUs), tiny synthetic scenes and the fake numpy model.

One Ray session serves the whole module (starting Ray takes 10-20 s); ``run`` uses a session it finds.
Ray workers import the model factory by name from ``tests.batch_fake``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from dakd_edge.errors import InputError
from tests.inference.fake import blob_scene, write_tif

ray = pytest.importorskip("ray")
shapely = pytest.importorskip("shapely")

from dakd_edge.batch import run  # noqa: E402
from dakd_edge.batch.inputs import expand_inputs  # noqa: E402
from dakd_edge.batch.layer import Part, merge, read_layer  # noqa: E402
from dakd_edge.batch.manifest import read_manifest, scene_outputs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODEL = "tests.batch_fake:make_predictor"
SIZE = 160


@pytest.fixture(scope="module")
def local_ray():
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), old) if p)  # workers import tests.*
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """Six small UTM scenes with dark slicks, 5 km apart (no overlap between them)."""
    d = tmp_path_factory.mktemp("scenes")
    for i in range(6):
        tf = from_origin(500000.0 + i * 5000.0, 6000000.0, 10.0, 10.0)
        write_tif(d / f"scene{i}.tif", blob_scene(SIZE, SIZE, seed=i), transform=tf)
    return d


@pytest.fixture(scope="module")
def clean(local_ray, scenes, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("clean") / "batch"
    return out, run([scenes], out, workers=2, model=MODEL)


def _classes(p: Path) -> np.ndarray:
    with rasterio.open(p) as ds:
        return ds.read(1)


def _features(p: Path) -> list:
    return json.loads(p.read_text())["features"]


def _no_temporaries(out: Path) -> None:
    left = [p for p in out.rglob(".*") if p.name != ".gitignore"]
    assert not left, left


def test_six_scenes_two_workers_equal_segment_alone(clean, scenes, tmp_path):
    from dakd_edge.inference.segment import segment_scene
    from tests.batch_fake import make_predictor

    out, summary = clean
    assert summary["failed"] == [] and summary["workers"] == 2
    assert summary["ok"] == [f"scene{i}" for i in range(6)]
    records = read_manifest(out)
    assert sorted(records) == summary["ok"] and all(r["status"] == "ok" for r in records.values())
    predictor = make_predictor()
    total = 0
    for i in range(6):
        sid = f"scene{i}"
        alone = tmp_path / sid
        alone.mkdir()
        report = segment_scene(
            predictor,
            scenes / f"{sid}.tif",
            alone / "c.tif",
            vector=alone / "v.geojson",
            report=alone / "r.json",
        )
        got = scene_outputs(out, sid)
        np.testing.assert_array_equal(_classes(got["classes"]), _classes(alone / "c.tif"))
        assert got["classes"].read_bytes() == (alone / "c.tif").read_bytes()  # the very same COG
        assert _features(got["vector"]) == _features(alone / "v.geojson")
        assert records[sid]["spills"] == report["spills"] > 0
        total += report["spills"]
    assert summary["features"] == total == len(read_layer(out / "spills.gpkg"))  # no overlap: no merge
    _no_temporaries(out)


def test_worker_killed_mid_scene_is_retried(local_ray, scenes, clean, tmp_path):
    from tests.batch_fake import make_crashing_predictor

    marker = tmp_path / "crashed"
    out = tmp_path / "batch"
    summary = run([scenes], out, workers=2, model=functools.partial(make_crashing_predictor, str(marker)))
    assert marker.exists(), "no worker was killed"
    assert len(summary["retried"]) == 1 and summary["failed"] == []
    assert summary["ok"] == clean[1]["ok"]
    records, clean_records = read_manifest(out), read_manifest(clean[0])
    (sid,) = summary["retried"]
    assert records[sid]["attempts"] == 2
    for s in summary["ok"]:
        np.testing.assert_array_equal(
            _classes(scene_outputs(out, s)["classes"]), _classes(scene_outputs(clean[0], s)["classes"])
        )
        assert records[s]["sha256"]["vector"] == clean_records[s]["sha256"]["vector"]
    assert read_layer(out / "spills.gpkg") == read_layer(clean[0] / "spills.gpkg")
    _no_temporaries(out)


def test_resume_runs_only_the_rest(local_ray, scenes, clean, tmp_path):
    out = tmp_path / "batch"
    first = run([scenes], out, workers=2, model=MODEL, limit=3)
    assert len(first["ok"]) == 3 and len(first["not_run"]) == 3
    with pytest.raises(Exception, match="--resume"):
        run([scenes], out, workers=2, model=MODEL)
    second = run([scenes], out, workers=2, model=MODEL, resume=True)
    assert sorted(second["skipped"]) == sorted(first["ok"])
    assert sorted(second["ok"]) == sorted(first["not_run"]) and second["failed"] == []
    assert read_layer(out / "spills.gpkg") == read_layer(clean[0] / "spills.gpkg")
    # an output changed on disk no longer verifies: only that scene runs again
    victim = scene_outputs(out, "scene4")["classes"]
    victim.write_bytes(victim.read_bytes()[:-1])
    third = run([scenes], out, workers=2, model=MODEL, resume=True)
    assert third["ok"] == ["scene4"] and len(third["skipped"]) == 5
    assert read_layer(out / "spills.gpkg") == read_layer(clean[0] / "spills.gpkg")


def test_corrupt_scene_fails_alone(local_ray, scenes, tmp_path, capsys):
    from dakd_edge.cli.app import main

    data = tmp_path / "data"
    data.mkdir()
    for i in (0, 1):
        (data / f"scene{i}.tif").write_bytes((scenes / f"scene{i}.tif").read_bytes())
    good = (scenes / "scene2.tif").read_bytes()
    (data / "broken.tif").write_bytes(good[: len(good) // 3])
    _truncated_zip(data / "S1A_cut.zip")  # no recognisable product, yet a scene: it must not vanish
    out = tmp_path / "batch"
    with pytest.raises(SystemExit) as e:
        main(["batch", str(data), "--out", str(out), "--workers", "2", "--model", MODEL, "-q"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("failed:")]
    assert [ln.split()[1] for ln in lines] == ["S1A_cut", "broken"]
    assert "damaged or truncated zip" in lines[0]
    records = read_manifest(out)
    assert records["broken"]["status"] == "failed" and "\n" not in records["broken"]["error"]
    assert records["broken"]["attempts"] == 1  # an input error is not retried: it would fail the same way
    assert records["S1A_cut"]["attempts"] == 1
    assert [records[f"scene{i}"]["status"] for i in (0, 1)] == ["ok", "ok"]
    assert not any(scene_outputs(out, "broken")[k].exists() for k in ("classes", "vector", "report"))
    _no_temporaries(out)

    # --resume does not run the damaged inputs again while they are unchanged (a cron job would start
    # Ray each time to fail them again): still failed, saying why; a repaired file runs
    manifest = out / "manifest.jsonl"
    lines_before = manifest.read_text().count("\n")
    args = ["batch", str(data), "--out", str(out), "--workers", "2", "--model", MODEL, "-q", "--resume"]
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.count("not run again: the input is unchanged") == 2, err
    assert manifest.read_text().count("\n") == lines_before  # nothing ran
    (data / "broken.tif").write_bytes(good)
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert e.value.code == 1 and [ln.split()[1] for ln in err.splitlines() if ln.startswith("failed:")] == [
        "S1A_cut"
    ]
    assert read_manifest(out)["broken"]["status"] == "ok"
    with pytest.raises(SystemExit) as e:
        main([*args, "--retry-failed"])  # runs it again (and it fails again, as it is)
    err = capsys.readouterr().err
    assert e.value.code == 1 and "not run again" not in err and "damaged or truncated zip" in err
    assert read_manifest(out)["S1A_cut"]["attempts"] == 1


def test_a_failed_scene_leaves_no_empty_output_folder(tmp_path: Path) -> None:
    """A scene that fails (an empty download) left an empty ``out/<id>/`` behind; a folder that was
    there before is kept."""
    from dakd_edge.batch.worker import SceneWorker
    from tests.batch_fake import make_predictor

    worker = SceneWorker(make_predictor, {})
    out = tmp_path / "batch"
    (out / "kept").mkdir(parents=True)
    for sid in ("empty", "kept"):
        (tmp_path / f"{sid}.tif").write_bytes(b"")
        scene = {"id": sid, "path": str(tmp_path / f"{sid}.tif"), "meta": {}}
        rec = worker.process(scene, str(out), 1, False, {})
        assert rec["status"] == "failed" and "cannot read as a raster" in rec["error"]
    assert sorted(p.name for p in out.iterdir()) == ["kept"]


def _truncated_zip(path: Path) -> Path:
    """The first half of a zipped SAFE-like tree: an interrupted download (no central directory)."""
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{path.stem}.SAFE/manifest.safe", "<xml/>" * 200)
        z.writestr(f"{path.stem}.SAFE/measurement/vv.tiff", os.urandom(4000))
    path.write_bytes(path.read_bytes()[:2000])
    return path


def test_resume_replaces_only_outputs_the_manifest_records(local_ray, scenes, tmp_path):
    """--resume never overwrites a file the manifest does not record; a tile equal to the model's
    default is not "other options"."""
    from dakd_edge.errors import OutputError

    ins = [scenes / "scene0.tif", scenes / "scene1.tif"]
    out = tmp_path / "batch"
    first = run(ins, out, workers=1, model=MODEL, limit=1)
    assert first["ok"] == ["scene0"]
    assert json.loads((out / "batch.json").read_text())["tiling"] == {"tile": 64, "overlap": 16}
    user = scene_outputs(out, "scene1")["classes"]
    user.parent.mkdir()
    user.write_text("USER\n")
    second = run(ins, out, workers=1, model=MODEL, resume=True, tile=64)
    assert second["skipped"] == ["scene0"] and [f["id"] for f in second["failed"]] == ["scene1"]
    assert "manifest does not record this scene" in second["failed"][0]["error"]
    assert user.read_text() == "USER\n" and read_manifest(out)["scene1"]["attempts"] == 1
    third = run(ins, out, workers=1, model=MODEL, resume=True)  # recorded as failed: still not ours
    assert [f["id"] for f in third["failed"]] == ["scene1"] and user.read_text() == "USER\n"
    with pytest.raises(OutputError, match="neither empty nor a batch folder"):
        run(ins, user.parent, model=MODEL, resume=True)  # someone's folder: refused, --resume or not


def test_out_inside_the_input_folder_and_a_scene_without_georeference(local_ray, scenes, tmp_path):
    """The batch folder is not searched for scenes (its class maps are no scenes); polygons that
    cannot be placed on the map are named in the warnings."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "scene0.tif").write_bytes((scenes / "scene0.tif").read_bytes())
    write_tif(data / "plain.tif", blob_scene(SIZE, SIZE, seed=9), crs=None)
    out = data / "res"
    first = run([data], out, workers=2, model=MODEL)
    assert first["ok"] == ["plain", "scene0"]
    records = read_manifest(out)
    assert records["plain"]["spills"] > 0
    line = f"{records['plain']['spills']} polygon(s) not in the merged layer: the scene has no georeference"
    assert line in first["warnings"]["plain"]
    assert first["features"] == records["scene0"]["spills"]
    second = run([data], out, workers=2, model=MODEL, resume=True)
    assert second["scenes"] == 2 and second["run"] == 0 and second["skipped"] == ["plain", "scene0"]
    assert second["warnings"] == {"plain": [line]}


def test_failed_start_leaves_no_batch_folder(local_ray, scenes, tmp_path):
    """A model that does not load: nothing is left that would refuse the next run in that folder."""
    from dakd_edge.errors import DakdError

    out = tmp_path / "new" / "batch"
    with pytest.raises(DakdError, match="cannot load the model"):
        run([scenes / "scene0.tif"], out, workers=1, model="tests.batch_fake:no_such_factory")
    assert not (tmp_path / "new").exists()  # nor the parent it would have created


def test_cuda_without_a_gpu_fails_before_any_worker_starts(local_ray, scenes, tmp_path, monkeypatch):
    from dakd_edge.batch import cluster
    from dakd_edge.errors import BackendUnavailable

    monkeypatch.setattr(cluster, "READY_TIMEOUT", 5.0)  # without the check: a timeout, never a hang
    with pytest.raises(BackendUnavailable, match="the Ray cluster has no GPU"):
        run([scenes / "scene0.tif"], tmp_path / "batch", model=MODEL, device="cuda")
    assert not (tmp_path / "batch").exists()


def test_workers_that_never_get_ready_time_out(local_ray, scenes, tmp_path, monkeypatch):
    import time

    from dakd_edge.batch import cluster
    from dakd_edge.errors import DakdError

    monkeypatch.setattr(cluster, "READY_TIMEOUT", 1.0)
    t0 = time.monotonic()
    with pytest.raises(DakdError, match="1 of 1 batch worker.s. not ready after 1 s"):
        run(
            [scenes / "scene0.tif"],
            tmp_path / "batch",
            workers=1,
            model="tests.batch_fake:make_sleepy_predictor",
        )
    assert time.monotonic() - t0 < 30 and not (tmp_path / "batch").exists()
    # the sleeping actor was killed: its CPUs are free for the next run (at the usual timeout: a
    # worker loading a model on a busy machine takes more than 1 s)
    monkeypatch.undo()
    assert run([scenes / "scene0.tif"], tmp_path / "again", workers=1, model=MODEL)["ok"] == ["scene0"]


def test_interrupt_stops_ray_and_resume_finishes(local_ray, scenes, clean, tmp_path):
    """SIGINT to the CLI mid-scene: exit 130 within seconds, no Ray process left, nothing half-written
    under a final name; --resume then finishes with the layer of the clean run."""
    import signal
    import subprocess
    import sys
    import time

    from dakd_edge.batch.cluster import children

    slow = "tests.batch_fake:make_slow_predictor"
    out = tmp_path / "batch"
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": ""}
    cmd = [sys.executable, "-m", "dakd_edge", "batch", str(scenes), "-o", str(out), "--workers", "1", "-q"]
    proc = subprocess.Popen([*cmd, "--model", slow], env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
    ray_pids: set[int] = set()
    deadline = time.monotonic() + 120
    while not list(out.glob("*/.*partial*")) and time.monotonic() < deadline and proc.poll() is None:
        kids = set(children({proc.pid}))
        ray_pids |= kids | set(children(kids))
        time.sleep(0.1)
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=15) == 130
    assert "interrupted" in proc.stderr.read()
    assert not (out / "batch.lock").exists()  # Ray's teardown outlasted the grace: the lock stayed

    def alive() -> list[int]:  # zombies (state Z) are dead: only their parent has not reaped them yet
        stats = [Path(f"/proc/{p}/stat") for p in ray_pids]
        return [int(st.parent.name) for st in stats if st.exists() and ") Z" not in st.read_text()]

    while alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray_pids and not alive(), alive()
    done = read_manifest(out)
    for sid in done:  # what the manifest holds is complete; nothing else is under a final name
        assert all(p.is_file() for p in scene_outputs(out, sid).values())
    summary = run([scenes], out, workers=2, model=slow, resume=True)
    assert summary["failed"] == [] and sorted(summary["skipped"]) == sorted(done)
    assert read_layer(out / "spills.gpkg") == read_layer(clean[0] / "spills.gpkg")
    _no_temporaries(out)


def _split_pair(d: Path, world: np.ndarray, w: int, shift: int) -> tuple[Path, Path]:
    """``A.tif`` (the first ``w`` columns of ``world``) and ``B.tif`` (from column ``shift`` on), one
    UTM zone, 10 m pixels: two scenes overlapping by ``w - shift`` columns."""
    world = np.clip(world, 1, 255).astype(np.uint8)
    a = write_tif(d / "A.tif", world[:, :w], transform=from_origin(500000.0, 6000000.0, 10.0, 10.0))
    b = write_tif(
        d / "B.tif", world[:, shift:], transform=from_origin(500000.0 + shift * 10.0, 6000000.0, 10.0, 10.0)
    )
    return a, b


def _overlapping_pair(d: Path) -> tuple[Path, Path]:
    """Two scenes of one UTM zone overlapping by 48 columns, one slick lying across the overlap."""
    h, w, shift = 120, SIZE, SIZE - 48
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:h, : w + shift].astype(np.float32)
    world = 150.0 - 110.0 * np.exp(-(((yy - 60) / 8) ** 2 + ((xx - (w + shift) / 2) / 60) ** 2))
    return _split_pair(d, world + rng.normal(0, 4, world.shape), w, shift)


def test_overlapping_scenes_merge_into_one_polygon(local_ray, tmp_path):
    a, b = _overlapping_pair(tmp_path)
    out = tmp_path / "batch"
    summary = run([a, b], out, workers=2, model=MODEL, fmt="parquet")
    assert summary["ok"] == ["A", "B"]
    assert [len(_features(scene_outputs(out, s)["vector"])) for s in ("A", "B")] == [1, 1]
    (feature,) = read_layer(out / "spills.parquet")
    assert feature["scene_ids"] == "A,B" and feature["n_scenes"] == 2
    geom = shapely.from_wkb(feature["geometry"])
    parts = [shapely.geometry.shape(_features(scene_outputs(out, s)["vector"])[0]["geometry"]) for s in "AB"]
    assert geom.geom_type == "MultiPolygon" and len(geom.geoms) == 1
    assert geom.area > max(p.area for p in parts) and geom.covers(parts[0].buffer(-1e-8))
    assert feature["n_parts"] == 2 and feature["platform"] is None  # plain GeoTIFFs: no product metadata


def test_sentinel1_product_fills_time_and_platform(local_ray, tmp_path):
    from tests.inference.test_sentinel1_segment import product_with_square

    safe = product_with_square(tmp_path / "s1")
    zipped = safe.with_name(safe.stem + ".zip")
    out = tmp_path / "batch"
    summary = run([zipped], out, workers=1, model=MODEL, land_mask=None)
    (sid,) = summary["ok"]
    assert sid == safe.stem
    rec = read_manifest(out)[sid]
    assert rec["platform"] == "S1A" and rec["start_time"].startswith("2021-06-01T04:30")
    feats = read_layer(out / "spills.gpkg")
    assert feats and all(f["platform"] == "sentinel-1a" and f["scene_ids"] == sid for f in feats)
    assert all(f["start_time"] == rec["start_time"] for f in feats)


# --- no Ray needed ------------------------------------------------------------------------------


def test_inputs_folders_lists_stac_and_duplicates(scenes, tmp_path):
    lst = tmp_path / "scenes.txt"
    lst.write_text(f"# two scenes\n{scenes / 'scene0.tif'}\n\n{scenes / 'scene1.tif'}  # and one more\n")
    got = expand_inputs([lst, scenes, scenes / "scene0.tif"])
    assert [s.id for s in got] == ["scene0", "scene1", "scene2", "scene3", "scene4", "scene5"]
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "S1A_pass/7",
        "geometry": None,
        "properties": {"datetime": "2026-01-02T03:04:05Z", "platform": "sentinel-1a"},
        "assets": {
            "thumb": {"href": "https://example.com/t.png"},
            "vv": {"href": str(scenes / "scene3.tif"), "roles": ["data"]},
        },
        "links": [],
    }
    stac = tmp_path / "items.json"
    stac.write_text(json.dumps({"type": "FeatureCollection", "features": [item]}))
    (s,) = expand_inputs([stac])
    assert s.id == "S1A_pass_7" and s.path == scenes / "scene3.tif" and s.meta["platform"] == "sentinel-1a"
    other = tmp_path / "x"
    other.mkdir()
    (other / "scene0.tif").write_bytes((scenes / "scene0.tif").read_bytes())
    with pytest.raises(InputError, match="two scenes have the id 'scene0'"):
        expand_inputs([scenes, other])
    with pytest.raises(InputError, match="no such file"):
        expand_inputs([tmp_path / "missing.tif"])


def _s1_item(iid: str, assets: dict[str, str | dict]) -> dict:
    """A STAC item as CDSE / Earth Search / Planetary Computer publish Sentinel-1 GRD (hrefs rewritten)."""
    assets = {k: v if isinstance(v, dict) else {"href": str(v)} for k, v in assets.items()}
    for k, a in assets.items():
        a.setdefault("roles", ["data"] if k.lower() in ("vv", "vh", "product") else ["metadata"])
    return {"type": "Feature", "stac_version": "1.0.0", "id": iid, "geometry": None,
            "properties": {"datetime": "2021-06-01T04:30:00Z"}, "assets": assets, "links": []}  # fmt: skip


def test_stac_items_of_the_sentinel1_catalogues(tmp_path: Path) -> None:
    """The polarisation asset read (--pol picks vh), never a metadata asset; a missing, remote or
    uncalibratable asset is one line naming it, never a silent switch to another polarisation."""
    from dakd_edge.data.sentinel1 import build_synthetic_product, zip_product
    from tests.data.test_sentinel1 import _as_cog, _as_flattened

    prod = build_synthetic_product(tmp_path / "p", shape=(64, 96), seed=1, pols=("VV", "VH"))
    cog, flat = _as_cog(prod.path, tmp_path / "cdse"), _as_flattened(prod.path, tmp_path / "es")
    cm = {p: next((cog / "measurement").glob(f"*-{p}-*-cog.tiff")) for p in ("vv", "vh")}
    cal = next((cog / "annotation" / "calibration").glob("calibration-*-vv-*"))
    remote = "https://download.dataspace.copernicus.eu/odata/v1/Products(0)/$value"
    cdse = _s1_item(cog.stem, {"vh": cm["vh"], "vv": cm["vv"], "schema-calibration-vv": cal,
                               "safe_manifest": cog / "manifest.safe",
                               "Product": {"href": remote, "type": "application/zip", "roles": ["data"]}})  # fmt: skip
    (tmp_path / "cdse.json").write_text(json.dumps(cdse))
    (s,) = expand_inputs([tmp_path / "cdse.json"])
    assert (s.id, s.path, s.meta["stac_asset"]) == (cog.stem, cm["vv"], "vv") and s.id.endswith("_COG")
    (s,) = expand_inputs([tmp_path / "cdse.json"], pol="VH")
    assert (s.path, s.meta["stac_asset"]) == (cm["vh"], "vh")
    # Earth Search / Planetary Computer: metadata assets first, relative, file:// and percent-encoded hrefs
    (tmp_path / "sub").mkdir()
    es = _s1_item(flat.name, {"safe-manifest": "../es/x/../" + flat.name + "/manifest.safe",
                              "schema-product-vv": (flat / "annotation" / "iw-vv.xml").as_uri(),
                              "vh": (flat / "measurement" / "iw-vh.tiff").as_uri(),
                              "vv": f"../es/{flat.name}/measurement/iw%2Dvv.tiff"})  # fmt: skip
    (tmp_path / "sub" / "es.json").write_text(json.dumps(es))
    (s,) = expand_inputs([tmp_path / "sub" / "es.json"])
    assert (s.id, s.path) == (flat.name, flat / "measurement" / "iw-vv.tiff")
    (s,) = expand_inputs([tmp_path / "sub" / "es.json"], pol="vh")
    assert s.path == flat / "measurement" / "iw-vh.tiff"
    (flat / "measurement" / "iw-vv.tiff").unlink()  # VV not downloaded: never a silent VH run
    with pytest.raises(
        InputError, match=r"STAC item '\w+': asset 'vv': .*iw-vv.tiff: no such file or directory$"
    ):
        expand_inputs([tmp_path / "sub" / "es.json"])
    # remote assets: one line; a local product zip serves when the measurement assets are remote
    s3 = _s1_item(
        "S1", {"vv": "s3://eodata/x/iw-vv.tiff", "vh": "/vsis3/eodata/x/iw-vh.tiff", "Product": remote}
    )
    (tmp_path / "s3.json").write_text(json.dumps(s3))
    for pol in (None, "VH"):
        with pytest.raises(
            InputError, match=r"asset 'v[vh]' is not a local file .*only local files are supported"
        ):
            expand_inputs([tmp_path / "s3.json"], pol=pol)
    s3["assets"]["Product"]["href"] = str(zip_product(cog, tmp_path / f"{cog.name}.zip"))
    (tmp_path / "s3.json").write_text(json.dumps(s3))
    (s,) = expand_inputs([tmp_path / "s3.json"], pol="VH")
    assert (s.path.name, s.meta["stac_asset"]) == (f"{cog.name}.zip", "Product")
    (s,) = expand_inputs([s.path, cog])  # CDSE's NAME_COG.SAFE.zip beside its extraction: one scene
    assert (s.id, s.path) == (cog.stem, cog)
    # every asset downloaded into one folder: a raw measurement TIFF, not a GeoTIFF to segment
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(cm["vh"], loose / cm["vh"].name)
    (tmp_path / "loose.json").write_text(json.dumps(_s1_item("L", {"vh": loose / cm["vh"].name})))
    with pytest.raises(
        InputError, match="asset 'vh' .* is a Sentinel-1 measurement outside its product folder"
    ):
        expand_inputs([tmp_path / "loose.json"])


def test_merge_unions_overlaps_of_different_scenes_only():
    box = shapely.geometry.box

    def part(sid: str, geom, fid: int) -> Part:
        props = {"id": fid, "area_m2": 100.0, "mean_prob": 0.8, "max_prob": 0.9}
        return Part(sid, None, "S1A", geom, props)

    parts = [
        part("a", box(0, 0, 1, 1), 1),
        part("b", box(0.5, 0, 2, 1), 1),  # overlaps a/1
        part("c", box(1.8, 0, 3, 1), 1),  # overlaps b/1: one chain a-b-c
        part("a", box(1, 2, 2, 3), 2),  # touches nothing
        part("d", box(2, 2, 3, 3), 1),  # shares only an edge with a/2: not merged
    ]
    feats = merge(parts)
    assert [f["scene_ids"] for f in feats] == ["a,b,c", "a", "d"]
    assert feats[0]["n_parts"] == 3 and shapely.equals(feats[0]["geometry"], box(0, 0, 3, 1))
    assert feats[0]["max_prob"] == 0.9 and feats[0]["area_m2"] > feats[1]["area_m2"]


def test_resume_accepts_a_folder_from_before_a_new_segment_setting(tmp_path):
    """A batch folder written before ``segment_scene`` gained a setting (here ``flatten``) resumes when
    the new setting is at its default, and is refused when it is not."""
    from dakd_edge.batch import runner
    from dakd_edge.errors import OutputError

    seg = {"min_area": None, "land_mask": "auto"}
    options = runner._options(None, "auto", None, None, seg)
    old = json.loads(json.dumps(options, default=str))
    del old["segment"]["flatten"]  # what an older version wrote
    (tmp_path / runner.OPTIONS).write_text(json.dumps(old))
    runner._prepare(tmp_path, options, resume=True)  # same run: accepted
    with pytest.raises(OutputError, match="other options"):
        runner._prepare(tmp_path, runner._options(None, "auto", None, None, {**seg, "flatten": True}), True)


def test_resume_of_a_folder_from_before_border_noise_masking(tmp_path):
    """Before --border-noise, old-IPF products were segmented with their border noise kept: such a
    folder resumes with ``keep`` and is refused with the new default (a silent mix of both)."""
    from dakd_edge.batch import runner
    from dakd_edge.errors import OutputError

    seg = {"min_area": None, "land_mask": "auto"}
    old = json.loads(json.dumps(runner._options(None, "auto", None, None, seg), default=str))
    del old["segment"]["border_noise"]  # what an older version wrote
    (tmp_path / runner.OPTIONS).write_text(json.dumps(old))
    runner._prepare(
        tmp_path, runner._options(None, "auto", None, None, {**seg, "border_noise": "keep"}), True
    )
    with pytest.raises(OutputError, match='border_noise: "keep" then, "auto" now'):
        runner._prepare(tmp_path, runner._options(None, "auto", None, None, seg), True)


def test_out_must_be_new_empty_or_a_batch_folder(tmp_path):
    """Someone's folder is never written into, --resume or not; a new or empty one starts a batch,
    whose batch.json comes only once the workers are up."""
    from dakd_edge.batch import runner
    from dakd_edge.errors import OutputError

    options = runner._options(None, "auto", None, None, {})
    for name in ("spills.gpkg", "manifest.jsonl", "scene0"):
        d = tmp_path / f"has_{name}"
        d.mkdir()
        (d / name).mkdir() if name == "scene0" else (d / name).write_text("USER\n")
        for resume in (False, True):
            with pytest.raises(OutputError, match=f"neither empty nor a batch folder .*holds {name}"):
                runner._prepare(d, options, resume)
        assert sorted(p.name for p in d.iterdir()) == [name]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".hidden").write_text("")
    assert runner._prepare(empty, options, resume=True) == (None, None)
    # a new folder is created only with batch.json: a run killed before leaves nothing to clean up
    assert runner._prepare(tmp_path / "new" / "sub", options, resume=True) == (None, tmp_path / "new")
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="file/sub: cannot create the batch folder"):
        runner._prepare(tmp_path / "file" / "sub", options, resume=True)


def test_damaged_batch_json_and_other_options_are_named(tmp_path):
    from dakd_edge.batch import runner
    from dakd_edge.errors import OutputError

    seg = {"min_area": None}
    options = runner._options(None, "auto", None, None, seg)
    for text in ('{"model": nu', "[]"):
        (tmp_path / runner.OPTIONS).write_text(text)
        with pytest.raises(OutputError, match=r"batch\.json is damaged: "):
            runner._prepare(tmp_path, options, resume=True)
    runner._write_options(tmp_path, {**options, "tiling": {"tile": 256, "overlap": 64}})
    other = runner._options(None, "onnxruntime", None, None, {"min_area": "10px"})
    with pytest.raises(OutputError) as e:
        runner._prepare(tmp_path, other, resume=True)
    msg = str(e.value)
    assert 'backend: "auto" then, "onnxruntime" now; segment.min_area: "5px" then, "10px" now)' in msg
    assert "flatten" not in msg  # equal settings are not listed
    # tile and overlap compare as the model resolves them: --tile 256 is the model's default 256
    stored, _ = runner._prepare(tmp_path, runner._options(None, "auto", 256, None, seg), resume=True)
    runner._check_tiling(tmp_path, stored, {"tile": 256, "overlap": 64})
    with pytest.raises(OutputError, match="tile: 256 then, 128 now"):
        runner._check_tiling(tmp_path, stored, {"tile": 128, "overlap": 64})


def test_damaged_output_of_a_scene_not_rerun_stays_out_of_the_layer(clean, scenes, tmp_path):
    import shutil

    from dakd_edge.batch import runner

    out = tmp_path / "batch"
    shutil.copytree(clean[0], out)
    vector = scene_outputs(out, "scene1")["vector"]
    vector.write_text(vector.read_text()[:100])
    summary = run([scenes / "scene0.tif"], out, workers=2, model=MODEL, resume=True)
    assert summary["run"] == 0 and summary["skipped"] == ["scene0"]
    assert "no longer match the manifest" in summary["warnings"]["scene1"][0]
    records = read_manifest(out)
    want = sum(r["spills"] for sid, r in records.items() if sid != "scene1")
    layer = read_layer(out / "spills.gpkg")
    assert summary["features"] == len(layer) == want and all(f["scene_ids"] != "scene1" for f in layer)
    # a file that verifies yet cannot be parsed is reported, not a traceback
    rec = {**records["scene1"], "sha256": {"vector": "x"}}
    build = runner._Layer(out, tmp_path / "l.gpkg")
    assert build.build({"scene1": rec}) == 0 and "cannot read (JSONDecodeError" in build.warnings["scene1"]


def test_folder_walk_lists_every_zip_and_skips_batch_folders(scenes, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "scene0.tif").write_bytes((scenes / "scene0.tif").read_bytes())
    _truncated_zip(data / "S1A_cut.zip")
    for sub, marker in (("res", None), ("old", "manifest.jsonl"), ("older", "batch.json")):
        (data / sub / "x").mkdir(parents=True)
        (data / sub / "x" / "x_classes.tif").write_bytes((scenes / "scene1.tif").read_bytes())
        if marker:
            (data / sub / marker).write_text("")
    assert [s.id for s in expand_inputs([data], skip=data / "res")] == ["S1A_cut", "scene0"]
    with pytest.raises(InputError, match="a batch output folder"):
        expand_inputs([data / "old"])


def test_run_checks_counts_before_anything(scenes, tmp_path):
    for kw, msg in (({"limit": -1}, "limit"), ({"workers": 0}, "workers"), ({"retries": -1}, "retries")):
        with pytest.raises(InputError, match=f"{msg} must be an integer >= "):
            run([scenes / "scene0.tif"], tmp_path / "batch", model=MODEL, **kw)
    assert not (tmp_path / "batch").exists()


def test_a_product_kept_both_as_safe_and_zip_is_one_scene(tmp_path: Path) -> None:
    """An archive kept beside its extraction (NAME.zip next to NAME.SAFE, as `synth-product --zip`
    writes) is one scene run from the folder, with a note; two other files with one id still stop."""
    from dakd_edge.data.sentinel1 import build_synthetic_product, zip_product

    prod = build_synthetic_product(tmp_path / "p", shape=(64, 96), seed=1, pols=("VV",))
    zipped = zip_product(prod.path)
    notes: dict[str, list[str]] = {}
    (s,) = expand_inputs([tmp_path / "p"], notes=notes)
    assert s.path == prod.path and s.id == prod.path.name.removesuffix(".SAFE")
    assert notes == {
        s.id: [f"{zipped.name} is the same product as {prod.path}: run once, from the .SAFE folder"]
    }
    (s,) = expand_inputs([zipped, prod.path])  # either order
    assert s.path == prod.path


def test_a_product_downloaded_as_uuid_zip_is_one_scene(tmp_path: Path) -> None:
    """CDSE OData saves ``<uuid>.zip``: its id is the product's, beside the .SAFE it runs once; the same
    download under two names runs once too, a different zip of that name stops on the shared id."""
    from dakd_edge.data.sentinel1 import build_synthetic_product

    prod = build_synthetic_product(tmp_path / "p", shape=(48, 64), seed=1, pols=("VV",), make_zip=True)
    name = prod.path.name.removesuffix(".SAFE")
    uuid = tmp_path / "3f2a9c1e-0b7d-4c55-9d0e-2a6f1c8e4b11.zip"
    shutil.copy(prod.zip_path, uuid)
    assert [s.id for s in expand_inputs([uuid])] == [name]
    notes: dict[str, list[str]] = {}
    assert [s.path for s in expand_inputs([uuid, prod.path], notes=notes)] == [prod.path]
    assert notes == {
        name: [f"{uuid.name} is the same product as {prod.path}: run once, from the .SAFE folder"]
    }
    notes.clear()
    assert [s.path for s in expand_inputs([prod.zip_path, uuid], notes=notes)] == [prod.zip_path]
    assert notes == {
        name: [f"{uuid.name} is the same product as {prod.zip_path}: run once, from {prod.zip_path.name}"]
    }
    other = build_synthetic_product(tmp_path / "o", shape=(48, 64), seed=2, pols=("VV",), make_zip=True)
    with pytest.raises(InputError, match=f"two scenes have the id '{name}'"):
        expand_inputs([uuid, other.zip_path])


def test_a_damaged_zip_beside_its_own_safe_does_not_stop_the_batch(tmp_path: Path) -> None:
    """A truncated NAME.zip (a re-download cut short) beside NAME.SAFE shares its id: it used to stop
    the whole batch ("two scenes have the id"); the product runs once, from the folder, with a note
    saying the zip is damaged. Alone, the damaged zip is still a scene (recorded as failed)."""
    from dakd_edge.data.sentinel1 import build_synthetic_product

    prod = build_synthetic_product(tmp_path / "p", shape=(48, 64), seed=1, pols=("VV",), make_zip=True)
    name = prod.path.name.removesuffix(".SAFE")
    data = prod.zip_path.read_bytes()
    prod.zip_path.write_bytes(data[: len(data) // 2])
    for given in ([tmp_path / "p"], [prod.zip_path, prod.path]):
        notes: dict[str, list[str]] = {}
        assert [s.path for s in expand_inputs(given, notes=notes)] == [prod.path]
        assert notes == {name: [f"{prod.zip_path.name} (a damaged or truncated zip) is named after the "
                                f"same product as {prod.path}: run once, from the .SAFE folder"]}  # fmt: skip
    assert [(s.id, s.path) for s in expand_inputs([prod.zip_path])] == [(name, prod.zip_path)]
    good = tmp_path / "3f2a9c1e-0b7d-4c55-9d0e-2a6f1c8e4b11.zip"  # the same product, downloaded again
    build_synthetic_product(tmp_path / "q", shape=(48, 64), seed=1, pols=("VV",), make_zip=True)
    shutil.move(tmp_path / "q" / prod.zip_path.name, good)
    assert [s.path for s in expand_inputs([prod.zip_path, good])] == [good]


def test_a_stac_item_beside_its_own_safe_is_one_scene(tmp_path: Path) -> None:
    """An item whose asset lies in (or zips) a .SAFE also given: one scene, from the folder, with a
    note naming the item; a VH-only item reads other pixels and still stops on the shared id."""
    from dakd_edge.data.sentinel1 import build_synthetic_product

    prod = build_synthetic_product(tmp_path / "p", shape=(48, 64), seed=1, pols=("VV", "VH"), make_zip=True)
    name = prod.path.name.removesuffix(".SAFE")
    vv, vh = (next((prod.path / "measurement").glob(f"*-{p}-*.tiff")) for p in ("vv", "vh"))
    for key, href, why in (("vv", vv, "reads the same product and polarisation (VV) as"),
                           ("Product", prod.zip_path, "is the same product as")):  # fmt: skip
        (tmp_path / "item.json").write_text(json.dumps(_s1_item(name, {key: href})))
        for given in ([tmp_path / "item.json", prod.path], [prod.path, tmp_path / "item.json"]):
            notes: dict[str, list[str]] = {}
            assert [s.path for s in expand_inputs(given, notes=notes)] == [prod.path]
            run_from = "the .SAFE folder" if key == "Product" else prod.path.name
            assert notes == {
                name: [f"{href.name} (STAC item {name!r}) {why} {prod.path}: run once, from {run_from}"]
            }
    (tmp_path / "item.json").write_text(json.dumps(_s1_item(name, {"vh": vh})))
    with pytest.raises(InputError, match=f"two scenes have the id '{name}'"):
        expand_inputs([tmp_path / "item.json", prod.path])
    assert len(expand_inputs([tmp_path / "item.json", prod.path], pol="VH")) == 1


def test_unreachable_cluster_address_fails_in_seconds() -> None:
    """ray.init retries an unreachable --address for minutes; the probe says so at once."""
    import socket
    import time

    from dakd_edge.batch.cluster import _probe
    from dakd_edge.errors import DakdError

    t0 = time.monotonic()
    for addr in ("127.0.0.1:1", "ray://127.0.0.1:1"):
        with pytest.raises(DakdError, match="cannot reach the Ray cluster at .*127.0.0.1:1"):
            _probe(addr)
    assert time.monotonic() - t0 < 5
    for addr in ("auto", "local", "ray://head-without-port"):
        _probe(addr)  # left to Ray
    with socket.create_server(("127.0.0.1", 0)) as srv:
        _probe(f"127.0.0.1:{srv.getsockname()[1]}")  # a listening head passes


def test_list_comments_need_a_blank_before_the_hash(scenes, tmp_path) -> None:
    named = tmp_path / "pass#2.tif"
    named.write_bytes((scenes / "scene0.tif").read_bytes())
    lst = tmp_path / "l.txt"
    lst.write_text(
        f"# archive of 2026-12-01\n{named}\n{scenes / 'scene1.tif'}  # the second pass\n  #{scenes}\n"
    )
    assert [s.path for s in expand_inputs([lst])] == [named, scenes / "scene1.tif"]


def test_a_hard_linked_copy_runs_once(scenes, tmp_path) -> None:
    import os

    other = tmp_path / "copy"
    other.mkdir()
    os.link(scenes / "scene0.tif", other / "scene0.tif")
    assert [s.path for s in expand_inputs([scenes / "scene0.tif", other / "scene0.tif"])] == [
        scenes / "scene0.tif"
    ]


def test_interrupt_while_workers_start_leaves_no_folder(scenes, tmp_path) -> None:
    """SIGINT while the models load: Ray's teardown outlasts the CLI's one-second grace, so the run
    exits hard, with no time to remove anything; it must not have created --out (nor its parent)."""
    import signal
    import subprocess
    import sys
    import time

    marker, out = tmp_path / "loading", tmp_path / "new" / "batch"
    script = f"""
import contextlib, time
from dakd_edge.batch import cluster, runner

@contextlib.contextmanager
def session(workers, address):  # stands in for Ray: its shutdown takes seconds
    try:
        yield None
    finally:
        time.sleep(30)

def start(ray, model, load, n):  # the workers loading their models
    open({str(marker)!r}, "w").close()
    time.sleep(60)

runner.ray_session, cluster.start_workers = session, start
runner.worker_sizes = lambda *a: (1, 1)
from dakd_edge.cli.app import main
main(["batch", {str(scenes / "scene0.tif")!r}, "-o", {str(out)!r}, "--model", {MODEL!r}, "-q"])
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], env=env, cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.stderr.read() if proc.poll() is not None else "workers never started"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=15) == 130
    assert "interrupted" in proc.stderr.read()
    assert not (tmp_path / "new").exists()


def test_switching_the_layer_format_on_resume_replaces_the_layer(clean, scenes, tmp_path) -> None:
    """The layer is rebuilt from the scenes' GeoJSON on every run, so --format may change on --resume
    (nothing the scenes wrote depends on it): the new layer replaces the old one, none is left behind."""
    import shutil

    out = tmp_path / "batch"
    shutil.copytree(clean[0], out)
    want = read_layer(out / "spills.gpkg")
    summary = run([scenes], out, workers=2, model=MODEL, resume=True, fmt="parquet")
    assert summary["run"] == 0 and summary["layer"] == str(out / "spills.parquet")
    assert not (out / "spills.gpkg").exists()
    got = read_layer(out / "spills.parquet")
    assert [(f["scene_ids"], f["geometry"]) for f in got] == [(f["scene_ids"], f["geometry"]) for f in want]
    run([scenes], out, workers=2, model=MODEL, resume=True)  # and back
    assert read_layer(out / "spills.gpkg") == want and not (out / "spills.parquet").exists()


def test_a_measurement_tiff_beside_its_product_runs_once_when_it_reads_the_same_pixels(tmp_path) -> None:
    """A measurement TIFF reads its own polarisation (--pol when given), its SAFE / zip the default
    VV: the same pixels run once, from the product, with a note; another polarisation runs too."""
    from dakd_edge.data.sentinel1 import build_synthetic_product, zip_product

    prod = build_synthetic_product(tmp_path / "p", shape=(64, 96), seed=1, pols=("VV", "VH"))
    vv, vh = (next((prod.path / "measurement").glob(f"*-{p}-*.tiff")) for p in ("vv", "vh"))
    name = prod.path.name.removesuffix(".SAFE")
    notes: dict[str, list[str]] = {}
    (s,) = expand_inputs([vv, prod.path], notes=notes)
    assert s.path == prod.path and s.id == name
    assert notes == {
        name: [f"{vv.name} reads the same product and polarisation (VV) as {prod.path}: run once, "
               f"from {prod.path.name}"]
    }  # fmt: skip
    zipped = zip_product(prod.path)
    assert [s.path for s in expand_inputs([zipped, vv])] == [zipped]
    both = expand_inputs([prod.path, vh])  # VH is another image of the sea
    assert [s.path for s in both] == [prod.path, vh] and both[0].id != both[1].id
    assert [s.path for s in expand_inputs([prod.path, vh], pol="VH")] == [prod.path]
    assert [s.path for s in expand_inputs([vv, vh], pol="vv")] == [vv]  # --pol: both TIFFs read VV
    assert len(expand_inputs([vv, vh])) == 2


def test_a_measurement_tiff_of_another_polarisation_runs_beside_its_product(local_ray, tmp_path) -> None:
    from dakd_edge.data.sentinel1 import build_synthetic_product

    prod = build_synthetic_product(tmp_path / "p", shape=(64, 96), seed=1, pols=("VV", "VH"))
    vv, vh = (next((prod.path / "measurement").glob(f"*-{p}-*.tiff")) for p in ("vv", "vh"))
    out = tmp_path / "batch"
    summary = run([prod.path, vv, vh], out, workers=1, model=MODEL, land_mask=None)
    name = prod.path.name.removesuffix(".SAFE")
    assert summary["ok"] == [name, vh.stem] and summary["failed"] == []  # the id is the TIFF's stem
    assert summary["warnings"][name][0].startswith(f"{vv.name} reads the same product and polarisation")
    records = read_manifest(out)
    assert records[vh.stem]["input"] == str(vh)
    assert all(p.is_file() for sid in summary["ok"] for p in scene_outputs(out, sid).values())


@pytest.fixture()
def small_disk(tmp_path):
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()})")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)])


def _fill(disk: Path) -> Path:
    hog = disk / "hog"
    with open(hog, "wb", buffering=0) as f, pytest.raises(OSError):
        while True:
            f.write(b"\0" * 4096)
    return hog


def test_full_disk_layer_and_manifest_say_so_in_one_line(small_disk) -> None:
    """SQLite's "database or disk is full" and a write the disk takes only part of: one OutputError
    line each, no temporary, no torn manifest line."""
    from dakd_edge.batch.layer import write_layer
    from dakd_edge.batch.manifest import append_record
    from dakd_edge.errors import OutputError

    append_record(small_disk, {"id": "a", "status": "ok"})  # the manifest's last page has room left
    before = (small_disk / "manifest.jsonl").read_bytes()
    hog = _fill(small_disk)
    features = [{"geometry": shapely.geometry.box(0, 0, 1, 1).buffer(1), **_props()} for _ in range(200)]
    for name in ("spills.gpkg", "spills.parquet"):
        with pytest.raises(OutputError, match=f"no space left on {small_disk} .writing .*{name}"):
            write_layer(small_disk / name, features)
    with pytest.raises(OutputError, match=f"no space left on {small_disk} .writing .*manifest.jsonl"):
        append_record(small_disk, {"id": "b", "status": "failed", "error": "x" * 8000})
    assert (small_disk / "manifest.jsonl").read_bytes() == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["hog", "manifest.jsonl"]
    hog.unlink()
    append_record(small_disk, {"id": "b", "status": "failed"})
    assert sorted(read_manifest(small_disk)) == ["a", "b"]


def _props() -> dict:
    return {
        "scene_ids": "s", "n_scenes": 1, "n_parts": 1, "start_time": None, "platform": None, "area_m2": 1.0,
        "mean_prob": 0.5, "max_prob": 0.9, "touches_edge": False, "near_coast": False,
    }  # fmt: skip


def test_disk_full_while_recording_a_scene_stops_and_resume_finishes(
    local_ray, scenes, clean, small_disk, monkeypatch
):
    """The manifest cannot take a finished scene's line: the run stops with one line, the scene's
    outputs go with it (unrecorded files would be refused by --resume as someone else's), batch.json
    stays whole; once space is freed, --resume finishes with the layer of the clean run."""
    from dakd_edge.batch import cluster, runner
    from dakd_edge.errors import OutputError

    ins = [scenes / f"scene{i}.tif" for i in range(3)]
    out, real, hogs = small_disk / "batch", runner.append_record, []

    def full_at_scene1(out_: Path, rec: dict, **kw) -> None:
        if rec["id"] == "scene1" and rec["status"] != "started" and not hogs:  # its finished record
            m = out_ / "manifest.jsonl"
            with open(m, "ab") as f:  # blank lines (skipped by readers) up to the page's end
                f.write(b"\n" * (-m.stat().st_size % 4096))
            hogs.append(_fill(small_disk))
        real(out_, rec, **kw)

    monkeypatch.setattr(runner, "append_record", full_at_scene1)
    # the stopped run's worker, kept alive by the traceback below, would hold the CPUs of the shared
    # Ray session: the resume's worker would wait for them (fail in a minute, not in 15)
    monkeypatch.setattr(cluster, "READY_TIMEOUT", 60.0)
    with pytest.raises(OutputError, match=f"^no space left on {small_disk} .writing .*manifest.jsonl") as e:
        run(ins, out, workers=1, model=MODEL, retries=0)
    assert sorted(read_manifest(out)) == ["scene0"]
    assert not any(p.exists() for p in scene_outputs(out, "scene1").values())
    json.loads((out / "batch.json").read_text())
    hogs[0].unlink()
    summary = run(ins, out, workers=1, model=MODEL, resume=True)
    assert summary["skipped"] == ["scene0"] and summary["ok"] == ["scene1", "scene2"]
    want = [
        f for f in read_layer(clean[0] / "spills.gpkg") if f["scene_ids"] in ("scene0", "scene1", "scene2")
    ]
    assert read_layer(out / "spills.gpkg") == want
    assert "continue it with --resume once that is fixed" in str(e.value)


# --- operations: one run per folder, --resume after a stop, seams --------------------------------


def test_a_finished_batch_resumes_without_ray_and_leaves_no_lock(clean, scenes, tmp_path, monkeypatch):
    """Nothing left to run with the same options: no Ray, no worker, a second or so; the lock file of
    the run is gone afterwards (an older batch folder has none either)."""
    import shutil
    import time

    from dakd_edge.batch import runner

    assert not (clean[0] / "batch.lock").exists()
    out = tmp_path / "batch"
    shutil.copytree(clean[0], out)

    def no_ray(*a, **k):
        raise AssertionError("Ray started for a finished batch")

    monkeypatch.setattr(runner, "ray_session", no_ray)
    t0 = time.monotonic()
    summary = run([scenes], out, workers=2, model=MODEL, resume=True)
    assert summary["run"] == 0 and len(summary["skipped"]) == 6 and time.monotonic() - t0 < 10
    assert read_layer(out / "spills.gpkg") == read_layer(clean[0] / "spills.gpkg")
    assert not (out / "batch.lock").exists()


def test_resume_of_a_finished_batch_reads_no_output_again(local_ray, scenes, tmp_path, monkeypatch):
    """--resume checked every output by its sha256: a finished archive read all its class maps again
    (GBs) on each cron run. Files unchanged since their record (size, mtime, inode) are trusted; one
    written to since, even at the same size, is hashed and runs again."""
    import shutil

    from dakd_edge.batch import manifest

    ins = [scenes / "scene0.tif", scenes / "scene1.tif"]
    out = tmp_path / "batch"
    run(ins, out, workers=1, model=MODEL)
    hashed: list[str] = []
    real = manifest.file_sha256
    monkeypatch.setattr(manifest, "file_sha256", lambda p: hashed.append(p.name) or real(p))
    assert run(ins, out, workers=1, model=MODEL, resume=True)["skipped"] == ["scene0", "scene1"]
    assert hashed == []
    vector = scene_outputs(out, "scene1")["vector"]
    text = vector.read_text()
    vector.write_text(text.replace('"id": 1', '"id": 7', 1))  # same size, other content
    assert len(vector.read_text()) == len(text) and vector.read_text() != text
    summary = run(ins, out, workers=1, model=MODEL, resume=True)
    assert summary["ok"] == ["scene1"] and "scene1_spills.geojson" in hashed
    copy = tmp_path / "copy"  # a copied folder: new inodes, checked by checksum, still done
    shutil.copytree(out, copy)
    hashed.clear()
    assert run(ins, copy, workers=1, model=MODEL, resume=True)["skipped"] == ["scene0", "scene1"]
    assert sorted(hashed) == sorted(
        f"{s}_{k}" for s in ("scene0", "scene1") for k in ("classes.tif", "spills.geojson")
    )


def test_resume_with_other_tiling_is_refused_even_when_nothing_is_left(
    local_ray, scenes, tmp_path, monkeypatch
):
    """--tile / --overlap were compared only once workers started: a finished batch resumed with
    --tile 128 passed. Now both given to a model file are decided from batch.json before Ray starts;
    one left to the model's default is resolved by the workers even with nothing to run (the bundled
    model runs at 256 / 16: --tile 256 is its own)."""
    from dakd_edge.batch import runner
    from dakd_edge.errors import OutputError
    from dakd_edge.weights import bundled_path

    onnx = dict(workers=1, model=str(bundled_path("onnxruntime")), backend="onnxruntime", land_mask=None)
    ins, out = [scenes / "scene0.tif"], tmp_path / "batch"
    assert run(ins, out, **onnx)["ok"] == ["scene0"]
    assert json.loads((out / "batch.json").read_text())["tiling"] == {"tile": 256, "overlap": 16}
    with pytest.raises(OutputError, match="other options .*tile: 256 then, 128 now"):
        run(ins, out, **onnx, resume=True, tile=128)
    with pytest.raises(OutputError, match=r"other options \(overlap: 16 then, 8 now\)"):
        run(ins, out, **onnx, resume=True, overlap=8)
    assert run(ins, out, **onnx, resume=True, tile=256)["run"] == 0
    with monkeypatch.context() as m:
        m.setattr(runner, "ray_session", None)  # both given: decided from batch.json alone
        with pytest.raises(OutputError, match="other options .*tile: 256 then, 128 now"):
            run(ins, out, **onnx, resume=True, tile=128, overlap=16)
        assert run(ins, out, **onnx, resume=True, tile=256, overlap=16)["run"] == 0
        assert run(ins, out, **onnx, resume=True)["run"] == 0
    assert not (out / "batch.lock").exists()


def test_a_scene_committed_after_its_run_stopped_is_the_batchs_own(local_ray, scenes, clean, tmp_path):
    """A run stopped (Ctrl-C, kill -9) after a worker committed a scene but before the driver recorded
    it: --resume refused those files as someone else's ("move it away"), forever. The driver now
    writes a ``started`` line before a scene goes to a worker: --resume replaces them."""
    from dakd_edge.batch.worker import SceneWorker
    from tests.batch_fake import make_predictor

    ins = [scenes / "scene0.tif", scenes / "scene1.tif"]
    out = tmp_path / "batch"
    run(ins, out, workers=1, model=MODEL)
    lines = (out / "manifest.jsonl").read_text().splitlines()
    # the stopped run: scene1 sent to a worker and committed, its record never written
    kept = [ln for ln in lines if json.loads(ln)["id"] == "scene0" or json.loads(ln)["status"] == "started"]
    (out / "manifest.jsonl").write_text("\n".join(kept) + "\n")
    for p in scene_outputs(out, "scene1").values():
        p.unlink()
    job = {"id": "scene1", "path": str(ins[1]), "meta": {}}
    assert SceneWorker(make_predictor, {}).process(job, str(out), 1, False, {})["status"] == "ok"
    summary = run(ins, out, workers=1, model=MODEL, resume=True)
    assert summary["failed"] == [] and summary["ok"] == ["scene1"] and summary["skipped"] == ["scene0"]
    want = [f for f in read_layer(clean[0] / "spills.gpkg") if f["scene_ids"] in ("scene0", "scene1")]
    assert read_layer(out / "spills.gpkg") == want
    from dakd_edge.batch.manifest import read_claims

    assert [json.loads(ln)["status"] for ln in lines] == ["started", "ok", "started", "ok"]
    assert read_claims(out)[1] == set() and sorted(read_manifest(out)) == ["scene0", "scene1"]
    # a scene whose output names hold someone's files gets no started line: its worker refuses them
    user = scene_outputs(out, "scene2")["classes"]
    user.parent.mkdir()
    user.write_text("USER\n")
    summary = run([*ins, scenes / "scene2.tif"], out, workers=1, model=MODEL, resume=True)
    assert [f["id"] for f in summary["failed"]] == ["scene2"] and read_claims(out)[1] == set()
    summary = run([*ins, scenes / "scene2.tif"], out, workers=1, model=MODEL, resume=True)
    assert "manifest does not record this scene" in summary["failed"][0]["error"]
    assert user.read_text() == "USER\n"


def test_kill_9_mid_run_then_resume_finishes(local_ray, scenes, clean, tmp_path):
    """kill -9 of the driver mid-scene: its workers still commit the scenes in flight, and its lock
    file stays behind (stale: the kernel dropped the lock). --resume runs, takes those scenes as its
    own and ends with the layer of the clean run."""
    import contextlib
    import signal
    import subprocess
    import sys
    import time

    from dakd_edge.batch.cluster import children

    slow = "tests.batch_fake:make_slow_predictor"
    out = tmp_path / "batch"
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": ""}
    cmd = [sys.executable, "-m", "dakd_edge", "batch", str(scenes), "-o", str(out), "--workers", "2", "-q"]
    proc = subprocess.Popen([*cmd, "--model", slow], env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    ray_pids: set[int] = set()
    try:
        while not list(out.glob("*/.*partial*")) and time.monotonic() < deadline and proc.poll() is None:
            kids = set(children({proc.pid}))
            ray_pids |= kids | set(children(kids))
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read()
        lock = out / "batch.lock"
        holder = json.loads(lock.read_text()) if lock.exists() else None
        proc.kill()
        proc.wait(timeout=15)
        while list(out.glob("*/.*partial*")) and time.monotonic() < deadline:  # scenes in flight finish
            time.sleep(0.1)
        stale = lock.exists()  # it must not block the resume
        summary = run([scenes], out, workers=2, model=slow, resume=True)
        assert summary["failed"] == [] and len(summary["ok"]) + len(summary["skipped"]) == 6
        assert read_layer(out / "spills.gpkg") == read_layer(clean[0] / "spills.gpkg")
        assert stale and holder is not None and holder["pid"] == proc.pid
        assert not lock.exists()
        _no_temporaries(out)
    finally:  # Ray's agents outlive a killed driver for a minute or two: not on a shared CI machine
        for pid in ray_pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _seam_pair(d: Path) -> tuple[Path, Path]:
    """Two scenes overlapping by 48 columns: a long slick cut by both scene edges inside the overlap
    (within the union, touching no outer edge), and a blob on the top edge across the overlap."""
    h, w, shift = 120, SIZE, SIZE - 48
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:h, : w + shift].astype(np.float32)
    world = 150.0 - 110.0 * np.exp(-(((yy - 60) / 8) ** 2)) * ((xx > 40) & (xx < w + shift - 40))
    world -= 110.0 * np.exp(-((yy / 8) ** 2 + ((xx - (w + shift) / 2) / 40) ** 2))
    return _split_pair(d, world + rng.normal(0, 4, world.shape), w, shift)


def test_a_slick_cut_by_the_seam_touches_no_edge_once_merged(local_ray, tmp_path):
    """Each part touches its scene's edge at the seam, where the other scene looked on: the merged
    feature lies inside the union and does not touch its edge (it was the OR of its parts); the blob on
    the top edge still does."""
    out = tmp_path / "batch"
    summary = run(_seam_pair(tmp_path), out, workers=2, model=MODEL)
    assert summary["ok"] == ["A", "B"]
    for sid in "AB":
        assert [f["properties"]["touches_edge"] for f in _features(scene_outputs(out, sid)["vector"])] == [
            True,
            True,
        ]
    feats = sorted(read_layer(out / "spills.gpkg"), key=lambda f: -f["area_m2"])
    assert [(f["scene_ids"], f["n_parts"]) for f in feats] == [("A,B", 2), ("A,B", 2)]
    assert [f["touches_edge"] for f in feats] == [False, True]


def test_resume_runs_a_replaced_input_again(local_ray, scenes, tmp_path):
    """An input replaced after its scene ran (a re-download, a reprocessed product) was skipped by
    --resume for good, its old results kept; now it runs again, saying so. The same bytes moved with
    their time kept (``cp -p``, ``rsync -a``: a new inode) do not."""
    import shutil

    data = tmp_path / "data"
    data.mkdir()
    for i in (0, 1):
        shutil.copy2(scenes / f"scene{i}.tif", data / f"scene{i}.tif")
    out = tmp_path / "batch"
    assert sorted(run([data], out, workers=1, model=MODEL)["ok"]) == ["scene0", "scene1"]
    before = read_manifest(out)["scene0"]["sha256"]["classes"]
    moved = data / "moved.tif"
    shutil.copy2(data / "scene1.tif", moved)
    moved.replace(data / "scene1.tif")  # same size and time, another inode
    shutil.copy(scenes / "scene5.tif", data / "scene0.tif")  # other pixels under the same name
    again = run([data], out, workers=1, model=MODEL, resume=True)
    assert again["ok"] == ["scene0"] and again["skipped"] == ["scene1"]
    assert "run again: its input file changed" in again["warnings"]["scene0"][0]
    after = read_manifest(out)["scene0"]["sha256"]["classes"]
    assert after != before
    assert run([data], out, workers=1, model=MODEL, resume=True)["run"] == 0


def test_resume_takes_a_default_given_explicitly(tmp_path):
    """``--min-area 5px`` is the default: a cron job that spells it out resumes a run that did not
    (it was refused: 'segment.min_area: null then, "5px" now'); another value is still refused."""
    from dakd_edge.batch import runner
    from dakd_edge.errors import OutputError

    seg = {"min_area": None, "land_mask": "auto"}
    (tmp_path / runner.OPTIONS).write_text(
        json.dumps(runner._options(None, "auto", None, None, seg), default=str)
    )
    for same in ("5px", "5 PX"):
        runner._prepare(tmp_path, runner._options(None, "auto", None, None, {**seg, "min_area": same}), True)
    with pytest.raises(OutputError, match=r'segment.min_area: "5px" then, "6px" now'):
        runner._prepare(tmp_path, runner._options(None, "auto", None, None, {**seg, "min_area": "6px"}), True)


def test_resume_refuses_a_min_area_that_differs_past_six_digits(tmp_path):
    """The spelling-neutral form of a min area in m^2 kept six significant digits ("%g"): a resume with
    --min-area 1000001 passed for a run of --min-area 1000000 (both "1e+06"); 2000 and "2e3" are one."""
    from dakd_edge.batch import runner
    from dakd_edge.errors import OutputError

    seg = {"min_area": "1000000", "land_mask": "auto"}
    (tmp_path / runner.OPTIONS).write_text(
        json.dumps(runner._options(None, "auto", None, None, seg), default=str)
    )
    runner._prepare(tmp_path, runner._options(None, "auto", None, None, {**seg, "min_area": "1e6"}), True)
    with pytest.raises(OutputError, match=r"segment.min_area: .*1000000.* then, .*1000001.* now"):
        runner._prepare(
            tmp_path, runner._options(None, "auto", None, None, {**seg, "min_area": "1000001"}), True
        )


def test_a_stopped_runs_worker_temporaries_go_with_the_next_run(local_ray, scenes, tmp_path):
    """An interrupt kills the workers mid-scene, so their temporaries stayed until that very scene ran
    again (never, for a scene dropped from the inputs, or a --resume with nothing to run). The next run
    on the folder removes those of every scene the stopped run had sent to a worker."""
    import subprocess
    import sys

    from dakd_edge.batch.manifest import append_record

    ins = [scenes / "scene0.tif"]
    out = tmp_path / "batch"
    run(ins, out, workers=1, model=MODEL)
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    temps = []
    for sid in ("scene1", "dropped"):  # in flight when the run stopped; 'dropped' is no input any more
        append_record(out, {"id": sid, "input": f"/x/{sid}.tif", "status": "started", "started": "t"})
        final = scene_outputs(out, sid)["classes"]
        final.parent.mkdir()
        temps.append(final.with_name(f".{final.name}.dakd-{p.pid}-ab12cd34.partial.tif"))
        temps[-1].write_bytes(b"\0" * 2400)
    first = scene_outputs(out, "scene1")["classes"]
    mine = first.with_name(f".{first.name}.dakd-{os.getpid()}-ab12cd34.partial.tif")  # a live run's
    mine.write_bytes(b"")
    summary = run(ins, out, workers=1, model=MODEL, resume=True)
    assert summary["run"] == 0 and not any(t.exists() for t in temps) and mine.exists()


@pytest.mark.parametrize("sig, code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_while_ray_starts_stops_it_cleanly(scenes, tmp_path, sig: str, code: int) -> None:
    """A scheduler's SIGTERM while ray.init ran exited 15 (Ray's own handler), 134 (its C++ failure
    handler's abort, with a stack dump) or -11 (a crash in its teardown), and left Ray's agents running
    for a minute. Now: the CLI's exit code and line, no process of the run left, no folder made."""
    import signal
    import subprocess
    import sys
    import time

    from dakd_edge.batch.cluster import children

    out = tmp_path / "batch"
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": ""}
    env.pop("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", None)
    cmd = [sys.executable, "-m", "dakd_edge", "batch", str(scenes / "scene0.tif"), "-o", str(out), "-q"]
    proc = subprocess.Popen([*cmd, "--workers", "1", "--model", MODEL], env=env, cwd=REPO,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    tree: set[int] = set()
    deadline = time.monotonic() + 60
    while len(tree) < 2 and proc.poll() is None and time.monotonic() < deadline:  # Ray is starting
        kids = set(children({proc.pid}))
        tree |= kids | set(children(kids))
        time.sleep(0.02)
    assert proc.poll() is None and tree, proc.stderr.read() if proc.poll() is not None else "no Ray"
    proc.send_signal(getattr(signal, sig))
    assert proc.wait(timeout=20) == code
    assert proc.stderr.read().strip().splitlines()[-1] == "dakd-edge: interrupted"
    time.sleep(1.0)
    tree |= set(children(tree))
    alive = [
        p
        for p in tree
        if Path(f"/proc/{p}/stat").exists() and ") Z" not in Path(f"/proc/{p}/stat").read_text()
    ]
    assert alive == [], [Path(f"/proc/{p}/cmdline").read_bytes()[:60] for p in alive]
    assert not out.exists()


@pytest.mark.parametrize("device", ["auto", "gpu"], ids=["auto", "a-word"])  # "gpu" in an id skips it here
def test_batch_device_is_not_auto(tmp_path, device: str) -> None:
    """Ray gives each worker the GPU the driver reserves: auto reserved none, so every worker saw every
    GPU (cuda:N stays accepted: each worker uses the one GPU it was given). The message lists what batch
    takes (the shared check's list offered auto)."""
    with pytest.raises(
        InputError, match=rf"batch --device '{device}': give cpu, cuda or cuda:N \(Ray reserves"
    ):
        run([tmp_path / "x.tif"], tmp_path / "out", device=device)
    assert not (tmp_path / "out").exists()


def test_only_the_cli_interrupt_kills_the_whole_process_tree(monkeypatch) -> None:
    """A library caller's KeyboardInterrupt in a batch run killed every child of its process (its own
    subprocesses too); only the CLI, which exits next and started nothing else, kills the tree."""
    import subprocess
    import sys
    import types

    from dakd_edge.batch import cluster

    monkeypatch.setattr(cluster, "killed_on_interrupt", False)
    no_ray = types.SimpleNamespace()  # Ray's node is not reachable: only the tree kill acts
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        cluster._kill_local_ray(no_ray, tree=False)
        assert child.poll() is None and cluster.killed_on_interrupt is False
        cluster._kill_local_ray(no_ray, tree=True)
        assert child.wait(timeout=10) == -9 and cluster.killed_on_interrupt is True
    finally:
        child.kill()


def test_an_interrupt_ray_wraps_during_its_start_is_the_cli_s(monkeypatch) -> None:
    """SIGTERM during ray.init is Ray's sys.exit(15); wrapped by Ray's GCS wait in a RuntimeError it
    exited 15, and the half-started Ray was not killed."""
    import signal

    import ray

    from dakd_edge.batch import cluster
    from dakd_edge.cli.signals import Interrupted

    def init(**kw):
        try:
            raise SystemExit(signal.SIGTERM)
        except SystemExit as e:
            raise RuntimeError("Failed to start GCS") from e

    killed = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(cluster, "_kill_local_ray", lambda r, tree=False: killed.append(tree))
    monkeypatch.setenv("RAY_ADDRESS", "")
    with pytest.raises(Interrupted) as e, cluster.ray_session(1, None):
        pass
    assert e.value.code == 143 and killed == [True]


def test_inputs_extracted_hyp3_rtc_product_is_one_scene(tmp_path):
    """An extracted ASF HyP3 RTC product holds VV, VH, layover and RGB rasters: one scene (its VV is
    read), not four; a plain folder with a *_VV.tif beside other scenes is still walked file by file."""
    from tests.inference.fake import blob_scene, write_tif

    name = "S1A_IW_20211223T051122_DVP_RTC30_G_gpuned_ABCD"
    prod = tmp_path / "archive" / name
    prod.mkdir(parents=True)
    for part in ("VV", "VH", "ls_map", "rgb"):
        write_tif(prod / f"{name}_{part}.tif", blob_scene(32, 32))
    plain = tmp_path / "archive" / "plain"
    plain.mkdir()
    for part in ("a_VV", "b"):
        write_tif(plain / f"{part}.tif", blob_scene(32, 32))
    got = expand_inputs([tmp_path / "archive"])
    assert [(s.id, s.path.name) for s in got] == [(name, name), ("a_VV", "a_VV.tif"), ("b", "b.tif")]
    assert [s.path for s in expand_inputs([prod])] == [prod]


def test_inputs_hyp3_forms_dataset_names_and_containers(tmp_path):
    """Batch audit: a HyP3 zip beside its extracted folder stopped the run on their shared id (and two
    copies of the zip were called damaged); dataset names were 'no such file'; NetCDF / HDF5 files and
    suffix-less ALOS IMG- files vanished from folder walks."""
    import zipfile

    from tests.inference.fake import blob_scene, write_tif

    name = "S1A_IW_20230105T050102_DVP_RTC30_G_gpuned_1A2B"
    root = tmp_path / "both"
    prod = root / name
    prod.mkdir(parents=True)
    vv = write_tif(prod / f"{name}_VV.tif", blob_scene(32, 32))
    write_tif(prod / f"{name}_VH.tif", blob_scene(32, 32))
    with zipfile.ZipFile(root / f"{name}.zip", "w") as z:
        z.write(vv, f"{name}/{name}_VV.tif")
    notes: dict = {}
    got = expand_inputs([root, vv], notes=notes)
    assert [(s.id, s.path.name) for s in got] == [(name, name)]
    assert len(notes[name]) == 2 and not any("damaged" in n for n in notes[name])
    lst = tmp_path / "names.txt"
    lst.write_text(f'NETCDF:"{tmp_path}/m.nc":Sigma0_VV\n')
    (s,) = expand_inputs([lst])
    assert s.id == "m_Sigma0_VV" and str(s.path).startswith("NETCDF:")
    (s,) = expand_inputs([f'NETCDF:"{tmp_path}/m.nc":Sigma0_VH'])
    assert s.id == "m_Sigma0_VH"
    walk = tmp_path / "walk"
    walk.mkdir()
    for f in ("a.nc", "b.h5", "IMG-HH-ALOS2123456789-230101-UBSL1.5GUA"):
        (walk / f).write_bytes(b"x")
    assert sorted(s.path.name for s in expand_inputs([walk])) == [
        "IMG-HH-ALOS2123456789-230101-UBSL1.5GUA", "a.nc", "b.h5",
    ]  # fmt: skip


def test_input_stat_of_a_hyp3_folder_is_its_co_pol_image(tmp_path):
    """Batch audit: --resume did not notice a replaced *_VV.tif in an extracted HyP3 product (its stat
    was null, as for a .SAFE folder)."""
    import os

    from dakd_edge.batch.worker import input_stat
    from tests.inference.fake import blob_scene, write_tif

    name = "S1A_IW_20230105T050102_DVP_RTC30_G_gpuned_1A2B"
    prod = tmp_path / name
    prod.mkdir()
    vv = write_tif(prod / f"{name}_VV.tif", blob_scene(32, 32))
    before = input_stat(prod)
    assert before is not None
    write_tif(vv, blob_scene(32, 32, seed=5))
    os.utime(vv, ns=(1, 10**18))
    assert input_stat(prod) != before
    assert input_stat(tmp_path) is None  # another folder: none, as before


def test_hyp3_scenes_carry_their_acquisition_from_the_name(tmp_path):
    """Batch audit: HyP3 scenes had no start time or platform in the layer (a scene without a time
    merges with any pass)."""
    from dakd_edge.batch.inputs import name_meta
    from tests.inference.fake import blob_scene, write_tif

    name = "S1B_IW_20211223T051122_DVP_RTC30_G_gpuned_1A2B"
    src = write_tif(tmp_path / f"{name}_VV.tif", blob_scene(32, 32))
    (s,) = expand_inputs([src])
    assert s.meta == {"start_time": "2021-12-23T05:11:22+00:00", "platform": "sentinel-1b"}
    assert name_meta(tmp_path / "IMG-HH-ALOS2123456789-230105-UBSL1.5GUA.tif") == {"platform": "alos-2"}
    assert name_meta(tmp_path / "scene.tif") == {}


def test_stac_catalogue_links_to_remote_documents_are_never_fetched(tmp_path: Path) -> None:
    """A catalogue's child link to http://... was fetched (pystac's default reader) before the error: a
    downloaded catalogue could make batch call any address. It is refused unread."""
    import http.server
    import threading

    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/child.json"
        cat = {"type": "Catalog", "stac_version": "1.0.0", "id": "c", "description": "d",
               "links": [{"rel": "child", "href": url, "type": "application/json"}]}  # fmt: skip
        (tmp_path / "catalog.json").write_text(json.dumps(cat))
        with pytest.raises(InputError, match="remote STAC documents are not read"):
            expand_inputs([tmp_path / "catalog.json"])
    finally:
        server.shutdown()
    assert hits == []


def test_a_deeply_nested_stac_file_is_one_line(tmp_path: Path) -> None:
    """100,000 levels of '[' gave a RecursionError traceback: one line, as any bad STAC file."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match="not a STAC JSON file .*nested too deeply"):
        expand_inputs([deep])


def test_files_named_by_polarisation_only_take_their_folder_name(tmp_path: Path) -> None:
    """Planetary Computer's sentinel-1-rtc keeps PRODUCT_rtc/measurement/iw-vv.rtc.tiff: two products
    stopped the batch on one id ('iw-vv.rtc'), and segment -o DIR/ named both outputs alike."""
    from dakd_edge.cli.segment import scene_stem

    names = ["S1A_IW_GRDH_1SDV_20230105T050102_20230105T050127_046647_059734_rtc",
             "S1A_IW_GRDH_1SDV_20230117T050102_20230117T050127_046822_059DB2_rtc"]  # fmt: skip
    for n in names:
        (tmp_path / n / "measurement").mkdir(parents=True)
        write_tif(tmp_path / n / "measurement" / "iw-vv.rtc.tiff", blob_scene(16, 16))
    scenes = expand_inputs([tmp_path])
    assert sorted(s.id for s in scenes) == [f"{n}-iw-vv.rtc" for n in names]
    write_tif(tmp_path / "vv.tif", blob_scene(16, 16))
    assert scene_stem(tmp_path / "vv.tif") == f"{tmp_path.name}-vv"
    assert scene_stem(tmp_path / "harbour_vv.tif") == "harbour_vv"
    assert scene_stem(tmp_path / "my.scene.v2" / "vv.tif") == "my.scene.v2-vv"  # a dotted folder whole
