"""Nothing in the repository needs more than Debian 12's first Python, 3.11.2.

Debian 12's python3.11 is 3.11.2, and Debian did not backport PEP 706: its
``tarfile`` has no extraction filters (``data_filter``, ``extractall(filter=)``),
which arrived in 3.11.4; ``os.unshare`` and ``os.setns`` arrive in 3.12. A
call to a missing name fails only when it runs, on that machine:
``scripts/conformance.py`` once passed everywhere but there.

So every Python file of the repository (engine, runtime, scripts, tests, labs,
bench, the book's conf.py, bin/mini-runc) is parsed here, and what it takes
from the standard library is looked up in this interpreter, which
scripts/setup.sh makes the venv from (Debian's /usr/bin/python3, the floor):
each ``module.name`` and ``from module import name``, and each keyword
argument of a module's function or class. An instance's method cannot be
looked up statically (which class is ``tar``?), so a method call's keyword
must be accepted by some method of that name in the modules the repository
imports. And a short table of what came after 3.11.2 is checked by name,
whatever Python runs this test.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from conftest import REPO

FLOOR = (3, 11, 2)

# Found by comparing dir() and inspect.signature() of the standard library
# under Debian's 3.11.2 and under 3.12 and 3.13; checked by name on any Python.
# "name" is a module's attribute, "name(kw=)" a keyword of a module's callable,
# ".method(kw=)" a keyword of any call of that method, ".method()" any call.
LATER = {
    "tarfile.data_filter": "3.11.4 (PEP 706)",
    "tarfile.tar_filter": "3.11.4 (PEP 706)",
    "tarfile.fully_trusted_filter": "3.11.4 (PEP 706)",
    "tarfile.FilterError": "3.11.4 (PEP 706)",
    ".extractall(filter=)": "3.11.4 (PEP 706)",
    ".extract(filter=)": "3.11.4 (PEP 706)",
    "shutil.unpack_archive(filter=)": "3.11.4 (PEP 706)",
    "os.unshare": "3.12 (the runtime wraps unshare(2) with ctypes)",
    "os.setns": "3.12 (the runtime wraps setns(2) with ctypes)",
    "os.CLONE_NEWNS": "3.12 (mini_engine.runtime has the kernel's constants)",
    "itertools.batched": "3.12",
    "typing.override": "3.12",
    "shutil.rmtree(onexc=)": "3.12 (onerror= is the 3.11 name)",
    "tempfile.TemporaryDirectory(delete=)": "3.12",
    "tempfile.NamedTemporaryFile(delete_on_close=)": "3.12",
    ".walk()": "3.12 as pathlib.Path.walk (os.walk is 3.11's)",
    ".is_junction()": "3.12 (pathlib.Path.is_junction)",
    ".relative_to(walk_up=)": "3.12 (pathlib)",
    ".glob(case_sensitive=)": "3.12 (pathlib)",
    ".exists(follow_symlinks=)": "3.12 (pathlib)",
    "os.process_cpu_count": "3.13",
    "copy.replace": "3.13",
    "warnings.deprecated": "3.13",
}


def python_files() -> list[Path]:
    """Every Python file of the repository: *.py, and scripts whose #! names python."""
    skip = {"third_party", "_build", "__pycache__", "node_modules"}
    found = []
    for top, dirs, files in os.walk(REPO):
        dirs[:] = sorted(d for d in dirs if d not in skip and not d.startswith(".")
                         and not d.endswith(".egg-info"))
        for name in sorted(files):
            path = Path(top, name)
            if name.endswith(".py"):
                found.append(path)
            elif os.access(path, os.X_OK) and path.read_bytes()[:64].split(b"\n")[0].find(b"python") > 0:
                found.append(path)
    return found


def stdlib(name: str) -> bool:
    return name.split(".")[0] in sys.stdlib_module_names


class Names:
    """What one file binds from the standard library: a name -> (module, attributes)."""

    def __init__(self, tree: ast.Module) -> None:
        self.bound: dict[str, tuple[str, list[str]]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if stdlib(alias.name):
                        # `import a.b` binds a; `import a.b as c` binds c to a.b.
                        module = alias.name if alias.asname else alias.name.split(".")[0]
                        self.bound[alias.asname or module] = (module, [])
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and stdlib(node.module):
                for alias in node.names:
                    if alias.name != "*":
                        self.bound[alias.asname or alias.name] = (node.module, [alias.name])

    def dotted(self, node: ast.expr) -> tuple[str, list[str]] | None:
        """``os.path.join`` -> ("os", ["path", "join"]) when this file imported os."""
        attrs: list[str] = []
        while isinstance(node, ast.Attribute):
            attrs.insert(0, node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in self.bound:
            module, first = self.bound[node.id]
            return module, first + attrs
        return None


def resolve(module: str, attrs: list[str]) -> tuple[object, str] | tuple[None, str]:
    """Walk ``module.attrs`` in this interpreter while it goes through modules and
    classes (an instance's attributes are its own business). (object, "") when
    found, (None, the first missing dotted name) when not."""
    obj: object = importlib.import_module(module)
    name = module
    for attr in attrs:
        if not isinstance(obj, (ModuleType, type)):
            break
        name = f"{name}.{attr}"
        if not hasattr(obj, attr):
            try:  # a submodule not yet imported, as `import xml` then `xml.dom`
                obj = importlib.import_module(name)
                continue
            except ImportError:
                return None, name
        obj = getattr(obj, attr)
    return obj, ""


def keywords(obj: object) -> set[str] | None:
    """The keyword names ``obj`` accepts, or None for "any" (**kwargs, or no signature)."""
    try:
        params = inspect.signature(obj).parameters.values()  # type: ignore[arg-type]
    except Exception:  # TypeError, ValueError, and whatever a builtin's text signature raises
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def method_keywords(modules: set[str], defined: dict[str, set[str] | None]) -> dict[str, set[str] | None]:
    """For each method name of the classes in ``modules`` (and the builtin
    types, and the repository's own functions), the union of the keywords its
    methods accept: a call `x.name(kw=...)` is possible if one of them takes kw."""
    accepted: dict[str, set[str] | None] = {}
    classes: list[type] = [str, bytes, bytearray, int, float, dict, list, set, frozenset, tuple, memoryview]
    for name in modules:
        module = importlib.import_module(name)
        classes += [c for c in vars(module).values() if isinstance(c, type)]
    for cls in classes:
        for attr in dir(cls):
            if attr.startswith("__"):
                continue
            method = getattr(cls, attr, None)
            if not callable(method):
                continue
            taken = keywords(method)
            if attr in accepted and accepted[attr] is None:
                continue
            accepted[attr] = None if taken is None else (accepted.get(attr) or set()) | taken
    # The repository's own methods widen a library name's keywords; a name
    # the library does not have (pytest.fail) is not the floor's to check.
    for name, taken in defined.items():
        if name in accepted:
            known = accepted[name]
            accepted[name] = None if taken is None or known is None else known | taken
    return accepted


def problems_in(where: Path, tree: ast.Module, accepted: dict[str, set[str] | None]) -> Iterator[str]:
    names = Names(tree)
    version = sys.version.split()[0]

    def later(key: str, line: int) -> Iterator[str]:
        if key in LATER:
            yield f"{where}:{line}: {key} is Python {LATER[key]}"

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and stdlib(node.module):
            for alias in node.names:
                if alias.name == "*":
                    continue
                yield from later(f"{node.module}.{alias.name}", node.lineno)
                found, missing = resolve(node.module, [alias.name])
                if missing:
                    yield f"{where}:{node.lineno}: {missing} is not in Python {version}"
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            dotted = names.dotted(node)
            if dotted:
                yield from later(".".join([dotted[0], *dotted[1]]), node.lineno)
                found, missing = resolve(*dotted)
                if missing:
                    yield f"{where}:{node.lineno}: {missing} is not in Python {version}"
        if not isinstance(node, ast.Call):
            continue
        given = [kw.arg for kw in node.keywords if kw.arg]
        dotted = names.dotted(node.func)
        if dotted:
            qualified = ".".join([dotted[0], *dotted[1]])
            for kw in given:
                yield from later(f"{qualified}({kw}=)", node.lineno)
            found, missing = resolve(*dotted)
            taken = None if missing or not callable(found) else keywords(found)
            for kw in given:
                if taken is not None and kw not in taken:
                    yield f"{where}:{node.lineno}: {qualified}() takes no {kw}= in Python {version}"
        elif isinstance(node.func, ast.Attribute):
            method = node.func.attr
            yield from later(f".{method}()", node.lineno)
            for kw in given:
                yield from later(f".{method}({kw}=)", node.lineno)
                taken = accepted.get(method)
                if method in accepted and taken is not None and kw not in taken:
                    yield f"{where}:{node.lineno}: no .{method}() takes {kw}= in Python {version}"


def check(files: dict[Path, str]) -> list[str]:
    """Every use of something newer than this interpreter, one line each."""
    # feature_version: on a newer interpreter, still refuse 3.12's syntax
    # (f-strings that nest their own quotes, `type X = ...`) where the parser can.
    trees = {path.relative_to(REPO): ast.parse(source, str(path), feature_version=FLOOR[:2])
             for path, source in files.items()}
    modules: set[str] = set()
    defined: dict[str, set[str] | None] = {}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules |= {a.name for a in node.names if stdlib(a.name)}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and stdlib(node.module):
                modules.add(node.module)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                # The repository's own methods may share a name with the library's.
                a = node.args
                taken = None if a.kwarg else {x.arg for x in [*a.args, *a.kwonlyargs]}
                known = defined.get(node.name, set())
                defined[node.name] = None if taken is None or known is None else known | taken
            elif isinstance(node, ast.ClassDef):
                # A method given another name in a class body (run = Playground.engine):
                # what it takes is not looked up, so any keyword passes.
                for item in node.body:
                    if isinstance(item, ast.Assign) and isinstance(item.value, ast.Attribute):
                        defined.update({t.id: None for t in item.targets if isinstance(t, ast.Name)})
    with warnings.catch_warnings():  # importing crypt, reading typing.io: deprecated, not missing
        warnings.simplefilter("ignore", DeprecationWarning)
        accepted = method_keywords(modules, defined)
        return [problem for where, tree in trees.items() for problem in problems_in(where, tree, accepted)]


def test_the_repository_runs_on_debian_12s_first_python() -> None:
    files = {path: path.read_text() for path in python_files()}
    # Every part of the repository is read, and the scripts without .py too.
    assert {p.relative_to(REPO).parts[0] for p in files} >= {
        "mini_engine", "scripts", "tests", "labs", "bench", "docs", "bin"}
    assert REPO / "bin" / "mini-runc" in files
    assert check(files) == []


def test_the_check_finds_what_the_floor_lacks() -> None:
    """The check itself, on the call that broke conformance.py and its kin."""
    source = (
        "import os, shutil, tarfile\n"
        "from itertools import batched\n"
        "with tarfile.open('x.tar') as tar:\n"
        "    tar.extractall('dest', filter='tar')\n"
        "os.unshare(os.CLONE_NEWNS)\n"
        "shutil.rmtree('dest', onexc=print)\n"
        "tarfile.data_filter\n"
        "Path('.').walk()\n"
        "from shutil import rmtree as remove\n"
        "remove('dest', onexc=print)\n"
        "# what 3.11.2 has:\n"
        "os.walk('.')\n"
        "tar.extractall('dest', numeric_owner=True)\n"
        "remove('dest', onerror=print)\n"
        "tar.add('x', filter=None)\n"
    )
    found = check({REPO / "floor-example.py": source})
    lines = sorted({int(p.split(":")[1]) for p in found})
    assert lines == [2, 4, 5, 6, 7, 8, 10], found
    assert "floor-example.py:4: .extractall(filter=) is Python 3.11.4 (PEP 706)" in found
    assert "floor-example.py:10: shutil.rmtree(onexc=) is Python 3.12 (onerror= is the 3.11 name)" in found
    if sys.version_info[:3] <= FLOOR:
        # On the floor the lookups find them without the table, too.
        assert "floor-example.py:4: no .extractall() takes filter= in Python 3.11.2" in found
        assert "floor-example.py:5: os.unshare is not in Python 3.11.2" in found
        assert "floor-example.py:6: shutil.rmtree() takes no onexc= in Python 3.11.2" in found
