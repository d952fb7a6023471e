"""Half precision in compiled code: float16 and bfloat16 read and written as 16-bit patterns.

Numba types neither NumPy's ``float16`` arrays (``NotImplementedError: float16``) nor
``ml_dtypes.bfloat16`` ones, so kernels take them as ``uint16`` views (:func:`bits`) and
convert each value where they read or write it: :func:`get` widens an element to float32,
:func:`put` rounds a float32 into one, :func:`put_vector` a vector register of them (one
``vcvtps2ph`` for float16). A plain float32 or float64 array goes through the
same calls unchanged, so one kernel serves every dtype; ``kind`` (:data:`PLAIN`,
:data:`FLOAT16`, :data:`BFLOAT16`, from :func:`kind_of`) says what a ``uint16`` array holds.

The conversions are exact and bitwise equal to NumPy's ``astype`` (and ``ml_dtypes``' for
bfloat16), NaN payloads included:

=====================  ================================================================
float16 -> float32     LLVM's ``half``: ``bitcast`` i16 -> half, ``fpext`` -> float
                       (``vcvtph2ps`` with F16C); a NaN keeps its payload unquieted, as
                       NumPy's does
float32 -> float16     ``fptrunc`` float -> half, ``bitcast`` -> i16 (``vcvtps2ph``):
                       round to nearest, ties to even; overflow to Inf; a NaN as NumPy
                       makes it (sign, top payload bits, never Inf)
bfloat16 -> float32    the 16-bit pattern shifted left by 16
float32 -> bfloat16    round to nearest, ties to even, on the bits; a NaN becomes the
                       quiet NaN of its sign (``0x7fc0``/``0xffc0``), as ml_dtypes does
=====================  ================================================================

Where the compilation target has no F16C (``NUMBA_CPU_NAME=generic``, where LLVM would call
runtime functions that Numba does not link), the float16 conversions run on integer and
float32 arithmetic instead (:data:`F16C` says which); both forms are tested against NumPy
over every float16 pattern and the float32 patterns around each rounding boundary.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic, overload

from .._jit import njit
from .._threading import launch
from ..params import is_half
from .simd import VectorType, _element_ptr, store, target_features, width

__all__ = ["PLAIN", "FLOAT16", "BFLOAT16", "F16C", "is_half", "kind_of", "bits",
           "compute_dtype", "get", "put", "put_vector", "widen", "narrow", "all_finite",
           "f16_to_f32", "f32_to_f16", "bf16_to_f32", "f32_to_bf16"]

#: ``kind`` of an array read or written as it is (float32, float64).
PLAIN = 0
#: ``kind`` of a ``uint16`` view of float16 data.
FLOAT16 = 1
#: ``kind`` of a ``uint16`` view of bfloat16 data.
BFLOAT16 = 2

#: Whether the target converts float16 in hardware (F16C); else integer code does.
F16C = "f16c" in target_features()


def kind_of(dtype):
    """:data:`FLOAT16`, :data:`BFLOAT16` or :data:`PLAIN` for ``dtype``.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.half import kind_of
    >>> kind_of(np.dtype(np.float16)), kind_of(np.dtype(np.float64))
    (1, 0)
    """
    if not is_half(dtype):
        return PLAIN
    return FLOAT16 if dtype.kind == "f" else BFLOAT16


def bits(a):
    """``a`` as kernels read it: a ``uint16`` view of a half-precision array (native byte
    order), anything else unchanged.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.half import bits
    >>> bits(np.array([1.0, -2.0], np.float16))
    array([15360, 49152], dtype=uint16)
    """
    return a.view(np.uint16) if is_half(a.dtype) else a


def compute_dtype(dtype):
    """The dtype kernels compute a result of ``dtype`` in: float32 for half precision,
    else ``dtype`` itself.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.half import compute_dtype
    >>> compute_dtype(np.dtype(np.float16)), compute_dtype(np.dtype(np.float64))
    (dtype('float32'), dtype('float64'))
    """
    return np.dtype(np.float32) if is_half(dtype) else dtype


# ----------------------------------------------------------------------------
# bit casts and LLVM's half type


@intrinsic
def _as_float(typingctx, u):
    """The float32 whose bits are the low 32 bits of the integer ``u``."""
    if not isinstance(u, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = args[0]
        if u.bitwidth > 32:
            v = builder.trunc(v, ir.IntType(32))
        elif u.bitwidth < 32:
            v = builder.zext(v, ir.IntType(32))
        return builder.bitcast(v, ir.FloatType())
    return types.float32(u), codegen


@intrinsic
def _as_uint(typingctx, f):
    """The bits of the float32 ``f`` as a uint32."""
    if f != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.uint32(f), codegen


@intrinsic
def _fpext_half(typingctx, h):
    """float16 bits (uint16) -> float32 through LLVM's ``half`` (F16C targets only)."""
    if not isinstance(h, types.Integer) or h.bitwidth != 16:
        return None

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())
    return types.float32(h), codegen


@intrinsic
def _fptrunc_half(typingctx, f):
    """float32 -> float16 bits (uint16) through LLVM's ``half`` (F16C targets only)."""
    if f != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))
    return types.uint16(f), codegen


# ----------------------------------------------------------------------------
# the four conversions


@njit(inline="always")
def _f16_nan(h):
    """float32 of the float16 NaN ``h`` as NumPy makes it: sign and payload kept."""
    u = np.uint32(h)
    return _as_float(((u & np.uint32(0x8000)) << np.uint32(16)) | np.uint32(0x7f800000)
                     | ((u & np.uint32(0x3ff)) << np.uint32(13)))


@njit(inline="always")
def _f16_to_f32_soft(h):
    """float16 bits -> float32 on integers: normal numbers re-biased, subnormals scaled."""
    u = np.uint32(h)
    sign = (u & np.uint32(0x8000)) << np.uint32(16)
    mag = u & np.uint32(0x7fff)
    if mag >= np.uint32(0x7c00):                      # Inf, NaN
        return _as_float(sign | np.uint32(0x7f800000) | ((mag & np.uint32(0x3ff))
                                                         << np.uint32(13)))
    if mag >= np.uint32(0x400):                       # normal: exponent bias 15 -> 127
        return _as_float(sign | ((mag + np.uint32(0x1c000)) << np.uint32(13)))
    v = np.float32(mag) * np.float32(2.0 ** -24)      # subnormal or zero: exact
    return _as_float(_as_uint(v) | sign)


@njit(inline="always")
def _f16_to_f32_hard(h):
    """float16 bits -> float32 by ``vcvtph2ps``; a NaN as NumPy makes it (unquieted)."""
    v = _fpext_half(h)
    if v != v:
        return _f16_nan(h)
    return v


@njit(inline="always")
def _f16_nan_bits(u):
    """float16 bits of the float32 NaN with bits ``u``, as NumPy's conversion gives them:
    the sign, the payload's top 10 bits, and never the pattern of Inf."""
    r = np.uint32(0x7c00) + ((u & np.uint32(0x7fffff)) >> np.uint32(13))
    if r == np.uint32(0x7c00):
        r += np.uint32(1)
    return np.uint16(((u >> np.uint32(16)) & np.uint32(0x8000)) | r)


@njit(inline="always")
def _f32_to_f16_soft(f):
    """float32 -> float16 bits on integers and float32 arithmetic, round to nearest even."""
    u = _as_uint(f)
    sign = (u >> np.uint32(16)) & np.uint32(0x8000)
    mag = u & np.uint32(0x7fffffff)
    if mag > np.uint32(0x7f800000):
        return _f16_nan_bits(u)
    if mag >= np.uint32(0x477ff000):                  # rounds to 65536 or more: Inf
        return np.uint16(sign | np.uint32(0x7c00))
    if mag >= np.uint32(0x38800000):                  # normal: re-bias and round the bits
        r = mag - np.uint32(0x38000000)
        r += np.uint32(0xfff) + ((r >> np.uint32(13)) & np.uint32(1))
        return np.uint16(sign | (r >> np.uint32(13)))
    # subnormal or zero: the multiple of 2**-24, rounded to even by adding 2**23 in float32
    scaled = _as_float(mag) * np.float32(2.0 ** 24)
    r = _as_uint(scaled + np.float32(2.0 ** 23)) - _as_uint(np.float32(2.0 ** 23))
    return np.uint16(sign | r)


@njit(inline="always")
def _f32_to_f16_hard(f):
    """float32 -> float16 bits by ``vcvtps2ph``; a NaN as NumPy makes it."""
    if f != f:
        return _f16_nan_bits(_as_uint(f))
    return _fptrunc_half(f)


#: float16 bits (``uint16``) -> float32, exactly (NaN payloads kept, as NumPy does).
f16_to_f32 = _f16_to_f32_hard if F16C else _f16_to_f32_soft
#: float32 -> float16 bits (``uint16``), round to nearest even (NaN as NumPy makes it).
f32_to_f16 = _f32_to_f16_hard if F16C else _f32_to_f16_soft


@njit(inline="always")
def bf16_to_f32(h):
    """bfloat16 bits (``uint16``) -> float32: the pattern shifted left by 16."""
    return _as_float(np.uint32(h) << np.uint32(16))


@njit(inline="always")
def f32_to_bf16(f):
    """float32 -> bfloat16 bits (``uint16``), round to nearest even; a NaN becomes the
    quiet NaN of its sign, as ml_dtypes makes it."""
    u = _as_uint(f)
    if f != f:
        return np.uint16(((u >> np.uint32(16)) & np.uint32(0x8000)) | np.uint32(0x7fc0))
    u += np.uint32(0x7fff) + ((u >> np.uint32(16)) & np.uint32(1))
    return np.uint16(u >> np.uint32(16))


# ----------------------------------------------------------------------------
# element access for kernels that take any dtype


def get(src, i, kind):
    """``src[i]`` as a float: widened from float16 or bfloat16 bits when ``src`` is a
    ``uint16`` array (``kind`` says which), as it is for a float array (compiled code only)."""
    raise NotImplementedError("get is for compiled code")


def put(dst, i, value, kind):
    """``dst[i] = value``: ``value`` (float32) rounded to float16 or bfloat16 bits when
    ``dst`` is a ``uint16`` array (``kind`` says which), cast for a float array (compiled
    code only)."""
    raise NotImplementedError("put is for compiled code")


def _halfword(array_type):
    return isinstance(array_type.dtype, types.Integer) and array_type.dtype.bitwidth == 16


@overload(get)
def _get(src, i, kind):
    if isinstance(src.dtype, types.Float):
        return lambda src, i, kind: src[i]
    if _halfword(src):
        def impl(src, i, kind):
            if kind == BFLOAT16:
                return bf16_to_f32(src[i])
            return f16_to_f32(src[i])
        return impl
    return None


@overload(put)
def _put(dst, i, value, kind):
    if isinstance(dst.dtype, types.Float) or (
            _halfword(dst) and isinstance(value, types.Integer) and value.bitwidth == 16):
        def plain(dst, i, value, kind):     # a float, or half-precision bits as they are
            dst[i] = value
        return plain
    if _halfword(dst):
        def impl(dst, i, value, kind):
            v = np.float32(value)
            if kind == BFLOAT16:
                dst[i] = f32_to_bf16(v)
            else:
                dst[i] = f32_to_f16(v)
        return impl
    return None


# ----------------------------------------------------------------------------
# a vector of float32 rounded as it is stored


def _lanes_const(ty, n, value):
    return ir.Constant(ir.VectorType(ty, n), [ir.Constant(ty, value)] * n)


def _halfword_c(arr):
    return isinstance(arr, types.Array) and arr.layout == "C" and _halfword(arr)


def _vector_store(narrowing):
    """An intrinsic ``(arr, i, v)``: the float32 vector ``v`` rounded to 16-bit patterns by
    ``narrowing(builder, v, bits_of_v, n)`` and stored at ``arr.flat[i : i + n]`` (a
    ``uint16`` array; no bounds check, no wraparound)."""
    def typer(typingctx, arr, i, v):
        if not (_halfword_c(arr) and isinstance(i, types.Integer)
                and isinstance(v, VectorType) and v.dtype == types.float32):
            return None

        def codegen(context, builder, sig, args):
            n = v.count
            vec = args[2]
            u = builder.bitcast(vec, ir.VectorType(ir.IntType(32), n))
            lanes = narrowing(builder, vec, u, n)
            ptr = _element_ptr(context, builder, sig.args[0], args[0], sig.args[1], args[1])
            builder.store(lanes, builder.bitcast(ptr, lanes.type.as_pointer()), align=2)
            return context.get_dummy_value()
        return types.none(arr, i, v), codegen
    typer.__name__ = narrowing.__name__
    return intrinsic(typer)


def _nan_lanes(builder, vec, u, n):
    """Whether each lane is NaN, and its sign bit moved to bit 15 (as ``i32`` lanes)."""
    i32 = ir.IntType(32)
    isnan = builder.fcmp_unordered("uno", vec, vec)
    sign = builder.and_(builder.lshr(u, _lanes_const(i32, n, 16)),
                        _lanes_const(i32, n, 0x8000))
    return isnan, sign


def _f16_lanes(builder, vec, u, n):
    """:func:`_f32_to_f16_hard` lane by lane: ``vcvtps2ph`` of the vector, NaN lanes
    replaced by NumPy's pattern (sign, top payload bits, never Inf)."""
    i32, i16 = ir.IntType(32), ir.IntType(16)
    rounded = builder.bitcast(builder.fptrunc(vec, ir.VectorType(ir.HalfType(), n)),
                              ir.VectorType(i16, n))
    isnan, sign = _nan_lanes(builder, vec, u, n)
    payload = builder.lshr(builder.and_(u, _lanes_const(i32, n, 0x7fffff)),
                           _lanes_const(i32, n, 13))
    one = _lanes_const(i32, n, 1)
    payload = builder.select(builder.icmp_unsigned("<", payload, one), one, payload)
    nan = builder.trunc(builder.or_(sign, builder.add(payload, _lanes_const(i32, n, 0x7c00))),
                        ir.VectorType(i16, n))
    return builder.select(isnan, nan, rounded)


def _bf16_lanes(builder, vec, u, n):
    """:func:`f32_to_bf16` lane by lane: round to nearest even on the bits, NaN lanes the
    quiet NaN of their sign."""
    i32, i16 = ir.IntType(32), ir.IntType(16)
    sixteen = _lanes_const(i32, n, 16)
    odd = builder.and_(builder.lshr(u, sixteen), _lanes_const(i32, n, 1))
    r = builder.add(u, builder.add(odd, _lanes_const(i32, n, 0x7fff)))
    rounded = builder.trunc(builder.lshr(r, sixteen), ir.VectorType(i16, n))
    isnan, sign = _nan_lanes(builder, vec, u, n)
    nan = builder.trunc(builder.or_(sign, _lanes_const(i32, n, 0x7fc0)), ir.VectorType(i16, n))
    return builder.select(isnan, nan, rounded)


#: ``(arr, i, v)``: float32 vector ``v`` rounded to float16 bits at ``arr.flat[i:]`` (F16C).
_store_f16 = _vector_store(_f16_lanes)
#: ``(arr, i, v)``: float32 vector ``v`` rounded to bfloat16 bits at ``arr.flat[i:]``.
_store_bf16 = _vector_store(_bf16_lanes)


def put_vector(dst, i, v, kind, spill):
    """``dst.flat[i : i + n] = v`` for a float32 vector ``v`` of ``n`` lanes
    (:mod:`~convtranspose.cpu.simd`): stored as it is in a float array, rounded lane by
    lane to float16 or bfloat16 bits (``kind``) in a ``uint16`` one, bitwise as :func:`put`
    (``vcvtps2ph`` of the whole vector on F16C targets; elsewhere float16 goes through the
    float32 array ``spill``, ``n`` elements at least, and :func:`put`) (compiled code
    only)."""
    raise NotImplementedError("put_vector is for compiled code")


@overload(put_vector)
def _put_vector(dst, i, v, kind, spill):
    if isinstance(dst.dtype, types.Float):
        def plain(dst, i, v, kind, spill):
            store(dst, i, v)
        return plain
    if not _halfword(dst):
        return None
    if F16C:
        def hard(dst, i, v, kind, spill):
            if kind == BFLOAT16:
                _store_bf16(dst, i, v)
            else:
                _store_f16(dst, i, v)
        return hard

    def soft(dst, i, v, kind, spill):
        if kind == BFLOAT16:
            _store_bf16(dst, i, v)
        else:
            store(spill, 0, v)
            for j in range(width(spill)):
                dst[i + j] = f32_to_f16(spill[j])
    return soft


# ----------------------------------------------------------------------------
# whole arrays


@njit(cache=True, parallel=True)
def _widen_kernel(src, dst, kind):
    for i in prange(src.size):
        dst[i] = get(src, i, kind)


@njit(cache=True, parallel=True)
def _narrow_kernel(src, dst, kind):
    for i in prange(src.size):
        put(dst, i, src[i], kind)


def widen(a):
    """A half-precision array as a new float32 array (C order), converted in compiled code.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.half import widen
    >>> widen(np.array([1.5, -np.inf], np.float16))
    array([ 1.5, -inf], dtype=float32)
    """
    src = np.ascontiguousarray(a, a.dtype.newbyteorder("="))
    dst = np.empty(a.shape, np.float32)
    launch(_widen_kernel, bits(src).ravel(), dst.ravel(), kind_of(src.dtype))
    return dst


def narrow(a, dtype):
    """A float32 array rounded to the half-precision ``dtype`` (a new C-order array of its
    native byte order), converted in compiled code.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.half import narrow
    >>> narrow(np.array([1.0 + 2.0 ** -11, 65520.0], np.float32), np.dtype(np.float16))
    array([ 1., inf], dtype=float16)
    """
    dtype = np.dtype(dtype).newbyteorder("=")
    src = np.ascontiguousarray(a, np.float32)
    dst = np.empty(a.shape, dtype)
    launch(_narrow_kernel, src.ravel(), bits(dst).ravel(), kind_of(dtype))
    return dst


#: The exponent bits of each half format (all set: Inf or NaN), by ``kind``.
_EXPONENT = {FLOAT16: 0x7c00, BFLOAT16: 0x7f80}


@njit(cache=True, notice=False)
def _top_exponent(u, mask):
    """The largest ``u[i] & mask``: ``mask`` itself when some element is Inf or NaN (a
    max reduction that LLVM vectorises)."""
    top = np.uint16(0)
    for i in range(u.size):
        top = max(top, u[i] & mask)
    return top


def all_finite(a):
    """Whether every element of ``a`` (any dtype, strides and byte order) is finite; a
    half-precision array is read as bits in compiled code (NumPy's ``isfinite`` on
    float16 takes 1.5 ns an element, ten times its float32 time).

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.half import all_finite
    >>> a = np.array([1.0, 65504.0], np.float16)
    >>> all_finite(a), all_finite(np.append(a, np.inf))
    (True, False)
    """
    if not is_half(a.dtype):
        return bool(np.isfinite(a).all())
    if not a.size:
        return True
    kind = kind_of(a.dtype)
    src = np.ascontiguousarray(a, a.dtype.newbyteorder("="))
    mask = np.uint16(_EXPONENT[kind])
    return bool(launch(_top_exponent, bits(src).ravel(), mask) != mask)
