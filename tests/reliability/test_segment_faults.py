"""`dakd-edge segment` against damaged inputs and faults: one line, exit code, nothing half-written.

Every case ends either in exit 0 with complete outputs, or in one ``dakd-edge: error: ...`` line and
no file under any final name (and no temporary left behind).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from dakd_edge.atomic import Transaction
from dakd_edge.cli import segment as seg_cli
from dakd_edge.errors import InputError, OutputError
from dakd_edge.inference import geotiff
from dakd_edge.inference.predictor import Predictor
from dakd_edge.inference.segment import segment_scene
from tests.inference.fake import FakeBackend, blob_scene, write_tif
from tests.reliability.cli import one_error_line, run

REPO = Path(__file__).resolve().parents[2]


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    """Files in ``folder`` other than ``keep`` (finals, temporaries, side-cars)."""
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def tiled_scene(path: Path, size: int = 1024, block: int = 128) -> Path:
    return write_tif(
        path,
        blob_scene(size, size, seed=2),
        tiled=True,
        blockxsize=block,
        blockysize=block,
        compress="deflate",
    )


def block_offset(path: Path, col: int, row: int) -> tuple[int, int]:
    with rasterio.open(path) as ds:
        off = int(ds.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1))
        size = int(ds.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=1))
    return off, size


# --- damaged inputs ----------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [1 / 3, 0.9])
def test_truncated_geotiff_one_line_no_outputs(tmp_path: Path, fake_model, capsys, fraction: float) -> None:
    src = tiled_scene(tmp_path / "s.tif")
    os.truncate(src, int(src.stat().st_size * fraction))
    out = tmp_path / "out"
    out.mkdir()
    argv = ["segment", str(src), "-o", str(out / "c.tif"), "--probs", str(out / "p.tif")]
    code, _, err = run(
        [*argv, "--vector", str(out / "v.geojson"), "--report", str(out / "r.json"), "-q"], capsys
    )
    one_error_line(code, err, str(src), "damaged or truncated")
    assert leftovers(out, set()) == []


def test_corrupt_tile_mid_scene_leaves_nothing(tmp_path: Path) -> None:
    """A corrupt deflate block that sampling does not touch fails mid-stream, after rows were written."""
    src = tiled_scene(tmp_path / "s.tif", size=2304, block=128)
    # rows 1408..1536 lie between the 128-px windows that scale detection samples (8 x 8 grid)
    off, size = block_offset(src, 3, 11)
    with open(src, "r+b") as f:
        f.seek(off)
        f.write(b"\xff" * size)
    rows: list[int] = []
    out = tmp_path / "out"
    out.mkdir()
    pred = Predictor(FakeBackend(tile=64), tile=128, overlap=16, batch=4)
    with pytest.raises(InputError, match=r"s\.tif: damaged or truncated raster \(.*\)") as e:
        segment_scene(
            pred,
            src,
            out / "c.tif",
            probs=out / "p.tif",
            vector=out / "v.gpkg",
            report=out / "r.json",
            progress=lambda done, h, st: rows.append(done),
        )
    assert "\n" not in str(e.value)
    assert rows and rows[-1] >= 1024, "the damage must be met while streaming, after some rows"
    assert leftovers(out, set()) == []


def test_directory_as_scene(tmp_path: Path, fake_model, capsys) -> None:
    code, _, err = run(["segment", str(tmp_path), "-o", str(tmp_path / "c.tif"), "-q"], capsys)
    one_error_line(code, err, str(tmp_path), "is a directory")


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["segment"], "Missing argument"),
        (["segment", "x.tif", "--tile", "5"], "--tile"),
        (["segment", "x.tif", "--nope"], "--nope"),
        (["nosuchcommand"], "nosuchcommand"),
    ],
)
def test_usage_errors_are_one_line(argv: list[str], needle: str, capsys) -> None:
    code, _, err = run(argv, capsys)
    one_error_line(code, err, needle)


# --- outputs that cannot be written ------------------------------------------------------------


@pytest.mark.parametrize("folder", ["/proc", "/sys"])
def test_unwritable_output_folder(tmp_path: Path, fake_model, capsys, folder: str) -> None:
    if not Path(folder).is_dir():
        pytest.skip(f"{folder} does not exist here")
    src = write_tif(tmp_path / "s.tif", blob_scene(64, 64))
    code, _, err = run(["segment", str(src), "-o", f"{folder}/c.tif", "-q"], capsys)
    one_error_line(code, err, folder, "cannot create files")


def test_full_disk_injected_enospc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while the COG copy is written: one OutputError naming the device, nothing left."""
    src = write_tif(tmp_path / "s.tif", blob_scene(200, 200))
    out = tmp_path / "out"
    out.mkdir()
    real = geotiff.CogWriter.finish

    def finish(self, dest):
        if self.kind != "classes":
            Path(dest).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device", str(dest))
        return real(self, dest)

    monkeypatch.setattr(geotiff.CogWriter, "finish", finish)
    pred = Predictor(FakeBackend(tile=64), tile=64, overlap=16)
    with pytest.raises(OutputError, match="no space left on .*p.tif"):
        segment_scene(pred, src, out / "c.tif", probs=out / "p.tif", vector=out / "v.geojson")
    assert leftovers(out, set()) == []


def test_truncated_output_is_caught_before_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A finished COG that was cut short (GDAL reported nothing) fails verification: nothing renamed."""
    src = write_tif(tmp_path / "s.tif", (np.random.default_rng(0).random((600, 600)) * 255).astype(np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    real = geotiff.CogWriter.finish

    def finish(self, dest):
        p = real(self, dest)
        if self.kind == "probs_uint8":
            os.truncate(p, p.stat().st_size * 2 // 3)
        return p

    monkeypatch.setattr(geotiff.CogWriter, "finish", finish)
    pred = Predictor(FakeBackend(tile=64), tile=128, overlap=16)
    with pytest.raises(OutputError, match="p.tif"):
        segment_scene(pred, src, out / "c.tif", probs=out / "p.tif", report=out / "r.json")
    assert leftovers(out, set()) == []


def _tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()})")


def _slow_cli(args: list[str], sleep: float = 0.0, **kw) -> subprocess.Popen:
    env = {**os.environ, "DAKD_FAKE_SLEEP": str(sleep), "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.slowcli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_full_disk_real_tmpfs(tmp_path: Path) -> None:
    """On a real, small filesystem: refused up front when clearly too small; and when the estimate
    passes but the disk fills while writing (GDAL's own error), one line too. Never a segfault, never
    a file under a final name."""
    disk = tmp_path / "disk"
    _tmpfs(disk, "256k")
    try:
        noise = (np.random.default_rng(1).random((1024, 1024)) * 255).astype(np.uint8)
        src = write_tif(tmp_path / "s.tif", noise)
        p = _slow_cli(["segment", str(src), "-o", str(disk / "c.tif"), "--probs", str(disk / "p.tif"), "-q"])
        _, err = p.communicate(timeout=120)
        one_error_line(p.returncode, err, "no space left on", str(disk))
        assert leftovers(disk, set()) == []
        # 600^2 passes the estimate (about 1.9 MB) on 4 MB; once its first temporary exists (past the
        # free-space check), the disk is eaten from outside under the running job
        small = write_tif(tmp_path / "m.tif", noise[:600, :600])
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
        hog = disk / "hog.bin"
        cmd = ["segment", str(small), "-o", str(disk / "c.tif"), "--probs", str(disk / "p.tif")]
        p = _slow_cli(
            [*cmd, "--probs-dtype", "float16", "--tile", "128", "--overlap", "16", "-q"], sleep=0.05
        )
        _wait_for_temps(disk, p)
        with open(hog, "wb", buffering=0) as f, pytest.raises(OSError):
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        _, err = p.communicate(timeout=120)
        hog.unlink()
        assert p.returncode == 2, err
        one_error_line(p.returncode, err, "no space left on")
        assert leftovers(disk, set()) == []
    finally:
        subprocess.run(["umount", str(disk)])


# --- interruption, killed runs ------------------------------------------------------------------


def _wait_for_temps(folder: Path, p: subprocess.Popen, timeout: float = 60.0) -> list[Path]:
    t0 = time.time()
    while time.time() - t0 < timeout:
        temps = [q for q in folder.iterdir() if ".dakd-" in q.name and ".partial" in q.name]
        if temps:
            return temps
        assert p.poll() is None, p.communicate()
        time.sleep(0.05)
    raise AssertionError("the run never started writing")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signal_stops_fast_and_cleans(tmp_path: Path, sig: int, code: int) -> None:
    src = write_tif(tmp_path / "s.tif", blob_scene(512, 512))
    out = tmp_path / "out"
    out.mkdir()
    p = _slow_cli(
        [
            "segment",
            str(src),
            "-o",
            str(out / "c.tif"),
            "--probs",
            str(out / "p.tif"),
            "--vector",
            str(out / "v.geojson"),
            "--report",
            str(out / "r.json"),
            "-q",
        ],
        sleep=0.3,
        # a run under a terminal, as the suite may itself run under nohup (SIGHUP then ignored, inherited)
        preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL),
    )
    _wait_for_temps(out, p)
    t0 = time.time()
    p.send_signal(sig)
    _, err = p.communicate(timeout=30)
    took = time.time() - t0
    assert p.returncode == code, err
    assert err.strip().splitlines()[-1] == "dakd-edge: interrupted"
    # the run stops after at most the watchdog's 1 s grace; the rest is process start-up/exit slack
    # on a loaded 2-core machine
    assert took < 2.5, f"took {took:.2f} s to stop"
    assert leftovers(out, set()) == []


def test_a_hangup_the_parent_ignores_is_ignored(tmp_path: Path) -> None:
    """Under `nohup` SIGHUP is ignored; the CLI's own handler replaced that, so closing the terminal
    of a `nohup dakd-edge ...` run stopped it (exit 129)."""
    src = write_tif(tmp_path / "s.tif", blob_scene(256, 256))
    out = tmp_path / "out"
    out.mkdir()
    p = _slow_cli(
        ["segment", str(src), "-o", str(out / "c.tif"), "-q"],
        sleep=0.3,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),  # what nohup does
    )
    _wait_for_temps(out, p)
    p.send_signal(signal.SIGHUP)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert (out / "c.tif").is_file() and leftovers(out, {"c.tif"}) == []


def test_signal_while_blocked_in_c_still_stops_within_grace(tmp_path: Path) -> None:
    """A main thread stuck in a long backend call: the watchdog cleans up and exits by itself."""
    src = write_tif(tmp_path / "s.tif", blob_scene(256, 256))
    out = tmp_path / "out"
    out.mkdir()
    # time.sleep releases the GIL but the signal handler only runs when it returns: 20 s per tile
    p = _slow_cli(["segment", str(src), "-o", str(out / "c.tif"), "-q"], sleep=20)
    _wait_for_temps(out, p)
    time.sleep(0.3)
    t0 = time.time()
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 143 and "interrupted" in err, err
    assert time.time() - t0 < 3.0
    assert leftovers(out, set()) == []


def test_killed_run_temporaries_removed_by_next_run(tmp_path: Path, fake_model, capsys) -> None:
    src = write_tif(tmp_path / "s.tif", blob_scene(512, 512))
    out = tmp_path / "out"
    out.mkdir()
    args = ["segment", str(src), "-o", str(out / "c.tif"), "--probs", str(out / "p.tif"), "-q"]
    p = _slow_cli(args, sleep=0.3)
    temps = _wait_for_temps(out, p)
    p.kill()
    p.wait()
    assert all(t.exists() for t in temps), "SIGKILL cannot clean up: the temporaries stay"
    assert not (out / "c.tif").exists()
    # a temporary of a live process (this one's parent) is not touched
    live = out / f".c.tif.dakd-{os.getppid()}-abcd1234.tmp.tif"
    live.write_bytes(b"x")
    code, _, err = run(args, capsys)
    assert code == 0, err
    assert leftovers(out, {"c.tif", "p.tif"}) == [live.name]


# --- overwrite never destroys an input; collisions found before any work --------------------------


def test_overwrite_refuses_inputs_and_duplicates(tmp_path: Path, fake_model, capsys) -> None:
    src = write_tif(tmp_path / "s.tif", blob_scene(96, 96))
    before = src.read_bytes()
    hard = tmp_path / "hard.tif"
    os.link(src, hard)
    soft = tmp_path / "soft.tif"
    soft.symlink_to(src)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model")
    c = str(tmp_path / "c.tif")
    cases = [
        (["-o", str(src)], "refusing to overwrite an input"),
        (["-o", str(hard)], "refusing to overwrite an input"),
        (["-o", str(soft)], "refusing to overwrite an input"),
        (["-o", c, "--probs", str(src)], "refusing to overwrite an input"),
        (["-o", c, "--model", str(model), "--vector", str(model.with_suffix(".geojson"))], None),
        (["-o", c, "--model", str(model), "--report", str(model)], "refusing to overwrite an input"),
        (["-o", c, "--report", c], "same path"),
        (["-o", c, "--probs", c], "same path"),
    ]
    for extra, needle in cases:
        code, _, err = run(["segment", str(src), *extra, "--overwrite", "-q"], capsys)
        if needle is None:
            assert code == 0, err
            continue
        one_error_line(code, err, needle)
        assert src.read_bytes() == before and model.read_bytes() == b"model"


def test_the_bundled_model_files_are_never_an_output(tmp_path: Path) -> None:
    """The real installed files, directly and through links, with --overwrite: refused up front."""
    from dakd_edge.atomic import check_output
    from dakd_edge.weights import installed_files

    files = installed_files()
    assert {p.suffix for p in files.values()} >= {".safetensors", ".onnx"}
    for i, p in enumerate(files.values()):
        link = tmp_path / f"link{i}{p.suffix}"
        link.symlink_to(p)
        for target in (p, link):
            with pytest.raises(OutputError, match="refusing to overwrite the package's model"):
                check_output(target, overwrite=True)
    check_output(p.with_name("another-output.tif"), overwrite=True)  # the folder itself is not refused


def test_commands_refuse_to_write_over_the_bundled_model(
    tmp_path: Path, fake_model, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """`segment -o/--probs/--report/--vector`, `bench --json`, `export -o` aimed at a bundled file
    (stand-ins here, so a regression cannot destroy the real ones): one line, the file untouched."""
    import dakd_edge.weights as weights

    shipped = tmp_path / "weights"
    shipped.mkdir()
    files = {name: shipped / name for name in ("m.safetensors", "m.onnx", "m.metrics.json", "m.geojson")}
    for p in files.values():
        p.write_bytes(b"shipped")
    monkeypatch.setattr(
        weights, "installed_files", lambda: {f"bundled model file {k}": p for k, p in files.items()}
    )
    src = write_tif(tmp_path / "s.tif", blob_scene(96, 96))
    c = str(tmp_path / "c.tif")
    cases = [
        ["segment", str(src), "-o", str(files["m.safetensors"])],
        ["segment", str(src), "-o", c, "--probs", str(files["m.onnx"])],
        ["segment", str(src), "-o", c, "--report", str(files["m.metrics.json"])],
        ["segment", str(src), "-o", c, "--vector", str(files["m.geojson"])],
        ["bench", "--json", str(files["m.metrics.json"])],
        ["export", "-o", str(files["m.onnx"])],
    ]
    for argv in cases:
        code, _, err = run([*argv, "--overwrite"], capsys)
        one_error_line(code, err, "refusing to overwrite the package's model")
        assert all(p.read_bytes() == b"shipped" for p in files.values()), argv
    assert not Path(c).exists()


def test_same_stem_scenes_collide_before_any_work(tmp_path: Path, fake_model, capsys) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    s1 = write_tif(tmp_path / "a" / "scene.tif", blob_scene(64, 64))
    s2 = write_tif(tmp_path / "b" / "scene.tif", blob_scene(64, 64, seed=1))
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run(["segment", str(s1), str(s2), "-o", str(out), "-q"], capsys)
    one_error_line(code, err, "same path", "scene_classes.tif")
    assert leftovers(out, set()) == []


def test_existing_output_found_before_reading(tmp_path: Path, monkeypatch, capsys) -> None:
    """A collision with an existing file is reported before the model loads or a tile is read."""
    src = write_tif(tmp_path / "s.tif", blob_scene(64, 64))
    (tmp_path / "v.geojson").write_text("{}")
    monkeypatch.setattr(seg_cli, "load_predictor", lambda *a: pytest.fail("model loaded before checks"))
    code, _, err = run(
        ["segment", str(src), "-o", str(tmp_path / "c.tif"), "--vector", str(tmp_path / "v.geojson")], capsys
    )
    one_error_line(code, err, "output exists", "v.geojson")


# --- awkward but valid inputs ---------------------------------------------------------------------


def test_all_nodata_scene_succeeds(tmp_path: Path, fake_model, capsys) -> None:
    src = write_tif(tmp_path / "nd.tif", np.zeros((150, 130), np.uint8), nodata=0)
    c, p, v, r = (tmp_path / n for n in ("c.tif", "p.tif", "v.geojson", "r.json"))
    code, out, err = run(
        ["segment", str(src), "-o", str(c), "--probs", str(p), "--vector", str(v), "--report", str(r), "-q"],
        capsys,
    )
    assert code == 0, err
    assert "all nodata" in out
    rep = json.loads(r.read_text())
    assert rep["all_nodata"] is True and rep["valid_fraction"] == 0 and rep["tiles"]["run"] == 0
    assert rep["spills"] == 0
    with rasterio.open(c) as ds:
        assert (ds.read(1) == 255).all()
    with rasterio.open(p) as ds:
        assert (ds.read() == 255).all()
    assert json.loads(v.read_text())["features"] == []


def test_grey_as_rgb_uses_band_one(tmp_path: Path, fake_model, capsys) -> None:
    g = blob_scene(96, 96)
    rgb = write_tif(tmp_path / "rgb.tif", np.stack([g, g, g]))
    grey = write_tif(tmp_path / "grey.tif", g)
    code, _, err = run(["segment", str(rgb), "-o", str(tmp_path / "a.tif"), "-q"], capsys)
    assert code == 0, err
    notes = err.strip().splitlines()
    assert len(notes) == 1 and "identical" in notes[0] and "band 1" in notes[0]
    code, _, err = run(["segment", str(grey), "-o", str(tmp_path / "b.tif"), "-q"], capsys)
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
    diff = write_tif(tmp_path / "diff.tif", np.stack([g, g, 255 - g]))
    code, _, err = run(["segment", str(diff), "-o", str(tmp_path / "d.tif"), "-q"], capsys)
    one_error_line(code, err, "different bands", "--band")


@pytest.mark.parametrize("extra", [["--overlap", "200"], ["--tile", "128", "--overlap", "100"]])
def test_overlap_too_large_is_an_error(tmp_path: Path, fake_model, capsys, extra: list[str]) -> None:
    src = write_tif(tmp_path / "s.tif", blob_scene(64, 64))
    code, _, err = run(["segment", str(src), "-o", str(tmp_path / "c.tif"), *extra, "-q"], capsys)
    one_error_line(code, err, "--overlap", "half the tile")


def test_predict_accepts_channels_last() -> None:
    pred = Predictor(FakeBackend(tile=64), tile=64, overlap=16)
    g = blob_scene(80, 70)
    ref = pred.predict(g)
    with pytest.warns(UserWarning, match="identical"):
        np.testing.assert_array_equal(pred.predict(np.stack([g, g, g], -1)), ref)
    np.testing.assert_array_equal(pred.predict(g[..., None]), ref)
    with pytest.raises(InputError, match="3 different bands.*image\\[\\.\\.\\., 0\\]"):
        pred.predict(np.stack([g, g, 255 - g], -1))


# --- outputs a GIS user can read ----------------------------------------------------------------


def test_probabilities_carry_scale_and_names(tmp_path: Path) -> None:
    src = write_tif(tmp_path / "s.tif", blob_scene(128, 128))
    pred = Predictor(FakeBackend(num_classes=3, tile=64), tile=64, overlap=16)
    segment_scene(pred, src, tmp_path / "c.tif", probs=tmp_path / "p.tif")
    with rasterio.open(tmp_path / "p.tif") as ds:
        assert ds.scales == pytest.approx((1 / 250,) * 3, rel=1e-9)
        assert ds.offsets == (0.0, 0.0, 0.0)
        names = pred.meta.class_names
        assert ds.descriptions == tuple(f"P({n})" for n in names)
        raw = ds.read(masked=True).astype(np.float64)
        scaled = raw * ds.scales[0] + ds.offsets[0]
        total = scaled.sum(0)
        assert np.abs(total - 1.0).max() <= 3 * 0.5 / 250 + 1e-9  # sum of rounded probabilities


def test_min_area_filters_specks(tmp_path: Path) -> None:
    a = np.full((120, 120), 200, np.uint8)
    a[10:40, 10:60] = 10  # a spill of 1500 px (150000 m^2 at 10 m)
    a[80:82, 80:82] = 10  # a 4 px speck
    src = write_tif(tmp_path / "s.tif", a)
    pred = Predictor(ThresholdBackend(tile=64), tile=64, overlap=16)
    r = segment_scene(pred, src, tmp_path / "c.tif", vector=tmp_path / "v.geojson")
    assert (r["spills"], r["spills_filtered"], r["filtered_area_px"]) == (1, 1, 4)
    assert r["min_area"] == {"m2": None, "pixels": 5}
    feats = json.loads((tmp_path / "v.geojson").read_text())["features"]
    assert all(f["properties"]["area_px"] >= 5 for f in feats)
    px_m2 = 100 / 0.9996**2  # a 10 m UTM pixel near the central meridian, on the ellipsoid
    assert r["oil_area_m2"] == pytest.approx(1504 * px_m2, rel=1e-4)  # every oil pixel of the class map
    assert r["spills_area_m2"] == pytest.approx(1500 * px_m2, rel=1e-4)  # the polygons kept
    assert r["spills_area_m2"] == pytest.approx(sum(f["properties"]["area_m2"] for f in feats), abs=0.1)
    r2 = segment_scene(pred, src, tmp_path / "c2.tif", vector=tmp_path / "v2.geojson", min_area="200000")
    assert (r2["spills"], r2["spills_filtered"]) == (0, 2)
    assert r2["spills_area_m2"] == 0.0 and r2["oil_area_m2"] == r["oil_area_m2"]
    r3 = segment_scene(pred, src, tmp_path / "c4.tif", min_area="2px")
    assert (r3["spills"], r3["spills_filtered"]) == (2, 0)
    for bad in ("lots", "inf", "1e400", "nan"):  # inf / 1e400 silently dropped every spill
        with pytest.raises(InputError, match="--min-area"):
            segment_scene(pred, src, tmp_path / "c3.tif", min_area=bad)


class ThresholdBackend(FakeBackend):
    """Oil exactly where the normalised input is below its mean (pixel-exact, no context)."""

    def predict(self, batch: np.ndarray) -> np.ndarray:
        x = batch[:, 0]
        return np.stack([20 * x, -20 * x], 1).astype(np.float32)


def test_demo_folder_is_ignored_by_git() -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    r = subprocess.run(["git", "check-ignore", "-q", "dakd-demo/classes.tif"], cwd=REPO)
    assert r.returncode == 0


def test_transaction_is_all_or_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), Transaction({"a": tmp_path / "a.txt", "b": tmp_path / "b.txt"}) as tx:
        tx.temp("a").write_text("a")
        tx.temp("b").write_text("b")
        raise RuntimeError("dies before commit")
    assert leftovers(tmp_path, set()) == []
    with Transaction({"a": tmp_path / "a.txt", "b": tmp_path / "b.txt"}) as tx:
        tx.temp("a").write_text("a")
        tx.temp("b").write_text("b")
        assert leftovers(tmp_path, set()) == sorted(p.name for p in tx.temps.values())
        tx.commit()
    assert leftovers(tmp_path, set()) == ["a.txt", "b.txt"]


@pytest.mark.parametrize("folder", ["/proc", "/sys"])
def test_export_unwritable_output_folder(folder: str, capsys) -> None:
    if not Path(folder).is_dir():
        pytest.skip(f"{folder} does not exist here")
    pytest.importorskip("torch")
    code, _, err = run(["export", "-o", f"{folder}/m.onnx"], capsys)
    one_error_line(code, err, folder, "cannot create files")


# --- outputs that are not regular files; inputs other than the scene; odd output names --------------


def _node(tmp_path: Path, kind: str) -> Path:
    """A non-regular output target; a regression replaces only this node (never the system's)."""
    p = tmp_path / f"{kind}.tif"
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "devnull-link":
        p.symlink_to("/dev/null")
    else:
        try:
            os.mknod(p, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("mknod needs CAP_MKNOD")
    return p


@pytest.mark.parametrize(
    "kind, word", [("fifo", "FIFO"), ("devnull-link", "character device"), ("chardev", "character device")]
)
def test_overwrite_refuses_device_nodes_and_fifos(
    tmp_path: Path, fake_model, capsys, kind: str, word: str
) -> None:
    """`-o /dev/null --overwrite` (as root) once turned /dev/null into a regular file (audit F2)."""
    src = write_tif(tmp_path / "s.tif", blob_scene(96, 96))
    node = _node(tmp_path, kind)
    mode = node.stat().st_mode
    c = str(tmp_path / "c.tif")
    for extra in (["-o", str(node)], ["-o", c, "--probs", str(node)], ["-o", c, "--report", str(node)]):
        code, _, err = run(["segment", str(src), *extra, "--overwrite", "-q"], capsys)
        one_error_line(code, err, str(node), word, "not a regular file")
        assert node.stat().st_mode == mode and node.is_symlink() == (kind == "devnull-link")
    assert leftovers(tmp_path, {"s.tif", node.name}) == []


def test_commit_never_renames_over_a_fifo_made_meanwhile(tmp_path: Path) -> None:
    final = tmp_path / "a.tif"
    with pytest.raises(OutputError, match="FIFO"), Transaction({"a": final}) as tx:
        tx.temp("a").write_text("a")
        os.mkfifo(final)
        tx.commit()
    assert stat.S_ISFIFO(final.lstat().st_mode) and leftovers(tmp_path, {"a.tif"}) == []


def test_overwrite_never_replaces_files_the_run_reads(tmp_path: Path, fake_model, capsys) -> None:
    """The land mask (and a shapefile's parts), an engine's metadata, GDAL side-cars and the files of
    a Sentinel-1 product are inputs too (audit F8: `--vector land.geojson --land-mask land.geojson`)."""
    src = write_tif(tmp_path / "s.tif", blob_scene(96, 96))
    land = tmp_path / "land.geojson"
    shp = tmp_path / "coast.shp"
    engine = tmp_path / "m.engine"
    safe = tmp_path / "S1A_IW_GRDH_X.SAFE"
    (safe / "annotation").mkdir(parents=True)
    reads = [land, shp, shp.with_suffix(".dbf"), engine, tmp_path / "m.engine.json"]
    reads += [tmp_path / "s.tif.aux.xml", safe / "manifest.safe", safe / "annotation" / "a.xml"]
    for p in reads:
        p.write_text("user data")
    c = str(tmp_path / "c.tif")
    cases = [
        ([src, "-o", c, "--land-mask", land, "--vector", land], f"--vector {land} is the land mask {land}"),
        ([src, "-o", c, "--land-mask", shp, "--report", shp.with_suffix(".dbf")], "land mask's .dbf file"),
        ([src, "-o", c, "--model", engine, "--report", f"{engine}.json"], "is the model metadata"),
        ([src, "-o", c, "--report", f"{src}.aux.xml"], "input scene's .aux.xml file"),
        ([safe, "-o", c, "--report", safe / "manifest.safe"], "is the input product file"),
        ([safe, "-o", c, "--report", safe / "annotation" / "a.xml"], "is the input product file"),
    ]
    for argv, needle in cases:
        code, _, err = run(["segment", *map(str, argv), "--overwrite", "-q"], capsys)
        one_error_line(code, err, needle, "refusing to overwrite an input")
        assert all(p.read_text() == "user data" for p in reads), argv
    assert not Path(c).exists()


def test_land_mask_is_protected_in_segment_scene_too(
    tmp_path: Path, fake_model, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import dakd_edge.inference.segment as seg

    src = write_tif(tmp_path / "s.tif", blob_scene(96, 96))
    land = tmp_path / "land.geojson"
    land.write_text("{}")
    seen: dict = {}

    def fake_segment_scene(*a, protect=None, **kw):
        seen.update(protect or {})
        raise InputError("stop")

    monkeypatch.setattr(seg, "segment_scene", fake_segment_scene)
    code, _, err = run(
        ["segment", str(src), "-o", str(tmp_path / "c.tif"), "--land-mask", str(land), "-q"], capsys
    )
    one_error_line(code, err, "stop")
    assert {k: Path(v) for k, v in seen.items()} == {"land mask": land}


def test_input_collision_message_names_each_path_once(tmp_path: Path, fake_model, capsys) -> None:
    """Was `out of x.tif x.tif is the input scene x.tif x.tif: ...` (audit F10)."""
    src = write_tif(tmp_path / "s.tif", blob_scene(96, 96))
    code, _, err = run(["segment", str(src), "-o", str(src), "--overwrite", "-q"], capsys)
    line = one_error_line(code, err)
    assert line == f"dakd-edge: error: -o {src} is the input scene {src}: refusing to overwrite an input"
    c = tmp_path / "c.tif"
    code, _, err = run(["segment", str(src), "-o", str(c), "--report", str(c), "--overwrite", "-q"], capsys)
    assert one_error_line(code, err) == f"dakd-edge: error: -o and --report are the same path: {c}"
    # two scenes of one stem into one folder: the line names both scenes (was '-o and -o ...')
    (tmp_path / "a").mkdir()
    (tmp_path / "out").mkdir()
    twin = write_tif(tmp_path / "a" / "s.tif", blob_scene(96, 96))
    code, _, err = run(["segment", str(src), str(twin), "-o", f"{tmp_path / 'out'}/", "-q"], capsys)
    assert one_error_line(code, err) == (
        f"dakd-edge: error: -o of {src} and -o of {twin} are the same path: {tmp_path / 'out' / 's_classes.tif'}"
    )


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["-o", "newdir/"], "-o newdir/: not an existing folder"),
        (["--probs", "newdir/"], "--probs newdir/: not an existing folder"),
        (["--report", "newdir/"], "--report newdir/: not an existing folder"),
        (["-o", "s.tif/"], "-o s.tif/: not an existing folder"),
        (["-o", "out.png"], "use a .tif or .tiff name"),
        (["-o", "out.jpg"], "use a .tif or .tiff name"),
        (["-o", "out"], "use a .tif or .tiff name"),
        (["-o", "-"], "use a .tif or .tiff name"),
        (["--probs", "p.xyz"], "--probs p.xyz: rasters are written as GeoTIFF"),
        (["--vector", "v.xyz"], "unknown vector format"),
        (["-o", "{bogus}.tif"], "unknown placeholder {bogus}; only {stem} is supported"),
        (["--report", "{0}_r.json"], "unknown placeholder {0}"),
        (["-o", "a{.tif"], "literal brace"),
        (["-o", "{stem!r}.tif"], "plain {stem}"),
        (["--vector", "{stem:>20}.geojson"], "plain {stem}"),
    ],
)
def test_surprising_output_names_are_refused_up_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, extra: list[str], needle: str
) -> None:
    """Each of these once wrote a file under a surprising name (audit F9)."""
    monkeypatch.chdir(tmp_path)
    write_tif(tmp_path / "s.tif", blob_scene(64, 64))
    monkeypatch.setattr(seg_cli, "load_predictor", lambda *a: pytest.fail("model loaded before checks"))
    code, _, err = run(["segment", "s.tif", *extra, "--overwrite", "-q"], capsys)
    one_error_line(code, err, needle)
    assert leftovers(tmp_path, {"s.tif"}) == []


def test_stem_template_and_tiff_names_still_work(tmp_path: Path, fake_model, capsys) -> None:
    src = write_tif(tmp_path / "s.tif", blob_scene(64, 64))
    (tmp_path / "out").mkdir()
    argv = ["segment", str(src), "-o", str(tmp_path / "out/{stem}.TIFF"), "--probs", str(tmp_path / "out/")]
    code, _, err = run([*argv, "--report", str(tmp_path / "out/{stem}_r.json"), "-q"], capsys)
    assert code == 0, err
    assert leftovers(tmp_path / "out", set()) == ["s.TIFF", "s_probs.tif", "s_r.json"]


def test_report_dash_writes_json_to_stdout(tmp_path: Path, fake_model, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    write_tif(tmp_path / "s.tif", blob_scene(64, 64))
    code, out, err = run(["segment", "s.tif", "-o", "c.tif", "--report", "-", "-q"], capsys)
    assert code == 0, err
    assert json.loads(out)["outputs"] == {"classes": "c.tif"}
    assert "s.tif: 64 rows x 64 cols" in err  # the summary moves to stderr
    assert leftovers(tmp_path, {"s.tif", "c.tif"}) == []


@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "-1", "1e12", "20001"])
def test_coast_buffer_must_be_finite_and_bounded(tmp_path: Path, fake_model, capsys, value: str) -> None:
    """`inf`/`nan` were tracebacks, 1e12 an "out of memory" (audit F5); checked even without land."""
    src = write_tif(tmp_path / "s.tif", blob_scene(64, 64))
    code, _, err = run(["segment", str(src), "-o", str(tmp_path / "c.tif"), "--coast-buffer", value], capsys)
    one_error_line(code, err, "--coast-buffer", "from 0 to 20000 metres")
    code, _, err = run(
        ["segment", str(src), "-o", str(tmp_path / "c.tif"), "--coast-buffer", "20000", "-q"], capsys
    )
    assert code == 0, err
