"""Sphinx configuration for the book, "The container workbench".

The source directory is the repository root and this directory holds only
the configuration, so that chapters can include the engine's source with
paths like ``../mini_engine/runtime/process.py``. Build it with:

    .venv/bin/sphinx-build -W --keep-going -b html -c docs . docs/_build/html
"""

import os
import sys
from pathlib import Path

project = "The container workbench"
author = "The container workbench authors"
copyright = "the container workbench authors"

# docs/stage_listings.py: each chapter's listings show its stage's code
# (later stages' statements folded to one line).
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

extensions = ["myst_parser", "sphinx.ext.graphviz", "stage_listings"]

# The pictures: Graphviz sources in chapters/pictures/, drawn by Debian's
# graphviz (scripts/install-system-deps.sh) as SVG, which stays sharp when
# zoomed and keeps its text searchable. One font for all of them.
graphviz_output_format = "svg"
graphviz_dot_args = ["-Gfontname=DejaVu Sans", "-Nfontname=DejaVu Sans", "-Efontname=DejaVu Sans",
                     "-Gfontsize=11", "-Nfontsize=11", "-Efontsize=10"]

# The source directory is the repository root: build the index and the
# chapters, nothing else (not the labs' READMEs, not the venv).
root_doc = "docs/index"
include_patterns = ["docs/index.md", "chapters/*.md"]

# The instructor guide (instructor/): in the book built from this
# repository, and absent from the student edition (mini-engine course
# export leaves the directory out), whose book then builds without it. So
# its part of the index's table of contents is added here, only when it is
# there: a toctree that named a missing page would fail the -W build.
INSTRUCTOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "instructor")
INSTRUCTOR_PAGES = ["guide", "answers"]
if os.path.isdir(INSTRUCTOR):
    include_patterns.append("instructor/*.md")


def _instructor_toctree(app: object, docname: str, source: list[str]) -> None:
    if docname == root_doc and os.path.isdir(INSTRUCTOR):
        pages = "\n".join(f"../instructor/{page}" for page in INSTRUCTOR_PAGES)
        source[0] += f"\n```{{toctree}}\n:maxdepth: 2\n:caption: For the teacher\n\n{pages}\n```\n"


def setup(app: object) -> None:
    app.connect("source-read", _instructor_toctree)  # type: ignore[attr-defined]
exclude_patterns = [
    ".venv",
    ".git",
    ".ci",
    ".pytest_cache",
    ".ruff_cache",
    "**/.ipynb_checkpoints",
    "**/__pycache__",
    "*.egg-info",
    "build",
    "docs/_build",
    "labs",
    "tests",
    "bench",
    "scripts",
    "mini_engine",
]
source_suffix = {".md": "markdown"}

myst_enable_extensions = [
    "colon_fence",  # ::: fences for admonitions
    "deflist",  # term / definition lists
]
# Anchors for headings down to ###, so chapters can link to each other's sections.
myst_heading_anchors = 3

# {manpage}`mount(2)` links to the man page at man7.org.
manpages_url = "https://man7.org/linux/man-pages/man{section}/{page}.{section}.html"

# Console transcripts, Python and JSON all come through Pygments.
pygments_style = "sphinx"
highlight_language = "text"

html_theme = "alabaster"
html_title = project
html_theme_options = {
    "description": "A container engine and runtime, grown one kernel feature per chapter",
    "page_width": "1100px",
    "sidebar_width": "240px",
}
html_show_sourcelink = False
# The root document lands at docs/index.html (its path under the source
# directory); a one-line redirect at the top of the output leads there.
html_extra_path = ["_extra"]
html_static_path = ["_static"]
