"""One-command GPU check: ``python benchmarks/gpu.py -o gpu.json`` on a CUDA machine, in <= 8 minutes.

The project has never run on a GPU; whoever first has one runs this and records the numbers in the
README. It installs nothing (it uses what ``pip install -e ".[dev]"`` put in the environment; add
``onnxruntime-gpu`` yourself for its rows) and runs, each step with its own time limit:

1. the ``gpu`` test marker (``pytest -m gpu``): Triton kernels vs references, CUDA graphs, ...;
2. the kernel benchmark (``benchmarks/kernels.py``): Triton scan / CAFT attention vs the PyTorch
   references and ``torch.compile``;
3. ``dakd-edge bench`` with the torch, torch-triton, torch-compile and onnxruntime rows (CUDA execution
   provider when onnxruntime-gpu is installed), then again with CUDA-graph replay;
4. ``segment`` of a 4096^2 synthetic scene through ``dakd-edge bench --scene`` (end-to-end MPix/s).

Everything lands in one JSON (``-o``): per step the command, exit status, time, the step's own JSON and
the tail of its output. Without CUDA it exits at once (status 2) with one line saying so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 480  # the whole check, 8 minutes


def cuda_device() -> str | None:
    """Name of CUDA device 0, or None (no torch, or no device)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def step(name: str, cmd: list[str], limit: float, out_json: Path | None = None) -> dict[str, Any]:
    """Run one step with a time limit; keep its JSON output and the tail of its log."""
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=max(limit, 1))
        status, log = r.returncode, r.stdout + r.stderr
    except subprocess.TimeoutExpired as e:
        status, log = "timeout", f"{e.stdout or ''}{e.stderr or ''}"
        log = log.decode() if isinstance(log, bytes) else log
    row: dict[str, Any] = {
        "step": name,
        "cmd": " ".join(cmd),
        "status": status,
        "seconds": round(time.perf_counter() - t0, 1),
        "log_tail": log[-3000:],
    }
    if out_json is not None and out_json.is_file():
        row["result"] = json.loads(out_json.read_text())
    print(f"[gpu-check] {name}: {status} in {row['seconds']} s", file=sys.stderr)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--out", type=Path, default=Path("gpu-check.json"))
    args = ap.parse_args(argv)
    device = cuda_device()
    if device is None:
        print(
            "benchmarks/gpu.py: no CUDA device visible to PyTorch: this check needs an NVIDIA GPU",
            file=sys.stderr,
        )
        return 2
    t_end = time.perf_counter() + BUDGET_S
    py, cli = sys.executable, [sys.executable, "-m", "dakd_edge"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="dakd-gpu-") as tmp:
        d = Path(tmp)
        plan = [
            ("pytest -m gpu", [py, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:xdist"], 150, None),
            ("kernels", [py, "benchmarks/kernels.py", "-o", str(d / "k.json")], 110, d / "k.json"),
            (
                "bench",
                [
                    *cli,
                    "bench",
                    "--device",
                    "cuda",
                    "--backend",
                    "torch,torch-triton,torch-compile,onnxruntime",
                    "--precision",
                    "fp32,fp16",
                    "--batch",
                    "1,8",
                    "--warmup",
                    "5",
                    "--iters",
                    "30",
                    "--json",
                    str(d / "b.json"),
                ],
                100,
                d / "b.json",
            ),  # fmt: skip
            (
                "bench --cuda-graphs",
                [
                    *cli,
                    "bench",
                    "--device",
                    "cuda",
                    "--backend",
                    "torch,torch-triton",
                    "--batch",
                    "1,8",
                    "--cuda-graphs",
                    "--warmup",
                    "5",
                    "--iters",
                    "30",
                    "--json",
                    str(d / "g.json"),
                ],
                50,
                d / "g.json",
            ),  # fmt: skip
            ("synth 4096^2", [*cli, "synth", str(d / "scene.tif"), "--size", "4096", "-q"], 30, None),
            (
                "segment 4096^2",
                [
                    *cli,
                    "bench",
                    "--device",
                    "cuda",
                    "--backend",
                    "torch,onnxruntime",
                    "--batch",
                    "8",
                    "--warmup",
                    "2",
                    "--iters",
                    "5",
                    "--scene",
                    str(d / "scene.tif"),
                    "--json",
                    str(d / "s.json"),
                ],
                60,
                d / "s.json",
            ),  # fmt: skip
        ]
        for name, cmd, limit, out in plan:
            left = t_end - time.perf_counter()
            if left < 10:
                rows.append({"step": name, "status": "skipped", "reason": "8-minute budget spent"})
                continue
            rows.append(step(name, cmd, min(limit, left), out))
    doc = {
        "device": device,
        "torch_cuda": _torch_cuda(),
        "budget_s": BUDGET_S,
        "steps": rows,
        "env": {k: os.environ[k] for k in ("DAKD_KERNELS", "CUDA_VISIBLE_DEVICES") if k in os.environ},
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"[gpu-check] wrote {args.out}", file=sys.stderr)
    return 0 if all(r["status"] in (0, "skipped") for r in rows) else 1


def _torch_cuda() -> str | None:
    import torch

    return torch.version.cuda


if __name__ == "__main__":
    sys.exit(main())
