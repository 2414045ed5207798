"""The Python API as a caller's own code uses it: misuse gets one typed, clear error before any work."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from dakd_edge.errors import BackendUnavailable, InputError, Notice
from dakd_edge.inference.predictor import Predictor
from tests.inference.fake import FakeBackend, blob_scene


def _tif(path) -> None:
    profile = dict(driver="GTiff", width=8, height=8, count=1, dtype="uint8", crs="EPSG:32633")
    with rasterio.open(path, "w", transform=from_origin(500000, 4800000, 10, 10), **profile) as d:
        d.write(blob_scene(8, 8), 1)


def test_predictor_is_a_context_manager_and_refuses_work_once_closed() -> None:
    img = blob_scene(40, 40)
    with Predictor(FakeBackend()) as p:
        assert p.predict(img).shape == (40, 40)
    with pytest.raises(BackendUnavailable, match="was closed"):
        p.predict(img)
    p.close()  # twice: harmless


def test_onnx_backend_close_drops_its_session(tmp_path) -> None:
    from dakd_edge.inference.backends import OnnxRuntimeBackend

    backend = object.__new__(OnnxRuntimeBackend)  # no ONNX file needed: only close/predict's guard
    backend.session = object()
    backend.close()
    assert backend.session is None
    with pytest.raises(BackendUnavailable, match="closed"):
        backend.predict(np.zeros((1, 1, 8, 8), np.float32))


@pytest.mark.parametrize("batch", [0, -1, 2.5])
def test_predictor_bad_batch_is_an_input_error(batch) -> None:
    with pytest.raises(InputError, match="--batch"):
        Predictor(FakeBackend(), batch=batch)


def test_segment_scene_refuses_an_open_dataset_in_one_line(tmp_path) -> None:
    from dakd_edge.inference.segment import segment_scene

    src = tmp_path / "s.tif"
    _tif(src)
    with rasterio.open(src) as ds, pytest.raises(TypeError, match="pass its path, not a DatasetReader"):
        segment_scene(Predictor(FakeBackend()), ds, tmp_path / "c.tif")
    assert not (tmp_path / "c.tif").exists()


def _db_tif(path) -> None:
    profile = dict(driver="GTiff", width=64, height=64, count=1, dtype="float32", crs="EPSG:32633")
    with rasterio.open(path, "w", transform=from_origin(500000, 4800000, 10, 10), **profile) as d:
        d.write((-20.0 + 10.0 * blob_scene(64, 64) / 255).astype(np.float32), 1)


@pytest.mark.parametrize("route", ["method", "function"])
def test_segment_notices_name_python_keywords(tmp_path, route) -> None:
    """``model.segment`` / ``dakd_edge.segment_scene`` said "pass --input-scale" in their notices (their
    errors already said ``scale=``); the CLI's own segment keeps its option names."""
    import dakd_edge
    from dakd_edge.inference.segment import segment_scene

    src = tmp_path / "db.tif"
    _db_tif(src)
    model = Predictor(FakeBackend())
    with pytest.warns(Notice, match="guessed from their range") as rec:
        if route == "method":
            model.segment(src, tmp_path / "a.tif", land_mask=None)
        else:
            dakd_edge.segment_scene(model, src, tmp_path / "a.tif", land_mask=None)
    line = next(str(w.message) for w in rec if "guessed" in str(w.message))
    assert line.endswith("pass scale=") and "--input-scale" not in line
    with pytest.warns(Notice, match="pass --input-scale$"):  # the CLI's path: the core function
        segment_scene(model, src, tmp_path / "b.tif", land_mask=None)
    nogeo = tmp_path / "nogeo.tif"
    with rasterio.open(nogeo, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8") as d:
        d.write(blob_scene(8, 8), 1)
    with (
        pytest.warns(Notice, match="no georeference"),
        pytest.raises(InputError, match=r"min_area=3 is in m\^2"),
    ):
        dakd_edge.segment_scene(model, nogeo, tmp_path / "c.tif", min_area=3)


def test_notices_point_at_the_caller_s_line(tmp_path) -> None:
    """A segment notice pointed at a line deep in dakd_edge (segment.py), not the caller's."""
    src = tmp_path / "db.tif"
    _db_tif(src)
    with pytest.warns(Notice, match="guessed from their range") as rec:
        Predictor(FakeBackend()).segment(src, tmp_path / "a.tif", land_mask=None)
    assert {w.filename for w in rec} == {__file__}


@pytest.mark.parametrize("block", [0, -1])
def test_score_scene_block_must_be_positive(tmp_path, block) -> None:
    from dakd_edge.scene_eval import score_scene

    with pytest.raises(InputError, match="block must be an integer >= 1"):
        score_scene(tmp_path / "pred.tif", tmp_path / "truth.tif", block=block)


@pytest.mark.parametrize("what", ["model.onnx", FakeBackend()])
def test_evaluate_needs_a_predictor(tmp_path, what) -> None:
    from dakd_edge.evaluate import evaluate

    with pytest.raises(TypeError, match="evaluate needs a Predictor"):
        evaluate(what, tmp_path)


def test_batch_inputs_may_be_one_path_not_only_a_list(tmp_path, monkeypatch) -> None:
    """A str was iterated character by character: "/" walked the whole disk."""
    from dakd_edge.batch.inputs import expand_inputs

    monkeypatch.chdir(tmp_path)
    _tif("a.tif")
    for one in ("a.tif", tmp_path / "a.tif"):
        assert [s.path for s in expand_inputs(one)] == [tmp_path / "a.tif"]


def test_batch_run_refuses_an_unknown_segment_setting_before_starting(tmp_path) -> None:
    from dakd_edge.batch.runner import _check_segment_kwargs

    _check_segment_kwargs({"min_area": "10px", "land_mask": None, "pol": "VV"})
    with pytest.raises(InputError, match="unknown segment setting.s. min_aera; a batch takes"):
        _check_segment_kwargs({"min_aera": 5})
    with pytest.raises(InputError, match="vector"):  # the worker names each scene's outputs itself
        _check_segment_kwargs({"vector": "x.gpkg"})


def test_predict_scale_errors_name_the_argument_not_the_cli_option() -> None:
    """An int64 array of 0-255 is refused (16/32/64-bit integers are digital numbers): the message named
    the CLI's --input-scale; the library's argument is scale=, and scale='uint8' reads it."""
    pred = Predictor(FakeBackend(num_classes=2), tile=32, overlap=8, batch=2)
    img = blob_scene(40, 40).astype(np.int64)
    with pytest.raises(InputError, match=r"pass scale=uint8") as e:
        pred.predict(img)
    assert "--input-scale" not in str(e.value)
    np.testing.assert_array_equal(pred.predict(img, scale="uint8"), pred.predict(img.astype(np.uint8)))


def test_segment_from_a_thread_pool_leaves_the_warning_filters_as_they_were(tmp_path) -> None:
    """Predictor.segment from several threads at once left an "ignore every warning" filter installed
    (catch_warnings is process-wide): later InputDomainWarnings never reached the user."""
    from concurrent.futures import ThreadPoolExecutor

    profile = dict(driver="GTiff", width=64, height=64, count=1, dtype="uint8", crs="EPSG:32633")
    for i in range(8):
        with rasterio.open(
            tmp_path / f"s{i}.tif", "w", transform=from_origin(5e5, 48e5, 10, 10), **profile
        ) as d:
            d.write(blob_scene(64, 64, seed=i), 1)
    before = list(warnings.filters)
    p = Predictor(FakeBackend(), tile=32, overlap=8)
    with ThreadPoolExecutor(4) as ex:
        list(
            ex.map(
                lambda i: p.segment(tmp_path / f"s{i}.tif", tmp_path / f"c{i}.tif", polygons=False), range(8)
            )
        )
    assert warnings.filters == before
    assert all((tmp_path / f"c{i}.tif").is_file() for i in range(8))


def test_readme_python_example_runs_as_written(tmp_path, monkeypatch) -> None:
    """README's Python block, run as written on a small stand-in for the demo scene (sigma0 in dB)."""
    import re
    from pathlib import Path

    block = re.search(r"```python\n(.*?)```", (Path(__file__).parents[1] / "README.md").read_text(), re.S)
    assert block is not None
    (tmp_path / "dakd-demo").mkdir()
    db = (-35.0 + blob_scene(512, 512, seed=1) / 255.0 * 40.0).astype(np.float32)
    profile = dict(driver="GTiff", width=512, height=512, count=1, dtype="float32", crs="EPSG:32633")
    with rasterio.open(
        tmp_path / "dakd-demo/scene.tif", "w", transform=from_origin(5e5, 48e5, 10, 10), **profile
    ) as d:
        d.write(db, 1)
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the guessed-scale notice
        exec(compile(block.group(1), "README.md", "exec"), names)
    assert names["classes"].shape == (512, 512) and names["classes"].dtype == np.uint8
    assert names["probs"].shape == (2, 512, 512)
    np.testing.assert_allclose(names["probs"].sum(axis=0), 1.0, atol=1e-5)
    assert (tmp_path / "classes.tif").is_file() and (tmp_path / "spills.geojson").is_file()
    assert names["report"]["outputs"]["classes"].endswith("classes.tif")


def test_predict_says_a_guessed_float_scale_at_the_callers_line() -> None:
    """predict() guessed float scaling in silence (segment said it): 8-bit luminance divided by 255
    read as linear power, and an all-oil patch came out with no oil without a word."""
    p = Predictor(FakeBackend(), tile=32, overlap=8)
    lum = blob_scene(64, 64).astype(np.float32) / 255.0
    rng = np.random.default_rng(0)
    linear = rng.gamma(4.0, 0.05 / 4.0, (64, 64)).astype(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p.predict(lum)
        p.predict_proba(linear)
        p.predict(linear, scale="linear")  # stated: nothing to say
    notices = [w for w in caught if w.category is Notice]  # not the domain warnings
    assert len(notices) == 2 and all(w.filename == __file__ for w in notices)
    assert "multiples of 1/255" in str(notices[0].message) and "scale=uint8" in str(notices[0].message)
    assert "guessed from their range" in str(notices[1].message) and "1/255" not in str(notices[1].message)
    assert "--input-scale" not in str(notices[0].message) + str(notices[1].message)


@pytest.mark.parametrize(
    ("shape", "hint"),
    [((2, 64, 64), "image[0]"), ((64, 64, 2), "image[..., 0]"), ((64, 64, 3), "image[..., 0]")],
)
def test_a_dual_pol_array_is_refused_with_the_index_of_its_layout(shape, hint) -> None:
    """A (2, H, W) stack was told to pass image[..., 0] (a 2-pixel-wide slice that then ran), and an
    (H, W, 2) one was said to have H different bands."""
    a = np.random.default_rng(0).random(shape, dtype=np.float32)
    with pytest.raises(InputError) as ei:
        Predictor(FakeBackend(), tile=32, overlap=8).predict(a)
    msg = str(ei.value)
    assert f"has {min(shape)} different bands" in msg and msg.endswith(f"e.g. {hint}")


def test_misused_arguments_are_input_errors_said_at_load(tmp_path) -> None:
    """backend='ort' raised BackendUnavailable (the error for a runtime this machine lacks, not for a
    misspelt name); kernels='bogus' was accepted and failed on the first predict."""
    import dakd_edge

    with pytest.raises(InputError, match="unknown backend 'ort'"):
        dakd_edge.load_model(backend="ort")
    pytest.importorskip("torch")
    with pytest.raises(InputError, match="kernels='bogus'"):
        dakd_edge.load_model(backend="torch", kernels="bogus")


@pytest.mark.parametrize(
    ("kw", "what"), [({"out": "b.png"}, "class ids"), ({"probs": "p.jpg"}, "probabilities")]
)
def test_a_raster_output_named_for_another_format_is_refused(tmp_path, kw, what) -> None:
    """segment(out='b.png') wrote a GeoTIFF under a PNG name (an image viewer then failed on it)."""
    from dakd_edge.errors import OutputError

    _tif(tmp_path / "s.tif")
    args = {"out": tmp_path / "c.tif", **{k: tmp_path / v for k, v in kw.items()}}
    with pytest.raises(
        OutputError, match=f"the {what} are written as a Cloud-Optimized GeoTIFF; name the file .tif"
    ):
        Predictor(FakeBackend(), tile=32, overlap=8).segment(tmp_path / "s.tif", **args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tif"]


def test_public_entry_points_name_arguments_not_cli_options(tmp_path) -> None:
    """load_model(tile=16) said "--tile 16 is too small", segment() without overwrite "pass --overwrite"."""
    import dakd_edge
    from dakd_edge.errors import OutputError

    with pytest.raises(InputError, match=r"^tile=16 is too small"):
        dakd_edge.load_model(tile=16)
    _tif(tmp_path / "s.tif")
    (tmp_path / "c.tif").write_bytes(b"x")
    with pytest.raises(OutputError, match=r"pass overwrite=True to replace it"):
        Predictor(FakeBackend(), tile=32, overlap=8).segment(tmp_path / "s.tif", tmp_path / "c.tif")


def test_silencing_notices_keeps_the_input_domain_warning() -> None:
    """InputDomainWarning (the results may be wrong) derived from Notice (good to know): the obvious way
    to quiet the notices also hid it."""
    from dakd_edge.data.scaling import InputDomainWarning

    p = Predictor(FakeBackend(), tile=32, overlap=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", Notice)
        p.predict(np.full((64, 64), 5, np.uint8))  # far darker than any training image
    assert [w.category for w in caught] == [InputDomainWarning]


def test_a_closed_torch_model_drops_its_weights() -> None:
    """TorchBackend.close() did nothing: a closed torch predictor kept its weights (and GPU memory)."""
    import gc
    import weakref

    import dakd_edge

    pytest.importorskip("torch")
    model = dakd_edge.load_model(backend="torch")
    net = weakref.ref(model.backend.model)
    model.close()
    gc.collect()
    assert net() is None
    with pytest.raises(BackendUnavailable, match="closed"):
        model.predict(np.zeros((64, 64), np.uint8))


def test_a_filter_on_the_words_shown_silences_the_notice(tmp_path) -> None:
    """warnings matched filters against the CLI wording passed to warn(), not the Python words shown."""
    src = tmp_path / "db.tif"
    _db_tif(src)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", message=".*pass scale=$")
        Predictor(FakeBackend()).segment(src, tmp_path / "a.tif", land_mask=None)
    assert not [w for w in rec if "guessed from their range" in str(w.message)]
