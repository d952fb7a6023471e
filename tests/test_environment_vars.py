"""``CONVTRANSPOSE_WORKSPACE_BYTES``, read at import: sizes with units are accepted, and a
bad value stops the import with a ValueError naming the variable; ``set_workspace_limit``
accepts and refuses the same spellings, naming its argument."""
import os
import subprocess
import sys

import pytest

VAR = "CONVTRANSPOSE_WORKSPACE_BYTES"
PRINT_LIMIT = "import convtranspose as ct; print(ct.get_workspace_limit())"
# the limit from the variable, then the limit set_workspace_limit gives the same text
PRINT_BOTH = ("import os, convtranspose as ct; a = ct.get_workspace_limit(); "
              f"ct.set_workspace_limit(os.environ['{VAR}']); print(a, ct.get_workspace_limit())")
ACCEPTED = [("256MiB", 256 * 2**20), ("64k", 64 * 2**10), ("1GiB", 2**30),
            ("500MB", 500 * 10**6), ("100000000", 10**8), (" 2M ", 2 * 2**20),
            ("64MiB", 64 * 2**20), ("3kb", 3000), ("7B", 7), ("1T", 2**40), ("1tb", 10**12),
            ("12 K", 12 * 2**10)]
REJECTED = ["1e8", "0", "-1", "abc", "12 parsecs", "1.5G", "0MiB", "0x10", "MiB", "1 2"]


def _import_with(value, code=PRINT_LIMIT):
    env = {**os.environ, VAR: value}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.mark.parametrize("value, limit", ACCEPTED)
def test_accepted_values_give_the_same_bytes_as_set_workspace_limit(value, limit):
    proc = _import_with(value, PRINT_BOTH)
    assert proc.returncode == 0, proc.stderr
    assert [int(n) for n in proc.stdout.split()] == [limit, limit]


@pytest.mark.parametrize("value", ["", "  "])
def test_empty_means_unset(value):
    proc = _import_with(value)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == 256 * 2**20


@pytest.mark.parametrize("value", REJECTED)
def test_set_workspace_limit_refuses_what_the_variable_refuses(value):
    import convtranspose as ct
    old = ct.get_workspace_limit()
    with pytest.raises(ValueError) as info:
        ct.set_workspace_limit(value)
    assert str(info.value).startswith("nbytes must be a positive number of bytes")
    assert str(info.value).endswith(f"got {value!r}")
    assert ct.get_workspace_limit() == old


@pytest.mark.parametrize("value", REJECTED)
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
