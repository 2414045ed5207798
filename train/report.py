"""Quality report for a generated augmented set against real data, without downloads.

Speckle statistics (equivalent number of looks in homogeneous sea windows, intensity histogram
distance, radial power spectrum distance), label/image agreement (generated oil should be darker than
the sea around it, as real slicks are), class frequencies, and FID only when the user supplies a local
Inception-v3 weights file. All statistics are computed on 8-bit-derived unit luminance, the domain of
both the OSD/SOS releases and the generated PNGs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dakd_edge.errors import ModelFileError

HIST_BINS = 256
SPECTRUM_BINS = 32
ENL_WINDOW = 16


# ---------------------------------------------------------------------------------------------- stats
def enl_windows(
    image: np.ndarray, mask: np.ndarray | None, sea: int = 0, win: int = ENL_WINDOW
) -> list[float]:
    """ENL = mean^2 / variance of non-overlapping ``win`` x ``win`` windows lying entirely in class ``sea``
    (the whole image when ``mask`` is None). Windows with zero variance are skipped."""
    h, w = image.shape
    hh, ww = h // win * win, w // win * win
    if hh == 0 or ww == 0:
        return []
    blocks = (
        image[:hh, :ww].reshape(hh // win, win, ww // win, win).transpose(0, 2, 1, 3).reshape(-1, win * win)
    )
    keep = np.ones(len(blocks), bool)
    if mask is not None:
        mb = (
            mask[:hh, :ww]
            .reshape(hh // win, win, ww // win, win)
            .transpose(0, 2, 1, 3)
            .reshape(-1, win * win)
        )
        keep = (mb == sea).all(axis=1)
    b = blocks[keep].astype(np.float64)
    mean, var = b.mean(axis=1), b.var(axis=1)
    ok = var > 1e-12
    return list((mean[ok] ** 2 / var[ok]).tolist())


def radial_spectrum(image: np.ndarray, bins: int = SPECTRUM_BINS) -> np.ndarray:
    """Radially averaged power spectrum of the mean-removed image over normalised frequency (0, 0.5],
    in ``bins`` bins, normalised to sum 1 (so images of different size and brightness compare)."""
    z = image.astype(np.float64) - image.mean()
    p = np.abs(np.fft.fft2(z)) ** 2
    fy = np.fft.fftfreq(image.shape[0])[:, None]
    fx = np.fft.fftfreq(image.shape[1])[None, :]
    r = np.sqrt(fy**2 + fx**2)
    idx = np.minimum((r / 0.5 * bins).astype(int), bins)  # bin `bins` = corners beyond 0.5
    sums = np.bincount(idx.ravel(), weights=p.ravel(), minlength=bins + 1)[1 : bins + 1]
    counts = np.bincount(idx.ravel(), minlength=bins + 1)[1 : bins + 1]
    spec = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    total = spec.sum()
    return spec / total if total > 0 else spec


def oil_contrast(
    image: np.ndarray, labels: np.ndarray, oil: int, sea: int = 0, ring: int = 4
) -> float | None:
    """Mean luminance of the sea ring (``ring`` px around the oil) minus mean luminance of the oil.

    Positive: the oil is darker than the sea around it. None when there is no oil or no sea ring."""
    o = labels == oil
    if o.sum() < 4:
        return None
    grown = o.copy()
    for _ in range(ring):  # 4-neighbour dilation, numpy only
        g = grown.copy()
        g[1:] |= grown[:-1]
        g[:-1] |= grown[1:]
        g[:, 1:] |= grown[:, :-1]
        g[:, :-1] |= grown[:, 1:]
        grown = g
    around = grown & ~o & (labels == sea)
    if around.sum() < 4:
        return None
    return float(image[around].mean() - image[o].mean())


@dataclass
class SetStats:
    """Streamed statistics of one image/label set."""

    num_classes: int
    oil: int
    hist: np.ndarray = field(default_factory=lambda: np.zeros(HIST_BINS))
    spectrum: np.ndarray = field(default_factory=lambda: np.zeros(SPECTRUM_BINS))
    class_counts: np.ndarray | None = None
    enl: list[float] = field(default_factory=list)
    contrasts: list[float] = field(default_factory=list)
    count: int = 0

    def add(self, image: np.ndarray, labels: np.ndarray) -> None:
        img = np.asarray(image, np.float64)
        img = img[0] if img.ndim == 3 else img
        self.hist += np.histogram(img, bins=HIST_BINS, range=(0.0, 1.0))[0]
        self.spectrum += radial_spectrum(img)
        valid = labels[labels != 255]
        cc = np.bincount(valid.ravel(), minlength=self.num_classes)[: self.num_classes]
        self.class_counts = cc if self.class_counts is None else self.class_counts + cc
        self.enl += enl_windows(img, labels)
        c = oil_contrast(img, labels, self.oil)
        if c is not None:
            self.contrasts.append(c)
        self.count += 1

    def summary(self) -> dict[str, Any]:
        cc = self.class_counts if self.class_counts is not None else np.zeros(self.num_classes)
        contr = np.asarray(self.contrasts)
        return {
            "images": self.count,
            "mean_luminance": float(
                (self.hist * (np.arange(HIST_BINS) + 0.5) / HIST_BINS).sum() / max(self.hist.sum(), 1)
            ),
            "enl_median": float(np.median(self.enl)) if self.enl else None,
            "enl_windows": len(self.enl),
            "class_frequencies": (cc / max(cc.sum(), 1)).tolist(),
            "oil_images": len(self.contrasts),
            "oil_darker_fraction": float((contr > 0).mean()) if len(contr) else None,
            "oil_contrast_mean": float(contr.mean()) if len(contr) else None,
        }


def histogram_distances(h1: np.ndarray, h2: np.ndarray) -> dict[str, float]:
    """Wasserstein-1 (in luminance units) and Jensen-Shannon divergence (bits) of two histograms."""
    p, q = h1 / max(h1.sum(), 1), h2 / max(h2.sum(), 1)
    w1 = float(np.abs(np.cumsum(p) - np.cumsum(q)).sum() / len(p))
    m = 0.5 * (p + q)

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / b[nz])).sum())

    return {"wasserstein1": w1, "jensen_shannon": 0.5 * kl(p, m) + 0.5 * kl(q, m)}


def spectrum_distance(s1: np.ndarray, s2: np.ndarray) -> float:
    """Mean absolute difference of log10 radial power spectra (0 = same speckle/texture scale mix)."""
    a, b = s1 / max(s1.sum(), 1e-300), s2 / max(s2.sum(), 1e-300)
    ok = (a > 0) & (b > 0)
    return float(np.abs(np.log10(a[ok]) - np.log10(b[ok])).mean())


# ------------------------------------------------------------------------------------------------ FID
def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1 C2)^1/2), with the trace of the root taken from the
    eigenvalues of the symmetric matrix C1^1/2 C2 C1^1/2 (numpy only, no scipy)."""
    w, v = np.linalg.eigh(cov1)
    s1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = s1 @ cov2 @ s1
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    tr_sqrt = np.sqrt(np.clip(ev, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * tr_sqrt)


def inception_features(
    weights: str | os.PathLike, images: Iterable[np.ndarray], batch: int = 16
) -> np.ndarray:
    """2048-d pool features of torchvision's Inception-v3 loaded from a local state-dict file.

    Note: torchvision weights give FID values close to, but not identical with, the TF-Inception FID
    the literature reports (e.g. the paper's 30.64 on OSD)."""
    import torch
    import torch.nn.functional as F
    from torchvision.models import inception_v3

    path = Path(weights)
    if not path.is_file():
        raise ModelFileError(f"Inception weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net = inception_v3(weights=None, aux_logits=True, init_weights=False)
        net.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
    except Exception as e:  # noqa: BLE001
        raise ModelFileError(
            f"{path}: not a torchvision inception_v3 state dict ({type(e).__name__}: {str(e).splitlines()[0]})"
        ) from e
    net.fc = torch.nn.Identity()
    net.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    feats, buf = [], []

    def flush() -> None:
        x = torch.from_numpy(np.stack(buf)).float()[:, None].repeat(1, 3, 1, 1)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        with torch.no_grad():
            feats.append(net((x - mean) / std).numpy().astype(np.float64))
        buf.clear()

    for img in images:
        buf.append(np.asarray(img, np.float32).reshape(img.shape[-2:]))
        if len(buf) == batch:
            flush()
    if buf:
        flush()
    return np.concatenate(feats)


def fid_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """FID of two feature sets (n_i, d). With fewer images than feature dimensions it works in sample
    space: for C1 = A^T A, C2 = B^T B (centred, scaled features) tr (C1 C2)^1/2 is the sum of the
    singular values of A B^T (n1 x n2), which avoids the d x d eigen-decompositions."""
    if len(f1) < 2 or len(f2) < 2:
        raise ValueError("FID needs at least 2 images per set")
    mu1, mu2 = f1.mean(0), f2.mean(0)
    if min(len(f1), len(f2)) >= f1.shape[1]:
        return frechet_distance(mu1, np.cov(f1, rowvar=False), mu2, np.cov(f2, rowvar=False))
    a = (f1 - mu1) / math.sqrt(len(f1) - 1)
    b = (f2 - mu2) / math.sqrt(len(f2) - 1)
    tr_sqrt = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    diff = mu1 - mu2
    return float(diff @ diff + (a * a).sum() + (b * b).sum() - 2 * tr_sqrt)


# --------------------------------------------------------------------------------------------- report
def _oil_index(class_names: Sequence[str]) -> int:
    from dakd_edge.meta import oil_ids_of

    return oil_ids_of(class_names)[0]


def _iter(ds: Any, limit: int | None) -> Iterable[Mapping[str, Any]]:
    n = len(ds) if limit is None else min(len(ds), limit)
    return (ds[i] for i in range(n))


def quality_report(
    generated: Any, real: Any, inception: str | os.PathLike | None = None, limit: int | None = None
) -> dict[str, Any]:
    """Compare a generated set with a real one (datasets yielding ``image`` and ``mask``)."""
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    for what, ds in (("generated", generated), ("real", real)):
        if len(ds) == 0:  # statistics of nothing would read as a perfect match
            raise ValueError(f"the {what} set has no images")
    names = list(getattr(generated, "class_names", [])) or [f"class{i}" for i in range(generated.num_classes)]
    if generated.num_classes != real.num_classes:
        raise ValueError(
            f"generated set has {generated.num_classes} classes, the real one {real.num_classes}; "
            "open the real set with matching classes (e.g. --real-classes binary)"
        )
    oil = _oil_index(names)
    gen = SetStats(generated.num_classes, oil)
    ref = SetStats(real.num_classes, oil)
    gen_imgs: list[np.ndarray] = []
    ref_imgs: list[np.ndarray] = []
    for s in _iter(generated, limit):
        gen.add(s["image"], np.asarray(s["mask"]))
        if inception:
            gen_imgs.append(np.asarray(s["image"], np.float32))
    for s in _iter(real, limit):
        ref.add(s["image"], np.asarray(s["mask"]))
        if inception:
            ref_imgs.append(np.asarray(s["image"], np.float32))
    g, r = gen.summary(), ref.summary()
    out: dict[str, Any] = {
        "class_names": names,
        "generated": g,
        "real": r,
        "histogram": histogram_distances(gen.hist, ref.hist),
        "spectrum_distance": spectrum_distance(gen.spectrum, ref.spectrum),
        "enl_ratio": (g["enl_median"] / r["enl_median"]) if g["enl_median"] and r["enl_median"] else None,
    }
    if inception:
        fg = inception_features(inception, gen_imgs)
        fr = inception_features(inception, ref_imgs)
        out["fid"] = fid_from_features(fg, fr)
        out["fid_note"] = f"torchvision Inception-v3 from {inception}; {len(fg)} vs {len(fr)} images"
    else:
        out["fid"] = None
        out["fid_note"] = "not computed: pass --inception PATH (a local torchvision Inception-v3 state dict)"
    return out


def format_report(rep: Mapping[str, Any]) -> str:
    """Human-readable lines for the CLI."""
    g, r = rep["generated"], rep["real"]

    def f(v: Any, fmt: str = ".3f") -> str:
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    lines = [
        f"images               generated {g['images']:>8}   real {r['images']:>8}",
        f"mean luminance       generated {f(g['mean_luminance']):>8}   real {f(r['mean_luminance']):>8}",
        f"ENL (sea, median)    generated {f(g['enl_median'], '.2f'):>8}   real {f(r['enl_median'], '.2f'):>8}"
        f"   ratio {f(rep['enl_ratio'], '.2f')}",
        f"histogram distance   W1 {f(rep['histogram']['wasserstein1'], '.4f')}"
        f"   JS {f(rep['histogram']['jensen_shannon'], '.4f')} bits",
        f"radial spectrum      mean |dlog10 P| {f(rep['spectrum_distance'], '.4f')}",
        f"oil darker than sea  generated {f(g['oil_darker_fraction'], '.2%'):>8}   real {f(r['oil_darker_fraction'], '.2%'):>8}"
        f"   (of {g['oil_images']} / {r['oil_images']} images with oil)",
        f"oil contrast         generated {f(g['oil_contrast_mean'], '.4f'):>8}   real {f(r['oil_contrast_mean'], '.4f'):>8}",
        "class frequencies:",
    ]
    for i, name in enumerate(rep["class_names"]):
        lines.append(
            f"  {name:<12} generated {g['class_frequencies'][i]:8.4f}   real {r['class_frequencies'][i]:8.4f}"
        )
    if rep["fid"] is None:
        lines.append(f"FID                  {rep['fid_note']}")
    else:
        lines.append(f"FID                  {rep['fid']:.2f}  ({rep['fid_note']})")
    return "\n".join(lines)
