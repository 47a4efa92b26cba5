"""The student edition: the same repository with each exercise's body taken out.

``mini-engine course export DIR`` (``make student DIR=...``) copies the
repository's tracked files to DIR and replaces each exercise of
``exercises.py`` by a stub: its decorators, signature and docstring stay,
its body becomes a pointer to the chapter's section and
``raise NotImplementedError``. Nothing is kept as a second copy: the stubs
are cut from the one source each time, with Python's own parser (``ast``)
finding where each body starts and ends.

Instructor material stays out: the proof that the grader grades
(tests/test_course.py, which needs the answers) and anything under
``instructor/``.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from mini_engine.base.errors import ContainerError
from mini_engine.course.exercises import EXERCISES, Exercise

# What a stub raises, and how the grader recognises it in a test's failure.
NOT_WRITTEN = "exercise {id} is not written yet"
NOT_WRITTEN_RE = re.compile(r"exercise ([a-z0-9-]+) is not written yet")

# Files the student edition leaves out: they hold or need the answers.
# Where the hints are: sealed in the student edition (exercises.sealed).
HINTS_FILE = "mini_engine/course/exercises.py"
INSTRUCTOR_ONLY = ("tests/test_course.py", "tests/test_course_guide.py", "instructor/")

# Never copied, tracked or not: build output and the checkout's own venv.
SKIPPED_DIRS = {".git", ".venv", "__pycache__", "_build", ".pytest_cache", ".ruff_cache", ".mypy_cache"}


def _find(tree: ast.Module, qualified: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    """The definition of ``name`` or ``Class.method`` at the top of a module."""
    body: list[ast.stmt] = tree.body
    *classes, name = qualified.split(".")
    for class_name in classes:
        found = [n for n in body if isinstance(n, ast.ClassDef) and n.name == class_name]
        if not found:
            raise LookupError(f"no class {class_name}")
        body = found[0].body
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return node
    raise LookupError(f"no function {qualified}")


def _stub_lines(exercise: Exercise, indent: str) -> list[str]:
    message = NOT_WRITTEN.format(id=exercise.id)
    return [
        f"{indent}# Exercise {exercise.id} (stage {exercise.stage}, {exercise.difficulty}, "
        f"about {exercise.minutes} min):",
        f'{indent}# write it from {exercise.chapter}, section "{exercise.section}".',
        f"{indent}# Hints, one at a time: mini-engine hint {exercise.id} 1 (then 2, then 3).",
        f'{indent}raise NotImplementedError("{message}: {exercise.chapter}")',
    ]


def stub_source(text: str, exercises: Iterable[Exercise]) -> str:
    """``text`` with each exercise's body replaced by its stub."""
    lines = text.splitlines(keepends=True)
    tree = ast.parse(text)
    cuts = []
    for exercise in exercises:
        node = _find(tree, exercise.function)
        body = node.body
        docstring = (isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                     and isinstance(body[0].value.value, str))
        # The stub starts after the docstring (or right after the signature's
        # colon) and ends where the function's last statement ends.
        first = body[0].end_lineno if docstring else node.body[0].lineno - 1
        assert first is not None and node.end_lineno is not None
        if not docstring and lines[node.body[0].lineno - 1].lstrip().startswith(("def ", "async def ")):
            raise ValueError(f"{exercise.function}: a one-line function cannot be an exercise")
        first_line = lines[body[0].lineno - 1]
        indent = first_line[:len(first_line) - len(first_line.lstrip())]
        cuts.append((first, node.end_lineno, _stub_lines(exercise, indent)))
    ids = ", ".join(sorted(e.id for e in exercises))
    for first, last, stub in sorted(cuts, reverse=True):
        lines[first:last] = [line + "\n" for line in stub]
    return keep_imports("".join(lines), text, ids)


def _names_used(tree: ast.Module) -> set[str]:
    """The names a module reads: ``os`` of ``os.path.join``, ``ContainerError`` of a raise."""
    return {node.id for node in ast.walk(tree)
            if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Store)}


def keep_imports(stubbed: str, reference: str, ids: str) -> str:
    """``stubbed`` with the imports only the cut bodies used marked for linters, not removed.

    They stay: they are a hint of what the exercise needs, and the learner's
    body uses them again. Until then ruff's F401 would call them unused, so
    the student edition says why they are there (``# noqa: F401``) and
    stays as ruff-clean as the reference.
    """
    used_before, used_after = _names_used(ast.parse(reference)), _names_used(ast.parse(stubbed))
    lines = stubbed.splitlines(keepends=True)
    for node in ast.parse(stubbed).body:
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or getattr(node, "module", None) == "__future__":
            continue
        for alias in node.names:
            bound = alias.asname or alias.name.split(".")[0]
            line = lines[alias.lineno - 1]
            if bound in used_before and bound not in used_after and "# noqa" not in line:
                body = line.rstrip("\n")
                lines[alias.lineno - 1] = f"{body}  # noqa: F401 (for exercise {ids})" + line[len(body):]
    return "".join(lines)


def is_stub(text: str, exercise: Exercise) -> bool:
    """Is ``exercise`` still its stub in this source text?"""
    node = _find(ast.parse(text), exercise.function)
    return NOT_WRITTEN.format(id=exercise.id) in (ast.get_source_segment(text, node) or "")


def seal_hints(text: str) -> str:
    """exercises.py with each exercise's hints as ``sealed("base64")``, not plain text."""
    tree = ast.parse(text)
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Exercise":
            hints = node.args[8]
            assert hints.end_lineno is not None and hints.end_col_offset is not None
            code = base64.b64encode(json.dumps(ast.literal_eval(hints)).encode()).decode()
            indent = " " * (hints.col_offset + 4)
            chunks = "\n".join(f'{indent}"{code[i:i + 88]}"' for i in range(0, len(code), 88))
            spans.append((starts[hints.lineno - 1] + hints.col_offset,
                          starts[hints.end_lineno - 1] + hints.end_col_offset, f"sealed(\n{chunks})"))
    for begin, end, sealed in sorted(spans, reverse=True):
        text = text[:begin] + sealed + text[end:]
    return text


def tracked_files(source: Path) -> list[str]:
    """The repository's files: git's list when it is a checkout, else a walk."""
    if (source / ".git").exists():
        out = subprocess.run(["git", "-C", str(source), "ls-files", "-z", "--cached"],
                             capture_output=True, check=True).stdout
        names = [n for n in out.decode().split("\0") if n]
        return sorted(n for n in names if (source / n).exists() or (source / n).is_symlink())
    found = []
    for top, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info"))
        found += [os.path.relpath(os.path.join(top, f), source) for f in files]
    return sorted(found)


def export(source: Path, dest: Path, exercises: Iterable[Exercise] = EXERCISES) -> list[Exercise]:
    """Write the student edition of the repository at ``source`` to ``dest``; return the stubbed exercises."""
    source, dest = source.resolve(), dest.resolve()
    if dest == source or source in dest.parents:
        raise ContainerError(f"{dest}: the student edition must go outside the repository")
    if dest.exists() and any(dest.iterdir()):
        raise ContainerError(f"{dest} is not empty: give a new or empty directory")
    by_file: dict[str, list[Exercise]] = {}
    for exercise in exercises:
        by_file.setdefault(exercise.file, []).append(exercise)
    dest.mkdir(parents=True, exist_ok=True)
    stubbed = []
    for name in tracked_files(source):
        if name.startswith(INSTRUCTOR_ONLY) or set(Path(name).parts) & SKIPPED_DIRS:
            continue
        src, out = source / name, dest / name
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), out)
        elif name == HINTS_FILE:
            out.write_text(seal_hints(src.read_text()))
        elif name in by_file:
            out.write_text(stub_source(src.read_text(), by_file[name]))
            shutil.copymode(src, out)
            stubbed += by_file.pop(name)
        else:
            shutil.copy2(src, out)
    if by_file:
        raise ContainerError(f"exercises name files that are not in {source}: {', '.join(by_file)}")
    return stubbed
