"""Every invalid input raises ValueError or TypeError naming the argument and the value."""
import re

import numpy as np
import pytest

import convtranspose as ct

X = np.zeros((2, 4, 5, 5), np.float32)
W = np.zeros((4, 3, 3, 3), np.float32)

VALUE_ERRORS = [
    (dict(x=np.zeros((4, 5))), r"x must be 3-D \(C_in, H, W\) or 4-D \(N, C_in, H, W\), got shape \(4, 5\)"),
    (dict(x=np.zeros((1, 2, 4, 5, 5))), r"x must be 3-D .* got shape \(1, 2, 4, 5, 5\)"),
    (dict(weight=np.zeros((4, 3, 3))), r"weight must be 4-D \(C_in, C_out // groups, kH, kW\), got shape \(4, 3, 3\)"),
    (dict(weight=np.zeros((4, 0, 3, 3))), r"weight must have a non-zero size in every dimension, got shape \(4, 0, 3, 3\)"),
    (dict(x=np.zeros((2, 4, 0, 5))), r"x must have non-zero height and width, got shape \(2, 4, 0, 5\)"),
    (dict(weight=np.zeros((5, 3, 3, 3))), r"x has 4 input channels \(shape \(2, 4, 5, 5\)\) but weight expects C_in = 5"),
    (dict(groups=3, weight=np.zeros((4, 1, 3, 3))), r"input channels C_in = 4 must be divisible by groups = 3"),
    (dict(bias=np.zeros(4)), r"bias must have shape \(C_out,\) = \(3,\), got \(4,\)"),
    (dict(bias=np.zeros((3, 1))), r"bias must have shape \(C_out,\) = \(3,\), got \(3, 1\)"),
    (dict(stride=0), r"stride must be >= 1 in each dimension, got \(0, 0\)"),
    (dict(stride=(2, -1)), r"stride must be >= 1 in each dimension, got \(2, -1\)"),
    (dict(stride=(1, 2, 3)), r"stride must be an int or a pair of ints, got \(1, 2, 3\)"),
    (dict(dilation=(1, 0)), r"dilation must be >= 1 in each dimension, got \(1, 0\)"),
    (dict(padding=-1), r"padding must be >= 0, got \(-1, -1\)"),
    (dict(padding=((0, 1), (2, -3))), r"padding must be >= 0, got \(\(0, 1\), \(2, -3\)\)"),
    (dict(padding=(1, 2, 3)), r"padding must be an int, a pair \(pH, pW\) or \(\(top, bottom\), \(left, right\)\), got \(1, 2, 3\)"),
    (dict(padding=((1, 2), (3, 4), (5, 6))), r"padding must be an int, a pair .* got \(\(1, 2\), \(3, 4\), \(5, 6\)\)"),
    (dict(output_padding=-1), r"output_padding must be >= 0, got \(-1, -1\)"),
    (dict(output_padding=(3, 0), stride=2),
     r"output_padding \(3, 0\) must be smaller than stride or dilation in each dimension, got stride \(2, 2\), dilation \(1, 1\)"),
    (dict(output_padding=1),
     r"output_padding \(1, 1\) must be smaller than stride or dilation in each dimension, got stride \(1, 1\), dilation \(1, 1\)"),
    (dict(groups=0), r"groups must be >= 1, got 0"),
    (dict(padding=4), r"output size \(-1, -1\) must be >= 1: input \(5, 5\), kernel \(3, 3\), stride \(1, 1\), padding \(4, 4\), dilation \(1, 1\)"),
    (dict(output_size=(20, 20), stride=2), r"output_size \(20, 20\) cannot be reached: valid sizes range from \(11, 11\) to \(12, 12\)"),
    (dict(output_size=(1, 11, 11)), r"output_size must have 2 or 4 elements for 4-D input, got \(1, 11, 11\)"),
    (dict(output_size=(12, 12), output_padding=0, stride=3), r"output_size \(12, 12\) cannot be reached"),
    (dict(output_size=(12, 12), output_padding=(0, 1), stride=2),
     r"output_padding \(0, 1\) conflicts with output_size \(12, 12\), which needs output_padding \(1, 1\)"),
    (dict(out=np.zeros((2, 3, 8, 8), np.float32)), r"out must have shape \(2, 3, 7, 7\), got \(2, 3, 8, 8\)"),
    (dict(out=np.zeros((2, 3, 7, 7), np.float64)), r"out must have dtype float32, got float64"),
    (dict(backend="gpu"), r"backend must be one of \('auto', 'direct', 'im2col'.*\), got 'gpu'"),
]

TYPE_ERRORS = [
    (dict(x=X.astype(np.int64)), r"arrays must be float32 or float64, got dtype int64"),
    (dict(x=X.astype(bool)), r"arrays must be float32 or float64, got dtype bool"),
    (dict(weight=W.astype(np.complex64)), r"arrays must be float32 or float64, got dtype complex64"),
    (dict(x=X.astype(np.float16)), r"arrays must be float32 or float64, got dtype float16"),
    (dict(x=np.array([[["a"]]], dtype=object)), r"arrays must be float32 or float64, got dtype object"),
    (dict(stride=2.0), r"stride must be an int or a pair of ints, got 2.0"),
    (dict(stride=True), r"stride must be an int or a pair of ints, got True"),
    (dict(dilation="2"), r"dilation must be an int or a pair of ints, got '2'"),
    (dict(groups=1.0), r"groups must be an int, got 1.0 of type float"),
    (dict(padding=None), r"padding must be an int, a pair .* got None"),
    (dict(output_padding=(0.5, 0)), r"output_padding must be an int or a pair of ints, got \(0.5, 0\)"),
    (dict(output_size=12), r"output_size must be a sequence of ints, got 12"),
    (dict(output_size=(7.0, 7.0)), r"output_size must be an int, got 7.0"),
    (dict(out=[[1.0]]), r"out must be a numpy.ndarray, got list"),
]


def call(x=X, weight=W, bias=None, **kwargs):
    return ct.conv_transpose2d(x, weight, bias, **kwargs)


@pytest.mark.parametrize("kwargs,message", VALUE_ERRORS, ids=[m[:40] for _, m in VALUE_ERRORS])
def test_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        call(**kwargs)


@pytest.mark.parametrize("kwargs,message", TYPE_ERRORS, ids=[m[:40] for _, m in TYPE_ERRORS])
def test_type_errors(kwargs, message):
    with pytest.raises(TypeError, match=message):
        call(**kwargs)


def test_read_only_out():
    out = np.zeros((2, 3, 7, 7), np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writeable, got a read-only array"):
        call(out=out)


def test_output_shape_validates_too():
    with pytest.raises(ValueError, match=re.escape("stride must be >= 1 in each dimension")):
        ct.output_shape((1, 4, 5, 5), (4, 3, 3, 3), stride=0)


def test_reference_validates_too():
    from convtranspose.reference import conv_transpose2d_reference
    with pytest.raises(ValueError, match="output_padding"):
        conv_transpose2d_reference(X, W, output_padding=2)


def test_errors_before_any_work_on_huge_bad_input():
    """Validation needs shapes only: a huge broadcast view fails fast without a copy."""
    huge = np.broadcast_to(np.float32(0), (10**4, 4, 10**4, 10**4))
    with pytest.raises(ValueError, match="bias must have shape"):
        call(x=huge, bias=np.zeros(5, np.float32))
