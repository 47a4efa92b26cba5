"""The flags of ``run`` and ``spec``, each declared once: as a field of the request it fills.

Chapter 00 reads this module. A flag is a field of a dataclass (``Request`` in
``containers/run.py``, and the groups it holds, ``Limits`` and security's
``Options``) made with ``flag()``: its names and argparse keywords, and the
stage that gives it meaning. From those fields come the command line's parser
(``add_arguments``), the request from what argparse parsed (``from_namespace``),
the refusal of a flag below its stage (``given``, with ``Stage.require``), and
the request again from a container's record (``from_json``), for ``start``.
"""

from __future__ import annotations

import argparse
from dataclasses import Field, dataclass, field, fields
from typing import Any

from mini_engine.stages import Stage


@dataclass(frozen=True)
class Flag:
    names: tuple[str, ...]        # as argparse takes them: "-e", "--env"
    since: Stage                  # below this stage the flag is refused, never ignored
    root_only: bool               # the kernel gives what it asks for to root alone (cgroups, id ranges)
    options: dict[str, Any]       # argparse's keywords: action, metavar, help...

    @property
    def name(self) -> str:
        """The name errors use: the first long one."""
        return next((n for n in self.names if n.startswith("--")), self.names[0])


def flag(*names: str, since: Stage, root_only: bool = False, **options: Any) -> Any:
    """A field that is a flag of ``run``; its default is argparse's."""
    metadata = {"flag": Flag(names, since, root_only, options)}
    default = options.get("default", False if options.get("action") == "store_true" else None)
    if isinstance(default, list) or options.get("nargs") == argparse.REMAINDER:
        return field(default_factory=list, metadata=metadata)
    return field(default=default, metadata=metadata)


def group(kind: type) -> Any:
    """A field that holds more flags: a dataclass of its own (``Limits``)."""
    return field(default_factory=kind, metadata={"group": kind})


def _flag_of(kind: type, f: Field[Any]) -> Flag:
    if "flag" not in f.metadata:
        raise TypeError(f"{kind.__name__}.{f.name} is not a flag: declare it with flag() or group()")
    found: Flag = f.metadata["flag"]
    return found


def add_arguments(parser: argparse.ArgumentParser, kind: type) -> None:
    """Each flag of ``kind``, in the order of its fields, on ``parser``."""
    for f in fields(kind):
        if "group" in f.metadata:
            add_arguments(parser, f.metadata["group"])
            continue
        declared = _flag_of(kind, f)
        if declared.names[0].startswith("-"):
            parser.add_argument(*declared.names, dest=f.name, **declared.options)
        else:  # the positional arguments, IMAGE [COMMAND...], named as the field is
            parser.add_argument(*declared.names, **declared.options)


def from_namespace(kind: type, args: argparse.Namespace) -> Any:
    """The request of ``kind`` that argparse parsed into ``args``."""
    return kind(**{f.name: from_namespace(f.metadata["group"], args) if "group" in f.metadata
                   else getattr(args, f.name) for f in fields(kind)})


def from_json(kind: type, data: dict[str, Any]) -> Any:
    """The request of ``kind`` saved as ``dataclasses.asdict`` wrote it; a flag it lacks (saved by
    an older engine) has its default."""
    values = {}
    for f in fields(kind):
        if f.name in data:
            value = data[f.name]
            values[f.name] = from_json(f.metadata["group"], value) if "group" in f.metadata else value
    return kind(**values)


def given(request: Any) -> list[Flag]:
    """The flags of ``request`` set to something other than their default, in the order of ``--help``."""
    out = []
    for f in fields(request):
        value = getattr(request, f.name)
        if "group" in f.metadata:
            out += given(value)
            continue
        default = f.default_factory() if callable(f.default_factory) else f.default
        if value != default:
            out.append(_flag_of(type(request), f))
    return out
