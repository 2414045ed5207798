"""Every selective-scan entry point takes mamba_ssm's ``selective_scan_fn`` operands (without ``z``: MambaVision
passes ``z=None``), in one order.

The reference, the dispatcher, the Triton function and the export node each spell the signature out
(it is the op's public contract, and MambaVision code calls any of them the same way); this test is
the one place that keeps them from drifting apart: names, order, defaults and annotations.
"""

from __future__ import annotations

import inspect

from dakd_edge.export import nodes
from dakd_edge.kernels import dispatch, ref

OPERANDS = ["u", "delta", "A", "B", "C", "D", "delta_bias", "delta_softplus"]


def _operands(fn) -> list[tuple[str, object, object]]:
    params = list(inspect.signature(fn).parameters.values())[: len(OPERANDS)]
    return [(p.name, p.default, p.annotation) for p in params]


def test_scan_entry_points_share_the_reference_operands() -> None:
    expected = _operands(ref.selective_scan_ref)
    assert [name for name, _, _ in expected] == OPERANDS
    assert [default for _, default, _ in expected][5:] == [None, None, False]
    entry_points = [dispatch.selective_scan, nodes.selective_scan_node]
    try:
        from dakd_edge.kernels.selective_scan import selective_scan_fn
    except ImportError:  # no triton: the other entry points are still checked
        pass
    else:
        entry_points.append(selective_scan_fn)
    for fn in entry_points:
        assert _operands(fn) == expected, fn.__qualname__
