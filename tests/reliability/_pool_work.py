"""Work for the multiprocessing tests (importable by spawned children)."""
from __future__ import annotations

import numpy as np


def conv_sum(args):
    """Run one convolution in the worker; return the result and whether it ran serially."""
    import convtranspose as ct
    from convtranspose import _threading
    seed, backend, dtype = args
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 6, 7, 5)).astype(dtype)
    w = rng.standard_normal((6, 4, 3, 3)).astype(dtype)
    y = ct.conv_transpose2d(x, w, stride=2, padding=1, backend=backend)
    return y, _threading.forked_serial()
