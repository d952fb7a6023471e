"""The float64 references of every rank: the two transposed-convolution formulations
against each other, all of them against PyTorch (float64, 1e-10), ONNX's hand-written 1-D
and 3-D ConvTranspose cases, and 'same' against ONNX's SAME_UPPER."""
import numpy as np
import pytest

import convtranspose as ct
from convtranspose.reference import (conv2d_reference, conv_backward_reference,
                                     conv_reference, conv_transpose2d_scatter,
                                     conv_transpose_backward_reference,
                                     conv_transpose_scatter, conv_transpose_zero_insertion)

TOL = dict(rtol=1e-10, atol=1e-10)
MAX_SIZE = {1: 7, 2: 5, 3: 4}


def _ints(rng, lo, hi, n):
    return tuple(int(v) for v in rng.integers(lo, hi + 1, n))


def transposed_problem(rng, rank, symmetric=False):
    """Random valid transposed-convolution arguments of ``rank``: ``(x, w, b, kwargs)``."""
    while True:
        groups = int(rng.integers(1, 3))
        c_in, c_out_g = groups * int(rng.integers(1, 4)), int(rng.integers(1, 4))
        kernel, stride = _ints(rng, 1, 3, rank), _ints(rng, 1, 3, rank)
        dilation = _ints(rng, 1, 2, rank)
        reach = [d * (k - 1) for k, d in zip(kernel, dilation)]
        if symmetric:
            pads = [(p, p) for p in (int(rng.integers(0, r // 2 + 1)) for r in reach)]
        else:
            pads = [(int(rng.integers(0, r + 1)), int(rng.integers(0, r + 1))) for r in reach]
        kwargs = dict(stride=stride, dilation=dilation, groups=groups,
                      padding=tuple(p for p, _ in pads) if symmetric else tuple(pads),
                      output_padding=tuple(int(rng.integers(0, max(s, d)))
                                           for s, d in zip(stride, dilation)))
        batch = (int(rng.integers(1, 3)),) if rng.random() < 0.8 else ()
        x_shape = batch + (c_in,) + _ints(rng, 1, MAX_SIZE[rank], rank)
        w_shape = (c_in, c_out_g) + kernel
        try:
            ct.output_shape(x_shape, w_shape, **kwargs)
        except ValueError:          # cropped to nothing: draw again
            continue
        b = rng.standard_normal(c_out_g * groups) if rng.random() < 0.7 else None
        return rng.standard_normal(x_shape), rng.standard_normal(w_shape), b, kwargs


def conv_problem(rng, rank):
    """Random valid convolution arguments of ``rank`` (PyTorch's own padding forms)."""
    while True:
        groups = int(rng.integers(1, 3))
        c_in, c_out = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
        kernel, dilation = _ints(rng, 1, 3, rank), _ints(rng, 1, 2, rank)
        choice = rng.random()
        if choice < 0.2:
            stride, padding = (1,) * rank, "same"
        elif choice < 0.3:
            stride, padding = _ints(rng, 1, 3, rank), "valid"
        else:
            stride = _ints(rng, 1, 3, rank)
            padding = tuple(int(rng.integers(0, d * (k - 1) // 2 + 1))
                            for k, d in zip(kernel, dilation))
        kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        batch = (int(rng.integers(1, 3)),) if rng.random() < 0.8 else ()
        x_shape = batch + (c_in,) + _ints(rng, 1, MAX_SIZE[rank] + 2, rank)
        w_shape = (c_out, c_in // groups) + kernel
        try:
            ct.params.normalise_conv(x_shape, w_shape, None, [np.dtype("f8")] * 2,
                                     rank=rank, **kwargs)
        except ValueError:
            continue
        b = rng.standard_normal(c_out) if rng.random() < 0.7 else None
        return rng.standard_normal(x_shape), rng.standard_normal(w_shape), b, kwargs


def _torch():
    torch = pytest.importorskip("torch")
    return torch, torch.nn.functional


def _t(a, torch, grad=False):
    return None if a is None else torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def _torch_transposed(x, w, b, kw, torch, f):
    """PyTorch's transposed convolution of the problem, as a tensor (keeps the graph):
    with padding 0 and then cropped per side, which also says asymmetric padding."""
    fn = {1: f.conv_transpose1d, 2: f.conv_transpose2d, 3: f.conv_transpose3d}[w.dim() - 2]
    full = fn(x, w, b, stride=kw["stride"], output_padding=kw["output_padding"],
              groups=kw["groups"], dilation=kw["dilation"])
    pads = ct.params._as_padding(kw["padding"], w.dim() - 2)
    crop = tuple(slice(lo, n - hi) for (lo, hi), n in zip(pads, full.shape[-len(pads):]))
    return full[(Ellipsis,) + crop]


# ----------------------------------------------------------------------------
# the two transposed formulations agree


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_scatter_and_zero_insertion_agree(rank):
    rng = np.random.default_rng(100 + rank)
    for _ in range(60):
        x, w, b, kw = transposed_problem(rng, rank)
        a = conv_transpose_scatter(x, w, b, **kw)
        z = conv_transpose_zero_insertion(x, w, b, **kw)
        assert a.shape == z.shape == ct.output_shape(x.shape, w.shape, **kw)
        np.testing.assert_allclose(a, z, rtol=1e-12, atol=1e-12, err_msg=str(kw))


def test_a_single_element_stamps_the_kernel_in_3d():
    w = np.arange(24.0).reshape(1, 1, 2, 3, 4)
    for ref in (conv_transpose_scatter, conv_transpose_zero_insertion):
        np.testing.assert_array_equal(ref(np.ones((1, 1, 1, 1, 1)), w), w)


def test_2d_names_hold_to_rank_2():
    with pytest.raises(ValueError, match=r"weight must be 4-D \(C_in, C_out // groups, kH, kW\)"):
        conv_transpose2d_scatter(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2, 2)))
    with pytest.raises(ValueError, match=r"weight must be 4-D \(C_out, C_in // groups, kH, kW\)"):
        conv2d_reference(np.ones((1, 1, 4)), np.ones((1, 1, 2)))
    with pytest.raises(ValueError, match=r"weight must be 5-D"):
        conv_transpose_scatter(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)), rank=3)


# ----------------------------------------------------------------------------
# against PyTorch


@pytest.mark.parametrize("rank", [1, 3])
def test_transposed_matches_torch(rank):
    torch, f = _torch()
    fn = {1: f.conv_transpose1d, 3: f.conv_transpose3d}[rank]
    rng = np.random.default_rng(200 + rank)
    for i in range(40):
        x, w, b, kw = transposed_problem(rng, rank, symmetric=i % 2 == 0)
        got = conv_transpose_scatter(x, w, b, **kw)
        if i % 2 == 0:          # PyTorch's own padding argument
            want = fn(_t(x, torch), _t(w, torch), _t(b, torch), **kw).numpy()
        else:                   # per-side padding: PyTorch's full result, cropped
            want = _torch_transposed(_t(x, torch), _t(w, torch), _t(b, torch), kw, torch,
                                     f).numpy()
        assert got.shape == want.shape, kw
        np.testing.assert_allclose(got, want, **TOL, err_msg=str(kw))


SAME_WARNING = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


@SAME_WARNING
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_conv_matches_torch(rank):
    torch, f = _torch()
    fn = {1: f.conv1d, 2: f.conv2d, 3: f.conv3d}[rank]
    rng = np.random.default_rng(300 + rank)
    for _ in range(40):
        x, w, b, kw = conv_problem(rng, rank)
        want = fn(_t(x, torch), _t(w, torch), _t(b, torch), **kw).numpy()
        got = conv_reference(x, w, b, **kw)
        assert got.shape == want.shape, kw
        np.testing.assert_allclose(got, want, **TOL, err_msg=str(kw))


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_transposed_backward_matches_aten(rank):
    """``torch.ops.aten.convolution_backward`` with ``transposed=True``; per-side padding
    and unbatched input through autograd of the cropped full result."""
    torch, f = _torch()
    rng = np.random.default_rng(400 + rank)
    for i in range(30):
        x, w, _, kw = transposed_problem(rng, rank, symmetric=i % 2 == 0)
        shape = ct.output_shape(x.shape, w.shape, **kw)
        gy = rng.standard_normal(shape)
        got = conv_transpose_backward_reference(gy, x, w, **kw)
        if i % 2 == 0 and x.ndim == rank + 2:
            want = torch.ops.aten.convolution_backward(
                _t(gy, torch), _t(x, torch), _t(w, torch), [w.shape[1] * kw["groups"]],
                list(kw["stride"]), list(kw["padding"]), list(kw["dilation"]), True,
                list(kw["output_padding"]), kw["groups"], [True, True, True])
        else:
            tx, tw = _t(x, torch, True), _t(w, torch, True)
            tb = torch.zeros(w.shape[1] * kw["groups"], dtype=torch.float64, requires_grad=True)
            _torch_transposed(tx, tw, tb, kw, torch, f).backward(_t(gy, torch))
            want = (tx.grad, tw.grad, tb.grad)
        for g, e, name in zip(got, want, ("grad_input", "grad_weight", "grad_bias")):
            np.testing.assert_allclose(g, e.numpy(), **TOL, err_msg=f"{name} {kw}")


@SAME_WARNING
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_conv_backward_matches_aten(rank):
    """``aten.convolution_backward`` with ``transposed=False``; 'same' (which may pad one
    side more) and unbatched input through autograd of ``conv{1,2,3}d``."""
    torch, f = _torch()
    fn = {1: f.conv1d, 2: f.conv2d, 3: f.conv3d}[rank]
    rng = np.random.default_rng(500 + rank)
    for _ in range(30):
        x, w, _, kw = conv_problem(rng, rank)
        gy = rng.standard_normal(conv_reference(x, w, **kw).shape)
        got = conv_backward_reference(gy, x, w, **kw)
        if not isinstance(kw["padding"], str) and x.ndim == rank + 2:
            want = torch.ops.aten.convolution_backward(
                _t(gy, torch), _t(x, torch), _t(w, torch), [w.shape[0]], list(kw["stride"]),
                list(kw["padding"]), list(kw["dilation"]), False, [0] * rank, kw["groups"],
                [True, True, True])
        else:
            tx, tw = _t(x, torch, True), _t(w, torch, True)
            tb = torch.zeros(w.shape[0], dtype=torch.float64, requires_grad=True)
            fn(tx, tw, tb, **kw).backward(_t(gy, torch))
            want = (tx.grad, tw.grad, tb.grad)
        for g, e, name in zip(got, want, ("grad_input", "grad_weight", "grad_bias")):
            np.testing.assert_allclose(g, e.numpy(), **TOL, err_msg=f"{name} {kw}")


# ----------------------------------------------------------------------------
# ONNX's hand-written ConvTranspose cases (test data of
# onnx/backend/test/case/node/convtranspose.py: export_convtranspose_1d,
# export_convtranspose_3d and export_convtranspose_autopad_same; default attributes
# except where named)

REFERENCES = [conv_transpose_scatter, conv_transpose_zero_insertion]


@pytest.mark.parametrize("ref", REFERENCES)
def test_onnx_convtranspose_1d(ref):
    x = np.array([[[0.0, 1.0, 2.0]]])                       # (1, 1, 3)
    w = np.array([[[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]])      # (1, 2, 3)
    y = np.array([[[0.0, 1.0, 3.0, 3.0, 2.0],               # (1, 2, 5)
                   [0.0, 1.0, 3.0, 3.0, 2.0]]])
    np.testing.assert_array_equal(ref(x, w), y)


# the one output channel of export_convtranspose_3d; ONNX lists it twice, once for each
# output channel, since both of the weight's channels are all ones
ONNX_3D_Y = np.array([
    [[0.0, 1.0, 3.0, 6.0, 9.0, 7.0, 4.0],
     [5.0, 12.0, 21.0, 27.0, 33.0, 24.0, 13.0],
     [15.0, 33.0, 54.0, 63.0, 72.0, 51.0, 27.0],
     [30.0, 63.0, 99.0, 108.0, 117.0, 81.0, 42.0],
     [25.0, 52.0, 81.0, 87.0, 93.0, 64.0, 33.0],
     [15.0, 31.0, 48.0, 51.0, 54.0, 37.0, 19.0]],
    [[20.0, 42.0, 66.0, 72.0, 78.0, 54.0, 28.0],
     [50.0, 104.0, 162.0, 174.0, 186.0, 128.0, 66.0],
     [90.0, 186.0, 288.0, 306.0, 324.0, 222.0, 114.0],
     [120.0, 246.0, 378.0, 396.0, 414.0, 282.0, 144.0],
     [90.0, 184.0, 282.0, 294.0, 306.0, 208.0, 106.0],
     [50.0, 102.0, 156.0, 162.0, 168.0, 114.0, 58.0]],
    [[60.0, 123.0, 189.0, 198.0, 207.0, 141.0, 72.0],
     [135.0, 276.0, 423.0, 441.0, 459.0, 312.0, 159.0],
     [225.0, 459.0, 702.0, 729.0, 756.0, 513.0, 261.0],
     [270.0, 549.0, 837.0, 864.0, 891.0, 603.0, 306.0],
     [195.0, 396.0, 603.0, 621.0, 639.0, 432.0, 219.0],
     [105.0, 213.0, 324.0, 333.0, 342.0, 231.0, 117.0]],
    [[60.0, 122.0, 186.0, 192.0, 198.0, 134.0, 68.0],
     [130.0, 264.0, 402.0, 414.0, 426.0, 288.0, 146.0],
     [210.0, 426.0, 648.0, 666.0, 684.0, 462.0, 234.0],
     [240.0, 486.0, 738.0, 756.0, 774.0, 522.0, 264.0],
     [170.0, 344.0, 522.0, 534.0, 546.0, 368.0, 186.0],
     [90.0, 182.0, 276.0, 282.0, 288.0, 194.0, 98.0]],
    [[40.0, 81.0, 123.0, 126.0, 129.0, 87.0, 44.0],
     [85.0, 172.0, 261.0, 267.0, 273.0, 184.0, 93.0],
     [135.0, 273.0, 414.0, 423.0, 432.0, 291.0, 147.0],
     [150.0, 303.0, 459.0, 468.0, 477.0, 321.0, 162.0],
     [105.0, 212.0, 321.0, 327.0, 333.0, 224.0, 113.0],
     [55.0, 111.0, 168.0, 171.0, 174.0, 117.0, 59.0]],
])                                                          # (5, 6, 7)


@pytest.mark.parametrize("ref", REFERENCES)
def test_onnx_convtranspose_3d(ref):
    x = np.arange(60.0).reshape(1, 1, 3, 4, 5)              # ONNX writes out 0, 1, ..., 59
    w = np.ones((1, 2, 3, 3, 3))
    y = np.stack([ONNX_3D_Y, ONNX_3D_Y])[None]              # (1, 2, 5, 6, 7)
    np.testing.assert_array_equal(ref(x, w), y)


ONNX_SAME_Y = np.array([[0.0, 0.0, 1.0, 1.0, 3.0, 2.0],
                        [0.0, 0.0, 1.0, 1.0, 3.0, 2.0],
                        [3.0, 3.0, 8.0, 5.0, 12.0, 7.0],
                        [3.0, 3.0, 7.0, 4.0, 9.0, 5.0],
                        [9.0, 9.0, 20.0, 11.0, 24.0, 13.0],
                        [6.0, 6.0, 13.0, 7.0, 15.0, 8.0]])   # one channel of (1, 2, 6, 6)


@pytest.mark.parametrize("ref", REFERENCES)
def test_onnx_convtranspose_autopad_same(ref):
    """auto_pad='SAME_UPPER', strides (2, 2), 3x3 kernel: T = 1, cropped at the end."""
    x = np.array([[[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]]]])
    w = np.ones((1, 2, 3, 3))
    np.testing.assert_array_equal(ref(x, w, stride=2, padding="same"),
                                  np.stack([ONNX_SAME_Y, ONNX_SAME_Y])[None])


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_same_matches_onnx_same_upper(rank):
    """For T >= 0, 'same' is ONNX's SAME_UPPER: pads (T // 2, T - T // 2) of the total
    padding s*(in - 1) + d*(k - 1) + 1 - in*s; for T < 0 the output grows at the end as
    output_padding = -T does (where ONNX's own reference puts part of it at the start).
    Checked on PyTorch's full result, cropped or extended by hand."""
    torch, f = _torch()
    fn = {1: f.conv_transpose1d, 2: f.conv_transpose2d, 3: f.conv_transpose3d}[rank]
    rng = np.random.default_rng(600 + rank)
    seen_negative = seen_odd = False
    for _ in range(30):
        x_shape = (1, 2) + _ints(rng, 1, MAX_SIZE[rank], rank)
        kernel, stride = _ints(rng, 1, 4, rank), _ints(rng, 1, 4, rank)
        dilation = _ints(rng, 1, 2, rank)
        x, w = rng.standard_normal(x_shape), rng.standard_normal((2, 3) + kernel)
        got = conv_transpose_scatter(x, w, stride=stride, dilation=dilation, padding="same")
        full = fn(_t(x, torch), _t(w, torch), stride=stride, dilation=dilation).numpy()
        index = [slice(None), slice(None)]
        for n, k, s, d in zip(x_shape[2:], kernel, stride, dilation):
            total = s * (n - 1) + (k - 1) * d + 1 - n * s
            seen_negative |= total < 0
            seen_odd |= total > 0 and total % 2 == 1
            index.append(slice(max(total // 2, 0), max(total // 2, 0) + n * s))
        extend = [(0, 0), (0, 0)] + [(0, max(n * s - f_, 0)) for n, s, f_ in
                                     zip(x_shape[2:], stride, full.shape[2:])]
        want = np.pad(full, extend)[tuple(index)]
        assert got.shape == want.shape == x_shape[:1] + (3,) + tuple(
            n * s for n, s in zip(x_shape[2:], stride))
        np.testing.assert_allclose(got, want, **TOL)
    assert seen_negative and seen_odd
