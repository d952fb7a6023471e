"""Peak memory of one call, measured in a child process (README, Guarantees: Memory).

:func:`peak_memory` runs ``setup`` (which builds the operands and compiles the kernels on
small shapes, so that the measured call's memory is fresh), then the expression ``call``
once, and reports, beyond the arrays the call returns:

* ``traced``: the peak of NumPy's allocations (``tracemalloc``; workspaces and copies are
  NumPy arrays);
* ``rss``: the peak resident set (``VmHWM`` after ``/proc/self/clear_refs``) over the
  resident set before the call: everything touched, Numba's own allocations included.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import convtranspose as ct

SRC = str(Path(ct.__file__).resolve().parents[1])

_CHILD = textwrap.dedent("""
    import json, sys, tracemalloc
    import numpy as np
    import convtranspose as ct
    from convtranspose.cpu.workspace import release_workspace
    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    exec(sys.argv[1])
    release_workspace()
    with open("/proc/self/clear_refs", "w") as f:       # reset the peak (VmHWM) to now
        f.write("5")
    base = status("VmRSS")
    tracemalloc.start()
    result = eval(sys.argv[2])
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss = status("VmHWM") - base
    arrays = result if isinstance(result, tuple) else (result,)
    nbytes = sum(a.nbytes for a in arrays if a is not None)
    print(json.dumps(dict(traced=traced - nbytes, rss=rss - nbytes, result=nbytes)))
""")


def peak_memory(setup, call, env=None):
    """``{"traced", "rss", "result"}`` in bytes for ``call`` after ``setup`` (see the
    module's docstring); ``env`` adds environment variables for the child."""
    env = dict(os.environ, **(env or {}),
               PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", _CHILD, textwrap.dedent(setup), call],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.split("\n")[-2])
