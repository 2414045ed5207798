"""Compile every Triton kernel for a CUDA target without a GPU (run as a script, TRITON_INTERPRET unset).

The CPU interpreter accepts programs that the GPU compiler rejects (``tl.dot`` below 16, constexpr
misuse, layout problems), so CPU-only CI would otherwise never see a kernel that cannot build. Triton's
own ``ptxas`` turns the kernels into cubins for ``sm_<arch>``; prints one line per kernel.
"""

from __future__ import annotations

import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource


def _compile(fn, ptr_types: dict[str, str], consts: dict, target: GPUTarget, num_warps: int = 4) -> None:
    def kind(n: str) -> str:  # listed pointers take their dtype, other pointers fp32, the rest int32
        return "constexpr" if n in consts else ptr_types.get(n, "*fp32" if n.endswith("_ptr") else "i32")

    sig = {n: kind(n) for n in fn.arg_names}
    src = ASTSource(fn=fn, signature=sig, constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()})
    kernel = triton.compile(src, target=target, options={"num_warps": num_warps})
    assert kernel.asm["cubin"], fn.__name__
    print(f"ok {fn.__name__} {consts}")


def main(arch: int) -> None:
    import dakd_edge.kernels.selective_scan  # noqa: F401  (sys.modules: the package keeps the function names)
    import dakd_edge.kernels.transposed_attention  # noqa: F401

    ss = sys.modules["dakd_edge.kernels.selective_scan"]
    ta = sys.modules["dakd_edge.kernels.transposed_attention"]
    target = GPUTarget("cuda", arch, 32)
    f32 = "*fp32"
    for io in ("*bf16", "*fp32"):
        ptrs = dict.fromkeys(
            ["u_ptr", "dt_ptr", "b_ptr", "c_ptr", "y_ptr", "dy_ptr", "du_ptr", "ddt_ptr"], io
        )
        consts = dict(HAS_D=True, HAS_BIAS=True, SOFTPLUS=True, BLOCK_D=16, BLOCK_N=8, INTERPRETED=False)
        _compile(ss.scan_fwd_kernel, ptrs, consts, target, num_warps=1)
        _compile(ss._scan_bwd_kernel, ptrs, consts, target, num_warps=1)
        ieee = io == f32
        ptrs = dict.fromkeys(["x_ptr", "y_ptr", "x2_ptr", "o_ptr"], io)
        tiles = dict(BLOCK_I=64, BLOCK_J=128, BLOCK_HW=32)
        _compile(ta._gram_kernel, ptrs, dict(NORMS=True, IEEE=ieee, UPCAST=False, **tiles), target, 8)
        _compile(
            ta._mix_kernel,
            ptrs,
            dict(
                HAS_DIAG=True, IEEE=ieee, UPCAST=False, BLOCK_I=16, BLOCK_J=16, BLOCK_HW=64, INTERPRETED=False
            ),
            target,
        )
    _compile(ta._softmax_kernel, {}, dict(BLOCK_I=16, BLOCK_J=16, eps=1e-12), target)


if __name__ == "__main__":
    main(int(sys.argv[1]))
