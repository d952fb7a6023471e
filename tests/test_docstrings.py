"""The Examples sections of the public docstrings run and give what they show.

Every module of the package is collected by walking it, so a new module's examples are
tested without a list to keep up to date; the CUDA modules are included when
``numba.cuda`` imports (their examples run without a GPU).
"""
import doctest
import importlib
import pkgutil

import pytest

import convtranspose


def _cuda_importable():
    try:
        import numba.cuda  # noqa: F401
    except ImportError:
        return False
    return True


ALL_MODULES = sorted(m.name for m in pkgutil.walk_packages(convtranspose.__path__,
                                                           "convtranspose."))
MODULES = ["convtranspose"] + [n for n in ALL_MODULES
                               if _cuda_importable() or not n.startswith("convtranspose.cuda")]


def test_every_module_is_collected():
    """New modules come in by the walk: the ones added since the list was fixed are there."""
    for name in ("convtranspose._jit", "convtranspose.cpu.workspace", "convtranspose.params",
                 "convtranspose.tools.cli"):
        assert name in MODULES
    if _cuda_importable():
        assert "convtranspose.cuda.kernels" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


@pytest.mark.parametrize("name", [n for n in convtranspose.__all__
                                  if callable(getattr(convtranspose, n))])
def test_public_functions_have_examples(name):
    assert "Examples\n" in getattr(convtranspose, name).__doc__
