"""benchmarks/ablations.py runs end to end with smoke settings (real code paths, tiny data)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from dakd_edge.data.augmented import AugmentedWriter
from tests.train.tiny import blob_sample, write_folder

REPO = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("ablations", REPO / "benchmarks" / "ablations.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _pairs(n: int, seed: int) -> list:
    out = []
    for i in range(n):
        s = blob_sample(seed + i, 32)
        out.append((np.rint(s["image"][0] * 255).astype(np.uint8), s["mask"].astype(np.uint8)))
    return out


def test_ablations_fast_writes_json_and_markdown(tmp_path):
    write_folder(tmp_path / "ds" / "train", _pairs(8, 0))
    write_folder(tmp_path / "ds" / "test", _pairs(2, 100))
    with AugmentedWriter(tmp_path / "aug", 2, ["background", "oil"], 0.45, {"test": True}) as w:
        for i, (img, mask) in enumerate(_pairs(4, 200)):
            logits = np.stack([np.where(mask == 0, 2.0, -2.0), np.where(mask == 1, 2.0, -2.0)])
            w.add(f"{i:06d}", img, logits.astype(np.float16))
    mod = _load_script()
    out, md = tmp_path / "abl.json", tmp_path / "abl.md"
    args = ["--fast", "--data", str(tmp_path / "ds"), "--aug", str(tmp_path / "aug"), "--groups", "data,model",
            "-o", str(out), "--markdown", str(md)]  # fmt: skip
    assert mod.main(args) == 0
    res = json.loads(out.read_text())
    assert set(res["groups"]) == {"data", "model"}
    assert set(res["groups"]["model"]) == {"saross-nano", "unet-r18", "deeplabv3plus-r18"}
    row = res["groups"]["data"]["gen-soft (DAKD)"]
    assert len(row["runs"]) == 1 and 0.0 <= row["miou_mean"] <= 1.0
    text = md.read_text()
    assert "## (data)" in text and "| gen-hard |" in text

    # Without an augmented set group (b) is reported as not run, not faked.
    assert mod.main(["--fast", "--data", str(tmp_path / "ds"), "--groups", "data", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["groups"]["data"].startswith("Not run")
