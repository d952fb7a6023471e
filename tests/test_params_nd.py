"""Validation of every rank (1-D, 2-D, 3-D): shapes, errors naming the argument and the
rank, one-element broadcasting, per-side padding, and the transposed 'same'/'valid' rule
on hand-computed cases. The 2-D forms keep working as before."""
import re

import numpy as np
import pytest

import convtranspose as ct
from convtranspose.params import (ConvParams, _as_pair, _as_padding, _conv2d_padding,
                                  _make_params, _output_hw, _transpose_padding, normalise,
                                  normalise_backward, normalise_conv, normalise_conv2d,
                                  normalise_conv_backward)

F8 = np.dtype(np.float64)


def transposed(x_shape, w_shape, b_shape=None, **kwargs):
    kwargs.setdefault("rank", len(w_shape) - 2)
    return normalise(x_shape, w_shape, b_shape, [F8, F8], **kwargs)


def conv(x_shape, w_shape, b_shape=None, **kwargs):
    kwargs.setdefault("rank", len(w_shape) - 2)
    return normalise_conv(x_shape, w_shape, b_shape, [F8, F8], **kwargs)


# ----------------------------------------------------------------------------
# shapes


@pytest.mark.parametrize("x_shape, w_shape, kwargs, expected", [
    # 1-D: (L - 1)*s - 2p + d*(k - 1) + op + 1
    ((1, 512, 32), (512, 256, 16), dict(stride=8, padding=4), (1, 256, 256)),
    ((3, 10), (3, 2, 3), dict(stride=2, output_padding=1), (2, 22)),
    ((2, 4, 5), (4, 3, 3), dict(dilation=3, padding=((2, 0),)), (2, 3, 9)),
    ((2, 4, 5), (4, 3, 3), dict(groups=2), (2, 6, 7)),
    # 3-D: each dimension by itself
    ((2, 64, 8, 8, 8), (64, 32, 2, 2, 2), dict(stride=2), (2, 32, 16, 16, 16)),
    ((1, 2, 3, 4, 5), (2, 1, 3, 2, 1), dict(stride=(1, 2, 3), padding=(1, 0, 0)),
     (1, 1, 3, 8, 13)),
    ((2, 3, 4, 5), (2, 1, 3, 3, 3), dict(padding=((0, 1), (2, 0), (1, 1)), dilation=(1, 2, 1)),
     (1, 4, 6, 5)),
    ((1, 1, 2, 2, 2), (1, 1, 2, 2, 2), dict(stride=(3, 2, 2), output_padding=(2, 1, 0)),
     (1, 1, 7, 5, 4)),
])
def test_output_shapes_by_hand(x_shape, w_shape, kwargs, expected):
    assert ct.output_shape(x_shape, w_shape, **kwargs) == expected
    params, shape, dtype = transposed(x_shape, w_shape, **kwargs)
    assert shape == expected and dtype == F8 and params.rank == len(w_shape) - 2


def test_output_size_picks_output_padding_in_every_rank():
    params, shape, _ = transposed((1, 2, 5), (2, 3, 3), stride=3, output_size=(17,))
    assert (params.output_padding, shape) == ((2,), (1, 3, 17))
    params, shape, _ = transposed((1, 2, 3, 3, 3), (2, 1, 2, 2, 2), stride=2,
                                  output_size=(1, 2, 6, 7, 6))
    assert (params.output_padding, shape) == ((0, 1, 0), (1, 1, 6, 7, 6))


@pytest.mark.parametrize("x_shape, w_shape, kwargs, expected", [
    ((1, 2, 9), (4, 2, 3), dict(stride=2, padding=1), (1, 4, 5)),
    ((2, 9), (4, 1, 3), dict(groups=2, dilation=3), (4, 3)),
    ((1, 2, 9), (4, 2, 4), dict(padding="same"), (1, 4, 9)),
    ((1, 2, 5, 6, 7), (3, 2, 3, 2, 1), dict(stride=(2, 1, 3)), (1, 3, 2, 5, 3)),
    ((1, 2, 5, 6, 7), (3, 2, 3, 2, 1), dict(padding="valid"), (1, 3, 3, 5, 7)),
])
def test_conv_shapes_by_hand(x_shape, w_shape, kwargs, expected):
    assert conv(x_shape, w_shape, **kwargs)[1] == expected


def test_conv_same_puts_the_odd_extra_at_the_end():
    params = conv((1, 1, 9, 9, 9), (1, 1, 4, 3, 2), padding="same", dilation=(1, 2, 3))[0]
    assert params.pads == ((1, 2), (2, 2), (1, 2))


def test_rank_none_takes_the_weight_rank():
    assert transposed((1, 2, 5), (2, 3, 3), rank=None)[0].rank == 1
    assert transposed((1, 2, 5, 5, 5), (2, 3, 3, 3, 3), rank=None)[0].rank == 3
    assert conv((1, 2, 5, 5, 5), (3, 2, 3, 3, 3), rank=None)[0].rank == 3


def test_unbatched_input_in_every_rank():
    assert transposed((2, 5), (2, 3, 3))[1] == (3, 7)
    assert transposed((2, 5, 5, 5), (2, 3, 1, 1, 1))[1] == (3, 5, 5, 5)
    assert conv((2, 5), (3, 2, 3))[1] == (3, 3)


def test_backward_normalisers_check_grad_output_in_every_rank():
    params, dtype = normalise_backward((1, 3, 7), (1, 2, 5), (2, 3, 3), [F8] * 3, rank=1)
    assert params.rank == 1 and dtype == F8
    with pytest.raises(ValueError, match=re.escape("grad_output must have the forward result's "
                                                   "shape (1, 3, 7), got (1, 3, 8)")):
        normalise_backward((1, 3, 8), (1, 2, 5), (2, 3, 3), [F8] * 3, rank=1)
    params, _ = normalise_conv_backward((1, 3, 3, 3, 3), (1, 2, 5, 5, 5), (3, 2, 3, 3, 3),
                                        [F8] * 3, rank=3)
    assert params.output_padding == (0, 0, 0)
    with pytest.raises(ValueError, match="grad_output must have"):
        normalise_conv_backward((1, 3, 3, 3), (1, 2, 5, 5, 5), (3, 2, 3, 3, 3), [F8] * 3,
                                rank=3)


# ----------------------------------------------------------------------------
# errors name the argument and the rank

TRANSPOSED_ERRORS = [
    (dict(stride=(1, 2)), ValueError,
     r"stride must be an int or a tuple of 3 ints for a 3-D convolution, got \(1, 2\)"),
    (dict(stride=2.0), TypeError,
     r"stride must be an int or a tuple of 3 ints for a 3-D convolution, got 2.0"),
    (dict(dilation=(1, 1, 1, 1)), ValueError, r"dilation must be an int or a tuple of 3 ints"),
    (dict(output_padding=(0, 0)), ValueError,
     r"output_padding must be an int or a tuple of 3 ints for a 3-D convolution"),
    (dict(padding=(1, 2)), ValueError,
     r"padding must be an int, a tuple of 3 ints or 3 \(before, after\) pairs for a 3-D "
     r"convolution, got \(1, 2\)"),
    (dict(padding=((1, 2), (3, 4))), ValueError, r"padding must be an int, a tuple of 3 ints"),
    (dict(padding=((1, 2, 3), 0, 0)), ValueError,
     r"padding must be an int, a tuple of 3 ints or 3 \(before, after\) pairs"),
    (dict(padding=(0.5, 0, 0)), TypeError, r"padding must be an int, a tuple of 3 ints"),
    (dict(padding=(0, -1, 0)), ValueError, r"padding must be >= 0, got \(0, -1, 0\)"),
    (dict(stride=(1, 0, 1)), ValueError, r"stride must be >= 1 in each dimension, got \(1, 0, 1\)"),
    (dict(stride=2, output_padding=(0, 2, 0)), ValueError,
     r"output_padding \(0, 2, 0\) must be smaller than stride or dilation in each dimension, "
     r"got stride \(2, 2, 2\), dilation \(1, 1, 1\)"),
    (dict(padding=(0, 4, 0)), ValueError,
     r"output size \(5, -3, 5\) must be >= 1: input \(3, 3, 3\), kernel \(3, 3, 3\), "
     r"stride \(1, 1, 1\), padding \(0, 4, 0\), dilation \(1, 1, 1\)"),
    (dict(x_shape=(1, 2, 3)), ValueError,
     r"x must be 4-D \(C_in, D, H, W\) or 5-D \(N, C_in, D, H, W\), got shape \(1, 2, 3\)"),
    (dict(x_shape=(1, 4, 0, 3, 3)), ValueError,
     r"x must have non-zero depth, height and width, got shape \(1, 4, 0, 3, 3\)"),
    (dict(w_shape=(4, 2, 3, 3)), ValueError,
     r"weight must be 5-D \(C_in, C_out // groups, kD, kH, kW\), got shape \(4, 2, 3, 3\)"),
    (dict(w_shape=(5, 2, 3, 3, 3)), ValueError,
     r"x has 4 input channels \(shape \(1, 4, 3, 3, 3\)\) but weight expects C_in = 5"),
    (dict(b_shape=(3,)), ValueError, r"bias must have shape \(C_out,\) = \(2,\), got \(3,\)"),
    (dict(output_size=(5, 5)), ValueError,
     r"output_size must have 3 elements \(D, H, W\) or 5 .* for 5-D input, got \(5, 5\)"),
    (dict(output_size=(5, 6, 5), stride=1), ValueError,
     r"output_size \(5, 6, 5\) cannot be reached: valid sizes range from \(5, 5, 5\) to "
     r"\(5, 5, 5\) for input size \(3, 3, 3\)"),
    (dict(padding="full"), ValueError,
     r"padding must be 'valid', 'same', an int, a tuple of 3 ints or 3 \(before, after\) "
     r"pairs for a 3-D convolution, got 'full'"),
    (dict(padding="same", output_padding=(0, 1, 0), stride=2), ValueError,
     r"output_padding \(0, 1, 0\) cannot be given with padding='same'"),
    (dict(padding="same", output_size=(4, 6, 6), stride=2), ValueError,
     r"output_size \(4, 6, 6\) cannot be reached with padding='same': valid sizes range from "
     r"\(5, 5, 5\) to \(6, 6, 6\) for input size \(3, 3, 3\)"),
    (dict(padding="same", stride=0), ValueError, r"stride must be >= 1 in each dimension"),
    (dict(rank=4), ValueError, r"rank must be 1, 2 or 3, got 4"),
    (dict(rank=None, w_shape=(4, 2, 3, 3, 3, 3)), ValueError,
     r"weight must be 3-D, 4-D or 5-D \(C_in, C_out // groups, \*kernel_size\) for a 1-D, "
     r"2-D or 3-D transposed convolution, got shape \(4, 2, 3, 3, 3, 3\)"),
]


@pytest.mark.parametrize("kwargs, error, message", TRANSPOSED_ERRORS,
                         ids=[m[:40] for _, _, m in TRANSPOSED_ERRORS])
def test_transposed_errors_3d(kwargs, error, message):
    kwargs = dict(kwargs)
    args = dict(x_shape=(1, 4, 3, 3, 3), w_shape=(4, 2, 3, 3, 3), b_shape=None)
    args.update({k: kwargs.pop(k) for k in list(kwargs) if k in args})
    kwargs.setdefault("rank", 3)
    with pytest.raises(error, match=f"^{message}"):
        normalise(args["x_shape"], args["w_shape"], args["b_shape"], [F8, F8], **kwargs)


ONE_D_ERRORS = [
    (dict(stride=(1, 2)), ValueError,
     r"stride must be an int or a tuple of 1 int for a 1-D convolution, got \(1, 2\)"),
    (dict(padding=(1, 2)), ValueError,
     r"padding must be an int, a tuple of 1 int or 1 \(before, after\) pair for a 1-D "
     r"convolution, got \(1, 2\)"),
    (dict(x_shape=(1, 4, 5, 5)), ValueError,
     r"x must be 2-D \(C_in, W\) or 3-D \(N, C_in, W\), got shape \(1, 4, 5, 5\)"),
    (dict(x_shape=(4, 0)), ValueError, r"x must have non-zero width, got shape \(4, 0\)"),
    (dict(w_shape=(4, 2, 3, 3)), ValueError,
     r"weight must be 3-D \(C_in, C_out // groups, kW\), got shape \(4, 2, 3, 3\)"),
    (dict(groups=3), ValueError, r"input channels C_in = 4 must be divisible by groups = 3"),
    (dict(output_size=(5, 5)), ValueError,
     r"output_size must have 1 element \(W\) or 3 .* for 3-D input, got \(5, 5\)"),
    (dict(padding="same", output_padding=1, stride=2), ValueError,
     r"output_padding \(1,\) cannot be given with padding='same'"),
]


@pytest.mark.parametrize("kwargs, error, message", ONE_D_ERRORS,
                         ids=[m[:40] for _, _, m in ONE_D_ERRORS])
def test_transposed_errors_1d(kwargs, error, message):
    kwargs = dict(kwargs)
    args = dict(x_shape=(1, 4, 5), w_shape=(4, 2, 3))
    args.update({k: kwargs.pop(k) for k in list(kwargs) if k in args})
    with pytest.raises(error, match=f"^{message}"):
        normalise(args["x_shape"], args["w_shape"], None, [F8, F8], rank=1, **kwargs)


CONV_ERRORS = [
    (1, dict(padding="same", stride=2), ValueError, r"padding='same' needs stride 1, got stride 2"),
    (1, dict(padding="full"), ValueError,
     r"padding must be 'valid', 'same', an int, a tuple of 1 int or 1 \(before, after\) pair "
     r"for a 1-D convolution, got 'full'"),
    (1, dict(w_shape=(3, 4, 3, 3)), ValueError,
     r"weight must be 3-D \(C_out, C_in // groups, kW\), got shape \(3, 4, 3, 3\)"),
    (3, dict(stride=(2, 2)), ValueError,
     r"stride must be an int or a tuple of 3 ints for a 3-D convolution, got \(2, 2\)"),
    (3, dict(x_shape=(4, 2, 2)), ValueError,
     r"x must be 4-D \(C_in, D, H, W\) or 5-D \(N, C_in, D, H, W\), got shape \(4, 2, 2\)"),
    (3, dict(padding=(0, 0, -1)), ValueError, r"padding must be >= 0, got \(0, 0, -1\)"),
    (3, dict(w_shape=(3, 4, 6, 1, 1)), ValueError,
     r"output size \(0, 5, 5\) must be >= 1: input \(5, 5, 5\) padded by \(0, 0, 0\) is "
     r"smaller than the dilated kernel \(6, 1, 1\) with dilation \(1, 1, 1\)"),
    (3, dict(groups=2, w_shape=(4, 4, 3, 3, 3)), ValueError,
     r"x has 4 input channels \(shape \(1, 4, 5, 5, 5\)\) but weight \(4, 4, 3, 3, 3\) with "
     r"groups = 2 expects C_in = 8"),
    (3, dict(groups=2), ValueError,
     r"output channels C_out = 3 \(weight shape \(3, 4, 3, 3, 3\)\) must be divisible by "
     r"groups = 2"),
    (None, dict(w_shape=(3, 4)), ValueError,
     r"weight must be 3-D, 4-D or 5-D \(C_out, C_in // groups, \*kernel_size\) for a 1-D, "
     r"2-D or 3-D convolution, got shape \(3, 4\)"),
]


@pytest.mark.parametrize("rank, kwargs, error, message", CONV_ERRORS,
                         ids=[m[:40] for _, _, _, m in CONV_ERRORS])
def test_conv_errors(rank, kwargs, error, message):
    kwargs = dict(kwargs)
    spatial = (5,) * (rank or 3)
    args = dict(x_shape=(1, 4) + spatial, w_shape=(3, 4) + (3,) * (rank or 3))
    args.update({k: kwargs.pop(k) for k in list(kwargs) if k in args})
    with pytest.raises(error, match=f"^{message}"):
        normalise_conv(args["x_shape"], args["w_shape"], None, [F8, F8], rank=rank, **kwargs)


def test_rank2_messages_are_unchanged():
    """The 2-D wording stays (2-D callers and their tests rely on it)."""
    with pytest.raises(ValueError,
                       match=r"^stride must be an int or a pair of ints, got \(1, 2, 3\)$"):
        transposed((1, 4, 5, 5), (4, 3, 3, 3), stride=(1, 2, 3))
    with pytest.raises(ValueError, match=re.escape(
            "padding must be an int, a pair (pH, pW) or ((top, bottom), (left, right)), "
            "got (1, 2, 3)")):
        transposed((1, 4, 5, 5), (4, 3, 3, 3), padding=(1, 2, 3))
    with pytest.raises(ValueError, match=re.escape(
            "padding must be 'valid', 'same', an int, a pair or ((top, bottom), (left, right)), "
            "got 'full'")):
        transposed((1, 4, 5, 5), (4, 3, 3, 3), padding="full")
    with pytest.raises(ValueError, match=re.escape(
            "weight must be 4-D (C_in, C_out // groups, kH, kW), got shape (4, 3, 3)")):
        normalise((1, 4, 5, 5), (4, 3, 3), None, [F8, F8])      # rank 2 by default
    with pytest.raises(ValueError, match=re.escape(
            "weight must be 4-D (C_out, C_in // groups, kH, kW), got shape (4, 3, 3)")):
        normalise_conv2d((1, 4, 5, 5), (4, 3, 3), None, [F8, F8])


# ----------------------------------------------------------------------------
# one-element broadcasting and per-side padding


@pytest.mark.parametrize("value, rank, expected", [
    ((2,), 3, (2, 2, 2)), ([2], 1, (2,)), (np.array([3]), 3, (3, 3, 3)),
    (np.array(2), 3, (2, 2, 2)),
    (np.int64(2), 1, (2,)), ((1, 2, 3), 3, (1, 2, 3)), ([4], 2, (4, 4)),
])
def test_one_element_sequences_count_for_every_dimension(value, rank, expected):
    params = _make_params(value, 0, 0, value, 1, rank)
    assert params.stride == params.dilation == expected
    assert all(type(v) is int for v in params.stride)


def test_one_element_padding_and_output_padding():
    params = _make_params(2, (1,), [1], 1, 1, 3)
    assert params.pads == ((1, 1),) * 3 and params.output_padding == (1, 1, 1)


def test_one_element_parameters_match_torch_shapes():
    torch = pytest.importorskip("torch")
    f = torch.nn.functional
    x1, w1 = torch.zeros(1, 2, 5, dtype=torch.float64), torch.zeros(2, 3, 3, dtype=torch.float64)
    x3 = torch.zeros(1, 2, 3, 4, 5, dtype=torch.float64)
    w3 = torch.zeros(2, 3, 3, 2, 1, dtype=torch.float64)
    for x, w, fn in ((x1, w1, f.conv_transpose1d), (x3, w3, f.conv_transpose3d)):
        kw = dict(stride=[2], padding=[1], output_padding=[1], dilation=[2])
        expected = tuple(fn(x, w, **kw).shape)
        assert ct.output_shape(tuple(x.shape), tuple(w.shape), **kw) == expected


@pytest.mark.parametrize("padding, rank, expected", [
    (((0, 1), (2, 0), (1, 1)), 3, ((0, 1), (2, 0), (1, 1))),
    (((1, 2), 3, (0,)), 3, ((1, 2), (3, 3), (0, 0))),       # an int or (p,) is both sides
    (((0, 3),), 1, ((0, 3),)),
    ([[1, 2]], 1, ((1, 2),)),
    (np.array([[1, 2], [3, 4], [5, 6]]), 3, ((1, 2), (3, 4), (5, 6))),
    ((1, 2, 3), 3, ((1, 1), (2, 2), (3, 3))),
    (((1, 2), (3, 4)), 2, ((1, 2), (3, 4))),
])
def test_per_side_padding(padding, rank, expected):
    assert _as_padding(padding, rank) == expected
    assert _make_params(1, padding, 0, 1, 1, rank).pads == expected


def test_per_side_padding_sets_each_dimension():
    shape = ct.output_shape((1, 1, 4, 4, 4), (1, 1, 3, 3, 3), stride=2,
                            padding=((0, 1), (2, 0), (1, 1)))
    assert shape == (1, 1, 8, 7, 7)          # full 9, minus 1, 2 and 2


# ----------------------------------------------------------------------------
# the transposed 'same' and 'valid'

# (kernel, stride, dilation, T = d*(k - 1) + 1 - s, pads, output_padding)
SAME_CASES = [
    (3, 2, 1, 1, (0, 1), 0),       # odd T: the extra row at the end
    (4, 2, 1, 2, (1, 1), 0),
    (4, 1, 1, 3, (1, 2), 0),       # stride 1: the convolution's 'same' (odd extra at the end)
    (5, 1, 1, 4, (2, 2), 0),
    (6, 1, 1, 5, (2, 3), 0),
    (3, 2, 2, 3, (1, 2), 0),       # a dilated kernel of extent 5
    (2, 2, 1, 0, (0, 0), 0),       # T = 0: the full result is the answer
    (1, 2, 1, -1, (0, 0), 1),      # T < 0: grows at the end, as output_padding would
    (1, 3, 1, -2, (0, 0), 2),
    (2, 5, 1, -3, (0, 0), 3),
    (16, 8, 1, 8, (4, 4), 0),      # HiFi-GAN's k16 s8 upsampler: PyTorch's padding 4
]


@pytest.mark.parametrize("k, s, d, t, pads, op", SAME_CASES)
def test_same_rule_1d(k, s, d, t, pads, op):
    assert d * (k - 1) + 1 - s == t
    params, shape, _ = transposed((2, 3, 7), (3, 1, k), stride=s, dilation=d, padding="same")
    assert params.pads == (pads,) and params.output_padding == (op,)
    assert shape == (2, 1, 7 * s)
    assert ct.output_shape((2, 3, 7), (3, 1, k), stride=s, dilation=d, padding="same") == shape


def test_same_rule_per_dimension_3d():
    (k1, s1, d1, _, p1, o1), (k2, s2, d2, _, p2, o2), (k3, s3, d3, _, p3, o3) = (
        SAME_CASES[0], SAME_CASES[7], SAME_CASES[5])
    params, shape, _ = transposed((1, 2, 3, 4, 5), (2, 2, k1, k2, k3), stride=(s1, s2, s3),
                                  dilation=(d1, d2, d3), padding="same")
    assert params.pads == (p1, p2, p3) and params.output_padding == (o1, o2, o3)
    assert shape == (1, 2, 3 * s1, 4 * s2, 5 * s3)


def test_same_is_onnx_same_upper_when_t_is_not_negative():
    """ONNX ConvTranspose, auto_pad=SAME_UPPER (the operator's documentation):
    total_padding = s*(in - 1) + op + ((k - 1)*d + 1) - out, with out = in * s;
    pads[start] = total_padding // 2, pads[end] = total_padding - total_padding // 2."""
    rng = np.random.default_rng(5)
    for _ in range(200):
        n, k, s, d = (int(v) for v in rng.integers(1, 7, 4))
        total = s * (n - 1) + 0 + ((k - 1) * d + 1) - n * s
        params, shape, _ = transposed((1, 1, n), (1, 1, k), stride=s, dilation=d,
                                      padding="same")
        assert shape[-1] == n * s
        if total >= 0:
            assert params.pads == ((total // 2, total - total // 2),)
            assert params.output_padding == (0,)
        else:
            assert params.pads == ((0, 0),) and params.output_padding == (-total,)


def test_same_with_output_size_follows_tensorflow():
    """TensorFlow's conv2d_transpose(output_shape=O, padding='SAME') accepts any O with
    ceil(O / s) == input and crops T = (in - 1)*s + d*(k - 1) + 1 - O, T // 2 first."""
    # in 3, k 3, s 2: full 7; O = 5 crops 2 (1 + 1), O = 6 crops 1 (0 + 1)
    assert transposed((1, 1, 3), (1, 1, 3), stride=2, padding="same",
                      output_size=(5,))[0].pads == ((1, 1),)
    assert transposed((1, 1, 3), (1, 1, 3), stride=2, padding="same",
                      output_size=(1, 1, 6))[0].pads == ((0, 1),)
    # k 1, s 4, in 2: full 5; O = 8 grows by 3 at the end, O = 5 is the full result
    params, shape, _ = transposed((1, 1, 2), (1, 1, 1), stride=4, padding="same",
                                  output_size=(8,))
    assert (params.pads, params.output_padding, shape) == (((0, 0),), (3,), (1, 1, 8))
    assert transposed((1, 1, 2), (1, 1, 1), stride=4, padding="same",
                      output_size=(5,))[0].output_padding == (0,)


def test_valid_is_padding_zero_and_keeps_output_padding_and_size():
    params, shape, _ = transposed((1, 2, 4, 4, 4), (2, 1, 3, 3, 3), stride=2,
                                  padding="valid", output_padding=(1, 0, 1))
    assert params.pads == ((0, 0),) * 3 and params.output_padding == (1, 0, 1)
    assert shape == (1, 1, 10, 9, 10)
    assert transposed((1, 2, 4), (2, 1, 3), stride=2, padding="valid",
                      output_size=(10,))[0].output_padding == (1,)


def test_transpose_padding_helper_without_input_sizes():
    """What a layer can resolve at construction: 'same' needs only the kernel."""
    assert _transpose_padding("same", 0, (4, 5), 2, 1) == (((1, 1), (1, 2)), (0, 0), None)
    assert _transpose_padding(((1, 0),), 0, (4,), 2, 1) == (((1, 0),), 0, None)
    with pytest.raises(ValueError, match="output_padding"):
        _transpose_padding("same", (1, 0), (4, 4), 2, 1)


def test_string_padding_reaches_conv_transpose2d():
    """conv_transpose2d goes through normalise, so 'same' and 'valid' work there already."""
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 4))
    w = np.random.default_rng(1).standard_normal((2, 3, 3, 3))
    assert ct.conv_transpose2d(x, w, stride=2, padding="same").shape == (1, 3, 6, 8)
    np.testing.assert_allclose(ct.conv_transpose2d(x, w, padding="valid"),
                               ct.conv_transpose2d(x, w), rtol=1e-12)


# ----------------------------------------------------------------------------
# the 2-D compatibility forms


def test_conv_params_rank2_positional_form():
    old = ConvParams((2, 1), (1, 0), (0, 2), (1, 0), (1, 1), 3)
    new = ConvParams((2, 1), ((1, 0), (0, 2)), (1, 0), (1, 1), 3)
    assert old == new and hash(old) == hash(new)
    assert (old.pad_h, old.pad_w, old.padding, old.rank) == ((1, 0), (0, 2), ((1, 0), (0, 2)), 2)


def test_conv_params_other_ranks():
    p = _make_params(2, ((1, 0), (0, 2), 3), 1, 1, 1, 3)
    assert p.rank == 3 and p.padding == p.pads == ((1, 0), (0, 2), (3, 3))
    with pytest.raises(AttributeError, match="pad_h and pad_w exist for 2-D parameters only"):
        p.pad_h
    with pytest.raises(ValueError, match="ConvParams needs 1, 2 or 3 entries"):
        ConvParams((1, 1), ((0, 0),), (0, 0), (1, 1), 1)


def test_params_cache_keeps_ranks_apart():
    assert _make_params(2, 1, 0, 1, 1, 1).stride == (2,)
    assert _make_params(2, 1, 0, 1, 1, 3).stride == (2, 2, 2)
    assert _make_params(2, 1, 0, 1, 1).stride == (2, 2)


def test_rank2_helpers_keep_their_meaning():
    assert _as_pair(3, "stride") == (3, 3)
    assert _conv2d_padding("same", (4, 3), 1, 1) == ((1, 2), (1, 1))
    params = _make_params(2, 1, 1, 1, 1)
    assert _output_hw((4, 5), (3, 3), params) == (8, 10)
    assert params == ConvParams((2, 2), (1, 1), (1, 1), (1, 1), (1, 1), 1)
