"""Sphinx configuration of the unitary_lowrank documentation.

Build (warnings are errors)::

    pip install -e '.[docs]'
    python -m sphinx -W --keep-going -b html docs docs/_build/html

Cross-references to NumPy, SciPy, PyTorch and JAX need their intersphinx
inventories, which are downloaded at build time; they are used only when
``UNITARY_LOWRANK_DOCS_INTERSPHINX=1`` is set, so that the default build works
offline.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# the package, wherever Sphinx is started from (an editable install also works)
sys.path.insert(0, str(ROOT))

import unitary_lowrank  # noqa: E402

# -- project -------------------------------------------------------------------------------------

project = "unitary_lowrank"
author = "unitary_lowrank developers"
copyright = "unitary_lowrank developers"
release = unitary_lowrank.__version__
version = release

# -- extensions ----------------------------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_nb",  # MyST Markdown pages and executed MyST notebooks (it loads myst_parser)
]

INTERSPHINX = os.environ.get("UNITARY_LOWRANK_DOCS_INTERSPHINX", "") not in ("", "0")
if INTERSPHINX:
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "scipy": ("https://docs.scipy.org/doc/scipy", None),
        "torch": ("https://docs.pytorch.org/docs/stable", None),
        "jax": ("https://docs.jax.dev/en/latest", None),
    }

# MathJax from a local copy (the sphinx-mathjax-offline package ships MathJax 3 and copies it
# into _static/mathjax), so the pages render math without a network; without that package
# Sphinx's default CDN path is kept and the pages still carry the TeX for MathJax.
if importlib.util.find_spec("sphinx-mathjax-offline") is not None:
    extensions.append("sphinx-mathjax-offline")

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}
root_doc = "index"
exclude_patterns = [
    "_build",
    "examples",  # scripts shown by literalinclude, not pages
    "jupyter_execute",
    ".jupyter_cache",
    "**.ipynb_checkpoints",
    "Thumbs.db",
    ".DS_Store",
]

# unresolved references to other projects (without intersphinx) are not warnings
nitpicky = False
default_role = None
suppress_warnings = [
    # the included benchmarks/README.md has headings that are not referenced by label
    "myst.header",
]

# -- autodoc, autosummary, numpydoc -------------------------------------------------------------

autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autosummary_generate = False  # the API pages list their names explicitly (no generated stubs)

numpydoc_show_class_members = False  # autodoc documents the members, once
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = INTERSPHINX  # type links only when the inventories are there
numpydoc_validation_checks: set[str] = set()
numpydoc_attributes_as_param_list = True

# -- MyST and MyST-NB ----------------------------------------------------------------------------

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 4  # "[...](#exit-status-and-stop_reason)" in tasks.md
myst_dmath_double_inline = True

nb_execution_mode = "force"  # the tutorials are executed on every build (a few seconds each)
nb_execution_raise_on_error = True
nb_execution_timeout = 120
nb_execution_show_tb = True
nb_execution_in_temp = True  # the kernels run in a temp dir: nothing is written into docs/
nb_merge_streams = True

# -- HTML ----------------------------------------------------------------------------------------

html_theme = "alabaster"
html_title = f"unitary_lowrank {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    "description": "Low-rank unitary and orthogonal updates for any Array-API library",
    "fixed_sidebar": True,
    "page_width": "1100px",
}
html_show_sourcelink = False

# -- optional adapters ---------------------------------------------------------------------------

#: pages of adapters, shown only when the adapter imports here (``unitary_lowrank.optax``
#: needs JAX and optax); otherwise each is replaced by a note that says so
OPTIONAL_PAGES = {
    "api/optax": "unitary_lowrank.optax",
    "tutorials/jax_optax": "unitary_lowrank.optax",
}


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except Exception:  # ImportError, or an adapter whose framework fails to load
        return False
    return True


def _stub_missing_pages(app, docname: str, source: list[str]) -> None:
    """Replace the page of an adapter that cannot be imported by a short note."""
    module = OPTIONAL_PAGES.get(docname)
    if module is None or _importable(module):
        return
    note = (
        "could not be imported when these pages were built (it needs its framework: "
        "``pip install -e '.[jax]' optax``), so this page is left out of this build."
    )
    if str(app.env.doc2path(docname)).endswith(".md"):
        source[0] = f"# `{module}`\n\n`{module}` {note.replace('``', '`')}\n"
    else:
        title = f"``{module}``"
        source[0] = f"{title}\n{'=' * len(title)}\n\n``{module}`` {note}\n"


def _escape_star_shapes(app, what, name, obj, options, lines: list[str]) -> None:
    """Escape the ``*`` of shapes such as ``shape (*batch_shape, n, p)`` in type lines.

    NumPy-style type specifications are plain text, where reStructuredText would read a
    leading ``*`` as the start of an emphasis.
    """
    for i, line in enumerate(lines):
        if "shape (*" in line:
            lines[i] = line.replace("shape (*", "shape (\\*")


def setup(app):
    """Connect the docstring and page handlers of this site."""
    app.connect("source-read", _stub_missing_pages)
    # before numpydoc's handler (priority 500) turns the sections into reST
    app.connect("autodoc-process-docstring", _escape_star_shapes, priority=400)
    return {"parallel_read_safe": True}
