"""``ps``: which containers, filtered as docker's ``--filter``, and each one as a row for ``--format``.

Chapter 08 mentions this module. docker's ``ps`` reads its filters as
``KEY=VALUE``: the same key given twice matches either value, two keys must
both match (``--filter status=exited --filter label=team``). ``-n N`` is the
N containers made last, newest first, ``-l`` the last one, whatever their state.
The rows carry docker's field names (``.ID``, ``.Names``, ``.Status``...), so
that a template written for ``docker ps --format`` works here.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mini_engine.base.errors import ContainerError
from mini_engine.containers import record as containers
from mini_engine.paths import Paths

FILTERS = ("name", "status", "label", "ancestor", "id")
STATUSES = ("created", "running", "paused", "exited")

# docker's column headers of ps's fields, for --format 'table ...'.
HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
           "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Names": "NAMES",
           "Labels": "LABELS", "Label": "LABEL", "Mounts": "MOUNTS", "Networks": "NETWORKS", "Stage": "STAGE"}


@dataclass
class Listed:
    """A container as ps shows it: its record, its status (paused included), and why nobody watches it."""

    container: containers.Container
    status: str
    reason: str

    @property
    def record(self) -> containers.Record:
        return self.container.record


def parse_filters(given: list[str]) -> dict[str, list[str]]:
    """``["status=exited", "label=a"]`` as ``{"status": ["exited"], "label": ["a"]}``; a bad one is an error."""
    filters: dict[str, list[str]] = {}
    for item in given:
        key, equals, value = item.partition("=")
        if key not in FILTERS or not equals:
            raise ContainerError(f'invalid filter "{item}": expected KEY=VALUE, '
                                 f'KEY one of {", ".join(FILTERS)}')
        if key == "status" and value not in STATUSES:
            raise ContainerError(f'invalid filter "{item}": a status is one of {", ".join(STATUSES)}')
        if key == "name":
            try:
                re.compile(value)
            except re.error as exc:
                raise ContainerError(f'invalid filter "{item}": {exc}') from None
        filters.setdefault(key, []).append(value)
    return filters


def labels(record: containers.Record) -> dict[str, str]:
    return dict(record.config.labels or {}) if record.config else {}


def _ancestor(record: containers.Record, wanted: str) -> bool:
    """Was the container made from ``wanted``: a name (any tag, if none is given) or an id's prefix?"""
    from mini_engine.images import reference

    image_id = (record.image_id or "").removeprefix("sha256:")
    if image_id and wanted.removeprefix("sha256:") and image_id.startswith(wanted.removeprefix("sha256:")):
        return True
    if not record.image:
        return False
    try:
        mine, theirs = reference.parse(record.image), reference.parse(wanted)
    except ContainerError:
        return record.image == wanted
    if ":" not in wanted.rpartition("/")[2] and "@" not in wanted:
        return mine.name == theirs.name  # busybox: busybox of every tag
    return str(mine) == str(theirs)


def _labelled(own: dict[str, str], wanted: str) -> bool:
    """label=KEY: the container has the label; label=KEY=VALUE: has it, with that value."""
    key, equals, value = wanted.partition("=")
    return key in own and (not equals or own[key] == value)


def _matches(listed: Listed, filters: dict[str, list[str]]) -> bool:
    r = listed.record
    tests: dict[str, Callable[[str], bool]] = {
        "id": lambda v: r.id.startswith(v),
        "name": lambda v: bool(r.name and re.search(v, r.name)),
        "status": lambda v: listed.status == v,
        "ancestor": lambda v: _ancestor(r, v),
        "label": lambda v: _labelled(labels(r), v),
    }
    return all(any(tests[key](value) for value in values) for key, values in filters.items())


def containers_listed(paths: Paths, every: bool, filters: dict[str, list[str]], last: int | None,
                      paused: bool = False) -> list[Listed]:
    """The containers ``ps`` shows: running ones (all with ``every``), those the filters keep,
    the ``last`` made (newest first). ``paused``: ask the runtime which running ones are frozen."""
    found = []
    for c in containers.all_containers(paths):
        status, reason = containers.status(paths, c)
        if status == "running" and (paused or "status" in filters):
            from mini_engine.containers import runtime

            if runtime.of(paths, c.record.runtime).paused(c.id):
                status = "paused"
        found.append(Listed(c, status, reason))
    if last is not None and last >= 0:  # docker's -n -1: no limit
        found = sorted(found, key=lambda listed: listed.record.created, reverse=True)[:last]
    elif not every and "status" not in filters:
        found = [listed for listed in found if listed.status in ("running", "paused")]
    return [listed for listed in found if _matches(listed, filters)]


def _when(stamp: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(stamp) if stamp else None


def status_text(listed: Listed, now: datetime.datetime) -> str:
    """docker's Status column: "Up 5 minutes", "Exited (0) 2 seconds ago", "Created"."""
    from mini_engine.gotemplate import human_duration  # --format's alone: ps without it does not pay

    st = listed.record.state
    if listed.status in ("running", "paused"):
        text = f"Up {human_duration(_when(st.started_at), now)}"
        return text + " (Paused)" if listed.status == "paused" else text
    if listed.status == "exited":
        code = "orphan" if listed.reason else str(st.exit_code)
        return f"Exited ({code}) {human_duration(_when(st.finished_at) or _when(st.started_at), now)} ago"
    return "Created"


def fields(listed: Listed, now: datetime.datetime | None = None) -> dict[str, Any]:
    """One container as a row of ``ps --format``, by docker's field names."""
    from mini_engine.gotemplate import human_duration

    r, now = listed.record, now or datetime.datetime.now(datetime.UTC)
    created = _when(r.created)
    own_labels = labels(r)
    running = listed.status in ("running", "paused")
    return {
        "ID": r.id[:12],
        "Image": r.image or "(rootfs)",
        "Command": '"' + " ".join(r.config.cmd if r.config else []) + '"',
        "CreatedAt": created.strftime("%Y-%m-%d %H:%M:%S +0000 UTC") if created else "",
        "RunningFor": f"{human_duration(created, now)} ago",
        "Ports": ", ".join(r.network_settings.ports) if r.network_settings and running else "",
        "State": listed.status,
        "Status": status_text(listed, now),
        "Names": r.name or "",
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(own_labels.items())),
        "Label": lambda key: own_labels.get(key, ""),
        "Mounts": ",".join(m.get("Name") or m.get("Source", "") for m in r.mounts),
        "Networks": r.network_settings.network if r.network_settings else "",
        "Stage": r.stage,
    }
