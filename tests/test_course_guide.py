"""The instructor guide (issue 18): answers, book, reports, and handing work out and in.

Instructor material: the student edition leaves this file out, as it
leaves out instructor/, whose answers it reads. What it proves: each lab's
self-checking questions accept exactly the answers the guide gives; the
guide is in the book built here and absent from the student edition and
its book, which still builds with -W; the grader's JSON and JUnit reports
say what a teacher's scripts read; and the guide's commands for handing
out and collecting work by git branches run as written.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mini_engine.course import grade, student
from mini_engine.course.exercises import EXERCISES
from mini_engine.labkit import answer_digest, check_answers

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "instructor" / "guide.md"
ANSWERS = REPO / "instructor" / "answers.md"
LABS = sorted(p.parent.name for p in (REPO / "labs").glob("*/lab.py"))


def lab_digests(lab: str) -> dict[int, tuple[str, ...]]:
    """The digests a lab's check_answers call accepts, read from its source."""
    tree = ast.parse((REPO / "labs" / lab / "lab.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and getattr(n.func, "id", None) == "check_answers"]
    assert len(calls) == 1, f"{lab}: one check_answers call"
    assert ast.literal_eval(calls[0].args[0]) == lab
    return ast.literal_eval(calls[0].args[2])


def guide_answers(lab: str) -> dict[int, list[str]]:
    """The accepted answers the guide lists for a lab: ``N. Answer: `a`, `b`. Why...``."""
    text = ANSWERS.read_text()
    section = text.split(f"### Lab {lab}\n", 1)[1].split("\n###", 1)[0]
    found = {}
    for number, rest in re.findall(r"^(\d+)\. Answer: (.+?)\.(?: |\n|$)", section, re.M | re.S):
        found[int(number)] = re.findall(r"`([^`]+)`", rest)
    return found


@pytest.mark.parametrize("lab", LABS)
def test_each_lab_question_accepts_exactly_the_guides_answers(lab: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    digests = lab_digests(lab)
    answers = guide_answers(lab)
    assert sorted(answers) == sorted(digests) and digests, lab
    for number, accepted in answers.items():
        assert sorted(answer_digest(lab, number, a) for a in accepted) == sorted(digests[number]), (lab, number)
    # Right, with the learner's own case and spacing; wrong; not answered yet.
    first = {n: f"  {a[0].upper()}. " for n, a in answers.items()}
    assert check_answers(lab, first, digests) == {n: True for n in digests}
    assert check_answers(lab, {n: "no such answer" for n in digests}, digests) == {n: False for n in digests}
    assert check_answers(lab, {}, digests) == {n: None for n in digests}
    said = capsys.readouterr().out.splitlines()
    assert said[-len(digests):] == [f"question {n}: not answered yet" for n in sorted(digests)]
    assert "question 1: 'no such answer' is wrong: read again" in said
    # The lab's text holds no answer in the clear where it could be read off.
    code = (REPO / "labs" / lab / "lab.py").read_text().split("my_answers = ", 1)[1]
    assert all(f"'{a}'" not in code and f'"{a}"' not in code for a in
               [a for accepted in answers.values() for a in accepted])


def test_every_chapter_ends_with_exercises() -> None:
    for chapter in sorted((REPO / "chapters").glob("*.md")):
        if chapter.stem == "working-through":
            continue
        headings = re.findall(r"^## (.+)$", chapter.read_text(), re.M)
        assert "Exercises" in headings, chapter.name
        assert headings.index("Exercises") < headings.index("Run it"), chapter.name


def numbered_items(text: str) -> list[int]:
    """The numbers of a Markdown list's items (``N. ...`` at the start of a line)."""
    return [int(n) for n in re.findall(r"^(\d+)\. ", text, re.M)]


def chapter_exercises(chapter: Path) -> list[int]:
    return numbered_items(chapter.read_text().split("\n## Exercises\n", 1)[1].split("\n## ", 1)[0])


def guide_chapter_answers() -> dict[str, list[int]]:
    """The guide's answers per chapter: each section's heading links to its chapter,
    ``### [Chapter 4: overlayfs](../chapters/04-overlayfs.md)``."""
    text = ANSWERS.read_text().split("\n## The chapters' exercises\n", 1)[1]
    sections = re.split(r"^### ", text, flags=re.M)[1:]
    found = {}
    for section in sections:
        heading, _, body = section.partition("\n")
        linked = re.fullmatch(r"\[.+\]\(\.\./chapters/([\w-]+)\.md\)", heading)
        assert linked, f"the guide's section {heading!r} does not link to its chapter"
        assert linked[1] not in found, f"two sections answer {linked[1]}"
        found[linked[1]] = numbered_items(body)
    return found


def test_every_chapters_exercises_have_as_many_answers_in_the_guide() -> None:
    answers = guide_chapter_answers()
    chapters = {c.stem: c for c in sorted((REPO / "chapters").glob("*.md")) if c.stem != "working-through"}
    assert sorted(answers) == sorted(chapters), \
        f"no answers in the guide for {sorted(set(chapters) - set(answers))}, " \
        f"answers for no chapter: {sorted(set(answers) - set(chapters))}"
    for stem, chapter in chapters.items():
        exercises = chapter_exercises(chapter)
        assert exercises == list(range(1, len(exercises) + 1)), f"{stem}: exercises numbered 1, 2, ..."
        assert answers[stem] == exercises, \
            f"{stem}: {len(exercises)} exercises, {len(answers[stem])} answers in the guide"


def test_the_guides_time_table_is_the_exercise_list() -> None:
    rows = re.findall(r"^\| ([a-z0-9-]+) \| (\w+) \| (\w+) \| (\d+) \| (.+?) \|$", GUIDE.read_text(), re.M)
    assert [(r[0], r[1], r[2], int(r[3])) for r in rows] == \
        [(e.id, str(e.stage), e.difficulty, e.minutes) for e in EXERCISES]
    assert "To be filled in by the lead" in GUIDE.read_text()


def build_book(source: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-c",
                           str(source / "docs"), str(source), str(out)], capture_output=True, text=True)


@pytest.mark.timeout(600)
def test_the_guide_is_in_the_book_here_and_not_in_the_student_edition(tmp_path: Path) -> None:
    done = build_book(REPO, tmp_path / "book")
    assert done.returncode == 0, done.stderr
    for page in ("guide", "answers"):
        assert (tmp_path / "book" / "instructor" / f"{page}.html").exists()
    assert "For the teacher" in (tmp_path / "book" / "docs" / "index.html").read_text()

    tree = tmp_path / "student"
    student.export(REPO, tree)
    assert not (tree / "instructor").exists()
    assert not (tree / "tests" / "test_course_guide.py").exists()
    done = build_book(tree, tmp_path / "student-book")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "student-book" / "instructor").exists()
    assert "For the teacher" not in (tmp_path / "student-book" / "docs" / "index.html").read_text()
    # The answers are nowhere in the student's tree.
    answer = "which throws its exit status"
    assert answer in ANSWERS.read_text()
    assert not subprocess.run(["grep", "-rqF", answer, str(tree)]).returncode == 0
    # But the way to a first GOOD is.
    assert (tmp_path / "student-book" / "chapters" / "working-through.html").exists()


def _grade(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mini_engine", "grade", *args], cwd=tree,
                          env=dict(os.environ, PYTHONPATH=str(tree)), capture_output=True, text=True,
                          timeout=900)


EXIT_CODE_CHECK = "tests/test_stage0_process.py::test_exit_code_is_passed_through"


@pytest.mark.root
@pytest.mark.timeout(900)
def test_the_graders_reports_say_what_a_teacher_reads(tmp_path: Path) -> None:
    tree = tmp_path / "student"
    exercise = next(e for e in EXERCISES if e.id == "exit-code")
    student.export(REPO, tree, exercises=[exercise])  # the rest written: only exit-code is a stub
    done = _grade(tree, "0", "--json", "--junit", str(tmp_path / "bad.xml"), "--check", EXIT_CODE_CHECK)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert (report["target"], report["units"], report["passed"]) == ("0", ["0"], False)
    stage0 = next(s for s in report["stages"] if s["unit"] == "0")
    assert {k: stage0[k] for k in ("good", "bad", "exercises", "written", "grade")} == \
        dict(good=0, bad=1, exercises=4, written=3, grade="BAD")
    [check] = report["checks"]
    assert (check["nodeid"], check["unit"], check["grade"], check["exercise"]) == \
        (EXIT_CODE_CHECK, "0", "BAD", "exit-code")
    assert "detail" not in check  # pytest's whole report goes to JUnit only
    junit = ET.parse(tmp_path / "bad.xml").getroot()
    assert (junit.tag, junit.get("tests"), junit.get("failures")) == ("testsuites", "1", "1")
    [suite] = junit.findall("testsuite")
    assert (suite.get("name"), suite.get("tests"), suite.get("failures")) == ("stage 0 (process)", "1", "1")
    [case] = suite.findall("testcase")
    assert (case.get("classname"), case.get("name")) == ("tests.test_stage0_process",
                                                          "test_exit_code_is_passed_through")
    failure = case.find("failure")
    assert failure is not None and failure.get("message") == check["reason"]
    assert "NotImplementedError: exercise exit-code is not written yet" in (failure.text or "")

    (tree / exercise.file).write_text((REPO / exercise.file).read_text())
    done = _grade(tree, "0", "--json", "--junit", str(tmp_path / "good.xml"), "--check", EXIT_CODE_CHECK)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["passed"] and [c["grade"] for c in report["checks"]] == ["GOOD"]
    suite = ET.parse(tmp_path / "good.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "0", "0")


def test_the_junit_report_holds_every_stage_graded_the_test_vms_too(tmp_path: Path) -> None:
    """Stage 3's checks come back from the test VM as the plugin's lines, not as a file:
    the report is made from those records, so they are in it."""
    checks = [grade.Check("tests/test_stage0_process.py::test_a", "0", "passed", seconds=0.5),
              grade.Check("tests/test_stage3_cgroups.py::test_b", "3", "failed", "assert 1 == 2 (x.py:3)",
                          seconds=2.25, detail="E   assert 1 == 2"),
              grade.Check("tests/test_stage3_cgroups.py::test_c", "3", "skipped", "Skipped: no io here")]
    units = ["0", "1", "2", "3"]
    grade.write_junit(tmp_path / "out" / "class.xml", checks, grade.summary(REPO, checks, units), units)
    root = ET.parse(tmp_path / "out" / "class.xml").getroot()
    assert [(s.get("name"), s.get("tests"), s.get("failures"), s.get("skipped"), s.get("time"))
            for s in root.findall("testsuite")] == [
        ("stage 0 (process)", "1", "0", "0", "0.50"), ("stage 1 (chroot)", "0", "0", "0", "0.00"),
        ("stage 2 (namespaces)", "0", "0", "0", "0.00"), ("stage 3 (cgroups)", "2", "1", "1", "2.25")]
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("3", "1", "1")
    b, c = root.findall("testsuite")[3].findall("testcase")
    assert (b.get("classname"), b.get("name")) == ("tests.test_stage3_cgroups", "test_b")
    failure, skipped = b.find("failure"), c.find("skipped")
    assert failure is not None and (failure.get("message"), failure.text) == ("assert 1 == 2 (x.py:3)",
                                                                             "E   assert 1 == 2")
    assert skipped is not None and skipped.get("message") == "Skipped: no io here"


def guide_commands(heading: str) -> list[list[str]]:
    """The ```text blocks under a heading of the guide, each a list of its lines."""
    section = GUIDE.read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return [block.strip().splitlines() for block in re.findall(r"```text\n(.*?)```", section, re.S)]


@pytest.mark.root
@pytest.mark.timeout(900)
def test_handing_out_and_collecting_by_branches_works_as_the_guide_says(tmp_path: Path) -> None:
    teacher, learner, next_stage, collect = guide_commands("Handing out and collecting: a branch per stage")
    env = dict(os.environ, PATH=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}",
               GIT_AUTHOR_NAME="a", GIT_AUTHOR_EMAIL="a@example.org",
               GIT_COMMITTER_NAME="a", GIT_COMMITTER_EMAIL="a@example.org", HOME=str(tmp_path))
    (tmp_path / "CLASS").mkdir()

    def sh(lines: list[str], cwd: Path) -> str:
        script = "set -e\n" + "\n".join(lines).replace("CLASS", str(tmp_path / "CLASS")) \
            .replace("WORKBENCH", str(REPO))
        done = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    sh(teacher, tmp_path)
    branches = sh(["git -C handout branch --format='%(refname:short)'"], tmp_path).split()
    assert branches == sorted(["main", *(f"stage{u}" for u in ("0", "1", "2", "3", "4", "5", "6", "7", "8",
                                                                 "runtime"))])
    # The learner: the line in parentheses is their work; here it puts stage 0's functions back.
    assert [line.startswith("(") for line in learner] == [False, False, False, True, False, False]
    written = [f"cp {shlex.quote(str(REPO / f))} {f}" for f in
               sorted({e.file for e in EXERCISES if e.stage == 0})]
    sh(learner[:3] + written + learner[4:], tmp_path)
    sh(next_stage, tmp_path / "my-engine")
    assert sh(["git branch --show-current"], tmp_path / "my-engine").strip() == "stage1"
    # The teacher collects stage 0 and grades it (one check here; the guide grades the whole stage).
    collect[-1] = collect[-1].replace("grade 0", f"grade 0 --check {EXIT_CODE_CHECK}")
    out = sh(collect, tmp_path)
    listed = {line.split()[0]: line.split()[4] for line in out.splitlines()[1:]}
    assert [listed[e.id] for e in EXERCISES if e.stage == 0] == ["yes"] * 4
    assert listed["chroot"] == "stub"
    report = json.loads((tmp_path / "collected" / "alice-stage0.json").read_text())
    assert report["passed"] and [c["grade"] for c in report["checks"]] == ["GOOD"]
    assert ET.parse(tmp_path / "collected" / "alice-stage0.xml").getroot().find("testsuite") is not None
    # And the class's table.
    [table] = guide_commands("Grading a class")
    assert sh(table, tmp_path / "collected") == "alice passed 0:1/1\n"
