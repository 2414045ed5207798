"""errors.quiet: warnings silenced for a block without leaving filters behind across threads."""

from __future__ import annotations

import threading
import warnings

import pytest

from dakd_edge.errors import Notice, OutputError, api_words, in_api_words, quiet


def test_quiet_ignores_only_its_categories_and_restores_the_filters() -> None:
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet(Notice):
            warnings.warn("hidden", Notice, stacklevel=1)
            warnings.warn("shown", RuntimeWarning, stacklevel=1)
        with quiet():
            warnings.warn("hidden too", RuntimeWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["shown"]
    assert warnings.filters == before


def test_quiet_blocks_in_two_threads_overlap_and_leave_the_filters_as_they_were() -> None:
    """catch_warnings saves and restores the process-wide filter list: thread A in, thread B in, A out,
    B out left B's saved list (with A's "ignore") installed for good. With quiet() the four steps in
    that order leave the filters as they began, and B's block runs while A's is still open (a lock
    around whole blocks made a small file's open wait 26 s behind another thread's COG copy)."""
    before = list(warnings.filters)
    a_in, a_out, b_in, b_out = (threading.Event() for _ in range(4))

    def a() -> None:
        with quiet(RuntimeWarning):
            a_in.set()
            a_out.wait(5)

    def b() -> None:
        a_in.wait(5)
        with quiet(RuntimeWarning, Notice):
            b_in.set()
            b_out.wait(5)

    ta, tb = threading.Thread(target=a), threading.Thread(target=b)
    ta.start()
    tb.start()
    assert b_in.wait(5)  # B is inside while A is
    a_out.set()
    ta.join(5)
    with warnings.catch_warnings(record=True) as caught:  # B still ignores RuntimeWarning after A left
        warnings.warn("x", RuntimeWarning, stacklevel=1)
    assert caught == []
    b_out.set()
    tb.join(5)
    assert warnings.filters == before


@pytest.mark.parametrize(
    ("cli", "api"),
    [
        ("--tile 16 is too small: use at least 32 pixels", "tile=16 is too small: use at least 32 pixels"),
        (
            "output exists: x.tif (pass --overwrite to replace it)",
            "output exists: x.tif (pass overwrite=True to replace it)",
        ),
        ("if they are not, pass --input-scale", "if they are not, pass scale="),
        ("read as luminance with --input-scale uint8", "read as luminance with scale=uint8"),
        ("--device 'gpu': use cpu, cuda, cuda:N or auto", "device='gpu': use cpu, cuda, cuda:N or auto"),
        ("choose another with --band N", "choose another with band=N"),
        ("give --land-mask FILE, or --no-land-mask", "give land_mask=FILE, or land_mask=None"),
        ("--probs-dtype float16 and --min-area 2000", "probs_dtype=float16 and min_area=2000"),
        ("no option here", "no option here"),
        (
            "model file not found: /x/run--best/m.safetensors",
            "model file not found: /x/run--best/m.safetensors",
        ),
        ("/x/s1--vv.tif: no such file", "/x/s1--vv.tif: no such file"),
        ("--geocode applies to GCP-georeferenced scenes", "geocode=True applies to GCP-georeferenced scenes"),
        ("--no-polygons and --vector contradict", "polygons=False and vector= contradict"),
        ("--min-area 10px and --border-noise mask", "min_area=10px and border_noise=mask"),
        ("--retry-failed needs --resume", "--retry-failed needs --resume"),  # not options of the library
    ],
)
def test_api_words(cli: str, api: str) -> None:
    assert api_words(cli) == api


def test_in_api_words_keeps_the_error_type() -> None:
    with (
        pytest.raises(OutputError, match=r"^output exists: x \(pass overwrite=True to replace it\)$"),
        in_api_words(),
    ):
        raise OutputError("output exists: x (pass --overwrite to replace it)")
