"""`dakd-edge synth-product` writes a Sentinel-1 product that `info` describes and `segment` reads."""

from __future__ import annotations

import json
from pathlib import Path

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
