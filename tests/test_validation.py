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
    (dict(output_size=(1, 11, 11)), r"output_size must have 2 elements \(H, W\) or 4 \(the result.s whole shape\) for 4-D input, got \(1, 11, 11\)"),
    (dict(output_size=(12, 12), output_padding=0, stride=3), r"output_size \(12, 12\) cannot be reached"),
    (dict(output_size=(12, 12), output_padding=(0, 1), stride=2),
     r"output_padding \(0, 1\) conflicts with output_size \(12, 12\), which needs output_padding \(1, 1\)"),
    (dict(out=np.zeros((2, 3, 8, 8), np.float32)), r"out must have shape \(2, 3, 7, 7\), got \(2, 3, 8, 8\)"),
    (dict(out=np.zeros((2, 3, 7, 7), np.float64)), r"out must have dtype float32, got float64"),
    (dict(backend="gpu"), r"backend must be one of \('auto', 'direct', 'im2col'.*\), got 'gpu'"),
]

TYPE_ERRORS = [
    (dict(x=X.astype(np.int64)), r"^x must be float16, bfloat16, float32, float64, complex64 or complex128, got dtype int64$"),
    (dict(x=X.astype(bool)), r"^x must be float16, bfloat16, float32, float64, complex64 or complex128, got dtype bool$"),
    (dict(weight=W.astype(np.clongdouble)), r"^weight must be float16, bfloat16, float32, float64, complex64 or complex128, got dtype complex(256|192|128)$"),
    (dict(bias=np.zeros(3, np.int32)), r"^bias must be float16, bfloat16, float32, float64, complex64 or complex128, got dtype int32$"),
    (dict(x=X.astype(np.float16).view(np.uint16)), r"^x must be float16, bfloat16, float32, float64, complex64 or complex128, got dtype uint16$"),
    (dict(x=np.array([[["a"]]], dtype=object)), r"^x must be float16, bfloat16, float32, float64, complex64 or complex128, got dtype object$"),
    (dict(stride=np.array(2.0)), r"stride must be an int or a pair of ints, got array\(2\.\)"),
    (dict(groups=np.array([1])), r"groups must be an int, got array\(\[1\]\)"),
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


@pytest.mark.parametrize("kwargs", [
    dict(stride=(2,)), dict(stride=[2]), dict(padding=(1,)), dict(dilation=[2]),
    dict(stride=2, output_padding=(1,)), dict(stride=np.array(2)), dict(padding=np.array(1)),
    dict(dilation=np.array([2])), dict(groups=np.array(1)), dict(stride=np.int64(2)),
], ids=str)
def test_one_element_and_0d_parameters_act_as_ints(kwargs):
    """PyTorch expands a one-element list to both dimensions; a 0-d array is its int."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 4, 5, 5)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    as_torch = {k: v.tolist() if isinstance(v, np.ndarray) else int(v) if isinstance(v, np.integer)
                else v for k, v in kwargs.items()}
    expected = torch.nn.functional.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w),
                                                    **as_torch).numpy()
    got = ct.conv_transpose2d(x, w, **kwargs)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert ct.output_shape(x.shape, w.shape, **kwargs) == expected.shape


@pytest.mark.parametrize("kwargs, message", [
    (dict(stride=()), r"stride must be an int or a pair of ints, got \(\)"),
    (dict(dilation=[1, 2, 3]), r"dilation must be an int or a pair of ints, got \[1, 2, 3\]"),
])
def test_other_lengths_still_fail(kwargs, message):
    with pytest.raises(ValueError, match=message):
        call(**kwargs)


@pytest.mark.parametrize("name, dtypes, message", [
    ("conv_transpose2d_backward", (np.int64, np.float32, np.float32), "grad_output"),
    ("conv_transpose2d_backward", (np.float32, np.float32, np.int8), "weight"),
    ("conv2d_backward", (np.float32, np.uint8, np.float32), "x"),
])
def test_gradient_dtype_errors_name_the_argument(name, dtypes, message):
    x = np.zeros((1, 2, 4, 4), dtypes[1])
    if name == "conv2d_backward":
        w = np.zeros((3, 2, 3, 3), dtypes[2])
        g = np.zeros((1, 3, 2, 2), dtypes[0])
    else:
        w = np.zeros((2, 3, 3, 3), dtypes[2])
        g = np.zeros((1, 3, 6, 6), dtypes[0])
    with pytest.raises(TypeError, match=f"^{message} must be float16, bfloat16, float32, float64, complex64 or complex128, got dtype "):
        getattr(ct, name)(g, x, w)


@pytest.mark.parametrize("shapes, message", [
    (((1, 4, 5.0, 5), (4, 3, 3, 3)), r"input_shape must be a tuple of ints, got \(1, 4, 5.0, 5\)"),
    (((1, 4, 5, 5), (4, 3, 3.0, 3)), r"weight_shape must be a tuple of ints"),
    ((None, (4, 3, 3, 3)), r"input_shape must be a tuple of ints, got None"),
    (((1, 4, 5, 5), 4), r"weight_shape must be a tuple of ints, got 4"),
])
def test_output_shape_refuses_non_integer_sizes(shapes, message):
    with pytest.raises(TypeError, match=message):
        ct.output_shape(*shapes)


def test_output_shape_gives_python_ints():
    shape = ct.output_shape(np.array([1, 4, 5, 5]), (np.int64(4), 3, 3, 3), stride=2)
    assert shape == (1, 3, 11, 11) and all(type(v) is int for v in shape)


@pytest.mark.parametrize("args, message", [
    ((None, W), r"^x must be an array of float16, bfloat16, float32, float64, complex64 or complex128, got None$"),
    ((X, None), r"^weight must be an array of float16, bfloat16, float32, float64, complex64 or complex128, got None$"),
    ((X.astype(np.int64), W), r"^x must be float16, bfloat16, float32, float64, complex64 or complex128, got dtype int64$"),
    ((X, W, np.zeros(3, np.int64)), r"^bias must be float16, bfloat16, float32, float64, complex64 or complex128, got dtype int64$"),
    (([[1, 2]], W), r"^x must be float16, bfloat16, float32, float64, complex64 or complex128, got dtype int64$"),
])
def test_explain_errors_name_the_argument(args, message):
    with pytest.raises(TypeError, match=message):
        ct.explain(*args)


def test_explain_takes_lists_and_torch_cpu_tensors():
    torch = pytest.importorskip("torch")
    expected = ct.explain(X, W, stride=2)
    assert ct.explain(X.tolist(), W.tolist(), stride=2).backend == expected.backend
    got = ct.explain(torch.from_numpy(X), torch.from_numpy(W), torch.zeros(3), stride=2)
    assert (got.backend, got.flops) == (expected.backend, expected.flops)
    with pytest.raises(TypeError, match="x must be an array of float16, bfloat16, float32, float64, complex64 or complex128, got Tensor"):
        ct.explain(torch.zeros(X.shape, requires_grad=True), W)
