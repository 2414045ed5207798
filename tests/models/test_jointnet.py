"""SAR-JointNet model: shapes, zero-init links, Label-Net initialisation, balancing factor (Eq. 4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dakd_edge.models.jointnet import (
    JointNetConfig,
    SARJointNet,
    balance_labels,
    compute_balancing_factor,
    dft_power,
    jointnet_config,
    logits_to_mask_range,
)
from tests.train.tiny import one_thread  # noqa: F401 (autouse fixture: tiny models run on one thread)


@pytest.fixture(scope="module")
def tiny() -> SARJointNet:
    torch.manual_seed(0)
    return SARJointNet(jointnet_config("tiny", num_classes=3)).eval()


def test_shapes_and_single_branch_equivalence(tiny: SARJointNet) -> None:
    x = torch.randn(2, 1, 16, 24)
    y = torch.randn(2, 3, 16, 24)
    t = torch.tensor([3, 700])
    with torch.no_grad():
        x_only = tiny(x, t)
        x_hat, logits = tiny(x, t, y)
    assert x_only.shape == (2, 1, 16, 24) and logits.shape == (2, 3, 16, 24)
    assert torch.isfinite(x_hat).all() and torch.isfinite(logits).all()
    # Links start at zero: SAR-Net inside the joint net computes exactly what it computes alone.
    torch.testing.assert_close(x_hat, x_only, rtol=0, atol=0)


def test_links_carry_information_once_trained(tiny: SARJointNet) -> None:
    m = SARJointNet(tiny.config)
    m.load_state_dict(tiny.state_dict())
    with torch.no_grad():
        for conv in m.links.y2x:
            conv.weight.normal_(0, 0.1)
    x, t = torch.randn(1, 1, 16, 16), torch.tensor([10])
    with torch.no_grad():
        a, _ = m(x, t, torch.randn(1, 3, 16, 16))
        b, _ = m(x, t, torch.randn(1, 3, 16, 16))
    assert not torch.allclose(a, b)  # the label branch now influences the image branch


def test_links_exist_at_every_resolution_both_ways(tiny: SARJointNet) -> None:
    n_levels = len(tiny.config.block_out_channels)
    expected = 1 + n_levels + 1 + n_levels  # conv_in, downs, mid, ups
    assert len(tiny.links.x2y) == len(tiny.links.y2x) == expected
    for conv in [*tiny.links.x2y, *tiny.links.y2x]:
        assert conv.kernel_size == (1, 1) and not conv.weight.any() and not conv.bias.any()


def test_time_embedding_is_shared(tiny: SARJointNet) -> None:
    groups = tiny.parameter_groups()
    assert any(n.startswith("time_embedding.") for n in groups["sar"])
    assert not any("time_embedding" in n for n in groups["label"])


def test_init_label_from_sar_copies_body_and_reinits_io() -> None:
    torch.manual_seed(1)
    m = SARJointNet(jointnet_config("tiny", num_classes=4))
    reinit = m.init_label_from_sar(torch.Generator().manual_seed(0))
    assert sorted(reinit) == sorted(
        ["label.conv_in.weight", "label.conv_in.bias", "label.conv_out.weight", "label.conv_out.bias"]
    )
    sar, lab = m.sar.state_dict(), m.label.state_dict()
    for k, v in sar.items():
        if k.split(".")[0] in ("conv_in", "conv_out"):
            assert lab[k].shape != v.shape or not torch.equal(lab[k], v)
        else:
            assert torch.equal(lab[k], v), k
    assert m.label.conv_in.in_channels == 4 and m.label.conv_out.out_channels == 4


def test_config_validation_and_roundtrip() -> None:
    cfg = jointnet_config("small", num_classes=5)
    assert JointNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="one flag per entry"):
        JointNetConfig(block_out_channels=(16, 32), attention=(False,), norm_num_groups=8)
    with pytest.raises(ValueError, match="divisible"):
        SARJointNet(jointnet_config("tiny"))(torch.randn(1, 1, 15, 16), torch.tensor([1]))
    with pytest.raises(ValueError, match="unknown JointNetConfig keys"):
        JointNetConfig.from_dict({"bogus": 1})


def test_label_normalisation_and_eq21() -> None:
    mask = torch.tensor([[[0, 1], [2, 255]]])
    y = balance_labels(mask, 3, 0.5)
    assert y.shape == (1, 3, 2, 2)
    assert torch.equal(y[0, :, 0, 0], torch.tensor([0.5, -0.5, -0.5]))
    assert torch.equal(y[0, :, 1, 1], torch.tensor([-0.5, -0.5, -0.5]))  # ignore: no class
    big = torch.tensor([[[[50.0]], [[-50.0]]]])
    torch.testing.assert_close(logits_to_mask_range(big, 0.4)[0, :, 0, 0], torch.tensor([0.4, -0.4]))


def test_dft_power_matches_parseval() -> None:
    z = np.random.default_rng(0).normal(size=(2, 9, 13))
    assert dft_power(z) == pytest.approx(9 * 13 * (z**2).mean(), rel=1e-10)


def _samples(rng: np.random.Generator, n: int, k: int) -> list[dict]:
    out = []
    for _ in range(n):
        h, w = rng.integers(8, 20, size=2)  # mixed sizes: the pixel weighting must still hold
        mask = rng.integers(0, k, size=(h, w))
        mask[0, :2] = 255
        out.append({"image": rng.random((1, h, w)).astype(np.float32) * 0.6, "mask": mask})
    return out


def test_balancing_factor_matches_spatial_domain_value() -> None:
    rng = np.random.default_rng(42)
    data = _samples(rng, 7, 3)
    stats = compute_balancing_factor(iter(data), num_classes=3)  # a plain iterator: streamed
    # Spatial domain (Parseval): P(z) = H W mean(z^2), averaged over images; y_n has K channels.
    px = np.mean([s["image"].size * ((2 * s["image"].astype(np.float64) - 1) ** 2).mean() for s in data])
    py = []
    for s in data:
        m = s["mask"]
        oh = np.stack([(m == c) for c in range(3)]).astype(np.float64)
        py.append(m.size * ((2 * oh - 1) ** 2).mean())
    expected = math.sqrt(px / np.mean(py))
    assert stats.count == 7
    assert stats.b == pytest.approx(expected, rel=1e-9)


def test_balancing_factor_known_value_and_errors() -> None:
    # x = 2 * 0.25 - 1 = -0.5 everywhere -> P(x) = HW/4; y_n = +-1 -> P(y_n) = HW -> b = 0.5.
    ds = [{"image": np.full((1, 8, 8), 0.25, np.float32), "mask": np.zeros((8, 8), np.int64)}] * 3
    assert compute_balancing_factor(ds, num_classes=2).b == pytest.approx(0.5)
    with pytest.raises(ValueError, match="num_classes is required"):
        compute_balancing_factor(ds)
    with pytest.raises(ValueError, match="class id 2 >= num_classes 2"):
        compute_balancing_factor([{"image": np.zeros((4, 4)), "mask": np.full((4, 4), 2)}], num_classes=2)
    with pytest.raises(ValueError, match="no samples"):
        compute_balancing_factor([], num_classes=2)
