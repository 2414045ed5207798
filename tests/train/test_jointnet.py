"""SAR-JointNet training: learning, stage-2 freezing, bit-exact resume, NaN guard, DDP (gloo), CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dakd_edge.cli.app import cli
from dakd_edge.errors import TrainingError
from dakd_edge.train.common import load_checkpoint, read_jsonl
from dakd_edge.train.jointnet import (
    CropBatches,
    JointNetTrainConfig,
    SyntheticPatches,
    set_stage_trainable,
    train_jointnet,
)
from tests.train.tiny import JOINT_CROP, jointnet_config, one_thread  # noqa: F401 (autouse fixture)

CROP = JOINT_CROP


@pytest.fixture(scope="module")
def patches() -> SyntheticPatches:
    ds = SyntheticPatches(12, CROP, num_classes=2, seed=3)
    for i in range(len(ds)):  # render once for every test of the module
        ds[i]
    return ds


def _cfg(out: Path, **kw) -> JointNetTrainConfig:
    base = dict(lr_stage3=5e-4, log_every=1, ckpt_every=1000, sample_every=0, seed=7)
    return jointnet_config(out, **{**base, **kw})


def test_step_batches_are_pure_functions_of_step(patches: SyntheticPatches) -> None:
    a = CropBatches(patches, 3, CROP, seed=1, rank=0)
    b = CropBatches(patches, 3, CROP, seed=1, rank=0)
    assert torch.equal(a[5]["image"], b[5]["image"]) and torch.equal(a[5]["mask"], b[5]["mask"])
    assert not torch.equal(a[5]["image"], a[6]["image"])
    assert not torch.equal(a[5]["image"], CropBatches(patches, 3, CROP, seed=1, rank=1)[5]["image"])
    assert a[0]["image"].shape == (3, 1, CROP, CROP) and a[0]["mask"].dtype == torch.int64


def test_loss_decreases_in_stage1_and_ce_in_stage2(tmp_path: Path, patches: SyntheticPatches) -> None:
    cfg = _cfg(tmp_path, stage_steps=(30, 30, 0), batch_size=6, lr=3e-3)
    train_jointnet(cfg, patches, progress=False)
    log = read_jsonl(tmp_path / "log.jsonl")
    s1 = [r["loss_x"] for r in log if r["stage"] == 1]
    ce = [r["loss_ce"] for r in log if r["stage"] == 2]
    assert len(s1) == 30 and len(ce) == 30
    print("stage 1 loss_x first/last:", np.mean(s1[:6]), np.mean(s1[-6:]))
    print("stage 2 loss_ce first/last:", np.mean(ce[:6]), np.mean(ce[-6:]))
    assert np.mean(s1[-6:]) < 0.7 * np.mean(s1[:6])
    assert np.mean(ce[-6:]) < 0.8 * np.mean(ce[:6])
    assert 0.0 < cfg.balancing_factor < 1.0  # measured on the data before training


def test_stage2_trains_exactly_label_net_and_links(tmp_path: Path, patches: SyntheticPatches) -> None:
    cfg = _cfg(tmp_path, stage_steps=(2, 3, 0))
    train_jointnet(cfg, patches, progress=False)
    before = load_checkpoint(tmp_path / "stage1.pt")["model"]  # written at the stage boundary
    after_ck = load_checkpoint(tmp_path / "stage2.pt")
    assert before is not None and after_ck["extra"]["stage"] == 2
    after = after_ck["model"]
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    frozen = {k for k in after if k.startswith(("sar.", "time_embedding."))}
    assert frozen and not (changed & frozen), sorted(changed & frozen)[:3]
    assert any(k.startswith("label.") for k in changed)
    assert any(k.startswith("links.y2x") for k in changed) and any(k.startswith("links.x2y") for k in changed)
    # By name: requires_grad follows the stage exactly.
    from dakd_edge.models.jointnet import SARJointNet, jointnet_config

    m = SARJointNet(jointnet_config("tiny", num_classes=2))
    set_stage_trainable(m, 2)
    for name, p in m.named_parameters():
        assert p.requires_grad == name.startswith(("label.", "links.")), name
    set_stage_trainable(m, 1)
    for name, p in m.named_parameters():
        assert p.requires_grad == name.startswith(("sar.", "time_embedding.")), name
    set_stage_trainable(m, 3)
    assert all(p.requires_grad for p in m.parameters())


def test_train_step_is_eq2_eq5_eq6_eq7_by_hand(tmp_path: Path, patches: SyntheticPatches) -> None:
    """One stage-2 step against the equations in float64: x = 2u - 1, y_b = b (2 onehot - 1) (Eq. 1),
    x_t = sqrt(abar_t) x + sqrt(1 - abar_t) e1, y_t likewise (Eq. 2) with the squared-cosine abar,
    L = mean (x - x0_hat)^2 (Eq. 5, x0 target) + CE(l_hat, y) over labelled pixels (Eq. 6, 7)."""
    import math

    from dakd_edge.models.jointnet import balance_labels
    from dakd_edge.train.jointnet import JointNetTrainer

    b = 0.37
    tr = JointNetTrainer(_cfg(tmp_path, balancing_factor=b), patches, progress=False)
    tr.setup()
    tr._enter_stage(2, fresh=True)
    seen: dict = {}

    class Spy(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x_t, t, y_t=None):
            out = self.net(x_t, t, y_t)
            seen.update(
                x_t=x_t.double(), t=t, y_t=y_t.double(), x_hat=out[0].double(), logits=out[1].double()
            )
            return out

    tr.net = Spy(tr.net)
    g = torch.Generator().manual_seed(0)
    u, mask = torch.rand(2, 1, CROP, CROP, generator=g), torch.randint(0, 2, (2, CROP, CROP), generator=g)
    mask[0, 0, :3] = 255
    torch.manual_seed(11)
    losses = tr.train_step(0, {"image": u, "mask": mask})
    # The same draws, in the trainer's order (timesteps, image noise, label noise).
    torch.manual_seed(11)
    t = torch.randint(0, 1000, (2,))
    e1 = torch.randn(2, 1, CROP, CROP).double()
    e2 = torch.randn_like(balance_labels(mask, 2, b)).double()  # randn_like: same strides, same draws
    f = lambda s: math.cos((s / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    abar = torch.tensor(np.cumprod([1 - min(1 - f(i + 1) / f(i), 0.999) for i in range(1000)]))[t]
    a, s = abar.sqrt().view(2, 1, 1, 1), (1 - abar).sqrt().view(2, 1, 1, 1)
    x0 = 2 * u.double() - 1
    valid = mask != 255
    onehot = torch.stack([(mask == k) & valid for k in range(2)], 1).double()
    y_b = b * (2 * onehot - 1)
    assert torch.equal(seen["t"], t)
    torch.testing.assert_close(seen["x_t"], a * x0 + s * e1, rtol=0, atol=1e-5)
    torch.testing.assert_close(seen["y_t"], a * y_b + s * e2, rtol=0, atol=1e-5)
    loss_x = ((seen["x_hat"] - x0) ** 2).mean().item()
    logp = seen["logits"].log_softmax(1).gather(1, mask.clamp(max=1)[:, None])[:, 0]
    loss_ce = -logp[valid].mean().item()
    assert losses["loss_x"] == pytest.approx(loss_x, rel=1e-5)
    assert losses["loss_ce"] == pytest.approx(loss_ce, rel=1e-5)
    assert losses["loss"] == pytest.approx(loss_x + loss_ce, rel=1e-5)


def test_resume_is_bit_for_bit(tmp_path: Path, patches: SyntheticPatches) -> None:
    straight = train_jointnet(_cfg(tmp_path / "a"), patches, progress=False)
    half = train_jointnet(_cfg(tmp_path / "b"), patches, stop_after=3, progress=False)
    assert load_checkpoint(half)["step"] == 3
    resumed = train_jointnet(_cfg(tmp_path / "b"), patches, resume=half, progress=False)  # crosses stage 3
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert a["step"] == b["step"] == 6
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["ema"]["shadow"]:
        assert torch.equal(a["ema"]["shadow"][k], b["ema"]["shadow"][k]), k
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)
    la, lb = read_jsonl(tmp_path / "a" / "log.jsonl"), read_jsonl(tmp_path / "b" / "log.jsonl")
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]


def test_resume_refuses_changed_settings(tmp_path: Path, patches: SyntheticPatches) -> None:
    half = train_jointnet(_cfg(tmp_path), patches, stop_after=1, progress=False)
    with pytest.raises(TrainingError, match="seed differs"):
        train_jointnet(_cfg(tmp_path, seed=8), patches, resume=half, progress=False)


class _PoisonAfter:
    """Good samples for the first ``good`` reads, then NaN images (num_workers=0: one process)."""

    def __init__(self, base: SyntheticPatches, good: int) -> None:
        self.base, self.good, self.reads = base, good, 0
        self.num_classes, self.class_names = base.num_classes, base.class_names

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        self.reads += 1
        s = dict(self.base[i])
        if self.reads > self.good:
            s["image"] = np.full_like(s["image"], np.nan)
        return s


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path, patches: SyntheticPatches) -> None:
    data = _PoisonAfter(patches, good=3 * 2)  # batch 2: steps 1-3 good, step 4 poisoned
    cfg = _cfg(tmp_path, ckpt_every=1, balancing_factor=0.5)
    with pytest.raises(TrainingError, match=r"non-finite loss \(nan\) at step 4.*last good checkpoint kept"):
        train_jointnet(cfg, data, progress=False)
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["step"] == 3
    assert all(torch.isfinite(v).all() for v in ck["model"].values())


def test_cli_balance_synthetic() -> None:
    res = CliRunner().invoke(
        cli, ["jointnet", "balance", "--synthetic", "3", "--size", "32", "--num-classes", "2"]
    )
    assert res.exit_code == 0, res.output
    b = float(res.output.strip().splitlines()[-1].split("=")[1])
    assert 0.2 < b < 1.0


def test_cli_train_requires_data(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["jointnet", "train", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "pass --data DIR or --synthetic N" in str(res.exception)


@pytest.mark.slow
def test_torchrun_ddp_gloo_two_processes(tmp_path: Path) -> None:
    """The real CLI under torchrun: 2 CPU processes, gloo, a few steps of every stage."""
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "dakd_edge",
        "jointnet",
        "train",
        "--synthetic",
        "4",
        "--synthetic-classes",
        "2",
        "--preset",
        "tiny",
        "--crop",
        str(CROP),
        "--batch-size",
        "2",
        "--stage-steps",
        "1,1,1",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--no-progress",
        "--sample-every",
        "0",
        "--log-every",
        "1",
        "--warmup",
        "0",
        "--seed",
        "3",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ck = load_checkpoint(out / "last.pt")
    assert ck["step"] == 3 and ck["extra"]["world_size"] == 2 and ck["extra"]["stage"] == 3
    sums = ck["extra"]["replica_checksums"]  # gathered from both ranks: DDP kept the replicas identical
    assert len(sums) == 2 and sums[0] == sums[1]
    log = read_jsonl(out / "log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3]  # one writer (rank 0), losses averaged over ranks
    assert all(np.isfinite(r["loss"]) for r in log)


def test_cli_balance_on_real_data_matches_spatial_rms(shared_data: Path) -> None:
    """b on the OSD test subset through the real loader; P(y_n) = HW for any mask, so b = RMS(2u - 1)."""
    from dakd_edge.data import open_dataset

    res = CliRunner().invoke(
        cli,
        [
            "jointnet",
            "balance",
            "--data",
            str(shared_data / "osd"),
            "--split",
            "test",
            "--limit",
            "4",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    ds = open_dataset(shared_data / "osd", split="test")
    rms = np.sqrt(np.mean([((2.0 * ds[i]["image"].astype(np.float64) - 1) ** 2).mean() for i in range(4)]))
    assert out["images"] == 4 and len(ds) == 12
    assert out["b"] == pytest.approx(rms, rel=1e-9)
    assert 0.3 < out["b"] < 0.7  # paper: 0.528 on the OSD training split


def test_training_data_is_described_before_training(tmp_path: Path, capsys) -> None:
    """jointnet train printed no data summary (train does): a set with no oil in its masks trained a
    teacher without a word. The summary is printed and the no-oil case warns."""
    from dakd_edge.errors import Notice
    from dakd_edge.train.jointnet import JointNetTrainer
    from tests.train.tiny import write_folder

    sea = np.full((CROP, CROP), 180, np.uint8)
    oil = sea.copy()
    oil[4:12, 4:12] = 40
    write_folder(tmp_path / "ds", [(oil, (oil == 40).astype(np.uint8)), (sea, np.zeros_like(sea))])
    JointNetTrainer(_cfg(tmp_path / "run", data=str(tmp_path / "ds"), synthetic=0))
    out = capsys.readouterr().out
    assert "2 pairs" in out and "classes (pixel share of 2 masks): 0 background" in out
    write_folder(tmp_path / "sea", [(sea, np.zeros_like(sea))])
    with pytest.warns(Notice, match="no oil in the data"):
        JointNetTrainer(_cfg(tmp_path / "run2", data=str(tmp_path / "sea"), synthetic=0))


def test_cli_resume_keeps_the_run_s_settings_and_refuses_others(tmp_path: Path) -> None:
    """A resume passed every operational default over the saved run (--ckpt-every 3 became 1000, --device
    cpu became auto) and silently dropped --lr: only the operational options given apply now."""
    out = tmp_path / "run"
    base = ["jointnet", "train", "--synthetic", "4", "--synthetic-classes", "2", "--preset", "tiny",
            "--crop", str(CROP), "--batch-size", "2", "--warmup", "0", "--sample-every", "0", "-q"]  # fmt: skip
    res = CliRunner().invoke(
        cli,
        [
            *base,
            "--stage-steps",
            "2,2,2",
            "--ckpt-every",
            "3",
            "--log-every",
            "1",
            "--device",
            "cpu",
            "--stop-after",
            "3",
            "--out",
            str(out),
        ],  # fmt: skip
    )
    assert res.exit_code == 0, res.output
    resume = ["jointnet", "train", "--resume", str(out / "last.pt"), "--out", str(out)]
    res = CliRunner().invoke(cli, [*resume, "--lr", "1e-2", "--stage-steps", "9,9,9", "--b", "0.5"])
    assert res.exit_code != 0 and "--stage-steps, --lr, --b: a resumed run keeps" in str(res.exception)
    res = CliRunner().invoke(cli, [*resume, "--log-every", "2", "-q"])
    assert res.exit_code == 0, res.output
    saved = load_checkpoint(out / "last.pt")["config"]
    assert (saved["ckpt_every"], saved["log_every"], saved["device"]) == (3, 2, "cpu")
    assert [r["step"] for r in read_jsonl(out / "log.jsonl")] == [1, 2, 3, 4, 6]


def test_a_stage_2_of_no_steps_still_starts_label_net_from_sar_net(
    tmp_path: Path, patches: SyntheticPatches
) -> None:
    """With --stage-steps 2,0,1 the copy of SAR-Net into Label-Net (done on entering stage 2) never ran:
    stage 3 fine-tuned a random Label-Net."""
    straight = load_checkpoint(
        train_jointnet(_cfg(tmp_path / "a", stage_steps=(2, 0, 0)), patches, progress=False)
    )
    skipped = train_jointnet(
        _cfg(tmp_path / "b", stage_steps=(2, 0, 1), lr_stage3=1e-12), patches, progress=False
    )
    model = load_checkpoint(skipped)["model"]
    sar = {k.removeprefix("sar."): v for k, v in straight["model"].items() if k.startswith("sar.")}
    label = {k.removeprefix("label."): v for k, v in model.items() if k.startswith("label.")}
    shared = [k for k in label if k in sar and label[k].shape == sar[k].shape and "conv_in" not in k
              and "conv_out" not in k]  # fmt: skip
    assert len(shared) > 10
    assert max(float((label[k] - sar[k]).abs().max()) for k in shared) < 1e-4


def test_room_check_counts_the_stage_checkpoints(tmp_path: Path) -> None:
    """A run keeps stage1.pt, stage2.pt, stage3.pt beside last.pt; the room check counted last.pt alone."""
    from types import SimpleNamespace

    from dakd_edge.train.jointnet import JointNetTrainer

    me = SimpleNamespace(cfg=_cfg(tmp_path, stage_steps=(2, 2, 2)))
    assert JointNetTrainer.extra_checkpoints(me, 0, 6) == 3  # two boundaries and the last stage's file
    assert JointNetTrainer.extra_checkpoints(me, 3, 6) == 2
    assert JointNetTrainer.extra_checkpoints(me, 0, 1) == 0  # --stop-after 1: last.pt only
    me = SimpleNamespace(cfg=_cfg(tmp_path, stage_steps=(2, 0, 1)))
    assert JointNetTrainer.extra_checkpoints(me, 0, 3) == 2
