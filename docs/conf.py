"""Sphinx configuration; builds offline: ``sphinx-build -W docs docs/_build``."""
import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "torchrl_gorl"
author = "torchrl_gorl developers"
release = "0.1.0"

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
