"""Problems shared by the reliability tests: a small mixed set covering every parameter."""
from __future__ import annotations

import numpy as np

from convtranspose.testing import random_problem

BACKENDS = ("direct", "im2col", "auto")


def mixed_problems(count, seed=0):
    """``count`` valid random problems (batched, unbatched, groups, dilation, padding)."""
    rng = np.random.default_rng(seed)
    return [random_problem(rng) for _ in range(count)]
