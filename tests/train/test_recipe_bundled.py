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


def test_from_run_ignores_where_the_start_weights_lie(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _fake_run(run, replace(bundled.RECIPE, init="/elsewhere/init-v1.safetensors"))
    assert bundled.finished_run(run, bundled.RECIPE)["steps"] == bundled.RECIPE.steps


def test_v2_fine_tunes_v1_with_real_mosaics_and_a_final_tile_size_phase() -> None:
    r = bundled.RECIPE
    assert r.init == bundled.INIT_NAME and r.real_mosaic > 0 and r.val_mosaic > 1 and r.val_fraction > 0
    assert r.final_crop == r.tile and 0 < r.final_steps <= r.steps


def test_stage_2_fine_tunes_stage_1_at_the_inference_tile() -> None:
    f, r = bundled.FINE_TUNE, bundled.RECIPE
    # same data, seed and validation split: stage 1's held-out pairs stay held out
    assert (f.seed, f.val_fraction, f.data, f.model, f.model_cfg) == (
        r.seed,
        r.val_fraction,
        r.data,
        r.model,
        r.model_cfg,
    )
    assert f.crop == f.tile == bundled.INFERENCE_TILING[0] and f.final_steps == 0 and f.val_mosaic > 1
    assert f.real_mosaic > r.real_mosaic and f.lr < r.lr


def _fake_stage(run: Path, cfg, model: str) -> None:
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    (run / "summary.json").write_text(json.dumps({"model": model, "steps": cfg.steps}))


def test_stage_3_is_stage_2_with_re_rendered_crops() -> None:
    assert bundled.REGRAIN == replace(bundled.FINE_TUNE, regrain=0.3) and bundled.FINE_TUNE.regrain == 0.0


def test_from_run_takes_stage_3_unless_told_otherwise(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _fake_stage(run, bundled.RECIPE, "/x/model.safetensors")

    def stages(*extra: str) -> dict:
        return bundled.run_stages(bundled.parser().parse_args(["--run", str(run), "--from-run", *extra]))

    def model(*extra: str) -> str:
        return stages(*extra)["model"]

    with pytest.raises(SystemExit, match="no finished run"):  # stage 2 has not run
        model("--no-regrain")
    stage2 = replace(bundled.FINE_TUNE, init="/x/stage1.safetensors")
    _fake_stage(run / bundled.FINE_TUNE_DIR, stage2, "/y/model.safetensors")
    assert model("--no-regrain") == str(run / bundled.FINE_TUNE_DIR / "model.safetensors")
    with pytest.raises(SystemExit, match="no finished run"):  # stage 3 has not run
        model()
    stage3 = replace(bundled.REGRAIN, init="/y/model.safetensors")
    _fake_stage(run / bundled.REGRAIN_DIR, stage3, "/w/model.safetensors")
    assert model() == str(run / bundled.REGRAIN_DIR / "model.safetensors")
    assert stages()["stage1"] == {"steps": bundled.RECIPE.steps}  # stage 1's record, for metrics.json
    assert model("--no-fine-tune") == str(run / "model.safetensors")
    run = tmp_path / "other"
    _fake_stage(run / bundled.FINE_TUNE_DIR, replace(bundled.FINE_TUNE, lr=1e-3), "/z/model.safetensors")
    with pytest.raises(SystemExit, match="lr"):  # another stage-2 configuration is another model
        model("--no-regrain")
    _fake_stage(run / bundled.REGRAIN_DIR, bundled.FINE_TUNE, "/z/model.safetensors")
    with pytest.raises(SystemExit, match="regrain"):  # stage 2's configuration is not stage 3's
        model()


def test_fetch_init_refuses_other_weights(tmp_path: Path) -> None:
    dest = tmp_path / "init.safetensors"
    dest.write_bytes(b"not version 1")
    with pytest.raises(SystemExit, match="SHA-256"):
        bundled.fetch_init(dest)


def test_best_so_far_needs_a_checkpoint_and_a_best_model(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _fake_run(run, bundled.RECIPE)
    with pytest.raises(SystemExit, match="best.safetensors"):
        bundled.stopped_run(run, bundled.RECIPE, tmp_path)


def test_from_run_accepts_a_run_written_before_later_options(tmp_path: Path) -> None:
    """v2 was trained before ``mosaic_gain`` / ``mosaic_calm`` existed: a missing key is its default."""
    run = tmp_path / "run"
    _fake_run(run, bundled.RECIPE)
    old = json.loads((run / "config.json").read_text())
    for key in ("mosaic_gain", "mosaic_calm"):
        del old[key]
    (run / "config.json").write_text(json.dumps(old))
    assert bundled.finished_run(run, bundled.RECIPE)["steps"] == bundled.RECIPE.steps
    with pytest.raises(SystemExit, match="mosaic_gain"):  # but a run that used the option is another run
        bundled.finished_run(run, replace(bundled.RECIPE, mosaic_gain=0.5))


def test_installed_weights_carry_the_recipe_tiling() -> None:
    """``INFERENCE_TILING`` is what `segment` uses only once written into the installed file (--retile)."""
    from dakd_edge.models.checkpoint import read_meta
    from dakd_edge.weights import bundled_path

    meta = read_meta(bundled_path("torch"))
    assert (meta.tile, meta.overlap) == bundled.INFERENCE_TILING


def test_retile_changes_the_metadata_only(tmp_path: Path) -> None:
    import torch

    from dakd_edge import create_model
    from dakd_edge.meta import ModelMeta
    from dakd_edge.models.checkpoint import load_model_file, save_model

    torch.manual_seed(0)
    model = create_model("saross-nano", num_classes=2).eval()
    target = tmp_path / "m.safetensors"
    save_model(target, model, ModelMeta.default_for("saross-nano", 2, tile=512, overlap=64))
    bundled.retile(target)
    again, meta = load_model_file(target)
    assert (meta.tile, meta.overlap) == bundled.INFERENCE_TILING
    before, after = model.state_dict(), again.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(SystemExit, match="not installed"):
        bundled.retile(tmp_path / "absent.safetensors")


def test_training_runs_each_stage_from_the_last_ones_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Path, str, int]] = []

    def fake_train(cfg, out: Path, resume=None, progress=False, overwrite=False) -> dict:
        calls.append((out, cfg.init, cfg.steps))
        out.mkdir(parents=True, exist_ok=True)
        return {"model": str(out / "model.safetensors"), "steps": cfg.steps, "best": {"miou": 0.5}}

    monkeypatch.setattr(bundled, "train", fake_train)
    run, init = tmp_path / "run", tmp_path / "v1.safetensors"
    args = [
        "--run",
        str(run),
        "--init",
        str(init),
        "--steps",
        "800",
        "--fine-tune-steps",
        "3",
        "--regrain-steps",
        "2",
    ]
    summary = bundled.run_stages(bundled.parser().parse_args(args))
    stage2, stage3 = run / bundled.FINE_TUNE_DIR, run / bundled.REGRAIN_DIR
    assert calls == [
        (run, str(init), 800),
        (stage2, str(run / "model.safetensors"), 3),
        (stage3, str(stage2 / "model.safetensors"), 2),
    ]
    assert summary["model"] == str(stage3 / "model.safetensors")
    assert summary["stage1"]["steps"] == 800 and "wall_seconds" in summary["stage1"]
    assert json.loads((stage3 / "summary.json").read_text())["stage1"] == summary["stage1"]
    calls.clear()
    assert bundled.run_stages(bundled.parser().parse_args([*args, "--no-regrain"]))["model"] == str(
        stage2 / "model.safetensors"
    )
    assert [c[0] for c in calls] == [run, stage2]
    calls.clear()
    assert bundled.run_stages(bundled.parser().parse_args([*args, "--no-fine-tune"]))["model"] == str(
        run / "model.safetensors"
    )
    assert [c[0] for c in calls] == [run]
