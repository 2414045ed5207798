"""What the trainers refuse before they touch a run folder: an existing run, bad settings, runs with
nothing to do; and that they name the checkpoint a failed run leaves behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dakd_edge.errors import InputError, ModelFileError, TrainingError
from dakd_edge.train.common import load_checkpoint
from dakd_edge.train.config import JointNetTrainConfig, TrainConfig
from dakd_edge.train.jointnet import SyntheticPatches, train_jointnet
from dakd_edge.train.saross import split_indices, train
from tests.train.tiny import JOINT_CROP, TINY, BlobDataset, jointnet_config, one_thread  # noqa: F401


def _cfg(**kw) -> TrainConfig:
    base = dict(model=TINY, model_cfg={"width": 4}, crop=32, batch=2, steps=2, warmup=0, val_every=2)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def blobs() -> tuple[BlobDataset, None]:
    return BlobDataset(4, 32), None


@pytest.fixture(scope="module")
def patches() -> SyntheticPatches:
    return SyntheticPatches(4, JOINT_CROP, num_classes=2, seed=3).render_all()


def test_existing_run_is_refused_and_left_as_it_was(tmp_path: Path, blobs) -> None:
    out = tmp_path / "run"
    train(_cfg(), out, progress=False, datasets=blobs)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(TrainingError, match=r"already holds a run.*--overwrite.*--resume"):
        train(_cfg(lr=0.5), out, progress=False, datasets=blobs)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # stopped before its first checkpoint: no last.pt, so --resume is no advice
    (out / "last.pt").unlink()
    with pytest.raises(TrainingError, match=r"--overwrite to replace it \(it has no checkpoint to resume\)"):
        train(_cfg(lr=0.5), out, progress=False, datasets=blobs)


def test_overwrite_removes_the_old_runs_files(tmp_path: Path, blobs) -> None:
    out = tmp_path / "run"
    train(_cfg(), out, progress=False, datasets=blobs)
    (out / "stage1.pt").write_bytes(b"stale")
    train(_cfg(lr=0.5, val_fraction=0.0), out, progress=False, datasets=blobs, overwrite=True)
    assert not (out / "best.safetensors").exists() and not (out / "stage1.pt").exists()
    assert '"lr": 0.5' in (out / "config.json").read_text()
    with pytest.raises(TrainingError, match="cannot be combined with --overwrite"):
        train(_cfg(), out, resume=out / "last.pt", progress=False, datasets=blobs, overwrite=True)


def test_refused_settings_create_no_folder(tmp_path: Path, blobs) -> None:
    """The dataset's class count is known only at set-up: still before the folder is made."""
    with pytest.raises(InputError, match=r"--class-weights has 3 value\(s\), the dataset has 2 classes"):
        train(_cfg(class_weights=(1, 2, 3)), tmp_path / "a", progress=False, datasets=blobs)
    with pytest.raises(InputError, match=r"--model-cfg garbage=1 does not fit model"):
        train(_cfg(model_cfg={"garbage": 1}), tmp_path / "a", progress=False, datasets=blobs)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"val_fraction": 1.0}, "val_fraction must be in"),
        ({"val_fraction": -0.2}, "val_fraction must be in"),
        ({"lr": float("nan")}, "lr must be"),
        ({"lr": -1.0}, "lr must be"),
        ({"temperature": 0.0}, "temperature must be"),
        ({"ce_weight": -1.0}, "ce_weight must be"),
        ({"ema_decay": 1.0}, "ema_decay must be in"),
        ({"ema_decay": -0.5}, "ema_decay must be in"),
        ({"workers": -1}, "workers must be >= 0"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"val_every": 0}, "val_every must be >= 1"),
        ({"log_every": 0}, "log_every must be >= 1"),
        ({"ckpt_every": 0}, "ckpt_every must be >= 1"),
        ({"synthetic": -3}, "synthetic must be >= 0"),
        ({"weight_decay": -1.0}, "weight_decay must be"),
        ({"warmup": -5}, "warmup must be >= 0"),
        ({"class_weights": (-1.0, 2.0)}, "class_weights must be"),
        ({"ce_weight": 0.0, "dice_weight": 0.0}, "every loss weight is 0"),
    ],
)
def test_train_config_refuses(kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        _cfg(**kw)


def test_validation_share_leaves_training_images() -> None:
    train_idx, val_idx = split_indices(3, 0.99, 0)
    assert len(train_idx) == 1 and len(val_idx) == 2


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"stage_steps": (0, 0, 0)}, "nothing to train"),
        ({"crop": 7}, "crop must be >= 8"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"lr": float("nan")}, "lr must be"),
        ({"lr": -1.0}, "lr must be"),
        ({"ema_decay": 1.5}, "ema_decay must be in"),
        ({"workers": -1}, "workers must be >= 0"),
        ({"log_every": 0}, "log_every must be >= 1"),
        ({"ckpt_every": 0}, "ckpt_every must be >= 1"),
        ({"sample_every": 1, "sample_steps": 0}, "sample_steps must be >= 1"),
        ({"balancing_factor": 0.0}, "balancing_factor must be"),
        ({"balancing_factor": -2.0}, "balancing_factor must be"),
        ({"balancing_factor": float("nan")}, "balancing_factor must be"),
    ],
)
def test_jointnet_config_refuses(tmp_path: Path, kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        jointnet_config(tmp_path, **kw)
    assert isinstance(jointnet_config(tmp_path), JointNetTrainConfig)


def test_jointnet_refuses_runs_with_nothing_to_do(tmp_path: Path, patches) -> None:
    cfg = jointnet_config(tmp_path / "a", stage_steps=(1, 1, 0), balancing_factor=0.5)
    last = train_jointnet(cfg, patches, progress=False)
    assert last == tmp_path / "a" / "last.pt" and load_checkpoint(last)["step"] == 2
    with pytest.raises(TrainingError, match="nothing to do: the checkpoint is at step 2"):
        train_jointnet(cfg, patches, resume=last, progress=False)
    with pytest.raises(TrainingError, match="--stop-after must be >= 1"):
        train_jointnet(jointnet_config(tmp_path / "b"), patches, stop_after=0, progress=False)
    assert not (tmp_path / "b").exists()


def test_jointnet_nan_after_a_stage_names_the_stage_checkpoint(tmp_path: Path, patches) -> None:
    """A stage switch writes stageN.pt: a later non-finite loss must point there, not say 'none'."""

    class PoisonAfterFirstBatch:
        num_classes, class_names = 2, ["background", "oil"]
        served = 0

        def __len__(self) -> int:
            return len(patches)

        def __getitem__(self, i: int):
            self.served += 1
            s = patches[i]
            return s if self.served <= 2 else {**s, "image": np.full_like(s["image"], np.nan)}

    cfg = jointnet_config(tmp_path, stage_steps=(1, 1, 0), ckpt_every=1000, balancing_factor=0.5)
    with pytest.raises(TrainingError, match=r"at step 2; .*last good checkpoint kept: .*stage1\.pt"):
        train_jointnet(cfg, PoisonAfterFirstBatch(), progress=False)


def test_non_checkpoint_file_is_named_without_torch_advice(tmp_path: Path) -> None:
    bad = tmp_path / "g.pt"
    bad.write_text("garbage\n")
    with pytest.raises(ModelFileError, match="not a PyTorch checkpoint, or corrupt") as e:
        load_checkpoint(bad)
    assert "weights_only" not in str(e.value)
