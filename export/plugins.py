"""TensorRT plugins for the ``dakd_edge`` ONNX nodes, backed by the Triton kernels (``--ops plugin``).

Uses TensorRT's Python plugin API ``tensorrt.plugin`` (quickly deployable plugins, TensorRT >= 10.8):
``trtp.register`` describes outputs, ``trtp.autotune`` the supported I/O types, ``trtp.impl`` runs the
op at inference time through PyTorch + the Triton launchers (JIT: needs Python in the serving process),
and for the scan ``trtp.aot_impl`` compiles the Triton forward kernel to PTX ahead of time so the engine
carries the kernel and runs without Python (TensorRT >= 10.10 for AOT). The CAFT attention runs three
kernels (Gram, softmax, mix), which one AOT entry cannot express, so it is JIT only.

TensorRT's ONNX parser maps a node to a plugin by ``op_type`` = plugin name plus the node's
``plugin_namespace`` attribute, which :mod:`dakd_edge.export.nodes` sets. Where plugins are unavailable
(no ``tensorrt.plugin``: TensorRT < 10.8, e.g. older JetPack) export with ``--ops standard`` instead.

NOT RUN in development: no GPU or TensorRT was available; tests check the node contract only. Known
risk for the AOT path: Triton >= 3.3 kernels may take hidden scratch-buffer arguments that the QDP
launcher of a given TensorRT release does not pass; the JIT ``impl`` is the fallback TensorRT picks
when ``aot_impl`` is absent (``register_plugins(aot=False)``).
"""

from __future__ import annotations

from typing import Any

from dakd_edge.errors import BackendUnavailable
from dakd_edge.export.nodes import ATTENTION_OP, DOMAIN, SCAN_OP

SCAN_ID = f"{DOMAIN}::{SCAN_OP}"
ATTENTION_ID = f"{DOMAIN}::{ATTENTION_OP}"
SCAN_BLOCK_D = 32  # channel block of the AOT-compiled scan kernel
PLUGIN_TENSORRT = (10, 8)  # older TensorRT (every JetPack 5 and 6 release): --ops standard only
_registered = False


def plugins_status() -> tuple[bool, str]:
    """(usable, reason) for building/running plugin engines on this machine."""
    try:
        import tensorrt as trt
    except ImportError:
        return False, "TensorRT is not installed; use --ops standard"
    from dakd_edge.cuda import parse_version

    # By version, not only by import: tensorrt.plugin predates 10.8, the release this module is written for
    too_old = f"TensorRT {trt.__version__} cannot serve the plugins (needs >= 10.8 with tensorrt.plugin)"
    standard = "use --ops standard (TensorRT >= 8.5)"
    if parse_version(trt.__version__) < PLUGIN_TENSORRT:
        return False, f"{too_old}; {standard}"
    try:
        import tensorrt.plugin  # noqa: F401
    except ImportError:
        return False, f"TensorRT {trt.__version__} has no tensorrt.plugin (needs >= 10.8); {standard}"
    try:
        import torch
    except ImportError as e:
        return False, f"plugins need torch and triton in the serving process ({e}); use --ops standard"
    from dakd_edge.kernels.support import triton_problem

    problem = triton_problem()
    if problem is not None:
        return False, f"plugins run the Triton kernels, but {problem}; use --ops standard"
    if not torch.cuda.is_available():
        return False, "plugins need a CUDA device; use --ops standard"
    return True, f"TensorRT {trt.__version__} with tensorrt.plugin"


def register_plugins(aot: bool = True) -> None:
    """Register both plugins with TensorRT's plugin registry (idempotent)."""
    global _registered
    if _registered:
        return
    ok, reason = plugins_status()
    if not ok:
        raise BackendUnavailable(reason)
    _register_scan(aot)
    _register_attention()
    _registered = True


def _register_scan(aot: bool) -> None:
    import tensorrt as trt
    import tensorrt.plugin as trtp
    import torch

    @trtp.register(SCAN_ID)
    def scan_desc(u, delta, A, B, C, D, delta_bias, delta_softplus: int) -> trtp.TensorDesc:
        return u.like()

    @trtp.autotune(SCAN_ID)
    def scan_autotune(u, delta, A, B, C, D, delta_bias, outputs) -> list[Any]:
        # positions: u, delta, A, B, C, D, delta_bias, y; A/D/bias stay fp32 (weights), the rest follow u.
        return [
            trtp.AutoTuneCombination(
                "FP32|FP16, FP32|FP16, FP32, FP32|FP16, FP32|FP16, FP32, FP32, FP32|FP16"
            )
        ]

    @trtp.impl(SCAN_ID)
    def scan_impl(u, delta, A, B, C, D, delta_bias, delta_softplus: int, outputs, stream: int) -> None:
        from dakd_edge.kernels.selective_scan import selective_scan_fn

        with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
            t = [torch.as_tensor(x, device="cuda") for x in (u, delta, A, B, C, D, delta_bias)]
            y = torch.as_tensor(outputs[0], device="cuda")
            y.copy_(selective_scan_fn(*t, bool(delta_softplus)))

    if not aot or not hasattr(trtp, "aot_impl"):
        return

    @trtp.aot_impl(SCAN_ID)
    def scan_aot(u, delta, A, B, C, D, delta_bias, delta_softplus: int, outputs, tactic: int) -> tuple:
        import triton
        from triton.compiler import ASTSource

        from dakd_edge.kernels.selective_scan import scan_fwd_kernel

        b, d, seqlen = u.shape_expr[0], u.shape_expr[1], u.shape_expr[2]
        n = A.shape_expr[1]
        if not n.is_constant:
            raise BackendUnavailable("the AOT scan needs a constant state size (A is a weight)")
        block_n = max(2, 1 << (int(n.constant_value) - 1).bit_length())
        dt = "fp16" if u.dtype == trt.float16 else "fp32"
        ptr = {"u_ptr": dt, "dt_ptr": dt, "a_ptr": "fp32", "b_ptr": dt, "c_ptr": dt, "d_ptr": "fp32",
               "bias_ptr": "fp32", "y_ptr": dt}  # fmt: skip
        signature = {k: f"*{v}" for k, v in ptr.items()}
        scalars = ["dim", "seqlen", "dstate"] + [
            f"s_{t}{a}" for t in "utabcy" for a in ("bdl" if t in "uty" else "dn" if t == "a" else "bnl")
        ]
        signature.update({k: "i32" for k in scalars})
        constexprs = {
            "HAS_D": True, "HAS_BIAS": True, "SOFTPLUS": bool(delta_softplus),
            "BLOCK_D": SCAN_BLOCK_D, "BLOCK_N": block_n, "INTERPRETED": False,
        }  # fmt: skip
        signature.update(dict.fromkeys(constexprs, "constexpr"))
        compiled = triton.compile(ASTSource(fn=scan_fwd_kernel, signature=signature, constexprs=constexprs))
        # LINEAR (contiguous) layouts: (b, d, l) -> (d*l, l, 1); A (d, n) -> (n, 1); B, C (b, n, l).
        ud = [d * seqlen, seqlen, 1]
        bn = [n * seqlen, seqlen, 1]
        values = [d, seqlen, n, *ud, *ud, n, 1, *bn, *bn, *ud]
        extra = trtp.SymIntExprs.from_tuple([trtp.SymInt32(v) for v in values])
        launch = trtp.KernelLaunchParams()
        launch.grid_x = b
        launch.grid_y = trtp.cdiv(d, SCAN_BLOCK_D)
        launch.block_x = compiled.metadata.num_warps * 32
        launch.shared_mem = compiled.metadata.shared
        return compiled.metadata.name.encode(), compiled.asm["ptx"].encode(), launch, extra


def _register_attention() -> None:
    import tensorrt.plugin as trtp
    import torch

    @trtp.register(ATTENTION_ID)
    def attn_desc(q, k, v, temperature) -> trtp.TensorDesc:
        return v.like()

    @trtp.autotune(ATTENTION_ID)
    def attn_autotune(q, k, v, temperature, outputs) -> list[Any]:
        return [trtp.AutoTuneCombination("FP32|FP16, FP32|FP16, FP32|FP16, FP32, FP32|FP16")]

    @trtp.impl(ATTENTION_ID)
    def attn_impl(q, k, v, temperature, outputs, stream: int) -> None:
        from dakd_edge.kernels.transposed_attention import transposed_attention_fn

        with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
            t = [torch.as_tensor(x, device="cuda") for x in (q, k, v, temperature)]
            out = torch.as_tensor(outputs[0], device="cuda")
            out.copy_(transposed_attention_fn(*t))
