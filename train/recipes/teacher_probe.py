"""Does a SAR-JointNet teacher trained within a CPU budget help the bundled model? (issue 16, item 3)

``python -m dakd_edge.train.recipes.teacher_probe --run runs/teacher-probe``

1. Train a ``small`` SAR-JointNet (3 stages) on all SOS training pairs, oil vs background, 128 px crops.
2. Generate an augmented set with DDIM (images + soft-label logits).
3. Fine-tune the bundled model twice from its installed weights with the same seed, steps and
   validation split (the bundled recipe's 10 %): once on original + synthetic data (control), once with
   the generated set added (DAKD: CE on the teacher's argmax + KD on its logits + soft Dice).
4. Write ``RUN/probe.json``: the best validation score of each fine-tune (mean of per-patch and 3 x 3
   mosaic mIoU, the bundled recipe's checkpoint criterion). The test subset is never touched.

Each stage resumes from its own folder, so a stopped probe continues where it was. One CPU thread.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from dakd_edge.train.recipes import bundled_init, fine_tune
from dakd_edge.train.recipes.bundled import RECIPE, default_data


def _teacher(run: Path, data: Path, stage_steps: tuple[int, int, int]) -> Path:
    from dakd_edge.train.jointnet import JointNetTrainConfig, train_jointnet

    out = run / "teacher"
    final = out / "stage3.pt"
    if final.is_file():
        return final
    cfg = JointNetTrainConfig(
        out=str(out), data=str(data), data_kind="sos", classes="binary", preset="small", crop=128,
        stage_steps=stage_steps, batch_size=4, warmup=50, ema_decay=0.999, amp=False, seed=RECIPE.seed,
        device="cpu", ckpt_every=50, sample_every=0, log_every=25,
    )  # fmt: skip
    last = out / "last.pt"
    resume = last if last.is_file() else None  # without one, leftovers of a run stopped early go
    train_jointnet(cfg, resume=resume, progress=False, overwrite=resume is None)
    return final


def _generate(run: Path, ckpt: Path, n: int, steps: int) -> Path:
    from dakd_edge.train.generate import generate_augmented

    out = run / "generated"
    generate_augmented(ckpt, out, n=n, steps=steps, batch=8, seed=RECIPE.seed, device="cpu", progress=False)
    return out


def _finetune(run: Path, name: str, data: Path, steps: int, aug: Path | None) -> dict[str, Any]:
    init = bundled_init(run / "init.safetensors")
    cfg = replace(
        RECIPE, data=str(data), init=str(init), steps=steps, warmup=20, lr=2e-4, final_steps=0,
        val_every=max(steps // 3, 1), ckpt_every=25, aug=str(aug) if aug else None, mix=0.25, labels="soft",
    )  # fmt: skip
    return {"steps": steps, "aug": str(aug) if aug else None, "validations": fine_tune(cfg, run / name)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--run", type=Path, default=Path("runs/teacher-probe"))
    ap.add_argument("--stage-steps", default="300,200,100", help="JointNet steps of stages 1,2,3")
    # 96 pairs: DDIM on one CPU core costs ~20 s per pair at 50 steps (the fine-tune draws ~300 of them).
    ap.add_argument("--generate", type=int, default=96, help="generated pairs (128 px)")
    ap.add_argument("--ddim-steps", type=int, default=50)
    ap.add_argument("--finetune-steps", type=int, default=300)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args.run.mkdir(parents=True, exist_ok=True)
    stage_steps = tuple(int(s) for s in args.stage_steps.split(","))
    ckpt = _teacher(args.run, args.data, stage_steps)  # type: ignore[arg-type]
    generated = _generate(args.run, ckpt, args.generate, args.ddim_steps)
    result = {
        "teacher": {"preset": "small", "crop": 128, "stage_steps": stage_steps, "checkpoint": str(ckpt)},
        "generated": {"n": args.generate, "ddim_steps": args.ddim_steps, "folder": str(generated)},
        "control": _finetune(args.run, "control", args.data, args.finetune_steps, None),
        "dakd": _finetune(args.run, "dakd", args.data, args.finetune_steps, generated),
    }
    (args.run / "probe.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k]["validations"][-3:] for k in ("control", "dakd")}, indent=1))


if __name__ == "__main__":
    main()
