"""Without a GPU: ``import convtranspose`` and the CPU paths never import numba.cuda, and
the cuda backend says clearly why it cannot run."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import convtranspose

CODE = """
import sys, numpy as np
import convtranspose as ct
assert ct.conv_transpose2d(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)), stride=2).shape == (1, 1, 4, 4)
ct.explain(np.empty((1, 1, 2, 2)), np.empty((1, 1, 2, 2)))
one = np.ones((1, 1, 2, 2))
ct.conv_transpose2d_backward(np.ones((1, 1, 3, 3)), one, one)
ct.conv2d_backward(np.ones((1, 1, 1, 1)), one, one)
import convtranspose.cuda                      # the package itself is light too
print(sorted(m for m in sys.modules if m.startswith(("numba.cuda", "numba_cuda"))))
"""


def test_import_does_not_load_numba_cuda():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(convtranspose.__file__)), env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_backend_cuda_without_gpu_says_why():
    from convtranspose import cuda
    if cuda.is_available():
        pytest.skip("a GPU (or the simulator) is present")
    with pytest.raises(RuntimeError, match="backend='cuda' needs a CUDA GPU"):
        convtranspose.conv_transpose2d(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)), backend="cuda")
    assert cuda.info()["available"] is False


ONES = np.ones((1, 1, 2, 2))
#: conv2d and the gradients: call(backend=..., first operand) with valid NumPy shapes.
GRAD_CALLS = {
    "conv2d": lambda a, **kw: convtranspose.conv2d(a, ONES, **kw),
    "conv2d_backward": lambda a, **kw: convtranspose.conv2d_backward(
        np.ones((1, 1, 1, 1)), a, ONES, **kw),
    "conv_transpose2d_backward": lambda a, **kw: convtranspose.conv_transpose2d_backward(
        np.ones((1, 1, 3, 3)), a, ONES, **kw),
}


@pytest.mark.parametrize("name", list(GRAD_CALLS))
def test_backward_backend_cuda_without_gpu_says_why(name):
    from convtranspose import cuda
    if cuda.is_available():
        pytest.skip("a GPU (or the simulator) is present")
    with pytest.raises(RuntimeError, match="backend='cuda' needs a CUDA GPU"):
        GRAD_CALLS[name](ONES, backend="cuda")


class _FakeCudaArray:
    """Claims to be a CUDA array (shape and dtype only)."""

    shape, dtype = (1, 1, 2, 2), np.dtype(np.float32)
    __cuda_array_interface__ = {"shape": (1, 1, 2, 2), "typestr": "<f4", "data": (0, False),
                                "version": 2}


def test_cuda_array_without_gpu_is_type_error():
    from convtranspose import cuda
    if cuda.is_available():
        pytest.skip("a GPU (or the simulator) is present")
    with pytest.raises(TypeError, match="no CUDA GPU can be used"):
        convtranspose.conv_transpose2d(_FakeCudaArray(), np.ones((1, 1, 2, 2), np.float32))


@pytest.mark.parametrize("name", list(GRAD_CALLS))
def test_backward_cuda_array_without_gpu_is_type_error(name):
    from convtranspose import cuda
    if cuda.is_available():
        pytest.skip("a GPU (or the simulator) is present")
    with pytest.raises(TypeError, match="no CUDA GPU can be used"):
        GRAD_CALLS[name](_FakeCudaArray())
