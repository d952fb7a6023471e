"""Type aliases of the public signatures, for type checkers and readers.

The public modules import these only under ``typing.TYPE_CHECKING`` (their annotations are
strings, ``from __future__ import annotations``), so nothing here runs on import of
:mod:`convtranspose`; importing this module directly works too.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Optional, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

__all__ = ["Array", "ArrayLike", "Backend", "Conv2dPadding", "DTypeLike", "Gradients",
           "IntPair", "Padding", "Seed", "Shape"]

#: An input array: NumPy arrays and anything ``numpy.asarray`` takes, CUDA arrays
#: (``__cuda_array_interface__``) and Dask arrays.
Array = Any
#: An int for both dimensions, or ``(height, width)``.
IntPair = Union[int, Sequence[int]]
#: ``p``, ``(pH, pW)``, or ``((top, bottom), (left, right))``.
Padding = Union[int, Sequence[int], Sequence[Sequence[int]]]
#: :func:`convtranspose.conv2d` also takes ``"valid"`` and ``"same"``.
Conv2dPadding = Union[Padding, Literal["valid", "same"]]
#: The ``backend=`` names.
Backend = Literal["auto", "direct", "im2col", "cuda"]
#: ``(grad_input, grad_weight, grad_bias)``, each ``None`` when not asked for.
Gradients = Tuple[Optional[Any], Optional[Any], Optional[Any]]
#: A shape: a sequence of ints.
Shape = Sequence[int]
#: What ``numpy.random.default_rng`` takes.
Seed = Union[None, int, np.random.Generator]
