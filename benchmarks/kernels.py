"""Kernel benchmark: the Triton hot ops vs their PyTorch references at SAROSS-B shapes (JSON out).

    python benchmarks/kernels.py -o kernels.json   # GPU: tiles 320 and 512, batch 1 and 16
    python benchmarks/kernels.py -o cpu.json       # CPU: references only, tile 320, batch 1

Shapes are read off a real ``saross-b`` (MambaVision-B encoder, UNet++/CAFT decoder) for each tile and
batch: every MambaVisionMixer of the windowed stages gives a scan ``(batch x windows, d_inner/2, ws^2,
d_state)`` (MambaVision-B: (B*nwin, 256, 196, 8) at stage 3, (B*nwin, 512, 49, 8) at stage 4), every
CAFT skip an attention ``(batch, heads, c, HW)``. Each distinct shape is timed once per implementation,
forward (no autograd) and forward+backward, in one run so the ratios are like for like:

* scan: ``triton`` kernel, ``ref-loop`` (:func:`selective_scan_ref`), ``ref-chunked``
  (its ``chunk_size`` form, the one exported), ``ref-loop+compile`` (``torch.compile``);
* attention: ``triton``, ``ref`` (eager), ``ref+compile``.

Achieved bandwidth uses an ideal bytes-moved model (every input read once, every output written once,
fp32 for A/D/delta_bias and the temperature); ``roofline`` divides it by the device's peak (``--peak-gbs``,
or a table of known GPUs). Rows that cannot run are kept with ``status="skipped"`` and the reason: without
CUDA the Triton path is not timed (interpreter timings mean nothing), and ``torch.compile`` is off on the
CPU unless ``--compile`` (it unrolls the L-step loop and compiles for minutes). Targets (GPU, reported
in ``checks``): scan >= 50x the reference loop and >= 50% of HBM roofline at batch >= 16; attention
>= 2x eager and >= 1.3x torch.compile.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dakd_edge.atomic import atomic_path
from dakd_edge.bench import environment
from dakd_edge.formats import EXPORT_SCAN_CHUNK
from dakd_edge.kernels import ref
from dakd_edge.timing import time_fn

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PEAK_GBS = {"H100 80GB HBM3": 3350.0, "H100 PCIe": 2000.0, "H100 NVL": 3900.0, "H200": 4800.0, "A100": 2039.0}


# ----------------------------------------------------------------------------- shapes
def saross_shapes(tile: int, batch: int, model: torch.nn.Module) -> tuple[Counter, Counter]:
    """Distinct (batch, D, L, N) scans and (batch, heads, c, HW) attentions of one forward, with counts."""
    from dakd_edge.models.caft import CAFT
    from dakd_edge.models.mambavision import MambaVisionMixer

    scans: Counter = Counter()
    for i, level in enumerate(model.encoder.levels):
        if level.conv:
            continue
        side = math.ceil(tile / (4 * 2**i))  # patch embed /4, then /2 per stage
        ws = level.window_size
        windows = math.ceil(side / ws) ** 2
        for blk in level.blocks:
            if isinstance(blk.mixer, MambaVisionMixer):
                scans[(batch * windows, blk.mixer.d_inner // 2, ws * ws, blk.mixer.d_state)] += 1
    attns: Counter = Counter()
    for key, mod in model.decoder.skips.items():
        if isinstance(mod, CAFT):
            level = int(key.split("_")[1])
            side = math.ceil(tile / (4 * 2**level))
            attns[(batch, mod.num_heads, mod.dim // mod.num_heads, side * side)] += 1
    return scans, attns


# ----------------------------------------------------------------------------- inputs + bytes models
def scan_inputs(shape, dtype, device, grad: bool) -> list:
    b, d, length, n = shape
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    # delta as MambaVision passes it: dt_proj's (B, L, D) output transposed (channel stride 1)
    lp = [r(b, d, length), (0.5 * r(b, length, d) - 2.0).transpose(1, 2), r(b, n, length), r(b, n, length)]
    u, delta, bm, cm = (t.to(device, dtype).requires_grad_(grad) for t in lp)
    a = (-torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1)).to(device).requires_grad_(grad)
    dskip, bias = (t.to(device).requires_grad_(grad) for t in (torch.ones(d), 0.1 * r(d)))
    return [u, delta, a, bm, cm, dskip, bias, True]


def scan_bytes(shape, dtype, backward: bool) -> int:
    b, d, length, n = shape
    e = torch.finfo(dtype).bits // 8
    params = (d * n + 2 * d) * 4
    fwd = (2 * b * d * length + 2 * b * n * length) * e + params + b * d * length * e  # u, dt, B, C -> y
    if not backward:
        return fwd
    # backward: reads u, dt, B, C, dy (+ params), writes du, ddelta, dB, dC (+ param grads)
    return (
        fwd
        + (3 * b * d * length + 2 * b * n * length) * e
        + params
        + (2 * b * d * length + 2 * b * n * length) * e
        + params
    )


def attn_inputs(shape, dtype, device, grad: bool) -> list:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(*shape, generator=g).to(device, dtype).requires_grad_(grad) for _ in range(3))
    temp = torch.ones(shape[1], device=device).requires_grad_(grad)
    return [q, k, v, temp]


def attn_bytes(shape, dtype, backward: bool) -> int:
    e = torch.finfo(dtype).bits // 8
    x = math.prod(shape) * e
    return 4 * x + (7 * x if backward else 0)  # fwd q,k,v -> out; bwd q,k,v,dout -> dq,dk,dv


# ----------------------------------------------------------------------------- implementations
def scan_impls(device: str, compile_ok: bool) -> dict[str, Callable | str]:
    eager = {
        "ref-loop": ref.selective_scan_ref,
        "ref-chunked": functools.partial(ref.selective_scan_ref, chunk_size=EXPORT_SCAN_CHUNK),
    }
    return _impls(device, compile_ok, "selective_scan", "selective_scan_fn", eager)


def attn_impls(device: str, compile_ok: bool) -> dict[str, Callable | str]:
    eager = {"ref": ref.transposed_attention_ref}
    return _impls(device, compile_ok, "transposed_attention", "transposed_attention_fn", eager)


def _impls(
    device: str, compile_ok: bool, module: str, kernel: str, eager: dict[str, Callable]
) -> dict[str, Callable | str]:
    """Rows of one op, by name: ``triton`` (``kernel`` of ``dakd_edge.kernels.<module>``, imported on
    CUDA only), the ``eager`` references, and the first reference under ``torch.compile`` as
    ``<name>+compile``. A string instead of a callable is the reason the row is skipped."""
    impls: dict[str, Callable | str] = {}
    if device == "cuda":
        impls["triton"] = getattr(importlib.import_module(f"dakd_edge.kernels.{module}"), kernel)
    else:
        impls["triton"] = (
            "no CUDA device: the Triton kernel was not timed (CPU interpreter timings are meaningless)"
        )
    impls.update(eager)
    base, fn = next(iter(eager.items()))
    impls[f"{base}+compile"] = torch.compile(fn) if compile_ok else _no_compile(device)
    return impls


def _no_compile(device: str) -> str:
    return f"torch.compile not run on {device} (pass --compile; on CPU it unrolls the scan loop for minutes)"


# ----------------------------------------------------------------------------- timing
def scan_mem(shape, impl: str, backward: bool) -> float:
    """Rough peak bytes of the PyTorch references (they materialise (b, d, l, n) or chunk^2 tensors)."""
    b, d, length, n = shape
    if impl == "ref-chunked":
        t = min(64, length)
        return 6.0 * b * d * n * t * t * 4 * (2 if backward else 1)
    if impl.startswith("ref"):
        return 3.0 * b * d * length * n * 4 * (3 if backward else 1)
    return 0.0


def time_one(fn: Callable, inputs: list, backward: bool, cuda: bool, warmup: int, iters: int):
    if backward:
        leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]

        def step() -> None:
            y = fn(*inputs)
            torch.autograd.backward(y, torch.ones_like(y))
            for t in leaves:
                t.grad = None
    else:

        def step() -> None:
            with torch.no_grad():
                fn(*inputs)

    cpu0 = time.process_time()
    timing = time_fn(step, warmup=warmup, iters=iters, cuda=cuda)
    # Process CPU time per call: on a shared CPU box it is steadier than wall-clock percentiles.
    return timing, (time.process_time() - cpu0) * 1e3 / max(1, warmup + iters)


def bench_op(op, shapes, impls, make_inputs, bytes_model, args, device, peak) -> list[dict[str, Any]]:
    rows = []
    dtype = DTYPES[args.dtype]
    for shape in shapes:
        for backward in (False, True):
            mode = "fwd+bwd" if backward else "fwd"
            nbytes = bytes_model(shape, dtype, backward)
            for name, fn in impls.items():
                row: dict[str, Any] = dict(
                    op=op, shape=list(shape), impl=name, mode=mode, dtype=args.dtype, bytes=nbytes
                )
                if isinstance(fn, str):
                    rows.append({**row, "status": "skipped", "reason": fn})
                    continue
                need = scan_mem(shape, name, backward) if op == "selective_scan" else 0.0
                if need > args.max_mem_gb * 2**30:
                    rows.append(
                        {
                            **row,
                            "status": "skipped",
                            "reason": f"needs ~{need / 2**30:.1f} GB > --max-mem-gb {args.max_mem_gb}",
                        }
                    )
                    continue
                try:
                    t, cpu_ms = time_one(
                        fn,
                        make_inputs(shape, dtype, device, backward),
                        backward,
                        device == "cuda",
                        args.warmup,
                        args.iters,
                    )
                except Exception as e:  # a failing implementation is a row, not a crash
                    rows.append({**row, "status": "failed", "reason": f"{type(e).__name__}: {e}"[:300]})
                    continue
                gbs = nbytes / (t.p50_ms * 1e-3) / 1e9
                row.update(
                    status="ok",
                    timing=t.to_dict(),
                    process_cpu_ms=round(cpu_ms, 3),
                    gbs=float(f"{gbs:.4g}"),
                    roofline=None if peak is None else round(gbs / peak, 3),
                )
                rows.append(row)
                print(
                    f"{op:15} {mode:8} {str(shape):24} {name:18} p50 {t.p50_ms:9.3f} ms  {gbs:8.1f} GB/s",
                    file=sys.stderr,
                )
            _speedups(rows, op, shape, mode)
    return rows


def _speedups(rows: list[dict], op: str, shape, mode: str) -> None:
    group = {r["impl"]: r for r in rows if r["op"] == op and r["shape"] == list(shape) and r["mode"] == mode}
    base = "ref-loop" if op == "selective_scan" else "ref"
    for r in group.values():
        if r["status"] != "ok":
            continue
        for other in (base, f"{base}+compile"):
            o = group.get(other)
            if o is not None and o["status"] == "ok" and o is not r:
                r.setdefault("speedup", {})[other] = round(o["timing"]["p50_ms"] / r["timing"]["p50_ms"], 2)


def checks(rows: list[dict]) -> list[dict[str, Any]]:
    """The issue's targets, evaluated on the Triton rows that ran."""
    out = []
    for r in rows:
        if r["impl"] != "triton" or r["status"] != "ok":
            continue
        sp = r.get("speedup", {})
        if r["op"] == "selective_scan":
            targets = [("scan >= 50x ref-loop", sp.get("ref-loop"), 50)]
            if r["shape"][0] >= 16:
                targets.append(("scan >= 50% HBM roofline", r["roofline"], 0.5))
        else:
            targets = [
                ("attention >= 2x eager", sp.get("ref"), 2),
                ("attention >= 1.3x compile", sp.get("ref+compile"), 1.3),
            ]
        out += [dict(row=_key(r), target=t, value=v, ok=v >= lim) for t, v, lim in targets if v is not None]
    return out


def _key(r: dict) -> str:
    return f"{r['op']} {r['mode']} {r['shape']}"


def _peak(device: str, given: float | None) -> float | None:
    if given or device != "cuda":
        return given
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_GBS.items() if k in name), None)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", default="kernels.json", help="JSON output path")
    ap.add_argument("--model", default="saross-b", help="registered model whose shapes are used")
    ap.add_argument("--tiles", type=int, nargs="+", default=None, help="default: 320 512 (CPU: 320)")
    ap.add_argument("--batches", type=int, nargs="+", default=None, help="default: 1 16 (CPU: 1)")
    ap.add_argument("--ops", nargs="+", default=["selective_scan", "transposed_attention"])
    ap.add_argument(
        "--dtype", choices=sorted(DTYPES), default=None, help="default: bf16 on CUDA, fp32 on CPU"
    )
    ap.add_argument("--warmup", type=int, default=None, help="default: 5 on CUDA, 1 on CPU")
    ap.add_argument("--iters", type=int, default=None, help="default: 50 on CUDA, 3 on CPU")
    ap.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="time torch.compile of the references (default: on CUDA only)",
    )
    ap.add_argument(
        "--max-mem-gb", type=float, default=None, help="skip reference rows needing more (CPU: 2)"
    )
    ap.add_argument("--peak-gbs", type=float, default=None, help="device memory bandwidth for the roofline")
    args = ap.parse_args(argv)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    args.dtype = args.dtype or ("bf16" if cuda else "fp32")
    args.tiles = args.tiles or ([320, 512] if cuda else [320])
    args.batches = args.batches or ([1, 16] if cuda else [1])
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    args.iters = args.iters or (50 if cuda else 3)
    args.max_mem_gb = args.max_mem_gb or (64.0 if cuda else 2.0)
    compile_ok = cuda if args.compile is None else args.compile
    peak = _peak(device, args.peak_gbs)

    import dakd_edge

    model = dakd_edge.create_model(args.model, num_classes=2, in_chans=1)
    scans: Counter = Counter()
    attns: Counter = Counter()
    per_tile = []
    for tile in args.tiles:
        for batch in args.batches:
            s, a = saross_shapes(tile, batch, model)
            per_tile.append(
                dict(
                    tile=tile,
                    batch=batch,
                    scans=[[*k, v] for k, v in s.items()],
                    attentions=[[*k, v] for k, v in a.items()],
                )
            )
            scans.update(s)
            attns.update(a)
    del model
    ops = {  # op -> (shapes, implementations, inputs, bytes model)
        "selective_scan": (scans, scan_impls, scan_inputs, scan_bytes),
        "transposed_attention": (attns, attn_impls, attn_inputs, attn_bytes),
    }
    rows: list[dict[str, Any]] = []
    for op, (shapes, impls, make_inputs, bytes_model) in ops.items():
        if op in args.ops:
            rows += bench_op(
                op, shapes, impls(device, compile_ok), make_inputs, bytes_model, args, device, peak
            )
    result = dict(
        benchmark="kernels",
        env=environment(),
        device=device,
        dtype=args.dtype,
        peak_gbs=peak,
        model=args.model,
        shapes=per_tile,
        rows=rows,
        checks=checks(rows),
        notes="shape = (batch x windows, D, L, N) for the scan, (batch, heads, c, HW) for attention; "
        "shapes[].scans/attentions end with the number of calls per model forward",
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2))
    print(f"wrote {out} ({len(rows)} rows)", file=sys.stderr)


if __name__ == "__main__":
    main()
