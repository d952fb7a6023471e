"""Sphinx configuration of convtranspose's documentation.

Build (from the repository root, after ``pip install ".[docs]"``)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Warnings are errors: a broken cross-reference (``nitpicky``), a public docstring whose
sections do not match its signature or that lacks Parameters, Returns, Raises, See Also or
Examples (numpydoc's validation and :func:`_check_raises` below), and a notebook or page
that does not parse all fail the build. The notebooks are rendered from their saved
outputs, never executed here.
"""
from __future__ import annotations

import inspect
import pathlib
import re
import shutil

from sphinx.util import logging

import convtranspose

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent

project = "convtranspose"
author = "convtranspose developers"
copyright = "2026, convtranspose developers"
version = release = convtranspose.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_nb",
    "matplotlib.sphinxext.plot_directive",
    "sphinx-mathjax-offline",      # MathJax served with the site: no CDN needed to read it
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "asv-results", "screenshots", "**.ipynb_checkpoints",
                    "notebooks/README.md"]
nitpicky = True            # every cross-reference must resolve
suppress_warnings = []

# -- the notebooks: copied from ../notebooks, rendered with their saved outputs -------------
NOTEBOOKS = DOCS / "notebooks"


def _copy_notebooks():
    """Mirror ``notebooks/*.ipynb`` into ``docs/notebooks/`` (ignored by git)."""
    NOTEBOOKS.mkdir(exist_ok=True)
    wanted = {p.name for p in (ROOT / "notebooks").glob("*.ipynb")}
    for stale in NOTEBOOKS.glob("*.ipynb"):
        if stale.name not in wanted:
            stale.unlink()
    for name in sorted(wanted):
        src, dst = ROOT / "notebooks" / name, NOTEBOOKS / name
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            shutil.copy2(src, dst)


_copy_notebooks()
nb_execution_mode = "off"          # the saved outputs of a full run are what the pages show
nb_execution_raise_on_error = True
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# -- API reference ---------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_typehints = "none"         # the numpydoc Parameters sections give the types
autodoc_default_options = {"members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = True
# numpydoc's checks that fail the build (as warnings, with -W): no docstring, unknown or
# misordered sections, parameters of the signature not documented, documented parameters
# the signature lacks, wrong order, a parameter or return value without a description,
# no Returns (for a function returning a value), no See Also, no Examples.
numpydoc_validation_checks = {"GL06", "GL07", "GL08", "SS01", "PR01", "PR02", "PR03", "PR07",
                              "RT01", "RT03", "SA01", "SA04", "EX01"}
numpydoc_validation_exclude = {r"\.__call__$", r"\.__init__$", r"\.__repr__$"}

# Public callables that raise nothing: the only ones allowed to have no Raises section.
RAISES_NOTHING = {
    "convtranspose.get_workspace_limit",
    "convtranspose.cuda.is_available",
    "convtranspose.cuda.implementation",
    "convtranspose.cuda.info",
    "convtranspose.ConvTranspose2d.parameters",
    "convtranspose.ConvTranspose2d.gradients",
    "convtranspose.Conv2d.parameters",
    "convtranspose.Conv2d.gradients",
    "convtranspose.ConvTranspose1d.parameters",
    "convtranspose.ConvTranspose1d.gradients",
    "convtranspose.Conv1d.parameters",
    "convtranspose.Conv1d.gradients",
    "convtranspose.ConvTranspose3d.parameters",
    "convtranspose.ConvTranspose3d.gradients",
    "convtranspose.Conv3d.parameters",
    "convtranspose.Conv3d.gradients",
    "convtranspose.dispatch.Choice",
    "convtranspose.dask_ops.GraphPlan",
}
_log = logging.getLogger(__name__)


def _check_raises(app, what, name, obj, options, lines):
    """Warn (an error with -W) for a public function, method or class without Raises."""
    if what not in ("function", "method", "class") or name in RAISES_NOTHING:
        return
    doc = inspect.getdoc(obj) or ""
    if not re.search(r"^Raises\n-{6,}$", doc, flags=re.M):
        _log.warning(f"{name}: the docstring has no Raises section", type="convtranspose",
                     subtype="raises")


def setup(app):
    app.connect("autodoc-process-docstring", _check_raises)


# -- figures drawn at build time (the plot directive) ----------------------------------------
plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 110)]
plot_rcparams = {"figure.dpi": 110, "font.size": 9}

# -- HTML --------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"convtranspose {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_show_sourcelink = False
html_copy_source = False
html_context = {"default_mode": "light"}
