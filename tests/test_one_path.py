"""One path from every public forward function to the kernels, traced with ``sys.setprofile``.

README's Architecture section writes the path down: the public function (the face), the
operation layer (``operation.py``), validation (``problem.validate``, once), the CPU backend
(``ops.py``, with ``depth.py``, ``halfops.py`` and the registry ``dispatch.py``), then the
kernels (``cpu/``, and ``nonfinite.py``'s compiled NaN rules). Small shared helpers (``_arrays``, ``params``' data types and
predicates, the allocator, the thread pool) may be called from anywhere. These tests trace
a call of a new shape (so nothing is cached) and check the order, that the upper layers are
entered once and never from below, and that nothing validates twice, for the forward
functions and the gradients of every rank and layout.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest

import convtranspose as ct

LAYERS = {"convtranspose.operation": 1, "convtranspose.ops": 3, "convtranspose.depth": 3,
          "convtranspose.halfops": 3, "convtranspose.dispatch": 3}
#: Modules that any layer may call (data types, operand predicates, memory, threads).
HELPERS = {"convtranspose._arrays", "convtranspose._alloc", "convtranspose.params",
           "convtranspose.problem", "convtranspose._threading", "convtranspose._calls",
           "convtranspose._blaspool", "convtranspose.cpu.workspace"}
NAMES = ("face", "operation", "validation", "backend", "kernels")
VALIDATORS = ("validate", "validate_gradients")


def _layer(module, function, face):
    """The layer of a frame (0 face ... 4 kernels), or ``None`` for a helper or an outsider."""
    if module == face:
        return 0
    if module == "convtranspose.problem" and function in VALIDATORS:
        return 2
    if module in HELPERS or not module.startswith("convtranspose."):
        return None
    if module.startswith("convtranspose.cpu.") or module == "convtranspose.nonfinite":
        return 4
    return LAYERS.get(module, -1)       # -1: a module the path should not visit


def _trace(call):
    """The calls made by ``call()``: ``(caller module, callee module, callee function,
    whether a validator of ``problem.py`` is on the stack)``."""
    events = []

    def profile(frame, event, arg):
        if event != "call":
            return
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("convtranspose"):
            return
        back = frame.f_back
        caller = back.f_globals.get("__name__", "") if back is not None else ""
        inside, f = False, frame
        while f is not None:
            if f.f_code.co_name in VALIDATORS and \
                    f.f_globals.get("__name__") == "convtranspose.problem":
                inside = True
                break
            f = f.f_back
        events.append((caller, module, frame.f_code.co_name, inside))

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return events


def _operands(rank, transposed, last, n, size, dtype=np.float32):
    rng = np.random.default_rng(rank)
    x = rng.standard_normal((n, 16, *([size] * rank))).astype(dtype)
    if last:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    w = rng.standard_normal((16, 16, *([3] * rank))).astype(dtype)
    return x, w, rng.standard_normal(16).astype(dtype)


CASES = [(rank, transposed, last) for rank in (1, 2, 3) for transposed in (True, False)
         for last in (False, True)]


def _call(rank, transposed, last, backend, gradients):
    """The module of a public function (the forward, or with ``gradients`` its
    ``*_backward`` asking for all three) and a call of it on a shape it has not seen (run
    first on another, so that the trace holds no compilation)."""
    forward = getattr(ct, f"conv_transpose{rank}d" if transposed else f"conv{rank}d")
    fn = getattr(ct, f"{forward.__name__}_backward") if gradients else forward
    kw = dict(stride=2 if transposed else 1, backend=backend,
              data_format=ct.params.DATA_FORMATS[rank][last])
    calls = []
    for n, size in ((1, 5), (2, 6)):
        x, w, b = _operands(rank, transposed, last, n, size)
        args = (np.ones_like(forward(x, w, b, **kw)), x, w) if gradients else (x, w, b)
        calls.append(lambda args=args: fn(*args, **kw))
    calls[0]()
    return fn.__module__, calls[1]


@pytest.mark.parametrize("rank, transposed, last", CASES)
@pytest.mark.parametrize("backend", ["auto", "direct"])
@pytest.mark.parametrize("gradients", [False, True], ids=["forward", "gradients"])
def test_a_call_takes_one_path(rank, transposed, last, backend, gradients):
    face, call = _call(rank, transposed, last, backend, gradients)
    events = _trace(call)

    entries = []                 # (caller layer, callee layer, callee module.function)
    for caller, module, function, _ in events:
        if caller == module:
            continue
        callee = _layer(module, function, face)
        if callee is None:
            continue
        entries.append((_layer(caller, "", face), callee, f"{module}.{function}"))
    assert not [e for e in entries if e[1] == -1], "modules off the path were entered"

    # in order: each layer is first entered after the one above it
    firsts = []
    for _, callee, _ in entries:
        if callee not in firsts:
            firsts.append(callee)
    assert firsts == [0, 1, 2, 3, 4], [NAMES[i] for i in firsts]

    def entered(layer, by=None):
        return [e for e in entries if e[1] == layer and (by is None or e[0] == by)]

    # the face, the operation layer and validation once each, from the layer above
    assert [e[0] for e in entered(0)] == [None], entered(0)
    assert [e[0] for e in entered(1)] == [0], entered(1)
    assert [e[0] for e in entered(2)] == [1], entered(2)
    # the backend from the operation layer once (helpers may call back into it: the run a
    # backend hands to the allocator), and never from the kernels
    assert len(entered(3, by=1)) == 1, entered(3, by=1)
    assert not entered(3, by=4) and not entered(1, by=3) and not entered(1, by=4)
    # validation's rules run inside validate only: nothing validates twice
    outside = [f for _, m, f, inside in events if m == "convtranspose.params" and
               f.startswith("normalise") and not inside]
    assert not outside, outside


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_a_cached_call_skips_validation(rank):
    fn = getattr(ct, f"conv_transpose{rank}d")
    x, w, b = _operands(rank, True, False, 2, 5)
    fn(x, w, b, stride=2)
    events = _trace(lambda: fn(x, w, b, stride=2))
    assert not [e for e in events if e[1] == "convtranspose.problem" and e[2] in VALIDATORS]
    assert not [e for e in events if e[1] == "convtranspose.params" and
                e[2].startswith("normalise")]
