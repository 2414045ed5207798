"""The data layer, metrics and synth/info CLI must import without torch (ONNX Runtime edge installs)."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "dakd_edge.data",
    "dakd_edge.data.synthetic",
    "dakd_edge.data.augmented",
    "dakd_edge.data.osd",
    "dakd_edge.data.sos",
    "dakd_edge.data.folder",
    "dakd_edge.data.transforms",
    "dakd_edge.data.rasterinfo",
    "dakd_edge.data.sentinel1",
    "dakd_edge.data.landmask",
    "dakd_edge.metrics",
    "dakd_edge.cli.synth",
]


def test_no_torch_import() -> None:
    code = "import sys\n" + "".join(f"import {m}\n" for m in MODULES)
    code += "bad = [m for m in ('torch', 'triton') if m in sys.modules]\nassert not bad, bad\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
