"""benchmarks/ablations.py runs end to end with smoke settings (real code paths, tiny data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dakd_edge.data.augmented import AugmentedWriter
from tests.train.tiny import blob_sample, write_folder


def _pairs(n: int, seed: int) -> list:
    out = []
    for i in range(n):
        s = blob_sample(seed + i, 32)
        out.append((np.rint(s["image"][0] * 255).astype(np.uint8), s["mask"].astype(np.uint8)))
    return out


def test_ablations_fast_writes_json_and_markdown(tmp_path, load_benchmark):
    write_folder(tmp_path / "ds" / "train", _pairs(8, 0))
    write_folder(tmp_path / "ds" / "test", _pairs(2, 100))
    with AugmentedWriter(tmp_path / "aug", 2, ["background", "oil"], 0.45, {"test": True}) as w:
        for i, (img, mask) in enumerate(_pairs(4, 200)):
            logits = np.stack([np.where(mask == 0, 2.0, -2.0), np.where(mask == 1, 2.0, -2.0)])
            w.add(f"{i:06d}", img, logits.astype(np.float16))
    mod = load_benchmark("ablations")
    out, md = tmp_path / "abl.json", tmp_path / "abl.md"
    args = ["--fast", "--data", str(tmp_path / "ds"), "--aug", str(tmp_path / "aug"), "--groups", "data,model",
            "-o", str(out), "--markdown", str(md)]  # fmt: skip
    assert mod.main(args) == 0
    res = json.loads(out.read_text())
    assert set(res["groups"]) == {"data", "model"}
    assert set(res["groups"]["model"]) == {"saross-nano", "saross-edge", "unet-r18", "deeplabv3plus-r18"}
    row = res["groups"]["data"]["gen-soft (DAKD)"]
    assert len(row["runs"]) == 1 and 0.0 <= row["miou_mean"] <= 1.0
    text = md.read_text()
    assert "## (data)" in text and "| gen-hard |" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "variant" not in line]
    assert len(rows) == 7 and all(line.count(" ± ") == 2 for line in rows)  # mIoU and oil IoU ± std
    assert res["settings"]["aug_generator"]["samples"] == 4 and "4 generated pairs" in text

    # Without an augmented set group (b) is reported as not run, not faked.
    assert mod.main(["--fast", "--data", str(tmp_path / "ds"), "--groups", "data", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["groups"]["data"].startswith("Not run")


def test_ablations_merge_variants_and_fixed_subset(tmp_path, load_benchmark):
    write_folder(tmp_path / "ds" / "train", _pairs(12, 0))
    write_folder(tmp_path / "ds" / "test", _pairs(2, 100))
    mod = load_benchmark("ablations")
    ds, out, md = str(tmp_path / "ds"), tmp_path / "abl.json", tmp_path / "abl.md"

    # --write-subset links exactly the pairs a --subset-seed run trains on, in a layout that reopens.
    sub = tmp_path / "sub"
    assert (
        mod.main(["--fast", "--data", ds, "--subset-seed", "3", "--write-subset", str(sub), "-o", str(out)])
        == 0
    )
    from dakd_edge.data import open_dataset

    pool = open_dataset(ds, split="train", classes="binary")
    expect = {Path(f[0]).name for f in mod.Subset(pool, 8, 3).files}
    reopened = open_dataset(sub, split="train", classes="binary")
    assert len(reopened) == 8 and {Path(f[0]).name for f in reopened.files} == expect
    assert not out.exists()

    # A first run, then a hand-written reading section.
    base = ["--fast", "--data", ds, "--subset-seed", "3", "-o", str(out), "--markdown", str(md)]
    assert mod.main([*base, "--groups", "model", "--variants", "saross-nano"]) == 0
    md.write_text(md.read_text() + "\n## Reading\n\nKept by hand.\n")
    first = json.loads(out.read_text())
    assert list(first["groups"]["model"]) == ["saross-nano"] and first["settings"]["subset_seed"] == 3

    # --merge adds a group and then a row, keeping what was there (rows in table order).
    assert mod.main([*base, "--groups", "skip", "--variants", "none", "--merge"]) == 0
    assert mod.main([*base, "--groups", "model", "--variants", "unet-r18", "--merge"]) == 0
    res = json.loads(out.read_text())
    assert list(res["groups"]) == ["model", "skip"] and list(res["groups"]["skip"]) == ["none"]
    assert list(res["groups"]["model"]) == ["saross-nano", "unet-r18"]
    assert res["groups"]["model"]["saross-nano"] == first["groups"]["model"]["saross-nano"]
    assert set(res["group_settings"]) == {"model", "skip"}
    when = res["group_settings"]["model"]["when"]  # the kept row's time is not overwritten
    assert when.startswith(first["group_settings"]["model"]["when"]) and "; rows unet-r18: " in when
    text = md.read_text()
    assert "| unet-r18 |" in text and "| none |" in text and text.endswith("## Reading\n\nKept by hand.\n")
    assert text.count("## Reading") == 1

    # Rows made with other settings are not mixed into one table.
    assert (
        mod.main([*base[:4], "4", *base[5:], "--groups", "model", "--variants", "unet-r18", "--merge"]) == 2
    )
