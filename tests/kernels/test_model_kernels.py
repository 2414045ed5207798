"""saross-nano gives the same logits and parameter gradients with the Triton kernels and the reference."""

from __future__ import annotations

import pytest
import torch

import dakd_edge
from dakd_edge.kernels import use_kernels

pytest.importorskip("triton", minversion="3.4")  # the kernels need triton.knobs


def _forward_backward(model: torch.nn.Module, x: torch.Tensor, mode: str):
    model.zero_grad(set_to_none=True)
    with use_kernels(mode):
        out = model(x)
    out.float().square().mean().backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.detach(), grads


def test_saross_nano_triton_equals_torch(device):
    torch.manual_seed(0)
    model = dakd_edge.create_model("saross-nano", num_classes=2, in_chans=1).to(device).eval()
    x = torch.randn(1, 1, 64, 64, device=device)
    out_t, g_t = _forward_backward(model, x, "torch")
    out_k, g_k = _forward_backward(model, x, "triton")
    print(f"logits max diff {(out_k - out_t).abs().max().item():.3e}")
    torch.testing.assert_close(out_k, out_t, rtol=1e-4, atol=1e-5)
    assert g_k.keys() == g_t.keys()
    # The kernels' own parameters must receive gradients through the kernels.
    assert any("A_log" in n for n in g_k) and any("temperature" in n for n in g_k)
    worst = max(((g_k[n] - g_t[n]).abs().max() / g_t[n].abs().max().clamp_min(1e-6)).item() for n in g_t)
    print(f"worst relative parameter-gradient diff {worst:.3e}")
    for name in g_t:
        scale = g_t[name].abs().max().clamp_min(1e-6).item()
        torch.testing.assert_close(g_k[name], g_t[name], rtol=1e-3, atol=1e-4 * scale, msg=name)
