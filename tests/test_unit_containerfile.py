"""The Containerfile parser (mini_engine/build/containerfile.py): lines, instructions,
variables and .containerignore, as the Dockerfile reference defines them.

The expected values are the reference's own examples ("Environment
replacement", "Parser directives", ".dockerignore file") where it gives any.
"""

from __future__ import annotations

import pytest

from mini_engine.build import containerfile as cf
from mini_engine.build.containerfile import ContainerfileError

pytestmark = [pytest.mark.stage(9), pytest.mark.unit]


def test_continuations_comments_and_line_numbers() -> None:
    text = ("# a comment\n"
            "FROM busybox AS base\n"
            "\n"
            "RUN echo one \\\n"
            "# a comment inside the continued line is dropped\n"
            "    two \\\n"
            "\n"
            "    three\n"
            "  env A=1\n")
    parsed = cf.parse(text)
    assert [(i.keyword, i.text, i.line) for i in parsed.instructions] == [
        ("FROM", "busybox AS base", 2), ("RUN", "echo one two three", 4), ("ENV", "A=1", 9)]


def test_the_escape_directive_changes_the_continuation() -> None:
    parsed = cf.parse("# escape=`\n\nFROM scratch\nCOPY a `\n  C:\\dir\\\n")
    assert parsed.escape == "`"
    assert parsed.instructions[1].text == "a C:\\dir\\"


def test_a_directive_after_a_comment_is_a_comment() -> None:
    parsed = cf.parse("# hello\n# escape=`\nFROM scratch\nRUN a \\\n b\n")
    assert parsed.escape == "\\"
    assert parsed.instructions[1].text == "a b"


def test_exec_form_shell_form_and_flags() -> None:
    parsed = cf.parse('FROM scratch\nCMD ["echo", "hi there"]\nENTRYPOINT echo hi\n'
                      'COPY --from=build --chown=1:2 /a /b\nRUN [not json\n')
    cmd, entry, copy, run = parsed.instructions[1:]
    assert cmd.exec_form == ["echo", "hi there"]
    assert entry.exec_form is None and entry.text == "echo hi"
    assert copy.flags == {"from": "build", "chown": "1:2"} and copy.text == "/a /b"
    assert run.exec_form is None and run.text == "[not json"


@pytest.mark.parametrize(("text", "message"), [
    ("FROM scratch\n\nFROB x\n", "Containerfile:3: unknown instruction: FROB"),
    ("RUN true\n", "Containerfile:1: the first instruction must be FROM (or ARG before it), not RUN"),
    ("FROM scratch\nCOPY --form=x a b\n", "Containerfile:2: COPY: unknown option --form"),
    ("FROM scratch\nSHELL /bin/sh -c\n",
     'Containerfile:2: SHELL requires the JSON form: SHELL ["/bin/sh", "-c"]'),
    ("# only a comment\n", "Containerfile: no instructions (the file is empty)"),
    ("# escape=x\nFROM scratch\n", "Containerfile:1: invalid escape character 'x': use \\ or `"),
    ("FROM scratch\nWORKDIR\n", "Containerfile:2: WORKDIR needs at least one argument"),
])
def test_errors_are_one_line_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(ContainerfileError) as caught:
        cf.parse(text)
    assert str(caught.value) == message
    assert caught.value.exit_code == 1


@pytest.mark.parametrize(("text", "expected"), [
    # The reference's "Environment replacement" example: abc=hello.
    ("$abc", ["hello"]),
    ("${abc}", ["hello"]),
    ("\\$abc", ["$abc"]),
    ("'$abc'", ["$abc"]),
    ('"$abc world"', ["hello world"]),
    ("${unset:-default value}", ["default value"]),
    ("${empty:-word}", ["word"]),
    ("${empty-word}", []),
    ("x${empty-word}", ["x"]),
    ("${unset-word}", ["word"]),
    ("${abc:+alt}", ["alt"]),
    ("${unset:+alt}", []),
    ("${empty+alt}", ["alt"]),
    ("${unset:-${abc}}", ["hello"]),
    ("a${abc}b c", ["ahellob", "c"]),
    ("$ alone", ["$", "alone"]),
    ('""', [""]),
])
def test_variables_are_replaced_as_the_shell_would(text: str, expected: list[str]) -> None:
    assert cf.words(text, {"abc": "hello", "empty": ""}) == expected


def test_a_required_variable_that_is_unset_is_an_error_naming_the_line() -> None:
    instruction = cf.parse("FROM scratch\nWORKDIR ${DIR:?set DIR}\n").instructions[1]
    with pytest.raises(ContainerfileError, match=r"^Containerfile:2: WORKDIR: DIR: set DIR$"):
        cf.substitute(instruction, {})


def test_env_and_label_key_values_both_forms() -> None:
    new, old = cf.parse('FROM scratch\nENV A=1 B="two words" C=${A}x\nENV D the rest of it\n').instructions[1:]
    assert cf.key_values(new, {"A": "0"}) == [("A", "1"), ("B", "two words"), ("C", "0x")]
    assert cf.key_values(old, {}) == [("D", "the rest of it")]


def test_exec_form_of_run_is_not_substituted_but_copy_is() -> None:
    run, copy = cf.parse('FROM scratch\nRUN ["echo", "$X"]\nCOPY ["$X", "/d/"]\n').instructions[1:]
    assert cf.substitute(run, {"X": "1"}) == ["echo", "$X"]
    assert cf.substitute(copy, {"X": "1"}) == ["1", "/d/"]


def test_stage_names() -> None:
    a, b, c = cf.parse("FROM busybox AS Build\nFROM ${IMG:-scratch}\nFROM a b\n").instructions
    assert cf.stage_name(a, {}) == ("busybox", "build")
    assert cf.stage_name(b, {}) == ("scratch", None)
    with pytest.raises(ContainerfileError, match=r"^Containerfile:3: FROM: expected FROM IMAGE \[AS NAME\]$"):
        cf.stage_name(c, {})


@pytest.mark.parametrize(("path", "left_out"), [
    ("secret.key", True),
    ("keep.key", False),          # taken back in by "!keep.key"
    ("build", True),
    ("build/out/a.o", True),      # below an ignored directory
    ("src/a.tmp", True),          # **/*.tmp
    ("a.tmp", True),
    ("src/main.c", False),
    ("docs/x/README.md", False),  # "docs/*" matches docs/x, "!docs/x/README.md" takes it back
    ("docs/x/other", True),
    ("t?st", True),
    ("test", True),
    ("toast", False),
])
def test_containerignore(path: str, left_out: bool) -> None:
    patterns = cf.ignore_patterns("# comment\n*.key\n!keep.key\n/build/\n**/*.tmp\ndocs/*\n"
                                  "!docs/x/README.md\nt[ae]st\nt\\?st\n")
    assert cf.ignored(path, patterns) is left_out
