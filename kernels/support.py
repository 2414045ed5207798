"""What the Triton kernels can take, without importing Triton: read by the dispatch (which sends the
rest to the PyTorch references) and by the kernel modules themselves (which refuse it)."""

from __future__ import annotations

import torch
from torch import Tensor

# What the kernels take (``auto`` sends anything else to the reference): fp64 fails to compile in the
# attention kernels, a state wider than the scan's registers or a head wider than one Gram tile
# (shared memory) fails at launch; the CPU interpreter takes them all, so tests would not see it.
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_STATE = 16  # the scan's state lanes (its kernel checks the same bound)
MAX_ATTENTION_CHANNELS = 512

# The kernels use triton.knobs (Triton 3.4, which torch 2.8 pins); an older Triton (torch 2.4-2.7 pin
# 3.0-3.3) is treated as absent: auto takes the reference there.
MIN_TRITON = (3, 4)


def triton_problem() -> str | None:
    """Why the Triton kernels cannot run in this environment (None: they can)."""
    try:
        import triton
    except ImportError:
        return "triton is not installed"
    from dakd_edge.cuda import parse_version

    if parse_version(triton.__version__) < MIN_TRITON:
        return f"the kernels need triton >= {'.'.join(map(str, MIN_TRITON))} (torch >= 2.8), found {triton.__version__}"
    return None


def unsupported(*tensors: Tensor, dstate: int | None = None, channels: int | None = None) -> str | None:
    """Why the kernels cannot take this call (None: they can); ``tensors``' promoted dtype is theirs."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    if dtype not in KERNEL_DTYPES:
        return f"the Triton kernels take fp32, fp16 or bf16, not {str(dtype).removeprefix('torch.')}"
    if dstate is not None and not 1 <= dstate <= MAX_STATE:
        return f"the Triton scan takes a state size N of 1 to {MAX_STATE}, not {dstate}"
    if channels is not None and channels > MAX_ATTENTION_CHANNELS:
        return (
            f"the Triton attention takes at most {MAX_ATTENTION_CHANNELS} channels per head, not {channels}"
        )
    return None
