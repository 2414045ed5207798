"""The two hot ops as custom ONNX nodes in the ``dakd_edge`` domain (``--ops plugin``).

Each op is an ``autograd.Function`` whose ``forward`` runs the PyTorch reference (so a model traced
under ``export_ops("plugin")`` still computes the right values) and whose ``symbolic`` emits one node
for the TorchScript ONNX exporter. TensorRT's ONNX parser turns an unknown node into a plugin by
looking up ``op_type`` in the plugin registry under the node's ``plugin_namespace`` attribute; the
plugins registered in :mod:`dakd_edge.export.plugins` use exactly these names and attributes.

Node contracts (inputs, attributes, output):

``dakd_edge::SelectiveScan(u, delta, A, B, C, D, delta_bias) -> y``
    u, delta, y: (b, d, l) float; A: (d, n) float32; B, C: (b, n, l); D, delta_bias: (d,) float32
    (zeros when the model has none). Attribute ``delta_softplus`` (int 0/1).
``dakd_edge::TransposedAttention(q, k, v, temperature) -> out``
    q, k, v, out: (b, heads, c, hw) float; temperature: (heads,) float32.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dakd_edge.kernels import ref
from dakd_edge.kernels.dispatch import register_plugin_node

DOMAIN = "dakd_edge"
DOMAIN_VERSION = 1
SCAN_OP = "SelectiveScan"
ATTENTION_OP = "TransposedAttention"
PLUGIN_VERSION = "1"


class _SelectiveScanNode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias, delta_softplus: bool):  # type: ignore[override]
        return ref.selective_scan_ref(u, delta, A, B, C, D, delta_bias, delta_softplus)

    @staticmethod
    def symbolic(g, u, delta, A, B, C, D, delta_bias, delta_softplus):  # pragma: no cover - exporter hook
        out = g.op(
            f"{DOMAIN}::{SCAN_OP}",
            u,
            delta,
            A,
            B,
            C,
            D,
            delta_bias,
            delta_softplus_i=int(bool(delta_softplus)),
            plugin_namespace_s=DOMAIN,
            plugin_version_s=PLUGIN_VERSION,
        )
        out.setType(u.type())
        return out


class _TransposedAttentionNode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, temperature):  # type: ignore[override]
        return ref.transposed_attention_ref(q, k, v, temperature)

    @staticmethod
    def symbolic(g, q, k, v, temperature):  # pragma: no cover - exporter hook
        out = g.op(
            f"{DOMAIN}::{ATTENTION_OP}",
            q,
            k,
            v,
            temperature,
            plugin_namespace_s=DOMAIN,
            plugin_version_s=PLUGIN_VERSION,
        )
        out.setType(v.type())
        return out


def selective_scan_node(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> Tensor:
    """Selective scan that exports as one ``dakd_edge::SelectiveScan`` node (fixed 7 inputs)."""
    d = u.shape[1]
    A = A.float()
    D = u.new_zeros(d, dtype=torch.float32) if D is None else D.float()
    delta_bias = u.new_zeros(d, dtype=torch.float32) if delta_bias is None else delta_bias.float()
    return _SelectiveScanNode.apply(u, delta, A, B, C, D, delta_bias, bool(delta_softplus))


def transposed_attention_node(q: Tensor, k: Tensor, v: Tensor, temperature: Tensor) -> Tensor:
    """Transposed attention that exports as one ``dakd_edge::TransposedAttention`` node."""
    heads = q.shape[1]
    return _TransposedAttentionNode.apply(q, k, v, temperature.float().reshape(heads))


def reference_ops() -> list[type]:
    """numpy implementations of both nodes for :class:`onnx.reference.ReferenceEvaluator`.

    ONNX Runtime cannot run the custom nodes without a compiled op library, so the parity check of a
    plugin-ops graph evaluates it with ONNX's reference evaluator plus these (written independently of
    the PyTorch code: a plain sequential scan and a softmax attention).
    """
    import numpy as np
    from onnx.reference.op_run import OpRun

    class SelectiveScan(OpRun):
        op_domain = DOMAIN

        def _run(self, u, delta, A, B, C, D, delta_bias, delta_softplus=0, plugin_namespace=None,
                 plugin_version=None):  # fmt: skip
            dt = delta.astype(np.float64) + delta_bias.astype(np.float64)[None, :, None]
            if delta_softplus:
                dt = np.logaddexp(0.0, dt)
            u64, B64, C64 = u.astype(np.float64), B.astype(np.float64), C.astype(np.float64)
            b, d, length = u.shape
            h = np.zeros((b, d, A.shape[1]))
            y = np.empty((b, d, length))
            for t in range(length):
                decay = np.exp(dt[:, :, t, None] * A[None].astype(np.float64))
                h = decay * h + (dt[:, :, t] * u64[:, :, t])[..., None] * B64[:, None, :, t]
                y[:, :, t] = (h * C64[:, None, :, t]).sum(-1)
            y += u64 * D.astype(np.float64)[None, :, None]
            return (y.astype(u.dtype),)

    class TransposedAttention(OpRun):
        op_domain = DOMAIN

        def _run(self, q, k, v, temperature, plugin_namespace=None, plugin_version=None):
            qn = q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12)
            kn = k / np.maximum(np.linalg.norm(k, axis=-1, keepdims=True), 1e-12)
            attn = (qn @ np.swapaxes(kn, -1, -2)) * temperature.reshape(1, -1, 1, 1)
            attn = np.exp(attn - attn.max(-1, keepdims=True))
            attn /= attn.sum(-1, keepdims=True)
            return ((attn @ v).astype(v.dtype),)

    return [SelectiveScan, TransposedAttention]


register_plugin_node("selective_scan", selective_scan_node)
register_plugin_node("transposed_attention", transposed_attention_node)
