"""The student edition and its grader (issue 18): the proof that the grader grades.

Instructor material: the student edition leaves this file out, since it
needs the answers. For every exercise, in a student edition with that one
exercise a stub and every other written, ``mini-engine grade`` says BAD for
the exercise's checks (the tests exercises.py names for it), and GOOD for
the same checks with the reference body back. The rest are fast facts of
the exercise list and of the generated tree.

The fast form: an exercise's checks, not its stage's whole grade (which
would run stages 5-8's suites two dozen times). ``mini-engine grade`` runs
the same way, only with every test of the stages.
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mini_engine.course import student
from mini_engine.course.exercises import EXERCISES, PREREQUISITES, UNITS, Exercise
from mini_engine.course.grade import reason_of
from mini_engine.course.plugin import PREFIX

REPO = Path(__file__).resolve().parent.parent


def _headings_showing(exercise: Exercise) -> set[str]:
    """The headings of its chapter under which a listing includes the exercise's function."""
    source = (REPO / exercise.file).read_text()
    node = student._find(ast.parse(source), exercise.function)
    regions = set()
    lines = source.splitlines()
    for i, line in enumerate(lines, 1):
        m = re.match(r"\s*# \[book:([\w-]+)\]", line)
        if m and i < node.lineno:
            end = next(j for j, later in enumerate(lines, 1) if later.strip() == f"# [/book:{m.group(1)}]")
            if end >= node.end_lineno:
                regions.add(f"# [book:{m.group(1)}]")
    found, heading, fence = set(), None, None
    text = (REPO / exercise.chapter).read_text().splitlines()
    for i, line in enumerate(text):
        m = re.match(r"\s*(`{3,})(.*)", line)
        if m and fence is None:
            fence = m.group(1)
            if "literalinclude" in m.group(2) and m.group(2).split()[-1].endswith(exercise.file):
                options = {}
                for option in text[i + 1:i + 6]:
                    key, _, value = option.strip().lstrip(":").partition(":")
                    options[key] = value.strip().strip('"')
                if options.get("start-after") in regions or options.get("pyobject") == exercise.function:
                    found.add(heading)
            continue
        if m and line.strip() == fence:
            fence = None
        elif fence is None and line.startswith("#"):
            heading = line.lstrip("#").strip()
    return found


@pytest.mark.parametrize("exercise", EXERCISES, ids=[e.id for e in EXERCISES])
def test_each_exercise_is_a_function_its_chapter_section_shows(exercise: Exercise) -> None:
    assert exercise.section in _headings_showing(exercise)
    assert len(exercise.hints) == 3 and all(len(h) > 20 for h in exercise.hints)
    assert exercise.difficulty in ("easy", "moderate", "hard") and exercise.minutes > 0
    assert exercise.checks and all((REPO / c.split("::")[0]).exists() for c in exercise.checks)


def test_every_stage_and_the_runtime_chapter_have_exercises() -> None:
    assert {str(e.stage) for e in EXERCISES} == {str(u) for u in UNITS}
    assert len({e.id for e in EXERCISES}) == len(EXERCISES)
    assert PREREQUISITES["runtime"] == (0, 1, 2) and PREREQUISITES[3] == (0, 1, 2)


def test_a_stub_keeps_signature_and_docstring_and_drops_the_body() -> None:
    exercise = next(e for e in EXERCISES if e.id == "forward-signals")
    source = (REPO / exercise.file).read_text()
    stubbed = student.stub_source(source, [exercise])
    before = student._find(ast.parse(source), exercise.function)
    after = student._find(ast.parse(stubbed), exercise.function)
    assert ast.unparse(before.args) == ast.unparse(after.args)
    assert ast.unparse(before.returns) == ast.unparse(after.returns)
    assert [ast.unparse(d) for d in after.decorator_list] == ["contextmanager"]
    assert ast.get_docstring(after) == ast.get_docstring(before)
    assert ast.unparse(after.body[-1]) == ("raise NotImplementedError('exercise forward-signals is not "
                                          "written yet: chapters/00-process.md')")
    assert "os.kill(pid, signum)" in source and "os.kill(pid, signum)" not in stubbed
    # Everything else of the module is as it was.
    assert stubbed.replace(ast.get_source_segment(stubbed, after), "") == \
        source.replace(ast.get_source_segment(source, before), "")


def test_the_student_edition_leaves_the_answers_and_the_instructors_out(tmp_path: Path) -> None:
    tree = tmp_path / "student"
    done = student.export(REPO, tree)
    assert [e.id for e in done] == [e.id for e in EXERCISES] or set(done) == set(EXERCISES)
    assert not (tree / "tests" / "test_course.py").exists()
    assert (tree / "tests" / "test_stage0_process.py").exists()
    assert not (tree / ".venv").exists() and not (tree / ".git").exists()
    for exercise in EXERCISES:
        source = (REPO / exercise.file).read_text()
        node = student._find(ast.parse(source), exercise.function)
        body = [ast.get_source_segment(source, s) for s in node.body]
        answer = [s for s in body if s and not s.startswith(('"""', "'''", 'r"""'))]
        out = (tree / exercise.file).read_text()
        assert student.is_stub(out, exercise) and not student.is_stub(source, exercise)
        stub = ast.get_source_segment(out, student._find(ast.parse(out), exercise.function)) or ""
        assert [s for s in answer if s.strip() in stub] == [], exercise.id
        assert "NotImplementedError" in stub and exercise.section in stub
    # A second export into it is refused: nothing is overwritten.
    with pytest.raises(Exception, match="is not empty"):
        student.export(REPO, tree)


def test_the_student_edition_keeps_the_hints_sealed(tmp_path: Path) -> None:
    """A learner who greps the tree for a function meets no near-code hint; `hint` still shows each."""
    tree = tmp_path / "student"
    student.export(REPO, tree)
    sealed = (tree / student.HINTS_FILE).read_text()
    for exercise in EXERCISES:
        for hint in exercise.hints:
            assert hint[:40] not in sealed, exercise.id
    for exercise_id, tier in (("pivot-root", "3"), ("seccomp-compile", "2"), ("log-pump", "1")):
        ours, theirs = (subprocess.run([sys.executable, "-m", "mini_engine", "hint", exercise_id, tier],
                                       cwd=top, capture_output=True, text=True,
                                       env=dict(os.environ, PYTHONPATH=str(top))) for top in (REPO, tree))
        assert (theirs.returncode, theirs.stdout) == (0, ours.stdout) and ours.stdout


def test_the_student_edition_is_ruff_clean(tmp_path: Path) -> None:
    """A learner's tree starts as clean as the reference: an import only the cut body used stays, marked."""
    tree = tmp_path / "student"
    student.export(REPO, tree)
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=tree,
                          capture_output=True, text=True)
    assert (done.returncode, done.stdout.strip()) == (0, "All checks passed!"), done.stdout
    chroot = (tree / "mini_engine/runtime/chroot.py").read_text().splitlines()
    assert "import os  # noqa: F401 (for exercise chroot)" in chroot
    # An import the rest of the module still uses is left as it was.
    process = (tree / "mini_engine/runtime/process.py").read_text()
    assert "import os\n" in process and "import os  # noqa" not in process


def test_the_course_commands_have_a_line_in_help() -> None:
    done = subprocess.run([sys.executable, "-m", "mini_engine", "--help"], capture_output=True, text=True,
                          env=dict(os.environ, COLUMNS="100"))
    assert done.returncode == 0
    lines = {line.split()[0]: line.split(None, 1)[1] for line in done.stdout.splitlines()
             if line.startswith("    ") and not line.startswith("     ")}
    assert lines["grade"] == "GOOD or BAD for each check of a stage and the earlier"
    assert lines["hint"] == "an exercise's hints, one tier at a time"
    assert lines["course"] == "the student edition: export, list the exercises"
    # And each still parses its own words.
    assert subprocess.run([sys.executable, "-m", "mini_engine", "grade", "--help"], capture_output=True,
                          text=True).stdout.startswith("usage: mini-engine grade")


def test_a_reason_names_the_stub_and_its_hint() -> None:
    text = "E   AssertionError: ... NotImplementedError: exercise pivot-root is not written yet: ..."
    reason, exercise = reason_of(text)
    assert exercise == "pivot-root"
    assert reason == ("exercise pivot-root is not written yet: mini_engine/runtime/mounts.py, pivot_into(); "
                      'read chapters/02-namespaces.md, "pivot_root"; mini-engine hint pivot-root')
    reason, exercise = reason_of("tests/test_x.py:12: AssertionError\nE       assert 125 == 0\n")
    assert (reason, exercise) == ("assert 125 == 0 (tests/test_x.py:12)", None)


def test_a_reason_shows_whole_what_the_check_wanted_and_what_it_got(tmp_path: Path) -> None:
    """From pytest's real reports: the strings that its first line cuts short,
    a pattern that did not match, and the engine's words, never the test's
    own source (an f-string there is the expectation)."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_reasons.py").write_text(textwrap.dedent('''
        import sys
        import pytest

        @pytest.mark.stage(7)
        def test_equal():
            got = "no free address in 192.168.50.0/30: the four addresses hold one each"
            assert got == "network 192.168.50.0/30: every address is taken"

        @pytest.mark.stage(7)
        def test_match():
            with pytest.raises(ValueError, match=r"the kernel takes at most \\d+"):
                raise ValueError("too many lower layers")

        @pytest.mark.stage(7)
        def test_said():
            layout, message = "oci", "bad"
            said = "mini-engine: whiteout 'a/.wh.' names no file"
            print(said, file=sys.stderr)
            assert said == f"mini-engine: {layout}: {message}"
        '''))
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "mini_engine.course.plugin",
                           "-p", "no:cacheprovider", "-q", "-vv", "--color=no", "-W", "ignore", "tests"],
                          capture_output=True, text=True, cwd=tmp_path,
                          env=dict(os.environ, MINI_ENGINE_GRADE_UNITS="7"))
    records = {r["nodeid"].split("::")[1]: r for r in
               (json.loads(line.split(PREFIX, 1)[1]) for line in done.stdout.splitlines() if PREFIX in line)}
    assert reason_of(records["test_equal"]["text"])[0] == (
        "wanted 'network 192.168.50.0/30: every address is taken', "
        "got 'no free address in 192.168.50.0/30: the four addresses hold one each' (tests/test_reasons.py:8)")
    assert reason_of(records["test_match"]["text"])[0] == (
        "wanted a message matching 'the kernel takes at most \\\\d+', got 'too many lower layers' "
        "(tests/test_reasons.py:12)")
    assert reason_of(records["test_said"]["text"])[0] == (
        "wanted 'mini-engine: oci: bad', got \"mini-engine: whiteout 'a/.wh.' names no file\" "
        "(tests/test_reasons.py:20)")


def test_hints_come_one_tier_at_a_time() -> None:
    run = [sys.executable, "-m", "mini_engine", "hint", "pivot-root"]
    first = subprocess.run(run, capture_output=True, text=True)
    third = subprocess.run([*run, "3"], capture_output=True, text=True)
    assert first.returncode == 0 and third.returncode == 0
    assert "hint 1 of 3" in first.stdout and "syscalls.pivot_root" not in first.stdout
    assert "hint 3 of 3" in third.stdout and "syscalls.pivot_root('.', '.')" in third.stdout
    assert first.stderr == "\nStill stuck? mini-engine hint pivot-root 2\n"
    bad = subprocess.run([*run[:-1], "no-such"], capture_output=True, text=True)
    assert bad.returncode == 125 and bad.stderr.startswith("mini-engine: no exercise 'no-such': choose one of")


@pytest.fixture(scope="module")
def reference_edition(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The student edition's files with every exercise written (the reference)."""
    tree = tmp_path_factory.mktemp("edition") / "tree"
    student.export(REPO, tree, exercises=[])
    return tree


def grade(tree: Path, exercise: Exercise) -> dict:
    argv = [sys.executable, "-m", "mini_engine", "grade", str(exercise.stage), "--json"]
    for check in exercise.checks:
        argv += ["--check", check]
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def _proof_params() -> list[object]:
    # Stage 3's checks that need cgroup v2 skip on a v1 host; each exercise
    # has one that runs here too, so the proof runs on the host.
    return [pytest.param(e, marks=[pytest.mark.root], id=e.id) for e in EXERCISES]


# Two grades, each a pytest of its own that may build the test images
# (stage 5's fixtures): more than the suite's 180 s on a busy machine.
@pytest.mark.timeout(900)
@pytest.mark.parametrize("exercise", _proof_params())
def test_the_grade_is_bad_with_the_stub_and_good_with_the_reference(reference_edition: Path,
                                                                      exercise: Exercise) -> None:
    target = reference_edition / exercise.file
    reference = target.read_text()
    target.write_text(student.stub_source(reference, [exercise]))
    try:
        stubbed = grade(reference_edition, exercise)
    finally:
        target.write_text(reference)
    written = grade(reference_edition, exercise)
    bad = [c for c in stubbed["checks"] if c["grade"] == "BAD"]
    assert bad, f"no check fails without {exercise.id}: {stubbed['checks']}"
    assert not stubbed["passed"]
    assert [c for c in written["checks"] if c["grade"] == "BAD"] == []
    assert written["passed"] and any(c["grade"] == "GOOD" for c in written["checks"])
    # The stubbed run names the exercise where its failure shows the stub's message.
    assert any(exercise.id in c["reason"] for c in bad), bad


def _stage_mark(decorators: list[ast.expr]) -> int | None:
    """N of a ``pytest.mark.stage(N)`` among these decorators (or a pytestmark's value)."""
    for node in decorators:
        for call in ast.walk(node):
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                    and call.func.attr == "stage" and call.args
                    and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, int)):
                return call.args[0].value
    return None


def test_no_check_runs_a_stage_above_its_own() -> None:
    """A learner grades stage 1 before writing stage 2: a stage-1 check that runs
    ``--stage 2`` would be BAD for stubs it does not name. It belongs to stage 2."""
    wrong = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        module = next((_stage_mark([n.value]) for n in tree.body if isinstance(n, ast.Assign)
                       and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets)), None)
        for function in tree.body:
            if not isinstance(function, ast.FunctionDef) or not function.name.startswith("test_"):
                continue
            stage = _stage_mark(function.decorator_list) or module
            if stage is None:
                continue
            for call in ast.walk(function):
                if not isinstance(call, ast.Call):
                    continue
                words = [a.value if isinstance(a, ast.Constant) else None for a in call.args]
                for before, after in itertools.pairwise(words):
                    if before == "--stage" and str(after).isdigit() and int(str(after)) > stage:
                        wrong.append(f"{path.name}::{function.name} (stage {stage}) runs --stage {after}")
    assert wrong == []
