import numpy as np
import pytest

from convtranspose.dispatch import BACKENDS

#: Every CPU backend plus the dispatcher; tests run each against the same reference.
CPU_BACKENDS = [*BACKENDS, "auto"]
DTYPES = [np.float32, np.float64]


@pytest.fixture(params=CPU_BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)
