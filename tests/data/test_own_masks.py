"""Users' own masks that a loader read by the wrong rule without a word (an audit's findings): each is
now refused naming the problem and its fix, or said in a warning, or shown by :func:`describe`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dakd_edge.data import describe, open_dataset
from dakd_edge.errors import DatasetError, Notice
from dakd_edge.meta import OSD_PALETTE

OIL = (np.indices((8, 8)).sum(axis=0) % 5 == 0).astype(np.uint8)  # ~20% oil in every mask


def _set(root: Path, masks: list[np.ndarray], ext: str = ".png", folder: str = "masks", **save) -> Path:
    """images/ + ``folder``/ with one 8x8 image per mask, the masks saved as ``ext``."""
    (root / "images").mkdir(parents=True)
    (root / folder).mkdir()
    for i, m in enumerate(masks):
        Image.fromarray(np.full((8, 8), 90, np.uint8)).save(root / "images" / f"s{i}.png")
        Image.fromarray(m).save(root / folder / f"s{i}{ext}", **save)
    return root


def test_masks_of_fractions_are_refused_not_truncated(tmp_path: Path) -> None:
    """Soft / resampled float masks (0.05, 0.95) were truncated to 0: no oil, trained in silence."""
    soft = _set(tmp_path / "soft", [np.where(OIL, 0.95, 0.05).astype(np.float32)] * 2, ".tif")
    with pytest.raises(DatasetError, match=r"s0\.tif: mask values 0\.05, 0\.95 are not integers .*threshold"):
        open_dataset(soft)
    (soft / "classes.json").write_text('{"class_names": ["sea", "oil"]}')  # no scan: refused when read
    with pytest.raises(DatasetError, match="are not integers"):
        open_dataset(soft).read_mask(0)
    whole = _set(tmp_path / "whole", [OIL.astype(np.float32)] * 2, ".tif")  # 0.0 / 1.0: class ids
    assert open_dataset(whole)[0]["mask"].tolist() == OIL.tolist()


def test_black_white_masks_among_class_id_masks_are_said(tmp_path: Path) -> None:
    """Five 0/255 masks and one 0/1 mask: 255 was read as ignore in five masks without a word. Warned,
    not refused: a tile without oil beside a nodata border (0 and 255 only) is a valid class-id mask."""
    root = _set(tmp_path / "ds", [OIL] + [OIL * 255] * 5)
    with pytest.warns(
        Notice, match=r"5 of 6 masks in .* hold only 0 and 255 \(first: .*s1\.png\).*store oil as 1"
    ):
        ds = open_dataset(root)
    assert ds.class_names == ["background", "oil"] and ds[1]["mask"].max() == 255
    with warnings.catch_warnings():  # 0/1 masks with an ignore border say nothing
        warnings.simplefilter("error")
        border = OIL.copy()
        border[0] = 255
        open_dataset(_set(tmp_path / "ok", [OIL, border]))


def test_jpeg_class_id_masks_are_refused(tmp_path: Path) -> None:
    """A 0/1 mask saved as JPEG gains 2s at every border: it was read as the 5 OSD classes."""
    root = _set(tmp_path / "jpg", [OIL] * 2, ".jpg", quality=75)
    with pytest.raises(
        DatasetError, match=r"2 mask\(s\) in .*masks are JPEG \(first: s0\.jpg\).*as PNG or TIFF"
    ):
        open_dataset(root)
    bw = _set(tmp_path / "bw", [OIL * 255] * 2, ".jpg", quality=90)  # was: "add classes.json"
    with pytest.raises(DatasetError, match="are JPEG"):
        open_dataset(bw)
    _set(tmp_path / "osd" / "train", [OIL] * 2, ".jpg", folder="labels_1D")
    with pytest.raises(DatasetError, match=r"in .*labels_1D are JPEG"):
        open_dataset(tmp_path / "osd")
    # OSD colour labels keep their rule: the nearest palette colour (a colour far from all is refused)
    flat = np.zeros((8, 8, 3), np.uint8)
    flat[:4] = OSD_PALETTE[1]
    rgb = _set(tmp_path / "rgb" / "train", [flat] * 2, ".jpg", folder="labels", quality=95)
    assert open_dataset(rgb.parent)[0]["mask"][:, 0].tolist() == [1] * 4 + [0] * 4


def test_two_classes_of_one_name_are_refused(tmp_path: Path) -> None:
    root = _set(tmp_path / "ds", [OIL] * 2)
    (root / "classes.json").write_text(json.dumps({"class_names": ["sea", "oil", "Oil", "ship", "land"]}))
    with pytest.raises(DatasetError, match=r"classes\.json: classes 1 and 2 have one name \('oil', 'Oil'\)"):
        open_dataset(root)


def test_images_in_sub_folders_are_said(tmp_path: Path) -> None:
    """Sensor sub-folders of images/ were skipped in silence: "no images found", or 2 of 6 pairs used."""
    root = _set(tmp_path / "ds", [OIL] * 2)
    for d in ("images", "masks"):
        (root / d / "sentinel").mkdir()
        for i in range(4):
            Image.fromarray(OIL).save(root / d / "sentinel" / f"n{i}.png")
    with pytest.warns(
        Notice, match=r"sub-folders of .*images \(sentinel\) are not searched: only the 2 image"
    ):
        assert len(open_dataset(root)) == 2
    for i in range(2):
        (root / "images" / f"s{i}.png").unlink()
    with pytest.raises(
        DatasetError, match=r"no images found in .*; sub-folders .*\(sentinel\) are not searched"
    ):
        open_dataset(root)


def test_classes_json_of_the_root_or_another_split(tmp_path: Path) -> None:
    """train/classes.json alone: test/'s classes were guessed from its masks (and evaluate refused the
    model trained on train/); --data test/ did not see the dataset root's classes.json."""
    names = {"class_names": ["sea", "look-alike", "oil"]}
    three = OIL * 2
    for split in ("train", "test"):
        _set(tmp_path / split, [three] * 2)
    (tmp_path / "train" / "classes.json").write_text(json.dumps(names))
    with pytest.warns(Notice, match=r"test has no classes\.json: using .*train/classes\.json \(move it to"):
        assert open_dataset(tmp_path, split="test").class_names == names["class_names"]
    (tmp_path / "train" / "classes.json").rename(tmp_path / "classes.json")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert open_dataset(tmp_path / "test", split="test").class_names == names["class_names"]


def test_messages_name_the_real_problem(tmp_path: Path) -> None:
    pal = np.asarray(OSD_PALETTE, np.uint8)
    colour = _set(tmp_path / "colour", [pal[OIL]] * 2)  # was: "only 0 and 255 ... store oil as 1"
    with pytest.raises(
        DatasetError, match=r"s0\.png: colour \(RGB\) mask, .*OSD classes, name the folder labels/"
    ):
        open_dataset(colour)
    sixteen = _set(tmp_path / "u16", [OIL.astype(np.uint16) * 65535] * 2)  # was: "add classes.json"
    with pytest.raises(DatasetError, match=r"only the values 0 and 65535: black/white masks.*store oil as 1"):
        open_dataset(sixteen)
    ids = _set(tmp_path / "ids" / "train", [OIL] * 2, folder="labels")  # was: "got shape (8, 8)"
    with pytest.raises(
        DatasetError, match=r"single-channel label in labels/.*belong in labels_1D/ .* or masks/"
    ):
        open_dataset(ids.parent)[0]
    # a palette (mode P) PNG of OSD colours in labels/ is read as its colours (was refused, as above)
    p = Image.fromarray(OIL, "P")
    p.putpalette([0, 0, 0, 0, 255, 255] + [0] * 762)
    p.save(ids / "labels" / "s0.png")
    assert open_dataset(ids.parent)[0]["mask"].tolist() == OIL.tolist()


def test_describe_shows_what_was_read(tmp_path: Path) -> None:
    """Own colours in labels/ (oil red) read as OSD's: no oil, said; shares over a sample when large."""
    red = np.array([(0, 0, 0), (255, 0, 0)], np.uint8)[OIL]
    osd = _set(tmp_path / "own" / "train", [red] * 3, folder="labels")
    lines, warns = describe(open_dataset(osd.parent))
    assert lines[0] == f"data: {osd} (osd), 3 pairs" and lines[1].startswith("masks: labels/ colours read as")
    share = 100 * OIL.mean()
    assert lines[2] == (
        f"classes (pixel share of 3 masks): 0 sea {100 - share:.1f}%, 1 oil 0.0%, 2 look-alike {share:.1f}%, "
        "3 ship 0.0%, 4 land 0.0%"
    )
    assert warns == [
        "no oil in the data: class 'oil' covers 0% of the labelled pixels of 3 masks; check how the masks "
        "store oil (README, Data); labels/ colours are read as the OSD palette: own colours must be "
        "converted to class ids in masks/ (with classes.json)"
    ]
    tiny = OIL.copy()
    tiny[0, 0] = 255
    _, warns = describe(
        open_dataset(_set(tmp_path / "all", [np.ones_like(OIL), tiny, *[np.ones_like(OIL)] * 2])), limit=2
    )
    assert warns == [
        "class 'oil' covers every labelled pixel of 2 of 4 masks, evenly spaced: no other class to learn"
    ]
    lines, warns = describe(open_dataset(_set(tmp_path / "ok", [tiny] * 2)))
    assert (
        lines[2].endswith(f"1 oil {100 * (OIL.sum() - 1) / 63:.1f}%; ignore (255) {100 / 64:.1f}%")
        and not warns
    )


def test_a_lone_split_folder_does_not_adopt_another_project_s_classes(tmp_path: Path) -> None:
    """A standalone test/ beside an unrelated project took that project's class names (review)."""
    _set(tmp_path / "ws" / "test", [OIL] * 2)
    _set(tmp_path / "ws" / "other_project", [OIL] * 2)
    (tmp_path / "ws" / "other_project" / "classes.json").write_text('{"class_names": ["water", "ship"]}')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Notice)
        assert open_dataset(tmp_path / "ws" / "test").class_names == ["background", "oil"]
