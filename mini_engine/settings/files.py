"""Where the engine finds its configuration files, and how it reads them.

Chapter 05 reads this module. Man pages: containers.conf(5) ("FILES"),
containers-registries.conf(5), containers-policy.json(5); the XDG Base
Directory Specification.

As root the engine reads ``/etc/mini-engine/``; an ordinary user's engine
(rootless, chapter 06) reads ``$XDG_CONFIG_HOME/mini-engine/`` (by default
``~/.config/mini-engine/``), as podman reads ``/etc/containers/`` or
``~/.config/containers/``. ``MINI_ENGINE_CONFIG=DIR`` names another directory
(docker's ``DOCKER_CONFIG``): the tests use it. Three files, each optional:

- ``containers.conf``: the engine's defaults (``settings/engine.py``);
- ``registries.conf``: short names, mirrors, insecure and blocked registries
  (``images/registries.py``);
- ``policy.json``: which images may be pulled (``images/policy.py``).

A file that is there but wrong is an error, one line that names the file
and its line, and the command fails (125) before it does anything: a
mistyped mirror silently ignored would send pulls where the user did not
mean them to go.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from mini_engine.base import identity
from mini_engine.base.errors import ContainerError

SYSTEM_DIR = "/etc/mini-engine"


def config_dir() -> str:
    """The directory this engine reads its configuration from."""
    given = os.environ.get("MINI_ENGINE_CONFIG")
    if given:
        return given
    if not identity.rootless():  # root in the user namespace of a rootless engine is its user still
        return SYSTEM_DIR
    home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(home, "mini-engine")


def config_path(name: str) -> str:
    return os.path.join(config_dir(), name)


class ConfigError(ContainerError):
    """A configuration file that is there but cannot be used."""


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None


def read_toml(path: str) -> dict[str, Any] | None:
    """The TOML file at ``path`` (tomllib's reading, TOML 1.0), or None if there is none."""
    text = _read(path)
    if text is None:
        return None
    import tomllib  # only a command that finds a file pays for the import

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib ends its message with "(at line L, column C)": the line goes first, as in a compiler's.
        message = str(exc)
        where = re.search(r"\(at line (\d+), column \d+\)$", message)
        if where:
            raise ConfigError(f"{path}, line {where.group(1)}: {message[:where.start()].strip()}") from None
        raise ConfigError(f"{path}: {message}") from None


def read_json(path: str) -> Any:
    """The JSON file at ``path``, or None if there is none."""
    text = _read(path)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}, line {exc.lineno}: {exc.msg}") from None


def line_of(path: str, key: str, after: int = 0) -> int:
    """The line of ``path`` (from ``after`` on) where ``key`` is given: tomllib and json keep no
    positions, and an error about a value must still say where it is."""
    text = _read(path) or ""
    pattern = re.compile(rf'^\s*"?{re.escape(key)}"?\s*[=:]|"{re.escape(key)}"\s*:')
    for number, line in enumerate(text.splitlines(), 1):
        if number > after and pattern.search(line):
            return number
    return 1


def fail(path: str, key: str, message: str, after: int = 0) -> ConfigError:
    """An error about ``key`` of ``path``, at its line."""
    return ConfigError(f"{path}, line {line_of(path, key, after)}: {key}: {message}")
