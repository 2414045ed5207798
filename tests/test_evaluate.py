"""Dataset evaluation: exact metrics on a model with known predictions, sliding window, ONNX parity."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dakd_edge.errors import Notice
from dakd_edge.evaluate import evaluate, paper_rows, predict_unit, render_table
from dakd_edge.inference import load
from dakd_edge.meta import ModelMeta
from dakd_edge.models.checkpoint import save_model
from tests.reliability.cli import run
from tests.train.tiny import THRESHOLD, save_threshold_model, write_folder

DARK, BRIGHT = 50, 200


def _dataset(root) -> None:
    """Two images; the threshold model predicts oil exactly where pixels are DARK.

    s000 (24x24): dark 8x8 block, mask exact. s001 (40x56, larger than the 32-pixel tile): dark 10x10
    block, but the mask marks only its left 10x6 as oil plus a 4x4 oil block in the bright sea, and a
    2x2 ignore patch (255) inside the sea.
    """
    a = np.full((24, 24), BRIGHT, np.uint8)
    a[4:12, 4:12] = DARK
    ma = (a == DARK).astype(np.uint8)
    b = np.full((40, 56), BRIGHT, np.uint8)
    b[10:20, 30:40] = DARK
    mb = np.zeros((40, 56), np.uint8)
    mb[10:20, 30:36] = 1
    mb[30:34, 5:9] = 1
    mb[0:2, 0:2] = 255
    write_folder(root, [(a, ma), (b, mb)])


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_threshold_model(tmp_path_factory.mktemp("m") / "thr.safetensors", tile=32)


def _expected() -> dict:
    # s000: TP oil 64, TN 512. s001: oil predicted 100 (dark block); true oil = 60 in block + 16 in sea.
    tp = 64 + 60
    fp = 40  # dark pixels labelled sea
    fn = 16  # bright oil block
    tn = (24 * 24 - 64) + (40 * 56 - 100 - 16 - 4)  # minus the ignored 2x2
    return {
        "oil_iou": tp / (tp + fp + fn),
        "sea_iou": tn / (tn + fn + fp),
        "acc": (tp + tn) / (tp + tn + fp + fn),
        "pixels": tp + tn + fp + fn,
        "oil_precision": tp / (tp + fp),
        "oil_recall": tp / (tp + fn),
    }


def test_evaluate_exact_confusion_over_dataset_with_sliding_window(tmp_path, model_file):
    _dataset(tmp_path / "ds")
    pred = load(str(model_file), backend="torch")
    assert pred.tiling.tile == 32  # the 40x56 image goes through the tiled path
    r = evaluate(pred, tmp_path / "ds", split="train", save_png=tmp_path / "png")
    e = _expected()
    assert r["pixels"] == e["pixels"] and r["images"] == 2
    assert r["iou"][1] == pytest.approx(e["oil_iou"])
    assert r["iou"][0] == pytest.approx(e["sea_iou"])
    assert r["miou"] == pytest.approx((e["oil_iou"] + e["sea_iou"]) / 2)
    assert r["pixel_accuracy"] == pytest.approx(e["acc"])
    assert r["precision"][1] == pytest.approx(e["oil_precision"])
    assert r["recall"][1] == pytest.approx(e["oil_recall"])
    pngs = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert pngs == ["s000.png", "s001.png"]
    from PIL import Image

    rgb = np.asarray(Image.open(tmp_path / "png" / "s001.png"))
    assert rgb.shape == (40, 56, 3)
    assert tuple(rgb[15, 35]) == (0, 255, 255) and tuple(rgb[35, 50]) == (0, 0, 0)  # oil cyan, sea black
    rows = paper_rows(r)
    assert [n for n, _ in rows] == ["background", "oil", "mean"]
    assert render_table(r).row_count == 3


def test_evaluate_onnx_matches_torch(tmp_path, model_file):
    pytest.importorskip("onnxruntime")
    from dakd_edge.export.onnx import export_onnx
    from dakd_edge.models.checkpoint import load_model_file

    _dataset(tmp_path / "ds")
    model, meta = load_model_file(model_file)
    onnx_path = tmp_path / "thr.onnx"
    export_onnx(model, meta, onnx_path)
    r_onnx = evaluate(load(str(onnx_path)), tmp_path / "ds", split="train")
    r_torch = evaluate(load(str(model_file), backend="torch"), tmp_path / "ds", split="train")
    assert r_onnx["backend"] == "onnxruntime"
    assert r_onnx["matrix"] == r_torch["matrix"]


def test_evaluate_rejects_class_mismatch(tmp_path):
    from dakd_edge import create_model
    from dakd_edge.errors import DatasetError

    path = tmp_path / "k3.safetensors"
    save_model(path, create_model(THRESHOLD, 2, 1), ModelMeta.default_for(THRESHOLD, 2))
    # A 5-class folder evaluated by a binary model is folded to oil vs rest; a 3-class model is refused.
    ds = tmp_path / "ds5"
    img = np.full((16, 16), BRIGHT, np.uint8)
    mask = np.zeros((16, 16), np.uint8)
    mask[:4] = 4
    mask[8:, 8:] = 1
    write_folder(ds, [(img, mask)])
    r = evaluate(load(str(path), backend="torch"), ds, split="train")
    assert r["matrix"][1][0] == 64  # the oil block is missed (bright), land folded into background
    from dakd_edge.evaluate import open_for_model

    with pytest.raises(DatasetError, match="3 classes"):
        open_for_model(ds, 3, split="train")


def test_unit_images_need_no_8_bit_round_trip(model_file):
    """Samples go to the predictor as unit luminance: 8-bit data predicts as its 8-bit image does, and
    a float image is not quantised (a value between two 8-bit levels keeps its side of the threshold)."""
    pred = load(str(model_file), backend="torch")
    rng = np.random.default_rng(0)
    img8 = rng.integers(0, 256, (40, 56)).astype(np.uint8)
    unit = img8[None].astype(np.float32) / 255.0
    np.testing.assert_array_equal(predict_unit(pred, unit), pred.predict(img8, scale="uint8"))
    # Mean 0.5: oil (1) strictly darker. 0.499 rounds to level 127 (0.498) in 8 bits, 0.501 to 128 (0.502).
    near = np.full((1, 8, 8), 0.501, np.float32)
    near[0, :4] = 0.499
    got = predict_unit(pred, near)
    assert (got[:4] == 1).all() and (got[4:] == 0).all()
    nan = near.copy()
    nan[0, 0, 0] = np.nan
    assert predict_unit(pred, nan)[0, 0] == 255


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    return run(["evaluate", *argv], capsys)


def test_cli_json_needs_overwrite_like_every_command(tmp_path, model_file, capsys):
    _dataset(tmp_path / "ds")
    out = tmp_path / "m.json"
    out.write_text("keep")
    args = [
        "--model",
        str(model_file),
        "--data",
        str(tmp_path / "ds"),
        "--split",
        "train",
        "--json",
        str(out),
    ]
    code, _, err = _cli(args, capsys)  # used to replace m.json silently
    assert code == 2 and "output exists" in err and "--overwrite" in err and err.count("\n") == 1, err
    assert out.read_text() == "keep"
    code, _, err = _cli([*args, "--overwrite"], capsys)
    assert code == 0, err
    assert json.loads(out.read_text())["images"] == 2


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--limit", "-1"], "--limit"),  # gave nan metrics over "-1 images"
        (["--limit", "0"], "--limit"),
        (["--tile", "-64"], "--tile"),  # named "--overlap -32", which was never passed
        (["--tile", "0"], "--tile"),  # silently the model's tile
        (["--tile", "17"], "--tile"),
    ],
)
def test_cli_bad_numbers_are_one_line(tmp_path, model_file, capsys, extra, needle):
    args = ["--model", str(model_file), "--data", str(tmp_path / "none"), *extra]
    code, _, err = _cli(args, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0] and "--overlap" not in lines[0], err


def test_library_refuses_bad_limit_and_tile(tmp_path, model_file):
    from dakd_edge.errors import InputError

    _dataset(tmp_path / "ds")
    with pytest.raises(InputError, match="--tile -64 is too small"):
        load(str(model_file), backend="torch", tile=-64)
    pred = load(str(model_file), backend="torch")
    with pytest.raises(InputError, match="--limit must be >= 1"):
        evaluate(pred, tmp_path / "ds", split="train", limit=-1)


def test_cli_save_png_on_a_read_only_folder_is_one_line(tmp_path, model_file, capsys):
    """os.access said yes to root on a read-only mount, so the PNGs failed one by one mid-run."""
    from tests.fs import tmpfs

    _dataset(tmp_path / "ds")
    args = ["--model", str(model_file), "--data", str(tmp_path / "ds"), "--split", "train"]
    with tmpfs(tmp_path / "ro", "64k", read_only=True) as ro:
        code, _, err = _cli([*args, "--save-png", str(ro)], capsys)
        assert code == 2 and err.count("\n") == 1 and "cannot create files there" in err, err
        code, _, err = _cli([*args, "--save-png", str(ro / "sub")], capsys)
        assert code == 2 and err.count("\n") == 1 and "cannot create the prediction PNG folder" in err, err


def test_cli_json_is_strict_when_a_metric_is_undefined(tmp_path, model_file, capsys):
    """No oil in the labels and none predicted: oil IoU and precision are undefined. The JSON said NaN,
    which strict parsers refuse; it says null now."""
    sea = np.full((24, 24), BRIGHT, np.uint8)
    write_folder(tmp_path / "ds", [(sea, np.zeros_like(sea))])
    out = tmp_path / "m.json"
    args = ["--model", str(model_file), "--data", str(tmp_path / "ds"), "--split", "train", "--json"]
    code, _, err = _cli([*args, str(out)], capsys)
    assert code == 0, err

    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    doc = json.loads(out.read_text(), parse_constant=refuse)
    assert doc["iou"] == [1.0, None] and doc["positive"]["precision"] is None and doc["miou"] == 1.0


def test_cli_dataset_notices_are_one_line(tmp_path, model_file, capsys):
    """Every command's Notices print as one 'dakd-edge: warning:' line (cli.app.main enters
    notices_as_lines once): evaluate --data printed Python's two-line warning with a source line."""
    import shutil

    _dataset(tmp_path / "ds")
    masks = tmp_path / "ds" / "masks"
    shutil.copy(next(masks.iterdir()), masks / "orphan.png")
    code, _, err = _cli(
        ["--model", str(model_file), "--data", str(tmp_path / "ds"), "--split", "train"], capsys
    )
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if "orphan" in ln]
    assert len(lines) == 1 and lines[0].startswith("dakd-edge: warning: 1 mask(s) without an image")
    assert "warnings.warn" not in err and "Notice" not in err


def test_save_png_never_replaces_files_or_writes_into_the_dataset(tmp_path, model_file, capsys):
    """--save-png replaced existing PNGs without --overwrite, and pointed at a dataset's label folder it
    replaced OSD's labels with predictions (a later evaluation then scored 1.0 on them)."""
    _dataset(tmp_path / "ds")
    labels = tmp_path / "ds" / "masks"
    before = {p.name: p.read_bytes() for p in labels.iterdir()}
    base = ["--model", str(model_file), "--data", str(tmp_path / "ds"), "--split", "train"]
    for folder in (labels, tmp_path / "ds" / "images"):
        code, _, err = _cli([*base, "--save-png", str(folder), "--overwrite"], capsys)
        assert code == 2 and "a folder of the dataset's images or labels" in err, err
        assert len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in labels.iterdir()} == before
    code, _, err = _cli([*base, "--save-png", str(tmp_path / "ds" / "predictions")], capsys)
    assert code == 0, err  # elsewhere in the dataset's tree: its loader never reads it
    png = tmp_path / "png"
    png.mkdir()
    (png / "s001.png").write_bytes(b"keep")
    code, _, err = _cli([*base, "--save-png", str(png)], capsys)
    assert code == 2 and "s001.png exists (1 of the 2 prediction PNGs do); pass --overwrite" in err
    assert (png / "s001.png").read_bytes() == b"keep" and not (png / "s000.png").exists()
    code, _, err = _cli([*base, "--save-png", str(png), "--overwrite"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in png.iterdir()) == ["s000.png", "s001.png"]
    assert (png / "s001.png").read_bytes()[:4] == b"\x89PNG"


def test_save_png_refuses_every_label_form_and_split_of_the_dataset(tmp_path, model_file):
    """OSD holds labels/ beside the labels_1D/ its loader reads, and other splits' folders: PNGs named
    img_0001.png would replace either (second review). Every folder of the layout is refused, before
    the model loads; folders elsewhere in the tree are fine."""
    from dakd_edge.errors import OutputError
    from dakd_edge.evaluate import png_folder

    root = tmp_path / "OSD"
    for sub in ("train/images", "train/labels", "train/labels_1D", "test/images", "test/labels_1D"):
        (root / sub).mkdir(parents=True)
    for sub in ("train/labels", "train/labels_1D", "test/labels_1D", "test/images", "train/labels/x"):
        with pytest.raises(OutputError, match="a folder of the dataset's images or labels"):
            png_folder(root / sub, root)
    assert png_folder(root / "predictions", root) == root / "predictions"
    assert png_folder(root / "test" / "preds", root) == root / "test" / "preds"
    assert png_folder(tmp_path / "elsewhere" / "labels", root) is not None  # outside the dataset


def test_classes_are_matched_by_name_not_position(tmp_path):
    """A binary model named ("oil", "background") scored 0.02 mIoU on SOS, and a binary model on a set
    whose oil is id 2 scored its look-alikes as oil: ids were compared by position. They are now mapped
    by name; sets that cannot be matched are refused naming both."""
    from dakd_edge.errors import DatasetError, Notice
    from dakd_edge.evaluate import open_for_model

    root = tmp_path / "ds3"
    write_folder(root, [(np.full((4, 4), BRIGHT, np.uint8), np.array([[0, 1, 2, 255]] * 4, np.uint8))])
    (root / "classes.json").write_text(json.dumps({"class_names": ["sea", "look-alike", "oil_slick"]}))

    def first_row(classes) -> list[int]:
        return open_for_model(root, classes, split="train")[0]["mask"][0].tolist()

    with pytest.warns(Notice, match=r"oil vs the rest \(sea, look-alike count as background\)"):
        assert first_row(("background", "oil")) == [0, 0, 1, 255]
    with pytest.warns(Notice, match="count as Background"):
        assert first_row(("Oil", "Background")) == [1, 1, 0, 255]
    assert first_row(("sea", "oil slick", "look-alike")) == [0, 2, 1, 255]  # same classes, other order
    assert first_row(("class0", "class1", "class2")) == [0, 1, 2, 255]  # a model nobody named
    assert first_row(("water", "Oil spill", "lookalike")) == [0, 2, 1, 255]  # synonyms of the same classes
    with pytest.raises(DatasetError, match=r"3 classes \(sea, oil, ship\) are not those of .*look-alike"):
        first_row(("sea", "oil", "ship"))
    with pytest.raises(DatasetError, match=r"model's 5 classes .* \(3: sea, look-alike, oil_slick\)"):
        first_row(5)
    # two classes of one meaning: matched by their exact names (by meaning they were taken by position)
    (root / "classes.json").write_text(json.dumps({"class_names": ["sea", "thick oil", "thin oil"]}))
    assert first_row(("sea", "thin oil", "thick oil")) == [0, 2, 1, 255]


def test_a_binary_model_with_oil_first_scores_as_its_twin(tmp_path, model_file):
    """The same weights with the head rows and names swapped give the same confusion matrix."""
    import torch

    from dakd_edge.models.checkpoint import load_model_file

    _dataset(tmp_path / "ds")
    model, meta = load_model_file(model_file)
    with torch.no_grad():
        for p in model.head.parameters():
            p.copy_(p.flip(0))
    swapped = ModelMeta.default_for(meta.name, 2, class_names=("oil", "background"), palette=meta.palette[::-1],
                                    arch=meta.arch, tile=32, normalization=meta.normalization)  # fmt: skip
    save_model(tmp_path / "swapped.safetensors", model, swapped)
    r = evaluate(load(str(tmp_path / "swapped.safetensors"), backend="torch"), tmp_path / "ds", split="train")
    e = _expected()
    assert r["iou"][0] == pytest.approx(e["oil_iou"]) and r["iou"][1] == pytest.approx(e["sea_iou"])


def test_evaluate_says_what_the_data_was_read_as(tmp_path, model_file, capsys):
    """evaluate printed no data summary: a set whose masks hold no oil (own colours misread, oil stored
    as 255) scored without a word. It prints train's summary lines and warns when there is no oil."""
    _dataset(tmp_path / "ds")
    code, out, err = _cli(
        ["--model", str(model_file), "--data", str(tmp_path / "ds"), "--split", "train"], capsys
    )
    assert code == 0, err
    assert "2 pairs" in out and "classes (pixel share of 2 masks): 0 background" in out
    assert "no oil in the data" not in err
    sea = np.full((24, 24), BRIGHT, np.uint8)
    write_folder(tmp_path / "sea", [(sea, np.zeros_like(sea))])
    with pytest.warns(Notice, match="no oil in the data"):
        r = evaluate(load(model_file), tmp_path / "sea", split="train")
    assert r["data_read_as"][-1].endswith("0 background 100.0%, 1 oil 0.0%")
