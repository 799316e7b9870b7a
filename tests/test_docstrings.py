"""Every docstring example in the package runs as written (they are the first code a user copies)."""
import doctest
import importlib
import pkgutil

import pytest

import torchrl_gorl

MODULES = sorted(m.name for m in pkgutil.walk_packages(torchrl_gorl.__path__, "torchrl_gorl."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    if name == "torchrl_gorl.envs.playground":
        pytest.importorskip("mujoco_playground", reason='needs the [playground] extra: pip install -e ".[playground]"')
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed in {name}"
