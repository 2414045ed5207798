"""MambaVision encoder: parity with the upstream `mambavision` package, weight loading, shapes."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch

from dakd_edge.errors import ModelFileError
from dakd_edge.kernels import use_kernels
from dakd_edge.kernels.ref import selective_scan_ref
from dakd_edge.models.checkpoint import weights_only_is_safe
from dakd_edge.models.mambavision import (
    MAMBAVISION_CONFIGS,
    adapt_input_conv,
    attention_blocks,
    build_mambavision,
    load_encoder_weights,
)


def _stand_in_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False):  # fmt: skip
    """mamba_ssm.selective_scan_fn for the upstream model, written from mamba_ssm's own reference
    (``selective_scan_interface.selective_scan_ref``: fp32, real A, B/C of shape (b, n, l)), *not*
    the project's scan, so the parity test also checks the scan the encoder calls (D skip, delta bias,
    softplus, state recurrence) instead of comparing it with itself."""
    assert z is None and not return_last_state
    dtype_in = u.dtype
    u, delta = u.float(), delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias[..., None].float()
    if delta_softplus:
        delta = torch.nn.functional.softplus(delta)
    decay = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    drive = torch.einsum("bdl,bnl,bdl->bdln", delta, B.float(), u)
    state = A.new_zeros((u.shape[0], A.shape[0], A.shape[1]))
    ys = []
    for i in range(u.shape[2]):
        state = decay[:, :, i] * state + drive[:, :, i]
        ys.append(torch.einsum("bdn,bn->bd", state, C.float()[:, :, i]))
    out = torch.stack(ys, dim=2)
    if D is not None:
        out = out + u * D[:, None]
    return out.to(dtype_in)


@pytest.fixture(scope="module")
def upstream():
    """The upstream module, imported with a fake `mamba_ssm` (CUDA-only) in sys.modules."""
    if importlib.util.find_spec("mambavision") is None:
        pytest.skip("upstream `mambavision` not installed (pip install --no-deps mambavision)")
    pytest.importorskip("einops")
    pytest.importorskip("timm")
    names = ["mamba_ssm", "mamba_ssm.ops", "mamba_ssm.ops.selective_scan_interface"]
    saved = {n: sys.modules.get(n) for n in names}
    for n in names:
        sys.modules[n] = types.ModuleType(n)
    sys.modules[names[-1]].selective_scan_fn = _stand_in_scan
    try:
        from mambavision.models import mamba_vision
    finally:
        for n, mod in saved.items():
            if mod is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = mod
    assert mamba_vision.selective_scan_fn is _stand_in_scan
    return mamba_vision


def _randomize(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial weights everywhere (layer scales, norms, BN statistics), kept well conditioned."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if not v.dtype.is_floating_point:
                continue
            noise = torch.randn(v.shape, generator=g)
            if "running_var" in k:
                v.copy_(torch.rand(v.shape, generator=g) + 0.5)
            elif "gamma" in k:
                v.copy_(0.5 * torch.rand(v.shape, generator=g))
            elif v.ndim <= 1:
                v.add_(0.1 * noise)
            else:
                v.add_(0.02 * noise)


def _upstream_stages(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Stage outputs of the upstream classifier: inputs of the downsamples, output of `norm`."""
    feats: dict[int, torch.Tensor] = {}
    hooks = [
        model.levels[i].downsample.register_forward_pre_hook(lambda m, a, i=i: feats.__setitem__(i, a[0]))
        for i in range(3)
    ]
    hooks.append(model.norm.register_forward_hook(lambda m, a, o: feats.__setitem__(3, o)))
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return [feats[i] for i in range(4)]


@pytest.mark.parametrize("variant, factory", [("t", "mamba_vision_T"), ("b", "mamba_vision_B")])
def test_parity_with_upstream(upstream, tmp_path: Path, variant: str, factory: str) -> None:
    torch.manual_seed(0)
    ref = getattr(upstream, factory)().eval()
    _randomize(ref, seed=1)
    ckpt = tmp_path / f"mambavision_{variant}.pth.tar"  # official layout: DDP prefix, under state_dict
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}, "epoch": 1}, ckpt)

    ours = build_mambavision(variant, in_chans=3).eval()
    report = load_encoder_weights(ours, ckpt)
    assert report.missing == [] and report.unexpected == ["head.bias", "head.weight"]

    g = torch.Generator().manual_seed(2)
    for hw in [(224, 224), (250, 330)]:
        x = torch.randn(1, 3, *hw, generator=g)
        with torch.no_grad():
            expected = _upstream_stages(ref, x)
            got = ours(x)
        diffs = [float((a - b).abs().max()) for a, b in zip(got, expected, strict=True)]
        print(f"MambaVision-{variant.upper()} {hw}: stage max |diff| {diffs}")
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert a.shape == b.shape, (i, a.shape, b.shape)
            assert a.abs().max() > 0.1  # the stage did real work
        assert max(diffs) <= 1e-5
    if variant != "t":
        return
    # 1-channel stem (RGB weights summed) == the grey image fed as three equal channels
    ours1 = build_mambavision(variant, in_chans=1).eval()
    assert load_encoder_weights(ours1, ckpt).adapted == ["patch_embed.conv_down.0.weight"]
    grey = torch.randn(1, 1, 64, 96, generator=g)
    with torch.no_grad():
        expected1 = _upstream_stages(ref, grey.expand(-1, 3, -1, -1))
        got1 = ours1(grey)
    for a, b in zip(got1, expected1, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_stage_shapes_any_size() -> None:
    enc = build_mambavision("nano", in_chans=1).eval()
    with torch.no_grad():
        feats = enc(torch.randn(2, 1, 37, 53))
    sizes = [(19, 27), (10, 14), (5, 7), (3, 4)]  # ceil halving by each stride-2 conv
    assert [tuple(f.shape[-2:]) for f in feats] == [(h // 2 + h % 2, w // 2 + w % 2) for h, w in sizes]
    assert [f.shape[1] for f in feats] == list(MAMBAVISION_CONFIGS["nano"].channels)


def test_hybrid_stage_layout() -> None:
    assert list(attention_blocks(8)) == [4, 5, 6, 7]
    assert list(attention_blocks(5)) == [3, 4]
    assert list(attention_blocks(1)) == []
    enc = build_mambavision("t")
    names = [type(b.mixer).__name__ for b in enc.levels[2].blocks]
    assert names == ["MambaVisionMixer"] * 4 + ["Attention"] * 4
    mixer = enc.levels[2].blocks[0].mixer
    assert (mixer.d_state, mixer.d_conv, mixer.d_inner) == (8, 3, 320)
    assert tuple(mixer.A_log.shape) == (160, 8)


def test_adapt_input_conv() -> None:
    w = torch.randn(4, 3, 3, 3)
    assert torch.allclose(adapt_input_conv(w, 1), w.sum(1, keepdim=True))
    w2 = adapt_input_conv(w, 2)
    assert w2.shape == (4, 2, 3, 3) and torch.allclose(w2, w[:, :2] * 1.5)
    assert adapt_input_conv(w, 3) is w


@pytest.mark.skipif(
    not weights_only_is_safe(torch.__version__), reason="torch < 2.6 refuses pickled weights by design"
)
def test_load_errors(tmp_path: Path) -> None:
    enc = build_mambavision("nano", in_chans=1)
    with pytest.raises(ModelFileError, match="not found"):
        load_encoder_weights(enc, tmp_path / "missing.pth.tar")
    other = build_mambavision("nano", in_chans=1, dim=48, num_heads=(1, 2, 4, 8))
    torch.save({"model": other.state_dict()}, tmp_path / "wide.pth.tar")
    with pytest.raises(ModelFileError, match="does not fit"):
        load_encoder_weights(enc, tmp_path / "wide.pth.tar")
    sd = {k: v for k, v in enc.state_dict().items() if not k.startswith("norm.")}
    sd["head.weight"] = torch.zeros(3, 256)
    torch.save(sd, tmp_path / "partial.pth")
    report = load_encoder_weights(enc, tmp_path / "partial.pth")
    assert report.unexpected == ["head.weight"] and "norm.weight" in report.missing
    with pytest.raises(ModelFileError, match="do not match"):
        load_encoder_weights(enc, tmp_path / "partial.pth", strict=True)
    torch.save({"state_dict": {"x": torch.zeros(1)}, "cfg": Path("x")}, tmp_path / "pickled.pth")
    with pytest.raises(ModelFileError, match="cannot read"):
        load_encoder_weights(enc, tmp_path / "pickled.pth")


def test_stand_in_scan_is_mamba_ssm_semantics() -> None:
    """The upstream stand-in and the project's reference agree (each written on its own)."""
    g = torch.Generator().manual_seed(0)
    b, d, n, length = 2, 6, 8, 29
    u, dt = torch.randn(b, d, length, generator=g), torch.randn(b, d, length, generator=g)
    A = -3 * torch.rand(d, n, generator=g)
    B, C = torch.randn(b, n, length, generator=g), torch.randn(b, n, length, generator=g)
    D, bias = torch.randn(d, generator=g), torch.randn(d, generator=g)
    want = _stand_in_scan(u, dt, A, B, C, D, delta_bias=bias, delta_softplus=True)
    got = selective_scan_ref(u, dt, A, B, C, D, bias, True)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert (
        want - _stand_in_scan(u, dt, A, B, C, None, delta_bias=bias, delta_softplus=True)
    ).abs().max() > 0.1


@pytest.mark.parametrize(("d_conv", "expand"), [(3, 1), (4, 1), (4, 2), (2, 1)])
def test_mixer_matches_upstream_for_any_kernel(upstream, d_conv: int, expand: int) -> None:
    """Upstream's mixer convolves with padding="same": even kernels (its class default, 4) pad one
    more zero on the right; the released models use 3."""
    from dakd_edge.models.mambavision import MambaVisionMixer

    torch.manual_seed(0)
    ref = upstream.MambaVisionMixer(d_model=16, d_state=8, d_conv=d_conv, expand=expand).eval()
    _randomize(ref, seed=3)
    ours = MambaVisionMixer(16, d_state=8, d_conv=d_conv, expand=expand).eval()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 13, 16, generator=torch.Generator().manual_seed(4))
    with torch.no_grad(), use_kernels("torch"):
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
