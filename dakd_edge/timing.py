"""Shared timing helpers for `dakd-edge bench` and benchmarks/: warm-up, CUDA events, percentiles."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass
class Timing:
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    iters: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(times_ms: list[float] | np.ndarray) -> Timing:
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        raise ValueError("no timings")
    p50, p90, p99 = np.percentile(t, [50, 90, 99])
    return Timing(float(p50), float(p90), float(p99), float(t.mean()), float(t.min()), int(t.size))


def time_fn(fn: Callable[[], Any], warmup: int = 3, iters: int = 10, cuda: bool = False) -> Timing:
    """Time ``fn`` after ``warmup`` calls. With ``cuda=True`` uses CUDA events and synchronises."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    if cuda:
        import torch

        torch.cuda.synchronize()
        for _ in range(iters):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return summarize(times)
