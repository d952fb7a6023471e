"""Calls in progress, registered so that no interruption can leave one registered for good.

Some bookkeeping is shared between the calls running now: which computations are inside
a kernel (a ``fork`` waits for them), whether SciPy's BLAS is held at one thread, which
call holds a thread's workspace. It must come out right however a call ends: normally,
by an exception, or by ``KeyboardInterrupt`` raised between any two bytecodes, even in
the ``finally`` that deregisters it. And a signal handler may start a call of its own in
the middle of another's bookkeeping.

So each call is a :class:`Call` that is *running* exactly while the generator of its
context manager (made with :func:`tracked`) has not finished, which the interpreter
itself records. A registration whose clean-up was interrupted is then seen to be stale,
and the next call drops it (:func:`prune`).
"""
from __future__ import annotations

import functools
import threading
import weakref
from contextlib import contextmanager

__all__ = ["Call", "tracked", "prune"]


class Call:
    """One call of a :func:`tracked` context manager: its thread, and whether it runs."""

    __slots__ = ("thread", "_gen")

    def __init__(self):
        self.thread = threading.get_ident()
        self._gen = None

    def running(self):
        """Whether the call's generator exists and has not finished (returned or raised)."""
        gen = self._gen() if self._gen is not None else None
        return gen is not None and gen.gi_frame is not None


def tracked(genfunc):
    """Like :func:`contextlib.contextmanager`; the generator gets its :class:`Call` first.

    Examples
    --------
    >>> from convtranspose._calls import tracked
    >>> @tracked
    ... def block(call):
    ...     yield call.running()
    >>> with block() as running:
    ...     running
    True
    """
    manager = contextmanager(genfunc)

    @functools.wraps(genfunc)
    def make(*args, **kwargs):
        call = Call()
        cm = manager(call, *args, **kwargs)
        call._gen = weakref.ref(cm.gen)
        return cm
    del make.__wrapped__      # the public signature has no ``call``
    return make


def prune(calls):
    """Drop from the set ``calls`` the calls that are no longer running; return ``calls``.

    Examples
    --------
    >>> from convtranspose._calls import Call, prune
    >>> len(prune({Call()}))     # never started
    0
    """
    calls.difference_update([c for c in calls if not c.running()])
    return calls
