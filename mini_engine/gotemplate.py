"""``--format``: Go's text/template, the part docker's command line uses, and its tables.

Chapter 08 mentions this module ("Docker's habits"). ``docker ps --format '{{.Names}}'`` and
``docker inspect -f '{{.State.Status}}'`` hand their output to Go's
``text/template`` package (https://pkg.go.dev/text/template), with a few
functions of docker's own (``json``, ``join``, ``split``, ``upper``,
``lower``, ``title``, ``pad``, ``truncate``; docs.docker.com, "Format
command and log output"), and a format that begins with ``table`` goes
through Go's ``text/tabwriter``: a header line, columns three spaces apart.
This module is that, small enough to read in one sitting:

- ``parse`` turns a template into a tree: text, ``{{pipeline}}`` actions,
  ``if``/``else``/``range``/``with`` blocks that close at ``{{end}}``;
- ``Template.execute`` walks the tree against one value (a row of ``ps``, a
  container's ``inspect``), printing as Go's ``fmt`` prints (``[a b]``,
  ``map[k:v]``, ``<no value>``);
- ``render`` is docker's formatter around it: a template per row, or a
  ``table`` with its header, aligned like ``tabwriter``.

A row of a command (``Fields``) is a record of known fields, like docker's Go
structs: a field it lacks is an error that names the ones it has. A JSON
document (``inspect``) is a map, and a key it lacks prints ``<no value>``, as
in Go. The command line imports this module only when ``--format`` asks for
a template: ``ps`` alone does not pay for it.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mini_engine.base.errors import ContainerError


class TemplateError(ContainerError):
    """A template that does not parse, or cannot run on its value (exit 125, as docker's)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"template: {message}")


class _Missing:
    """A map's key that is not there: Go prints it ``<no value>``."""

    def __repr__(self) -> str:
        return "<no value>"


MISSING = _Missing()


class Fields(dict[str, Any]):
    """A row of a command's output, with the field names docker gives it (``ID``, ``Names``...).

    Like one of docker's Go structs, and unlike a map: a field it does not have
    is an error, so that a typo does not print blanks. A value may be a function
    (``.Label "key"``): called with the arguments that follow it.
    """


# -- Printing as Go's fmt prints (%v) ------------------------------------------

def show(value: Any) -> str:
    """``value`` as Go's ``fmt.Sprint`` prints what JSON decodes to."""
    if value is MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))  # Go prints float64(3) as 3
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(show(v) for v in value) + "]"
    if isinstance(value, Fields):  # a row: its fields, not its methods
        value = {k: v for k, v in value.items() if not callable(v)}
    if isinstance(value, dict):
        # Go prints a map with its keys sorted.
        return "map[" + " ".join(f"{k}:{show(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def truth(value: Any) -> bool:
    """Go's truth for ``if``: false, 0, nil, and the empty string, list and map are false."""
    return value is not MISSING and bool(value)


# -- The functions: Go's built-ins and docker's ----------------------------------

def _json(value: Any) -> str:
    # docker's: encoding/json without HTML escaping, on one line.
    if isinstance(value, Fields):  # a row's methods (.Label) are no data: Go's json leaves them out
        value = {k: v for k, v in value.items() if not callable(v)}
    # Go's encoding/json writes a map's keys sorted.
    return json.dumps(None if value is MISSING else value, separators=(",", ":"), ensure_ascii=False,
                      sort_keys=True)


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            if isinstance(value, dict) and not isinstance(value, Fields):
                return MISSING  # a map's missing key is the zero value
            raise TemplateError(f"index of {show(value)} with {show(key)}: out of range") from None
    return value


def _title(text: str) -> str:
    # Go's strings.Title: the first letter of each word upper-cased, the rest kept.
    return re.sub(r"(^|[^\w'])(\w)", lambda m: m.group(1) + m.group(2).upper(), text)


def _print(*values: Any) -> str:
    # fmt.Sprint: a space between two operands when neither is a string.
    out = ""
    for i, v in enumerate(values):
        if i and not isinstance(v, str) and not isinstance(values[i - 1], str):
            out += " "
        out += show(v)
    return out


GO_VERB = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d+))?([a-zA-Z%])")


def printf(fmt: str, *values: Any) -> str:
    """Go's ``fmt.Sprintf`` for the verbs templates use: %s %v %d %q %f %x %t and %%."""
    args = list(values)

    def one(m: re.Match[str]) -> str:
        flags, width, precision, verb = m.groups()
        if verb == "%":
            return "%"
        if not args:
            return f"%!{verb}(MISSING)"
        value = args.pop(0)
        spec = flags.replace("#", "") + (width or "")
        if verb in "sv":
            text = show(value)
            return f"%{spec}{'.' + precision if precision else ''}s" % text
        if verb == "q":
            return f"%{spec}s" % json.dumps(show(value), ensure_ascii=False)
        if verb == "t":
            return f"%{spec}s" % show(value)
        if verb in "dxXo":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"%!{verb}({show(value)})"
            return f"%{spec}{verb}" % int(value)
        if verb in "feg":
            return f"%{spec}.{precision or 6}{verb}" % float(value)
        return f"%!{verb}({show(value)})"

    out = GO_VERB.sub(one, fmt)
    if args:  # Go says what was left over
        out += "%!(EXTRA " + ", ".join(show(a) for a in args) + ")"
    return out


def _compare(op: Callable[[Any, Any], bool]) -> Callable[..., bool]:
    def compare(a: Any, b: Any) -> bool:
        try:
            return op(a, b)
        except TypeError:
            raise TemplateError(f"incompatible types for comparison: {show(a)} and {show(b)}") from None
    return compare


def _and(*values: Any) -> Any:
    # Go's: the first false argument, or the last one.
    for v in values[:-1]:
        if not truth(v):
            return v
    return values[-1]


def _or(*values: Any) -> Any:
    for v in values[:-1]:
        if truth(v):
            return v
    return values[-1]


def _join(items: Any, sep: str) -> str:
    if not isinstance(items, (list, tuple)):
        raise TemplateError(f"join: wrong type for value; expected a list, got {show(items)}")
    return sep.join(show(i) for i in items)


def _pad(text: Any, left: int, right: int) -> str:
    return " " * left + show(text) + " " * right


def _truncate(text: Any, length: int) -> str:
    return show(text)[:length]


FUNCTIONS: dict[str, Callable[..., Any]] = {
    # docker's (github.com/docker/cli templates/templates.go)
    "json": _json,
    "join": _join,
    "split": lambda text, sep: show(text).split(sep),
    "upper": lambda text: show(text).upper(),
    "lower": lambda text: show(text).lower(),
    "title": lambda text: _title(show(text)),
    "pad": _pad,
    "truncate": _truncate,
    # Go's built-ins (text/template "Functions")
    "len": lambda value: len(value),
    "index": _index,
    "printf": printf,
    "print": _print,
    "println": lambda *values: " ".join(show(v) for v in values) + "\n",
    "not": lambda value: not truth(value),
    "and": _and,
    "or": _or,
    "eq": lambda a, *others: any(a == b for b in others),
    "ne": _compare(lambda a, b: a != b),
    "lt": _compare(lambda a, b: a < b),
    "le": _compare(lambda a, b: a <= b),
    "gt": _compare(lambda a, b: a > b),
    "ge": _compare(lambda a, b: a >= b),
}


# -- Parsing: the template's text into a tree ------------------------------------

# An action: {{ ... }}, with "-" trimming the white space beside it ("{{- " and " -}}").
ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
TOKEN = re.compile(r"""
    \s*(?:
      (?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<declare>:=)
    | (?P<punct>[|(),])
    | (?P<field>(?:\$[\w]*)?(?:\.[A-Za-z_]\w*)+|\.|\$\w*)
    | (?P<word>[A-Za-z_]\w*)
    )""", re.X)


@dataclass
class Command:
    """One command of a pipeline: a function and its arguments, or a single value."""

    words: list[Any]


@dataclass
class Pipeline:
    commands: list[Command]
    declare: list[str] = field(default_factory=list)  # {{$x := ...}}, {{range $i, $e := ...}}


@dataclass
class Field:
    """``.A.B``, ``$x.A``, ``$``, ``.``: a value and the fields to walk from it."""

    variable: str | None  # None: the dot
    names: list[str]


@dataclass
class Sub:
    """``(pipeline).A``: a pipeline in parentheses, and fields taken from its value."""

    pipeline: Pipeline
    names: list[str]


@dataclass
class Block:
    """``if``, ``range`` or ``with``: a pipeline, what runs, and what ``{{else}}`` runs."""

    kind: str
    pipeline: Pipeline
    body: list[Any]
    otherwise: list[Any] = field(default_factory=list)


def _tokens(source: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    source = source.rstrip()
    while pos < len(source):
        m = TOKEN.match(source, pos)
        if not m or m.end() == pos:
            raise TemplateError(f'unexpected "{source[pos:].strip()[:10]}" in {{{{{source.strip()}}}}}')
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _string(token: str) -> str:
    if token.startswith("`"):
        return token[1:-1]  # a raw string
    try:
        result: str = json.loads(token)  # Go's escapes are JSON's, for what templates hold
    except ValueError:
        raise TemplateError(f"bad string {token}: use \\n, \\t, \\\", \\\\ or \\uXXXX") from None
    return result


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], source: str) -> None:
        self.tokens, self.pos, self.source = tokens, 0, source

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise TemplateError(f"unexpected end in {{{{{self.source}}}}}")
        self.pos += 1
        return token

    def pipeline(self, variables: int = 1) -> Pipeline:
        declare: list[str] = []
        # $x := ...   or, in range, $i, $e := ...
        ahead = [k for k, _ in self.tokens[self.pos:self.pos + 4]]
        pair = variables == 2 and ahead == ["field", "punct", "field", "declare"]
        if ahead[:2] == ["field", "declare"] or pair:
            while True:
                declare.append(self.take()[1])
                if self.take()[0] == "declare":
                    break
        commands = [self.command()]
        while self.peek() == ("punct", "|"):
            self.take()
            commands.append(self.command())
        return Pipeline(commands, declare)

    def command(self) -> Command:
        words: list[Any] = []
        while (token := self.peek()) is not None and token[1] not in ("|", ")"):
            kind, text = self.take()
            if kind == "string":
                words.append(_string(text))
            elif kind == "number":
                words.append(float(text) if "." in text else int(text))
            elif kind == "word":
                words.append({"true": True, "false": False, "nil": None}.get(text, ("function", text)))
            elif kind == "field":
                words.append(_field(text))
            elif text == "(":
                inner = self.pipeline()
                if self.take() != ("punct", ")"):
                    raise TemplateError(f"unclosed ( in {{{{{self.source}}}}}")
                after = self.peek()
                names = []
                if after and after[0] == "field" and after[1].startswith("."):
                    names = _field(self.take()[1]).names  # (pipeline).Field
                words.append(Sub(inner, names))
            else:
                raise TemplateError(f'unexpected "{text}" in {{{{{self.source}}}}}')
        if not words:
            raise TemplateError(f"missing value in {{{{{self.source}}}}}")
        return Command(words)


def _field(text: str) -> Field:
    if text.startswith("$"):
        variable, _, rest = text.partition(".")
        return Field(variable, rest.split(".") if rest else [])
    return Field(None, [n for n in text.split(".") if n])


def parse(source: str) -> Template:
    """The tree of ``source``; a ``TemplateError`` that says where it does not parse."""
    # Each node list being filled, innermost last, with the block that owns it.
    root: list[Any] = []
    stack: list[tuple[Block | None, list[Any]]] = [(None, root)]
    pos, trim_next = 0, False
    for m in ACTION.finditer(source):
        text = source[pos:m.start()]
        if trim_next:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        if text:
            stack[-1][1].append(text)
        pos, trim_next = m.end(), bool(m.group(3))
        inside = m.group(2).strip()
        if inside.startswith("/*"):
            continue  # a comment
        keyword, _, rest = inside.partition(" ")
        if keyword in ("if", "range", "with"):
            tokens = _tokens(rest)
            parser = _Parser(tokens, inside)
            block = Block(keyword, parser.pipeline(2 if keyword == "range" else 1), [])
            stack[-1][1].append(block)
            stack.append((block, block.body))
        elif keyword == "else":
            owner = stack[-1][0]
            if owner is None:
                raise TemplateError("{{else}} outside if, range or with")
            if rest.strip():  # {{else if ...}}: an if of its own, inside the else
                inner_kind, _, inner_rest = rest.strip().partition(" ")
                if inner_kind not in ("if", "with"):
                    raise TemplateError(f"unexpected {{{{{inside}}}}}")
                inner = Block(inner_kind, _Parser(_tokens(inner_rest), inside).pipeline(), [])
                owner.otherwise.append(inner)
                # It takes its owner's place: the one {{end}} closes both.
                stack[-1] = (inner, inner.body)
            else:
                stack[-1] = (owner, owner.otherwise)
        elif keyword == "end":
            if len(stack) == 1:
                raise TemplateError("unexpected {{end}}")
            stack.pop()
        elif keyword in ("define", "template", "block", "break", "continue"):
            raise TemplateError(f"{{{{{keyword}}}}} is not supported here")
        else:
            tokens = _tokens(inside)
            parser = _Parser(tokens, inside)
            node = parser.pipeline()
            if parser.peek() is not None:
                raise TemplateError(f'unexpected "{parser.peek()[1]}" in {{{{{inside}}}}}')  # type: ignore[index]
            stack[-1][1].append(node)
    text = source[pos:]
    if "{{" in text:
        raise TemplateError(f"unclosed action: {text[text.index('{{'):][:20]}")
    if trim_next:
        text = text.lstrip()
    if text:
        stack[-1][1].append(text)
    if len(stack) > 1:
        raise TemplateError(f"unexpected EOF: {{{{{stack[-1][0].kind}}}}} without {{{{end}}}}")  # type: ignore[union-attr]
    return Template(source, root)


# -- Executing the tree ----------------------------------------------------------

@dataclass
class Template:
    source: str
    nodes: list[Any]

    def execute(self, dot: Any) -> str:
        out: list[str] = []
        _run(self.nodes, dot, [("$", dot)], out)
        return "".join(out)


def _run(nodes: list[Any], dot: Any, variables: list[tuple[str, Any]], out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, Pipeline):
            value = _pipeline(node, dot, variables)
            if not node.declare:  # {{$x := ...}} prints nothing
                out.append(show(value))
        else:
            _block(node, dot, variables, out)


def _block(block: Block, dot: Any, variables: list[tuple[str, Any]], out: list[str]) -> None:
    # Variables declared inside a block end with it.
    scope = len(variables)
    value = _pipeline(block.pipeline, dot, variables, declare=block.kind != "range")
    try:
        if block.kind == "if":
            _run(block.body if truth(value) else block.otherwise, dot, variables, out)
        elif block.kind == "with":
            if truth(value):
                _run(block.body, value, variables, out)
            else:
                _run(block.otherwise, dot, variables, out)
        else:  # range: a list's items, or a map's values in the order of its keys
            if isinstance(value, dict):
                items = [(k, value[k]) for k in sorted(value)]
            elif isinstance(value, (list, tuple)):
                items = list(enumerate(value))
            elif value is None or value is MISSING:
                items = []
            else:
                raise TemplateError(f"range can't iterate over {show(value)}")
            if not items:
                _run(block.otherwise, dot, variables, out)
            for key, item in items:
                names = block.pipeline.declare
                inner = variables[:scope]
                if len(names) == 1:
                    inner.append((names[0], item))
                elif len(names) == 2:
                    inner += [(names[0], key), (names[1], item)]
                _run(block.body, item, inner, out)
    finally:
        del variables[scope:]


def _pipeline(pipeline: Pipeline, dot: Any, variables: list[tuple[str, Any]], declare: bool = True) -> Any:
    value: Any = MISSING
    for i, command in enumerate(pipeline.commands):
        # The value so far is the last argument of the next command (Go's pipelines).
        value = _command(command, dot, variables, value if i else MISSING, i > 0)
    if declare and pipeline.declare:
        variables.append((pipeline.declare[0], value))
    return value


def _command(command: Command, dot: Any, variables: list[tuple[str, Any]], piped: Any, has_piped: bool) -> Any:
    first, rest = command.words[0], command.words[1:]
    args = [_value(w, dot, variables) for w in rest] + ([piped] if has_piped else [])
    if isinstance(first, tuple):  # a function
        name = first[1]
        if name not in FUNCTIONS:
            raise TemplateError(f'function "{name}" not defined')
        try:
            return FUNCTIONS[name](*args)
        except TypeError as exc:
            raise TemplateError(f"wrong arguments for {name}: {exc}") from None
        except (ValueError, AttributeError) as exc:
            raise TemplateError(f"error calling {name}: {exc}") from None
    value = _value(first, dot, variables)
    if callable(value):  # a method of a row: .Label "key"
        try:
            return value(*args)
        except TypeError:
            named = "." + ".".join(first.names) if isinstance(first, Field) else "it"
            raise TemplateError(f"wrong number of arguments ({len(args)}) for {named}") from None
    if args:
        raise TemplateError(f"can't give arguments to {show(value)}, which is not a function")
    return value


def _value(word: Any, dot: Any, variables: list[tuple[str, Any]]) -> Any:
    if isinstance(word, Field):
        if word.variable is None:
            start = dot
        else:
            found = [v for n, v in variables if n == word.variable]
            if not found:
                raise TemplateError(f'undefined variable "{word.variable}"')
            start = found[-1]
        return _walk(start, word.names)
    if isinstance(word, Sub):
        return _walk(_pipeline(word.pipeline, dot, variables), word.names)
    if isinstance(word, tuple):  # a function named without arguments: called with none
        return _command(Command([word]), dot, variables, MISSING, False)
    return word


def _walk(value: Any, names: list[str]) -> Any:
    for name in names:
        if isinstance(value, Fields):
            if name not in value:
                raise TemplateError(f'can\'t evaluate field {name}: the fields are {", ".join(sorted(value))}')
            value = value[name]
        elif isinstance(value, dict):
            value = value.get(name, MISSING)  # a map: a missing key is <no value>
        elif value is MISSING or value is None:
            return MISSING  # Go: nothing further to walk, <no value>
        else:
            raise TemplateError(f"can't evaluate field {name} in {show(value)}")
    return value


# -- docker's formatter: a row per line, or a table, and its times

def human_duration(since: datetime.datetime | None, now: datetime.datetime) -> str:
    """How long since ``since``, as docker's HumanDuration (go-units) says it in ps's and
    images' CREATED: "5 seconds", "About a minute", "3 hours"."""
    if since is None:
        return ""
    seconds = (now - since).total_seconds()
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return "1 second" if int(seconds) == 1 else f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)  # go-units rounds half up
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def tabwriter(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Go's ``text/tabwriter`` as docker sets it up: a cell ends at a tab; each column
    as wide as its widest cell in a run of lines that have it, plus ``padding``."""
    lines = [line.split("\t") for line in text.split("\n")]
    widths: list[list[int]] = [[0] * (len(cells) - 1) for cells in lines]
    column = 0
    while any(len(cells) - 1 > column for cells in lines):
        start = 0
        while start < len(lines):
            if len(lines[start]) - 1 <= column:
                start += 1
                continue
            end = start
            while end < len(lines) and len(lines[end]) - 1 > column:
                end += 1
            width = max(minwidth, *(len(lines[i][column]) + padding for i in range(start, end)))
            for i in range(start, end):
                widths[i][column] = width
            start = end
        column += 1
    return "\n".join("".join(cell.ljust(w) for cell, w in zip(cells, row, strict=False)) + cells[-1]
                     for cells, row in zip(lines, widths, strict=True))


def render(fmt: str, rows: Iterable[Any], headers: dict[str, str] | None = None) -> str:
    """What docker prints for ``--format fmt``: the template once per row, a line each; with
    ``table`` first, a header line (each field's header, or its name upper-cased) and columns."""
    table = fmt.startswith("table")
    if table:
        fmt = fmt[len("table"):]
    # The shell hands over \t and \n as two characters; docker means a tab and a newline.
    fmt = fmt.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    template = parse(fmt)
    out = []
    rows = list(rows)
    if table:
        names = set().union(*(r for r in rows if isinstance(r, dict))) | set(headers or {})
        # The header line: the same template, each field standing for its header.
        header = {n: (headers or {}).get(n, n.upper()) for n in names}
        methods = {n for r in rows if isinstance(r, dict) for n, v in r.items() if callable(v)}
        out.append(template.execute(Fields({n: (lambda *_, h=h: h) if n in methods else h
                                            for n, h in header.items()})) + "\n")
    out += [template.execute(row) + "\n" for row in rows]
    text = "".join(out)
    return tabwriter(text) if table else text
