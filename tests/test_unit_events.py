"""The events journal (mini_engine/containers/events.py): times as docker reads them, filters,
and a reader that follows the journal across its rotation. A journal in tmp_path; no container."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from mini_engine.base.errors import ContainerError
from mini_engine.containers import events
from mini_engine.paths import Paths

pytestmark = [pytest.mark.stage(8), pytest.mark.unit]

NOW = 1_700_000_000.0


@pytest.mark.parametrize(("text", "expected"), [
    ("1700000000", 1_700_000_000 * 10**9),
    ("1700000000.5", 1_700_000_000 * 10**9 + 500_000_000),
    ("10m", int((NOW - 600) * 10**9)),
    ("1h30m", int((NOW - 5400) * 10**9)),
    ("0s", int(NOW * 10**9)),
    ("2023-11-14T22:13:20Z", 1_700_000_000 * 10**9),
    ("2023-11-14T22:13:20", 1_700_000_000 * 10**9),  # no zone: UTC, as docker
    ("2023-11-14T23:13:20+01:00", 1_700_000_000 * 10**9),
])
def test_times_as_docker_reads_them(text: str, expected: int) -> None:
    assert events.parse_time(text, "--since", NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "10x", "", "1h-5m"])
def test_a_time_that_is_none_is_refused(text: str) -> None:
    with pytest.raises(ContainerError, match="expected a Unix time"):
        events.parse_time(text, "--since", NOW)


def event(action: str, name: str, **attributes: str) -> dict:
    return {"Type": "container", "Action": action,
            "Actor": {"ID": f"{name}-id", "Attributes": dict(attributes, name=name, image="busybox")}}


def test_filters_a_key_twice_is_either_and_two_keys_both() -> None:
    wanted = events.parse_filters(["event=start", "event=die", "label=team=blue"])
    assert events.matches(event("die", "web", team="blue"), wanted)
    assert not events.matches(event("die", "web", team="red"), wanted)
    assert not events.matches(event("pause", "web", team="blue"), wanted)
    assert events.matches(event("start", "web"), events.parse_filters(["container=web"]))
    assert events.matches(event("start", "web"), events.parse_filters(["container=web-i"]))  # an id's start
    assert not events.matches(event("start", "web"), events.parse_filters(["type=network"]))


def test_the_default_line_is_dockers() -> None:
    e = dict(event("die", "web", exitCode="0"), timeNano=1_700_000_000_123_456_789)
    assert events.line_of(e) == ("2023-11-14T22:13:20.123456789Z container die web-id "
                                 "(exitCode=0, image=busybox, name=web)")


def test_a_follower_reads_on_across_the_rotation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = Paths(str(tmp_path / "lib"), str(tmp_path))
    monkeypatch.setattr(events, "MAX_BYTES", 2000)
    for i in range(5):
        events.emit(paths, "start", f"c{i}", {"name": f"c{i}"})
    until = time.time_ns() + 4 * 10**9
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(
        e["Actor"]["ID"] for e in events.read(paths, None, until, follow=True)))
    reader.start()
    time.sleep(0.5)
    for i in range(5, 40):  # past 2000 bytes: the journal is renamed to .1, and a new one begun
        events.emit(paths, "start", f"c{i}", {"name": f"c{i}"})
        time.sleep(0.05)  # a reader looks every 0.1 s; one rotation at a time between looks
    reader.join(timeout=30)
    assert (tmp_path / "events.jsonl.1").exists()
    assert seen == [f"c{i}" for i in range(40)]
    for line in (tmp_path / "events.jsonl").read_text().splitlines():
        assert json.loads(line)["Action"] == "start"
    assert (tmp_path / "events.jsonl").stat().st_mode & 0o777 == 0o600
