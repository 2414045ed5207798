"""CAFT block: the transposed cross-attention maths, residual behaviour, kernel dispatch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dakd_edge.kernels import use_kernels
from dakd_edge.models.caft import CAFT, LayerNorm2d, pick_heads


def _naive_attend(m: CAFT, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Textbook formulation written independently: per head, softmax(norm(q) norm(k)^T * tau) v."""
    b, c, h, w = high.shape
    q = m.q_dwconv(m.q(F.layer_norm(low.permute(0, 2, 3, 1), (low.shape[1],), m.norm_q.weight,
                                    m.norm_q.bias).permute(0, 3, 1, 2)))  # fmt: skip
    kv = m.kv_dwconv(m.kv(F.layer_norm(high.permute(0, 2, 3, 1), (c,), m.norm_kv.weight,
                                       m.norm_kv.bias).permute(0, 3, 1, 2)))  # fmt: skip
    k, v = kv[:, :c], kv[:, c:]
    out = []
    ch = c // m.num_heads
    for i in range(m.num_heads):
        sl = slice(i * ch, (i + 1) * ch)
        qi = F.normalize(q[:, sl].flatten(2), dim=-1)
        ki = F.normalize(k[:, sl].flatten(2), dim=-1)
        attn = torch.softmax(torch.einsum("bcn,bdn->bcd", qi, ki) * m.temperature[i], dim=-1)
        out.append(torch.einsum("bcd,bdn->bcn", attn, v[:, sl].flatten(2)))
    return m.project_out(torch.cat(out, 1).reshape(b, c, h, w))


def test_matches_naive_formulation() -> None:
    torch.manual_seed(0)
    m = CAFT(dim=16, dim_q=24, num_heads=4, ffn_expansion=0)
    with torch.no_grad():
        m.temperature.copy_(torch.tensor([0.5, 1.0, 2.0, 4.0]))
    low, high = torch.randn(2, 24, 9, 13), torch.randn(2, 16, 9, 13)
    with use_kernels("torch"):
        got = m(low, high)
    torch.testing.assert_close(got, high + _naive_attend(m, low, high), rtol=1e-5, atol=1e-5)


def test_query_changes_output_and_residual_passes_skip() -> None:
    torch.manual_seed(0)
    m = CAFT(dim=8, dim_q=8, num_heads=2)
    high = torch.randn(1, 8, 6, 7)
    a, b = m(torch.randn(1, 8, 6, 7), high), m(torch.randn(1, 8, 6, 7), high)
    assert not torch.allclose(a, b)  # the coarse query steers which channels are transferred
    with torch.no_grad():
        m.project_out.weight.zero_()
        m.ffn.project_out.weight.zero_()
    assert torch.equal(m(torch.randn(1, 8, 6, 7), high), high)


def test_gradients_reach_every_parameter() -> None:
    m = CAFT(dim=8, dim_q=12, num_heads=2)
    low = torch.randn(2, 12, 5, 5, requires_grad=True)
    m(low, torch.randn(2, 8, 5, 5)).square().mean().backward()
    assert low.grad is not None
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_layernorm2d_is_channel_layernorm() -> None:
    ln = LayerNorm2d(6)
    with torch.no_grad():
        ln.weight.uniform_()
        ln.bias.uniform_()
    x = torch.randn(2, 6, 3, 4)
    ref = F.layer_norm(x.permute(0, 2, 3, 1), (6,), ln.weight, ln.bias).permute(0, 3, 1, 2)
    torch.testing.assert_close(ln(x), ref, rtol=1e-5, atol=1e-5)


def test_layernorm2d_export_form_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ONNX export the channel means are 1x1 convs (faster in ONNX Runtime): same values."""
    ln = LayerNorm2d(6)
    with torch.no_grad():
        ln.weight.uniform_()
        ln.bias.uniform_()
    x = 3.0 * torch.randn(2, 6, 5, 7) + 1.0
    eager = ln(x)
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    torch.testing.assert_close(ln(x), eager, rtol=1e-5, atol=1e-6)


def test_errors_and_heads() -> None:
    with pytest.raises(ValueError, match="divisible"):
        CAFT(dim=10, num_heads=3)
    with pytest.raises(ValueError, match="differ in size"):
        CAFT(dim=4)(torch.randn(1, 4, 3, 3), torch.randn(1, 4, 4, 4))
    assert pick_heads(80, 32) == 2 and pick_heads(96, 32) == 3 and pick_heads(16, 32) == 1


def test_window_attends_per_cell_over_real_pixels_only() -> None:
    """A windowed CAFT equals the whole-map CAFT run on every cell alone (partial edge cells too)."""
    torch.manual_seed(0)
    m = CAFT(dim=8, dim_q=12, num_heads=2, ffn_expansion=0, window=4).eval()
    low, high = torch.randn(2, 12, 10, 7), torch.randn(2, 8, 10, 7)
    whole = CAFT(dim=8, dim_q=12, num_heads=2, ffn_expansion=0).eval()
    whole.load_state_dict(m.state_dict())
    with torch.no_grad(), use_kernels("torch"):
        got = m.attend(low, high)
        # the projections (1x1, depthwise 3x3) see the whole map; only the attention is per cell
        q = m.q_dwconv(m.q(m.norm_q(low)))
        k, v = m.kv_dwconv(m.kv(m.norm_kv(high))).chunk(2, dim=1)
        want = torch.zeros(2, 8, 10, 7)
        for y in range(0, 10, 4):
            for x in range(0, 7, 4):
                sl = (slice(None), slice(None), slice(y, y + 4), slice(x, x + 4))
                cq, ck, cv = q[sl], k[sl], v[sl]
                h, w = cq.shape[-2:]
                cq, ck, cv = (t.reshape(2, 2, 4, h * w) for t in (cq, ck, cv))
                from dakd_edge.kernels.ref import transposed_attention_ref

                want[sl] = transposed_attention_ref(cq, ck, cv, m.temperature).reshape(2, 8, h, w)
        want = m.project_out(want)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        # one cell covering the map (zero-padded) is the paper's whole-map attention
        big = CAFT(dim=8, dim_q=12, num_heads=2, ffn_expansion=0, window=16).eval()
        big.load_state_dict(m.state_dict())
        torch.testing.assert_close(big.attend(low, high), whole.attend(low, high), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="window"):
        CAFT(dim=8, window=0)
