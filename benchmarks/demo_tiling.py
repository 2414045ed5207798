"""Look-alikes larger than a tile, per tiling: the demo scene against its 5-class truth (JSON).

    python benchmarks/demo_tiling.py --tiles 512:64,256:32,256:16 -o docs/demo-tiling.json

The scene is `dakd-edge demo`'s (the synthetic generator at ``--size`` and ``--seed``; 2048 and 0 are
the demo's defaults), written with its 5-class labels so look-alike areas (low wind, biogenic films,
label 2) can be told from open sea. Each ``TILE:OVERLAP`` runs the `segment` path
(:func:`dakd_edge.inference.segment.segment_scene`) and reports, for a model whose oil is class 1:

- ``lookalike_called_oil``: share of all look-alike pixels predicted as oil;
- ``largest_lookalike_called_oil``: the same inside the largest connected look-alike area, the one
  most likely to span several tiles (its size and bounding box are reported);
- ``scene_oil_iou``: oil IoU over the scene.

A model judges a dark area larger than its tile one tile at a time, so these move with the tiling.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from dakd_edge.inference.base import Backend
from dakd_edge.jsonout import write_report

LOOKALIKE, OIL = 2, 1


def largest_area(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of ``mask`` (rasterio's polygoniser; no scipy needed)."""
    from rasterio import features

    best, best_n = np.zeros_like(mask, dtype=bool), 0
    for geom, _ in features.shapes(mask.astype(np.uint8), mask=mask, connectivity=4):
        comp = features.rasterize([(geom, 1)], out_shape=mask.shape).astype(bool) & mask
        n = int(comp.sum())
        if n > best_n:
            best, best_n = comp, n
    return best


def measure(
    backend: Backend, tiles: list[tuple[int, int]], size: int, seed: int, batch: int
) -> dict[str, Any]:
    """The figures above for ``backend`` on the demo scene of ``size`` and ``seed``, per tiling."""
    import rasterio

    from dakd_edge.data import synthetic
    from dakd_edge.inference.predictor import Predictor
    from dakd_edge.inference.segment import segment_scene

    out: dict[str, Any] = {"model": backend.meta.name, "size": size, "seed": seed}
    with tempfile.TemporaryDirectory(prefix="dakd-demo-tiling-") as tmp:
        d = Path(tmp)
        synthetic.write_scene_geotiff(
            d / "scene.tif", seed=seed, height=size, width=size, labels_path=d / "labels.tif"
        )
        with rasterio.open(d / "labels.tif") as src:
            truth = src.read(1)
        lookalike, true_oil = truth == LOOKALIKE, truth == OIL
        big = largest_area(lookalike)
        ys, xs = np.nonzero(big)
        out["lookalike_pixels"] = int(lookalike.sum())
        out["largest_lookalike"] = {
            "pixels": int(big.sum()),
            "bbox_rows_cols": [int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())]
            if big.any()
            else None,
        }
        out["tilings"] = {}
        for tile, overlap in tiles:
            predictor = Predictor(backend, tile, overlap, batch=batch)
            classes = d / f"classes_{tile}_{overlap}.tif"
            segment_scene(predictor, d / "scene.tif", classes, overwrite=True)
            with rasterio.open(classes) as src:
                oil = src.read(1) == OIL
            union = int((oil | true_oil).sum())
            out["tilings"][f"{tile}/{overlap}"] = {
                "lookalike_called_oil": round(float(oil[lookalike].mean()), 4) if lookalike.any() else None,
                "largest_lookalike_called_oil": round(float(oil[big].mean()), 4) if big.any() else None,
                "scene_oil_iou": round(int((oil & true_oil).sum()) / union, 4) if union else None,
            }
            print(f"{tile}/{overlap}: {out['tilings'][f'{tile}/{overlap}']}", flush=True)
    return out


def parse_tiles(text: str) -> list[tuple[int, int]]:
    pairs = []
    for part in text.split(","):
        tile, _, overlap = part.partition(":")
        pairs.append((int(tile), int(overlap or 0)))
    return pairs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model file (default: the bundled model)")
    ap.add_argument("--tiles", default="512:64,256:32,256:16", help="TILE:OVERLAP list")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=4, help="tiles per backend call")
    ap.add_argument("-o", "--out", type=Path)
    args = ap.parse_args(argv)
    from dakd_edge.inference import load

    loaded = load(args.model, backend="auto", device="cpu")
    try:
        doc = {
            "benchmark": "demo-tiling",
            **measure(loaded.backend, parse_tiles(args.tiles), args.size, args.seed, args.batch),
        }
    finally:
        loaded.close()
    write_report(doc, args.out, echo=True)


if __name__ == "__main__":
    main()
