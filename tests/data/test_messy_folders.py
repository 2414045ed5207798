"""Users' own, messy dataset folders: what is read, refused (one line naming the file) or skipped (a
counted warning), never silently read wrong."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dakd_edge.data import open_dataset
from dakd_edge.data.augmented import AugmentedDataset, AugmentedWriter
from dakd_edge.errors import DatasetError, Notice


def _folder(root: Path, n: int = 3, size: int = 12) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(
            root / "images" / f"s{i}.png"
        )
        Image.fromarray((rng.random((size, size)) < 0.3).astype(np.uint8)).save(root / "masks" / f"s{i}.png")
    return root


def _sos(root: Path, n: int = 2, size: int = 12) -> Path:
    d = root / "train" / "palsar"
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f"{i}_sat.jpg")
        Image.fromarray(((rng.random((size, size)) < 0.3) * 255).astype(np.uint8)).save(d / f"{i}_mask.png")
    return root


def test_palette_image_is_read_as_its_colours_not_its_indices(tmp_path: Path) -> None:
    """A quantised (palette, mode P) image was read as its palette indices: a luminance that has nothing
    to do with the picture (anti-correlated with it here), trained on without a word."""
    root = _folder(tmp_path / "ds", n=1, size=16)
    grey = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))  # 16 levels: exact in 16 colours
    rgb = Image.fromarray(np.repeat(grey[..., None], 3, axis=2))
    pal = rgb.quantize(16)
    assert pal.mode == "P" and not np.array_equal(np.asarray(pal), grey)  # indices are not the levels
    pal.save(root / "images" / "s0.png")
    image = open_dataset(root)[0]["image"][0]
    np.testing.assert_allclose(image, grey / 255.0, atol=1e-6)
    # masks keep their indices: a palette mask stores class ids
    Image.fromarray(np.zeros((16, 16), np.uint8)).convert("P").save(root / "masks" / "s0.png")
    assert open_dataset(root)[0]["mask"].max() == 0


@pytest.mark.parametrize(
    "what, folder, sos_twin, sos_pair",
    [
        ("mask", "masks", "0_mask.bmp", r"0_mask\.bmp and 0_mask\.png"),  # the last listed was used
        # prediction PNGs saved into an SOS folder were two images with one mask: the SOS test score
        # fell from 83 to 32 mIoU over twice the images, without a word
        ("image", "images", "0_sat.png", r"0_sat\.jpg and 0_sat\.png"),
    ],
)
def test_two_files_with_one_name_are_refused(
    tmp_path: Path, what: str, folder: str, sos_twin: str, sos_pair: str
) -> None:
    """``masks/a.png`` beside ``masks/a.tif``, ``1_sat.jpg`` beside ``1_sat.png``: which one is meant
    cannot be told; refused in one line naming both (generic folders and SOS)."""
    root = _folder(tmp_path / "ds")
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(root / folder / "s1.tif")
    with pytest.raises(DatasetError, match=rf"two {what}s with one name: .*s1\.png and s1\.tif"):
        open_dataset(root)
    sos = _sos(tmp_path / "sos")
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(sos / "train" / "palsar" / sos_twin)
    with pytest.raises(DatasetError, match=rf"two {what}s with one name: .*{sos_pair}"):
        open_dataset(sos, kind="sos")


def test_masks_without_an_image_are_counted_in_one_warning(tmp_path: Path) -> None:
    root = _folder(tmp_path / "ds", n=4)
    (root / "images" / "s1.png").unlink()
    (root / "images" / "s3.png").unlink()
    with pytest.warns(Notice, match=r"2 mask\(s\) without an image .* not used \(first: .*s1\.png\)"):
        ds = open_dataset(root)
    assert len(ds) == 2
    sos = _sos(tmp_path / "sos", n=3)
    (sos / "train" / "palsar" / "2_sat.jpg").unlink()
    with pytest.warns(Notice, match=r"1 mask\(s\) without an image"):
        assert len(open_dataset(sos, kind="sos")) == 2
    with warnings.catch_warnings():  # a complete folder says nothing
        warnings.simplefilter("error")
        open_dataset(_folder(tmp_path / "ok"))


def test_hidden_files_folders_and_odd_names(tmp_path: Path) -> None:
    """macOS leftovers and a sub-folder named like an image are not images; upper-case extensions,
    spaces and non-ASCII names are."""
    root = _folder(tmp_path / "ds", n=2)
    (root / "images" / "s0.png").rename(root / "images" / "Ölteppich 1.PNG")
    (root / "masks" / "s0.png").rename(root / "masks" / "Ölteppich 1.png")
    (root / "images" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "images" / "._s1.png").write_bytes(b"\0\5\26\7")
    (root / "masks" / "._s1.png").write_bytes(b"\0\5\26\7")
    (root / "images" / "thumbs.png").mkdir()  # a folder, not an image with no mask
    ds = open_dataset(root)
    assert sorted(p.name for p, _ in ds.files) == ["s1.png", "Ölteppich 1.PNG"]
    assert ds[1]["image"].shape == (1, 12, 12)


def _aug(root: Path, n: int = 2, k: int = 2) -> Path:
    rng = np.random.default_rng(0)
    with AugmentedWriter(root, k, [f"c{i}" for i in range(k)], 0.5, {}) as w:
        for i in range(n):
            w.add(f"{i:06d}", rng.integers(0, 256, (8, 8), dtype=np.uint8), rng.normal(size=(k, 8, 8)))
    return root


def test_damaged_generated_samples_are_named(tmp_path: Path) -> None:
    """A zero-byte .npy raised EOFError (the CLI printed "aborted", exit 1); logits of another class count
    than the manifest's failed deep in the mosaic code with a traceback; NaN / inf logits stopped
    training with "non-finite loss ... perhaps with a lower learning rate", naming no file."""
    root = _aug(tmp_path / "aug", n=4)
    lg = root / "logits"
    (lg / "000000.npy").write_bytes(b"")  # a disk that filled up under another tool, a failed copy
    np.save(lg / "000001.npy", np.zeros((3, 8, 8), np.float16))
    bad = np.zeros((2, 8, 8), np.float16)
    bad[1, 2, 3] = np.nan
    bad[0, 0, 0] = np.inf
    np.save(lg / "000002.npy", bad)
    ds = AugmentedDataset(root)
    with pytest.raises(DatasetError, match="cannot read augmented sample 000000: No data left"):
        ds[0]
    with pytest.raises(DatasetError, match=r"000001\.npy: logits of shape \(3, 8, 8\), .* says 2 classes"):
        ds[1]
    with pytest.raises(DatasetError, match=r"000002\.npy: 2 teacher logit\(s\) are NaN or inf"):
        ds[2]
    s = ds[3]
    assert s["logits"].shape == (2, 8, 8) and np.isfinite(s["logits"]).all()
