"""The torch-free edge runtime, installed the way the README says: a fresh venv with only ``.[runtime]``.

``segment``, ``demo``, ``info``, ``evaluate`` and ``bench`` must work there (bench lists torch rows as
skipped, with the reason); ``models`` and ``export`` must say in one line which extra to install. The
venv is built from this checkout with ``pip install -c constraints.txt -e ".[runtime]"`` (pip finds the
packages wherever it is configured to: PyPI in CI, a local index on an offline box).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL = [
    "-m",
    "pip",
    "install",
    "--quiet",
    "--disable-pip-version-check",
    "-c",
    str(REPO / "constraints.txt"),
]

pytestmark = pytest.mark.slow


class Runtime:
    """A venv with dakd-edge[runtime] and the files the commands read."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "venv" / "bin"
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        self.env["PATH"] = f"{self.bin}{os.pathsep}{self.env.get('PATH', '')}"

    def run(self, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(args), capture_output=True, text=True, cwd=self.root, env=self.env, timeout=timeout
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return self.run(str(self.bin / "dakd-edge"), *args)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Runtime:
    rt = Runtime(tmp_path_factory.mktemp("runtime"))
    r = rt.run(sys.executable, "-m", "venv", str(rt.root / "venv"))
    assert r.returncode == 0, r.stderr[-2000:]
    r = rt.run(str(rt.bin / "python"), *INSTALL, "-e", f"{REPO}[runtime]", timeout=900)
    assert r.returncode == 0, f"pip install failed:\n{r.stderr[-4000:]}"
    for module in ("torch", "safetensors", "onnx"):  # the point of the exercise
        r = rt.run(str(rt.bin / "python"), "-c", f"import {module}")
        assert r.returncode != 0 and f"No module named '{module}'" in r.stderr
    _write_inputs(rt.root)
    return rt


def _write_inputs(root: Path) -> None:
    """A small scene (made here, with this process's rasterio) and a 2-image images/+masks/ dataset."""
    from PIL import Image

    from dakd_edge.data.synthetic import write_scene_geotiff

    write_scene_geotiff(root / "scene.tif", seed=3, height=192, width=160)
    for sub in ("images", "masks"):
        (root / "data" / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).save(root / f"data/images/{i}.png")
        Image.fromarray((rng.random((64, 64)) > 0.8).astype(np.uint8)).save(root / f"data/masks/{i}.png")


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    assert "Traceback" not in r.stderr
    return r


def test_runtime_commands_work_without_torch(runtime: Runtime) -> None:
    assert "192" in ok(runtime.cli("info", "scene.tif")).stdout
    ok(runtime.cli("segment", "scene.tif", "-o", "classes.tif", "--quiet"))
    assert (runtime.root / "classes.tif").stat().st_size > 0
    ok(runtime.cli("demo", "--size", "128", "-o", "demo", "--quiet"))
    assert (runtime.root / "demo").is_dir()
    ok(runtime.cli("evaluate", "--data", "data", "--json", "metrics.json"))
    assert json.loads((runtime.root / "metrics.json").read_text())["images"] == 2
    # No --model: the bundled ONNX file (the checkpoint needs torch); torch rows say why they are skipped.
    bench = ["bench", "--tile", "64", "--iters", "2", "--warmup", "1", "--json", "bench.json", "--overwrite"]
    ok(runtime.cli(*bench, "--backend", "torch,onnxruntime"))
    rows = {r["backend"]: r for r in json.loads((runtime.root / "bench.json").read_text())["results"]}
    assert rows["onnxruntime"]["status"] == "ok" and rows["onnxruntime"]["model"].startswith("bundled:")
    assert rows["torch"]["status"] == "skipped" and "needs PyTorch" in rows["torch"]["reason"]
    ok(runtime.cli(*bench, "--backend", "onnxruntime"))


@pytest.mark.parametrize(
    ("args", "needs"),
    [
        (("models",), "'models' needs PyTorch"),
        (("export", "-o", "m.onnx"), "'export' needs PyTorch, safetensors and onnx"),
    ],
)
def test_torch_commands_name_the_extra(runtime: Runtime, args: tuple[str, ...], needs: str) -> None:
    r = runtime.cli(*args)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-3000:]
    assert lines[0].startswith(f"dakd-edge: error: {needs}") and '".[torch]"' in lines[0]
