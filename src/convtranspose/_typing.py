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

__all__ = ["Array", "ArrayLike", "AutoPadding", "Backend", "Conv2dPadding", "DTypeLike",
           "Gradients", "IntPair", "IntTuple", "Padding", "Rank", "Seed", "Shape"]

#: An input array: NumPy arrays and anything ``numpy.asarray`` takes, CUDA arrays
#: (``__cuda_array_interface__``) and Dask arrays.
Array = Any
#: An int for every spatial dimension, or one per dimension (``(height, width)`` in 2-D,
#: ``(depth, height, width)`` in 3-D; a one-element sequence counts for all of them).
IntTuple = Union[int, Sequence[int]]
#: The 2-D name of :data:`IntTuple`: an int for both dimensions, or ``(height, width)``.
IntPair = IntTuple
#: ``p``, one ``p`` per spatial dimension, or one ``(before, after)`` pair per dimension:
#: in 2-D ``p``, ``(pH, pW)`` or ``((top, bottom), (left, right))``.
Padding = Union[int, Sequence[int], Sequence[Sequence[int]]]
#: :data:`Padding`, or ``"valid"`` or ``"same"`` (PyTorch's for the convolutions; for the
#: transposed ones an output of ``input * stride``, as TensorFlow and Keras mean it).
AutoPadding = Union[Padding, Literal["valid", "same"]]
#: The 2-D name that :func:`convtranspose.conv2d` has used for :data:`AutoPadding`.
Conv2dPadding = AutoPadding
#: The number of spatial dimensions of a (transposed) convolution.
Rank = Literal[1, 2, 3]
#: The ``backend=`` names.
Backend = Literal["auto", "direct", "im2col", "cuda"]
#: ``(grad_input, grad_weight, grad_bias)``, each ``None`` when not asked for.
Gradients = Tuple[Optional[Any], Optional[Any], Optional[Any]]
#: A shape: a sequence of ints.
Shape = Sequence[int]
#: What ``numpy.random.default_rng`` takes.
Seed = Union[None, int, np.random.Generator]
