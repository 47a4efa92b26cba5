"""The packages keep the architecture the README draws, import by import.

Read from the source (every import, at the top of a module or inside a
function, where the engine imports late to start fast): no module imports
itself back through others, the runtime stands alone on the shared base, as
runc stands alone on libc, and the base stands on nothing of ours.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "mini_engine"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Each module of mini_engine, and the modules of mini_engine it imports."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # from mini_engine.images import store: the module store, if it is one
                found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                          for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name and m != "mini_engine"}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def top_level_names(path: Path) -> set[str]:
    """What a module binds at its top level (defs, classes, assignments, imports)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        targets: list[ast.expr] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


def test_every_import_of_ours_names_what_is_there() -> None:
    """An import inside a function runs only when that function does: a name
    that moved away would fail there, in front of a learner, not here."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    sources = [*PACKAGE.rglob("*.py"), *(REPO / "tests").rglob("*.py"), *(REPO / "labs").rglob("*.py"),
               *(REPO / "bench").rglob("*.py"), *(REPO / "scripts").rglob("*.py"), REPO / "bin" / "mini-runc"]
    missing = []
    for path in sources:
        where = path.relative_to(REPO)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                missing += [f"{where}:{node.lineno}: no module {a.name}" for a in node.names
                            if a.name.startswith("mini_engine") and a.name not in modules]
            elif (isinstance(node, ast.ImportFrom) and node.level == 0
                  and (node.module or "").startswith("mini_engine")):
                if node.module not in modules:
                    missing.append(f"{where}:{node.lineno}: no module {node.module}")
                    continue
                there = top_level_names(modules[node.module])
                missing += [f"{where}:{node.lineno}: no {a.name} in {node.module}" for a in node.names
                            if f"{node.module}.{a.name}" not in modules and a.name not in there]
    assert missing == []


def test_no_module_imports_itself_back() -> None:
    assert cycles(imports()) == []


def test_the_check_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_the_runtime_imports_nothing_of_the_engine() -> None:
    """mini-runc is the runtime alone: podman and containerd run it without the engine."""
    strays = {f"{module} imports {other}"
              for module, others in imports().items() if module.startswith("mini_engine.runtime")
              for other in others
              if not other.startswith(("mini_engine.runtime", "mini_engine.base"))}
    assert strays == set()


def test_the_base_imports_nothing_above_it() -> None:
    strays = {f"{module} imports {other}"
              for module, others in imports().items() if module.startswith("mini_engine.base")
              for other in others if not other.startswith("mini_engine.base")}
    assert strays == set()


# Who may import the runtime besides its client, and why. Each entry goes
# when what it reaches has a better home.
RUNTIME_IMPORTS_ALLOWED = {
    # `mini-engine runtime ...` is mini-runc itself, its whole command line:
    # not the engine driving a runtime, but the runtime run under the engine's name.
    ("mini_engine.cli", "mini_engine.runtime.cli"),
    # doctor says which stages this kernel can run *with the bundled runtime*:
    # it asks that runtime's own checks (cgroup controllers, namespace flags,
    # seccomp), as `runc features` and runc's check-config script do.
    ("mini_engine.doctor", "mini_engine.runtime.cgroups"),
    ("mini_engine.doctor", "mini_engine.runtime.namespaces"),
    ("mini_engine.doctor", "mini_engine.runtime.seccomp"),
    # resolve_in_root: a path inside a container's root without leaving it;
    # the engine makes a missing workdir and reads /etc/passwd with it. Its
    # home is the base, as one walk by directory descriptors (issue 17,
    # item 6, made so on another branch): until then, reached here.
    ("mini_engine.containers.run", "mini_engine.runtime.mounts"),
    ("mini_engine.containers.manage", "mini_engine.runtime.mounts"),
    # The same walk for a build's COPY and WORKDIR: a destination inside the
    # working container's root, whose image may hold symlinks that lead out.
    ("mini_engine.build.copy", "mini_engine.runtime.mounts"),
    # --userns: the engine maps the image's layers (idmapped mounts) with the
    # runtime's user-namespace maker, the same ctypes calls, before create.
    ("mini_engine.containers.idmap", "mini_engine.runtime.namespaces"),
    # The grader asks, as doctor does, whether this host has cgroup v2's
    # controllers, and sends stage 3's checks to the test VM when it has not.
    ("mini_engine.course.grade", "mini_engine.runtime.cgroups"),
}


def test_only_the_runtime_client_drives_the_runtime() -> None:
    """The engine reaches the runtime through containers/runtime.py alone (in-process
    or by exec of runc's command line), so that any OCI runtime can stand in for it."""
    strays = {(module, other)
              for module, others in imports().items()
              if not module.startswith(("mini_engine.runtime", "mini_engine.base"))
              and module != "mini_engine.containers.runtime"
              for other in others if other.startswith("mini_engine.runtime")}
    assert strays - RUNTIME_IMPORTS_ALLOWED == set()
