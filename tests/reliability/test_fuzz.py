"""Hypothesis over the whole argument space, valid and invalid.

Every call must either return a result equal to the float64 reference or raise
``ValueError``/``TypeError`` with a non-empty message (``MemoryError`` naming the size for
outputs that cannot exist). Never another exception, never a hang.
``CONVTRANSPOSE_FUZZ_EXAMPLES`` sets the example count (default 2000).
"""
from __future__ import annotations

import math
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convtranspose as ct
from convtranspose.params import normalise
from convtranspose.reference import conv_transpose2d_reference as reference
from convtranspose.testing import assert_close

EXAMPLES = int(os.environ.get("CONVTRANSPOSE_FUZZ_EXAMPLES", "2000"))
MAX_ELEMENTS = 2**16          # valid results larger than this are not computed
HOPELESS_BYTES = 2**48        # outputs this large must raise MemoryError

wild_scalar = st.one_of(
    st.integers(-3, 8), st.integers(-2**70, 2**70), st.sampled_from([2**31 - 1, 2**31, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True), st.none(), st.text(max_size=3),
    st.booleans(), st.sampled_from([np.int64(2), np.int32(-1), np.float32(1.0), 1j]),
)
wild_pair = st.one_of(
    wild_scalar, st.lists(wild_scalar, min_size=0, max_size=3).map(tuple),
    st.lists(st.integers(-1, 4), min_size=0, max_size=3),
    st.tuples(st.tuples(st.integers(-1, 3), st.integers(-1, 3)),
              st.tuples(st.integers(-1, 3), st.integers(-1, 3))),
    st.just(np.array([1, 2])), st.just(np.array([1.0, 2.0])), st.just({"a": 1}),
)
DTYPES = [np.float32, np.float64, np.float32, np.float64, ">f8", np.float16, np.int32,
          np.bool_, np.complex128, object]


def _maybe(draw, valid, wild, p_valid=0.93):
    return draw(valid) if draw(st.floats(0, 1)) < p_valid else draw(wild)


def _array(draw, shape):
    """An array of ``shape`` in a random dtype, order and layout (or a mangled shape)."""
    kind = draw(st.integers(0, 59))
    if kind == 0:      # wrong ndim
        shape = draw(st.lists(st.integers(0, 3), min_size=0, max_size=5).map(tuple))
    elif kind == 1:    # a zero-sized dimension
        shape = tuple(0 if i == draw(st.integers(0, len(shape) - 1)) else d
                      for i, d in enumerate(shape))
    elif kind == 2:
        return draw(st.sampled_from([None, "x", 3.0, [[1.0, 2.0], [3.0]], [1.0, 2.0]]))
    dtype = draw(st.sampled_from(DTYPES[:5] if kind < 54 else DTYPES))
    seed = draw(st.integers(0, 2**16))
    a = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    layout = draw(st.integers(0, 3))
    if layout == 1:
        a = np.asfortranarray(a)
    elif layout == 2 and a.ndim:
        a = np.repeat(a, 2, axis=-1)[..., ::2]       # non-contiguous view of the same values
    elif layout == 3:
        a.flags.writeable = False
    return a


@st.composite
def calls(draw):
    groups = draw(st.sampled_from([1, 1, 1, 2, 3]))
    c_in = groups * draw(st.integers(1, 3))
    c_out_g = draw(st.integers(1, 3))
    k = draw(st.tuples(st.integers(1, 4), st.integers(1, 4)))
    hw = draw(st.tuples(st.integers(1, 5), st.integers(1, 5)))
    n = draw(st.sampled_from([None, 0, 1, 2]))
    x_shape = (c_in, *hw) if n is None else (n, c_in, *hw)
    x = _array(draw, x_shape)
    w = _array(draw, (c_in, c_out_g, *k))
    bias = draw(st.booleans())
    b = _array(draw, (c_out_g * groups,)) if bias else None
    small = st.integers(1, 3)
    kwargs = dict(
        stride=_maybe(draw, st.one_of(small, st.tuples(small, small)), wild_pair),
        padding=_maybe(draw, st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2),
                                                                    st.integers(0, 2))),
                       wild_pair),
        output_padding=_maybe(draw, st.integers(0, 1), wild_pair),
        dilation=_maybe(draw, st.one_of(small, st.tuples(small, small)), wild_pair),
        groups=_maybe(draw, st.just(groups), wild_scalar, 0.97),
    )
    if draw(st.integers(0, 9)) == 0:
        kwargs["output_size"] = draw(st.one_of(wild_pair, st.tuples(st.integers(1, 20),
                                                                    st.integers(1, 20))))
    if draw(st.integers(0, 9)) == 0:
        kwargs["backend"] = draw(st.sampled_from(["direct", "im2col", "auto", "cuda", "",
                                                  None, 3]))
    else:
        kwargs["backend"] = draw(st.sampled_from(["direct", "im2col", "auto"]))
    return x, w, b, kwargs


def _planned_size(x, w, kwargs):
    """``(bytes, span)`` of the output of a call that validation would accept, else
    ``(None, None)``; ``span`` counts the non-empty dimensions only (NumPy refuses a shape
    whose dimensions multiply past ``intp`` even when one of them is 0). The shape comes
    from every parameter (``output_padding`` and ``output_size`` too), so a huge valid
    output is never attempted."""
    try:
        _, shape, _ = normalise(np.shape(x), np.shape(w), None, [np.dtype(np.float64)], **{
            k: v for k, v in kwargs.items() if k != "backend"})
    except Exception:
        return None, None
    return math.prod(shape) * 8, math.prod(d for d in shape if d) * 8


COUNT = {"ok": 0, "error": 0, "memory": 0, "skipped": 0}


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(calls())
def test_fuzz_whole_argument_space(call):
    x, w, b, kwargs = call
    nbytes, span = _planned_size(x, w, kwargs)
    if nbytes is not None and MAX_ELEMENTS * 8 < nbytes < HOPELESS_BYTES:
        COUNT["skipped"] += 1      # valid but too large to compute here
        return
    try:
        y = ct.conv_transpose2d(x, w, b, **kwargs)
    except (ValueError, TypeError) as exc:
        assert str(exc).strip(), f"{type(exc).__name__} with an empty message"
        COUNT["error"] += 1
        return
    except RuntimeError as exc:     # backend="cuda" where no GPU is: said, not crashed
        assert kwargs.get("backend") == "cuda" and not ct.cuda.is_available(), exc
        assert "needs a CUDA GPU" in str(exc)
        COUNT["error"] += 1
        return
    except MemoryError as exc:
        assert span is not None and span >= HOPELESS_BYTES, exc
        assert "bytes" in str(exc)
        COUNT["memory"] += 1
        return
    assert nbytes is None or nbytes < HOPELESS_BYTES
    COUNT["ok"] += 1
    ref_kwargs = {k: v for k, v in kwargs.items() if k != "backend"}
    e = reference(x, w, b, **ref_kwargs)
    assert y.shape == e.shape
    assert y.dtype == np.result_type(*[np.asarray(a).dtype for a in (x, w, b) if a is not None])
    assert_close(y, e, y.dtype, factor=2)


def test_fuzz_report():
    """Print the outcome counts of the fuzz test above (run in the same session)."""
    print(f"\nfuzz outcomes: {COUNT}")
