"""Helpers shared by the Triton kernel modules (imports Triton; the references never do)."""

from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

from dakd_edge.kernels.support import triton_problem

# Triton < 3.4 (what torch < 2.8 pins) has no triton.knobs; dispatch takes the references there.
_PROBLEM = triton_problem()
if _PROBLEM is not None:
    raise ImportError(f"dakd-edge's Triton kernels: {_PROBLEM}")
# Interpreter or compiler is fixed when a kernel is decorated, i.e. when the kernel modules are imported.
INTERPRETED: bool = triton.knobs.runtime.interpret


@triton.jit
def cast_out(x, dtype: tl.constexpr, INTERPRETED: tl.constexpr):
    """fp32 -> output dtype with round-to-nearest-even, as compiled Triton does.

    Triton 3.8's CPU interpreter truncates fp32 -> bf16 (and ignores ``fp_downcast_rounding``), which
    would make CPU results up to one bf16 ulp off the GPU's; there the value is rounded in fp32 first
    (the truncation is then exact). Compiled kernels take the plain cast.
    """
    if INTERPRETED:
        if dtype == tl.bfloat16:
            bits = x.to(tl.uint32, bitcast=True)
            bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
            x = bits.to(tl.float32, bitcast=True)
    return x.to(dtype)


def strides(*tensors: Tensor) -> list[int]:
    """Strides of ``tensors``, flattened in the order a kernel takes them (one group per tensor)."""
    return [s for t in tensors for s in t.stride()]
