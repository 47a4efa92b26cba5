"""``--format``'s template engine (mini_engine/gotemplate.py), against the documentation it follows.

The examples are docker's ("Format command and log output", the ``ps``,
``images`` and ``inspect`` references at docs.docker.com) and Go's
(``text/template``'s package documentation), run on values shaped as docker's
JSON is; each expected output is what docker and Go print for them.
"""

from __future__ import annotations

import datetime

import pytest

from mini_engine.gotemplate import Fields, TemplateError, human_duration, parse, printf, render, tabwriter

pytestmark = [pytest.mark.stage(0), pytest.mark.unit]

# A container as `docker inspect` shows one, cut to what the examples use.
CONTAINER = {
    "Name": "/Web_Front",
    "Args": ["-c", "echo hi"],
    "Image": "busybox:1.36",
    "LogPath": "/var/lib/docker/containers/abc/abc-json.log",
    "State": {"Status": "running", "Running": True, "Pid": 4242, "ExitCode": 0},
    "Config": {"Image": "busybox:1.36", "Labels": {"com.example.team": "blue", "tier": "web"},
               "Env": ["PATH=/bin", "A=1"]},
    "Mounts": [{"Type": "volume", "Name": "data", "Destination": "/data", "RW": True}],
    "NetworkSettings": {
        "Networks": {"front": {"IPAddress": "10.89.0.2"}, "back": {"IPAddress": "10.89.1.2"}},
        "Ports": {"8787/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8787"}], "9000/tcp": None},
    },
}


def run(template: str, value: object = CONTAINER) -> str:
    return parse(template).execute(value)


@pytest.mark.parametrize(("template", "expected"), [
    # docs.docker.com, "Format command and log output": one example per function.
    ('{{join .Args " , "}}', "-c , echo hi"),
    ("{{json .Mounts}}", '[{"Destination":"/data","Name":"data","RW":true,"Type":"volume"}]'),
    ("{{lower .Name}}", "/web_front"),
    ('{{split .Image ":"}}', "[busybox 1.36]"),
    ("{{title .Name}}", "/Web_Front"),
    ("{{upper .Name}}", "/WEB_FRONT"),
    ("{{range .NetworkSettings.Networks}}{{println .IPAddress}}{{end}}", "10.89.1.2\n10.89.0.2\n"),
    # The docker inspect reference's examples.
    ("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "10.89.1.210.89.0.2"),
    ("{{.LogPath}}", "/var/lib/docker/containers/abc/abc-json.log"),
    ("{{.Config.Image}}", "busybox:1.36"),
    ('{{(index (index .NetworkSettings.Ports "8787/tcp") 0).HostPort}}', "8787"),
    ("{{range $p, $conf := .NetworkSettings.Ports}} {{$p}} -> {{(index $conf 0).HostPort}} {{end}}",
     None),  # index of nil: an error below, as in Go
    ("{{json .Config.Labels}}", '{"com.example.team":"blue","tier":"web"}'),
    ("{{.State.Status}}", "running"),
    ("{{.State.Pid}} {{.State.Running}} {{.State.ExitCode}}", "4242 true 0"),
    # Go prints a map sorted by key, a list in brackets, a missing key of a map as <no value>.
    ("{{.Config.Labels}}", "map[com.example.team:blue tier:web]"),
    ("{{.Config.Env}}", "[PATH=/bin A=1]"),
    ("{{.Config.Missing}}", "<no value>"),
    ('{{index .Config.Labels "tier"}}', "web"),
    ('{{index .Config.Labels "none"}}', "<no value>"),
    ("{{len .Config.Env}} {{index .Config.Env 1}}", "2 A=1"),
])
def test_docker_documented_examples(template: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(TemplateError):
            run(template)
    else:
        assert run(template) == expected


@pytest.mark.parametrize("template", [
    # pkg.go.dev/text/template, "Examples": each prints "output" quoted.
    '{{"\\"output\\""}}',
    "{{`\"output\"`}}",
    '{{printf "%q" "output"}}',
    '{{"output" | printf "%q"}}',
    '{{printf "%q" (print "out" "put")}}',
    '{{"put" | printf "%s%s" "out" | printf "%q"}}',
    '{{"output" | printf "%s" | printf "%q"}}',
    '{{with "output"}}{{printf "%q" .}}{{end}}',
    '{{with $x := "output" | printf "%q"}}{{$x}}{{end}}',
    '{{with $x := "output"}}{{printf "%q" $x}}{{end}}',
    '{{with $x := "output"}}{{$x | printf "%q"}}{{end}}',
])
def test_go_documented_pipelines(template: str) -> None:
    assert run(template) == '"output"'


@pytest.mark.parametrize(("template", "expected"), [
    ('{{if eq .State.Status "running"}}up{{else}}down{{end}}', "up"),
    ('{{if eq .State.Status "exited"}}down{{else if .State.Running}}still up{{else}}?{{end}}', "still up"),
    ('{{if ne .State.Pid 0}}{{.State.Pid}}{{end}}', "4242"),
    ("{{if and .State.Running (not .State.ExitCode)}}fine{{end}}", "fine"),
    ("{{if or .Config.Missing .Image}}{{.Image}}{{end}}", "busybox:1.36"),
    ("{{if gt (len .Args) 1}}many{{end}}", "many"),
    ("{{range .Config.Nothing}}x{{else}}none{{end}}", "none"),
    ("{{range $i, $e := .Args}}{{$i}}={{$e}};{{end}}", "0=-c;1=echo hi;"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}:{{$v}} {{end}}", "com.example.team:blue tier:web "),
    ("{{$name := .Name}}{{range .Args}}{{$name}}{{end}}", "/Web_Front/Web_Front"),
    ("{{range .Args}}{{$.Image}} {{end}}", "busybox:1.36 busybox:1.36 "),
    ('{{printf "%-8s|%5d|%v|%t" "ab" 42 .Args true}}', "ab      |   42|[-c echo hi]|true"),
    ("{{print 1 2 \"a\" 3}}", "1 2a3"),  # fmt.Sprint: a space between two operands that are no strings
    ('{{println "a" 1}}', "a 1\n"),
    ("a  {{- .State.Status -}}  b", "arunningb"),
    ("{{/* a comment */}}x", "x"),
    ("{{json .}}", None),  # below: the same as json.dumps with sorted keys, on one line
    ('{{pad "x" 1 2}}|{{truncate "abcdef" 3}}', " x  |abc"),
])
def test_go_template_actions(template: str, expected: str | None) -> None:
    if expected is None:
        out = run(template)
        assert out.startswith('{"Args":["-c","echo hi"],"Config":{') and "\n" not in out
    else:
        assert run(template) == expected


def test_printf_verbs() -> None:
    assert printf("%s %d %x %5.2f %% %v", "a", 7, 255, 3.14159, None) == "a 7 ff  3.14 % <nil>"
    assert printf("%s") == "%!s(MISSING)"
    assert printf("%d", "x") == "%!d(x)"
    assert printf("x", 1) == "x%!(EXTRA 1)"


@pytest.mark.parametrize(("template", "message"), [
    ("{{.Name", "template: unclosed action: {{.Name"),
    ("{{if .Name}}x", "template: unexpected EOF: {{if}} without {{end}}"),
    ("x{{end}}", "template: unexpected {{end}}"),
    ("{{else}}", "template: {{else}} outside if, range or with"),
    ("{{nosuch .Name}}", 'template: function "nosuch" not defined'),
    ("{{$x}}", 'template: undefined variable "$x"'),
    ("{{range .Name}}x{{end}}", "template: range can't iterate over /Web_Front"),
    ('{{join .Name ","}}', "template: join: wrong type for value; expected a list, got /Web_Front"),
    ("{{define \"x\"}}{{end}}", "template: {{define}} is not supported here"),
    ("{{.Name.First}}", "template: can't evaluate field First in /Web_Front"),
    ('{{"\\x41"}}', 'template: bad string "\\x41": use \\n, \\t, \\", \\\\ or \\uXXXX'),
])
def test_errors_say_what_is_wrong(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as error:
        run(template)
    assert str(error.value) == message


def test_a_row_is_a_struct_a_field_it_lacks_is_an_error() -> None:
    row = Fields(ID="0123456789ab", Names="web", Label=lambda key: {"team": "blue"}.get(key, ""))
    assert parse('{{.Names}} {{.Label "team"}}{{.Label "none"}}').execute(row) == "web blue"
    with pytest.raises(TemplateError) as error:
        parse("{{.Nmes}}").execute(row)
    assert str(error.value) == "template: can't evaluate field Nmes: the fields are ID, Label, Names"
    assert parse("{{json .}}").execute(row) == '{"ID":"0123456789ab","Names":"web"}'  # no methods in JSON
    assert parse("{{.}}").execute(row) == "map[ID:0123456789ab Names:web]"
    for template, given in (("{{.Label}}", 0), ('{{.Label "a" "b"}}', 2)):
        with pytest.raises(TemplateError) as error:
            parse(template).execute(row)
        assert str(error.value) == f"template: wrong number of arguments ({given}) for .Label"


def test_table_as_docker_image_ls_prints_it() -> None:
    """docs.docker.com's `docker image list --format "table {{.ID}}\\t{{.Repository}}\\t{{.Tag}}\\t{{.Size}}"`:
    the header from the fields' headers, columns as wide as their widest cell plus three, ten at least."""
    rows = [Fields(ID="2d29fc788ff2", Repository="busybox", Tag="latest", Size="2.1MB"),
            Fields(ID="d1e2f3a4b5c6", Repository="localhost:5000/team/app", Tag="1", Size="120MB")]
    headers = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Size": "SIZE"}
    assert render("table {{.ID}}\\t{{.Repository}}\\t{{.Tag}}\\t{{.Size}}", rows, headers) == (
        "IMAGE ID       REPOSITORY                TAG       SIZE\n"
        "2d29fc788ff2   busybox                   latest    2.1MB\n"
        "d1e2f3a4b5c6   localhost:5000/team/app   1         120MB\n")
    # Without "table": the template once per row, no header, the tab a tab.
    assert render("{{.ID}}\\t{{.Tag}}", rows, headers) == "2d29fc788ff2\tlatest\nd1e2f3a4b5c6\t1\n"
    # A field with no header of its own is headed by its name, upper-cased.
    assert render("table {{.Tag}}", rows[:1]) == "TAG\nlatest\n"
    # docker ps --format "table {{.ID}}\t{{.Label \"team\"}}": a method's header.
    labelled = [Fields(ID="0123456789ab", Label=lambda key: "blue")]
    assert render('table {{.ID}}\\t{{.Label "team"}}', labelled, {"ID": "CONTAINER ID"}) == (
        "CONTAINER ID   LABEL\n0123456789ab   blue\n")


def test_tabwriter_aligns_runs_of_lines_that_have_the_column() -> None:
    # Go's text/tabwriter: a line with fewer cells ends the column's block.
    assert tabwriter("a\tb\tc\nlonger-cell\td\n\nx\ty\n") == (
        "a             b         c\n"
        "longer-cell   d\n"
        "\n"
        "x         y\n")


@pytest.mark.parametrize(("seconds", "said"), [
    (0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"),
    (150, "2 minutes"), (3600, "About an hour"), (3 * 3600, "3 hours"), (2.5 * 3600, "3 hours"),
    (3 * 86400, "3 days"),
    (20 * 86400, "2 weeks"), (90 * 86400, "3 months"), (800 * 86400, "2 years"),
])
def test_human_duration_as_docker_says_it(seconds: float, said: str) -> None:
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    assert human_duration(now - datetime.timedelta(seconds=seconds), now) == said
