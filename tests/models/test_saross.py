"""SAROSS-Net wiring: UNet++ nodes with CAFT / conv / no skip modules, encoder switch, config."""

from __future__ import annotations

import pytest
import torch

from dakd_edge import create_model
from dakd_edge.models.caft import CAFT
from dakd_edge.models.checkpoint import weights_only_is_safe
from dakd_edge.models.saross import SarossConfig, SarossNet

# Pickled weights (.pt / .pth) are refused before torch 2.6 (CVE-2025-32434), as the product says.
_PICKLE_OK = pytest.mark.skipif(
    not weights_only_is_safe(torch.__version__), reason="torch < 2.6 refuses pickled weights by design"
)


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_skip_modes_change_only_the_skip_modules() -> None:
    models = {s: create_model("saross-nano", num_classes=2, skip=s) for s in ("caft", "conv", "none")}
    cafts = [m for m in models["caft"].decoder.modules() if isinstance(m, CAFT)]
    assert len(cafts) == 6  # UNet++ over 4 stages: nodes (0,1..3), (1,1..2), (2,1)
    assert len(models["conv"].decoder.skips) == 6 and len(models["none"].decoder.skips) == 0
    base = _params(models["none"])
    assert _params(models["caft"]) - base == sum(_params(c) for c in cafts)
    assert _params(models["conv"]) > base
    # encoder, node blocks and head are identical across modes
    keys = {k for k in models["none"].state_dict()}
    for mode in ("caft", "conv"):
        other = {k for k in models[mode].state_dict() if not k.startswith("decoder.skips.")}
        assert other == keys


def test_caft_query_comes_from_coarser_node() -> None:
    model = create_model("saross-nano", num_classes=2)
    enc = model.encoder.channels
    dec = model.config.decoder_channels
    skips = model.decoder.skips
    assert (skips["x_2_1"].dim, skips["x_2_1"].dim_q) == (enc[2], enc[3])
    assert (skips["x_0_1"].dim, skips["x_0_1"].dim_q) == (enc[0], enc[1])
    assert (skips["x_0_3"].dim, skips["x_0_3"].dim_q) == (dec[2], dec[1])


@pytest.mark.parametrize("hw", [(33, 47), (128, 40)])
def test_any_input_size(hw: tuple[int, int]) -> None:
    model = create_model("saross-nano", num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, *hw)).shape == (1, 5, *hw)


def test_resnet34_encoder_switch() -> None:
    model = create_model("saross-nano", num_classes=2, encoder="resnet34")
    assert model.encoder.channels == (64, 128, 256, 512)
    assert create_model("saross-r34").config.encoder == "resnet34"


def test_config_validation_and_rebuild() -> None:
    with pytest.raises(ValueError, match="skip"):
        SarossConfig(skip="attention")
    with pytest.raises(ValueError, match="encoder"):
        SarossConfig(encoder="vit")
    cfg = SarossConfig(encoder="mambavision-nano", decoder_channels=[32, 32, 16, 16, 8])
    assert cfg.decoder_channels == (32, 32, 16, 16, 8)
    model = SarossNet(cfg)
    assert SarossNet(model.config).state_dict().keys() == model.state_dict().keys()
    assert SarossNet.exportable is True


@pytest.mark.parametrize(("head_stride", "n_up"), [(1, 2), (2, 1), (4, 0)])
def test_head_stride_sets_the_full_resolution_blocks(head_stride: int, n_up: int) -> None:
    torch.manual_seed(0)
    model = create_model("saross-nano", num_classes=3, head_stride=head_stride).eval()
    assert len(model.decoder.up_blocks) == n_up
    dec = model.config.decoder_channels
    assert model.head.in_channels == (dec[2], dec[3], dec[4])[n_up]
    feats = model.encoder(torch.randn(1, 1, 64, 48))
    with torch.no_grad():
        assert model.decoder(feats).shape[-2:] == (64 // head_stride, 48 // head_stride)
        assert model(torch.randn(2, 1, 37, 50)).shape == (2, 3, 37, 50)  # logits resized to the input
    with pytest.raises(ValueError, match="head_stride"):
        SarossConfig(head_stride=8)


def test_light_decoder_block_fuses_with_1x1() -> None:
    double = create_model("saross-nano", decoder_block="double")
    light = create_model("saross-nano", decoder_block="light")
    k = lambda m: [b[0][0].kernel_size for b in m.decoder.nodes.values()]  # noqa: E731
    assert set(k(double)) == {(3, 3)} and set(k(light)) == {(1, 1)}
    assert all(b[1][0].kernel_size == (3, 3) for b in light.decoder.nodes.values())
    assert _params(light) < _params(double)
    with pytest.raises(ValueError, match="decoder_block"):
        SarossConfig(decoder_block="separable")


def test_saross_edge_is_the_light_nano_variant() -> None:
    edge = create_model("saross-edge")
    cfg = edge.config
    want = ("mambavision-nano", "light", 2, 1.0)
    assert (cfg.encoder, cfg.decoder_block, cfg.head_stride, cfg.caft_ffn_expansion) == want
    assert _params(edge) < 0.8 * _params(create_model("saross-nano"))
    # registry defaults stay overridable
    assert create_model("saross-edge", head_stride=4).config.head_stride == 4
    with torch.no_grad():
        assert edge.eval()(torch.randn(1, 1, 45, 61)).shape == (1, 2, 45, 61)


@_PICKLE_OK
def test_pretrained_encoder_weights_from_local_file(tmp_path) -> None:
    from dakd_edge.models.mambavision import build_mambavision

    rgb = build_mambavision("nano", in_chans=3)
    with torch.no_grad():
        for p in rgb.parameters():
            p.normal_()
    path = tmp_path / "mambavision_nano.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in rgb.state_dict().items()}}, path)
    model = create_model("saross-nano", num_classes=2, encoder_weights=str(path))
    stem = model.encoder.patch_embed.conv_down[0].weight
    torch.testing.assert_close(stem, rgb.patch_embed.conv_down[0].weight.sum(1, keepdim=True))
    torch.testing.assert_close(model.encoder.norm.weight, rgb.norm.weight)
    assert "encoder_weights" not in vars(model.config)  # a load-time option, never replayed from a file


def test_caft_window_is_in_input_pixels_and_saved_with_the_model(tmp_path) -> None:
    from dakd_edge import create_model
    from dakd_edge.meta import ModelMeta
    from dakd_edge.models.checkpoint import load_model_file, save_model
    from dakd_edge.models.saross import SarossConfig

    torch.manual_seed(0)
    m = create_model("saross-edge", num_classes=2, caft_window=64).eval()
    # skip levels 0 / 1 / 2 are at strides 4 / 8 / 16: 16 / 8 / 4 feature pixels = 64 input pixels
    assert {k: s.window for k, s in m.decoder.skips.items()} == {
        "x_0_1": 16, "x_1_1": 8, "x_2_1": 4, "x_0_2": 16, "x_1_2": 8, "x_0_3": 16,
    }  # fmt: skip
    path = tmp_path / "w.safetensors"
    save_model(path, m, ModelMeta.default_for("saross-edge", 2, tile=256))
    again, _ = load_model_file(path)
    assert again.config.caft_window == 64
    x = torch.rand(1, 1, 72, 100)  # not a multiple of the window: partial cells
    with torch.no_grad():
        torch.testing.assert_close(again(x), m(x))
    assert create_model("saross-edge", num_classes=2).config.caft_window is None  # the paper's default
    for bad in (0, 8, 40):
        with pytest.raises(ValueError, match="caft_window"):
            SarossConfig(caft_window=bad)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("caft_head_dim", 0),
        ("caft_ffn_expansion", -1.0),
        ("decoder_channels", (64, 0, 24, 16, 16)),
        ("drop_path_rate", 1.5),
    ],
)
def test_config_rejects_bad_decoder_options(option: str, value: object) -> None:
    """A one-line ValueError naming the option, not a ZeroDivisionError or a silently different model."""
    with pytest.raises(ValueError, match=option):
        SarossConfig(encoder="mambavision-nano", **{option: value})


@pytest.mark.parametrize(("head_stride", "channels"), [(2, (64, 32, 24, 16, 0)), (4, (64, 32, 24, 0, 0))])
def test_config_ignores_unused_decoder_widths(head_stride: int, channels: tuple[int, ...]) -> None:
    """With the head at stride 2 or 4 the last widths build nothing (the docstring: "unused entries are
    ignored"); the positivity check refused such a config, so a model saved with one no longer loaded.
    A zero among the widths that are built is still refused."""
    cfg = SarossConfig(encoder="mambavision-nano", decoder_channels=channels, head_stride=head_stride)
    assert cfg.decoder_channels == channels
    with pytest.raises(ValueError, match="decoder_channels must be positive"):
        SarossConfig(
            encoder="mambavision-nano", decoder_channels=(64, 32, 0, 16, 16), head_stride=head_stride
        )
