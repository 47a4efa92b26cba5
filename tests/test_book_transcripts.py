"""Every shell transcript of the book is run and compared with what the engine prints.

tests/fixtures/transcripts.py says how a transcript is read, what it may
leave open (``…``, ids, times, ``% vary:``) and how a chapter runs: in
namespaces of its own, with an empty engine root, on a network namespace
with only ``lo``. ``--update-transcripts`` rewrites what differs, for a
human to review; without it the test only compares.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, ImageFiles
from fixtures.transcripts import ELLIPSIS, BookError, Matcher, lines_of, parse, run_chapter

from mini_engine.runtime import cgroups

CHAPTERS = sorted((REPO / "chapters").glob("*.md"))
ON_V2 = cgroups.on_v2("memory", "cpu", "pids")


def has_nftables() -> bool:
    """The test VM's kernel has no nf_tables: there the engine's default network cannot be made."""
    try:
        return subprocess.run(["nft", "list", "tables"], capture_output=True, timeout=30).returncode == 0
    except OSError:
        return False


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
def test_transcripts(chapter: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINI_ENGINE_")}
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    if "$BOOK_IMAGES" in chapter.read_text():  # single.tar, multi.tar, many.tar, layout/
        images: ImageFiles = request.getfixturevalue("test_images")
        env["BOOK_IMAGES"] = str(images.single.parent)
    env["BOOK_TESTS"] = str(REPO / "tests")
    if not has_nftables():
        env["MINI_ENGINE_NETWORK"] = "none"  # the transcripts that need a network are not marked vm
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


# The checker itself: what it lets vary, and what it catches.

def test_a_line_that_differs_is_caught() -> None:
    assert Matcher().match(["4  overlayfs    no"], ["4  overlayfs    yes"], []) is None
    assert Matcher().match(["hello"], ["hello", "more"], []) is None
    assert Matcher().match(["hello", "more"], ["hello"], []) is None


def test_an_id_names_one_value_for_the_chapter() -> None:
    m = Matcher()
    full = "1dd2bf1394a58152c97d1032fca91c7e5a2e2d2632f3125c55ca7be2abf800a3"
    found = m.match(["1dd2bf1394a5  busybox", full], ["0123456789ab  busybox", "0123456789ab" + "f" * 52], [])
    assert found is not None and found["1dd2bf1394a5"] == "0123456789ab"
    # a prefix that is not the short id's, or two ids of the book that are one id of the machine
    assert m.match(["1dd2bf1394a5", full], ["0123456789ab", "ba9876543210" + "f" * 52], []) is None
    assert m.match(["1dd2bf1394a5 48debdd51251"], ["0123456789ab 0123456789ab"], []) is None
    m.bound = found
    assert m.substitute("mini-engine rm 1dd2bf1394a5; ls 1dd2bf1394a5*/", []) == \
        "mini-engine rm 0123456789ab; ls 0123456789ab*/"
    with pytest.raises(BookError):
        m.substitute("mini-engine rm 48debdd51251", [])


def test_what_varies_matches_its_shape_and_no_more() -> None:
    assert Matcher().match(["[1] 12363"], ["[1] 215"], ["12363"]) is not None
    assert Matcher().match(["[1] 12363"], ["[1] 21x5"], ["12363"]) is None
    assert Matcher().match(["size 543"], ["size 1089664"], ["543"]) is None  # not a size of another order
    assert Matcher().match(["exit 137"], ["exit 1"], []) is None  # numbers not listed are compared
    assert Matcher().match(["-rw------- 1 root root 317 Nov 26 08:32 config.json"],
                           ["-rw------- 1 root root  4317 Dec  4 00:14 config.json"], ["317"]) is not None
    assert Matcher().match(["-rw------- 1 root root 317 Nov 26 08:32 config.json"],
                           ["-rw-r--r-- 1 root root 317 Dec  4 00:14 config.json"], ["317"]) is None


def test_ellipsis_and_order() -> None:
    assert Matcher().match(["a", ELLIPSIS, "z"], ["a", "b", "c", "z"], []) is not None
    assert Matcher().match(["a", ELLIPSIS, "z"], ["a", "z"], []) is not None
    assert Matcher().match(['"cgroup": "…0::/",'], ['"cgroup": "1:cpu:/\\n0::/",'], []) is not None
    assert Matcher().match(["b", "a"], ["a", "b"], []) is None
    assert Matcher().match_unordered(["b 349", "a 1089664"], ["a 1089917", "b 349"], ["1089664"]) is not None
    assert Matcher().match_unordered(["b 349", "a 1089664"], ["a 1089917", "c 349"], ["1089664"]) is None


def test_update_keeps_the_books_placeholders_and_ids() -> None:
    m = Matcher()
    m.bound = {"1dd2bf1394a5": "0123456789ab"}
    new, _ = m.align(["start …", "id 1dd2bf1394a5", "old line"],
                     ["start 12:00", "id 0123456789ab", "new line"], [])
    assert new == ["start …", "id 1dd2bf1394a5", "new line"]
    # a new line that names a bound id names it as the book does
    new, _ = m.align(["x"], ["x", "rm 0123456789ab"], [])
    assert new == ["x", "rm 1dd2bf1394a5"]


def test_a_terminal_shows_the_last_of_a_rewritten_line(tmp_path: Path) -> None:
    assert lines_of("10%\r50%\r100% done\r\n\x1b[1;39m{\x1b[0m\n") == ["100% done", "{"]
    page = tmp_path / "page.md"
    page.write_text("```console\nnot a prompt\n```\n")
    with pytest.raises(BookError):
        parse(page)
    page.write_text("% vary: 12363\n% skip: needs a terminal\n```console\n# sleep 3 &\n[1] 12363\n```\n")
    (block,) = parse(page)
    assert block.get("skip") == "needs a terminal" and block.commands[0].expected == ["[1] 12363"]
