"""float16 and bfloat16 (issue 26): the conversions, every forward function of every rank and
layout against the float64 reference and PyTorch, NaN and Inf, promotion, ``out=``, the
gradients and layers on float32 copies, Dask, the CUDA refusal and the memory bound."""
import tracemalloc
import warnings

import numba
import numpy as np
import pytest

import convtranspose as ct
from convtranspose.cpu import half
from convtranspose.params import DATA_FORMATS
from convtranspose.testing import call_in_layout, operand_shapes
from convtranspose.reference import conv_reference, conv_transpose_reference

ml_dtypes = pytest.importorskip("ml_dtypes")

F16 = np.dtype(np.float16)
BF16 = np.dtype(ml_dtypes.bfloat16)
F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
HALVES = {"float16": F16, "bfloat16": BF16}

FORWARD = {1: ct.conv_transpose1d, 2: ct.conv_transpose2d, 3: ct.conv_transpose3d}
CONV = {1: ct.conv1d, 2: ct.conv2d, 3: ct.conv3d}
BACKWARD = {("transposed", 1): ct.conv_transpose1d_backward,
            ("transposed", 2): ct.conv_transpose2d_backward,
            ("transposed", 3): ct.conv_transpose3d_backward,
            ("correlation", 1): ct.conv1d_backward, ("correlation", 2): ct.conv2d_backward,
            ("correlation", 3): ct.conv3d_backward}


# ----------------------------------------------------------------------------
# the conversions, bitwise against NumPy's and ml_dtypes' astype

PATTERNS = np.arange(2**16, dtype=np.uint16)


def _float32_patterns(low_bits, lows):
    """Every float32 pattern whose bits above ``low_bits`` take all values, its low bits
    each of ``lows``: every rounding boundary of a half format, ties and their neighbours."""
    high = np.arange(2 ** (32 - low_bits), dtype=np.uint64) << np.uint64(low_bits)
    return (high[:, None] | np.array(lows, np.uint64)[None, :]).ravel().astype(np.uint32)


#: float32 patterns around float16's rounding points (13 bits dropped from normal numbers;
#: subnormals drop more, and those boundaries are among the high bits enumerated).
F16_SOURCES = _float32_patterns(13, [0, 1, 0x7ff, 0x800, 0x801, 0xfff, 0x1000, 0x1001,
                                     0x17ff, 0x1800, 0x1fff])
#: float32 patterns around bfloat16's rounding points (16 bits dropped).
BF16_SOURCES = _float32_patterns(16, [0, 1, 0x3fff, 0x4000, 0x7fff, 0x8000, 0x8001, 0xbfff,
                                      0xc000, 0xffff])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_widening_is_bitwise_numpys_over_all_patterns(dtype):
    a = PATTERNS.view(HALVES[dtype])
    got = half.widen(a)
    assert got.dtype == F32
    np.testing.assert_array_equal(got.view(np.uint32), a.astype(F32).view(np.uint32))


@pytest.mark.parametrize("dtype, sources", [("float16", F16_SOURCES),
                                            ("bfloat16", BF16_SOURCES)])
def test_narrowing_is_bitwise_numpys_at_every_rounding_boundary(dtype, sources):
    """Ties to even, subnormals, overflow to Inf, Inf and NaN (payloads as NumPy keeps
    them, never Inf), both signs."""
    values = sources.view(np.float32)
    got = half.narrow(values, HALVES[dtype])
    with np.errstate(over="ignore", invalid="ignore"):
        expected = values.astype(HALVES[dtype])
    assert got.dtype == HALVES[dtype]
    np.testing.assert_array_equal(got.view(np.uint16), expected.view(np.uint16))


@numba.njit
def _soft_widen(src, dst):
    for i in range(src.size):
        dst[i] = half._f16_to_f32_soft(src[i])


@numba.njit
def _soft_narrow(src, dst):
    for i in range(src.size):
        dst[i] = half._f32_to_f16_soft(src[i])


def test_the_integer_float16_conversions_equal_numpys_too():
    """The form targets without F16C compile (``NUMBA_CPU_NAME=generic``) is exact too."""
    wide = np.empty(PATTERNS.size, np.float32)
    _soft_widen(PATTERNS, wide)
    np.testing.assert_array_equal(wide.view(np.uint32),
                                  PATTERNS.view(F16).astype(F32).view(np.uint32))
    narrow = np.empty(F16_SOURCES.size, np.uint16)
    _soft_narrow(F16_SOURCES.view(np.float32), narrow)
    with np.errstate(over="ignore", invalid="ignore"):
        expected = F16_SOURCES.view(np.float32).astype(F16)
    np.testing.assert_array_equal(narrow, expected.view(np.uint16))


def test_conversions_on_non_native_and_strided_arrays():
    a = np.linspace(-3, 3, 50).astype(">f2")[::3]
    np.testing.assert_array_equal(half.widen(a), a.astype(F32))
    np.testing.assert_array_equal(half.narrow(a.astype(">f4"), BF16).astype(F32),
                                  a.astype(F32).astype(BF16).astype(F32))


# ----------------------------------------------------------------------------
# the error bound

#: Unit roundoff of each result dtype, and half its smallest subnormal (the absolute error
#: of rounding into the subnormal range).
UNIT = {F16: 2.0**-11, BF16: 2.0**-8, F32: 2.0**-24, F64: 2.0**-53}
TINY = {F16: 2.0**-25, BF16: 2.0**-134, F32: 2.0**-150, F64: 0.0}


def _terms(weight_shape, groups, transposed):
    """Terms summed per output element, at most: every tap of every input channel of the
    group, and the bias."""
    c_in_g = weight_shape[0] // groups if transposed else weight_shape[1]
    return c_in_g * int(np.prod(weight_shape[2:])) + 1


def bound(ref, abs_ref, dtype, terms):
    """``2u|ref| + K 2^-24 (|x| * |w|) + tiny``, elementwise, with ``K = 2 * terms``.

    The products of two half-precision numbers are exact in float32 (11 x 11 and 8 x 8
    significant bits fit in 24; the exponent range too); summing ``n = terms`` of them
    (bias included) in float32 in any order is off by at most ``gamma_n = n u32 / (1 - n
    u32) <= 1.01 n u32`` times the sum of their magnitudes, ``|x| * |w| + |b|`` (``n
    u32 <= 0.01``; here ``n < 1000``); the one rounding into the half format adds ``u |y32|
    <= u |ref| + u gamma_n (|x| * |w|)`` (or half a subnormal below the normal range).
    ``2n`` covers ``1.01 n (1 + u)`` with room to spare; ``2u|ref|`` allows twice the
    rounding. A sum accumulated in half precision would be off by about ``n u`` times
    the magnitudes, far outside this. float64 results are summed in float64.
    """
    acc = UNIT[F64] if dtype == F64 else UNIT[F32]
    return 2 * UNIT[dtype] * np.abs(ref) + 2 * terms * acc * abs_ref + TINY[dtype]


def _check(y, ref, abs_ref, dtype, terms, what=""):
    y = np.asarray(y).astype(F64)
    err = np.abs(y - ref)
    limit = bound(ref, abs_ref, dtype, terms)
    worst = np.unravel_index(np.argmax(err - limit), err.shape) if err.size else None
    assert np.all(err <= limit), (f"{what}: error {err[worst]:.3g} > bound {limit[worst]:.3g} "
                                  f"at {worst} (ref {ref[worst]:.6g})")


# ----------------------------------------------------------------------------
# every forward function, rank, layout and dtype against the float64 reference

#: (name, batch (None: unbatched), C_in, C_out, size, kernel, bias, keywords, layout of x:
#: "c" C-contiguous, "strided" a strided view, "reversed" negative strides, ">" big-endian)
CASES = [
    ("plain", 2, 3, 4, 5, 3, True, {}, "c"),
    ("stride-padding", 2, 4, 3, 4, 4, False, dict(stride=2, padding=1), "c"),
    ("output-padding", 1, 2, 2, 3, 3, True, dict(stride=3, output_padding=2), "c"),
    ("dilation-groups", 1, 4, 6, 6, 3, True, dict(dilation=2, padding=2, groups=2), "c"),
    ("engine-blocks", 2, 24, 40, 5, 3, True, dict(stride=2, padding=1), "c"),
    ("batch0", 0, 3, 2, 4, 3, True, dict(stride=2), "c"),
    ("1x1-unbatched", None, 5, 3, 4, 1, True, {}, "c"),
    ("strided-view", 2, 3, 2, 5, 2, False, dict(stride=2), "strided"),
    ("reversed", 2, 2, 3, 4, 3, True, dict(padding=1), "reversed"),
    ("big-endian", 1, 3, 3, 4, 3, True, dict(stride=2, padding=1), ">"),
]

_CONV_ONLY_DROPPED = ("output_padding",)


def _arrays(case, rank, transposed, dtype, seed=0):
    """``(x channels-first, weight, bias)`` of ``case`` in ``dtype`` (x as the case lays it out)."""
    _, n, c_in, c_out, size, k, with_bias, kw, layout = case
    rng = np.random.default_rng(seed)
    x_shape, w_shape = operand_shapes(n, c_in, c_out, size, k, kw.get("groups", 1), rank,
                                      transposed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = (rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]))).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype) if with_bias else None
    if layout == "strided":
        wide = np.repeat(x, 2, axis=-1)
        x = wide[..., ::2]
        assert not x.flags.c_contiguous
    elif layout == "reversed":
        x = np.ascontiguousarray(x[..., ::-1])[..., ::-1]
    elif layout == ">":
        x = x.astype(x.dtype.newbyteorder(">"))
    return x, w, b


def _keywords(case, transposed):
    kw = dict(case[7])
    if not transposed:
        for name in _CONV_ONLY_DROPPED:
            kw.pop(name, None)
    return kw


def _to_layout(a, rank, last):
    """A channels-first array in the caller's layout (channels-last: a view, so the
    memory keeps its pattern of strides)."""
    return np.moveaxis(a, -rank - 1, -1) if last else a


def _expected(x, w, b, kw, rank, transposed):
    ref_fn = conv_transpose_reference if transposed else conv_reference
    ref = ref_fn(x, w, b, **kw)
    abs_ref = ref_fn(np.abs(x.astype(F64)), np.abs(w.astype(F64)),
                     None if b is None else np.abs(b.astype(F64)), **kw)
    return ref, abs_ref


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("op", ["transposed", "correlation"])
@pytest.mark.parametrize("last", [False, True], ids=["channels-first", "channels-last"])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_forward_within_the_float32_accumulation_bound(rank, last, op, dtype, case):
    transposed = op == "transposed"
    dt = HALVES[dtype]
    x, w, b = _arrays(case, rank, transposed, dt)
    kw = _keywords(case, transposed)
    fn = FORWARD[rank] if transposed else CONV[rank]
    y = call_in_layout(fn, x, w, b, DATA_FORMATS[rank][last], rank, case[8] == "c", **kw)
    ref, abs_ref = _expected(x, w, b, kw, rank, transposed)
    assert y.dtype == dt
    assert y.shape == _to_layout(ref, rank, last).shape
    _check(np.moveaxis(y, -1, -rank - 1) if last else y, ref, abs_ref, dt,
           _terms(w.shape, kw.get("groups", 1), transposed), f"{op} {rank}-D {dtype}")


@pytest.mark.parametrize("backend", ["auto", "direct", "im2col"])
@pytest.mark.parametrize("op", ["transposed", "correlation"])
@pytest.mark.parametrize("case", [CASES[4], CASES[0]], ids=["many-channels", "few-channels"])
def test_half_runs_where_float32_runs(op, backend, case):
    """The engine where the float32 call runs it (many channels, ``auto`` or ``direct``),
    else the float32 code of the backend on float32 chunks: bitwise that code's float32
    result, rounded once; ``explain`` names what runs."""
    transposed = op == "transposed"
    x, w, b = _arrays(case, 2, transposed, F16)
    fn = FORWARD[2] if transposed else CONV[2]
    kw = _keywords(case, transposed)
    y = fn(x, w, b, backend=backend, **kw)
    ref, abs_ref = _expected(x, w, b, kw, 2, transposed)
    _check(y, ref, abs_ref, F16, _terms(w.shape, kw.get("groups", 1), transposed), backend)
    w32 = w.astype(F32)
    engine = backend != "im2col" and (ct.cpu.direct.uses_engine(w.shape, _params(x, w, kw))
                                      if transposed else
                                      ct.cpu.direct.correlation_uses_engine(w.shape, 1))
    if not engine:
        with np.errstate(over="ignore"):
            want = fn(x.astype(F32), w32, b.astype(F32), backend=backend, **kw).astype(F16)
        if backend != "auto":
            np.testing.assert_array_equal(y, want)
    if transposed:
        choice = ct.explain(x, w, b, backend=backend, **kw)
        assert choice.backend == ("direct" if engine else
                                  ct.explain(x.astype(F32), w32, b, backend=backend,
                                             **kw).backend)
        assert ("channels-last engine" in choice.reason) == engine


def _params(x, w, kw):
    from convtranspose.params import normalise
    return normalise(x.shape, w.shape, None, [x.dtype, w.dtype], **kw)[0]


#: NaN patterns of each half format: signalling (unquieted through every conversion of
#: float16, quieted by bfloat16's) and quiet, both signs.
NAN_BITS = {"float16": [0x7c01, 0xfd55, 0x7e00, 0x7fff],
            "bfloat16": [0x7f81, 0xffc5, 0x7fc0, 0x7fff]}


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("last", [False, True], ids=["channels-first", "channels-last"])
@pytest.mark.parametrize("c_out, stride, k", [(40, 2, 3), (3, 2, 3), (37, 5, 2)],
                         ids=["two-vectors", "one-vector", "dead-outputs"])
def test_engine_rounds_its_float32_sums_once(dtype, last, c_out, stride, k):
    """The engine rounds a half-precision result as its kernel stores it (a vector at a
    time, into the result or into a 16-bit buffer copied into place): bitwise its float32
    result on the widened operands, rounded by ``astype``. Inf and NaN inputs, overflow,
    channels past the last full vector, and the bias of outputs no tap reaches with its
    NaN payloads."""
    from convtranspose.cpu import nd_engine
    dt = HALVES[dtype]
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((2, 24, 3, 5, 7)) * 300).astype(dt)
    x.reshape(-1)[::97] = np.inf
    x.reshape(-1)[5::101] = -np.inf
    x.reshape(-1)[7::89] = np.nan
    w = rng.standard_normal((24, c_out, 1, k, k)).astype(dt)
    b = rng.standard_normal(c_out).astype(dt)
    nans = NAN_BITS[dtype][:c_out]
    b.view(np.uint16)[:len(nans)] = nans
    shape = (2, c_out, 3, 4 * stride + k, 6 * stride + k)
    to_last = (lambda a: np.ascontiguousarray(np.moveaxis(a, 1, -1))) if last else \
        (lambda a: a)

    def run(x, w, b, dtype):
        out = to_last(np.empty(shape, dtype))
        return nd_engine.conv_transpose(to_last(x), w, b, (1, stride, stride),
                                        ((0, 0),) * 3, (1, 1, 1), 1, out, last)

    y = run(x, w, b, dt)
    with np.errstate(over="ignore", invalid="ignore"):
        want = run(x.astype(F32), w.astype(F32), b.astype(F32), F32).astype(dt)
    np.testing.assert_array_equal(y.view(np.uint16), want.view(np.uint16))
    if stride > k and dtype == "float16":   # the bias alone: signalling NaNs kept
        assert set(nans[:2]) <= set(y.view(np.uint16).ravel().tolist())


def test_explain_says_how_half_precision_runs():
    x, w, _ = _arrays(CASES[0], 2, True, BF16)
    choice = ct.explain(x, w)
    assert choice.backend == "direct"
    assert "x is bfloat16" in choice.reason and "float32" in choice.reason
    assert "rounded once to bfloat16" in choice.reason


# ----------------------------------------------------------------------------
# against PyTorch

def _torch_dtype(torch, dtype):
    return {F16: torch.float16, BF16: torch.bfloat16}[dtype]


@pytest.mark.parametrize("case", [c for c in CASES if c[8] == "c"], ids=lambda c: c[0])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("op", ["transposed", "correlation"])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_against_pytorch(rank, op, dtype, case):
    """Within our bound plus PyTorch's error of the exact result. PyTorch's CPU float16
    transposed convolution rounds its GEMM's columns to float16 and adds them up in
    float16 (col2im), a rounding per kernel tap: its error is up to ``(taps + 1) u`` times
    ``|x| * |w|`` (its other kernels round once, as this package does)."""
    torch = pytest.importorskip("torch")
    transposed = op == "transposed"
    dt = HALVES[dtype]
    x, w, b = _arrays(case, rank, transposed, dt)
    kw = _keywords(case, transposed)
    as_t = lambda a: None if a is None else torch.from_numpy(a.astype(F32)).to(  # noqa: E731
        _torch_dtype(torch, dt))
    name = f"conv_transpose{rank}d" if transposed else f"conv{rank}d"
    expected = getattr(torch.nn.functional, name)(as_t(x), as_t(w), as_t(b), **kw)
    expected = expected.to(torch.float64).numpy()
    y = (FORWARD[rank] if transposed else CONV[rank])(x, w, b, **kw)
    ref, abs_ref = _expected(x, w, b, kw, rank, transposed)
    ours = bound(ref, abs_ref, dt, _terms(w.shape, kw.get("groups", 1), transposed))
    _check(y, ref, abs_ref, dt, _terms(w.shape, kw.get("groups", 1), transposed))
    theirs = ours + (int(np.prod(w.shape[2:])) + 1) * UNIT[dt] * abs_ref
    assert np.all(np.abs(y.astype(F64) - expected) <= ours + theirs)


# ----------------------------------------------------------------------------
# NaN and Inf

def _specials(a):
    return [np.isnan(a), np.isposinf(a), np.isneginf(a)]


def _same_specials(y, expected):
    for got, want, what in zip(_specials(y.astype(F64)), _specials(expected), ("NaN", "+Inf",
                                                                              "-Inf")):
        assert np.array_equal(got, want), f"{what} at {np.argwhere(got != want)[:4].tolist()}"


@pytest.mark.parametrize("where", ["input", "weight"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("op", ["transposed", "correlation"])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_nan_and_inf_land_where_pytorch_puts_them(rank, op, dtype, where):
    """Inf and NaN in the input (the engine) or the weight (a transposed convolution's
    float32 chunks; the engine for a convolution, whose padding zeros meet it); the
    float64 reference is PyTorch's rule, and PyTorch itself is asked for input specials."""
    transposed = op == "transposed"
    dt = HALVES[dtype]
    case = ("specials", 2, 4, 3, 5, 3, True, dict(stride=2, padding=1), "c")
    x, w, b = _arrays(case, rank, transposed, dt, seed=3)
    kw = _keywords(case, transposed)
    target = x if where == "input" else w
    flat = target.reshape(-1)
    flat[[1, 7, 12]] = [np.inf, -np.inf, np.nan]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = (FORWARD[rank] if transposed else CONV[rank])(x, w, b, **kw)
    ref_fn = conv_transpose_reference if transposed else conv_reference
    with np.errstate(invalid="ignore", over="ignore"):
        ref = ref_fn(x, w, b, **kw)
        _same_specials(y, ref.astype(dt).astype(F64))
    finite = np.isfinite(ref)
    abs_ref = ref_fn(np.nan_to_num(np.abs(x.astype(F64)), posinf=0),
                     np.nan_to_num(np.abs(w.astype(F64)), posinf=0), np.abs(b.astype(F64)), **kw)
    _check(y[finite], ref[finite], abs_ref[finite], dt, _terms(w.shape, 1, transposed))
    torch = pytest.importorskip("torch")
    if where == "input":
        as_t = lambda a: torch.from_numpy(a.astype(F32)).to(_torch_dtype(torch, dt))  # noqa: E731
        name = f"conv_transpose{rank}d" if transposed else f"conv{rank}d"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)    # about TF32 on Intel GPUs
            with torch.backends.mkldnn.flags(enabled=False):
                expected = getattr(torch.nn.functional, name)(as_t(x), as_t(w), as_t(b), **kw)
        _same_specials(y, expected.to(torch.float64).numpy())


# ----------------------------------------------------------------------------
# promotion and out=

PROMOTIONS = [
    ((F16, F16, None), F16), ((BF16, BF16, None), BF16), ((F16, F16, F16), F16),
    ((BF16, BF16, BF16), BF16), ((F16, F32, None), F32), ((F32, F16, None), F32),
    ((BF16, F32, None), F32), ((F32, BF16, BF16), F32), ((F16, BF16, None), F32),
    ((BF16, F16, None), F32), ((F16, F16, F32), F32), ((F16, F64, None), F64),
    ((BF16, F64, None), F64), ((F64, F16, F16), F64),
]


@pytest.mark.parametrize("dtypes, expected", PROMOTIONS,
                         ids=[" ".join(str(d) for d in p[0]) for p in PROMOTIONS])
@pytest.mark.parametrize("op", ["transposed", "correlation"])
def test_result_dtype_promotes_as_pytorch(op, dtypes, expected):
    transposed = op == "transposed"
    case = ("promotion", 2, 4, 4, 4, 3, dtypes[2] is not None, dict(stride=2), "c")
    x, w, b = _arrays(case, 2, transposed, F64)
    x, w = x.astype(dtypes[0]), w.astype(dtypes[1])
    b = None if b is None else b.astype(dtypes[2])
    kw = _keywords(case, transposed)
    y = (FORWARD[2] if transposed else CONV[2])(x, w, b, **kw)
    assert y.dtype == expected
    ref, abs_ref = _expected(x, w, b, kw, 2, transposed)
    _check(y, ref, abs_ref, expected, _terms(w.shape, 1, transposed))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("last", [False, True], ids=["channels-first", "channels-last"])
@pytest.mark.parametrize("kind", ["contiguous", "strided", "big-endian"])
def test_out_in_half_precision(kind, last, rank, dtype):
    dt = HALVES[dtype]
    x, w, b = _arrays(CASES[1], rank, True, dt)
    x = _to_layout(x, rank, last)
    kw = dict(_keywords(CASES[1], True), data_format=DATA_FORMATS[rank][last])
    expected = FORWARD[rank](x, w, b, **kw)
    if kind == "contiguous":
        out = np.empty(expected.shape, dt)
    elif kind == "strided":
        out = np.empty(expected.shape[:-1] + (2 * expected.shape[-1],), dt)[..., ::2]
    else:
        out = np.empty(expected.shape, dt.newbyteorder(">"))
    got = FORWARD[rank](x, w, b, out=out, **kw)
    assert got is out
    np.testing.assert_array_equal(out.astype(F32), expected.astype(F32))


def test_out_of_another_dtype_is_refused():
    x, w, _ = _arrays(CASES[0], 2, True, F16)
    with pytest.raises(ValueError, match="out must have dtype float16, got float32"):
        ct.conv_transpose2d(x, w, out=np.empty((2, 4, 7, 7), np.float32))


def test_other_dtypes_name_every_accepted_one():
    x, w, _ = _arrays(CASES[0], 2, True, F32)
    for bad in (np.int8, np.bool_, np.clongdouble, object):
        with pytest.raises(TypeError, match=r"^x must be float16, bfloat16, float32, float64, "
                                            r"complex64 or complex128, got dtype "):
            ct.conv3d(x[:, :, None].astype(bad), w[:, :, None])


# ----------------------------------------------------------------------------
# the gradients and the layers: float32 copies, results in the promoted dtype

@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("op", ["transposed", "correlation"])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_gradients_run_on_float32_copies(rank, op, dtype):
    transposed = op == "transposed"
    dt = HALVES[dtype]
    case = CASES[1]
    x, w, _ = _arrays(case, rank, transposed, dt)
    kw = _keywords(case, transposed)
    y = (FORWARD[rank] if transposed else CONV[rank])(x, w, **kw)
    g = np.random.default_rng(1).standard_normal(y.shape).astype(dt)
    fn = BACKWARD[(op, rank)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grads = fn(g, x, w, **kw)
    wide = fn(g.astype(F32), x.astype(F32), w.astype(F32), **kw)
    for got, want in zip(grads, wide):
        assert got.dtype == dt
        np.testing.assert_array_equal(got, want.astype(dt))
    mixed = fn(g, x.astype(F32), w, **kw)
    assert [a.dtype for a in mixed] == [F32] * 3


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_layers_take_half_precision(rank, dtype):
    dt = HALVES[dtype]
    layers = {1: (ct.ConvTranspose1d, ct.Conv1d), 2: (ct.ConvTranspose2d, ct.Conv2d),
              3: (ct.ConvTranspose3d, ct.Conv3d)}[rank]
    for layer_type in layers:
        layer = layer_type(4, 6, 3, stride=2, dtype=dt, seed=0)
        assert layer.weight.dtype == dt and layer.bias.dtype == dt
        x = np.random.default_rng(2).standard_normal((2, 4) + (5,) * rank).astype(dt)
        y = layer(x)
        assert y.dtype == dt
        gx = layer.backward(np.ones_like(y))
        assert gx.dtype == dt and layer.weight_grad.dtype == dt
        assert layer.bias_grad.dtype == dt


# ----------------------------------------------------------------------------
# Dask, CUDA

@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_dask_chunks_in_half_precision(dtype):
    da = pytest.importorskip("dask.array")
    dt = HALVES[dtype]
    case = ("dask", 4, 6, 5, 8, 3, True, dict(stride=2, padding=1), "c")
    x, w, b = _arrays(case, 2, True, dt)
    # batch and spatial chunks: the same sums as the NumPy call, bitwise
    got = ct.conv_transpose2d(da.from_array(x, chunks=(2, 6, 4, 3)), w, b, stride=2, padding=1)
    assert got.dtype == dt
    np.testing.assert_array_equal(got.compute(), ct.conv_transpose2d(x, w, b, stride=2,
                                                                      padding=1))
    # channel chunks: partial sums in float32, rounded once
    got = ct.conv_transpose2d(da.from_array(x, chunks=(2, 2, 8, 8)), w, b, stride=2,
                              padding=1).compute()
    ref, abs_ref = _expected(x, w, b, dict(stride=2, padding=1), 2, True)
    assert got.dtype == dt
    _check(got, ref, abs_ref, dt, _terms(w.shape, 1, True))
    conv = ct.conv2d(da.from_array(x, chunks=(2, 3, 4, 4)), w.transpose(1, 0, 2, 3), padding=1)
    assert conv.dtype == dt and conv.compute().dtype == dt
    y3 = ct.conv_transpose3d(da.from_array(x[:, :, None], chunks=(1, 6, 1, 8, 8)),
                             w[:, :, None], b, stride=2, padding=(0, 1, 1))
    np.testing.assert_array_equal(y3.compute(), ct.conv_transpose3d(
        x[:, :, None], w[:, :, None], b, stride=2, padding=(0, 1, 1)))
    y = ct.conv_transpose2d(x, w, stride=2, padding=1)
    grads = ct.conv_transpose2d_backward(da.from_array(y, chunks=(2, 5, 8, 8)), x, w,
                                         stride=2, padding=1)
    for got, want in zip(grads, ct.conv_transpose2d_backward(y, x, w, stride=2, padding=1)):
        assert got.dtype == dt
        np.testing.assert_allclose(np.asarray(got).astype(F32), want.astype(F32),
                                   rtol=4 * UNIT[dt], atol=4 * UNIT[dt] * np.abs(want.astype(
                                       F32)).max())


@pytest.mark.parametrize("call", [
    lambda x, w: ct.conv_transpose2d(x, w, backend="cuda"),
    lambda x, w: ct.conv2d(x, w.transpose(1, 0, 2, 3), backend="cuda"),
    lambda x, w: ct.conv_transpose3d(x[:, :, None], w[:, :, None], backend="cuda"),
    lambda x, w: ct.conv3d(x[:, :, None], w[:, :, None].transpose(1, 0, 2, 3, 4),
                           backend="cuda"),
    lambda x, w: ct.conv_transpose1d_backward(ct.conv_transpose1d(x[:, :, 0], w[:, :, 0]),
                                              x[:, :, 0], w[:, :, 0], backend="cuda"),
], ids=["conv_transpose2d", "conv2d", "conv_transpose3d", "conv3d", "backward"])
def test_cuda_refuses_half_precision(call):
    x, w, _ = _arrays(CASES[0], 2, True, F16)
    with pytest.raises(TypeError, match="float32 or float64 only"):
        call(x, w)


# ----------------------------------------------------------------------------
# memory: no float32 copy of the whole input


@pytest.mark.parametrize("op", ["transposed", "correlation"])
@pytest.mark.parametrize("rank", [2, 3])
def test_float32_buffers_stay_within_the_workspace_limit(rank, op):
    """A 16 MiB float16 input (32 MiB in float32) with a 2 MiB workspace limit: besides
    the float16 result, the call allocates less than a few chunk buffers."""
    transposed = op == "transposed"
    n, c, size = 64, 32, (64, 64) if rank == 2 else (8, 8, 64)
    x = np.ones((n, c, *size), F16)
    w = np.full((c, c) + (1,) * rank, 0.5, F16)
    fn = FORWARD[rank] if transposed else CONV[rank]
    fn(x[:1], w)                         # compiled before measuring
    limit = ct.get_workspace_limit()
    ct.set_workspace_limit(2 * 2**20)
    try:
        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        y = fn(x, w)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
        ct.set_workspace_limit(limit)
    assert y.dtype == F16 and float(y.reshape(-1)[0]) == c / 2
    extra = peak - y.nbytes
    assert extra < 8 * 2**20, f"{extra / 2**20:.1f} MiB beside the result"
    assert extra < x.nbytes // 2      # a float32 copy of x would be 2 * x.nbytes
