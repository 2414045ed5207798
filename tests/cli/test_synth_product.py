"""`dakd-edge synth-product` writes a Sentinel-1 product that `info` describes and `segment` reads."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import rasterio

from dakd_edge.cli import segment as seg_cli
from dakd_edge.inference.predictor import Predictor
from tests.inference.fake import FakeBackend


def test_synth_product_info_segment(tmp_path: Path, monkeypatch, run_cli) -> None:
    code, out, err = run_cli(["synth-product", str(tmp_path / "p"), "--size", "200x300", "--zip"])
    assert code == 0, err
    zip_path = Path(out.strip())
    assert zip_path.suffix == ".zip" and zip_path.with_suffix(".SAFE").is_dir()
    code, out, err = run_cli(["info", str(zip_path), "--json"])
    assert code == 0, err
    meta = json.loads(out)
    assert (meta["mission"], meta["mode"], meta["height"], meta["width"]) == ("S1A", "IW", 200, 300)
    monkeypatch.setattr(
        seg_cli, "load_predictor", lambda *a: Predictor(FakeBackend(tile=64), tile=64, overlap=16)
    )
    rep = tmp_path / "r.json"
    code, _, err = run_cli(
        ["segment", str(zip_path), "-o", str(tmp_path / "c.tif"), "--report", str(rep), "-q"]
    )
    assert code == 0, err
    r = json.loads(rep.read_text())
    assert r["georeference"] == "gcps" and r["input_scale"] == "linear" and r["product"]["mission"] == "S1A"


def test_synth_product_bad_offset(tmp_path: Path, run_cli) -> None:
    code, _, err = run_cli(["synth-product", str(tmp_path / "p"), "--offset", "x"])
    assert code == 2 and len(err.strip().splitlines()) == 1


REAL = "s1/S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones too) with its content."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_synth_product_refuses_an_existing_product_unless_overwrite(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "p"
    args = ["synth-product", str(out), "--size", "48x64", "--zip"]
    assert run_cli(args)[0] == 0
    before = _tree(out)
    assert sorted(p.name for p in out.iterdir()) == sorted({Path(k).parts[0] for k in before})
    code, _, err = run_cli([*args, "--seed", "1"])
    assert code == 2 and "--overwrite" in err and err.count("\n") == 1
    assert _tree(out) == before
    code, stdout, err = run_cli([*args, "--seed", "1", "--overwrite"])
    assert code == 0, err
    after = _tree(out)
    assert after.keys() == before.keys() and after != before  # replaced, nothing else left in OUT
    assert Path(stdout.strip()).is_file()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--size", "16"], "32x32"),
        (["--size", "20x64"], "32x32"),
        (["--seed", "-1"], "--seed"),
        (["--center", "60.5"], "LAT,LON"),
        (["--center", "91,0"], "latitude -90..90"),
        (["--center", "0,181"], "longitude -180..180"),
        (["--ipf", "2.9"], "NNN.NN"),
        (["--border-noise", "5"], "NEAR,FAR"),
        (["--border-noise", "5,-1"], ">= 0"),
    ],
)
def test_synth_product_bad_options_write_nothing(tmp_path: Path, run_cli, args: list[str], says: str) -> None:
    out = tmp_path / "new" / "p"
    code, _, err = run_cli(["synth-product", str(out), *args])
    assert code == 2 and says in err and err.count("\n") == 1 and "Traceback" not in err
    if "--size" in args:
        assert "--size" in err
    assert not (tmp_path / "new").exists()  # OUT is created only when a product is written


def test_synth_product_center_on_the_antimeridian(tmp_path: Path, run_cli, shared_data: Path) -> None:
    """--center places a generated product (e.g. across longitude 180, for the Bering Sea); not with
    --from, whose geolocation is the real product's."""
    code, out, err = run_cli(
        ["synth-product", str(tmp_path / "p"), "--size", "64x96", "--center", "60.5,179.999"]
    )
    assert code == 0, err
    code, out, err = run_cli(["info", out.strip(), "--json"])
    meta = json.loads(out)
    west, south, east, north = meta["bounds"]
    assert west > 179.9 and east < -179.9 and 60.4 < south < north < 60.6  # west > east: across 180
    assert meta["footprint_wkt"].startswith("MULTIPOLYGON")
    code, _, err = run_cli(
        ["synth-product", str(tmp_path / "q"), "--from", str(shared_data / REAL), "--center", "1,2"]
    )
    assert code == 2 and "--center" in err and "--from" in err and not (tmp_path / "q").exists()


def test_synth_product_old_ipf_with_border_noise(tmp_path: Path, run_cli) -> None:
    """--ipf 002.72 --border-noise N,F makes a product as IPF < 2.90 wrote them: segment masks its
    border (the report and info say so); --ipf is for generated products only."""
    code, out, err = run_cli(["synth-product", str(tmp_path / "p"), "--size", "128x192", "--ipf", "002.72",
                              "--border-noise", "24,16"])  # fmt: skip
    assert code == 0, err
    safe = Path(out.strip())
    code, out, _ = run_cli(["info", str(safe), "--json"])
    assert json.loads(out)["border_noise"] == "masked (IPF 002.72)"
    with rasterio.open(next((safe / "measurement").glob("*-vv-*.tiff"))) as ds:
        dn = ds.read(1).astype(np.float64)
    assert np.median(dn[:, :20]) < 0.5 * np.median(dn[:, 40:-40])  # low DNs at the near edge
    code, _, err = run_cli(["synth-product", str(tmp_path / "q"), "--from", str(safe), "--ipf", "002.72"])
    assert code == 2 and "--ipf" in err and "--from" in err


def test_synth_product_too_small_crop_of_a_real_product(tmp_path: Path, run_cli, shared_data: Path) -> None:
    src = shared_data / REAL
    if not (src / "manifest.safe").is_file():
        pytest.skip("no Sentinel-1 product in the shared data")
    out = tmp_path / "p"
    code, _, err = run_cli(["synth-product", str(out), "--from", str(src), "--size", "1x1"])
    assert code == 2 and "--size" in err and "32x32" in err and err.count("\n") == 1
    assert not out.exists()
    # its manifest.safe names the product as segment takes it (was Click's "Directory ... is a file")
    code, _, err = run_cli(["synth-product", str(out), "--from", str(src / "manifest.safe"), "--size", "1x1"])
    assert code == 2 and "32x32" in err and "is a file" not in err
    code, _, err = run_cli(
        ["synth-product", str(out), "--from", str(next((src / "annotation").glob("*.xml")))]
    )
    assert code == 2 and "give a .SAFE folder or its manifest.safe" in err and not out.exists()


def test_synth_product_interrupted_leaves_nothing_new(tmp_path: Path, monkeypatch, run_cli) -> None:
    """An interrupt while the pixels are written: no partial product under the final name, the OUT
    folder this run made is gone, and a product being replaced (--overwrite) stays as it was."""
    from dakd_edge.cli.signals import Interrupted
    from dakd_edge.data.synthetic import SceneLayout

    render = SceneLayout.render
    calls = [0]

    def interrupted_render(self, *a, **k):
        calls[0] += 1
        if calls[0] == 2:  # the second band (the VH measurement): the VV one is complete
            raise Interrupted(signal.SIGTERM)
        return render(self, *a, **k)

    monkeypatch.setattr(SceneLayout, "render", interrupted_render)
    fresh = tmp_path / "fresh"
    code, _, err = run_cli(["synth-product", str(fresh), "--size", "64", "--zip"])
    assert code == 143 and "interrupted" in err
    assert not fresh.exists()

    monkeypatch.setattr(SceneLayout, "render", render)
    kept = tmp_path / "kept"
    assert run_cli(["synth-product", str(kept), "--size", "64", "--zip"])[0] == 0
    before = _tree(kept)
    monkeypatch.setattr(SceneLayout, "render", interrupted_render)
    calls[0] = 0
    code, _, _ = run_cli(["synth-product", str(kept), "--size", "64", "--zip", "--seed", "2", "--overwrite"])
    assert code == 143 and _tree(kept) == before


def _main(argv: list[str]) -> int:
    """``dakd-edge *argv`` in-process; stderr is read with ``capfd``: libtiff prints to the C stderr."""
    from dakd_edge.cli.app import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    return int(e.value.code or 0)


def test_synth_product_on_a_disk_filling_mid_write_prints_one_line(tmp_path: Path, capfd) -> None:
    """libtiff printed "_tiffWriteProc: No space left on device." and "_tiffSeekProc: ..." above ours."""
    from tests.fs import fill, leftovers, tmpfs

    with tmpfs(tmp_path / "disk", "4m") as disk:
        fill(disk, leave=1_700_000)  # past the 1.5 MB estimate; the product needs ~3.5 MB
        code = _main(["synth-product", str(disk / "p")])
        err = capfd.readouterr().err
        assert code == 2 and len(err.splitlines()) == 1, err
        assert err.startswith(f"dakd-edge: error: no space left on {disk} (writing {disk}/p/S1A_"), err
        assert leftovers(disk) == ["hog.bin"]


def test_synth_product_fails_when_only_libtiff_saw_the_disk_fill(tmp_path: Path, capfd, monkeypatch) -> None:
    """The disk filling after the last strip: GDAL's close does not fail, so the product was renamed
    into place with a measurement GDAL cannot read, exit 0; libtiff's line was the only sign."""
    from dakd_edge.data import sentinel1
    from tests.fs import fill, leftovers, tmpfs

    write = sentinel1._write_measurements
    with tmpfs(tmp_path / "disk", "4m") as disk:

        def then_full(*args):  # progress, the last argument: called after each strip is written
            def progress(done: int, total: int) -> None:
                if done == total:
                    fill(disk)

            return write(*args[:-1], progress)

        monkeypatch.setattr(sentinel1, "_write_measurements", then_full)
        code = _main(["synth-product", str(disk / "p"), "--size", "256"])
        err = capfd.readouterr().err
        assert code == 2, err
        assert len(err.splitlines()) == 1, err
        assert err.startswith(f"dakd-edge: error: no space left on {disk} (writing {disk}/p/S1A_"), err
        assert leftovers(disk) == ["hog.bin"], "the product and the folder made are removed"
