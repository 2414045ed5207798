"""Dataset loaders (OSD, SOS, generic folder, augmented) on generated fixtures and the real subsets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dakd_edge.data import detect_kind, open_dataset
from dakd_edge.data.augmented import AugmentedWriter
from dakd_edge.data.sos import decode_black_white
from dakd_edge.errors import DatasetError
from dakd_edge.meta import OSD_PALETTE


def _grey_rgb(path: Path, grey: np.ndarray) -> None:
    Image.fromarray(np.repeat(grey[..., None], 3, axis=2)).save(path)


def _ids(h: int, w: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, k, (h, w)).astype(np.uint8)


def make_osd(
    root: Path, split: str = "test", n: int = 2, h: int = 20, w: int = 30, one_d: bool = False
) -> list:
    d = root / split
    (d / "images").mkdir(parents=True)
    (d / "labels").mkdir()
    if one_d:
        (d / "labels_1D").mkdir()
    ids = []
    for i in range(n):
        grey = np.random.default_rng(i).integers(0, 256, (h, w), dtype=np.uint8)
        _grey_rgb(d / "images" / f"img_{i:04d}.jpg", grey)
        lab = _ids(h, w, 5, i)
        Image.fromarray(np.asarray(OSD_PALETTE, np.uint8)[lab]).save(d / "labels" / f"img_{i:04d}.png")
        if one_d:
            Image.fromarray(lab).save(d / "labels_1D" / f"img_{i:04d}.png")
        ids.append(lab)
    return ids


def make_sos(root: Path, n: int = 2, size: int = 16) -> None:
    for sensor in ("palsar", "sentinel"):
        tr = root / "train" / sensor
        te_sat, te_gt = root / "test" / sensor / "sat", root / "test" / sensor / "gt"
        for p in (tr, te_sat, te_gt):
            p.mkdir(parents=True)
        for i in range(n):
            grey = np.full((size, size), 40 * i + 10, np.uint8)
            mask = np.zeros((size, size, 3), np.uint8)
            mask[: size // 2] = 255
            _grey_rgb(tr / f"{sensor}{i}_sat.jpg", grey)
            Image.fromarray(mask).save(tr / f"{sensor}{i}_mask.png")
            _grey_rgb(te_sat / f"{i}_sat.jpg", grey)
            Image.fromarray(mask).save(te_gt / f"{i}_mask.png")


def test_osd_rgb_labels_nearest_colour_and_binary(tmp_path: Path) -> None:
    ids = make_osd(tmp_path)
    # a stray off-palette pixel next to brown (like the real release) maps to ship
    lab = np.asarray(Image.open(tmp_path / "test/labels/img_0000.png")).copy()
    lab[0, 0] = (147, 103, 59)
    Image.fromarray(lab).save(tmp_path / "test/labels/img_0000.png")
    ids[0][0, 0] = 3
    assert detect_kind(tmp_path, "test") == "osd"
    ds = open_dataset(tmp_path, split="test")
    assert len(ds) == 2 and ds.num_classes == 5 and ds.class_names[1] == "oil"
    s = ds[0]
    assert s["image"].dtype == np.float32 and s["image"].shape == (1, 20, 30)
    assert 0.0 <= s["image"].min() and s["image"].max() <= 1.0
    assert s["mask"].dtype == np.int64
    np.testing.assert_array_equal(s["mask"], ids[0])
    b = open_dataset(tmp_path, split="test", classes="binary")
    assert b.num_classes == 2
    np.testing.assert_array_equal(b[1]["mask"], (ids[1] == 1).astype(np.int64))
    assert [p[0].name for p in ds.files] == ["img_0000.jpg", "img_0001.jpg"]


def test_osd_labels_1d_preferred(tmp_path: Path) -> None:
    ids = make_osd(tmp_path, one_d=True)
    (tmp_path / "test/labels/img_0000.png").unlink()  # RGB labels incomplete: 1-D ones are used
    ds = open_dataset(tmp_path / "test", split="test", kind="osd")
    np.testing.assert_array_equal(ds[0]["mask"], ids[0])


def test_osd_off_palette_and_size_mismatch(tmp_path: Path) -> None:
    make_osd(tmp_path)
    lab = np.asarray(Image.open(tmp_path / "test/labels/img_0001.png")).copy()
    lab[3:5, 3:5] = (128, 128, 128)
    Image.fromarray(lab).save(tmp_path / "test/labels/img_0001.png")
    ds = open_dataset(tmp_path, split="test")
    with pytest.raises(DatasetError, match="far from the OSD palette"):
        ds[1]
    Image.fromarray(np.zeros((21, 30, 3), np.uint8)).save(tmp_path / "test/labels/img_0000.png")
    with pytest.raises(DatasetError, match="size mismatch"):
        open_dataset(tmp_path, split="test")


def test_missing_empty_and_unknown(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        open_dataset(tmp_path / "nope")
    with pytest.raises(DatasetError, match="unknown dataset layout"):
        open_dataset(tmp_path)
    make_osd(tmp_path / "osd")
    with pytest.raises(DatasetError, match="splits present: test"):
        open_dataset(tmp_path / "osd", split="train")
    (tmp_path / "osd/test/labels/img_0001.png").unlink()
    with pytest.raises(DatasetError, match="no mask"):
        open_dataset(tmp_path / "osd", split="test")
    (tmp_path / "f/images").mkdir(parents=True)
    (tmp_path / "f/masks").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        open_dataset(tmp_path / "f")
    with pytest.raises(DatasetError, match="kind"):
        open_dataset(tmp_path / "f", kind="coco")


def test_sos_layouts_and_sensors(tmp_path: Path) -> None:
    make_sos(tmp_path)
    assert detect_kind(tmp_path) == "sos"
    both = open_dataset(tmp_path, split="train")
    one = open_dataset(tmp_path, split="test", sensor="palsar")
    assert len(both) == 4 and len(one) == 2 and both.num_classes == 2
    s = one[1]
    assert s["image"][0, 0, 0] == pytest.approx(50 / 255, abs=2 / 255)
    assert (s["mask"][:8] == 1).all() and (s["mask"][8:] == 0).all()
    assert len(open_dataset(tmp_path, split="train", classes="binary")) == 4
    with pytest.raises(DatasetError, match="sensor"):
        open_dataset(tmp_path, sensor="radarsat")
    edge = np.zeros((16, 16, 3), np.uint8)  # anti-aliased edge: grey pixels threshold at 128
    edge[:, :8], edge[:, 8] = 255, 127
    assert decode_black_white(edge, Path("edge.png"))[:, 8].sum() == 0
    assert decode_black_white(edge, Path("edge.png"))[:, :8].all()
    bad = np.full((16, 16, 3), 128, np.uint8)
    Image.fromarray(bad).save(tmp_path / "test/sentinel/gt/0_mask.png")
    with pytest.raises(DatasetError, match="neither black nor white"):
        open_dataset(tmp_path, split="test", sensor="sentinel")[0]


def test_generic_folder_and_classes_json(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.full((8, 9), 100, np.uint8)).save(tmp_path / "images/a.png")
    m = np.zeros((8, 9), np.uint8)
    m[0, 0], m[1, 1] = 1, 255
    Image.fromarray(m).save(tmp_path / "masks/a.png")
    ds = open_dataset(tmp_path)
    assert detect_kind(tmp_path) == "folder" and ds.num_classes == 2 and ds[0]["mask"][1, 1] == 255
    m[2, 2] = 4
    Image.fromarray(m).save(tmp_path / "masks/a.png")
    assert open_dataset(tmp_path).num_classes == 5
    (tmp_path / "classes.json").write_text('{"class_names": ["a", "b", "c"]}')
    with pytest.raises(DatasetError, match="not class ids"):
        open_dataset(tmp_path)[0]


def test_augmented_through_open_dataset(tmp_path: Path) -> None:
    w = AugmentedWriter(tmp_path, 5, ["sea", "oil", "look-alike", "ship", "land"], 0.528)
    w.add("000000", np.zeros((8, 8), np.uint8), np.zeros((5, 8, 8), np.float16))
    w.close()
    assert detect_kind(tmp_path) == "augmented"
    ds = open_dataset(tmp_path, classes="binary")
    assert ds.num_classes == 2 and ds[0]["logits"].shape == (2, 8, 8)


# ---- real subsets (skip when ../shared/data is absent) -------------------------------------------
def test_real_osd(shared_data: Path) -> None:
    root = shared_data / "osd"
    if not root.is_dir():
        pytest.skip("no OSD subset")
    ds = open_dataset(root, split="test")
    assert len(ds) >= 1 and ds.num_classes == 5
    counts = np.zeros(5, np.int64)
    for i in range(min(len(ds), 4)):
        s = ds[i]
        assert s["image"].shape == (1, 650, 1250) and s["mask"].shape == (650, 1250)
        counts += np.bincount(s["mask"].ravel(), minlength=5)[:5]
    assert counts[0] > counts[1:].sum()  # mostly sea


def test_real_sos(shared_data: Path) -> None:
    root = shared_data / "sos"
    if not root.is_dir():
        pytest.skip("no SOS subset")
    for split in ("train", "test"):
        for sensor in ("palsar", "sentinel"):
            ds = open_dataset(root, split=split, sensor=sensor)
            s = ds[0]
            assert s["image"].shape == (1, 256, 256) and set(np.unique(s["mask"])) <= {0, 1}
            # Every mask decodes: the release anti-aliases slick edges (grey pixels are expected).
            for _, mask_path in ds.files:
                grey = np.asarray(Image.open(mask_path).convert("L"))
                decoded = decode_black_white(grey, mask_path)
                assert set(np.unique(decoded)) <= {0, 1}


def test_folder_of_black_white_masks_is_refused(tmp_path: Path) -> None:
    """0/255 masks: 255 is the ignore value, so oil would never be trained; say so instead."""
    for name, oil in (("bw", 255), ("ids", 1)):
        (tmp_path / name / "images").mkdir(parents=True)
        (tmp_path / name / "masks").mkdir()
        for i in range(2):
            mask = np.zeros((8, 8), np.uint8)
            mask[2:5, 2:6] = oil
            Image.fromarray(np.full((8, 8), 99, np.uint8)).save(tmp_path / name / "images" / f"{i}.png")
            Image.fromarray(mask).save(tmp_path / name / "masks" / f"{i}.png")
    with pytest.raises(DatasetError, match=r"only 0 and 255.*255 means 'ignore'.*store oil as 1"):
        open_dataset(tmp_path / "bw", kind="folder")
    ds = open_dataset(tmp_path / "ids", kind="folder")
    assert ds.num_classes == 2 and ds[0]["mask"].max() == 1


def test_sos_mask_of_class_ids_is_refused() -> None:
    """An SOS mask saved as 0/1 ids would threshold to all background: every slick silently lost."""
    ids = np.zeros((8, 8), np.uint8)
    ids[2:5, 2:5] = 1
    with pytest.raises(DatasetError, match=r"m\.png: class-id mask \(values 0/1\) in an SOS folder"):
        decode_black_white(ids, Path("m.png"))
    assert decode_black_white(ids * 255, Path("m.png")).sum() == 9
    assert decode_black_white(np.zeros((8, 8), np.uint8), Path("m.png")).sum() == 0  # no oil: fine


def test_folder_classes_are_read_by_name(tmp_path: Path) -> None:
    """``classes="binary"`` took id 1 as oil whatever classes.json said (a set whose oil is id 2 trained
    its look-alikes as oil), and ids 2-4 without classes.json became the OSD classes without a word."""
    from dakd_edge.errors import Notice

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.full((2, 4), 100, np.uint8)).save(tmp_path / "images/a.png")
    Image.fromarray(np.array([[0, 1, 2, 255]] * 2, np.uint8)).save(tmp_path / "masks/a.png")
    with pytest.warns(Notice, match="no classes.json and mask ids up to 2: read as the OSD classes"):
        assert open_dataset(tmp_path).class_names == ["sea", "oil", "look-alike", "ship", "land"]
    (tmp_path / "classes.json").write_text('{"class_names": ["sea", "look-alike", "Oil-Spill"]}')
    assert open_dataset(tmp_path, classes="binary")[0]["mask"][0].tolist() == [0, 0, 1, 255]
    (tmp_path / "classes.json").write_text(json.dumps({"class_names": [f"c{i}" for i in range(256)]}))
    with pytest.raises(DatasetError, match="2 to 255 classes"):
        open_dataset(tmp_path)


def test_augmented_binary_folds_onto_the_oil_class_by_name(tmp_path: Path) -> None:
    w = AugmentedWriter(tmp_path, 3, ["sea", "look-alike", "oil"], 0.528)
    logits = np.zeros((3, 1, 2), np.float16)
    logits[2, 0, 0] = logits[1, 0, 1] = 4.0  # pixel 0: oil; pixel 1: look-alike
    w.add("000000", np.zeros((1, 2), np.uint8), logits)
    w.close()
    s = open_dataset(tmp_path, classes="binary")[0]
    assert s["mask"].tolist() == [[1, 0]]
    p_oil = np.exp(s["logits"][1]) / np.exp(s["logits"]).sum(axis=0)
    np.testing.assert_allclose(p_oil[0], [np.exp(4) / (np.exp(4) + 2), 1 / (np.exp(4) + 2)], rtol=1e-3)


def test_calibrated_float_chips_read_as_segment_reads_them(tmp_path: Path) -> None:
    """Float sigma0 chips (dB or linear GeoTIFFs) were refused ('unsupported image type float32'), so a
    team could not train on chips calibrated like the scenes it segments. They are read through the
    scaling segment uses; NaN (no data) becomes ignore in the mask."""
    from PIL import Image

    from dakd_edge.data import open_dataset
    from dakd_edge.data.scaling import to_unit

    rng = np.random.default_rng(0)
    u8 = rng.integers(30, 200, (16, 16)).astype(np.uint8)
    db = (u8.astype(np.float32) / 255.0 * 40.0 - 35.0).astype(np.float32)  # the inverse of to_unit's stretch
    mask = (u8 < 80).astype(np.uint8)
    for name, img in {"db": db, "lin": (10 ** (db / 10)).astype(np.float32)}.items():
        root = tmp_path / name
        (root / "images").mkdir(parents=True)
        (root / "masks").mkdir()
        img = img.copy()
        if name == "db":
            img[0, :4] = np.nan
        Image.fromarray(img).save(root / "images" / "a.tif")
        Image.fromarray(mask).save(root / "masks" / "a.png")
        s = open_dataset(root)[0]
        expect = u8.astype(np.float32) / 255.0
        got = s["image"][0]
        if name == "db":  # filled with the chip's median luminance, ignored by the mask
            assert (s["mask"][0, :4] == 255).all()
            assert got[0, :4] == pytest.approx(float(np.median(expect.ravel()[4:])), abs=1e-5)
            got, expect = got[1:], expect[1:]
        np.testing.assert_allclose(got, expect, atol=1e-5)
        assert s["mask"][1:].tolist() == mask[1:].tolist()
    assert np.allclose(to_unit(db, "db"), u8 / 255.0, atol=1e-5)


def test_float_chips_share_one_scale_and_their_nodata_is_ignored(tmp_path: Path) -> None:
    """Review: the scale was guessed chip by chip (a bright linear chip, p99 above 20, was read as 8-bit
    luminance beside dB-like neighbours), and a -9999 fill reached training as the darkest sea."""
    from dakd_edge.data import open_dataset

    root = tmp_path / "lin"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    calm = np.full((16, 16), 0.02, np.float32)
    bright = np.full((16, 16), 0.5, np.float32)
    bright[1:4, 1:4] = 30.0  # a ship: alone, its p99 (above 20) reads the chip as 8-bit luminance
    bright[0, 0] = -9999.0
    for name, img in (("a", calm), ("b", bright), ("c", calm), ("d", calm)):
        Image.fromarray(img).save(root / "images" / f"{name}.tif")
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "masks" / f"{name}.png")
    ds = open_dataset(root)
    assert ds.float_scale() == "linear"
    s = ds[1]
    assert s["image"][0, 1, 1] == pytest.approx(1.0)  # +14.8 dB, clipped at +5 dB; not 30 / 255 = 0.12
    assert s["image"][0, 8, 8] == pytest.approx((10 * np.log10(0.5) + 35.0) / 40.0, abs=1e-5)
    assert s["mask"][0, 0] == 255 and s["mask"][1, 1] == 0


def test_a_set_s_scale_is_not_decided_by_a_fill_chip(tmp_path: Path) -> None:
    """Second review: a first chip outside the swath (all 0, or all -9999) decided the set's scale (0 ->
    linear: every dB chip black) or stopped every loader worker; a 16-bit set holding 8-bit values was
    read / 65535 (near black), while segment reads such integers as 8-bit."""
    from dakd_edge.data import open_dataset

    def make(root: Path, images: list[np.ndarray]) -> Path:
        (root / "images").mkdir(parents=True)
        (root / "masks").mkdir()
        for i, img in enumerate(images):
            Image.fromarray(img).save(root / "images" / f"chip_{i:03d}.tif")
            Image.fromarray(np.zeros(img.shape, np.uint8)).save(root / "masks" / f"chip_{i:03d}.png")
        return root

    sea = np.full((8, 8), -18.0, np.float32)
    for fill in (0.0, -9999.0):
        ds = open_dataset(make(tmp_path / f"f{int(fill)}", [np.full((8, 8), fill, np.float32), sea]))
        assert ds.float_scale() == "db"
        assert ds[1]["image"].mean() == pytest.approx((-18.0 + 35.0) / 40.0, abs=1e-5)
    ds = open_dataset(make(tmp_path / "u16", [np.full((8, 8), v, np.uint16) for v in (40, 200)]))
    assert ds[1]["image"].mean() == pytest.approx(200 / 255, abs=1e-6)
    ds = open_dataset(make(tmp_path / "u16full", [np.full((8, 8), v, np.uint16) for v in (40, 40000)]))
    assert ds[0]["image"].mean() == pytest.approx(40 / 65535, abs=1e-7)
