"""benchmarks/scene.py --s1 with border noise: one child per --border-noise mode on the same product."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_s1_border_noise_modes(tmp_path: Path) -> None:
    out = tmp_path / "s1.json"
    cmd = [sys.executable, str(ROOT / "benchmarks/scene.py"), "--s1", "--s1-source", str(tmp_path / "none"),
           "--size", "256x384", "--s1-border-noise", "40,30", "--border-noise", "keep,mask", "--threads", "1",
           "--workdir", str(tmp_path / "work"), "-o", str(out)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["product"]["border_noise_px"] == [40, 30]
    keep, mask = doc["by_border_noise"]
    assert (keep["mode"], mask["mode"]) == ("keep", "mask")
    assert keep["border_noise"].startswith("kept") and mask["border_noise"].startswith("masked")
    # the generated product's 40 / 30 px borders are about 18 % of its 384 columns: called oil when kept
    assert keep["class_fraction"]["oil"] > mask["class_fraction"]["oil"] + 0.1
    assert doc["result"]["border_noise"] == keep["border_noise"]
