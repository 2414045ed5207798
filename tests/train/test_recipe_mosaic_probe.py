"""The mosaic probe (issue 16, whole scenes): its variants differ as documented and run end to end."""

from __future__ import annotations

import json
from dataclasses import replace
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
    level = mosaic_probe.VARIANTS["level"]
    assert _changed(level) - _changed(tile) == {"level_shift"} and tile.level_shift == 0.0 < level.level_shift
    regrain = mosaic_probe.VARIANTS["regrain"]
    assert _changed(regrain) - _changed(tile) == {"regrain"} and tile.regrain == 0.0 < regrain.regrain
    # tile256 is the recipe's stage 2 (version 2.1) but for its start; level10 is that at shifted levels
    assert replace(tile, init=bundled.FINE_TUNE.init) == bundled.FINE_TUNE
    level10 = mosaic_probe.VARIANTS["level10"]
    assert replace(level10, init=bundled.FINE_TUNE.init) == replace(bundled.FINE_TUNE, level_shift=0.1)


def test_recipe_variants_are_the_bundled_recipe_with_windows_from_version_1() -> None:
    full, t256 = (mosaic_probe.VARIANTS[k] for k in ("window128-recipe", "window128-tile256-recipe"))
    # only the window differs from the run that gave version 2, which started from version 1 too
    assert _changed(full) == {"model_cfg"} and full.model_cfg == {"caft_window": 128}
    assert full.init == bundled.RECIPE.init == bundled.INIT_NAME
    # the 256 px schedule: no 512 px phase, mosaics and validation cuts at the 256 px inference tile
    assert _changed(t256) == {"model_cfg", "real_mosaic", "final_steps", "final_crop", "final_batch", "tile"}
    assert t256.final_steps == 0 and t256.crop == t256.tile == bundled.INFERENCE_TILING[0] == 256
    assert t256.real_mosaic == 0.8 and t256.init == bundled.INIT_NAME


def test_recipe_variants_start_from_version_1_and_the_others_from_the_bundled_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: dict[str, str] = {}

    def fake_fetch(dest: Path) -> Path:
        return dest  # version 1's file from git history is the recipe tests' business

    def fake_bundled(dest: Path) -> Path:
        return dest  # a copy of the installed weights

    def fake_fine_tune(cfg, out: Path) -> list:
        started[out.name] = cfg.init
        return []

    monkeypatch.setattr(mosaic_probe, "fetch_init", fake_fetch)
    monkeypatch.setattr(mosaic_probe, "bundled_init", fake_bundled)
    monkeypatch.setattr(mosaic_probe, "fine_tune", fake_fine_tune)
    for name in ("window128", "window128-recipe", "window128-tile256-recipe"):
        mosaic_probe.run_variant(tmp_path, name, tmp_path / "sos")
    assert started == {
        "window128": str(tmp_path / mosaic_probe.INIT_NAME),
        "window128-recipe": str(tmp_path / bundled.INIT_NAME),
        "window128-tile256-recipe": str(tmp_path / bundled.INIT_NAME),
    }


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
        assert json.loads((run / name / "summary.json").read_text())["stopped"] is False  # installable
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
