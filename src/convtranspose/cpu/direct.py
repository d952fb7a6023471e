"""The ``direct`` backend: one parallel gather kernel, no workspace.

Every output row is accumulated by one thread from the taps that reach it (see
:mod:`convtranspose.cpu.taps`); no multiplication by inserted zeros happens. Besides the
output it allocates only ``O(kW)`` column tables and, per output row (four rows with
channel blocking), an accumulator of fewer than ``2 * W_out`` elements.
"""
from __future__ import annotations

import numpy as np

from .._threading import launch
from .kernels import direct_kernel, direct_kernel_serial
from .taps import tap_tables

__all__ = ["run", "SERIAL_FLOPS"]

#: Problems with fewer multiply-adds (times two) than this run on the calling thread:
#: below it, waking the thread pool costs more than the second thread saves.
SERIAL_FLOPS = 200_000


def run(x, weight, bias, params, out):
    """Compute into ``out``; all arrays C-contiguous, 4-D, one native float dtype."""
    t = tap_tables(x.shape[2:], weight.shape[2:], out.shape[2:], params)
    bias = np.empty(0, out.dtype) if bias is None else bias
    work = 2 * x.size * weight.shape[1] * weight.shape[2] * weight.shape[3]
    kernel = direct_kernel_serial if work < SERIAL_FLOPS else direct_kernel
    launch(kernel, x, weight, bias, out, *t, params.groups)
    return out
