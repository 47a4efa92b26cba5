"""The grader's pytest plugin: keep the tests of the units asked for, report each as one JSON line.

Loaded by ``mini-engine grade`` with ``-p mini_engine.course.plugin``. A
test's unit is its closest ``stage(N)`` mark, or ``runtime`` for mini-runc's
unmarked tests (tests/test_runtime_cli.py). The lines go to the terminal,
prefixed, so that they also come back from the test VM's console.
"""

from __future__ import annotations

import json
import os

import pytest

PREFIX = "::grade:: "
RUNTIME_FILE = "test_runtime_cli.py"


def unit_of(item: pytest.Item) -> str | None:
    mark = item.get_closest_marker("stage")
    if mark is not None:
        return str(mark.args[0])
    if item.path.name == RUNTIME_FILE:
        return "runtime"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = set(os.environ.get("MINI_ENGINE_GRADE_UNITS", "").split(","))
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        (keep if unit_of(item) in wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    item.user_properties.append(("unit", unit_of(item)))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # One line per test: its call, or the setup or teardown that failed or skipped.
    if report.when == "call" or report.outcome != "passed":
        text = ""
        if report.failed:
            # What the engine printed to stderr, first: the end of the report
            # (its error lines) is what a cut to 4000 characters must keep.
            said = report.capstderr[-1000:]
            text = (f"----- Captured stderr -----\n{said}\n-----\n" if said else "") + report.longreprtext
        elif report.skipped and isinstance(report.longrepr, tuple):
            text = str(report.longrepr[2])
        line = dict(nodeid=report.nodeid, unit=dict(report.user_properties).get("unit"),
                    when=report.when, outcome=report.outcome, text=text[-4000:],
                    seconds=round(report.duration, 2))
        terminal = _config.pluginmanager.get_plugin("terminalreporter") if _config else None
        if terminal is not None:
            terminal.write_line(PREFIX + json.dumps(line))


_config: pytest.Config | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _config
    _config = config
