"""The Examples sections of the public docstrings run and give what they show."""
import doctest
import importlib
import pkgutil

import pytest

import convtranspose

MODULES = sorted(m.name for m in pkgutil.walk_packages(convtranspose.__path__, "convtranspose.")
                 if not m.name.startswith("convtranspose.cuda") and m.name != "convtranspose.__main__")


@pytest.mark.parametrize("name", ["convtranspose", *MODULES])
def test_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
