"""Augmented-set format: writer (atomic, resumable) and reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dakd_edge.data.augmented import AugmentedDataset, AugmentedWriter, binary_logits, read_manifest
from dakd_edge.errors import DatasetError


def _pair(seed: int, k: int = 5, h: int = 12, w: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w), dtype=np.uint8), rng.normal(0, 3, (k, h, w)).astype(np.float16)


def test_roundtrip_and_manifest(tmp_path: Path) -> None:
    names = ["sea", "oil", "look-alike", "ship", "land"]
    w = AugmentedWriter(tmp_path / "aug", 5, names, 0.528, {"steps": 200})
    pairs = {f"{i:06d}": _pair(i) for i in range(3)}
    for sid, (img, lg) in pairs.items():
        assert not w.has(sid)
        w.add(sid, img, lg)
        assert w.has(sid)
    w.close()
    m = json.loads((tmp_path / "aug" / "manifest.json").read_text())
    assert m["format"] == "dakd-augmented" and m["version"] == 1 and m["num_classes"] == 5
    assert m["balancing_factor"] == pytest.approx(0.528) and m["generator"] == {"steps": 200}
    assert m["samples"][0] == {"id": "000000", "image": "images/000000.png", "logits": "logits/000000.npy"}
    ds = AugmentedDataset(tmp_path / "aug")
    assert len(ds) == 3 and ds.num_classes == 5 and ds.class_names == names
    s = ds[1]
    img, lg = pairs["000001"]
    assert s["image"].dtype == np.float32 and s["image"].shape == (1, 12, 10)
    np.testing.assert_allclose(s["image"][0], img / 255.0, atol=1e-7)
    np.testing.assert_array_equal(s["logits"], lg.astype(np.float32))
    np.testing.assert_array_equal(s["mask"], lg.astype(np.float32).argmax(0))
    assert s["mask"].dtype == np.int64
    assert not list((tmp_path / "aug").rglob("*.tmp*"))


def test_resume_merges_samples_on_disk(tmp_path: Path) -> None:
    w = AugmentedWriter(tmp_path, 2, ["bg", "oil"], 0.45)
    w.add("a", *_pair(0, k=2))
    w.close()
    w2 = AugmentedWriter(tmp_path, 2, ["bg", "oil"], 0.45)
    assert w2.has("a") and not w2.has("b")
    w2.add("b", *_pair(1, k=2))
    w2.close()
    assert [s["id"] for s in read_manifest(tmp_path)["samples"]] == ["a", "b"]
    with pytest.raises(DatasetError, match="classes"):
        AugmentedWriter(tmp_path, 5, list("abcde"), 0.5)


def test_half_written_sample_is_not_done(tmp_path: Path) -> None:
    w = AugmentedWriter(tmp_path, 2, ["bg", "oil"], 0.5)
    img, lg = _pair(0, k=2)
    np.save(tmp_path / "logits" / "x.npy", lg)  # crash after the logits, before the image
    assert not w.has("x")
    w.close()
    with pytest.raises(DatasetError, match="no samples"):
        AugmentedDataset(tmp_path)


def test_rejects_bad_arrays(tmp_path: Path) -> None:
    w = AugmentedWriter(tmp_path, 2, ["bg", "oil"], 0.5)
    img, lg = _pair(0, k=2)
    with pytest.raises(ValueError):
        w.add("a", img.astype(np.float32), lg)
    with pytest.raises(ValueError):
        w.add("a", img, lg[:, :-1])
    with pytest.raises(ValueError):
        w.add("../evil", img, lg)


def test_binary_logits_keep_oil_probability(tmp_path: Path) -> None:
    lg = np.random.default_rng(0).normal(0, 2, (5, 4, 4)).astype(np.float32)
    b = binary_logits(lg)
    p5 = np.exp(lg) / np.exp(lg).sum(0)
    p2 = np.exp(b) / np.exp(b).sum(0)
    np.testing.assert_allclose(p2[1], p5[1], rtol=1e-5)
    w = AugmentedWriter(tmp_path, 5, list("abcde"), 0.5)
    w.add("s", np.zeros((4, 4), np.uint8), lg.astype(np.float16))
    w.close()
    ds = AugmentedDataset(tmp_path, classes="binary")
    s = ds[0]
    assert ds.num_classes == 2 and s["logits"].shape == (2, 4, 4)
    assert set(np.unique(s["mask"])) <= {0, 1}


def test_missing_and_corrupt(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        AugmentedDataset(tmp_path / "nope")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DatasetError, match="unreadable"):
        AugmentedDataset(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(DatasetError, match="format"):
        AugmentedDataset(tmp_path)


def test_existing_set_of_other_generator_settings_is_refused(tmp_path: Path) -> None:
    """Merging samples of another seed / size / teacher would make a set no manifest describes."""
    from dakd_edge.errors import OutputError

    info = {"checkpoint": "/a/last.pt", "seed": 0, "size": 12, "ddim_steps": 2}
    with AugmentedWriter(tmp_path, 2, ["bg", "oil"], 0.5, info) as w:
        w.add("000000", *_pair(0, k=2))
    with pytest.raises(OutputError, match=r"other generator settings \(seed 0 -> 5.*--overwrite"):
        AugmentedWriter(tmp_path, 2, ["bg", "oil"], 0.5, {**info, "seed": 5})
    assert len(read_manifest(tmp_path)["samples"]) == 1  # left as it was
    with AugmentedWriter(tmp_path, 2, ["bg", "oil"], 0.5, info) as w:  # same settings: resumed
        assert w.has("000000")
    with AugmentedWriter(tmp_path, 2, ["bg", "oil"], 0.5, {**info, "seed": 5}, overwrite=True) as w:
        assert not w.has("000000")  # the old set's samples were removed
        w.add("000001", *_pair(1, k=2))
    m = read_manifest(tmp_path)
    assert [s["id"] for s in m["samples"]] == ["000001"] and m["generator"]["seed"] == 5


def test_manifest_of_a_generation_says_whether_it_is_complete(tmp_path: Path) -> None:
    """A generation's manifest lists only its ids 0..n-1 and is "complete" only with all of them on
    disk and the run done; readers (``dakd-edge train --aug``) refuse an unfinished set."""
    from dakd_edge.data import open_dataset

    ids = ["000000", "000001"]
    w = AugmentedWriter(tmp_path, 2, ["bg", "oil"], 0.5)
    w.add("000000", *_pair(0, k=2))
    w.close(ids, done=False)
    assert read_manifest(tmp_path)["complete"] is False and read_manifest(tmp_path)["requested"] == 2
    with pytest.raises(DatasetError, match=r"unfinished augmented set \(1 of 2 samples\).*--resume"):
        open_dataset(tmp_path, kind="augmented")
    w.close(ids)  # done, but 000001 is missing
    assert read_manifest(tmp_path)["complete"] is False
    w.add("000001", *_pair(1, k=2))
    w.add("000002", *_pair(2, k=2))  # beyond n: on disk, not listed
    w.close(ids)
    m = read_manifest(tmp_path)
    assert m["complete"] is True and [s["id"] for s in m["samples"]] == ids
    assert len(AugmentedDataset(tmp_path)) == 2
