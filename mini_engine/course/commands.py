"""The course's commands: ``grade``, ``hint`` and ``course export|list``.

``mini-engine`` hands these words over whole (cli.py), as it does
``runtime``: they need no engine state, no root and no stage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mini_engine.base.errors import ContainerError
from mini_engine.course import exercises as course

COMMANDS = ("grade", "hint", "course")


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ContainerError(f"{message} (see '{self.prog} --help')")


def main(argv: list[str]) -> int:
    command, rest = argv[0], argv[1:]
    if command == "grade":
        p = Parser(prog="mini-engine grade", description="run a stage's checks and the earlier stages'; "
                   "GOOD or BAD for each, a score per stage")
        p.add_argument("stage", nargs="?", metavar="STAGE",
                       help="a stage number or slug, or runtime (default: the first with an exercise left)")
        p.add_argument("--json", action="store_true", help="a machine-readable report, for a teacher")
        p.add_argument("--junit", metavar="FILE", help="also write the checks as JUnit XML to FILE")
        p.add_argument("-v", "--verbose", action="store_true", help="show pytest's own output too")
        p.add_argument("--check", action="append", metavar="TEST",
                       help="only this test (a pytest node id), run here; repeatable")
        args = p.parse_args(rest)
        from mini_engine.course import grade

        return grade.main(args.stage, args.json, args.junit, args.verbose, args.check)
    if command == "hint":
        p = Parser(prog="mini-engine hint", description="the hints of an exercise, one tier at a time")
        p.add_argument("exercise", metavar="EXERCISE", help="its id (mini-engine course list)")
        p.add_argument("tier", nargs="?", type=int, default=1, choices=(1, 2, 3),
                       help="1: the idea (default), 2: the man pages and calls, 3: near-code")
        args = p.parse_args(rest)
        return hint(course.by_id(args.exercise), args.tier)
    p = Parser(prog="mini-engine course", description="the student edition")
    sub = p.add_subparsers(dest="what", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    export = sub.add_parser("export", help="write the student edition (each exercise a stub) to DIR")
    export.add_argument("dir", metavar="DIR", help="a new or empty directory")
    sub.add_parser("list", help="the exercises: stage, difficulty, time, written or not")
    args = p.parse_args(rest)
    from mini_engine.course import student

    if args.what == "export":
        done = student.export(Path(__file__).resolve().parent.parent.parent, Path(args.dir))
        print(f"{args.dir}: the student edition, {len(done)} exercises to write. Next, there:")
        print("  scripts/setup.sh            # as root, once: the packages and .venv")
        print("  .venv/bin/mini-engine course list")
        print("  .venv/bin/mini-engine grade # or: make grade")
        return 0
    root = Path(__file__).resolve().parent.parent.parent
    print(f"{'EXERCISE':<20}{'STAGE':<9}{'LEVEL':<10}{'MIN':<5}{'WRITTEN':<9}WHERE")
    for e in course.EXERCISES:
        state = "stub" if student.is_stub((root / e.file).read_text(), e) else "yes"
        print(f"{e.id:<20}{e.stage!s:<9}{e.difficulty:<10}{e.minutes:<5}{state:<9}"
              f'{e.file}: {e.function}() ({e.chapter}, "{e.section}")')
    return 0


def hint(exercise: course.Exercise, tier: int) -> int:
    names = ("the idea", "where to read, and the calls", "near-code")
    print(f"{exercise.id}: hint {tier} of 3, {names[tier - 1]}")
    print(f'  ({exercise.file}: {exercise.function}(), {exercise.chapter}, "{exercise.section}")')
    print()
    print(exercise.hints[tier - 1])
    if tier < 3:
        print(f"\nStill stuck? mini-engine hint {exercise.id} {tier + 1}", file=sys.stderr)
    return 0
