"""Model metadata: which classes mean oil, and how many classes a class map can hold."""

from __future__ import annotations

import warnings

import pytest

from dakd_edge import create_model
from dakd_edge.errors import ModelFileError, Notice
from dakd_edge.meta import ModelMeta, is_oil_name, oil_ids_of


@pytest.mark.parametrize(
    "name, oil",
    [
        ("oil", True), ("Oil spill", True), ("oil_slick", True), ("OilSpill", True), ("Oil-Spill", True),
        ("crude oil", True), ("non-oil", False), ("oil look-alike", False), ("look-alike", False),
        ("oil platform", False), ("oil-free sea", False), ("background", False), ("soil", False),
    ],
)  # fmt: skip
def test_oil_is_found_by_the_words_of_a_name(name: str, oil: bool) -> None:
    assert is_oil_name(name) is oil


def test_oil_ids_fall_back_to_class_1_and_say_so_beyond_two_classes() -> None:
    """("sea", "look-alike", "oil_slick") had its look-alikes traced as spills: only "oil" and "oil spill"
    were oil names, and class 1 the silent fallback."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Notice)
        assert oil_ids_of(["sea", "look-alike", "oil_slick"]) == [2]
        assert oil_ids_of(["oil", "background"]) == [0]
        assert oil_ids_of(["water", "slick"]) == [1]  # two classes: the binary convention, unsaid
    with pytest.warns(Notice, match=r"class 1 \('look-alike'\) is taken as oil"):
        assert oil_ids_of(["sea", "look-alike", "slick"]) == [1]


@pytest.mark.parametrize("k", [0, 1, 256, 300])
def test_class_counts_a_class_map_cannot_hold_are_refused(k: int) -> None:
    """One class made `segment` fail with an IndexError after the whole scene; 300 an OverflowError in
    the uint8 argmax; 256 made class 255 the nodata value."""
    with pytest.raises(ValueError, match=f"{k} classes: a segmentation model needs 2 to 255"):
        ModelMeta.default_for("m", k)
    with pytest.raises(ModelFileError, match="field 'num_classes'"):
        ModelMeta.from_dict(
            {"name": "m", "num_classes": k, "class_names": ["c"] * k, "palette": [[0, 0, 0]] * k}
        )
    with pytest.raises(ValueError, match="needs 2 to 255"):
        create_model("saross-edge", num_classes=k)
    assert ModelMeta.default_for("m", 255).num_classes == 255


def test_class_meaning_and_background_of_two_class_models() -> None:
    from dakd_edge.meta import background_ids_of, class_meaning

    osd = ["sea", "oil", "look-alike", "ship", "land"]
    assert [class_meaning(n) for n in ["water", "Oil spill", "lookalike", "Ship", "Land_mask"]] == [
        "background", "oil", "lookalike", "ship", "land"
    ] and [class_meaning(n) for n in osd] == ["background", "oil", "lookalike", "ship", "land"]  # fmt: skip
    # two classes, oil first, the other unnamed as background: it is the background (was: none, so a
    # quicklook tinted the whole scene)
    assert background_ids_of(["oil", "clean"]) == [1] and background_ids_of(["non-oil", "oil"]) == [0]
    assert background_ids_of(["thick oil", "thin oil"]) == []  # two oil classes: no background


def test_a_model_with_two_classes_of_one_name_is_refused() -> None:
    """Both ids would count as that class everywhere (two 'oil' classes: both traced as spills)."""
    import pytest

    from dakd_edge.meta import ModelMeta, _problem

    with pytest.raises(ValueError, match=r"classes 1 and 2 have one name \('oil', 'Oil'\)"):
        ModelMeta.default_for("x", 3, class_names=("sea", "oil", "Oil"))
    d = ModelMeta.default_for("x", 3, class_names=("sea", "oil", "ship")).to_dict()
    d["class_names"] = ["sea", "oil", "oil"]
    assert "have one name" in _problem(d)
