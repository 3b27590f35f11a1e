"""Sphinx configuration: `sphinx-build docs docs/_build` (pip install -e .[docs])."""

project = "catbuilder"
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.autosummary", "numpydoc"]
# one page per public name (docs/api.md lists catbuilder.API), made at build time
autosummary_generate = True
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_enable_extensions = ["colon_fence"]
html_theme = "pydata_sphinx_theme"
exclude_patterns = ["_build"]
numpydoc_show_class_members = False
