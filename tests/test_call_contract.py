"""One contract for every rank and layout: shapes in the caller's layout, output_shape and
explain agreeing with the call, and the same refusals (Dask, CUDA, bad input) at every rank."""
import numpy as np
import pytest

import convtranspose as ct
from convtranspose.params import DATA_FORMATS

FORWARD = {1: ct.conv_transpose1d, 2: ct.conv_transpose2d, 3: ct.conv_transpose3d}
CONV = {1: ct.conv1d, 2: ct.conv2d, 3: ct.conv3d}
BACKWARD = {1: ct.conv_transpose1d_backward, 2: ct.conv_transpose2d_backward,
            3: ct.conv_transpose3d_backward}
LAYERS = {1: ct.ConvTranspose1d, 2: ct.ConvTranspose2d, 3: ct.ConvTranspose3d}


def _last(a, rank):
    """A channels-first array as C-contiguous channels-last memory."""
    return np.ascontiguousarray(np.moveaxis(a, -rank - 1, -1))


def _operands(rng, rank, n=1, c_in=4, c_out=3, size=3, k=3, groups=1):
    x = rng.standard_normal((n, c_in) + (size,) * rank)
    w = rng.standard_normal((c_in, c_out // groups) + (k,) * rank)
    return x, w


# ----------------------------------------------------------------------------
# output_size read in the caller's layout (issue 23, item 1)

@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("unbatched", [False, True])
def test_whole_output_size_in_channels_last_is_the_results_shape(rank, unbatched):
    rng = np.random.default_rng(rank)
    x, w = _operands(rng, rank, c_in=5, c_out=7, size=2)
    xl = _last(x, rank)[0] if unbatched else _last(x, rank)
    fmt = DATA_FORMATS[rank][1]
    f = FORWARD[rank]
    y = f(xl, w, stride=3, output_padding=1, data_format=fmt)
    got = f(xl, w, stride=3, data_format=fmt, output_size=y.shape)
    assert got.shape == y.shape
    np.testing.assert_array_equal(got, y)
    # the spatial sizes alone, too, and the layer
    assert f(xl, w, stride=3, data_format=fmt, output_size=y.shape[-rank - 1:-1]).shape == y.shape
    layer = LAYERS[rank](5, 7, 3, stride=3, bias=False, seed=0, data_format=fmt,
                         dtype=np.float64)
    layer.weight[...] = w
    np.testing.assert_array_equal(layer(xl, output_size=y.shape), y)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_whole_output_size_in_channels_last_on_dask(rank):
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(rank)
    x, w = _operands(rng, rank, c_in=5, c_out=7, size=2)
    xl, fmt = _last(x, rank), DATA_FORMATS[rank][1]
    y = FORWARD[rank](xl, w, stride=3, output_padding=1, data_format=fmt)
    got = FORWARD[rank](da.from_array(xl), w, stride=3, data_format=fmt, output_size=y.shape)
    np.testing.assert_array_equal(got.compute(), y)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_messages_show_shapes_in_the_callers_layout(rank):
    rng = np.random.default_rng(rank)
    x, w = _operands(rng, rank, c_in=5, c_out=7, size=2)
    xl, fmt = _last(x, rank), DATA_FORMATS[rank][1]
    y = FORWARD[rank](xl, w, stride=3, data_format=fmt)
    bad = np.zeros(y.shape[:-1] + (8,))
    expected = str(y.shape).replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(ValueError, match=f"forward result's shape {expected}, got"):
        BACKWARD[rank](bad, xl, w, stride=3, data_format=fmt)
    with pytest.raises(ValueError, match=r"shape \(1, " + ", ".join(["2"] * rank) + r", 6\)"):
        FORWARD[rank](np.zeros((1,) + (2,) * rank + (6,)), w, data_format=fmt)


# ----------------------------------------------------------------------------
# output_shape: the call's arguments, in the call's order (issue 23, item 2)

def _random_call(rng, rank):
    groups = int(rng.choice([1, 2]))
    c_in, c_out = 2 * int(rng.integers(1, 3)), 2 * int(rng.integers(1, 3))
    k = tuple(int(v) for v in rng.integers(1, 4, rank))
    stride = tuple(int(v) for v in rng.integers(1, 4, rank))
    dilation = tuple(int(v) for v in rng.integers(1, 3, rank))
    padding = tuple(int(rng.integers(0, d * (kk - 1) + 1)) for kk, d in zip(k, dilation))
    output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
    size = tuple(int(v) for v in rng.integers(1, 5, rank))
    batched = bool(rng.integers(0, 2))
    x = rng.standard_normal(((2,) if batched else ()) + (c_in,) + size)
    w = rng.standard_normal((c_in, c_out // groups) + k)
    return x, w, [stride, padding, output_padding, groups, dilation]


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("last", [False, True])
def test_output_shape_equals_the_calls_shape(rank, last):
    rng = np.random.default_rng(10 * rank + last)
    fmt = DATA_FORMATS[rank][last]
    names = ["stride", "padding", "output_padding", "groups", "dilation"]
    checked = 0
    for _ in range(25):
        x, w, args = _random_call(rng, rank)
        if last:
            x = np.moveaxis(x, -rank - 1, -1)
        try:
            y = FORWARD[rank](x, w, None, *args, data_format=fmt)
        except ValueError:      # an output size below 1: output_shape must refuse it too
            with pytest.raises(ValueError):
                ct.output_shape(x.shape, w.shape, *args, data_format=fmt)
            continue
        assert ct.output_shape(x.shape, w.shape, *args, data_format=fmt) == y.shape
        kw = dict(zip(names, args))
        assert ct.output_shape(x.shape, w.shape, data_format=fmt, **kw) == y.shape
        checked += 1
        if any(op >= s for op, s in zip(args[2], args[0])):
            continue            # output_size reaches output_padding below the stride only
        size = y.shape if checked % 2 else (y.shape[-rank - 1:-1] if last else y.shape[-rank:])
        kw["output_padding"] = 0
        assert ct.output_shape(x.shape, w.shape, output_size=size, data_format=fmt,
                               **kw) == y.shape
    assert checked >= 10


def test_output_shape_positional_order_is_conv_transpose2ds():
    x, w = np.zeros((1, 4, 5, 5)), np.zeros((4, 2, 3, 3))
    args = (2, 0, 0, 2, 1)                  # stride, padding, output_padding, groups, dilation
    assert ct.output_shape(x.shape, w.shape, *args) == \
        ct.conv_transpose2d(x, w, None, *args).shape == (1, 4, 11, 11)


def test_output_shape_same_padding_and_unbatched_channels_last():
    assert ct.output_shape((5, 7, 4), (4, 2, 3, 3), stride=2, padding="same",
                           data_format="NHWC") == (10, 14, 2)


# ----------------------------------------------------------------------------
# explain at every rank, layout and backend (issue 23, item 3)

@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("last", [False, True])
def test_explain_takes_every_rank_and_layout(rank, last):
    rng = np.random.default_rng(rank)
    x, w = _operands(rng, rank, c_in=8, c_out=4, size=4, k=2)
    fmt = DATA_FORMATS[rank][last]
    if last:
        x = _last(x, rank)
    choice = ct.explain(x, w, stride=2, data_format=fmt)
    assert choice.backend in ("direct", "im2col")
    # the flops are the whole problem's, whatever the rank runs as
    assert choice.flops == 2 * x.size * w.shape[1] * w[0, 0].size
    named = ct.explain(x, w, stride=2, data_format=fmt, backend="direct")
    assert named.backend == "direct" and "named" in named.reason
    # what explain says is what runs: the named backend's result is the call's
    y = FORWARD[rank](x, w, stride=2, data_format=fmt, backend=named.backend)
    np.testing.assert_array_equal(y, FORWARD[rank](x, w, stride=2, data_format=fmt,
                                                   backend="direct"))


def test_explain_in_3d_names_each_depth_tap():
    x = np.empty((2, 8, 4, 4, 4), np.float32)
    w = np.empty((8, 4, 3, 2, 2), np.float32)
    reason = ct.explain(x, w, stride=2).reason
    assert all(f"tap {t}:" in reason for t in range(3))


@pytest.mark.parametrize("rank", [1, 3])
def test_explain_dask_every_rank(rank):
    da = pytest.importorskip("dask.array")
    x = da.zeros((4, 8) + (6,) * rank, chunks=(2, 8) + (6,) * rank, dtype=np.float32)
    w = np.zeros((8, 4) + (2,) * rank, np.float32)
    plan = ct.explain(x, w, stride=2)
    assert plan.output_chunks[0] == (2, 2)
    assert sum(plan.backends.values()) >= 2
    assert str(plan).startswith("dask graph:")


def test_explain_refuses_what_the_call_refuses():
    x, w = np.zeros((1, 4, 3, 3)), np.zeros((4, 2, 2, 2))
    with pytest.raises(ValueError, match="data_format"):
        ct.explain(x, w, data_format="NCW")
    with pytest.raises(ValueError, match="backend"):
        ct.explain(x, w, backend="fast")
    with pytest.raises(NotImplementedError, match="channels-first"):
        ct.explain(np.zeros((1, 3, 3, 4)), w, backend="cuda", data_format="NHWC")


# ----------------------------------------------------------------------------
# Dask rules identical at every rank (issue 23, item 4)

@pytest.mark.parametrize("rank", [1, 2, 3])
def test_dask_operand_rules_are_the_same_at_every_rank(rank):
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(rank)
    x, w = _operands(rng, rank)
    b = rng.standard_normal(3)
    f = FORWARD[rank]
    with pytest.raises(TypeError, match="weight is a Dask array"):
        f(da.from_array(x), da.from_array(w))
    with pytest.raises(TypeError, match="weight is a Dask array"):
        f(x, da.from_array(w))
    with pytest.raises(TypeError, match="bias is a Dask array"):
        f(x, w, da.from_array(b))
    xd = da.from_array(x, chunks=1)
    xd = xd[xd.reshape(xd.shape[0], -1).sum(axis=1) > -1e300]     # unknown batch chunks
    with pytest.raises(ValueError, match="unknown"):
        f(xd, w)


# ----------------------------------------------------------------------------
# channels-last on the GPU refused before any work, by every function (issue 23, item 5)

@pytest.mark.parametrize("rank", [1, 2, 3])
def test_cuda_backend_refuses_channels_last_up_front(rank):
    rng = np.random.default_rng(rank)
    x, w = _operands(rng, rank, c_out=4)
    xl, fmt = _last(x, rank), DATA_FORMATS[rank][1]
    y = FORWARD[rank](xl, w, data_format=fmt)
    wc = np.ascontiguousarray(np.swapaxes(w, 0, 1))
    calls = [lambda: FORWARD[rank](xl, w, backend="cuda", data_format=fmt),
             lambda: CONV[rank](xl, wc, backend="cuda", data_format=fmt),
             lambda: BACKWARD[rank](y, xl, w, backend="cuda", data_format=fmt)]
    for call in calls:
        with pytest.raises(NotImplementedError, match="channels-first"):
            call()


# ----------------------------------------------------------------------------
# layout hints and padding spellings (issue 24, items 6 and 7)

@pytest.mark.parametrize("rank", [1, 2, 3])
def test_channels_last_data_without_data_format_gets_a_hint(rank):
    x = np.zeros((2,) + (5,) * rank + (16,))
    w = np.zeros((16, 4) + (3,) * rank)
    hint = f"did you mean data_format='{DATA_FORMATS[rank][1]}'"
    with pytest.raises(ValueError, match=hint):
        FORWARD[rank](x, w)
    with pytest.raises(ValueError, match=hint):
        CONV[rank](x, np.zeros((4, 16) + (3,) * rank))
    # and the other way round
    back = f"did you mean data_format='{DATA_FORMATS[rank][0]}'"
    with pytest.raises(ValueError, match=back):
        FORWARD[rank](np.zeros((2, 16) + (5,) * rank), w, data_format=DATA_FORMATS[rank][1])
    # no hint where the other layout would not fit either
    with pytest.raises(ValueError) as info:
        FORWARD[rank](np.zeros((2, 8) + (5,) * rank), w)
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize("spelling", ["SAME", "Same", "VALID", "Valid"])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_padding_strings_in_any_case(spelling, rank):
    rng = np.random.default_rng(rank)
    x, w = _operands(rng, rank)
    expected = FORWARD[rank](x, w, stride=2, padding=spelling.lower())
    np.testing.assert_array_equal(FORWARD[rank](x, w, stride=2, padding=spelling), expected)
    wc = np.ascontiguousarray(np.swapaxes(w, 0, 1))
    np.testing.assert_array_equal(CONV[rank](x, wc, padding=spelling),
                                  CONV[rank](x, wc, padding=spelling.lower()))
    layer = LAYERS[rank](4, 3, 3, stride=2, padding=spelling, seed=0)
    assert layer(x).shape == expected.shape


@pytest.mark.parametrize("spelling", ["SAME_UPPER", "same_lower"])
def test_onnx_auto_pad_names_are_refused_with_what_to_write(spelling):
    x, w = np.zeros((1, 4, 3, 3)), np.zeros((4, 2, 3, 3))
    with pytest.raises(ValueError, match="padding='same'.*SAME_LOWER"):
        ct.conv_transpose2d(x, w, padding=spelling)
    with pytest.raises(ValueError, match="auto_pad"):
        ct.conv2d(x, np.zeros((2, 4, 3, 3)), padding=spelling)


# ----------------------------------------------------------------------------
# one order of checks, whatever the operands' kind (issue 23: one path)

BACKWARD_CONV = {1: ct.conv1d_backward, 2: ct.conv2d_backward, 3: ct.conv3d_backward}


def _calls(rank):
    """Each public function of ``rank`` as ``(function, operands)`` on NumPy arrays."""
    rng = np.random.default_rng(rank)
    x, w = _operands(rng, rank, c_in=2, c_out=2, size=3, k=2)
    wc = np.ascontiguousarray(np.swapaxes(w, 0, 1))
    y, yc = FORWARD[rank](x, w), CONV[rank](x, wc)
    return [(FORWARD[rank], (x, w)), (CONV[rank], (x, wc)),
            (BACKWARD[rank], (y, x, w)), (BACKWARD_CONV[rank], (yc, x, wc))]


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("data_format", [None, ["NCHW"], {"a": 1}, 2, "XYZ"])
def test_a_bad_data_format_is_a_value_error_naming_it(rank, data_format):
    for fn, operands in _calls(rank):
        with pytest.raises(ValueError, match="data_format must be"):
            fn(*operands, data_format=data_format)


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("as_list", [False, True])
def test_checks_run_in_one_order_for_every_kind_of_operand(rank, as_list):
    """data_format, then the shapes and hyper-parameters, then backend: the same for
    NumPy arrays and for nested lists (which take another route to the same checks)."""
    for fn, operands in _calls(rank):
        if as_list:
            operands = tuple(a.tolist() for a in operands)
        with pytest.raises(ValueError, match="data_format must be"):
            fn(*operands, backend="bogus", data_format="XYZ", stride=0)
        with pytest.raises(ValueError, match="stride must be >= 1"):
            fn(*operands, backend="bogus", stride=0)
        with pytest.raises(ValueError, match="backend must be one of"):
            fn(*operands, backend="bogus")
