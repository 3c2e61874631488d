"""The examples in public docstrings run and print what they claim."""
import doctest
import importlib
import pkgutil

import pytest

import trainwise

MODULES = sorted(m.name for m in pkgutil.walk_packages(trainwise.__path__, "trainwise.") if m.name != "trainwise.__main__")  # runs the CLI


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
