"""Input-domain check: scaled scenes far from the training luminance get one warning line naming --input-scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dakd_edge.data.scaling import (
    SOS_INPUT_STATS,
    domain_warning,
    measure_input_stats,
    scale_from_unit,
    to_unit,
)
from dakd_edge.errors import InputError, ModelFileError
from dakd_edge.meta import ModelMeta

# libjpeg builds may decode a grey level differently: 2 grey levels of slack on the measured percentiles.
STATS_TOLERANCE = 2 / 255


def _band1(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.getchannel(0) if im.mode != "L" else im)


def test_dark_uint8_scene_warns_naming_input_scale() -> None:
    rng = np.random.default_rng(0)
    dark = rng.integers(0, 25, (256, 256), dtype=np.uint8)  # an uncalibrated 8-bit tile: all values < 25
    line = domain_warning(to_unit(dark, "uint8"), None, scale="uint8")
    assert line is not None and "--input-scale" in line and "below" in line and "\n" not in line
    assert "read as uint8" in line and "SOS" in line


def test_worst_case_dark_scene_warns() -> None:
    """Every value 24: the brightest an all-below-25 scene can be still falls outside the margin."""
    assert domain_warning(to_unit(np.full((64, 64), 24, np.uint8), "uint8"), None) is not None


def test_bright_scene_warns_above() -> None:
    line = domain_warning(np.full((32, 32), 0.95, np.float32), SOS_INPUT_STATS)
    assert line is not None and "above" in line


def test_synthetic_uint8_scenes_pass() -> None:
    from dakd_edge.data.synthetic import generate_scene

    for seed in range(4):
        img, _ = generate_scene(None, seed, 256, 256, output="uint8")
        assert domain_warning(to_unit(img, "uint8"), None) is None, seed


def test_nodata_is_ignored() -> None:
    """NaN and masked pixels (nodata) do not count: a mostly-nodata scene is judged by its valid pixels."""
    u = np.full((64, 64), np.nan, np.float32)
    u[:8] = 0.45
    assert domain_warning(u, None) is None
    assert domain_warning(np.full((4, 4), np.nan, np.float32), None) is None
    m = np.ma.masked_array(np.full((8, 8), 0.02, np.float32), mask=np.ones((8, 8), bool))
    m.mask[0, 0] = False
    m[0, 0] = 0.5
    assert domain_warning(m, None) is None


def test_model_stats_override_the_default() -> None:
    narrow = {"median_p01": 0.6, "median_p99": 0.7, "source": "bright set"}
    u = np.full((16, 16), 0.45, np.float32)
    assert domain_warning(u, None) is None
    line = domain_warning(u, narrow)
    assert line is not None and "bright set" in line and "0.600-0.700" in line


def test_meta_carries_input_stats_and_old_files_load() -> None:
    meta = ModelMeta.default_for("saross-nano", 2, input_stats=dict(SOS_INPUT_STATS))
    back = ModelMeta.from_json(meta.to_json())
    assert back == meta and back.input_stats == SOS_INPUT_STATS
    old = ModelMeta.default_for("saross-nano", 2).to_dict()
    del old["input_stats"]
    assert ModelMeta.from_dict(old).input_stats is None


@pytest.mark.parametrize(
    ("stats", "expected"),
    [
        ("[1, 2]", "expected an object or null"),
        ('{"median_p01": "low", "median_p99": 0.6}', "needs numbers"),
        ('{"median_p01": 0.7, "median_p99": 0.2}', "0 <= p01 <= p99 <= 1"),
        ('{"median_p99": 0.6}', "needs numbers"),
    ],
)
def test_meta_rejects_malformed_input_stats(stats: str, expected: str) -> None:
    text = f'{{"name": "m", "num_classes": 2, "input_stats": {stats}}}'
    with pytest.raises(ModelFileError, match="^m.onnx: invalid model metadata: ") as e:
        ModelMeta.from_json(text, source="m.onnx")
    assert expected in str(e.value)


def test_sos_test_images_pass(shared_data: Path) -> None:
    files = sorted((shared_data / "sos" / "test").glob("*/sat/*_sat.jpg"))
    if not files:
        pytest.skip("no SOS test images under ../shared/data/sos/test")
    flagged = [f.name for f in files if domain_warning(to_unit(_band1(f), "uint8"), None) is not None]
    assert flagged == []


def test_sos_stats_match_the_training_images(shared_data: Path) -> None:
    """SOS_INPUT_STATS is what measure_input_stats gives on the SOS training images (2 grey levels)."""
    files = sorted((shared_data / "sos" / "train").glob("*/*_sat.jpg"))
    if not files:
        pytest.skip("no SOS training images under ../shared/data/sos/train")
    got = measure_input_stats((to_unit(_band1(f), "uint8") for f in files), "SOS train")
    for k in ("median_p01", "median_p50", "median_p99"):
        assert got[k] == pytest.approx(SOS_INPUT_STATS[k], abs=STATS_TOLERANCE), k
    assert got["images"] == SOS_INPUT_STATS["images"]


def test_detect_scale_tells_noise_subtracted_linear_from_db() -> None:
    """Linear sigma0 after thermal-noise subtraction has many values just below 0: not dB."""
    from dakd_edge.data.scaling import detect_scale

    rng = np.random.default_rng(0)
    sea = rng.gamma(4.0, 0.01, 50_000).astype(np.float32)  # linear sigma0 around 0.04 (-14 dB)
    assert detect_scale(sea) == "linear"
    assert detect_scale(sea - np.median(sea)) == "linear"  # half negative after noise removal
    assert detect_scale(10 * np.log10(sea)) == "db"  # the same sea in dB
    assert detect_scale(np.clip(10 * np.log10(sea), -35, None) + 14.0) == "db"  # dB around 0 but wide
    with pytest.raises(InputError, match="negative linear"):
        detect_scale(-sea)  # all negative power: neither


@pytest.mark.parametrize(
    ("description", "unit", "want"),
    [
        ("Sigma0_VV", "intensity", "linear"),  # SNAP's calibrated band
        ("Gamma0_HH", "intensity", "linear"),
        ("Sigma0_VV_db", "intensity_db", "db"),
        ("Sigma0_VV", "dB", "db"),
        ("Intensity_VV", "intensity", None),  # SNAP's uncalibrated DN^2: no calibrated scale
        ("Amplitude_VV", "amplitude", None),
        ("Sigma0_VV", "", None),
        ("incidence_angle", "deg", None),
        (None, "intensity", None),
    ],
)
def test_scale_from_unit(description: str | None, unit: str, want: str | None) -> None:
    named = scale_from_unit(description, unit)
    assert (named.scale if named else None) == want
    if named:
        assert named.gain is None and description in named.why
