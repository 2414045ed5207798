"""Hostile inputs fail in one typed line, fast and without reading what they point at: deeply nested
JSON, PNG decompression bombs, model metadata asking for huge models, .pt files on a PyTorch whose
weights-only load can be bypassed, VRTs in disguise or reading FIFOs / the network, a scene stem of
``..`` in an output template, thousands of irregular GCPs."""

from __future__ import annotations

import json
import os
import struct
import time
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from dakd_edge.errors import DatasetError, InputError, ModelFileError, Notice

DEEP = "[" * 100_000 + "]" * 100_000


# --- A: deeply nested JSON -------------------------------------------------------------------------


def test_jsonin_turns_deep_nesting_into_value_error() -> None:
    from dakd_edge import jsonin

    with pytest.raises(ValueError, match="nested too deeply"):
        jsonin.loads(DEEP)
    with pytest.raises(ValueError, match="deeper than 100"):  # parses, but recursive walkers would not
        jsonin.loads("[" * 500 + "]" * 500)
    assert jsonin.loads('{"a": [[1, 2], {"b": null}]}') == {"a": [[1, 2], {"b": None}]}


@pytest.mark.parametrize("what", ["land-mask", "truth"])
def test_deep_geojson_is_one_input_error(tmp_path: Path, what: str) -> None:
    from dakd_edge.data.landmask import _read_vector

    path = tmp_path / "deep.geojson"
    path.write_text('{"type": "FeatureCollection", "features": ' + DEEP + "}")
    with pytest.raises(InputError, match=f"cannot read the {what} GeoJSON .*nested"):
        _read_vector(path, what)


def test_geometry_collections_nested_past_the_stack_are_one_input_error(tmp_path: Path, monkeypatch) -> None:
    import dakd_edge.data.landmask as landmask

    geom = '{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}'
    for _ in range(3):
        geom = '{"type": "GeometryCollection", "geometries": [' + geom + "]}"
    path = tmp_path / "gc.geojson"
    path.write_text(geom)
    assert len(landmask._read_vector(path)[0]) == 1

    def deep(geom: Any) -> Any:  # what ~480 nested collections do to the recursive reader
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(landmask, "_ring_coords", deep)
    with pytest.raises(InputError, match="gc.geojson: cannot read the land-mask GeoJSON .*nested too deeply"):
        landmask._read_vector(path)


def _safetensors(path: Path, header: bytes) -> Path:
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    return path


def test_deep_safetensors_header_and_metadata(tmp_path: Path) -> None:
    from dakd_edge.models.checkpoint import read_meta

    deep_header = _safetensors(tmp_path / "h.safetensors", DEEP.encode())
    with pytest.raises(ModelFileError, match="not a readable safetensors file: JSON nested too deeply"):
        read_meta(deep_header)
    header = json.dumps({"__metadata__": {"dakd_meta": DEEP}}).encode()
    with pytest.raises(ModelFileError, match="invalid model metadata: not valid JSON .*nested"):
        read_meta(_safetensors(tmp_path / "m.safetensors", header))


def test_deep_onnx_metadata_text_is_one_model_file_error() -> None:
    from dakd_edge.meta import ModelMeta

    with pytest.raises(ModelFileError, match="m.onnx: invalid model metadata: not valid JSON"):
        ModelMeta.from_json(DEEP, source="m.onnx")


def test_deep_bench_baseline_is_one_input_error(tmp_path: Path) -> None:
    from dakd_edge.bench import load_json

    path = tmp_path / "base.json"
    path.write_text(DEEP)
    with pytest.raises(InputError, match="baseline is not valid JSON"):
        load_json(path)


def test_deep_classes_json_is_one_dataset_error(tmp_path: Path) -> None:
    from dakd_edge.data.folder import _read_class_names

    path = tmp_path / "classes.json"
    path.write_text('{"class_names": ' + DEEP + "}")
    with pytest.raises(DatasetError, match="classes.json: expected"):
        _read_class_names(path)


def test_deep_class_names_tag_names_no_classes() -> None:
    from dakd_edge.scene_eval import class_names_of

    assert class_names_of(SimpleNamespace(tags=lambda: {"class_names": DEEP})) is None


# --- B: PNG decompression bomb -------------------------------------------------------------------


def _png_claiming(path: Path, w: int, h: int) -> Path:
    """A PNG of a few dozen bytes whose header claims ``w`` x ``h`` grey pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    return path


def test_png_bomb_in_a_dataset_is_one_dataset_error(tmp_path: Path) -> None:
    from dakd_edge.data.folder import image_size, open_folder, read_array

    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
        _png_claiming(tmp_path / sub / "a.png", 20_000, 20_000)
    bomb = tmp_path / "images" / "a.png"
    for read in (image_size, read_array):
        with pytest.raises(DatasetError, match=r"a\.png: its header claims 400,000,000 pixels"):
            read(bomb)
    with pytest.raises(DatasetError, match="decompression bomb"):
        open_folder(tmp_path, split=None)


def test_png_bomb_warning_raised_as_error_is_one_dataset_error(tmp_path: Path) -> None:
    import warnings

    from dakd_edge.data.folder import image_size

    bomb = _png_claiming(tmp_path / "a.png", 10_000, 10_000)  # over MAX_IMAGE_PIXELS, under twice it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DatasetError, match="claims 100,000,000 pixels"):
            image_size(bomb)


# --- C: model metadata must not size an allocation before the weights are checked ----------------


def _nano_file(tmp_path: Path, **arch: Any) -> Path:
    """saross-nano's weights under metadata whose ``arch`` is overridden by ``arch``."""
    from safetensors.torch import save_file

    from dakd_edge.meta import ModelMeta
    from dakd_edge.models.checkpoint import FORMAT, arch_kwargs
    from dakd_edge.registry import create_model

    model = create_model("saross-nano", num_classes=2, in_chans=1)
    meta = ModelMeta.default_for("saross-nano", 2, arch={**arch_kwargs(model), **arch})
    path = tmp_path / "m.safetensors"
    tmp_path.mkdir(exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"format": FORMAT, "dakd_meta": meta.to_json()})
    return path


def test_huge_arch_is_refused_before_any_real_allocation(tmp_path: Path, monkeypatch) -> None:
    import dakd_edge.registry as registry
    from dakd_edge.models.checkpoint import load_model_file

    path = _nano_file(tmp_path, decoder_channels=[1500] * 5)
    fits = _nano_file(tmp_path / "fits")
    real_builds: list[int] = []
    create = registry.create_model

    def spy(*args: Any, **kw: Any) -> Any:
        model = create(*args, **kw)
        if any(p.device.type != "meta" for p in model.parameters()):
            real_builds.append(sum(p.numel() for p in model.parameters()))
        return model

    monkeypatch.setattr(registry, "create_model", spy)
    with pytest.raises(
        ModelFileError, match=r"weights do not fit the 'saross-nano' architecture .*shape mismatch"
    ):
        load_model_file(path)
    assert real_builds == []  # shapes were compared on the meta device: nothing was allocated
    model, meta = load_model_file(fits)  # a file that fits is built for real
    assert meta.name == "saross-nano" and next(model.parameters()).device.type == "cpu"
    assert len(real_builds) == 1


def test_every_registered_model_checks_its_shapes_on_the_meta_device() -> None:
    import warnings

    from dakd_edge.meta import ModelMeta
    from dakd_edge.models.checkpoint import _expected_shapes, rebuild_kwargs
    from dakd_edge.registry import create_model, list_models

    for name in list_models():
        meta = ModelMeta.default_for(name, 5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            shapes = _expected_shapes(meta, Path("m.safetensors"))
            real = create_model(name, num_classes=5, in_chans=1, **rebuild_kwargs(meta))
        assert shapes == {k: tuple(v.shape) for k, v in real.state_dict().items()}, name


def test_in_chans_is_bounded() -> None:
    from dakd_edge.meta import MAX_IN_CHANS, ModelMeta

    with pytest.raises(ModelFileError, match="'in_chans' is 1000000, expected at most"):
        ModelMeta.from_dict({"name": "unet", "num_classes": 2, "in_chans": 1_000_000})
    ok = ModelMeta.default_for("unet", 2, in_chans=MAX_IN_CHANS).to_dict()
    assert ModelMeta.from_dict(ok).in_chans == MAX_IN_CHANS


# --- D: .pt files need a PyTorch whose weights-only load cannot be bypassed ------------------------


def test_pt_is_refused_on_torch_before_2_6(tmp_path: Path, monkeypatch) -> None:
    import torch

    from dakd_edge.meta import ModelMeta
    from dakd_edge.models.checkpoint import load_model_file, read_meta, save_model
    from dakd_edge.registry import create_model

    model = create_model("saross-nano", num_classes=2, in_chans=1)
    pt, st = tmp_path / "m.pt", tmp_path / "m.safetensors"
    for p in (pt, st):
        save_model(p, model, ModelMeta.default_for("saross-nano", 2))
    monkeypatch.setattr(torch, "__version__", "2.5.1+cu121")
    for read in (read_meta, load_model_file):
        with pytest.raises(ModelFileError, match=r"PyTorch 2\.5\.1.*CVE-2025-32434.*\.safetensors"):
            read(pt)
    assert load_model_file(st)[1].name == "saross-nano"  # safetensors unpickle nothing: still read
    monkeypatch.setattr(torch, "__version__", "2.6.0")
    assert read_meta(pt).name == "saross-nano"


# --- E: VRTs ---------------------------------------------------------------------------------------


def _vrt(source: str, relative: bool = False) -> str:
    return (
        '<VRTDataset rasterXSize="16" rasterYSize="16"><VRTRasterBand dataType="Byte" band="1">'
        f'<SimpleSource><SourceFilename relativeToVRT="{int(relative)}">{source}</SourceFilename>'
        "<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>"
    )


@pytest.fixture
def tif(tmp_path: Path) -> Path:
    import rasterio
    from rasterio.transform import from_origin

    path = tmp_path / "src.tif"
    with rasterio.open(path, "w", driver="GTiff", width=16, height=16, count=1, dtype="uint8",
                       crs="EPSG:4326", transform=from_origin(10, 50, 0.01, 0.01)) as ds:  # fmt: skip
        ds.write(np.full((1, 16, 16), 7, np.uint8))
    return path


def test_vrt_named_vrt_reading_local_files_opens(tmp_path: Path, tif: Path) -> None:
    from dakd_edge.data.rasterinfo import open_raster

    (tmp_path / "inner.vrt").write_text(_vrt("src.tif", relative=True))
    (tmp_path / "outer.vrt").write_text(_vrt(str(tmp_path / "inner.vrt")))
    for name in ("inner.vrt", "outer.vrt"):
        with open_raster(tmp_path / name) as ds:
            assert ds.driver == "VRT" and int(ds.read(1).max()) == 7


def test_vrt_under_another_name_is_refused(tmp_path: Path, tif: Path) -> None:
    from dakd_edge.data.rasterinfo import open_raster

    disguised = tmp_path / "scene.tif"
    disguised.write_text(_vrt(str(tif)))
    with pytest.raises(InputError, match=r"scene\.tif: a GDAL VRT .* named \.vrt"):
        open_raster(disguised)


def test_vrt_in_disguise_as_land_mask_or_truth_raster_is_refused(tmp_path: Path, tif: Path, capsys) -> None:
    from dakd_edge.cli.app import main
    from dakd_edge.data.landmask import RasterLandSource

    disguised = tmp_path / "mask.tif"
    disguised.write_text(_vrt(str(tif)))
    with pytest.raises(InputError, match=r"mask\.tif: a GDAL VRT .* named \.vrt"):
        RasterLandSource(disguised)
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--pred", str(tif), "--truth", str(disguised)])
    assert e.value.code == 2 and "a GDAL VRT" in capsys.readouterr().err


@pytest.mark.parametrize(
    "source",
    [
        "/vsicurl/http://127.0.0.1:9/x.tif",
        "&#47;vsis3&#47;bucket/x.tif",
        "<![CDATA[https://example.org/x.tif]]>",
    ],
)
def test_vrt_network_sources_are_refused(tmp_path: Path, source: str) -> None:
    from dakd_edge.data.rasterinfo import open_raster

    path = tmp_path / "net.vrt"
    path.write_text(_vrt(source))
    with pytest.raises(InputError, match="over the network; this tool reads local files only"):
        open_raster(path)
    (tmp_path / "outer.vrt").write_text(_vrt("net.vrt", relative=True))  # through another VRT too
    with pytest.raises(InputError, match="over the network"):
        open_raster(tmp_path / "outer.vrt")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_vrt_fifo_and_device_sources_are_refused_without_hanging(tmp_path: Path) -> None:
    from dakd_edge.data.rasterinfo import open_raster

    os.mkfifo(tmp_path / "fifo.tif")
    (tmp_path / "fifo.vrt").write_text(_vrt("fifo.tif", relative=True))
    (tmp_path / "dev.vrt").write_text(_vrt("/vsizip//dev/zero/x.tif"))
    for name in ("fifo.vrt", "dev.vrt"):
        with pytest.raises(InputError, match="not a regular file .*FIFO"):
            open_raster(tmp_path / name)


# --- F: output templates -----------------------------------------------------------------------------


@pytest.mark.parametrize("stem", ["..", ".", "a/../../b", "..\\x"])
def test_template_stem_stays_one_path_component(tmp_path: Path, monkeypatch, stem: str) -> None:
    import dakd_edge.cli.segment as seg

    monkeypatch.setattr(seg, "scene_stem", lambda scene: stem)
    out = seg.resolve_output("-o", f"{tmp_path}/out/{{stem}}/classes.tif", Path("x.zip"), "{stem}.tif", True)
    assert out is not None and out.parent.parent == tmp_path / "out"
    assert out.parent.name not in (".", "..") and out.resolve().parent.parent == tmp_path / "out"
    (tmp_path / "dir").mkdir()
    out = seg.resolve_output("-o", str(tmp_path / "dir"), Path("x.zip"), "{stem}_classes.tif", False)
    assert out is not None and out.parent == tmp_path / "dir" and "/" not in out.name


def test_template_stem_keeps_ordinary_names() -> None:
    from dakd_edge.cli.segment import template_stem

    assert template_stem("S1A_IW_GRDH_1SDV my scene") == "S1A_IW_GRDH_1SDV my scene"
    assert template_stem("..") == template_stem("...") == "scene"


# --- G: irregular GCPs ---------------------------------------------------------------------------------


def test_many_irregular_gcps_fit_a_bounded_spline(monkeypatch) -> None:
    import rasterio.transform
    from rasterio.control import GroundControlPoint

    from dakd_edge.data.landmask import MAX_TPS_GCPS, GCPGeoref

    fitted: list[int] = []
    real = rasterio.transform.GCPTransformer

    def spy(gcps: Any, *a: Any, **kw: Any) -> Any:
        fitted.append(len(gcps))
        return real(gcps, *a, **kw)

    monkeypatch.setattr(rasterio.transform, "GCPTransformer", spy)
    n = 2000
    rng = np.random.default_rng(0)
    rows, cols = rng.uniform(0, 1023, n), rng.uniform(0, 1535, n)

    def lonlat(r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # smooth, slightly bent
        return 24.9 + 0.2 * c / 1536 + 0.01 * r / 1024 + 1e-3 * (r / 1024) ** 2, 40.06 - 0.12 * r / 1024

    lon, lat = lonlat(rows, cols)
    gcps = [
        GroundControlPoint(row=r, col=c, x=x, y=y) for r, c, x, y in zip(rows, cols, lon, lat, strict=True)
    ]
    t = time.perf_counter()
    with pytest.warns(Notice, match=f"{n} GCPs off a regular grid: .*{MAX_TPS_GCPS} of them"):
        geo = GCPGeoref(gcps)
    assert fitted == [MAX_TPS_GCPS] and time.perf_counter() - t < 20
    r, c = np.meshgrid(np.arange(0, 1024, 64.0), np.arange(0, 1536, 64.0), indexing="ij")
    lo, la = geo.lonlat(r, c)
    want_lo, want_la = lonlat(r, c)
    assert np.abs(lo - want_lo).max() < 1e-5 and np.abs(la - want_la).max() < 1e-5  # 1 m: under a pixel
    rr, cc = geo.rowcol(lo, la)
    assert np.abs(rr - r).max() < 0.01 and np.abs(cc - c).max() < 0.01


def test_vrt_inside_an_archive_is_refused(tmp_path: Path, tif: Path) -> None:
    """A deflated zip hides a VRT's XML from the scan (review): a VRT opened through /vsizip/, or named
    by a local VRT as its source, is refused; a vrt:// source is local and opens."""
    import zipfile

    from dakd_edge.data.rasterinfo import open_raster

    z = tmp_path / "z.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("net.vrt", _vrt("/vsicurl/http://127.0.0.1:9/x.tif"))
    with pytest.raises(InputError, match="a GDAL VRT inside an archive or virtual path is not opened"):
        open_raster(f"/vsizip/{z}/net.vrt")
    (tmp_path / "outer.vrt").write_text(_vrt(f"/vsizip/{z}/net.vrt"))
    with pytest.raises(InputError, match="inside an archive, whose sources are not checked"):
        open_raster(tmp_path / "outer.vrt")
    (tmp_path / "proto.vrt").write_text(_vrt(f"vrt://{tif}?bands=1"))
    with open_raster(tmp_path / "proto.vrt") as ds:
        assert int(ds.read(1).max()) == 7
