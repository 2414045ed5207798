"""SMP baselines under the shared forward: padding to 32, unused stages dropped, local weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dakd_edge import create_model
from dakd_edge.errors import ModelFileError
from dakd_edge.models.checkpoint import weights_only_is_safe

# Pickled weights (.pt / .pth) are refused before torch 2.6 (CVE-2025-32434), as the product says.
_PICKLE_OK = pytest.mark.skipif(
    not weights_only_is_safe(torch.__version__), reason="torch < 2.6 refuses pickled weights by design"
)


def test_pspnet_keeps_only_the_stages_it_runs() -> None:
    model = create_model("pspnet", num_classes=2)
    names = {n.split(".")[0] for n, _ in model.encoder.named_parameters()}
    assert "layer3" not in names and "layer4" not in names and "layer2" in names


def test_padding_matches_a_multiple_of_32_input() -> None:
    torch.manual_seed(0)
    model = create_model("linknet", num_classes=2).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        full = model(x)
        # a 50x40 crop is padded (replicate) to 64x64 internally and cropped back
        part = model(x[:, :, :50, :40])
    assert part.shape == (1, 2, 50, 40)
    assert torch.isfinite(part).all() and not torch.equal(part, full[:, :, :50, :40])


@_PICKLE_OK
def test_local_encoder_weights_fold_rgb_stem(tmp_path: Path) -> None:
    rgb = create_model("unet", num_classes=2, in_chans=3)
    with torch.no_grad():
        rgb.encoder.conv1.weight.normal_()
    path = tmp_path / "resnet34.pth"
    torch.save(rgb.encoder.state_dict(), path)
    model = create_model("unet", num_classes=2, in_chans=1, encoder_weights=str(path))
    torch.testing.assert_close(model.encoder.conv1.weight, rgb.encoder.conv1.weight.sum(1, keepdim=True))
    with pytest.raises(ModelFileError, match="not found"):
        create_model("unet", encoder_weights=str(tmp_path / "nope.pth"))
