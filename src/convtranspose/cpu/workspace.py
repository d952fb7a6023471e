"""The workspace of the GEMM-based kernels: its limit, and the buffers carved from it.

The ``im2col`` forms and the GEMM forms of the gradients give each thread one slot of
workspace; all slots together are bounded by the *workspace limit* (default 256 MiB;
:func:`set_workspace_limit`, or the environment variable ``CONVTRANSPOSE_WORKSPACE_BYTES``
read at import; both take a byte count such as ``268435456``, or a size with a unit,
``256MiB``, ``64M``, ``1GiB``, ``500MB``, read by :func:`parse_bytes`).

Each Python thread keeps its workspace of up to ``_KEEP_BYTES`` between calls (freshly
mapped memory costs a page fault per 4 KiB on first touch, about as long as the GEMM for
many suite shapes). A call holds that workspace while it runs; a call that starts while
it is held in the same thread (a signal handler computing in the middle of a
computation) gets a fresh one, so no call ever sees another's data.
"""
from __future__ import annotations

import os
import re
import threading

import numpy as np

from .._alloc import allocate
from .._calls import tracked

__all__ = ["get_workspace_limit", "set_workspace_limit", "workspace", "release_workspace",
           "parse_bytes", "ENV_VAR"]

ENV_VAR = "CONVTRANSPOSE_WORKSPACE_BYTES"
_DEFAULT_LIMIT = 256 * 2**20
_UNITS = {"": 1, "b": 1, "k": 2**10, "kib": 2**10, "kb": 10**3, "m": 2**20, "mib": 2**20,
          "mb": 10**6, "g": 2**30, "gib": 2**30, "gb": 10**9, "t": 2**40, "tib": 2**40,
          "tb": 10**12}


def parse_bytes(value, name=ENV_VAR):
    """A positive byte count from ``value``: an int, or a string of digits with an
    optional unit (``"256MiB"``).

    The one reading of sizes: ``CONVTRANSPOSE_WORKSPACE_BYTES`` and
    :func:`set_workspace_limit` both go through it, so they accept and refuse the same
    values. Units: ``k``/``KiB``, ``M``/``MiB``, ``G``/``GiB``, ``T``/``TiB`` (powers of
    1024), ``kB``, ``MB``, ``GB``, ``TB`` (powers of 1000), ``B``; any case, blanks around.

    Raises ``TypeError`` naming ``name`` for anything but an int or a string (a float, a
    bool), and ``ValueError`` naming it for any other string or a count below 1
    (``"1e8"``, ``"1.5G"``, ``"-1"``, ``"0"``, ``0``).

    Examples
    --------
    >>> from convtranspose.cpu.workspace import parse_bytes
    >>> parse_bytes("256MiB"), parse_bytes("64k"), parse_bytes("1000"), parse_bytes(512)
    (268435456, 65536, 1000, 512)
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (str, int, np.integer)):
        raise TypeError(f"{name} must be an int or a string such as '256MiB', got {value!r} "
                        f"of type {type(value).__name__}")
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", value)
        unit = match and _UNITS.get(match.group(2).lower())
        count = int(match.group(1)) * unit if unit else 0
    else:
        count = int(value)
    if count < 1:
        raise ValueError(f"{name} must be a positive number of bytes, optionally with a unit "
                         f"(e.g. 268435456, 256MiB, 64M, 1GiB), got {value!r}")
    return count


def _limit_from_env():
    text = os.environ.get(ENV_VAR, "")
    return _DEFAULT_LIMIT if not text.strip() else parse_bytes(text)


_limit = _limit_from_env()


def get_workspace_limit() -> int:
    """Return the workspace limit in bytes.

    The limit bounds the per-thread matrices of the GEMM-based kernels (``im2col`` and
    the gradients' GEMM forms) in one call: 256 MiB unless
    ``CONVTRANSPOSE_WORKSPACE_BYTES`` said otherwise at import, or
    :func:`set_workspace_limit` changed it since.

    Returns
    -------
    int
        The limit in bytes, at least 1.

    See Also
    --------
    set_workspace_limit : change it.
    explain : the backend choice, which depends on the limit.

    Examples
    --------
    >>> import convtranspose as ct
    >>> ct.get_workspace_limit() > 0
    True
    """
    return _limit


def set_workspace_limit(nbytes: int | str) -> int:
    """Set the workspace limit; return the previous limit in bytes.

    Parameters
    ----------
    nbytes : int or str
        Most bytes the GEMM-based kernels (``im2col`` and the gradients' GEMM forms) may
        use for their per-thread matrices in one call: a byte count (``268435456``) or a
        size with a unit, spelled as for ``CONVTRANSPOSE_WORKSPACE_BYTES`` (``"256MiB"``,
        ``"64M"``, ``"1GiB"``, ``"500MB"``, ``"268435456"``). A task needs at least one
        output pixel's worth per thread, which is used even when the limit is smaller.

    Returns
    -------
    int
        The previous limit, in bytes.

    Raises
    ------
    TypeError
        ``nbytes`` is neither an int nor a string (a float such as ``1e8``, a bool).
    ValueError
        ``nbytes`` is below 1, or a string that is not a byte count with an optional unit
        (``"1e8"``, ``"1.5G"``, ``"-1"``, ``"0"``), as the environment variable refuses.

    See Also
    --------
    get_workspace_limit : the limit in force, in bytes.

    Notes
    -----
    The ``im2col`` forms give each of the ``NUMBA_NUM_THREADS`` threads one slot, all the
    slots together within the limit, and cut their tasks (chunks of images, then bands of
    output rows, then bands of a row's columns) to fit a slot, so a different limit may
    cut the GEMMs differently: the result may then differ in the last bits, and
    ``backend="auto"`` may choose another form. The col2im form, whose smallest task is
    a whole output row, runs only where that row fits a slot, except for an Inf or NaN
    weight (which the phase form hands to it), when it exceeds the limit by what its row
    tasks need beyond it.

    Examples
    --------
    >>> import convtranspose as ct
    >>> old = ct.set_workspace_limit("64MiB")
    >>> ct.get_workspace_limit()
    67108864
    >>> _ = ct.set_workspace_limit(32 * 2**20)
    >>> ct.get_workspace_limit()
    33554432
    >>> _ = ct.set_workspace_limit(old)
    """
    global _limit
    old, _limit = _limit, parse_bytes(nbytes, "nbytes")
    return old


_local = threading.local()   # .buf: the kept buffer; .holder: the Call using it, if any
_KEEP_BYTES = 64 * 2**20     # workspace kept between calls, per thread, when no larger


def _held():
    holder = getattr(_local, "holder", None)
    return holder is not None and holder.running()


@tracked
def workspace(call, dtype, *sizes):
    """Flat arrays of ``dtype`` with the given element counts, carved from one buffer,
    for the duration of the block (64-byte aligned spans).

    The thread's kept buffer is used when it is free and large enough; otherwise (too
    small, or held by an interrupted call of this thread) a new one is allocated, and
    kept if it is at most ``_KEEP_BYTES`` and nothing held the old one. A call
    interrupted anywhere (``KeyboardInterrupt``) never leaves the kept buffer held.
    """
    itemsize = np.dtype(dtype).itemsize
    spans = [-(-n * itemsize // 64) * 64 for n in sizes]
    total = sum(spans)
    buf = getattr(_local, "buf", None)
    held = _held()
    if held or buf is None or buf.size < total:
        buf = allocate(total, np.uint8, "workspace")
        if not held:
            _local.buf = buf if total <= _KEEP_BYTES else None
    try:
        if not held and getattr(_local, "buf", None) is buf:
            _local.holder = call
        out, start = [], 0
        for n, span in zip(sizes, spans):
            out.append(buf[start:start + n * itemsize].view(dtype))
            start += span
        yield out
    finally:
        if getattr(_local, "holder", None) is call:
            _local.holder = None


def release_workspace():
    """Free the workspace this thread keeps between calls (not one in use).

    Examples
    --------
    >>> from convtranspose.cpu.workspace import release_workspace
    >>> release_workspace()
    """
    if not _held():
        _local.buf = None
