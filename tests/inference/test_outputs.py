"""Scene outputs: the oil-probability staging file the polygon pass reads back, the report's class counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dakd_edge.inference.outputs import OilProbStaging, quantize_prob, staging_compression


def test_quantize_prob_matches_the_plain_expression() -> None:
    """In one buffer, the same uint8 as ``rint(clip(p, 0, 1) * 250)``: halves, the ends, out of range."""
    rng = np.random.default_rng(0)
    p = rng.random((3, 17, 19), dtype=np.float32)
    p[0, 0, :8] = [-0.5, 0.0, 0.002, 0.006, 0.5, 0.998, 1.0, 1.5]  # 0.002 * 250 = 0.5: rint to even
    for a in (p, p[1], p[:, 2:, 3:9], p.astype(np.float64)):
        before = a.copy()
        got = quantize_prob(a)
        assert got.dtype == np.uint8 and got.shape == a.shape
        np.testing.assert_array_equal(got, np.rint(np.clip(a, 0.0, 1.0) * 250.0).astype(np.uint8))
        np.testing.assert_array_equal(a, before)  # the probabilities are left alone


def test_staging_is_compressed_losslessly_and_reads_back(tmp_path: Path) -> None:
    """zstd-1 where GDAL has it (deflate-1 otherwise): still compressed, and every value comes back."""
    opts = staging_compression()
    assert opts in ({"compress": "zstd", "ZSTD_LEVEL": 1}, {"compress": "deflate", "ZLEVEL": 1})
    h, w = 300, 700
    rng = np.random.default_rng(1)
    p = (rng.random((h, w), dtype=np.float32) ** 6).astype(np.float32)
    st = OilProbStaging(tmp_path / "oil.tif", h, w)
    try:
        for y0 in range(0, h, 120):  # strips that do not line up with the 256 px blocks
            for x0 in range(0, w, 250):
                st.write(y0, x0, p[y0 : y0 + 120, x0 : x0 + 250])
        st.reopen()
        assert st.ds.compression is not None and st.ds.compression.name.lower() == opts["compress"]
        back = st[0:h, 0:w]
        np.testing.assert_array_equal(back, quantize_prob(p).astype(np.float32) / 250.0)
        np.testing.assert_allclose(back, np.clip(p, 0, 1), atol=0.5 / 250 + 1e-7)
    finally:
        st.close()
    assert not (tmp_path / "oil.tif").exists()


def test_class_counts_equal_bincount_with_nodata_last() -> None:
    """The report's class counts: one count_nonzero per class instead of an int64 bincount; values at
    or above the class count (255 = nodata, any stray id) go to the last entry, as bincount put them."""
    from dakd_edge.inference.report import class_counts

    rng = np.random.default_rng(2)
    for k in (1, 2, 5):
        cls = rng.choice(np.array([*range(k), k + 3, 255], np.uint8), size=(37, 53))
        want = np.bincount(np.minimum(cls.ravel(), k), minlength=k + 1)
        np.testing.assert_array_equal(class_counts(cls, k), want)
    assert class_counts(np.zeros((0, 4), np.uint8), 2).tolist() == [0, 0, 0]
