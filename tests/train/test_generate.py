"""DDIM generation of the augmented set and the quality report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dakd_edge.cli.app import cli
from dakd_edge.data.augmented import AugmentedDataset, read_manifest
from dakd_edge.errors import ModelFileError
from dakd_edge.train import generate as gen
from dakd_edge.train import report as rep
from dakd_edge.train.jointnet import SyntheticPatches, train_jointnet
from tests.train.tiny import JOINT_CROP, jointnet_config, one_thread  # noqa: F401 (autouse fixture)

CROP = JOINT_CROP


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SAR-JointNet trained for a few steps of every stage (stage-1 and final checkpoints)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("jn")
    train_jointnet(jointnet_config(out, sample_every=6, synthetic=6), progress=False)
    return out


def test_training_wrote_sample_grid(run: Path) -> None:
    from PIL import Image

    grid = run / "samples" / "step0000006.png"
    with Image.open(grid) as im:
        assert im.size == (4 * CROP, 2 * CROP) and im.mode == "RGB"  # 4 images over 4 coloured labels


def test_sample_shapes_range_and_eq21_every_step(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net = gen.load_jointnet(run / "last.pt")
    calls = []
    real = gen.logits_to_mask_range

    def spy(logits: torch.Tensor, b: float) -> torch.Tensor:
        y = real(logits, b)
        calls.append((y.min().item(), y.max().item()))
        return y

    monkeypatch.setattr(gen, "logits_to_mask_range", spy)
    images, logits = gen.sample_joint(net.model, net.balancing_factor, [0, 1, 2], (CROP, 24), steps=3)
    assert images.shape == (3, 1, CROP, 24) and logits.shape == (3, 2, CROP, 24)
    assert torch.isfinite(images).all() and torch.isfinite(logits).all()
    assert images.min() >= 0.0 and images.max() <= 1.0
    b = net.balancing_factor
    assert len(calls) == 3 and all(-b - 1e-6 <= lo and hi <= b + 1e-6 for lo, hi in calls)


def test_per_sample_seeds_independent_of_batching(run: Path) -> None:
    net = gen.load_jointnet(run / "last.pt")
    a, la = gen.sample_joint(net.model, net.balancing_factor, [0, 1, 2], (CROP, CROP), steps=2, seed=5)
    b, lb = gen.sample_joint(net.model, net.balancing_factor, [2], (CROP, CROP), steps=2, seed=5)
    torch.testing.assert_close(a[2:], b, rtol=1e-5, atol=1e-5)
    c, _ = gen.sample_joint(net.model, net.balancing_factor, [2], (CROP, CROP), steps=2, seed=6)
    assert not torch.allclose(b, c)


def test_generate_is_deterministic_and_resumable(run: Path, tmp_path: Path) -> None:
    ck = run / "last.pt"
    kw = dict(steps=2, batch=2, seed=1, progress=False)
    full = gen.generate_augmented(ck, tmp_path / "a", 5, **kw)
    assert full["written"] == 5 and full["skipped"] == 0
    part = gen.generate_augmented(ck, tmp_path / "b", 3, **kw)  # "interrupted" after 3
    (tmp_path / "b" / "images" / "000001.png").unlink()  # and one sample lost
    rest = gen.generate_augmented(ck, tmp_path / "b", 5, **kw)
    assert part["written"] == 3 and rest["written"] == 3 and rest["skipped"] == 2
    for sub in ("images/000001.png", "images/000004.png", "logits/000003.npy", "logits/000001.npy"):
        assert (tmp_path / "a" / sub).read_bytes() == (tmp_path / "b" / sub).read_bytes(), sub
    # Two shards into one folder reproduce the single-process set.
    for k in (1, 0):
        gen.generate_augmented(ck, tmp_path / "c", 5, shard=(k, 2), **kw)
    for i in range(5):
        assert (tmp_path / "a/images" / f"{i:06d}.png").read_bytes() == (
            tmp_path / "c/images" / f"{i:06d}.png"
        ).read_bytes()
    assert len(read_manifest(tmp_path / "c")["samples"]) == 5
    m = read_manifest(tmp_path / "b")
    assert len(m["samples"]) == 5 and m["num_classes"] == 2
    assert m["balancing_factor"] == pytest.approx(gen.load_jointnet(ck).balancing_factor)
    teacher = m["generator"]["teacher"]  # provenance: how the teacher was trained
    assert teacher["crop"] == CROP and len(teacher["stage_steps"]) == 3 and "lr" in teacher
    ds = AugmentedDataset(tmp_path / "b")  # H1's reader accepts what we wrote
    s = ds[0]
    assert s["image"].shape == (1, CROP, CROP) and s["logits"].shape == (2, CROP, CROP)
    assert np.load(tmp_path / "b" / "logits" / "000000.npy").dtype == np.float16


def test_generate_refuses_stage1_checkpoint(run: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="stage 1"):
        gen.generate_augmented(run / "stage1.pt", tmp_path / "x", 1, steps=1, progress=False)


def test_cli_generate_and_report(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "aug"
    r = CliRunner().invoke(
        cli,
        [
            "jointnet",
            "generate",
            str(run / "last.pt"),
            "--n",
            "3",
            "--out",
            str(out),
            "--steps",
            "2",
            "--batch",
            "2",
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "3 written, 0 already present" in r.output
    real = tmp_path / "real"
    (real / "images").mkdir(parents=True)
    (real / "masks").mkdir()
    from PIL import Image

    ds = SyntheticPatches(3, 32, 2, seed=9)
    for i in range(3):
        s = ds[i]
        Image.fromarray((s["image"][0] * 255).astype(np.uint8)).save(real / "images" / f"r{i}.png")
        Image.fromarray(s["mask"].astype(np.uint8)).save(real / "masks" / f"r{i}.png")
    r = CliRunner().invoke(
        cli,
        [
            "jointnet",
            "report",
            str(out),
            "--real",
            str(real),
            "--real-kind",
            "folder",
            "--json",
            str(tmp_path / "rep.json"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "FID                  not computed" in r.output and "ENL" in r.output
    assert (tmp_path / "rep.json").is_file()


# --------------------------------------------------------------------------------------------- report
def test_enl_of_gamma_speckle_recovers_looks() -> None:
    rng = np.random.default_rng(0)
    img = rng.gamma(4.0, 0.25 / 4.0, size=(128, 128))  # L = 4 looks, mean 0.25
    assert np.median(rep.enl_windows(img, None)) == pytest.approx(4.0, rel=0.25)
    mask = np.zeros((128, 128), np.int64)
    mask[:16] = 1
    assert len(rep.enl_windows(img, mask)) == (128 // 16) ** 2 - 128 // 16  # oil row excluded


def test_oil_contrast_sign() -> None:
    img = np.full((32, 32), 0.5)
    labels = np.zeros((32, 32), np.int64)
    labels[10:20, 10:20] = 1
    img[labels == 1] = 0.2
    assert rep.oil_contrast(img, labels, oil=1) == pytest.approx(0.3)
    assert rep.oil_contrast(img, np.zeros_like(labels), oil=1) is None


def test_frechet_distance_closed_form() -> None:
    mu1, mu2 = np.zeros(3), np.array([1.0, 0.0, 2.0])
    c1, c2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 1.0])
    # diagonal: |dmu|^2 + sum (s1 - s2)^2 with s = sqrt(var)
    expected = 5.0 + (1 - 2) ** 2 + (2 - 1) ** 2 + (3 - 1) ** 2
    assert rep.frechet_distance(mu1, c1, mu2, c2) == pytest.approx(expected, rel=1e-9)
    assert rep.frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-9)
    # The sample-space form used for few images agrees with the covariance form.
    rng = np.random.default_rng(3)
    f1, f2 = rng.normal(size=(5, 8)), rng.normal(1.0, 2.0, size=(7, 8))
    full = rep.frechet_distance(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))
    assert rep.fid_from_features(f1, f2) == pytest.approx(full, rel=1e-8)
    g1, g2 = rng.normal(size=(20, 4)), rng.normal(size=(30, 4))  # n >= d: covariance form
    full = rep.frechet_distance(g1.mean(0), np.cov(g1, rowvar=False), g2.mean(0), np.cov(g2, rowvar=False))
    assert rep.fid_from_features(g1, g2) == pytest.approx(full, rel=1e-12)


def test_histogram_and_spectrum_distances() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((64, 64))
    h = np.histogram(a, 256, (0, 1))[0].astype(float)
    assert rep.histogram_distances(h, h) == {"wasserstein1": 0.0, "jensen_shannon": 0.0}
    shifted = np.histogram(np.clip(a * 0.5, 0, 1), 256, (0, 1))[0].astype(float)
    assert rep.histogram_distances(h, shifted)["wasserstein1"] > 0.1
    white = rep.radial_spectrum(a)
    smooth = rep.radial_spectrum(np.cumsum(np.cumsum(a, 0), 1))
    assert rep.spectrum_distance(white, white) == 0.0
    assert rep.spectrum_distance(white, smooth) > 0.5


def test_inception_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        rep.inception_features(tmp_path / "nope.pth", [])
    bad = tmp_path / "bad.pth"
    torch.save({"w": torch.zeros(1)}, bad)
    with pytest.raises(ModelFileError, match="not a torchvision inception_v3"):
        rep.inception_features(bad, [])


class _StubInception(torch.nn.Module):
    """Stands in for torchvision's 27M-parameter Inception-v3 (too slow for the CPU suite)."""

    def __init__(self, **kw) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2048, 3, stride=8)
        self.fc = torch.nn.Linear(2048, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1:] == (3, 299, 299)  # resized and replicated to RGB like the real input
        return self.fc(self.conv(x).mean((2, 3)))


def test_fid_path_with_local_weights_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.models

    monkeypatch.setattr(torchvision.models, "inception_v3", _StubInception)
    torch.manual_seed(0)
    path = tmp_path / "inception.pth"
    torch.save(_StubInception().state_dict(), path)
    rng = np.random.default_rng(0)
    imgs = [rng.random((1, 32, 32)).astype(np.float32) for _ in range(3)]
    f = rep.inception_features(path, imgs, batch=2)
    assert f.shape == (3, 2048) and np.isfinite(f).all()  # fc removed: pool features
    assert rep.fid_from_features(f, f) == pytest.approx(0.0, abs=1e-6)
