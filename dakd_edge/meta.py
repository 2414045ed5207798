"""Model metadata that travels with every checkpoint, ONNX file and engine.

It is plain JSON (no torch) so the torch-free runtime can read it, and it is the one place that says
how a raw raster becomes a model input (see :mod:`dakd_edge.data.scaling`).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from dakd_edge import __version__, jsonin
from dakd_edge.errors import ModelFileError, Notice, quiet, user_stacklevel

OSD_CLASSES = ("sea", "oil", "look-alike", "ship", "land")
# OSD release palette (RGB): black sea, cyan oil, red look-alike, brown ship, green land.
OSD_PALETTE = ((0, 0, 0), (0, 255, 255), (255, 0, 0), (153, 76, 0), (0, 153, 0))
BINARY_CLASSES = ("background", "oil")
BINARY_PALETTE = ((0, 0, 0), (0, 255, 255))
# Label value of unlabelled pixels (nodata, outside the scene): skipped by losses and metrics.
IGNORE_INDEX = 255
# Class maps are uint8 with IGNORE_INDEX as nodata: at most 255 classes; at least 2 (argmax of one is 0).
MIN_CLASSES, MAX_CLASSES = 2, IGNORE_INDEX
# Input channels a model file may ask for: far above any SAR stack, and low enough that a builder
# allocating its first convolution before the weights are checked (SMP does) stays small.
MAX_IN_CHANS = 1024
# Words of a class name that mean oil, and words that make an oil name mean something else.
_OIL_WORDS = frozenset({"oil", "oilspill", "oilspills", "oilslick", "oilslicks"})
_NOT_OIL_WORDS = frozenset(
    {"no", "non", "not", "free", "look", "alike", "lookalike", "like", "platform", "rig"}
)


# What class names mean, in one place (models and data name their classes freely): the sea the rest
# lies on, land, oil. Names are compared by :func:`class_key`.
BACKGROUND_NAMES = frozenset(
    {"sea", "background", "bg", "water", "ocean", "opensea", "cleansea", "seasurface", "openwater",
     "cleanwater", "nooil", "nonoil", "oilfree"}
)  # fmt: skip
LAND_NAMES = frozenset({"land", "landmask"})


def class_key(name: str) -> str:
    """A class name compared by meaning: lower-case letters and digits only ("Look-Alike" ==
    "lookalike", "Open_Sea" == "open sea")."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def class_meaning(name: str) -> str:
    """What a class name means, for matching one label set with another: "background" for any
    :data:`BACKGROUND_NAMES` (sea, water, ...), "oil" for any oil name (:func:`is_oil_name`), "land", else
    its :func:`class_key` (OSD's "sea, oil, look-alike, ship, land" matches "water, oil spill,
    lookalike, Ship, Land")."""
    key = class_key(name)
    if key in BACKGROUND_NAMES:
        return "background"
    if is_oil_name(name):
        return "oil"
    return "land" if key in LAND_NAMES else key


def class_names_problem(names: Any) -> str | None:
    """What is wrong with a data set's list of class names, in one phrase (None when nothing): a name
    is what a class means everywhere, so two classes of one name (compared by :func:`class_key`) would
    both mean it (``["sea", "oil", "oil"]``: both counted as oil)."""
    if not isinstance(names, list) or not MIN_CLASSES <= len(names) <= MAX_CLASSES:
        return f"class_names must list {MIN_CLASSES} to {MAX_CLASSES} classes"
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        j = seen.setdefault(class_key(n), i)
        if j != i:
            return f"classes {j} and {i} have one name ({names[j]!r}, {n!r}); give each class its own name"
    return None


def land_ids_of(class_names: Iterable[str]) -> list[int]:
    """Class ids named land (:data:`LAND_NAMES`, e.g. OSD's ``land``); [] when no class is."""
    return [i for i, n in enumerate(class_names) if class_key(n) in LAND_NAMES]


def background_ids_of(class_names: Iterable[str]) -> list[int]:
    """Class ids of the background (sea), by name (:data:`BACKGROUND_NAMES`). Classes whose names say
    nothing (``class0``, ``class1``, ...) keep the convention of :func:`oil_ids_of`: class 0 is the
    background unless it is the oil class."""
    names = list(class_names)
    ids = [i for i, n in enumerate(names) if class_key(n) in BACKGROUND_NAMES]
    if ids or not names:
        return ids
    with quiet(Notice):  # its guess of the oil class is said where oil is looked for
        oil = oil_ids_of(names)
    if len(names) == 2 and len(oil) == 1:  # oil and its complement ("oil", "clean"): the background
        return [1 - oil[0]]
    return [] if 0 in oil else [0]


def is_oil_name(name: str) -> bool:
    """Whether a class name means oil: "oil", "Oil spill", "oil_slick", "OilSpill"; not "non-oil",
    "oil look-alike", "oil platform"."""
    words = set(re.split(r"[^a-z0-9]+", name.lower()))
    return bool(words & _OIL_WORDS) and not words & _NOT_OIL_WORDS


def oil_ids_of(class_names: Iterable[str]) -> list[int]:
    """Class ids that mean oil, by name (:func:`is_oil_name`); class 1 when no name does.

    The fallback is the binary convention (background, oil) of OSD's and SOS's ids. With more than
    two classes it is a guess, said once per call as a :class:`~dakd_edge.errors.Notice`: a model whose
    classes are ("sea", "look-alike", "slick") would have its look-alikes traced as spills.
    """
    names = list(class_names)
    ids = [i for i, n in enumerate(names) if is_oil_name(n)]
    if ids:
        return ids
    if len(names) > 2:
        warnings.warn(
            Notice(
                f"no class of {names} is named oil: class 1 ({names[1]!r}) is taken as oil; name the oil "
                "class 'oil' in the model's class names (or the data's classes.json)"
            ),
            stacklevel=user_stacklevel(),
        )
    return [1]


@dataclass
class Normalization:
    """How raw pixels map to the network input.

    A raw raster is first mapped to a unit luminance in [0, 1] (``dakd_edge.data.scaling.to_unit``:
    uint8 / 255, or sigma0 in dB clipped to ``db_range`` and stretched linearly; linear sigma0 is
    converted to dB first), then standardised with ``(unit - mean) / std``.
    """

    mean: float = 0.5
    std: float = 0.25
    db_range: tuple[float, float] = (-35.0, 5.0)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalization:
        d = dict(d)
        if "db_range" in d:
            d["db_range"] = tuple(float(v) for v in d["db_range"])
        return cls(**d)


@dataclass
class ModelMeta:
    """Everything a runtime needs besides the weights: architecture, classes, input handling."""

    name: str
    num_classes: int
    in_chans: int = 1
    class_names: tuple[str, ...] = BINARY_CLASSES
    palette: tuple[tuple[int, int, int], ...] = BINARY_PALETTE
    normalization: Normalization = field(default_factory=Normalization)
    tile: int = 512
    # Overlap to use with ``tile`` (None: the predictor's default rule). The pair is what the model wants
    # on whole scenes, chosen by measurement (benchmarks/mosaic.py), not a property of the weights.
    overlap: int | None = None
    arch: dict[str, Any] = field(default_factory=dict)  # constructor kwargs for create_model(name, ...)
    version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)  # free-form (training recipe, metrics, ...)
    # Training-set luminance statistics for the input-domain check (dakd_edge.data.scaling.domain_warning):
    # {"median_p01", "median_p99" (unit luminance), optional "median_p50", "images", "source"}. None in
    # model files written before it existed; the check then assumes the bundled model's SOS statistics.
    input_stats: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not MIN_CLASSES <= self.num_classes <= MAX_CLASSES:
            raise ValueError(class_count_problem(self.num_classes))
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        problem = class_names_problem(list(self.class_names))  # two of one name would both mean it
        if problem is not None:
            raise ValueError(problem)
        if len(self.palette) != self.num_classes:
            raise ValueError(f"{len(self.palette)} palette colours for {self.num_classes} classes")

    @classmethod
    def default_for(cls, name: str, num_classes: int, in_chans: int = 1, **kw: Any) -> ModelMeta:
        """Metadata with the OSD (5 classes) or binary (2 classes) names and palette."""
        if num_classes == len(OSD_CLASSES):
            kw.setdefault("class_names", OSD_CLASSES)
            kw.setdefault("palette", OSD_PALETTE)
        elif num_classes == 2:
            kw.setdefault("class_names", BINARY_CLASSES)
            kw.setdefault("palette", BINARY_PALETTE)
        else:
            kw.setdefault("class_names", tuple(f"class{i}" for i in range(num_classes)))
            kw.setdefault("palette", tuple(_fallback_colour(i) for i in range(num_classes)))
        return cls(name=name, num_classes=num_classes, in_chans=in_chans, **kw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        """Strict JSON: a NaN in ``extra`` (the IoU of a class missing from validation) becomes null."""
        from dakd_edge.jsonout import dumps

        return dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any, source: str | os.PathLike | None = None) -> ModelMeta:
        """Metadata from a decoded JSON object; :class:`ModelFileError` (naming ``source``) if malformed.

        Model files come from anywhere, so the shape is checked here, once, for every format (ONNX,
        safetensors, .pt, engine sidecar) instead of letting a KeyError or TypeError escape later.
        """
        problem = _problem(d)
        if problem:
            raise ModelFileError(_where(source) + problem)
        d = dict(d)
        try:
            d["class_names"] = tuple(d.get("class_names", ()))
            d["palette"] = tuple(tuple(int(c) for c in rgb) for rgb in d.get("palette", ()))
            d["normalization"] = Normalization.from_dict(d.get("normalization", {}))
            known = set(cls.__dataclass_fields__)
            return cls(**{k: v for k, v in d.items() if k in known})
        except (TypeError, ValueError) as e:  # e.g. 3 class names for 2 classes, a text mean
            raise ModelFileError(_where(source) + " ".join(str(e).split())) from e

    @classmethod
    def from_json(cls, s: str | bytes, source: str | os.PathLike | None = None) -> ModelMeta:
        """Metadata from its JSON text; :class:`ModelFileError` naming ``source`` if it is not valid."""
        try:
            d = jsonin.loads(s)
        except (ValueError, TypeError) as e:  # JSONDecodeError, bad UTF-8, nested too deep, not str
            raise ModelFileError(f"{_where(source)}not valid JSON ({e})") from e
        return cls.from_dict(d, source)


# Field -> (accepted Python types of the decoded JSON, JSON type name for messages).
_REQUIRED = {"name": ((str,), "a string"), "num_classes": ((int,), "an integer")}
_OPTIONAL = {
    "in_chans": ((int,), "an integer"),
    "tile": ((int,), "an integer"),
    "overlap": ((int, type(None)), "an integer or null"),
    "class_names": ((list, tuple), "a list"),
    "palette": ((list, tuple), "a list"),
    "normalization": ((dict,), "an object"),
    "arch": ((dict,), "an object"),
    "extra": ((dict,), "an object"),
    "version": ((str,), "a string"),
    "input_stats": ((dict, type(None)), "an object or null"),
}
_POSITIVE = ("num_classes", "in_chans", "tile")


def _where(source: str | os.PathLike | None) -> str:
    return f"{source}: invalid model metadata: " if source is not None else "invalid model metadata: "


def _json_type(v: Any) -> str:
    kinds = ((bool, "boolean"), (dict, "object"), (list, "list"), (str, "string"), (int, "integer"))
    for kind, name in kinds:
        if isinstance(v, kind):
            return name
    return "number" if isinstance(v, float) else "null" if v is None else type(v).__name__


def _problem(d: Any) -> str | None:
    """What is wrong with a decoded metadata object, in one line (None when its shape is right)."""
    if not isinstance(d, dict):
        return f"a JSON {_json_type(d)}, expected an object"
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        return "missing required field(s) " + ", ".join(repr(k) for k in missing)
    for k, (types, name) in {**_REQUIRED, **_OPTIONAL}.items():
        v = d.get(k)
        if k in d and (not isinstance(v, types) or isinstance(v, bool)):
            return f"field {k!r} is a JSON {_json_type(v)}, expected {name}"
        if k in _POSITIVE and k in d and v < 1:
            return f"field {k!r} is {v}, expected a positive integer"
    if d.get("in_chans", 1) > MAX_IN_CHANS:
        return f"field 'in_chans' is {d['in_chans']}, expected at most {MAX_IN_CHANS} input channels"
    if not MIN_CLASSES <= d["num_classes"] <= MAX_CLASSES:
        return f"field 'num_classes': {class_count_problem(d['num_classes'])}"
    overlap, tile = d.get("overlap"), d.get("tile", 512)
    if overlap is not None and not 0 <= overlap <= tile // 2:
        return f"field 'overlap' is {overlap}, expected 0 to half the tile ({tile} // 2)"
    if not all(isinstance(c, str) for c in d.get("class_names", ())):
        return "field 'class_names' must list strings"
    if "class_names" in d and (problem := class_names_problem(list(d["class_names"]))) is not None:
        return f"field 'class_names': {problem}"
    if not all(_is_rgb(c) for c in d.get("palette", ())):
        return "field 'palette' must list [r, g, b] triples of integers 0-255"
    unknown = set(d.get("normalization", {})) - set(Normalization.__dataclass_fields__)
    if unknown:
        return "field 'normalization' has unknown key(s) " + ", ".join(sorted(map(repr, unknown)))
    return _input_stats_problem(d.get("input_stats"))


def class_count_problem(k: int) -> str:
    """Why ``k`` classes cannot make a class map (see :data:`MIN_CLASSES`, :data:`MAX_CLASSES`)."""
    return (
        f"{k} classes: a segmentation model needs {MIN_CLASSES} to {MAX_CLASSES} (class maps are 8-bit, "
        f"with {IGNORE_INDEX} as nodata; one class would be all that class)"
    )


def _input_stats_problem(s: dict[str, Any] | None) -> str | None:
    """What is wrong with ``input_stats``: the domain check compares a scene median with these two bounds."""
    if s is None:
        return None
    p01, p99 = s.get("median_p01"), s.get("median_p99")
    if not all(_is_number(v) for v in (p01, p99)):
        return "field 'input_stats' needs numbers 'median_p01' and 'median_p99'"
    if not 0.0 <= p01 <= p99 <= 1.0:
        return f"field 'input_stats' has median_p01 {p01} and median_p99 {p99}, expected 0 <= p01 <= p99 <= 1"
    return None


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v  # v == v: not NaN


def _is_rgb(c: Any) -> bool:
    return (
        isinstance(c, list | tuple)
        and len(c) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in c)
    )


def _fallback_colour(i: int) -> tuple[int, int, int]:
    return ((37 * i + 60) % 256, (91 * i + 120) % 256, (53 * i + 200) % 256)
