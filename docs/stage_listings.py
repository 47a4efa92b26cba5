"""Listings the size of the stage: the book's ``literalinclude``, told which chapter it is in.

A chapter shows the code of its own stage. The engine's run path is one
function for every stage, branching on what the stage has; a listing of it
in chapter 0 would show cgroups, seccomp and detached containers before any
of them is explained. So every ``literalinclude`` in ``chapters/NN-*.md``
shows its region as it stands at stage NN: each statement of a later stage
is folded to one line, ``# ... stage 3 (cgroups) adds 2 lines here``, with
the listing's line numbers still those of the source. A later chapter that
includes a function the reader has seen finds the lines its stage adds
emphasized; with ``:added:`` it shows only those lines and the blocks they
sit in, the rest folded to ``# ... as in chapter 0``.

A statement belongs to a stage when

- it is an ``if`` (or ``elif``) whose test asks ``X.has(NAME)`` for a stage
  named in ``mini_engine/stages.py`` (``if stage.has(CGROUPS):``), anded with
  anything else: its branch is that stage's;
- it declares a flag ``since`` a stage (``flag("--name", since=NETWORKING)``);
- a line of its head (a simple statement's lines, a block's down to its colon)
  ends in a comment ``# stage N`` (``# stage N: why``): the runtime, which
  knows config.json and not stages, is marked so;
- such a line ends in ``# chapter NAME``, for a chapter outside the stage
  ladder (``# chapter oci-runtime``): it belongs after the stage whose chapter
  precedes NAME's in the book's table of contents.

Comment lines right above such a statement go with it. Nested statements
take the latest stage. ``:stage: N`` (or a chapter's name) sets the chapter
by hand; a page outside ``chapters/`` folds nothing. tests/test_stage_listings.py
checks every listing of every chapter with the same functions, and that no
listing calls a module of a later chapter.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

REPO = Path(__file__).resolve().parent.parent

STAGE_MARK = re.compile(r"#\s*stage (\d+)\b(?!-)")
CHAPTER_MARK = re.compile(r"#\s*chapter ([a-z][\w-]*)\b")


# --- the book's order ------------------------------------------------------------

@cache
def toctree() -> tuple[str, ...]:
    """The chapters' names in the book's order, from docs/index.md's toctrees."""
    text = (REPO / "docs" / "index.md").read_text()
    blocks = [part.split("```", 1)[0] for part in text.split("```{toctree}")[1:]]
    return tuple(line.strip().removeprefix("../chapters/") for block in blocks for line in block.splitlines()
                 if line.strip().startswith("../chapters/"))


def level_of_chapter(name: str) -> float:
    """Where chapter ``name`` (``03-cgroups``, ``oci-runtime``) stands: its stage, or
    half a stage after the numbered chapter before it in the book."""
    if name[:2].isdigit():
        return float(int(name[:2]))
    order = toctree()
    if name not in order:
        raise ValueError(f"chapter {name!r} is in no toctree of docs/index.md")
    before = [int(c[:2]) for c in order[:order.index(name)] if c[:2].isdigit()]
    return (max(before) if before else -1) + 0.5


def describe(level: float) -> str:
    """``stage 3 (cgroups)``, or ``chapter oci-runtime``."""
    from mini_engine.stages import STAGES

    if level == int(level):
        stage = STAGES[int(level)]
        return f"stage {stage.number} ({stage.slug})"
    return "chapter " + next(c for c in toctree() if not c[:2].isdigit() and level_of_chapter(c) == level)


@cache
def stage_names() -> dict[str, int]:
    """The stages by the names the engine tests them with: ``{"CGROUPS": 3, ...}``."""
    from mini_engine import stages

    return {name: value.number for name, value in vars(stages).items() if isinstance(value, stages.Stage)}


# --- the stage of each line ----------------------------------------------------

def _asks(test: ast.expr) -> int | None:
    """The stage an ``if`` test needs: ``X.has(NAME)``, alone or anded."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        found = [n for n in map(_asks, test.values) if n is not None]
        return max(found) if found else None
    if (isinstance(test, ast.Call) and isinstance(test.func, ast.Attribute) and test.func.attr == "has"
            and len(test.args) == 1 and isinstance(test.args[0], ast.Name)):
        return stage_names().get(test.args[0].id)
    return None


def _since(value: ast.expr | None) -> int | None:
    """The stage of a declared flag: ``flag("--name", since=NETWORKING, ...)``."""
    if isinstance(value, ast.Call):
        for keyword in value.keywords:
            if keyword.arg == "since" and isinstance(keyword.value, ast.Name):
                return stage_names().get(keyword.value.id)
    return None


def marks(source: str) -> dict[int, float]:
    """The lines that end in a ``# stage N`` or ``# chapter NAME`` comment, and the level each names."""
    found: dict[int, float] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.COMMENT:
            continue
        if m := STAGE_MARK.match(token.string):
            found[token.start[0]] = float(m.group(1))
        elif m := CHAPTER_MARK.match(token.string):
            found[token.start[0]] = level_of_chapter(m.group(1))
    return found


@dataclass(frozen=True)
class Span:
    first: int  # line numbers in the source, both included
    last: int
    level: float


class MarkError(ValueError):
    pass


def spans(path: Path) -> tuple[Span, ...]:
    """Every statement of ``path`` that belongs to a stage, as a span of lines."""
    return _spans(path, path.stat().st_mtime_ns)  # read again when the file changed


@cache
def _spans(path: Path, _mtime: int) -> tuple[Span, ...]:
    source = path.read_text()
    tree = ast.parse(source)
    lines = source.splitlines()
    marked = marks(source)
    heads: dict[int, ast.stmt] = {}
    for node in ast.walk(tree):  # breadth first: the outermost statement of a line comes first
        if isinstance(node, ast.stmt):
            body = getattr(node, "body", None)
            last = node.end_lineno or node.lineno
            if isinstance(body, list) and body and body[0].lineno > node.lineno:
                last = body[0].lineno - 1  # a block's head: its first line down to its colon
            for line in range(node.lineno, last + 1):
                heads.setdefault(line, node)
    out = []
    for line, level in marked.items():
        if line not in heads:
            raise MarkError(f"{path.relative_to(REPO)}:{line}: a stage mark outside a statement's first lines")
        out.append((*_extent(heads[line]), level))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (n := _asks(node.test)) is not None:
            out.append((*_extent(node), float(n)))
        elif isinstance(node, ast.AnnAssign | ast.Assign) and (n := _since(node.value)) is not None:
            out.append((node.lineno, node.end_lineno or node.lineno, float(n)))
    result = []
    for first, last, level in out:
        # The comment lines right above a statement say why it is there: they go with it.
        while first > 1 and lines[first - 2].strip().startswith("#") and \
                not lines[first - 2].strip().startswith("# [") and \
                _indent(lines[first - 2]) == _indent(lines[first - 1]):
            first -= 1
        result.append(Span(first, last, level))
    return tuple(sorted(result, key=lambda s: (s.first, -s.last)))


def _extent(node: ast.stmt) -> tuple[int, int]:
    """The lines a stage's statement holds. An ``if`` with an ``else`` (or ``elif``) keeps
    its test and the other branch, which is what runs before the stage: only its body goes."""
    if isinstance(node, ast.If) and node.orelse:
        return node.body[0].lineno, node.body[-1].end_lineno or node.lineno
    return node.lineno, node.end_lineno or node.lineno


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def line_levels(path: Path) -> dict[int, float]:
    """Each line that belongs to a stage, and the latest stage of the spans around it."""
    levels: dict[int, float] = {}
    for span in spans(path):
        for n in range(span.first, span.last + 1):
            levels[n] = max(levels.get(n, -1.0), span.level)
    return levels


# --- a listing at a stage ------------------------------------------------------

@dataclass
class Shown:
    """What a listing shows: runs of source lines, each maybe followed by a fold line."""
    segments: list[tuple[int, list[str], list[int]]]  # (first line number, lines, lines to emphasize, 1-based)

    @property
    def text(self) -> str:
        return "".join(line for _, lines, _ in self.segments for line in lines)

    def code_lines(self) -> int:
        """The lines of code it shows: not blank, not a comment, not a fold."""
        return sum(1 for _, lines, _ in self.segments for line in lines
                   if line.strip() and not line.strip().startswith("#"))


def fold(path: Path, first: int, lines: list[str], level: float, added: bool = False) -> Shown:
    """Source ``lines`` of ``path`` (``lines[0]`` is line ``first``) as the chapter at
    ``level`` shows them: later stages' statements folded, its own emphasized when the
    listing also shows older code; with ``added``, only its own and the blocks around them."""
    levels = line_levels(path) if path.suffix == ".py" else {}
    numbers = range(first, first + len(lines))
    # Unmarked lines are stage 0's: emphasis shows a later stage's lines among them.
    older = any(levels.get(n, 0.0) < level for n in numbers if lines[n - first].strip())
    own = {n for n in numbers if levels.get(n) == level}
    keep = set(numbers)
    if added:
        if not own:
            raise ValueError(f"{path.name}: nothing in this listing is {describe(level)}'s (:added:)")
        keep = own | _headers(path, own, numbers)
    segments: list[tuple[int, list[str], list[int]]] = []
    current: list[str] = []
    emphasize: list[int] = []
    start = first
    hidden: list[int] = []

    def close_fold() -> None:
        nonlocal current, emphasize, start
        if not hidden:
            return
        later = sorted({levels[n] for n in hidden if levels.get(n, -1.0) > level})
        other = any(levels.get(n, 0.0) <= level for n in hidden if lines[n - first].strip())
        indent = min((_indent(lines[n - first]) for n in hidden if lines[n - first].strip()), default=0)
        count = sum(1 for n in hidden if lines[n - first].strip())
        if later and other:
            text = f"# ... {count} lines of other stages\n"
        elif later:
            names = [describe(x) for x in later]
            what = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
            verb = "adds" if len(later) == 1 else "add"
            text = f"# ... {what} {verb} {count} line{'s' * (count != 1)} here\n"
        else:
            text = f"# ... {count} line{'s' * (count != 1)} as before\n"
        if not current:
            start = hidden[0]
        current.append(" " * indent + text)
        segments.append((start, current, emphasize))
        current, emphasize = [], []
        hidden.clear()

    for n in numbers:
        line = lines[n - first]
        if levels.get(n, -1.0) > level or n not in keep:
            hidden.append(n)
            continue
        if hidden and not line.strip():
            hidden.append(n)  # a blank line after a fold stays folded
            continue
        close_fold()
        if not current:
            start = n
        current.append(line)
        if older and n in own and not added:
            emphasize.append(len(current))
    close_fold()
    if current:
        segments.append((start, current, emphasize))
    return Shown(segments)


def _headers(path: Path, own: set[int], numbers: range) -> set[int]:
    """The first lines of the blocks (def, if, with...) that hold lines of ``own``: the context."""
    source = path.read_text()
    tree, lines = ast.parse(source), source.splitlines()
    keep: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(node, ast.stmt) or not isinstance(body, list) or not body:
            continue
        inside = range(node.lineno, (node.end_lineno or node.lineno) + 1)
        if any(n in own for n in inside) and node.lineno not in own:
            head_end = body[0].lineno - 1
            while head_end > node.lineno and (not lines[head_end - 1].strip() or
                                              lines[head_end - 1].strip().startswith("#")):
                head_end -= 1  # the comments above the body are the body's
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and ast.get_docstring(node):
                head_end = body[0].end_lineno or head_end  # the docstring says what it is
            keep.update(n for n in range(node.lineno, head_end + 1) if n in numbers)
            for other in getattr(node, "orelse", []) or []:
                if any(n in own for n in range(other.lineno, (other.end_lineno or other.lineno) + 1)):
                    # the "else:" line above a branch that holds our lines
                    keep.update(n for n in range(other.lineno - 1, other.lineno) if n in numbers)
    return keep


def chapter_level(docname: str, option: str | None = None) -> float | None:
    """The level a page's listings show: its chapter's (``chapters/03-cgroups``), the
    ``:stage:`` option's, or None (fold nothing) for a page outside the chapters."""
    if option:
        return float(int(option)) if option.strip().isdigit() else level_of_chapter(option.strip())
    if docname.startswith("chapters/"):
        return level_of_chapter(docname.removeprefix("chapters/"))
    return None


# --- the listings of a chapter, outside Sphinx (for the tests) --------------------------

@dataclass
class Listing:
    chapter: str  # "03-cgroups"
    line: int  # of the directive in the chapter
    path: Path
    options: dict[str, str]

    def source(self) -> tuple[int, list[str]]:
        """The region as ``literalinclude`` reads it: its first line number, and its lines."""
        from types import SimpleNamespace

        from sphinx.directives.code import LiteralIncludeReader

        options: dict[str, Any] = {k: v for k, v in self.options.items()
                                   if k not in ("dedent", "emphasize-lines", "caption", "stage", "added")}
        options["lineno-match"] = True
        reader = LiteralIncludeReader(str(self.path), options, SimpleNamespace(source_encoding="utf-8"))
        text, _ = reader.read()
        return reader.lineno_start, text.splitlines(keepends=True)

    def level(self) -> float | None:
        return chapter_level(f"chapters/{self.chapter}", self.options.get("stage"))

    def shown(self) -> Shown:
        """What the book shows of it."""
        first, lines = self.source()
        level = self.level()
        if level is None or self.path.suffix != ".py":
            return Shown([(first, lines, [])])
        return fold(self.path, first, lines, level, "added" in self.options)


def listings(chapter: Path) -> list[Listing]:
    """Every ``literalinclude`` of a chapter's Markdown, with its options."""
    out = []
    lines = chapter.read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"\s*`{3,}\{literalinclude\}\s+(\S+)", line)
        if not m:
            continue
        options: dict[str, str] = {}
        for option in lines[i + 1:]:
            o = re.match(r"\s*:([\w-]+):\s*(.*)", option)
            if not o:
                break
            value = o.group(2).strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            options[o.group(1)] = value
        path = (chapter.parent / m.group(1)).resolve()
        out.append(Listing(chapter.stem, i + 1, path, options))
    return out


# --- the directive ---------------------------------------------------------------

def setup(app: Any) -> dict[str, Any]:
    from docutils import nodes
    from docutils.parsers.rst import directives
    from sphinx.directives.code import LiteralInclude, LiteralIncludeReader, container_wrapper, dedent_lines

    class StageLiteralInclude(LiteralInclude):
        """``literalinclude`` that shows the region as it stands at the page's stage."""

        option_spec: ClassVar[dict[str, Any]] = dict(
            LiteralInclude.option_spec, stage=directives.unchanged_required, added=directives.flag)

        def run(self) -> list[nodes.Node]:
            level = chapter_level(self.env.docname, self.options.get("stage"))
            rel, filename = self.env.relfn2path(self.arguments[0])
            if level is None or not filename.endswith(".py") or "diff" in self.options:
                return super().run()
            self.env.note_dependency(rel)
            location = self.state_machine.get_source_and_line(self.lineno)
            options = {k: v for k, v in self.options.items() if k not in ("dedent", "emphasize-lines")}
            options["lineno-match"] = True
            reader = LiteralIncludeReader(filename, options, self.config)
            try:
                text, _ = reader.read(location=location)
                shown = fold(Path(filename), reader.lineno_start, text.splitlines(keepends=True), level,
                             "added" in self.options)
            except Exception as exc:
                return [self.state.document.reporter.warning(exc, line=self.lineno)]
            if len(shown.segments) == 1 and not shown.segments[0][2]:
                return super().run()  # nothing folded, nothing to emphasize
            blocks = []
            for start, lines, emphasize in shown.segments:
                if "dedent" in self.options:
                    lines = dedent_lines(lines, self.options["dedent"], location=location)
                body = "".join(lines)
                block = nodes.literal_block(body, body, source=filename)
                self.set_source_info(block)
                block["language"] = self.options.get("language", "python")
                block["linenos"] = "lineno-match" in self.options or "linenos" in self.options
                block["classes"] += [*self.options.get("class", []), "stage-listing"]
                block["highlight_args"] = {"linenostart": start, "hl_lines": emphasize} if emphasize \
                    else {"linenostart": start}
                blocks.append(block)
            if "caption" in self.options:
                wrapper = container_wrapper(self, blocks[0], self.options["caption"] or self.arguments[0])
            else:
                wrapper = nodes.container("", blocks[0], literal_block=True, classes=["literal-block-wrapper"])
            for block in blocks[1:]:
                wrapper += block
            wrapper["classes"].append("stage-listing")
            self.add_name(wrapper)
            return [wrapper]

    app.add_directive("literalinclude", StageLiteralInclude, override=True)
    app.add_css_file("stage-listings.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
