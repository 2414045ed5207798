"""The paper's ablations at CPU scale, several seeds, JSON + a markdown table (docs/ablations.md).

    nice -n 10 python benchmarks/ablations.py --data ../shared/data/sos -o ablations.json \
        --markdown docs/ablations.md --seeds 0,1,2 --steps 300
    python benchmarks/ablations.py --fast --data DIR -o out.json   # smoke settings (tests)

Group (b) with a teacher trained on exactly the student's real pairs (one fixed subset for all seeds):
    python benchmarks/ablations.py --data SOS --subset-seed 0 --write-subset /tmp/real80 -o x.json
    dakd-edge jointnet train --data /tmp/real80 --classes binary ...   # then jointnet generate
    python benchmarks/ablations.py --data SOS --subset-seed 0 --aug AUG --groups data --merge \
        -o docs/ablations.json --markdown docs/ablations.md

Groups (each a table of the paper; the *direction* is what a CPU-scale run can show):
  (a) skip: SAROSS-Net nano with CAFT skips vs no skip module vs 3x3-conv skips;
  (b) data: low-data regime (``--n-train`` real pairs) without augmentation vs + generated pairs with
      hard labels vs + generated pairs with soft labels (DAKD). Needs an augmented set from
      SAR-JointNet (``--aug DIR``, written by ``dakd-edge jointnet generate``); without one the group
      is skipped and the output says so;
  (c) model: SAROSS-Net nano vs the UNet and DeepLabV3+ baselines (ResNet-18 encoders at this scale).

Every run trains on ``--n-train`` images of the training split (validation carved from them picks the
checkpoint) and is evaluated on the test split (reported, never used for a choice). Mean and standard
deviation over seeds are reported per row. The real subset is drawn with the run's seed unless
``--subset-seed`` fixes it (then seeds vary initialisation, validation split and batches only).
``--merge`` keeps the groups and rows of an existing ``-o`` file that this run does not redo (each
group records the settings it was run with), so groups can be run at different times.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from dakd_edge.atomic import atomic_path

GROUPS: dict[str, dict[str, dict[str, Any]]] = {
    "skip": {
        "caft": {"model": "saross-nano", "model_cfg": {"skip": "caft"}},
        "none": {"model": "saross-nano", "model_cfg": {"skip": "none"}},
        "conv": {"model": "saross-nano", "model_cfg": {"skip": "conv"}},
    },
    "data": {
        "no-aug": {"model": "saross-nano", "aug": False},
        "gen-hard": {"model": "saross-nano", "aug": True, "labels": "hard"},
        "gen-soft (DAKD)": {"model": "saross-nano", "aug": True, "labels": "soft"},
    },
    "model": {
        "saross-nano": {"model": "saross-nano"},
        "saross-edge": {"model": "saross-edge"},  # the bundled model's architecture
        "unet-r18": {"model": "unet", "model_cfg": {"encoder_name": "resnet18"}},
        "deeplabv3plus-r18": {"model": "deeplabv3plus", "model_cfg": {"encoder_name": "resnet18"}},
    },
}
PAPER = {
    "skip": "OSD, MambaVision-B: CAFT 73.38 / none 71.99 / conv 70.95 mIoU",
    "data": "OSD: no aug 73.38, generated 1x/2x/4x 73.81/74.65/74.86 (soft labels); hard < soft",
    "model": "OSD: UNet 64.97, DeepLabv3+ 62.59, DAKD+SAROSS-Net 74.86 mIoU",
}

READING = "## Reading"  # markdown rewrites keep the hand-written section that starts here


class Subset:
    """The first ``n`` items of a seeded permutation of a dataset (same attributes)."""

    def __init__(self, ds: Any, n: int, seed: int) -> None:
        order = np.random.default_rng([seed, 4242]).permutation(len(ds))[: min(n, len(ds))]
        self.ds, self.idx = ds, sorted(order.tolist())
        self.num_classes, self.class_names = ds.num_classes, ds.class_names
        self.files = [ds.files[i] for i in self.idx] if hasattr(ds, "files") else None
        self._cache: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> Any:
        if i not in self._cache:
            self._cache[i] = self.ds[self.idx[i]]
        return self._cache[i]


def run_one(
    spec: dict[str, Any], base: Any, data: Path, kind: str, n_train: int, seed: int, aug: Path | None,
    test_limit: int | None, subset_seed: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    from dakd_edge.data import open_dataset
    from dakd_edge.evaluate import evaluate
    from dakd_edge.inference import load
    from dakd_edge.train.saross import train

    cfg = replace(
        base, model=spec["model"], model_cfg=dict(spec.get("model_cfg", {})), seed=seed,
        labels=spec.get("labels", "soft"), mix=base.mix if spec.get("aug") else 0.0,
    )  # fmt: skip
    pool = open_dataset(data, split="train", kind=kind, classes=cfg.classes)
    originals = Subset(pool, n_train, seed if subset_seed is None else subset_seed)
    augmented = open_dataset(aug, kind="augmented", classes=cfg.classes) if spec.get("aug") else None
    with tempfile.TemporaryDirectory(prefix="dakd-ablation-") as tmp:
        t0 = time.perf_counter()
        summary = train(cfg, tmp, progress=False, datasets=(originals, augmented))
        seconds = time.perf_counter() - t0
        predictor = load(summary["model"], backend="torch")
        r = evaluate(predictor, data, split="test", kind=kind, limit=test_limit)
        predictor.close()
    return {
        "seed": seed,
        "miou": r["miou"],
        "iou": r["iou"],
        "val_miou": summary["best"]["miou"],
        "train_seconds": seconds,
        "test_images": r["images"],
    }


def write_subset(data: Path, kind: str, n_train: int, seed: int, out: Path) -> int:
    """Symlink the real training pairs of ``Subset(train split, n_train, seed)`` into ``out``.

    The layout is ``out/train/<parent folder>/<file>`` (for SOS: the release layout, one folder per
    sensor), so ``dakd-edge jointnet train --data out`` sees exactly the student's real pairs.
    """
    from dakd_edge.data import open_dataset

    subset = Subset(open_dataset(data, split="train", kind=kind, classes="binary"), n_train, seed)
    if subset.files is None:
        raise SystemExit("this dataset does not list its files; cannot write the subset")
    for pair in subset.files:
        for f in pair:
            f = Path(f).resolve()
            link = out / "train" / f.parent.name / f.name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(f)
    return len(subset)


def _mean_std(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return float("nan"), float("nan")
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def _settings_line(s: dict[str, Any]) -> str:
    subset = "drawn per seed" if s.get("subset_seed") is None else f"fixed by seed {s['subset_seed']}"
    aug = f", augmented set `{s['aug']}`" if s.get("aug") else ""
    if s.get("aug_generator"):
        g = s["aug_generator"]
        aug += (
            f" ({g['samples']} generated pairs of {g.get('size')} px, DDIM {g.get('ddim_steps')} steps, "
            f"teacher step {g.get('step')}, b = {g['balancing_factor']:.3f})"
        )
    return (
        f"Data: `{s['data']}` ({s['n_train']} training images, {subset}; validation carved from them; "
        f"test split for the numbers){aug}, {s['steps']} steps of batch {s['batch']} at {s['crop']} px, "
        f"seeds {s['seeds']}. Run by `benchmarks/ablations.py` on {s['when']}."
    )


def markdown(result: dict[str, Any]) -> str:
    per_group = result.get("group_settings", {})
    shared = len({json.dumps(v, sort_keys=True) for v in per_group.values()}) <= 1
    lines = ["# Ablations at CPU scale", ""]
    if shared:
        lines += [_settings_line(result["settings"]), ""]
    lines += ["mIoU and oil IoU in % (mean ± std over seeds).", ""]
    for group, rows in result["groups"].items():
        lines += [f"## ({group})", ""]
        if not shared and group in per_group:
            lines += [_settings_line(per_group[group]), ""]
        lines += [f"Paper, for direction: {PAPER[group]}.", ""]
        if isinstance(rows, str):
            lines += [rows, ""]
            continue
        lines += ["| variant | test mIoU | oil IoU | val mIoU | train s/run |", "|---|---|---|---|---|"]
        for name, row in rows.items():
            oil_std = _mean_std([r["iou"][1] for r in row["runs"]])[1]
            lines.append(
                f"| {name} | {100 * row['miou_mean']:.2f} ± {100 * row['miou_std']:.2f} | "
                f"{100 * row['oil_iou_mean']:.2f} ± {100 * oil_std:.2f} | {100 * row['val_miou_mean']:.2f} | "
                f"{row['seconds_mean']:.0f} |"
            )
        lines.append("")
    return "\n".join(lines)


def _generator_info(aug: Path | None) -> dict[str, Any] | None:
    """How the augmented set was made (its manifest's generator entry, minus the model config)."""
    if aug is None or not (aug / "manifest.json").is_file():
        return None
    from dakd_edge.data.augmented import read_manifest

    manifest = read_manifest(aug)
    info = {k: v for k, v in manifest.get("generator", {}).items() if k != "model"}
    return {
        "samples": len(manifest.get("samples", [])),
        "balancing_factor": manifest["balancing_factor"],
        **info,
    }


def _comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings that must agree for rows of one table (all but the date and thread count)."""
    return {k: v for k, v in settings.items() if k not in ("when", "threads", "aug_generator")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="dataset root with train/ and test/ splits")
    ap.add_argument("--kind", default="auto")
    ap.add_argument("--aug", type=Path, help="augmented set from SAR-JointNet (group b)")
    ap.add_argument("--groups", default="skip,data,model")
    ap.add_argument("--variants", help="run only these rows of the groups (comma-separated names)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--n-train", type=int, default=80, help="real training pairs (low-data regime)")
    ap.add_argument("--subset-seed", type=int, help="one real subset for every seed (default: per seed)")
    ap.add_argument("--write-subset", type=Path, help="symlink the real subset here (for the teacher), exit")
    ap.add_argument("--merge", action="store_true", help="keep groups/rows of -o that this run does not redo")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--test-limit", type=int, help="evaluate on the first N test images only")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fast", action="store_true", help="smoke settings: 1 seed, 2 steps, 32 px, 8 images")
    ap.add_argument("-o", "--output", type=Path, required=True, help="JSON output")
    ap.add_argument("--markdown", type=Path, help="also write the markdown table here")
    args = ap.parse_args(argv)

    import torch

    from dakd_edge.train.saross import TrainConfig

    torch.set_num_threads(args.threads)
    if args.fast:
        args.seeds, args.steps, args.crop, args.batch, args.n_train = "0", 2, 32, 2, 8
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if args.write_subset is not None:
        seed = args.subset_seed if args.subset_seed is not None else seeds[0]
        n = write_subset(args.data, args.kind, args.n_train, seed, args.write_subset)
        print(f"{n} real pairs (subset seed {seed}) linked under {args.write_subset / 'train'}")
        return 0
    variants = {v.strip() for v in args.variants.split(",")} if args.variants else None
    base = TrainConfig(
        crop=args.crop, batch=args.batch, steps=args.steps, warmup=max(1, args.steps // 20), lr=2e-3,
        ema_decay=0.99 if args.steps >= 100 else 0.0, val_fraction=0.1, val_every=max(1, args.steps // 5),
        ckpt_every=10**9, log_every=10**9, classes="binary", mix=0.5, device="cpu",
    )  # fmt: skip
    result: dict[str, Any] = {
        "settings": {
            "data": str(args.data),
            "aug": str(args.aug) if args.aug else None,
            "aug_generator": _generator_info(args.aug),
            "n_train": args.n_train,
            "subset_seed": args.subset_seed,
            "steps": args.steps,
            "batch": args.batch,
            "crop": args.crop,
            "seeds": seeds,
            "fast": args.fast,
            "threads": args.threads,
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        },  # fmt: skip
        "paper": PAPER,
        "groups": {},
        "group_settings": {},
    }
    if args.merge and args.output.exists():
        old = json.loads(args.output.read_text())
        for group, rows in old.get("groups", {}).items():
            result["groups"][group] = rows
            result["group_settings"][group] = old.get("group_settings", {}).get(group, old["settings"])
    for group in [g.strip() for g in args.groups.split(",") if g.strip()]:
        if group not in GROUPS:
            print(f"unknown group {group!r}; choose from {', '.join(GROUPS)}", file=sys.stderr)
            return 2
        if group == "data" and args.aug is None:
            result["groups"][group] = (
                "Not run: no augmented set from SAR-JointNet was available (pass --aug DIR written by "
                "`dakd-edge jointnet generate`)."
            )
            result["group_settings"][group] = result["settings"]
            continue
        previous = result["groups"].get(group)
        rows = dict(previous) if isinstance(previous, dict) and variants is not None else {}
        if rows and _comparable(result["group_settings"][group]) != _comparable(result["settings"]):
            print(f"[{group}] other settings than the kept rows: rerun the whole group", file=sys.stderr)
            return 2
        for name, spec in GROUPS[group].items():
            if variants is not None and name not in variants:
                continue
            runs = []
            for seed in seeds:
                r = run_one(
                    spec, base, args.data, args.kind, args.n_train, seed, args.aug, args.test_limit,
                    args.subset_seed,
                )  # fmt: skip
                print(f"[{group}] {name} seed {seed}: test mIoU {100 * r['miou']:.2f}", file=sys.stderr)
                runs.append(r)
            m, sd = _mean_std([r["miou"] for r in runs])
            rows[name] = {
                "runs": runs, "miou_mean": m, "miou_std": sd,
                "oil_iou_mean": _mean_std([r["iou"][1] for r in runs])[0],
                "val_miou_mean": _mean_std([r["val_miou"] for r in runs])[0],
                "seconds_mean": _mean_std([r["train_seconds"] for r in runs])[0],
            }  # fmt: skip
        kept = sorted(set(rows) - {n for n in GROUPS[group] if variants is None or n in variants})
        result["groups"][group] = {n: rows[n] for n in GROUPS[group] if n in rows}
        settings = dict(result["settings"])
        if kept:  # say when the kept rows ran, not only the new ones
            old_when = result["group_settings"][group].get("when", "?")
            settings["when"] = (
                f"{old_when}; rows {', '.join(sorted(set(rows) - set(kept)))}: {settings['when']}"
            )
        result["group_settings"][group] = settings
    with atomic_path(args.output, overwrite=True) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    if args.markdown:
        text = markdown(result)
        if args.markdown.exists():  # hand-written notes from "## Reading" on are kept
            notes = args.markdown.read_text().partition(READING)
            text = text.rstrip("\n") + "\n\n" + READING + notes[2] if notes[1] else text
        with atomic_path(args.markdown, overwrite=True) as tmp:
            tmp.write_text(text)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
