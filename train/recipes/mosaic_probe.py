"""Can fine-tuning close the Sentinel-1 mosaic gap of the bundled model? (issue 16, whole scenes)

``python -m dakd_edge.train.recipes.mosaic_probe --run runs/mosaic-probe``

Fine-tunes of the installed bundled weights (version 2 when the recorded probes ran; since version
2.1 is installed, a new run starts from 2.1), with the bundled recipe's data, seed and validation
split, 1500 steps of four 256 px crops (the inference tile), lr 5e-4:

- ``tile256``: 80 % of the real crops are mosaics of real patches, validated on 256 px cuts of 3 x 3
  validation mosaics (what one 256 tile of a scene holds), not 512 px ones. Once the default tiling
  became 256/16 it won on the held-out pairs and became the bundled recipe's stage 2
  (:data:`~dakd_edge.train.recipes.bundled.FINE_TUNE`, version 2.1);
- ``gain``: the same, and every patch of a mosaic gets its own brightness factor
  ``exp(U(-0.5, 0.5))`` (:attr:`~dakd_edge.train.config.TrainConfig.mosaic_gain`): the test mosaics
  lose most on dark, nearly oil-free Sentinel-1 patches that beside brighter ones are called oil;
- ``calm``: instead, only the nearly slick-free patches of a mosaic are darkened, by
  ``exp(-U(0, 0.7))`` (:attr:`~dakd_edge.train.config.TrainConfig.mosaic_calm`): calm sea beside
  windier sea, labelled background, while patches with oil keep their level;
- ``window128``: ``tile256`` with CAFT attention per 128 x 128 input-pixel cell
  (:attr:`~dakd_edge.models.saross.SarossConfig.caft_window`) instead of over the whole tile: the
  channel affinities of a tile holding several sea states are then no longer one mixed statistic.
  The weights start from the bundled ones unchanged (the window adds no parameter);
- ``level`` / ``level10``: ``tile256`` with every crop shifted by one level offset ``U(-0.15, 0.15)``
  / ``U(-0.1, 0.1)`` (:attr:`~dakd_edge.train.config.TrainConfig.level_shift`, 6 / 4 dB on
  calibrated input): version 2.1 loses 10-23 mIoU on the validation pairs when their whole level
  moves by 0.1-0.15, as a real scene's sea does with wind and incidence angle. ``level10`` kept the
  validation score and gained 4-6 points at shifted levels, but is not bundled: on the synthetic
  whole scenes it calls low-wind areas oil (``docs/bundled-v2.md``); ``level`` lost 0.4 of the score;
- ``level10-syn30`` / ``-syn45`` / ``-syn60``: ``level10`` with 240 synthetic patches filling 30 / 45 /
  60 % of the slots instead of 120 and 20 %, so that look-alikes and low-wind areas labelled
  background are seen at shifted levels too. None brought the synthetic look-alikes called oil back
  to version 2.1's 8.6 % (18.9 / 14.0 / 36.7 %; ``docs/level-synthetic-probe.json``);
- ``regrain``: ``tile256`` with 30 % of the crops rendered with a coarser, stronger speckle and a
  steeper stretch (:attr:`~dakd_edge.train.config.TrainConfig.regrain`), labels unchanged: on two of
  the 12 real OSD images, whose rendering turns clean sea into near-black grains, version 2.1 calls
  16.6 % and 1.5 % of the sea oil, as hundreds of specks (``benchmarks/osd_scenes.py``);
- ``window128-recipe``: windowed CAFT trained from the start instead of fine-tuned: the bundled
  recipe (:data:`~dakd_edge.train.recipes.bundled.RECIPE`, same data, seed, schedule and checkpoint
  choice) from version 1's weights with ``caft_window=128``. Version 1 learnt on 128 px crops, where
  a 128 px window *is* the whole map, so only the window differs from the run that gave version 2.
  45 minutes on one CPU thread (with another run beside it);
- ``window128-tile256-recipe``: the same, but every step uses 256 px crops, the inference tile since
  version 2 (instead of 512 px ones for the last 700 steps), 80 % of the real ones mosaics, and the
  checkpoint is picked on 256 px cuts of the validation mosaics. 40 minutes, likewise.

Each run resumes from its own folder. The runs are then compared without the test subset by
``benchmarks/mosaic.py --split train --holdout bundled`` (per patch and tiled on the held-out pairs:
``--tiles 256:32`` for the first three, ``--tiles 256:16 --phase 0,64,128,192`` since the default
tiling became 256/16); the test figures are for the record only (``docs/bundled-v2.md``). About 25 minutes
per run on one CPU thread.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from dakd_edge.train.config import TrainConfig
from dakd_edge.train.recipes import bundled_init, fine_tune
from dakd_edge.train.recipes.bundled import FINE_TUNE, RECIPE, default_data, fetch_init
from dakd_edge.train.recipes.bundled import INIT_NAME as INIT_V1

INIT_NAME = "init-v2.safetensors"

TILE256 = replace(FINE_TUNE, init=INIT_NAME)  # became the recipe's stage 2 (version 2.1)
VARIANTS: dict[str, TrainConfig] = {
    "tile256": TILE256,
    "gain": replace(TILE256, mosaic_gain=0.5),
    "calm": replace(TILE256, mosaic_calm=0.7),
    "window128": replace(TILE256, model_cfg={"caft_window": 128}),
    "level": replace(TILE256, level_shift=0.15),
    "level10": replace(TILE256, level_shift=0.10),
    "level10-syn30": replace(TILE256, level_shift=0.10, synthetic=240, synthetic_ratio=0.30),
    "level10-syn45": replace(TILE256, level_shift=0.10, synthetic=240, synthetic_ratio=0.45),
    "level10-syn60": replace(TILE256, level_shift=0.10, synthetic=240, synthetic_ratio=0.60, mix=0.0),
    "regrain": replace(TILE256, regrain=0.3),
    "window128-recipe": replace(RECIPE, model_cfg={"caft_window": 128}, init=INIT_V1),
    "window128-tile256-recipe": replace(
        RECIPE,
        model_cfg={"caft_window": 128},
        init=INIT_V1,
        real_mosaic=0.8,
        final_steps=0,
        final_crop=0,
        final_batch=0,
        tile=256,
    ),
}


def run_variant(run: Path, name: str, data: Path, steps: int | None = None) -> dict[str, Any]:
    """Train one variant into ``run/name`` (resuming) and return its validation records.

    A fine-tune starts from the installed bundled weights (copied once to ``run``); a variant of the
    whole recipe from version 1's (from git history)."""
    variant = VARIANTS[name]
    init = fetch_init(run / INIT_V1) if variant.init == INIT_V1 else bundled_init(run / INIT_NAME)
    cfg = replace(variant, data=str(data), init=str(init))
    cfg = replace(cfg, steps=steps) if steps else cfg
    return {"model": str(run / name / "model.safetensors"), "validations": fine_tune(cfg, run / name)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--run", type=Path, default=Path("runs/mosaic-probe"))
    ap.add_argument("--variant", action="append", choices=sorted(VARIANTS), help="default: all")
    ap.add_argument("--steps", type=int, default=None, help=f"default {TILE256.steps}")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    result = {
        name: run_variant(args.run, name, args.data, args.steps) for name in args.variant or list(VARIANTS)
    }
    (args.run / "probe.json").write_text(json.dumps(result, indent=2) + "\n")
    models = " ".join(f"--model {r['model']}" for r in result.values())
    print(
        "compare on the held-out pairs: python benchmarks/mosaic.py --split train --holdout bundled "
        f"--tiles 256:16 --phase 0,64,128,192 --osd '' --model bundled {models}"
    )


if __name__ == "__main__":
    main()
