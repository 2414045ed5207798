"""A model or checkpoint file that is not there is refused at once, as segment refuses a missing scene:
one line, exit 2, nothing on stdout, torch not imported (export took 3 s, jointnet generate 5 s, and
bench printed its header first)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# the CLI in a fresh interpreter: exit status, then whether torch was imported
PROBE = """
import sys
from dakd_edge.cli.app import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    print(e.code, "torch" in sys.modules)
"""


@pytest.mark.parametrize(
    "argv, missing",
    [
        (["export", "nosuch.safetensors", "-o", "m.onnx"], "nosuch.safetensors"),
        (["export", "nosuch.onnx", "-o", "m.onnx"], "nosuch.onnx"),
        (["jointnet", "generate", "nope.pt", "-o", "aug"], "nope.pt"),
        (["bench", "--model", "nosuch.onnx"], "nosuch.onnx"),
        (["bench", "--model", "saross-nano", "--model", "m/nosuch.engine"], "m/nosuch.engine"),
        (["segment", "nosuch.tif"], "nosuch.tif"),
    ],
)
def test_a_missing_file_is_one_line_before_torch(tmp_path: Path, argv: list[str], missing: str) -> None:
    r = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=tmp_path, capture_output=True, text=True)
    assert (r.stdout, r.stderr) == ("2 False\n", f"dakd-edge: error: {missing}: no such file\n")
    assert list(tmp_path.iterdir()) == []
