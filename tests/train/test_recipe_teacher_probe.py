"""The DAKD teacher probe (issue 16, item 3) runs end to end on a tiny SOS folder and resumes per stage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dakd_edge.train.recipes import bundled, teacher_probe

SOS = bundled.default_data()


def _tiny_sos(root: Path, per_sensor: int = 5) -> Path:
    """A copy of a few real SOS training pairs in the release's layout (tmp only, never the repo)."""
    for sensor in ("palsar", "sentinel"):
        src, dst = SOS / "train" / sensor, root / "train" / sensor
        dst.mkdir(parents=True)
        for mask in sorted(src.glob("*_mask.png"))[:per_sensor]:
            stem = mask.name.removesuffix("_mask.png")
            shutil.copy(mask, dst / mask.name)
            shutil.copy(src / f"{stem}_sat.jpg", dst / f"{stem}_sat.jpg")
    return root


@pytest.mark.skipif(not (SOS / "train").is_dir(), reason="the shared SOS data is not on this machine")
def test_probe_trains_generates_and_compares_two_finetunes(tmp_path: Path) -> None:
    data, run = _tiny_sos(tmp_path / "sos"), tmp_path / "run"
    # Tiny schedules; the fine-tunes' crops, split and 3 x 3 validation mosaics stay the recipe's.
    argv = ["--data", str(data), "--run", str(run), "--stage-steps", "1,1,1", "--generate", "2",
            "--ddim-steps", "2", "--finetune-steps", "2"]  # fmt: skip
    teacher_probe.main(argv)

    result = json.loads((run / "probe.json").read_text())
    assert (run / "teacher" / "stage3.pt").is_file()
    assert len(list((run / "generated" / "images").glob("*.png"))) == 2
    assert len(list((run / "generated" / "logits").glob("*.npy"))) == 2
    for name in ("control", "dakd"):
        vals = result[name]["validations"]
        assert vals and all(0.0 <= v["val_miou"] <= 1.0 for v in vals)
        assert (run / name / "model.safetensors").is_file()
    assert result["control"]["aug"] is None and result["dakd"]["aug"] == str(run / "generated")

    # A finished probe is not retrained: a second call reuses every stage and reports the same numbers.
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*.safetensors")}
    teacher_probe.main(argv)
    assert json.loads((run / "probe.json").read_text()) == result
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*.safetensors")} == before
