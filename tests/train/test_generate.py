"""DDIM generation of the augmented set and the quality report."""

from __future__ import annotations

import errno
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dakd_edge.cli.app import cli
from dakd_edge.data import open_dataset
from dakd_edge.data.augmented import AugmentedDataset, read_manifest
from dakd_edge.errors import DatasetError, ModelFileError, OutputError
from dakd_edge.train import generate as gen
from dakd_edge.train import report as rep
from dakd_edge.train.jointnet import SyntheticPatches, train_jointnet
from tests.train.tiny import JOINT_CROP, jointnet_config, one_thread  # noqa: F401 (autouse fixture)

CROP = JOINT_CROP
_SAMPLE_JOINT = gen.sample_joint


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SAR-JointNet trained for a few steps of every stage (stage-1 and final checkpoints)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("jn")
    train_jointnet(jointnet_config(out, sample_every=6, synthetic=6), progress=False)
    return out


def test_training_wrote_sample_grid(run: Path) -> None:
    from PIL import Image

    grid = run / "samples" / "step0000006.png"
    with Image.open(grid) as im:
        assert im.size == (4 * CROP, 2 * CROP) and im.mode == "RGB"  # 4 images over 4 coloured labels


def test_sample_shapes_range_and_eq21_every_step(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net = gen.load_jointnet(run / "last.pt")
    calls = []
    real = gen.logits_to_mask_range

    def spy(logits: torch.Tensor, b: float) -> torch.Tensor:
        y = real(logits, b)
        calls.append((y.min().item(), y.max().item()))
        return y

    monkeypatch.setattr(gen, "logits_to_mask_range", spy)
    images, logits = gen.sample_joint(net.model, net.balancing_factor, [0, 1, 2], (CROP, 24), steps=3)
    assert images.shape == (3, 1, CROP, 24) and logits.shape == (3, 2, CROP, 24)
    assert torch.isfinite(images).all() and torch.isfinite(logits).all()
    assert images.min() >= 0.0 and images.max() <= 1.0
    b = net.balancing_factor
    assert len(calls) == 3 and all(-b - 1e-6 <= lo and hi <= b + 1e-6 for lo, hi in calls)


def test_per_sample_seeds_independent_of_batching(run: Path) -> None:
    net = gen.load_jointnet(run / "last.pt")
    a, la = gen.sample_joint(net.model, net.balancing_factor, [0, 1, 2], (CROP, CROP), steps=2, seed=5)
    b, lb = gen.sample_joint(net.model, net.balancing_factor, [2], (CROP, CROP), steps=2, seed=5)
    torch.testing.assert_close(a[2:], b, rtol=1e-5, atol=1e-5)
    c, _ = gen.sample_joint(net.model, net.balancing_factor, [2], (CROP, CROP), steps=2, seed=6)
    assert not torch.allclose(b, c)


class _ClosedFormTeacher(torch.nn.Module):
    """A stand-in SAR-JointNet whose x0_hat and logits are fixed closed-form functions of (x_t, t, y_t)."""

    def __init__(self, k: int = 3) -> None:
        super().__init__()
        self.config = SimpleNamespace(num_classes=k)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None):
        tt = t.float().view(-1, 1, 1, 1) / 1000
        x0 = 1.5 * torch.tanh(x) * (1 - tt) + 0.1  # leaves [-1, 1] early on: exercises the clipping
        if y is None:
            return x0
        return x0, 2.0 * y + torch.arange(float(y.shape[1])).view(1, -1, 1, 1) * tt


def _ddim_by_hand(steps: int, b: float, seed: int, indices: list[int], h: int, w: int, k: int):
    """DDIM (Song et al. 2021, Eq. 12, eta = 0) in float64 numpy, straight from the equations: squared-
    cosine alpha_bar (Nichol & Dhariwal 2021, betas capped at 0.999), trailing timesteps tau_i, each
    update from tau_i to the next listed tau_{i+1} (alpha_bar = 1 after the last), x0_hat clipped to
    [-1, 1] and the label estimate y0_hat = b (2 softmax(l_hat) - 1) (Eq. 21)."""
    n = 1000
    f = lambda s: math.cos((s / n + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    abar = np.cumprod([1 - min(1 - f(i + 1) / f(i), 0.999) for i in range(n)])
    taus = (np.round(np.arange(n, 0, -n / steps)) - 1).astype(int)
    x = gen.initial_noise(seed, indices, (1, h, w), torch.device("cpu")).double().numpy()
    y = gen.initial_noise(seed + 1_000_003, indices, (k, h, w), torch.device("cpu")).double().numpy()
    for i, t in enumerate(taus):
        x0 = np.clip(1.5 * np.tanh(x) * (1 - t / 1000) + 0.1, -1, 1)
        logits = 2.0 * y + np.arange(float(k)).reshape(1, k, 1, 1) * t / 1000
        e = np.exp(logits - logits.max(1, keepdims=True))
        y0 = b * (2 * e / e.sum(1, keepdims=True) - 1)
        a_t, a_prev = abar[t], (abar[taus[i + 1]] if i + 1 < len(taus) else 1.0)
        eps_x = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
        eps_y = (y - math.sqrt(a_t) * y0) / math.sqrt(1 - a_t)
        x = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps_x
        y = math.sqrt(a_prev) * y0 + math.sqrt(1 - a_prev) * eps_y
    return np.clip((x + 1) / 2, 0, 1), logits


@pytest.mark.parametrize("steps", [7, 200, 600])
def test_sample_joint_is_ddim_between_consecutive_timesteps(steps: int) -> None:
    """The sampler against the DDIM equations. 7 and 600 do not divide 1000: diffusers' DDIMScheduler.step
    steps to ``t - 1000 // steps`` instead of the next listed timestep, so the sample reached a noise
    level the next model call was not told about (image off by 0.16 at 600 steps) and at 7 steps the
    last update ended at alpha_bar[0] < 1, leaving noise in the output."""
    b = 0.528
    images, logits = gen.sample_joint(
        _ClosedFormTeacher(3), b, [0, 1], (2, 2), steps=steps, seed=3, amp=False
    )
    want_images, want_logits = _ddim_by_hand(steps, b, 3, [0, 1], 2, 2, 3)
    np.testing.assert_allclose(images.double().numpy(), want_images, rtol=0, atol=1e-4)  # float32 vs float64
    np.testing.assert_allclose(logits.double().numpy(), want_logits, rtol=0, atol=1e-4)  # float32 vs float64


def test_ddim_step_is_diffusers_step_bit_for_bit_when_steps_divide_1000() -> None:
    """For the step counts where diffusers is right (200 by default) the update is the same float32
    arithmetic, so augmented sets made before keep their bytes on --resume."""
    ddim = gen.make_ddim(200)
    ts = ddim.timesteps.tolist()
    g = torch.Generator().manual_seed(0)
    for i in (0, 57, len(ts) - 1):
        sample, x0 = torch.randn(2, 3, 4, 4, generator=g), torch.rand(2, 3, 4, 4, generator=g) * 2 - 1
        nxt = ts[i + 1] if i + 1 < len(ts) else -1
        want = ddim.step(x0, ts[i], sample, eta=0.0).prev_sample
        assert torch.equal(gen.ddim_step(ddim, x0, ts[i], nxt, sample), want)


def test_resume_refuses_a_set_begun_with_the_old_ddim_update(run: Path, tmp_path: Path) -> None:
    """A set begun before the DDIM update was fixed, with --steps that do not divide 1000, holds samples
    of the old update (to t - 1000 // steps); --resume silently added samples of the new one. Its
    manifest has no "ddim_update": it is refused then. Where the steps divide 1000 the two updates are
    bit for bit the same, and an old set resumes as before."""
    import json

    ck = run / "last.pt"
    for steps, refused in ((3, True), (2, False)):
        out = tmp_path / f"s{steps}"
        kw = dict(steps=steps, batch=1, seed=1, progress=False)
        gen.generate_augmented(ck, out, 1, **kw)
        m = json.loads((out / "manifest.json").read_text())
        m["generator"].pop("ddim_update", None)  # as an older dakd-edge wrote it
        (out / "manifest.json").write_text(json.dumps(m))
        if refused:
            with pytest.raises(OutputError, match=r"begun by an older dakd-edge .*--overwrite"):
                gen.generate_augmented(ck, out, 2, resume=True, **kw)
            assert len(list((out / "images").glob("*.png"))) == 1  # nothing added
            assert gen.generate_augmented(ck, out, 2, overwrite=True, **kw)["written"] == 2
        else:
            assert gen.generate_augmented(ck, out, 2, resume=True, **kw)["written"] == 1
        assert read_manifest(out)["generator"]["ddim_update"] == "next-timestep"  # recorded from now on


def _files(root: Path) -> dict[str, bytes]:
    """Every sample file (and nothing else but the manifest) under ``root``, by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def test_generate_is_deterministic_and_resumable(run: Path, tmp_path: Path) -> None:
    ck = run / "last.pt"
    kw = dict(steps=2, batch=2, seed=1, progress=False)
    full = gen.generate_augmented(ck, tmp_path / "a", 5, **kw)
    assert full["written"] == 5 and full["skipped"] == 0 and full["complete"]
    part = gen.generate_augmented(ck, tmp_path / "b", 3, **kw)  # "interrupted" after 3
    (tmp_path / "b" / "images" / "000001.png").unlink()  # and one sample lost
    rest = gen.generate_augmented(ck, tmp_path / "b", 5, resume=True, **kw)
    assert part["written"] == 3 and rest["written"] == 3 and rest["skipped"] == 2
    assert _files(tmp_path / "a") == _files(tmp_path / "b")  # every sample, byte for byte
    # Two shards into one folder reproduce the single-process set (a shard joins without --resume).
    for k in (1, 0):
        gen.generate_augmented(ck, tmp_path / "c", 5, shard=(k, 2), **kw)
    assert _files(tmp_path / "a") == _files(tmp_path / "c")
    assert len(read_manifest(tmp_path / "c")["samples"]) == 5 and read_manifest(tmp_path / "c")["complete"]
    m = read_manifest(tmp_path / "b")
    assert len(m["samples"]) == 5 and m["num_classes"] == 2 and m["complete"] and m["requested"] == 5
    assert m["balancing_factor"] == pytest.approx(gen.load_jointnet(ck).balancing_factor)
    teacher = m["generator"]["teacher"]  # provenance: how the teacher was trained
    assert teacher["crop"] == CROP and len(teacher["stage_steps"]) == 3 and "lr" in teacher
    ds = AugmentedDataset(tmp_path / "b")  # H1's reader accepts what we wrote
    s = ds[0]
    assert s["image"].shape == (1, CROP, CROP) and s["logits"].shape == (2, CROP, CROP)
    assert np.load(tmp_path / "b" / "logits" / "000000.npy").dtype == np.float16


def _spy_batches(
    monkeypatch: pytest.MonkeyPatch, fail_on: int | None = None, exc: BaseException | None = None
):
    """Record the index lists sample_joint is called with; raise ``exc`` on call number ``fail_on``."""
    calls: list[list[int]] = []
    real = _SAMPLE_JOINT

    def spy(model, b, indices, *a, **k):
        calls.append(list(indices))
        if fail_on is not None and len(calls) == fail_on:
            raise exc  # type: ignore[misc]
        return real(model, b, indices, *a, **k)

    monkeypatch.setattr(gen, "sample_joint", spy)
    return calls


def test_resume_and_append_equal_one_shot_run(run: Path, tmp_path: Path, monkeypatch) -> None:
    """Sample i is always computed in its fixed whole batch: on the CPU a batch of 1 and a batch of 2
    give results that differ in the last float bits, so a resumed or extended set would otherwise
    not be the one-shot set (the old code sampled the last batch clipped at n)."""
    ck = run / "last.pt"
    kw = dict(steps=2, batch=2, seed=3, progress=False)
    calls = _spy_batches(monkeypatch, fail_on=2, exc=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C in the second batch
        gen.generate_augmented(ck, tmp_path / "b", 3, **kw)
    m = read_manifest(tmp_path / "b")
    assert m["complete"] is False and m["requested"] == 3 and len(m["samples"]) == 2
    with pytest.raises(DatasetError, match="unfinished augmented set .2 of 3.*--resume"):
        AugmentedDataset(tmp_path / "b")  # `dakd-edge train --aug` refuses it
    with pytest.raises(
        OutputError, match=r"already holds an augmented set \(2 samples, unfinished: 2 of 3\)"
    ):
        gen.generate_augmented(ck, tmp_path / "b", 3, resume=False, **kw)
    calls = _spy_batches(monkeypatch)
    assert gen.generate_augmented(ck, tmp_path / "b", 3, resume=True, **kw)["written"] == 1
    assert read_manifest(tmp_path / "b")["complete"] and len(AugmentedDataset(tmp_path / "b")) == 3
    res = gen.generate_augmented(ck, tmp_path / "b", 6, resume=True, **kw)  # append
    assert res["written"] == 3 and res["skipped"] == 3 and res["complete"]
    assert calls == [[2, 3], [2, 3], [4, 5]]  # the last batch of n = 3 is sampled whole too
    gen.generate_augmented(ck, tmp_path / "a", 6, **kw)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    # A smaller --n settles for the first N; the others stay on disk for a later larger --n.
    res = gen.generate_augmented(ck, tmp_path / "b", 4, resume=True, **kw)
    assert res["written"] == 0 and res["complete"]
    assert [s["id"] for s in read_manifest(tmp_path / "b")["samples"]] == [f"{i:06d}" for i in range(4)]
    assert len(list((tmp_path / "b" / "images").glob("*.png"))) == 6


def test_killed_run_is_recognisable_and_resumed_only_with_same_settings(run: Path, tmp_path: Path) -> None:
    """A run killed without unwinding (SIGKILL, the signal watchdog's hard exit) used to leave samples
    and no manifest: the next run merged them with samples of any other seed or teacher unchecked, and
    nothing said the set was unfinished."""
    ck, out = run / "last.pt", tmp_path / "b"
    code = f"""
import os, torch
from dakd_edge.train import generate as gen
real, calls = gen.sample_joint, []
def sample_then_die(*a, **k):
    calls.append(1)
    if len(calls) == 3:
        os._exit(9)
    return real(*a, **k)
gen.sample_joint = sample_then_die
torch.set_num_threads(1)
gen.generate_augmented({str(ck)!r}, {str(out)!r}, 5, steps=2, batch=2, seed=1, progress=False)
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2], capture_output=True)
    assert r.returncode == 9, r.stderr.decode()
    m = read_manifest(out)
    assert m["complete"] is False and m["requested"] == 5 and m["generator"]["seed"] == 1
    with pytest.raises(DatasetError, match="unfinished"):
        open_dataset(out, kind="augmented")  # what `dakd-edge train --aug` opens
    kw = dict(steps=2, batch=2, seed=1, progress=False)
    for other, text in (
        ({"seed": 2}, "seed 1 -> 2"),
        ({"batch": 4}, "batch 2 -> 4"),
        ({"steps": 3}, "steps 2 -> 3"),
    ):
        with pytest.raises(OutputError, match=f"other generator settings \\({text}\\).*--overwrite"):
            gen.generate_augmented(ck, out, 5, resume=True, **{**kw, **other})
    assert len(list((out / "images").glob("*.png"))) == 4  # refusals touch nothing
    res = gen.generate_augmented(ck, out, 5, resume=True, **kw)
    assert res["written"] == 1 and res["skipped"] == 4 and res["complete"]
    gen.generate_augmented(ck, tmp_path / "a", 5, **kw)
    assert _files(tmp_path / "a") == _files(out)


def test_failed_first_batch_leaves_nothing(run: Path, tmp_path: Path, monkeypatch) -> None:
    ck, out = run / "last.pt", tmp_path / "new" / "aug"
    kw = dict(steps=2, batch=2, seed=1, progress=False)
    _spy_batches(monkeypatch, fail_on=1, exc=RuntimeError("CUDA out of memory"))
    with pytest.raises(RuntimeError):
        gen.generate_augmented(ck, out, 3, **kw)
    assert not (tmp_path / "new").exists()
    # An --overwrite whose first batch fails keeps the set it was to replace.
    monkeypatch.setattr(gen, "sample_joint", _SAMPLE_JOINT)
    gen.generate_augmented(ck, tmp_path / "old", 2, **kw)
    before = _files(tmp_path / "old")
    _spy_batches(monkeypatch, fail_on=1, exc=RuntimeError("boom"))
    with pytest.raises(RuntimeError):
        gen.generate_augmented(ck, tmp_path / "old", 2, overwrite=True, **{**kw, "seed": 9})
    assert _files(tmp_path / "old") == before and read_manifest(tmp_path / "old")["generator"]["seed"] == 1


def test_interrupt_says_what_was_kept(run: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """Ctrl-C / SIGTERM printed only "interrupted"; train names its checkpoint: generate says what stays."""
    _spy_batches(monkeypatch, fail_on=2, exc=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        gen.generate_augmented(run / "last.pt", tmp_path / "aug", 5, steps=2, batch=2, progress=False)
    err = capsys.readouterr().err
    assert (
        f"generation stopped: 2 of 5 samples kept in {tmp_path / 'aug'}; the same command with --resume"
        in err
    )


def _enospc_on_png(monkeypatch: pytest.MonkeyPatch, after: int) -> None:
    """The PNG write of sample number ``after`` (0-based) writes half a file, then hits a full disk."""
    from PIL import Image

    real, n = Image.Image.save, [0]

    def save(self, fp, *a, **k):
        n[0] += 1
        if n[0] > after:
            Path(fp).write_bytes(b"\x89PNG\r\n")
            raise OSError(errno.ENOSPC, "No space left on device", str(fp))
        return real(self, fp, *a, **k)

    monkeypatch.setattr(Image.Image, "save", save)


def test_disk_full_first_write_leaves_nothing(run: Path, tmp_path: Path, monkeypatch) -> None:
    _enospc_on_png(monkeypatch, after=0)
    with pytest.raises(OutputError, match=r"^no space left on .*0 of 3 samples kept"):
        gen.generate_augmented(run / "last.pt", tmp_path / "aug", 3, steps=2, batch=2, progress=False)
    assert not (tmp_path / "aug").exists()


def test_disk_full_mid_run_then_resume(run: Path, tmp_path: Path, monkeypatch) -> None:
    ck, out = run / "last.pt", tmp_path / "aug"
    kw = dict(steps=2, batch=2, seed=1, progress=False)
    _enospc_on_png(monkeypatch, after=3)
    with pytest.raises(OutputError, match=r"^no space left on .*3 of 5 samples kept.*--resume"):
        gen.generate_augmented(ck, out, 5, **kw)
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    ids = [f"{i:06d}" for i in range(3)]  # whole samples only: no orphan logits, no temporaries
    assert names == sorted(
        [*(f"images/{i}.png" for i in ids), *(f"logits/{i}.npy" for i in ids), "manifest.json"]
    )
    assert read_manifest(out)["complete"] is False
    monkeypatch.undo()  # space freed
    assert gen.generate_augmented(ck, out, 5, resume=True, **kw)["written"] == 2
    gen.generate_augmented(ck, tmp_path / "a", 5, **kw)
    assert _files(tmp_path / "a") == _files(out) and read_manifest(out)["complete"]


def test_generate_refuses_folder_with_samples_but_no_manifest(run: Path, tmp_path: Path) -> None:
    """A real images/ + masks/ dataset (or a set of a version that wrote no manifest first) is neither
    merged into nor cleared, --overwrite or not."""
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "scene1.png").write_bytes(b"real data")
    for extra in ({"resume": False}, {"resume": True}, {"overwrite": True}):
        with pytest.raises(OutputError, match="no manifest.json, so their settings cannot be checked"):
            gen.generate_augmented(run / "last.pt", tmp_path, 1, steps=1, progress=False, **extra)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["images", "scene1.png"]


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``dakd-edge *argv`` through the CLI's error boundary: (exit code, stdout, stderr)."""
    from dakd_edge.cli.app import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A 48 KiB tmpfs (root only): a real full disk; ``remount(size)`` frees space."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mnt)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt, lambda size: subprocess.run(["mount", "-o", f"remount,size={size}", str(mnt)], check=True)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_cli_disk_full_then_resume(run: Path, tmp_path: Path, capsys, small_tmpfs) -> None:
    mnt, remount = small_tmpfs
    base = ["jointnet", "generate", str(run / "last.pt"), "--n", "16", "--batch", "4", "--steps", "2",
            "--no-progress", "--out"]  # fmt: skip
    code, _, err = _main([*base, str(mnt / "aug")], capsys)
    assert code == 2 and err.startswith(f"dakd-edge: error: no space left on {mnt} ") and err.count("\n") == 1
    assert "rerun with --resume" in err
    pngs = list((mnt / "aug" / "images").iterdir())
    assert pngs and all(p.stat().st_size > 100 and p.name[0] != "." for p in pngs)  # whole files only
    assert read_manifest(mnt / "aug")["complete"] is False
    remount("1m")
    code, out, err = _main([*base, str(mnt / "aug"), "--resume"], capsys)
    assert code == 0, err
    assert f"{16 - len(pngs)} written, {len(pngs)} already present" in out
    assert _main([*base, str(tmp_path / "a")], capsys)[0] == 0
    assert _files(tmp_path / "a") == _files(mnt / "aug") and read_manifest(mnt / "aug")["complete"]


def test_cli_existing_set_needs_resume_or_overwrite(run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "aug"
    base = ["jointnet", "generate", str(run / "last.pt"), "--n", "2", "--batch", "2", "--steps", "1",
            "--no-progress", "--out", str(out)]  # fmt: skip
    assert _main(base, capsys)[0] == 0
    code, _, err = _main(base, capsys)
    assert code == 2 and "already holds an augmented set (2 samples); pass --resume" in err
    code, _, err = _main([*base, "--resume", "--overwrite"], capsys)
    assert code == 2 and "--resume and --overwrite exclude each other" in err and err.count("\n") == 1
    assert len(read_manifest(out)["samples"]) == 2
    code, out_text, _ = _main([*base, "--resume", "--n", "3"], capsys)
    assert code == 0 and "1 written, 2 already present" in out_text
    code, _, err = _main([*base, "--resume", "--seed", "4"], capsys)
    assert code == 2 and "(seed 0 -> 4)" in err


def test_generate_refuses_stage1_checkpoint(run: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="stage 1"):
        gen.generate_augmented(run / "stage1.pt", tmp_path / "x", 1, steps=1, progress=False)


def test_cli_generate_and_report(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "aug"
    r = CliRunner().invoke(
        cli,
        [
            "jointnet",
            "generate",
            str(run / "last.pt"),
            "--n",
            "3",
            "--out",
            str(out),
            "--steps",
            "2",
            "--batch",
            "2",
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "3 written, 0 already present" in r.output
    real = tmp_path / "real"
    (real / "images").mkdir(parents=True)
    (real / "masks").mkdir()
    from PIL import Image

    ds = SyntheticPatches(3, 32, 2, seed=9)
    for i in range(3):
        s = ds[i]
        Image.fromarray((s["image"][0] * 255).astype(np.uint8)).save(real / "images" / f"r{i}.png")
        Image.fromarray(s["mask"].astype(np.uint8)).save(real / "masks" / f"r{i}.png")
    r = CliRunner().invoke(
        cli,
        [
            "jointnet",
            "report",
            str(out),
            "--real",
            str(real),
            "--real-kind",
            "folder",
            "--json",
            str(tmp_path / "rep.json"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "FID                  not computed" in r.output and "ENL" in r.output
    assert (tmp_path / "rep.json").is_file()
    base = ["jointnet", "report", str(out), "--real", str(real), "--real-kind", "folder", "--json"]

    def refused(argv: list[str], said: str) -> bool:
        r = CliRunner().invoke(cli, [*base, *argv])
        return r.exit_code != 0 and said in f"{r.output} {r.exception}"

    # an existing report needs --overwrite; a report inside the set it reads replaced its manifest
    manifest = (out / "manifest.json").read_bytes()
    assert refused([str(tmp_path / "rep.json")], "pass --overwrite")
    assert refused([str(out / "manifest.json"), "--overwrite"], "inside the generated set")
    assert (out / "manifest.json").read_bytes() == manifest
    assert refused([str(real / "rep.json")], "inside --real") and not (real / "rep.json").exists()
    # '-': stdout is the JSON alone (the text table goes to stderr)
    r = CliRunner().invoke(cli, [*base, "-"])
    assert r.exit_code == 0 and json.loads(r.stdout)["generated"] and "ENL" in r.stderr


# --------------------------------------------------------------------------------------------- report
def test_enl_of_gamma_speckle_recovers_looks() -> None:
    rng = np.random.default_rng(0)
    img = rng.gamma(4.0, 0.25 / 4.0, size=(128, 128))  # L = 4 looks, mean 0.25
    assert np.median(rep.enl_windows(img, None)) == pytest.approx(4.0, rel=0.25)
    mask = np.zeros((128, 128), np.int64)
    mask[:16] = 1
    assert len(rep.enl_windows(img, mask)) == (128 // 16) ** 2 - 128 // 16  # oil row excluded


def test_oil_contrast_sign() -> None:
    img = np.full((32, 32), 0.5)
    labels = np.zeros((32, 32), np.int64)
    labels[10:20, 10:20] = 1
    img[labels == 1] = 0.2
    assert rep.oil_contrast(img, labels, oil=1) == pytest.approx(0.3)
    assert rep.oil_contrast(img, np.zeros_like(labels), oil=1) is None


def test_frechet_distance_closed_form() -> None:
    mu1, mu2 = np.zeros(3), np.array([1.0, 0.0, 2.0])
    c1, c2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 1.0])
    # diagonal: |dmu|^2 + sum (s1 - s2)^2 with s = sqrt(var)
    expected = 5.0 + (1 - 2) ** 2 + (2 - 1) ** 2 + (3 - 1) ** 2
    assert rep.frechet_distance(mu1, c1, mu2, c2) == pytest.approx(expected, rel=1e-9)
    assert rep.frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-9)
    # The sample-space form used for few images agrees with the covariance form.
    rng = np.random.default_rng(3)
    f1, f2 = rng.normal(size=(5, 8)), rng.normal(1.0, 2.0, size=(7, 8))
    full = rep.frechet_distance(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))
    assert rep.fid_from_features(f1, f2) == pytest.approx(full, rel=1e-8)
    g1, g2 = rng.normal(size=(20, 4)), rng.normal(size=(30, 4))  # n >= d: covariance form
    full = rep.frechet_distance(g1.mean(0), np.cov(g1, rowvar=False), g2.mean(0), np.cov(g2, rowvar=False))
    assert rep.fid_from_features(g1, g2) == pytest.approx(full, rel=1e-12)


def test_histogram_and_spectrum_distances() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((64, 64))
    h = np.histogram(a, 256, (0, 1))[0].astype(float)
    assert rep.histogram_distances(h, h) == {"wasserstein1": 0.0, "jensen_shannon": 0.0}
    shifted = np.histogram(np.clip(a * 0.5, 0, 1), 256, (0, 1))[0].astype(float)
    assert rep.histogram_distances(h, shifted)["wasserstein1"] > 0.1
    white = rep.radial_spectrum(a)
    smooth = rep.radial_spectrum(np.cumsum(np.cumsum(a, 0), 1))
    assert rep.spectrum_distance(white, white) == 0.0
    assert rep.spectrum_distance(white, smooth) > 0.5


def test_inception_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        rep.inception_features(tmp_path / "nope.pth", [])
    bad = tmp_path / "bad.pth"
    torch.save({"w": torch.zeros(1)}, bad)
    with pytest.raises(ModelFileError, match="not a torchvision inception_v3"):
        rep.inception_features(bad, [])


class _StubInception(torch.nn.Module):
    """Stands in for torchvision's 27M-parameter Inception-v3 (too slow for the CPU suite)."""

    def __init__(self, **kw) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2048, 3, stride=8)
        self.fc = torch.nn.Linear(2048, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1:] == (3, 299, 299)  # resized and replicated to RGB like the real input
        return self.fc(self.conv(x).mean((2, 3)))


def test_fid_path_with_local_weights_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.models

    monkeypatch.setattr(torchvision.models, "inception_v3", _StubInception)
    torch.manual_seed(0)
    path = tmp_path / "inception.pth"
    torch.save(_StubInception().state_dict(), path)
    rng = np.random.default_rng(0)
    imgs = [rng.random((1, 32, 32)).astype(np.float32) for _ in range(3)]
    f = rep.inception_features(path, imgs, batch=2)
    assert f.shape == (3, 2048) and np.isfinite(f).all()  # fc removed: pool features
    assert rep.fid_from_features(f, f) == pytest.approx(0.0, abs=1e-6)
