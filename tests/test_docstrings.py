"""Every public function and class has an Examples section, and every one runs."""
import doctest
import importlib
import inspect
import pkgutil

import pytest

import hnm

PUBLIC_MODULES = sorted(
    m.name for m in pkgutil.iter_modules(hnm.__path__, "hnm.")
    if not m.name.split(".")[-1].startswith("_")
)


def public_objects(module):
    """Functions and classes a module defines under a public name."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    for name in names:
        obj = getattr(module, name)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and \
                getattr(obj, "__module__", None) == module.__name__:
            yield name, obj


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_public_function_and_class_has_an_example(name):
    module = importlib.import_module(name)
    missing = [n for n, obj in public_objects(module) if ">>>" not in (obj.__doc__ or "")]
    assert not missing, f"{name}: no Examples section in {missing}"


def test_every_public_module_is_checked():
    # a module that fails to import would silently drop out of the lists above
    for name in PUBLIC_MODULES:
        importlib.import_module(name)
    assert "hnm.selection" in PUBLIC_MODULES and len(PUBLIC_MODULES) >= 8
