"""Listings the size of the stage (issue 19): a chapter shows the code of its own stage.

Each chapter's ``literalinclude`` goes through docs/stage_listings.py, which
folds every statement of a later stage to one line. These tests read the
chapters as the book does, with the same functions, and check what the
reader sees: no listing of chapter k calls into a module of a chapter after
k, every stage mark stands where it means something, and the folding keeps
the source's line numbers.
"""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "docs"))

import stage_listings as sl  # noqa: E402

pytestmark = pytest.mark.unit

CHAPTERS = sorted((REPO / "chapters").glob("*.md"))


def module_level(path: Path) -> float | None:
    """The stage whose chapter explains a module, as its docstring says ("Chapter 03 reads
    this module"), or None: a module of the shared base (errors, system calls, files) is
    every stage's, as is the engine's runtime client, through which every stage runs."""
    if path.parent.name == "base":
        return None
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    if m := re.match(r"Chapter (\d+) reads this module", doc.split("\n\n")[1] if "\n\n" in doc else ""):
        return float(int(m.group(1)))
    return None


def imported_modules(path: Path) -> dict[str, Path]:
    """The names under which ``path`` imports modules of mini_engine (or their functions)."""
    names: dict[str, Path] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mini_engine"):
            base = REPO / node.module.replace(".", "/")
            for alias in node.names:
                module = base / f"{alias.name}.py"
                names[alias.asname or alias.name] = module if module.exists() else base.with_suffix(".py")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("mini_engine.") and alias.asname:
                    names[alias.asname] = REPO / (alias.name.replace(".", "/") + ".py")
    return {name: module for name, module in names.items() if module.exists()}


def used_names(code: str) -> set[str]:
    """The names a piece of code uses, not as an attribute (``x.volumes`` is not ``volumes``)."""
    found, previous = set(), None
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            if token.type == tokenize.NAME and not (previous and previous.string == "."):
                found.add(token.string)
            if token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT):
                previous = token
    except (tokenize.TokenError, IndentationError):
        pass  # a region that ends inside a bracket: what was read is enough
    return found


# Calls ahead that the text announces, and why they stay.
AHEAD = {
    ("mini_engine/runtime/process.py", "trampoline"):
        "every exec goes through the sealed trampoline; the comment says chapter 06 explains it",
    ("mini_engine/containers/overlay.py", "is_opaque"):
        "chapter 04 explains overlay's opaque directories; the test of one lives with the layers",
    ("mini_engine/containers/overlay.py", "is_whiteout"):
        "chapter 04 explains overlay's whiteouts; the test of one lives with the layers",
}

# The modules a reader has seen code of, by the end of each chapter's level.
SEEN: dict[float, set[Path]] = {}
for _chapter in CHAPTERS:
    _level = sl.level_of_chapter(_chapter.stem)
    for _other in CHAPTERS:
        if sl.level_of_chapter(_other.stem) <= _level:
            SEEN.setdefault(_level, set()).update(listing.path for listing in sl.listings(_other))

LISTINGS = [pytest.param(listing, id=f"{listing.chapter}:{listing.line}")
            for chapter in CHAPTERS for listing in sl.listings(chapter) if listing.path.suffix == ".py"]


@pytest.mark.parametrize("listing", LISTINGS)
def test_a_listing_shows_no_code_of_a_later_stage(listing: sl.Listing) -> None:
    level = listing.level()
    assert level is not None
    shown = listing.shown()
    where = f"chapters/{listing.chapter}.md:{listing.line} ({listing.path.relative_to(REPO)})"
    # What the reader sees of the source: nothing that a later stage marks as its own...
    levels = sl.line_levels(listing.path)
    for start, lines, _ in shown.segments:
        for n, line in enumerate(lines, start):
            if not line.lstrip().startswith("# ... "):
                assert levels.get(n, 0.0) <= level, f"{where}: line {n} is {sl.describe(levels[n])}'s"
    # ... and no call into a module that a later chapter explains, unless this chapter
    # or an earlier one shows code of it: a stage mark forgotten.
    modules = imported_modules(listing.path)
    code = "".join(line for _, lines, _ in shown.segments for line in lines)
    for name in sorted(used_names(code) & modules.keys()):
        later = module_level(modules[name])
        if (str(listing.path.relative_to(REPO)), name) in AHEAD or modules[name] in SEEN[level]:
            continue
        assert later is None or later <= level, (
            f"{where} uses {name} ({modules[name].relative_to(REPO)}), which "
            f"{sl.describe(later)} explains: mark the statement '# stage N' (docs/stage_listings.py)")


def test_every_stage_mark_stands_on_a_statement() -> None:
    for path in sorted((REPO / "mini_engine").rglob("*.py")):
        sl.spans(path)  # raises MarkError for a mark that starts no statement


SAMPLE = '''\
def run(stage, request):
    """A sample."""
    made = make()
    if stage.has(CGROUPS):
        # Why the limit comes first.
        refuse(request)
    if request.detach:  # stage 8: a monitor
        return detach()
    if "pid" in wanted:  # stage 2
        fork_again()
    else:
        say_pid()
    return wait(made)
'''


def test_a_listing_folds_later_stages_and_keeps_the_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "sample.py"
    path.write_text(SAMPLE)
    lines = SAMPLE.splitlines(keepends=True)
    at_0 = sl.fold(path, 1, lines, 0.0)
    # One block per run of source lines, each ending in its fold line, which stands at
    # the number of the first line it hides: every line keeps its number in the source.
    assert at_0.segments == [
        (1, [*lines[0:3], "    # ... stage 3 (cgroups) and stage 8 (real-images) add 5 lines here\n"], []),
        (9, [lines[8], "        # ... stage 2 (namespaces) adds 1 line here\n"], []),
        (11, lines[10:13], []),
    ]
    # Stage 3 shows its own lines, emphasized among stage 0's; stage 2's body still folded.
    at_3 = sl.fold(path, 1, lines, 3.0)
    shown = {n: line for start, text, _ in at_3.segments for n, line in enumerate(text, start)}
    emphasized = {start + i - 1 for start, _, marks in at_3.segments for i in marks}
    assert shown[4] == lines[3] and shown[6] == lines[5] and emphasized == {4, 5, 6}
    assert shown[9] == lines[8] and shown[10] == lines[9]  # stage 2's, below 3: shown
    assert shown[7].strip() == "# ... stage 8 (real-images) adds 2 lines here"
    # :added: shows stage 3's lines and the function's head, the rest folded.
    added = sl.fold(path, 1, lines, 3.0, added=True)
    assert "".join(added.text) == (
        'def run(stage, request):\n    """A sample."""\n    # ... 1 line as before\n'
        "    if stage.has(CGROUPS):\n        # Why the limit comes first.\n        refuse(request)\n"
        "    # ... 7 lines of other stages\n")
    # :added: in a chapter whose stage adds nothing there is an author's slip: the -W build says so.
    with pytest.raises(ValueError, match=r"nothing in this listing is stage 5 \(images\)'s"):
        sl.fold(path, 1, lines, 5.0, added=True)
