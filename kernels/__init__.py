"""Hot ops of SAROSS-Net: selective scan and CAFT transposed attention.

Model code calls :func:`selective_scan` and :func:`transposed_attention`; :mod:`.dispatch` picks the
implementation (``"torch"`` reference, ``"triton"`` kernels, ``"auto"``) from an argument, the
:func:`use_kernels` context, or the ``DAKD_KERNELS`` environment variable. References in :mod:`.ref`
never import Triton.
"""

import sys
import types

from dakd_edge.kernels.dispatch import (
    get_kernels,
    selective_scan,
    set_kernels,
    transposed_attention,
    use_kernels,
)

__all__ = ["get_kernels", "selective_scan", "set_kernels", "transposed_attention", "use_kernels"]


class _Package(types.ModuleType):
    """Keeps ``selective_scan`` / ``transposed_attention`` bound to the dispatch functions.

    The Triton submodules share those names; importing one (``from dakd_edge.kernels.selective_scan
    import selective_scan_fn``) would make Python bind the submodule on this package and shadow the
    public function for every later caller. The submodules stay reachable through from-imports and
    ``sys.modules``.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if name in ("selective_scan", "transposed_attention") and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
