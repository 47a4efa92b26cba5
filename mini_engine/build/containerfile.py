"""Reading a Containerfile: logical lines, instructions, and variables.

Chapter 09 reads this module. The format is Docker's (the Dockerfile
reference, "Format", "Parser directives", "Environment replacement"); podman
and buildah read the same files under the name ``Containerfile``.

Three passes, in the order the reference gives them:

1. *Parser directives*, ``# escape=`` and ``# syntax=``, only at the very
   top: the first comment, blank line or instruction ends them.
2. *Logical lines*: a line ending in the escape character (``\\`` unless a
   directive changed it) goes on with the next; comment lines inside such
   a line are dropped, as Docker drops them.
3. *Instructions*: a keyword, ``--flag=value`` options (``COPY --from``),
   and arguments in *exec form* (a JSON array) or *shell form* (text).

Variables (``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR:+alt}``) are
replaced while building, not here: ``ARG`` and ``ENV`` give them values one
instruction at a time. ``words`` does that replacement and the shell's
quote removal in one pass, as Docker's shell lexer does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from mini_engine.base.errors import ContainerError

# A failed build exits 1, as docker build does; the message names the line.
BUILD_FAILED = 1

INSTRUCTIONS = frozenset({
    "FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
    "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
})
# Instructions whose arguments get variables replaced (the reference's list).
SUBSTITUTED = frozenset({"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER",
                         "VOLUME", "WORKDIR", "ARG", "ONBUILD"})
# The options each instruction accepts; anything else is a mistake worth naming.
FLAGS = {
    "FROM": {"platform"},
    "COPY": {"from", "chown", "chmod", "link"},
    "ADD": {"chown", "chmod", "link"},
    "RUN": {"network"},
}
DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")


class ContainerfileError(ContainerError):
    """The Containerfile is wrong; the message names the file and line."""

    def __init__(self, message: str) -> None:
        super().__init__(message, BUILD_FAILED)


@dataclass
class Instruction:
    """One instruction, as written: where it is, its options and its arguments."""

    keyword: str            # upper case: "RUN"
    text: str               # the arguments, continuation lines joined, not yet substituted
    line: int               # the line it starts on, counting from 1
    flags: dict[str, str] = field(default_factory=dict)
    exec_form: list[str] | None = None  # the JSON array, when written so
    filename: str = "Containerfile"

    @property
    def where(self) -> str:
        return f"{self.filename}:{self.line}"

    def error(self, message: str) -> ContainerfileError:
        return ContainerfileError(f"{self.where}: {self.keyword}: {message}")

    def __str__(self) -> str:
        flags = "".join(f"--{k}={v} " for k, v in self.flags.items())
        return f"{self.keyword} {flags}{self.text}".rstrip()


@dataclass
class Containerfile:
    instructions: list[Instruction]
    escape: str = "\\"
    filename: str = "Containerfile"


# [book:parse]
def parse(text: str, filename: str = "Containerfile") -> Containerfile:
    """The instructions of a Containerfile, each with the line it starts on."""
    lines = text.splitlines()
    escape, first = _directives(lines, filename)
    instructions: list[Instruction] = []
    pending: list[str] = []  # the physical lines of the logical line being read
    start = 0
    for number in range(first, len(lines)):
        line = lines[number]
        stripped = line.strip()
        if stripped.startswith("#"):
            continue  # a comment, even inside a continued line
        if not pending:
            if not stripped:
                continue
            start = number + 1
        elif not stripped:
            continue  # an empty line inside a continued one: Docker skips it too
        body = line.rstrip()
        if body.endswith(escape):  # Docker's rule: any trailing escape continues the line
            pending.append(body[:-1])
            continue
        pending.append(line)
        instructions.append(_instruction(" ".join(p.strip() for p in pending) if len(pending) > 1
                                         else pending[0].strip(), start, filename))
        pending = []
    if pending:  # the file ends on a continuation: take what there is
        instructions.append(_instruction(" ".join(p.strip() for p in pending), start, filename))
    if not instructions:
        raise ContainerfileError(f"{filename}: no instructions (the file is empty)")
    if instructions[0].keyword not in ("FROM", "ARG"):
        raise ContainerfileError(f"{filename}:{instructions[0].line}: the first instruction must be "
                                 f"FROM (or ARG before it), not {instructions[0].keyword}")
    return Containerfile(instructions, escape, filename)
# [/book:parse]


def _directives(lines: list[str], filename: str) -> tuple[str, int]:
    """The escape character the directives set, and the first line after them."""
    escape, seen = "\\", set()
    for number, line in enumerate(lines):
        match = DIRECTIVE.match(line.strip())
        if not match:
            return escape, number
        name, value = match.group(1).lower(), match.group(2)
        if name in seen:
            raise ContainerfileError(f"{filename}:{number + 1}: parser directive {name!r} given twice")
        seen.add(name)
        if name == "escape":
            if value not in ("\\", "`"):
                raise ContainerfileError(f"{filename}:{number + 1}: invalid escape character {value!r}: "
                                         "use \\ or `")
            escape = value
        # syntax= and check= name BuildKit frontends and checks: nothing to do here.
    return escape, len(lines)


def _instruction(line: str, number: int, filename: str) -> Instruction:
    keyword, _, rest = line.partition(" ")
    if "\t" in keyword:
        keyword, _, more = keyword.partition("\t")
        rest = f"{more} {rest}"
    upper = keyword.upper()
    if upper not in INSTRUCTIONS:
        raise ContainerfileError(f"{filename}:{number}: unknown instruction: {keyword}")
    if upper in ("ONBUILD", "HEALTHCHECK", "MAINTAINER"):
        raise ContainerfileError(f"{filename}:{number}: {upper} is not supported by mini-engine build")
    rest = rest.strip()
    instruction = Instruction(upper, rest, number, filename=filename)
    while instruction.text.startswith("--"):
        option, _, remainder = instruction.text.partition(" ")
        name, equals, value = option[2:].partition("=")
        if upper not in FLAGS or name not in FLAGS[upper]:
            raise ContainerfileError(f"{filename}:{number}: {upper}: unknown option --{name}")
        if not equals:
            value = "true"
        instruction.flags[name] = value
        instruction.text = remainder.strip()
    if upper in ("RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME") and \
            instruction.text.startswith("["):
        try:
            form: object = json.loads(instruction.text)
        except ValueError:
            form = None  # not JSON: Docker takes it as shell form
        if isinstance(form, list) and all(isinstance(v, str) for v in form):
            instruction.exec_form = form
    if upper == "SHELL" and instruction.exec_form is None:
        raise ContainerfileError(f'{filename}:{number}: SHELL requires the JSON form: SHELL ["/bin/sh", "-c"]')
    if not instruction.text and upper not in ("CMD", "ENTRYPOINT"):
        raise ContainerfileError(f"{filename}:{number}: {upper} needs at least one argument")
    return instruction


# [book:words]
def words(text: str, variables: dict[str, str], escape: str = "\\", split: bool = True) -> list[str]:
    """``text`` as the shell would hand it over: variables replaced, quotes removed,
    and (with ``split``) cut into words at unquoted blanks.

    Single quotes keep everything as written; double quotes keep blanks but
    not ``$``; the escape character keeps the character after it.
    """
    out: list[str] = []
    word: list[str] = []
    started = False  # "" is a word, nothing is not
    i, n = 0, len(text)
    quote = ""
    while i < n:
        c = text[i]
        if quote == "'":
            if c == "'":
                quote = ""
            else:
                word.append(c)
            i += 1
        elif c == escape and i + 1 < n and (quote != '"' or text[i + 1] in ('"', "$", escape)):
            word.append(text[i + 1])
            started = True
            i += 2
        elif c in "'\"" and (not quote or quote == c):
            quote = "" if quote else c
            started = True
            i += 1
        elif c == "$":
            value, i = _variable(text, i, variables, escape)
            word.append(value)
            started = started or bool(value)
        elif c.isspace() and not quote and split:
            if started:
                out.append("".join(word))
            word, started = [], False
            i += 1
        else:
            word.append(c)
            started = True
            i += 1
    if quote:
        raise ValueError(f"unterminated {quote} quote")
    if started:
        out.append("".join(word))
    return out
# [/book:words]


NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# [book:variable]
def _variable(text: str, i: int, variables: dict[str, str], escape: str) -> tuple[str, int]:
    """The value of the variable at ``text[i]`` (a ``$``), and where the text goes on.

    ``${NAME:-word}``: word if NAME is unset or empty; ``${NAME-word}``: if unset;
    ``${NAME:+word}``: word if NAME is set and not empty; ``${NAME+word}``: if set;
    ``${NAME:?message}``: an error if unset or empty.
    """
    if i + 1 < len(text) and text[i + 1] == "{":
        end = _closing_brace(text, i + 2)
        if end < 0:
            raise ValueError(f"missing }} in {text[i:]!r}")
        inside = text[i + 2:end]
        match = NAME.match(inside)
        if not match:
            raise ValueError(f"bad substitution: {text[i:end + 1]!r}")
        name, rest = match.group(0), inside[match.end():]
        value = variables.get(name)
        if not rest:
            return value or "", end + 1
        for op in (":-", ":+", ":?", "-", "+", "?"):
            if rest.startswith(op):
                word = "".join(words(rest[len(op):], variables, escape, split=False))
                empty = value is None or (op.startswith(":") and value == "")
                if op.endswith("-"):
                    return (word if empty else value or ""), end + 1
                if op.endswith("+"):
                    return ("" if empty else word), end + 1
                if empty:
                    raise ValueError(f"{name}: {word or 'is not set'}")
                return value or "", end + 1
        raise ValueError(f"unsupported modifier in {text[i:end + 1]!r}")
    match = NAME.match(text, i + 1)
    if not match:
        return "$", i + 1  # a lone $ is itself
    return variables.get(match.group(0), ""), match.end()
# [/book:variable]


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    for j in range(start, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return -1


def substitute(instruction: Instruction, variables: dict[str, str], escape: str = "\\",
               split: bool = True) -> list[str]:
    """The instruction's arguments with variables replaced (for the instructions
    that get replacement), exec form or shell form; errors name the line."""
    try:
        if instruction.exec_form is not None:
            if instruction.keyword not in SUBSTITUTED:
                return list(instruction.exec_form)
            return ["".join(words(w, variables, escape, split=False)) for w in instruction.exec_form]
        return words(instruction.text, variables, escape, split)
    except ValueError as exc:
        raise instruction.error(str(exc)) from None


def key_values(instruction: Instruction, variables: dict[str, str],
               escape: str = "\\") -> list[tuple[str, str]]:
    """ENV and LABEL: ``KEY=VALUE ...``, or the old ``KEY VALUE`` (one pair, the rest of the line)."""
    items = substitute(instruction, variables, escape)
    first = instruction.text.split(None, 1)[0] if instruction.text else ""
    if "=" not in first:  # ENV KEY the value, spaces and all
        key, _, rest = instruction.text.partition(" ")
        if not rest.strip():
            raise instruction.error(f"{key} has no value: write {key}=VALUE")
        try:
            value = "".join(words(rest.strip(), variables, escape, split=False))
        except ValueError as exc:
            raise instruction.error(str(exc)) from None
        return [(key, value)]
    pairs = []
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise instruction.error(f"{item!r} is not KEY=VALUE")
        pairs.append((key, value))
    return pairs


def stage_name(instruction: Instruction, variables: dict[str, str],
               escape: str = "\\") -> tuple[str, str | None]:
    """FROM IMAGE [AS NAME]: the image (variables replaced) and the stage's name."""
    parts = substitute(instruction, variables, escape)
    if len(parts) == 1:
        return parts[0], None
    if len(parts) == 3 and parts[1].lower() == "as":
        if not re.fullmatch(r"[a-zA-Z][a-zA-Z0-9_.-]*", parts[2]):
            raise instruction.error(f"invalid stage name {parts[2]!r}")
        return parts[0], parts[2].lower()
    raise instruction.error("expected FROM IMAGE [AS NAME]")


# -- .containerignore ---------------------------------------------------------

IGNORE_FILES = (".containerignore", ".dockerignore")


@dataclass
class Pattern:
    regex: re.Pattern[str]
    exclude: bool  # False: a "!" exception, which takes a path back in
    text: str


# [book:ignore]
def ignore_patterns(text: str) -> list[Pattern]:
    """The lines of a .containerignore: Go's filepath.Match patterns, ``**`` for any
    number of directories, ``!`` to take back in what an earlier line left out."""
    patterns = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        line = line.lstrip("!").strip()
        cleaned = "/".join(p for p in line.split("/") if p not in ("", "."))
        if not cleaned:
            continue
        patterns.append(Pattern(re.compile(_translate(cleaned)), exclude, line))
    return patterns


def ignored(path: str, patterns: list[Pattern]) -> bool:
    """Is ``path`` (relative to the context, ``/``-separated) left out? The last
    pattern that matches it, or a directory above it, decides."""
    parents = path.split("/")
    candidates = ["/".join(parents[:i]) for i in range(1, len(parents) + 1)]
    result = False
    for pattern in patterns:
        if any(pattern.regex.fullmatch(c) for c in candidates):
            result = pattern.exclude
    return result
# [/book:ignore]


def _translate(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):  # "**/" : zero or more directories
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:end]
                if body.startswith("^"):
                    body = "!" + body[1:]
                out.append("[" + ("^" + re.escape(body[1:]) if body.startswith("!") else re.escape(body)) + "]")
                i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def read_ignore_file(context: str, containerfile: str | None = None) -> list[Pattern]:
    """The context's ignore patterns: ``<Containerfile>.containerignore`` or
    ``.dockerignore`` beside it first (buildah's rule), then the context's own."""
    import os

    candidates = []
    if containerfile:
        candidates += [f"{containerfile}.containerignore", f"{containerfile}.dockerignore"]
    candidates += [os.path.join(context, name) for name in IGNORE_FILES]
    for path in candidates:
        try:
            with open(path) as f:
                return ignore_patterns(f.read())
        except FileNotFoundError:
            continue
    return []
