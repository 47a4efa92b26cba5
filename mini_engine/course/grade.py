"""``mini-engine grade [STAGE]``: run a stage's tests and the earlier stages', say GOOD or BAD for each.

The tests are the workbench's own black-box tests (tests/), run against the
engine of the tree the grader lives in: a student edition, or the reference.
Each test is one check: GOOD when it passes, BAD with the reason (the
failed assertion: what the kernel or the engine showed, and what was
expected; or which exercise is still a stub and where its hints are).
Then a score per stage and a table of all stages. ``--json`` writes the same
for a teacher's scripts, ``--junit FILE`` JUnit XML (a suite per stage, a
case per check), made from the same records, so that it holds the checks
run in the test VM too.

A host that keeps memory, cpu and pids on cgroup v1 (this project's CI
machine) cannot grade stage 3 itself: its tests then run in the throwaway
cgroup-v2 VM (scripts/testvm.py), as ``make vm-test`` does.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mini_engine.base.errors import ENGINE_FAILED, ContainerError
from mini_engine.course.exercises import EXERCISES, PREREQUISITES, UNITS, Exercise
from mini_engine.course.plugin import PREFIX
from mini_engine.course.student import NOT_WRITTEN_RE, is_stub

# Tests that are not a stage's black-box checks: the book, the labs, the
# repository's own rules, other engines, and the proof that the grader grades.
NOT_GRADED = ("test_book_transcripts.py", "test_labs_and_book.py", "test_architecture.py",
              "test_python_floor.py", "test_conformance.py", "test_engines.py", "test_course.py",
              "test_course_guide.py", "test_busybox_applets.py")


@dataclass
class Check:
    nodeid: str
    unit: str
    outcome: str             # passed, failed, skipped
    reason: str = ""
    exercise: str | None = None
    seconds: float = 0.0
    detail: str = field(default="", repr=False)  # pytest's report, for JUnit; not in the JSON

    @property
    def grade(self) -> str:
        return {"passed": "GOOD", "failed": "BAD"}.get(self.outcome, "SKIP")


def repository() -> Path:
    """The tree this engine was loaded from; its tests/ are the checks."""
    root = Path(__file__).resolve().parent.parent.parent
    if not (root / "tests" / "conftest.py").exists():
        raise ContainerError(f"grade needs the workbench's tests/ beside mini_engine/, and {root} has none: "
                             "run it in a checkout or a student edition (make student DIR=...)")
    return root


def unit_name(text: str | int | None) -> str:
    from mini_engine import stages

    if str(text).strip().lower() == "runtime":
        return "runtime"
    return str(stages.resolve(text).number)


def written(root: Path, exercise: Exercise) -> bool:
    return not is_stub((root / exercise.file).read_text(), exercise)


def first_unfinished(root: Path) -> str:
    """The first unit, in the book's order, with an exercise still a stub; the top stage if none."""
    for unit in UNITS:
        if any(str(e.stage) == str(unit) and not written(root, e) for e in EXERCISES):
            return str(unit)
    return "8"


def units_for(target: str) -> list[str]:
    key: int | str = target if target == "runtime" else int(target)
    return [str(u) for u in PREREQUISITES[key]] + [target]


def reason_of(text: str) -> tuple[str, str | None]:
    """What a learner can act on, from a failed test's report; and the stub that caused it, if one did."""
    stub = NOT_WRITTEN_RE.search(text)
    if stub:
        exercise = next(e for e in EXERCISES if e.id == stub.group(1))
        return (f'exercise {exercise.id} is not written yet: {exercise.file}, {exercise.function}(); '
                f'read {exercise.chapter}, "{exercise.section}"; mini-engine hint {exercise.id}'), exercise.id
    errors = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    parts = [errors[0] if errors else (text.strip().splitlines() or ["failed"])[-1]]
    # pytest's first line cuts long strings short ('no free addr...hold one
    # each'); the lines after it hold them whole: the diff of an ==, whose
    # "-" side is the right one (the checks write `got == wanted`), and the
    # pattern and message of a pytest.raises(match=...).
    wanted = [e[2:] for e in errors[1:] if e.startswith("- ")]
    got = [e[2:] for e in errors[1:] if e.startswith("+ ")]
    if wanted or got:
        parts = [f"wanted {' | '.join(wanted)!r}, got {' | '.join(got)!r}"]
    pattern = next((e.split(":", 1)[1].strip() for e in errors if e.startswith("Expected regex:")), None)
    message = next((e.split(":", 1)[1].strip() for e in errors if e.startswith("Actual message:")), None)
    if pattern and message:
        parts = [f"wanted a message matching {pattern}, got {message}"]
    # What the engine printed is in the report's error lines or its captured
    # output, never in the test's source that pytest quotes (an f-string there
    # is the test's expectation, not the engine's words).
    said = next((line for line in _captured(text) if line.startswith(("mini-engine: ", "mini-runc: "))), None) \
        or next((m.group(1) for line in errors if (m := re.search(r"(mini-(?:engine|runc): [^'\"\\]+)", line))),
                None)
    if said and said.strip() not in " ".join(parts):
        parts.append(f"the engine said: {said.strip()}")
    where = re.findall(r"^(tests/[\w/.]+:\d+): ", text, re.M)
    if where:
        parts.append(f"({where[-1]})")
    return " ".join(parts)[:600], None


def _captured(text: str) -> list[str]:
    """The lines of a report's "Captured stdout/stderr" sections."""
    lines, inside = [], False
    for line in text.splitlines():
        if line.startswith("-" * 5):
            inside = "Captured std" in line
        elif inside:
            lines.append(line)
    return lines


def pytest_command(root: Path, units: list[str], only: list[str] | None = None) -> list[str]:
    files = only or sorted(str(p.relative_to(root)) for p in (root / "tests").glob("test_*.py")
                           if p.name not in NOT_GRADED)
    command = [sys.executable, "-m", "pytest", "-p", "mini_engine.course.plugin", "-p", "no:cacheprovider",
               "-q", "-vv", "--color=no", "-o", "console_output_style=classic", *files]
    return ["env", f"MINI_ENGINE_GRADE_UNITS={','.join(units)}", f"PYTHONPATH={root}", *command]


def run_checks(root: Path, units: list[str], verbose: bool, only: list[str] | None = None) -> list[Check]:
    if not units:
        return []
    from mini_engine.runtime import cgroups

    v2 = {"memory", "cpu", "pids"} <= cgroups.available(cgroups.mount_point())
    in_vm = not only and "3" in units and not v2
    commands = []
    host_units = [u for u in units if not (in_vm and u == "3")]
    if host_units:
        commands.append(pytest_command(root, host_units, only))
    if in_vm:
        vm = root / "scripts" / "testvm.py"
        print("grade: this host keeps memory, cpu and pids on cgroup v1: stage 3 runs in the test VM "
              "(scripts/testvm.py; a few minutes)", file=sys.stderr)
        commands.append([sys.executable, str(vm), "run", "--", *pytest_command(root, ["3"])])
    checks = []
    for command in commands:
        done = subprocess.run(command, cwd=root, capture_output=True, text=True)
        found = 0
        for line in done.stdout.splitlines():
            at = line.find(PREFIX)
            if at < 0:
                if verbose:
                    print(line)
                continue
            found += 1
            record = json.loads(line[at + len(PREFIX):].rstrip("\r"))
            if record["when"] != "call" and record["outcome"] == "passed":
                continue
            reason, exercise = ("", None)
            if record["outcome"] == "failed":
                reason, exercise = reason_of(record["text"])
            elif record["outcome"] == "skipped":
                reason = record["text"]
            checks.append(Check(record["nodeid"], record["unit"], record["outcome"], reason, exercise,
                                record.get("seconds", 0.0), record["text"]))
        if done.returncode not in (0, 1, 5) or (done.returncode == 1 and not found):
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise ContainerError(f"the tests could not run (pytest exited {done.returncode}):\n{tail}")
    # A test that failed in its call and again in teardown (the leak check) is one check.
    merged: dict[str, Check] = {}
    for check in checks:
        before = merged.get(check.nodeid)
        if before is None or (before.outcome == "passed" and check.outcome == "failed"):
            merged[check.nodeid] = check
    return list(merged.values())


def summary(root: Path, checks: list[Check], graded: list[str]) -> list[dict[str, Any]]:
    from mini_engine import stages

    rows: list[dict[str, Any]] = []
    for unit in UNITS:
        name = str(unit)
        mine = [c for c in checks if c.unit == name]
        exercises = [e for e in EXERCISES if str(e.stage) == name]
        good = sum(c.grade == "GOOD" for c in mine)
        bad = sum(c.grade == "BAD" for c in mine)
        slug = "mini-runc" if name == "runtime" else stages.STAGES[int(name)].slug
        grade = "-" if name not in graded or not good + bad else ("BAD" if bad else "GOOD")
        rows.append(dict(unit=name, slug=slug, good=good, bad=bad,
                         skipped=sum(c.grade == "SKIP" for c in mine),
                         exercises=len(exercises),
                         written=sum(written(root, e) for e in exercises), grade=grade))
    return rows


def write_junit(path: Path, checks: list[Check], rows: list[dict[str, Any]], units: list[str]) -> None:
    """The checks as JUnit XML, which CI systems and learning platforms read.

    One ``testsuite`` per stage graded, one ``testcase`` per check; a BAD
    check's ``failure`` says the grader's reason (``message``) and pytest's
    report (its text). Made here rather than by pytest's ``--junitxml``,
    which would miss the checks that ran in the test VM.
    """
    from xml.etree import ElementTree as ET

    root = ET.Element("testsuites", name="mini-engine grade")
    for row in rows:
        if row["unit"] not in units:
            continue
        mine = sorted((c for c in checks if c.unit == row["unit"]), key=lambda c: c.nodeid)
        name = "runtime (mini-runc)" if row["unit"] == "runtime" else f"stage {row['unit']} ({row['slug']})"
        suite = ET.SubElement(root, "testsuite", name=name, tests=str(len(mine)), failures=str(row["bad"]),
                              errors="0", skipped=str(row["skipped"]),
                              time=f"{sum(c.seconds for c in mine):.2f}")
        for check in mine:
            file, _, test = check.nodeid.partition("::")
            case = ET.SubElement(suite, "testcase", classname=file.removesuffix(".py").replace("/", "."),
                                 name=test, time=f"{check.seconds:.2f}")
            if check.grade == "BAD":
                ET.SubElement(case, "failure", message=check.reason).text = check.detail
            elif check.grade == "SKIP":
                ET.SubElement(case, "skipped", message=check.reason)
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(sum(int(suite.get(key, "0")) for suite in root)))
    tree = ET.ElementTree(root)
    ET.indent(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)


def main(target: str | None, as_json: bool = False, junit: str | None = None, verbose: bool = False,
         only: list[str] | None = None) -> int:
    root = repository()
    unit = unit_name(target) if target is not None else first_unfinished(root)
    units = units_for(unit)
    checks = run_checks(root, units, verbose, only)
    rows = summary(root, checks, units)
    for check in checks:
        if check.outcome == "failed" and check.exercise is None:
            # The failure does not name a stub (its message was cut short):
            # name those of this stage and the ones before that are left.
            before = units_for(check.unit) if check.unit else []
            left = [e.id for e in EXERCISES if str(e.stage) in before and not written(root, e)]
            if left:
                check.reason += (f"; not written yet at this stage: {', '.join(left)} "
                                 "(if this check needs one of them: mini-engine hint ID)")
    ok = all(row["grade"] != "BAD" for row in rows) and any(row["grade"] == "GOOD" for row in rows)
    if junit:
        write_junit(Path(junit), checks, rows, units)
    if as_json:
        reported = [{k: v for k, v in asdict(c).items() if k != "detail"} | dict(grade=c.grade) for c in checks]
        print(json.dumps(dict(target=unit, units=units, passed=ok, stages=rows, checks=reported), indent=2))
        return 0 if ok else 1
    for row in rows:
        if row["unit"] not in units:
            continue
        name = row["unit"] if row["unit"] == "runtime" else f"stage {row['unit']}"
        print(f"== {name} ({row['slug']})")
        for check in sorted((c for c in checks if c.unit == row["unit"]), key=lambda c: c.nodeid):
            test = check.nodeid.split("::", 1)[-1]
            print(f"{check.grade:<5} {test}" + (f": {check.reason}" if check.reason else ""))
        total = row["good"] + row["bad"]
        skipped = f" ({row['skipped']} skipped)" if row["skipped"] else ""
        print(f"score: {name} {row['good']}/{total}{skipped}")
    print()
    print(f"{'STAGE':<9}{'SLUG':<13}{'EXERCISES':<11}{'CHECKS':<9}GRADE")
    for row in rows:
        checks_text = f"{row['good']}/{row['good'] + row['bad']}" if row["unit"] in units else "-"
        exercises = f"{row['written']}/{row['exercises']}"
        print(f"{row['unit']:<9}{row['slug']:<13}{exercises:<11}{checks_text:<9}{row['grade']}")
    if not checks:
        raise ContainerError(f"no checks ran for stage {unit}", ENGINE_FAILED)
    return 0 if ok else 1
