"""Parameters and FLOPs of SAROSS-Net for the three skip modes (the paper's CAFT ablation), JSON out.

    nice -n 10 python benchmarks/models.py -o models.json             # saross-b, 320x320, CPU
    python benchmarks/models.py --model saross-nano --size 512 --device meta

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` over one batch-1 forward: it counts
matmuls and convolutions (2 FLOPs per multiply-accumulate) but no element-wise work (norms,
activations, softmax, the scan's exponentials); window attention is counted through the math
SDPA path (the fused CPU kernel is invisible to the counter). The paper does not say which counter it used; tools
such as fvcore/thop report multiply-accumulates as "FLOPs", so ``gmacs`` (= FLOPs / 2) is the
number to set beside its +11.45 / +37.06 "GFLOPs". ``--device meta`` counts on shape-only tensors
(no arithmetic, seconds instead of a minute; same numbers).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from dakd_edge import create_model
from dakd_edge.atomic import atomic_path

# Extra row: CAFT without its gated FFN (attention-only MDTA), the closest reading of the paper's cost.
VARIANTS: dict[str, dict[str, Any]] = {
    "none": {"skip": "none"},
    "conv": {"skip": "conv"},
    "caft": {"skip": "caft"},
    "caft-noffn": {"skip": "caft", "caft_ffn_expansion": 0.0},
}
_SKIP_NODE = re.compile(r"decoder\.skips\.x_\d+_\d+$")
# Paper (MambaVision-B, 320x320 on an RTX 2080): overhead of each skip module over "none".
PAPER = {
    "caft": {"params_m": 0.89, "gflops": 11.45, "latency_ms": 45.28, "miou": 73.38},
    "conv": {"params_m": 6.95, "gflops": 37.06, "latency_ms": 48.36, "miou": 70.95},
    "none": {"params_m": 0.0, "gflops": 0.0, "latency_ms": 39.52, "miou": 71.99},
}


def count(name: str, variant: str, size: int, num_classes: int, device: str) -> dict[str, Any]:
    """Params (total and per part) and FLOPs of one batch-1 forward at ``size`` x ``size``."""
    torch.manual_seed(0)
    with torch.device(device):
        model = create_model(name, num_classes=num_classes, in_chans=1, **VARIANTS[variant]).eval()
        x = torch.zeros(1, 1, size, size)
    t0 = time.perf_counter()
    # The math SDPA path decomposes into counted matmuls; the fused CPU kernel would count as zero.
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(x)
    flops = counter.get_total_flops()
    per_module = counter.get_flop_counts()
    # counts are hierarchical (a module includes its children): sum the six skip nodes themselves
    skip_flops = sum(sum(v.values()) for k, v in per_module.items() if _SKIP_NODE.search(k))

    def n_params(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    return {
        "variant": variant,
        **VARIANTS[variant],
        "params": n_params(model),
        "params_encoder": n_params(model.encoder),
        "params_decoder": n_params(model.decoder) + n_params(model.head),
        "params_skip_modules": n_params(model.decoder.skips),
        "flops": int(flops),
        "gflops": flops / 1e9,
        "gmacs": flops / 2e9,
        "skip_modules_gmacs": skip_flops / 2e9,
        "count_seconds": round(time.perf_counter() - t0, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="saross-b")
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--num-classes", type=int, default=5)
    ap.add_argument("--device", default="cpu", choices=["cpu", "meta"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--out", type=Path, help="JSON file (default: stdout)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    rows = {v: count(args.model, v, args.size, args.num_classes, args.device) for v in VARIANTS}
    base = rows["none"]
    overhead = {
        s: {
            "params_m": (rows[s]["params"] - base["params"]) / 1e6,
            "gmacs": rows[s]["gmacs"] - base["gmacs"],
            "gflops": rows[s]["gflops"] - base["gflops"],
        }
        for s in ("conv", "caft", "caft-noffn")
    }
    result = {
        "benchmark": "models",
        "model": args.model,
        "input": [1, 1, args.size, args.size],
        "num_classes": args.num_classes,
        "device": args.device,
        "torch": torch.__version__,
        "counter": "torch.utils.flop_counter.FlopCounterMode (matmul/conv only; 2 FLOPs per MAC)",
        "rows": list(rows.values()),
        "overhead_vs_none": overhead,
        "paper_overhead_vs_none": {s: PAPER[s] for s in ("conv", "caft")},
        "ratio_conv_to_caft": {
            "params": overhead["conv"]["params_m"] / max(overhead["caft"]["params_m"], 1e-12),
            "macs": overhead["conv"]["gmacs"] / max(overhead["caft"]["gmacs"], 1e-12),
            "paper_params": PAPER["conv"]["params_m"] / PAPER["caft"]["params_m"],
            "paper_flops": PAPER["conv"]["gflops"] / PAPER["caft"]["gflops"],
        },
    }
    text = json.dumps(result, indent=2)
    if args.out:
        with atomic_path(args.out, overwrite=True) as tmp:
            tmp.write_text(text + "\n")
    else:
        sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
