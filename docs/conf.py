"""Sphinx configuration of the normspec site.

The source directory is the repository root (``sphinx-build -c docs . docs/_build/html``), so
the normative pages in spec/ are rendered where they live, never copied, and the links between
docs/ and spec/ work the same on GitHub and on the site. Only docs/ and spec/ are read.
Everything that can drift is generated at build time by docs/_ext/normspec_docs.py from the
code and the committed data (see that module).
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))

import normspec_docs  # noqa: E402  (docs/_ext)

project = "normspec"
author = "the normspec authors"
copyright = f"{date.today().year}, {author}"
try:
    from importlib.metadata import version as _version

    release = _version("normspec")
except Exception:  # an uninstalled checkout still builds
    release = "unknown"

root_doc = "docs/index"
extensions = [
    "myst_parser",
    "sphinx_design",
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "normspec_docs",
]
source_suffix = {".md": "markdown"}
include_patterns = ["docs/**", "spec/*.md", "spec/methods/*.md"]
# Sphinx walks every folder that is not excluded: keep it out of the rest of the repository.
exclude_patterns = sorted(
    {p.name for p in ROOT.iterdir() if p.is_dir() and p.name not in ("docs", "spec")}
    | {"docs/_build", "docs/_ext", "docs/data", "docs/examples",
       "spec/cases", "spec/vectors", "README.md"}
)

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist", "fieldlist"]
myst_dmath_double_inline = True
myst_heading_anchors = 4
myst_links_external_new_tab = False

# Internal references must resolve: a broken {ref}, {eq} or autodoc cross-reference is an error.
nitpicky = True
nitpick_ignore_regex = [
    # third-party and typing names in signatures (no intersphinx: the build is offline)
    ("py:class", r"(np|numpy|npt|numpy\.typing|collections\.abc|typing|types)\..*"),
    ("py:class", r"(FloatArray|Mapping|Sequence|Callable|ModuleType|Layout|object|Any)"),
    ("py:class", r"normspec\.reference\._.*"),
]
suppress_warnings = ["myst.header"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "undoc-members": False}

html_theme = "pydata_sphinx_theme"
html_title = f"normspec {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "navbar_align": "left",
    "header_links_before_dropdown": 5,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"**": ["sidebar-nav-bs"]}
# MathJax 3 from the docs extra (django-static-mathjax packages MathJax 3.2.2, no Django needed),
# copied into the site by normspec_docs at build time: the site renders its math offline, and
# the browser test does not depend on a CDN. Without the package, Sphinx's CDN default is used.
html_static_path = ["_static", "_build/generated/static"]
html_css_files = ["normspec.css"]
if normspec_docs.local_mathjax() is not None:
    mathjax_path = "mathjax/tex-chtml.js"
html_extra_path = ["_root"]  # the site's /index.html points at docs/index.html
html_copy_source = False
html_show_sourcelink = False
html_last_updated_fmt = ""
