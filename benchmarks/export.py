"""Exported-model latency: ONNX Runtime vs PyTorch eager on the CPU (and TensorRT rows on a GPU), JSON out.

    nice -n 10 python benchmarks/export.py -o export_bench.json
    python benchmarks/export.py --models saross-nano --tiles 256 --iters 5

For each model and square tile (batch 1) it times, in one process and on the same input:

- ``torch-eager``: the model as shipped on the CPU (reference sequential scan, ``kernels="torch"``);
- ``torch-eager-chunked`` (``--chunked-eager``): eager with the export's chunked scan
  (``export_ops("standard")``), to separate the formulation's share of a speed-up from the runtime's;
- ``onnxruntime``: the ``--ops standard`` dynamic ONNX export on ONNX Runtime's CPU provider.

Both runtimes get the same number of intra-op threads. The issue's target is ONNX Runtime >= 1.5x
eager on the CPU. GPU rows (TensorRT FP16 vs eager FP32 / AMP, plugin vs standard-ops engine; target
>= 3x eager FP32) run only where CUDA and TensorRT are present and are otherwise listed as skipped
with the reason. Weights are random (latency does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dakd_edge.atomic import atomic_path
from dakd_edge.bench import environment
from dakd_edge.export.onnx import OnnxExportConfig, export_onnx, load_for_export
from dakd_edge.export.parity import deterministic_input
from dakd_edge.kernels import use_kernels
from dakd_edge.kernels.dispatch import export_ops
from dakd_edge.timing import time_fn


def _ort_session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def bench_cpu(
    name: str,
    tiles: list[int],
    threads: int,
    warmup: int,
    iters: int,
    workdir: Path,
    chunked_eager: bool = False,
) -> list[dict]:
    model, meta = load_for_export(name, num_classes=5)
    onnx_path = workdir / f"{name}.onnx"
    t0 = time.perf_counter()
    export_onnx(model, meta, onnx_path, OnnxExportConfig(parity_size=64))
    export_s = time.perf_counter() - t0
    sess = _ort_session(onnx_path, threads)
    rows = []
    for tile in tiles:
        x = deterministic_input((1, meta.in_chans, tile, tile), seed=0)
        xt = torch.from_numpy(x)

        def eager(xt: torch.Tensor = xt) -> None:
            with torch.inference_mode(), use_kernels("torch"):
                model(xt)

        def eager_chunked(xt: torch.Tensor = xt) -> None:
            with torch.inference_mode(), export_ops("standard"):
                model(xt)

        def ort_run(x: np.ndarray = x) -> None:
            sess.run(None, {"input": x})

        with torch.inference_mode(), use_kernels("torch"):
            ref = model(xt).numpy()
        max_abs = float(np.abs(sess.run(None, {"input": x})[0] - ref).max())
        timings = {"torch-eager": time_fn(eager, warmup, iters)}
        if chunked_eager:
            timings["torch-eager-chunked"] = time_fn(eager_chunked, warmup, iters)
        timings["onnxruntime"] = time_fn(ort_run, warmup, iters)
        base = timings["torch-eager"].p50_ms
        for backend, t in timings.items():
            rows.append(
                {
                    "model": name,
                    "tile": tile,
                    "batch": 1,
                    "device": "cpu",
                    "backend": backend,
                    "precision": "fp32",
                    **t.to_dict(),
                    "speedup_vs_eager": base / t.p50_ms,
                    "ort_max_abs_vs_eager": max_abs if backend == "onnxruntime" else None,
                    "export_s": export_s if backend == "onnxruntime" else None,
                }
            )
        extra = f", eager+chunked {timings['torch-eager-chunked'].p50_ms:.1f} ms" if chunked_eager else ""
        print(
            f"{name} {tile}: eager {base:.1f} ms{extra}, onnxruntime {timings['onnxruntime'].p50_ms:.1f} ms "
            f"-> {base / timings['onnxruntime'].p50_ms:.2f}x (max |diff| {max_abs:.1e})",
            flush=True,
        )
    return rows


def gpu_rows(models: list[str], tiles: list[int]) -> list[dict]:
    """GPU rows: run where CUDA + TensorRT exist, else one skipped entry per planned row with the reason."""
    from dakd_edge.export.plugins import plugins_status
    from dakd_edge.export.tensorrt import tensorrt_status

    planned = ["torch-eager-fp32", "torch-eager-amp", "tensorrt-fp16-standard", "tensorrt-fp16-plugin"]
    reasons: dict[str, str | None] = {}
    cuda = torch.cuda.is_available()
    trt_ok, trt_reason = tensorrt_status()
    plug_ok, plug_reason = plugins_status()
    for b in planned:
        if not cuda:
            reasons[b] = "no CUDA device on this machine"
        elif b.startswith("tensorrt") and not trt_ok:
            reasons[b] = trt_reason
        elif b.endswith("plugin") and not plug_ok:
            reasons[b] = plug_reason
        else:
            reasons[b] = None
    rows = []
    for name in models:
        for tile in tiles:
            for b in planned:
                if reasons[b] is not None:
                    rows.append(
                        {"model": name, "tile": tile, "device": "cuda", "backend": b, "skipped": reasons[b]}
                    )
                else:
                    rows.append(_gpu_row(name, tile, b))
    return rows


def _gpu_row(name: str, tile: int, backend: str) -> dict:
    """One measured GPU row (needs CUDA; TensorRT rows also TensorRT). Not run in development."""
    from dakd_edge.export.onnx import OnnxExportConfig
    from dakd_edge.export.tensorrt import EngineConfig, export_engine
    from dakd_edge.inference.backends import TensorRTBackend

    model, meta = load_for_export(name, num_classes=5)
    x = deterministic_input((1, meta.in_chans, tile, tile), seed=0)
    if backend.startswith("torch"):
        m = model.cuda()
        xt = torch.from_numpy(x).cuda()
        amp = backend.endswith("amp")

        def run() -> None:
            with torch.inference_mode(), torch.autocast("cuda", torch.float16, enabled=amp):
                m(xt)

        t = time_fn(run, 10, 50, cuda=True)
    else:
        ops = "plugin" if backend.endswith("plugin") else "standard"
        shape = (1, meta.in_chans, tile, tile)
        with tempfile.TemporaryDirectory() as d:
            eng = Path(d) / "m.engine"
            cfg = EngineConfig(precision="fp16", min_shape=shape, opt_shape=shape, max_shape=shape)
            export_engine(model, meta, eng, cfg, OnnxExportConfig(ops=ops, shape=shape))
            trt_b = TensorRTBackend(eng)
            t = time_fn(lambda: trt_b.predict(x), 10, 50)  # includes host<->device copies
            trt_b.close()
    return {"model": name, "tile": tile, "device": "cuda", "backend": backend, **t.to_dict()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="saross-nano,saross-t")
    ap.add_argument("--tiles", default="256,512")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads for both runtimes")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--chunked-eager", action="store_true", help="also time eager with the chunked scan")
    ap.add_argument("-o", "--output", help="JSON output path (default: print only)")
    args = ap.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    tiles = [int(t) for t in args.tiles.split(",") if t]
    torch.set_num_threads(args.threads)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="dakd-bench-export-") as d:
        for name in models:
            rows += bench_cpu(name, tiles, args.threads, args.warmup, args.iters, Path(d), args.chunked_eager)
    rows += gpu_rows(models, tiles)
    ort = [r for r in rows if r.get("backend") == "onnxruntime"]
    summary = {
        "target_ort_vs_eager": 1.5,
        "ort_vs_eager": {f"{r['model']}@{r['tile']}": round(r["speedup_vs_eager"], 3) for r in ort},
        "meets_target": all(r["speedup_vs_eager"] >= 1.5 for r in ort),
    }
    result = {
        "benchmark": "export",
        "env": environment(),
        "threads": args.threads,
        "rows": rows,
        "summary": summary,
    }
    text = json.dumps(result, indent=2)
    if args.output:
        with atomic_path(args.output, overwrite=True) as tmp:
            tmp.write_text(text)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
