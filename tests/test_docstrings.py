"""Every Examples section of the public modules runs as a doctest."""
import doctest
import importlib
import pkgutil

import pytest

import hnm

PUBLIC_MODULES = sorted(
    m.name for m in pkgutil.iter_modules(hnm.__path__, "hnm.")
    if not m.name.split(".")[-1].startswith("_")
)


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0


def test_public_modules_have_examples():
    tried = sum(doctest.testmod(importlib.import_module(n)).attempted for n in PUBLIC_MODULES)
    assert tried > 0
