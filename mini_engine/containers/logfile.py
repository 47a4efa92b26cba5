"""A container's log: written line by line, rotated by size, read back in a time window.

Chapter 08 reads this module. Man pages: rename(2), open(2) (O_APPEND).

The log has podman's "k8s-file" format, one line per line of output:
``2026-11-26T14:00:00.123456789Z stdout F hello``. A container that prints
forever must not fill the disk, so the log rotates as docker's json-file
driver does with ``--log-opt max-size=10m --log-opt max-file=3``: once
``ctr.log`` would pass ``max-size`` it is renamed ``ctr.log.1`` (the older
ones move up, and the oldest past ``max-file`` goes) and a new ``ctr.log``
starts. rename(2) is atomic: a reader sees the old file or the new one,
never half of either.

The defaults are :data:`DEFAULT_OPTIONS`, below: docker's json-file keeps
every byte unless told otherwise; this engine bounds a log by default, as
docker's ``local`` driver does (20 MB in 5 files).
"""

from __future__ import annotations

import datetime
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

from mini_engine.base.errors import ContainerError

Entry = tuple[str, str, str]  # (timestamp, stream, text)


@dataclass(frozen=True)
class Options:
    """``--log-opt``'s: the size at which the log rotates, and how many files are kept, itself too."""

    max_size: int    # bytes; 0: never rotate
    max_file: int    # files, ctr.log and ctr.log.1...; at least 1


# The defaults, where users look for them (and docker's names: max-size, max-file).
DEFAULT_OPTIONS = Options(max_size=20 << 20, max_file=5)

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30}


def defaults() -> Options:
    """DEFAULT_OPTIONS, unless containers.conf sets ``log_size_max``: then one
    file, which starts again from empty when a line would pass it (as conmon
    keeps a log). Its -1, the default, leaves the engine's own."""
    from mini_engine.settings import engine

    limit = engine.log_size_max()
    return DEFAULT_OPTIONS if limit < 0 else Options(max_size=limit, max_file=1)


def parse_options(given: list[str]) -> Options:
    """``--log-opt KEY=VALUE``s over the defaults; a bad one is a one-line error."""
    size, files = (base := defaults()).max_size, base.max_file
    for option in given:
        key, equals, value = option.partition("=")
        if key == "max-size" and equals:
            match = re.fullmatch(r"(\d+)([kKmMgG]?[bB]?)", value)
            if not match:
                raise ContainerError(f"--log-opt {option}: expected a size such as 10m, 512k or 1g")
            size = int(match[1]) * _UNITS[match[2].lower()]
        elif key == "max-file" and equals:
            if not value.isdigit() or int(value) < 1:
                raise ContainerError(f"--log-opt {option}: expected a number of files, 1 or more")
            files = int(value)
        else:
            raise ContainerError(f"--log-opt {option}: expected max-size=SIZE or max-file=N")
    return Options(size, files)


def now() -> str:
    """The time as the log writes it: UTC, nanoseconds."""
    ns = time.time_ns()
    seconds = datetime.datetime.fromtimestamp(ns // 1_000_000_000, datetime.UTC)
    return f"{seconds:%Y-%m-%dT%H:%M:%S}.{ns % 1_000_000_000:09d}Z"


# [book:log-rotate]
class Writer:
    """The log, opened for appending; :meth:`write` rotates it once it would pass ``max_size``."""

    def __init__(self, path: str, options: Options = DEFAULT_OPTIONS) -> None:
        self.path, self.options = path, options
        self._open()

    def _open(self) -> None:
        # 0600: what a container prints (a token, a generated password) is its owner's.
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.size = os.fstat(self.fd).st_size

    def write(self, data: bytes) -> None:
        """Whole lines: each stays in one file, so a reader never finds half of one."""
        limit, batch = self.options.max_size, b""
        for line in data.splitlines(keepends=True):
            if limit and self.size + len(batch) + len(line) > limit and (self.size or batch):
                self._append(batch)
                batch = b""
                self._rotate()
            batch += line
        self._append(batch)

    def _append(self, data: bytes) -> None:
        while data:
            written = os.write(self.fd, data)
            self.size += written
            data = data[written:]

    def _rotate(self) -> None:
        os.close(self.fd)
        keep = self.options.max_file
        # ctr.log.N-1 -> ctr.log.N ... ctr.log -> ctr.log.1; the one past max_file goes.
        for n in range(keep - 1, 0, -1):
            older = f"{self.path}.{n - 1}" if n > 1 else self.path
            if os.path.exists(older):
                os.rename(older, f"{self.path}.{n}")
        if keep == 1:
            os.unlink(self.path)  # one file: it starts again, empty
        self._open()

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
# [/book:log-rotate]


def files(path: str) -> list[str]:
    """The log's files, oldest first: ``ctr.log.N`` ... ``ctr.log.1``, ``ctr.log``."""
    rotated = []
    n = 1
    while os.path.exists(f"{path}.{n}"):
        rotated.append(f"{path}.{n}")
        n += 1
    return [*reversed(rotated), path]


def read(path: str) -> Iterator[Entry]:
    """(timestamp, stream, text) for each line of the log, rotated files first."""
    for name in files(path):
        try:
            with open(name, "rb") as f:
                for raw in f:
                    stamp, stream, _flag, text = raw.decode(errors="replace").rstrip("\n").split(" ", 3)
                    yield stamp, stream, text
        except FileNotFoundError:
            continue  # rotated away between the listing and the open


# Go's durations, as docker's --since 10m or 1h30m: a number and a unit, repeated.
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_time(value: str, option: str, now_ns: int | None = None) -> int:
    """``--since``/``--until``'s VALUE as nanoseconds since the epoch: an RFC 3339 time
    (``2026-11-26T14:00:00Z``, an offset, or none: local time; a date alone), a Unix time
    (``1700000000.5``), or a duration before now (``10m``, ``1h30m``), as docker takes them."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    if re.fullmatch(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+", value):
        seconds = sum(float(n) * _SECONDS[unit] for n, unit in _DURATION.findall(value))
        return now_ns - int(seconds * 1e9)
    if re.fullmatch(r"\d+(?:\.\d{1,9})?", value):
        whole, _, fraction = value.partition(".")
        return int(whole) * 1_000_000_000 + int(fraction.ljust(9, "0") or 0)
    try:
        return stamp_ns(value)
    except ValueError:
        raise ContainerError(f'{option} "{value}": expected a time (2026-11-26T14:00:00Z, 1700000000) '
                             "or a duration before now (10m, 1h30m)") from None


def stamp_ns(stamp: str) -> int:
    """An RFC 3339 time, the log's own among them, as nanoseconds since the epoch."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\d)(?:[T ](\d\d:\d\d(?::\d\d)?)(?:\.(\d{1,9}))?)?"
                         r"(Z|[+-]\d\d:?\d\d)?", stamp)
    if not match:
        raise ValueError(stamp)
    date, clock, fraction, zone = match.groups()
    parsed = datetime.datetime.fromisoformat(f"{date}T{clock or '00:00:00'}")
    if zone == "Z":
        parsed = parsed.replace(tzinfo=datetime.UTC)
    elif zone:
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = int(zone[1:3]), int(zone[-2:])
        offset = datetime.timedelta(hours=hours, minutes=minutes)
        parsed = parsed.replace(tzinfo=datetime.timezone(sign * offset))
    else:
        parsed = parsed.astimezone()  # no zone: this machine's local time, as docker
    return int(parsed.timestamp()) * 1_000_000_000 + int((fraction or "0").ljust(9, "0"))
