"""The references against hand-computed cases, and against each other."""
import numpy as np
import pytest

import convtranspose as ct
from convtranspose.reference import conv_transpose2d_scatter, conv_transpose2d_zero_insertion
from convtranspose.testing import random_problem

REFERENCES = [conv_transpose2d_scatter, conv_transpose2d_zero_insertion]
X = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
ONES2 = np.ones((1, 1, 2, 2))

# (kwargs, expected output image) worked out by hand: each input pixel stamps the kernel
HAND = [
    (dict(), [[1, 3, 2], [4, 10, 6], [3, 7, 4]]),
    (dict(padding=1), [[10]]),
    (dict(padding=((1, 0), (0, 1))), [[4, 10], [3, 7]]),
    (dict(stride=2), [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]),
    (dict(stride=2, output_padding=1), [[1, 1, 2, 2, 0], [1, 1, 2, 2, 0], [3, 3, 4, 4, 0],
                                        [3, 3, 4, 4, 0], [0, 0, 0, 0, 0]]),
    (dict(dilation=2), [[1, 2, 1, 2], [3, 4, 3, 4], [1, 2, 1, 2], [3, 4, 3, 4]]),
    (dict(stride=(1, 3)), [[1, 1, 0, 2, 2], [4, 4, 0, 6, 6], [3, 3, 0, 4, 4]]),
]


@pytest.mark.parametrize("ref", REFERENCES)
@pytest.mark.parametrize("kwargs,expected", HAND)
def test_hand_computed(ref, kwargs, expected):
    np.testing.assert_array_equal(ref(X, ONES2, **kwargs)[0, 0], expected)


@pytest.mark.parametrize("ref", REFERENCES)
def test_groups_and_bias_by_hand(ref):
    x = np.stack([X[0, 0], 10 * X[0, 0]])[None]          # 2 channels
    w = np.array([2.0, 3.0]).reshape(2, 1, 1, 1)        # depthwise 1x1
    out = ref(x, w, np.array([0.5, -1.0]), groups=2)
    np.testing.assert_array_equal(out[0, 0], 2 * X[0, 0] + 0.5)
    np.testing.assert_array_equal(out[0, 1], 30 * X[0, 0] - 1.0)


def test_single_pixel_stamps_the_kernel():
    w = np.arange(12.0).reshape(1, 1, 3, 4)
    np.testing.assert_array_equal(conv_transpose2d_scatter(np.ones((1, 1, 1, 1)), w)[0, 0],
                                  w[0, 0])


def test_references_agree_on_random_problems():
    rng = np.random.default_rng(7)
    for i in range(150):
        p = random_problem(rng)
        x, w, b = p.arrays(np.float64, i)
        a = conv_transpose2d_scatter(x, w, b, **p.kwargs)
        z = conv_transpose2d_zero_insertion(x, w, b, **p.kwargs)
        assert a.shape == z.shape == ct.output_shape(p.x_shape, p.w_shape, **p.kwargs)
        np.testing.assert_allclose(a, z, rtol=1e-13, atol=1e-13, err_msg=str(p))
