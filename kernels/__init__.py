"""Hot ops of SAROSS-Net: selective scan and CAFT transposed attention.

Model code calls :func:`selective_scan` and :func:`transposed_attention`; :mod:`.dispatch` picks the
implementation (``"torch"`` reference, ``"triton"`` kernels, ``"auto"``) from an argument, the
:func:`use_kernels` context, or the ``DAKD_KERNELS`` environment variable. References in :mod:`.ref`
never import Triton.
"""

from dakd_edge.kernels.dispatch import (
    get_kernels,
    selective_scan,
    set_kernels,
    transposed_attention,
    use_kernels,
)

__all__ = ["get_kernels", "selective_scan", "set_kernels", "transposed_attention", "use_kernels"]
