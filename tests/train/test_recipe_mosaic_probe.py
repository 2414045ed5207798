"""The mosaic probe (issue 16, whole scenes): its two fine-tunes differ as documented and run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dakd_edge.train.recipes import bundled, mosaic_probe
from tests.train.test_recipe_teacher_probe import SOS, _tiny_sos


def _changed(cfg) -> set[str]:
    a, b = cfg.to_dict(), bundled.RECIPE.to_dict()
    return {k for k in a if a[k] != b[k]}


def test_variants_change_only_the_tile_schedule_and_the_brightness_factors() -> None:
    tile, gain, calm = (mosaic_probe.VARIANTS[k] for k in ("tile256", "gain", "calm"))
    # Same data, seed and validation split as the bundled recipe: the held-out pairs stay held out.
    assert tile.seed == gain.seed == bundled.RECIPE.seed and tile.val_fraction == bundled.RECIPE.val_fraction
    assert tile.crop == tile.tile == 256 and tile.final_steps == 0 and tile.val_mosaic == 3
    assert _changed(gain) - _changed(tile) == {"mosaic_gain"} and tile.mosaic_gain == 0.0 < gain.mosaic_gain
    assert _changed(calm) - _changed(tile) == {"mosaic_calm"} and tile.mosaic_calm == 0.0 < calm.mosaic_calm
    window = mosaic_probe.VARIANTS["window128"]
    assert _changed(window) - _changed(tile) == {"model_cfg"} and window.model_cfg == {"caft_window": 128}


@pytest.mark.skipif(not (SOS / "train").is_dir(), reason="the shared SOS data is not on this machine")
def test_probe_trains_the_variants_and_resumes(tmp_path: Path) -> None:
    data, run = _tiny_sos(tmp_path / "sos"), tmp_path / "run"
    argv = [
        "--data",
        str(data),
        "--run",
        str(run),
        "--steps",
        "2",
        "--variant",
        "tile256",
        "--variant",
        "gain",
        "--variant",
        "window128",
    ]
    mosaic_probe.main(argv)
    result = json.loads((run / "probe.json").read_text())
    for name, gain in (("tile256", 0.0), ("gain", 0.5)):
        assert json.loads((run / name / "config.json").read_text())["mosaic_gain"] == gain
        vals = result[name]["validations"]
        assert vals and all(0.0 <= v["val_miou"] <= 1.0 and "val_mosaic_miou" in v for v in vals)
    from dakd_edge.models.checkpoint import read_meta

    # the window starts from the bundled (whole-map) weights and is saved with the fine-tuned model
    assert read_meta(run / "window128" / "model.safetensors").arch["caft_window"] == 128
    assert read_meta(run / "tile256" / "model.safetensors").arch["caft_window"] is None
    before = {p: p.stat().st_mtime_ns for p in run.rglob("model.safetensors")}
    mosaic_probe.main(argv)  # finished runs are reused, not retrained
    assert {p: p.stat().st_mtime_ns for p in run.rglob("model.safetensors")} == before
    assert json.loads((run / "probe.json").read_text()) == result
