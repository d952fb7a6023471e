"""convtranspose: PyTorch-exact 1-D, 2-D and 3-D transposed convolution for NumPy, compiled with Numba.

>>> import numpy as np
>>> import convtranspose as ct
>>> x = np.random.default_rng(0).standard_normal((2, 16, 8, 8)).astype(np.float32)
>>> layer = ct.ConvTranspose2d(16, 8, kernel_size=4, stride=2, padding=1, seed=0)
>>> layer(x).shape
(2, 8, 16, 16)
"""
from . import cuda
from .api import conv_transpose2d, explain
from .conv import conv2d, conv2d_backward
from .rank1 import conv1d, conv1d_backward, conv_transpose1d, conv_transpose1d_backward
from .rank3 import conv3d, conv3d_backward, conv_transpose3d, conv_transpose3d_backward
from .cpu.workspace import get_workspace_limit, set_workspace_limit
from .grad import conv_transpose2d_backward
from .layer import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from .params import output_shape
from . import jit  # noqa: E402  (registers the functions' overloads for @njit code)

__version__ = "0.1.0"

__all__ = ["conv_transpose2d", "conv_transpose2d_backward", "conv2d", "conv2d_backward",
           "conv_transpose1d", "conv_transpose1d_backward", "conv1d", "conv1d_backward",
           "conv_transpose3d", "conv_transpose3d_backward", "conv3d", "conv3d_backward",
           "output_shape", "ConvTranspose2d", "Conv2d", "ConvTranspose1d", "Conv1d",
           "ConvTranspose3d", "Conv3d", "explain",
           "cuda",
           "get_workspace_limit", "set_workspace_limit", "__version__"]
