"""``mini-engine events``: what happened to containers, as ``docker events`` shows it.

Chapter 08 mentions this module ("Docker's habits"). Man pages: open(2)
(O_APPEND), write(2), flock(2), inotify(7) for what ``tail -f`` would use
instead of looking again.

Docker's daemon keeps its events in memory and hands them to whoever
listens. This engine has no daemon: each command, and each container's
monitor, is a process of its own, and any of them may be killed. So the
events are a journal, ``RUNROOT/events.jsonl``, one JSON object per line,
and every process that does something appends its line itself:

- opened with O_APPEND, each line goes out in one write(2), and the kernel
  puts each such write at the end of the file whole: two engines appending
  at the same moment never interleave their lines, and no lock is needed;
- a reader (``events``) reads what is there, then reads on from where it
  stopped, as ``tail -f`` does: a line appended later by any engine, or by
  the successor of one that was killed, reaches it;
- 0600, as the containers' records are: an event names containers, images
  and labels, which are root's (or, rootless, the user's) to see;
- past ``MAX_BYTES`` the journal is renamed to ``events.jsonl.1`` (under an
  flock, so that two writers do not both rename) and a new one begun; a
  reader that follows notices the new inode and opens it. The runroot is a
  tmpfs: after a reboot the journal starts empty, as the containers' runs do.

An event has docker's shape (``Type``, ``Action``, ``Actor.ID``,
``Actor.Attributes``, ``time``, ``timeNano``, and the older ``status``,
``id``, ``from``), so that ``--format '{{json .}}'`` reads as docker's.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from mini_engine.base.errors import ContainerError
from mini_engine.paths import Paths

MAX_BYTES = 1 << 20
FILTER_KEYS = ("container", "event", "image", "label", "type", "network")


def journal(paths: Paths) -> str:
    return os.path.join(paths.runroot, "events.jsonl")


# [book:emit]
def emit(paths: Paths, action: str, actor: str, attributes: dict[str, str], kind: str = "container") -> None:
    """Append one event to the journal: one line, one write(2), O_APPEND.

    An event that cannot be written (a full disk) is lost, not the command's
    failure: the container was started, or removed, all the same.
    """
    now = time.time_ns()
    event = {"status": action, "id": actor, "from": attributes.get("image", ""), "Type": kind,
             "Action": action, "Actor": {"ID": actor, "Attributes": attributes}, "scope": "local",
             "time": now // 10**9, "timeNano": now}
    line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
    path = journal(paths)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        if os.fstat(fd).st_size > MAX_BYTES:
            fd = _rotate(path, fd)
        os.write(fd, line)
    except OSError:
        pass
    finally:
        os.close(fd)
# [/book:emit]


def _rotate(path: str, fd: int) -> int:
    """The journal is full: it becomes ``.1`` and a new one starts; the new one's descriptor.
    Under an flock of the full one, so that of two writers only the first renames it."""
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        if os.stat(path).st_ino == os.fstat(fd).st_ino:  # not renamed meanwhile by another writer
            os.rename(path, f"{path}.1")
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)


def of_container(paths: Paths, action: str, record: Any, **more: str) -> None:
    """An event about a container (a ``record.Record``): its image, its name and its labels,
    as docker's attributes; ``more`` adds the action's own (``exitCode``, ``signal``)."""
    labels = record.config.labels if record.config is not None and record.config.labels else {}
    attributes = {**labels, "image": record.image or "", "name": record.name or record.id[:12], **more}
    emit(paths, action, record.id, attributes)


# docker's --since and --until: a Unix time, an RFC 3339 date, or a Go duration before now.
DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_time(text: str, flag: str, now: float | None = None) -> int:
    """``--since``/``--until``'s value, in nanoseconds since the epoch."""
    now = time.time() if now is None else now
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d{1,9})?", text):
        seconds, _, fraction = text.partition(".")
        return int(seconds) * 10**9 + int(fraction.ljust(9, "0") or 0)
    if text and DURATION.sub("", text) == "":
        ago = sum(float(n) * UNIT_SECONDS[unit] for n, unit in DURATION.findall(text))
        return int((now - ago) * 10**9)
    try:
        stamp = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ContainerError(f"{flag} {text!r}: expected a Unix time (1700000000), a date "
                             "(2024-01-31T10:00:00Z) or a duration before now (10m, 1h30m)") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)  # docker reads a bare date as UTC
    return int(stamp.timestamp() * 10**9)


def parse_filters(given: list[str]) -> dict[str, list[str]]:
    """``--filter KEY=VALUE``, as docker's: a key twice, either value; two keys, both."""
    filters: dict[str, list[str]] = {}
    for item in given:
        key, equals, value = item.partition("=")
        if not equals or key not in FILTER_KEYS or not value:
            raise ContainerError(f'invalid filter "{item}": expected KEY=VALUE, KEY one of '
                                 f'{", ".join(FILTER_KEYS)}')
        filters.setdefault(key, []).append(value)
    return filters


def matches(event: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    actor = event["Actor"]
    attributes = actor.get("Attributes", {})

    def label(wanted: str) -> bool:
        key, equals, value = wanted.partition("=")
        return key in attributes and (not equals or attributes[key] == value)

    checks: dict[str, Callable[[str], bool]] = {
        "container": lambda v: event["Type"] == "container" and (
            actor["ID"].startswith(v) or attributes.get("name") == v),
        "event": lambda v: event["Action"] == v,
        "image": lambda v: attributes.get("image") == v,
        "label": label,
        "type": lambda v: event["Type"] == v,
        "network": lambda v: event["Type"] == "network" and v in (actor["ID"], attributes.get("name")),
    }
    return all(any(checks[key](value) for value in values) for key, values in filters.items())


def line_of(event: dict[str, Any]) -> str:
    """docker's default line: time, type, action, actor, then its attributes in order."""
    stamp = datetime.datetime.fromtimestamp(event["timeNano"] // 10**9, datetime.UTC)
    when = f"{stamp:%Y-%m-%dT%H:%M:%S}.{event['timeNano'] % 10**9:09d}Z"
    attributes = ", ".join(f"{k}={v}" for k, v in sorted(event["Actor"]["Attributes"].items()))
    return f"{when} {event['Type']} {event['Action']} {event['Actor']['ID']} ({attributes})"


def _lines(path: str, offset: int) -> tuple[list[dict[str, Any]], int]:
    """The whole lines of ``path`` after ``offset``, and where the next read starts."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    whole = data[:data.rfind(b"\n") + 1]  # a line being written is read next time, whole
    events = []
    for raw in whole.splitlines():
        try:
            events.append(json.loads(raw))
        except ValueError:
            continue  # a line cut short by a full disk: skipped, as tail would print it
    return events, offset + len(whole)


def read(paths: Paths, since: int | None, until: int | None, follow: bool) -> Iterator[dict[str, Any]]:
    """The journal's events from ``since`` (nanoseconds), up to ``until``; with ``follow``,
    new ones as they are appended, until ``until`` passes (or forever)."""
    path = journal(paths)
    history, _ = _lines(f"{path}.1", 0)
    try:
        inode = os.stat(path).st_ino
    except FileNotFoundError:
        inode = None
    current, offset = _lines(path, 0)
    for event in (*history, *current):
        if (since is None or event["timeNano"] >= since) and (until is None or event["timeNano"] <= until):
            yield event
    while follow and (until is None or time.time_ns() <= until):
        time.sleep(0.1)
        try:
            now_inode = os.stat(path).st_ino
        except FileNotFoundError:
            continue
        if now_inode != inode:  # rotated: what is left of the old one, then the new one from its start
            rest, _ = _lines(f"{path}.1", offset) if inode is not None else ([], 0)
            fresh, offset = _lines(path, 0)
            new, inode = rest + fresh, now_inode
        else:
            new, offset = _lines(path, offset)
        for event in new:
            if until is None or event["timeNano"] <= until:
                yield event


def show(paths: Paths, since: str | None, until: str | None, filters: list[str], fmt: str | None) -> int:
    """``events``: the events since ``--since`` (all kept, by default only new ones, as docker),
    up to ``--until``; without ``--until``, streamed until interrupted."""
    now = time.time()
    start = parse_time(since, "--since", now) if since is not None else None
    end = parse_time(until, "--until", now) if until is not None else None
    wanted = parse_filters(filters)
    template = None
    if fmt not in (None, "json"):
        from mini_engine import gotemplate

        template = gotemplate.parse(fmt.replace("\\t", "\t").replace("\\n", "\n"))
    if start is None and end is None:
        start = int(now * 10**9)  # docker: without --since, only what happens from now on
    for event in read(paths, start, end, follow=end is None or end > now * 10**9):
        if not matches(event, wanted):
            continue
        if fmt == "json":
            text = json.dumps(event, separators=(",", ":"))
        elif template is not None:
            text = template.execute(event)
        else:
            text = line_of(event)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    return 0
