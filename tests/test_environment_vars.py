"""``CONVTRANSPOSE_WORKSPACE_BYTES``, read at import: sizes with units are accepted, and a
bad value stops the import with a ValueError naming the variable."""
import os
import subprocess
import sys

import pytest

VAR = "CONVTRANSPOSE_WORKSPACE_BYTES"
PRINT_LIMIT = "import convtranspose as ct; print(ct.get_workspace_limit())"


def _import_with(value):
    env = {**os.environ, VAR: value}
    return subprocess.run([sys.executable, "-c", PRINT_LIMIT], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.mark.parametrize("value, limit", [
    ("256MiB", 256 * 2**20), ("64k", 64 * 2**10), ("1GiB", 2**30), ("500MB", 500 * 10**6),
    ("100000000", 10**8), (" 2M ", 2 * 2**20),
    ("", 256 * 2**20), ("  ", 256 * 2**20),      # empty: unset, the default
])
def test_accepted_values(value, limit):
    proc = _import_with(value)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == limit


@pytest.mark.parametrize("value", ["1e8", "0", "-1", "abc", "12 parsecs", "1.5G", "0MiB"])
def test_rejected_values_fail_the_import_naming_the_variable(value):
    proc = _import_with(value)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ValueError: {VAR} must be a positive number of bytes"), last
    assert repr(value) in last


def test_unset_gives_the_default():
    env = {k: v for k, v in os.environ.items() if k != VAR}
    proc = subprocess.run([sys.executable, "-c", PRINT_LIMIT], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0 and int(proc.stdout) == 256 * 2**20
