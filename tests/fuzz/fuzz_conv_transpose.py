"""Coverage-guided fuzzing of ``convtranspose.conv_transpose2d`` with atheris (libFuzzer).

A script, not a test (pytest collects nothing here); atheris is not a project dependency::

    pip install atheris                       # needs the test extras too (hypothesis)
    python tests/fuzz/fuzz_conv_transpose.py -max_total_time=120
    python tests/fuzz/fuzz_conv_transpose.py CORPUS_DIR -max_total_time=600 -jobs=1

Any libFuzzer option may follow (``-runs=N``, ``-max_len=N``, ``-seed=N``, a corpus
folder that it fills: keep it out of git). Unless given, inputs are bounded with
``-max_len=4096`` and crash files go to ``$TMPDIR/convtranspose-fuzz/`` (``-artifact_prefix``);
rerun one with ``python tests/fuzz/fuzz_conv_transpose.py CRASH_FILE``. libFuzzer's last
line, ``Done N runs in T second(s)``, gives the execution count; the counts of
outcomes (results, errors, MemoryError, skipped as too large) are printed after 1024,
2048, 4096, ... runs.

The fuzz bytes are decoded and checked by the Hypothesis fuzz test,
``tests/reliability/test_fuzz.py`` (through Hypothesis's ``fuzz_one_input``), so the
arguments and the oracle are one definition: every call returns a result equal to the
float64 reference within the tolerance table, or raises ``ValueError``/``TypeError`` with
a non-empty message (``MemoryError`` naming the bytes for outputs that cannot exist).
Only the package's pure-Python modules are instrumented for coverage: Numba compiles the
kernels in ``cpu/`` and ``cuda/`` from their bytecode, which instrumentation would break.
"""
from __future__ import annotations

import importlib.util
import os
import pkgutil
import random
import sys
import tempfile

import atheris

HERE = os.path.dirname(os.path.abspath(__file__))
PAD = 1024      # bytes after each input


def _compiled_modules():
    """The modules of ``convtranspose.cpu`` and ``convtranspose.cuda`` (not imported here)."""
    root = os.path.dirname(importlib.util.find_spec("convtranspose").origin)
    names = []
    for sub in ("cpu", "cuda"):
        names.append(f"convtranspose.{sub}")
        names += [f"convtranspose.{sub}.{m.name}"
                  for m in pkgutil.iter_modules([os.path.join(root, sub)])]
    return names


with atheris.instrument_imports(include=["convtranspose"], exclude=_compiled_modules()):
    import convtranspose  # noqa: F401

sys.path.insert(0, os.path.join(HERE, os.pardir, "reliability"))
import test_fuzz  # noqa: E402


def _args(argv):
    """``argv`` plus the bounded defaults, unless given."""
    argv = list(argv)
    if not any(a.startswith("-max_len=") for a in argv):
        argv.append("-max_len=4096")
    if not any(a.startswith("-artifact_prefix=") for a in argv):
        crashes = os.path.join(tempfile.gettempdir(), "convtranspose-fuzz", "")
        os.makedirs(crashes, exist_ok=True)
        argv.append(f"-artifact_prefix={crashes}")
    return argv


_check = test_fuzz.test_fuzz_whole_argument_space.hypothesis.fuzz_one_input
_runs = [0]


def one_input(data):
    """Check the call that ``data`` decodes to. Short inputs are padded with bytes drawn
    from a generator seeded by the input (the same input, the same call), so every input is
    a call: Hypothesis rejects one that runs out of bytes, and zero bytes would decode to
    the same invalid array shape every time."""
    _check(data + random.Random(data).randbytes(PAD))
    _runs[0] += 1
    if _runs[0] & (_runs[0] - 1) == 0 and _runs[0] >= 1024:     # 1024, 2048, 4096, ...
        print(f"#{_runs[0]} outcomes: {test_fuzz.COUNT}", file=sys.stderr, flush=True)


def main():
    atheris.Setup(_args(sys.argv), one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
