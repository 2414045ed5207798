"""Model files with corrupt metadata or unreadable pickles: one ``dakd-edge: error`` line naming the file.

Each case runs the real CLI (``python -m dakd_edge segment``) in a subprocess, so anything a user would
see counts: tracebacks, multi-line torch advice, warnings printed by ``torch.load``.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from dakd_edge.weights import bundled_path

REPO = Path(__file__).resolve().parents[2]
FIELDS = '{"name": "saross-edge", "num_classes": 2, "class_names": ["background", "oil"], '
BAD_META = {  # metadata text -> what the error line must say
    "not-json": ("{not json", "not valid JSON"),
    "incomplete": (FIELDS[:40], "not valid JSON"),
    "list": ("[1, 2]", "a JSON list, expected an object"),
    "no-fields": ('{"tile": 512}', "missing required field(s) 'name', 'num_classes'"),
    "wrong-type": ('{"name": "saross-edge", "num_classes": "two"}', "'num_classes' is a JSON string"),
    "overlap": (
        '{"name": "m", "num_classes": 2, "tile": 256, "overlap": 200}',
        "'overlap' is 200, expected 0",
    ),
}


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dakd_edge.data.synthetic import write_scene_geotiff

    path = tmp_path_factory.mktemp("scene") / "scene.tif"
    write_scene_geotiff(path, seed=1, height=128, width=128)
    return path


def segment_error(scene: Path, model: Path) -> str:
    """Run ``segment`` with ``model``; assert exit 2, one error line naming the file, no output left."""
    out = model.with_name(model.name + ".classes.tif")
    r = subprocess.run(
        [sys.executable, "-m", "dakd_edge", "segment", str(scene), "--model", str(model), "-o", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("dakd-edge: error: "), r.stderr[-3000:]
    assert str(model) in lines[0] and "\x1b" not in lines[0]
    assert not out.exists()
    return lines[0]


@pytest.mark.parametrize("case", sorted(BAD_META))
def test_onnx_with_corrupt_metadata(case: str, scene: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from dakd_edge.formats import ONNX

    proto = onnx.load(str(bundled_path("onnxruntime")))
    (prop,) = [p for p in proto.metadata_props if p.key == ONNX.meta_key]
    text, expected = BAD_META[case]
    prop.value = text
    model = tmp_path / f"{case}.onnx"
    onnx.save(proto, str(model))
    line = segment_error(scene, model)
    assert "invalid model metadata" in line and expected in line


def write_safetensors(path: Path, header: object) -> Path:
    """A safetensors file with this JSON header and one float32 tensor ``w`` (4 data bytes)."""
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 4)
    return path


TENSOR = {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
GOOD_FIELDS = FIELDS + '"palette": [[0, 0, 0], [0, 255, 255]]'
BAD_HEADERS = {  # header -> what the error line must say
    "header-list": ([TENSOR], "header is not a JSON object"),
    "metadata-list": ({**TENSOR, "__metadata__": ["dakd_meta", "{}"]}, "header metadata"),
    "arch-not-object": (
        {**TENSOR, "__metadata__": {"dakd_meta": GOOD_FIELDS + ', "arch": "unet"}'}},
        "field 'arch' is a JSON string, expected an object",
    ),
    "tile-not-integer": (
        {**TENSOR, "__metadata__": {"dakd_meta": GOOD_FIELDS + ', "tile": "512px"}'}},
        "field 'tile' is a JSON string, expected an integer",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_safetensors_with_corrupt_header_metadata(case: str, scene: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    header, expected = BAD_HEADERS[case]
    model = write_safetensors(tmp_path / f"{case}.safetensors", header)
    assert expected in segment_error(scene, model)


def _refused_class_pt(path: Path) -> None:
    import argparse

    import torch

    torch.save({"format": "dakd-edge-model", "meta": "{}", "state_dict": {"x": argparse.Namespace()}}, path)


def _plain_pickle_pt(path: Path) -> None:
    import pickle

    path.write_bytes(pickle.dumps({"meta": "{}"}, protocol=4))  # torch.load warns about protocol 4


def _truncated_pt(path: Path) -> None:
    import torch

    torch.save({"format": "dakd-edge-model", "meta": "{}", "state_dict": {"w": torch.zeros(4096)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


PT_CASES = {  # writer -> what the error line must say
    "refused-class": (_refused_class_pt, "weights-only load refuses it (Unsupported global: GLOBAL argparse"),
    "plain-pickle": (_plain_pickle_pt, "weights-only load refuses it"),
    "truncated": (_truncated_pt, "truncated/corrupt"),
}


@pytest.mark.parametrize("case", sorted(PT_CASES))
def test_unreadable_pt_is_one_short_line(case: str, scene: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    write, expected = PT_CASES[case]
    model = tmp_path / f"{case}.pt"
    write(model)
    line = segment_error(scene, model)
    assert expected in line
    assert len(line.replace(str(model), "M.pt")) < 250, line  # torch's own text is paragraphs of advice


def test_metadata_is_validated_in_one_place() -> None:
    """Every format reads metadata through ModelMeta.from_json/from_dict: same check, same message."""
    from dakd_edge.errors import ModelFileError
    from dakd_edge.meta import ModelMeta

    for text, expected in BAD_META.values():
        with pytest.raises(ModelFileError, match="^m.bin: invalid model metadata: ") as e:
            ModelMeta.from_json(text, source="m.bin")
        assert expected in str(e.value)
    meta = ModelMeta.default_for("saross-nano", 5)
    assert ModelMeta.from_json(meta.to_json()) == meta
    with_overlap = ModelMeta.default_for("saross-nano", 5, tile=256, overlap=32)
    assert ModelMeta.from_json(with_overlap.to_json()) == with_overlap
    assert ModelMeta.from_dict(meta.to_dict()) == meta


@pytest.mark.parametrize("fixed", [True, False])
def test_onnx_whose_metadata_names_other_classes_than_its_graph(
    fixed: bool, scene: Path, tmp_path: Path
) -> None:
    """Valid metadata of 3 classes on a 2-class graph failed the first tile with a ValueError traceback.
    A graph with its class dimension fixed (as `export` now writes it) is refused on load, naming the
    file; one with a symbolic dimension (older exports, the bundled file) at its first tile, in one line."""
    onnx = pytest.importorskip("onnx")
    from dakd_edge.formats import ONNX

    proto = onnx.load(str(bundled_path("onnxruntime")))
    (prop,) = [p for p in proto.metadata_props if p.key == ONNX.meta_key]
    meta = json.loads(prop.value)
    meta.update(num_classes=3, class_names=["sea", "oil", "look-alike"], palette=[[0, 0, 0]] * 3)
    prop.value = json.dumps(meta)
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    assert not dims[1].HasField("dim_value")  # the bundled file: symbolic
    if fixed:
        dims[1].dim_value = 2
    model = tmp_path / "lies.onnx"
    onnx.save(proto, str(model))
    if fixed:
        assert "graph outputs 2 classes but its metadata says 3" in segment_error(scene, model)
        return
    out = tmp_path / "x.tif"
    r = subprocess.run([sys.executable, "-m", "dakd_edge", "segment", str(scene), "--model", str(model), "-o",
                        str(out)], capture_output=True, text=True, cwd=REPO, timeout=300)  # fmt: skip
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        "dakd-edge: error: the model outputs 2 classes but its metadata says 3"
    ), r.stderr[-2000:]
    assert not out.exists()
