"""Every shell transcript of the book is run and compared with what the engine prints.

tests/fixtures/transcripts.py says how a transcript is read, what it may
leave open (``…``, ids, times, ``% vary:``) and how a chapter runs: in
namespaces of its own, with an empty engine root, on a network namespace
with only ``lo``. ``--update-transcripts`` rewrites what differs, for a
human to review; without it the test only compares.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import REPO, ImageFiles
from fixtures.transcripts import BookError, parse, run_chapter

from mini_engine.runtime import cgroups

CHAPTERS = sorted((REPO / "chapters").glob("*.md"))
ON_V2 = cgroups.on_v2("memory", "cpu", "pids")


def _params() -> list[object]:
    params = []
    for path in CHAPTERS:
        marks = [pytest.mark.stage(int(path.name[:2]))] if path.name[:2].isdigit() else []
        try:
            blocks = parse(path)
        except BookError:
            blocks = []  # the test reports it
        if any(b.get("vm") is not None for b in blocks):
            marks.append(pytest.mark.vm)  # its cgroup-v2 transcripts run in the test VM
        params.append(pytest.param(path, marks=marks, id=path.stem))
    return params


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("chapter", _params())
def test_transcripts(chapter: Path, test_images: ImageFiles, tmp_path: Path,
                     request: pytest.FixtureRequest) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINI_ENGINE_")}
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    env["BOOK_IMAGES"] = str(test_images.single.parent)  # single.tar, multi.tar, many.tar, layout/
    env["BOOK_TESTS"] = str(REPO / "tests")
    update = request.config.getoption("--update-transcripts")
    try:
        outcome = run_chapter(chapter, tmp_path / "book", env, ON_V2, update=update)
    except BookError as exc:
        pytest.fail(str(exc), pytrace=False)
    for skipped in outcome.skipped:
        print("not run:", skipped)
    if outcome.failures:
        hint = ("rewritten in place: review `git diff chapters/`" if update else
                f"refresh: pytest {Path(__file__).name} --update-transcripts -k {chapter.stem}, "
                "then review `git diff chapters/`")
        pytest.fail(f"{len(outcome.failures)} of {outcome.ran} commands print what the book does not show "
                    f"({hint}):\n\n" + "\n\n".join(outcome.failures), pytrace=False)
