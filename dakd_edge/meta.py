"""Model metadata that travels with every checkpoint, ONNX file and engine.

It is plain JSON (no torch) so the torch-free runtime can read it, and it is the one place that says
how a raw raster becomes a model input (see :mod:`dakd_edge.data.scaling`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from dakd_edge import __version__

OSD_CLASSES = ("sea", "oil", "look-alike", "ship", "land")
# OSD release palette (RGB): black sea, cyan oil, red look-alike, brown ship, green land.
OSD_PALETTE = ((0, 0, 0), (0, 255, 255), (255, 0, 0), (153, 76, 0), (0, 153, 0))
BINARY_CLASSES = ("background", "oil")
BINARY_PALETTE = ((0, 0, 0), (0, 255, 255))


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
    arch: dict[str, Any] = field(default_factory=dict)  # constructor kwargs for create_model(name, ...)
    version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)  # free-form (training recipe, metrics, ...)

    def __post_init__(self) -> None:
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")
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
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelMeta:
        d = dict(d)
        d["class_names"] = tuple(d.get("class_names", ()))
        d["palette"] = tuple(tuple(int(c) for c in rgb) for rgb in d.get("palette", ()))
        d["normalization"] = Normalization.from_dict(d.get("normalization", {}))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_json(cls, s: str) -> ModelMeta:
        return cls.from_dict(json.loads(s))


def _fallback_colour(i: int) -> tuple[int, int, int]:
    return ((37 * i + 60) % 256, (91 * i + 120) % 256, (53 * i + 200) % 256)
