"""The bundled-model recipe installs only runs of its own configuration (``--from-run``)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from dakd_edge.train.recipes import bundled


def _fake_run(run: Path, cfg) -> None:
    run.mkdir()
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    (run / "summary.json").write_text(
        json.dumps({"model": "/elsewhere/model.safetensors", "steps": cfg.steps})
    )


def test_from_run_accepts_the_recipe_config_with_another_data_path(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _fake_run(run, replace(bundled.RECIPE, data="/some/other/sos"))
    summary = bundled.finished_run(run, replace(bundled.RECIPE, data="/data/sos"))
    assert summary["model"] == str(run / "model.safetensors")  # resolved inside the run folder
    assert summary["steps"] == bundled.RECIPE.steps


@pytest.mark.parametrize("change", [{"crop": 64}, {"model": "saross-nano"}, {"seed": 1}])
def test_from_run_refuses_another_config(tmp_path: Path, change: dict) -> None:
    run = tmp_path / "run"
    _fake_run(run, replace(bundled.RECIPE, **change))
    with pytest.raises(SystemExit, match=next(iter(change))):
        bundled.finished_run(run, bundled.RECIPE)


def test_from_run_needs_a_finished_run(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no finished run"):
        bundled.finished_run(tmp_path, bundled.RECIPE)
