"""``dakd-edge batch``: scene archives on Ray, resumable, one merged spill layer.

:func:`run` is the API (the CLI is a thin layer over it). Modules: :mod:`.inputs` (inputs -> scenes
with ids), :mod:`.worker` (what a Ray actor runs: one model, whole scenes through ``segment_scene``),
:mod:`.manifest` (``manifest.jsonl``, what ``--resume`` trusts), :mod:`.layer` (the merged
GeoPackage / GeoParquet, polygons unioned across overlapping scenes), :mod:`.cluster` (the Ray
session and scheduler), :mod:`.runner` (the driver).
Ray, shapely and pystac come with the ``cluster`` extra and are imported only when used.
"""

from __future__ import annotations

from dakd_edge.batch.runner import run

__all__ = ["run"]
