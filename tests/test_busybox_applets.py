"""Every busybox applet the book, the labs and the README run in a container works there.

The bundled image is Debian's busybox-static (mini_engine/images/busybox.py), and a
learner copies the commands of a chapter as they are. So the chapters, the
labs' READMEs and lab.py files, and the README are scanned for the commands
they run inside a container: what follows the image name `busybox` (or the
busybox binary, or `chroot DIR`, or `mini-engine exec NAME`), and every
command of an `sh -c` script given to it. Each applet found must have an
entry below, a command and its exact output, run in a container on the
default confinement; the networked ones (wget, httpd, ping, nc) run on the
default bridge network, in network namespaces the test makes.

Debian 12's wget died of SIGSEGV on `-T` (mini_engine/images/busybox.py,
mend_wget): the copy in the image refuses -T, and `timeout` bounds a
download from a server that never answers.
"""

from __future__ import annotations

import ast
import re
import shlex
import subprocess

import pytest
from conftest import REPO, Engine
from fixtures.netlab import NetLab

from mini_engine.images.busybox import BUSYBOX
from mini_engine.labkit import wait_until

pytestmark = pytest.mark.root

# applet -> (a shell snippet that runs it as $applet, its exact output, stderr
# included; an re.Pattern must match the whole output). The snippets run in
# one container, `--hostname applets`, each in a subshell of its own; $applet
# is the applet's path, so a shell builtin of the same name (echo, kill,
# test, printf) does not stand in for it.
APPLETS: dict[str, tuple[str, str | re.Pattern[str]]] = {
    "awk": ("echo 1 2 3 | $applet '{print $2 + $3}'", "5\n"),
    "cat": ("echo hi > /tmp/cat; $applet /tmp/cat", "hi\n"),
    "chmod": ("touch /tmp/chmod; $applet 640 /tmp/chmod; stat -c %a /tmp/chmod", "640\n"),
    "chown": ("touch /tmp/chown; $applet 1000:100 /tmp/chown; stat -c %u:%g /tmp/chown", "1000:100\n"),
    "cut": ("echo a:b:c | $applet -d: -f2", "b\n"),
    "dd": ("$applet if=/dev/zero bs=1k count=4 2>/dev/null | wc -c", "4096\n"),
    "echo": ("$applet -n a; $applet b", "ab\n"),
    "grep": ("printf 'one\\ntwo\\n' | $applet -n tw", "2:two\n"),
    "hostname": ("$applet", "applets\n"),
    "id": ("$applet -u; $applet -un", "0\nroot\n"),
    "ip": ("$applet -o link show lo", re.compile(r"1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 .*\n")),
    "kill": ("sh -c \"$applet -TERM \\$\\$; echo not killed\"; echo $?", "Terminated\n143\n"),
    "ln": ("$applet -s /nowhere /tmp/ln; readlink /tmp/ln", "/nowhere\n"),
    "ls": ("mkdir /tmp/ls; touch /tmp/ls/b /tmp/ls/a; $applet /tmp/ls", "a\nb\n"),
    "mkdir": ("$applet -p /tmp/mkdir/a/b; stat -c %F /tmp/mkdir/a/b", "directory\n"),
    # chapter 06: CAP_MKNOD makes the node, the device filter refuses opening it.
    "mknod": ("$applet /tmp/kmsg c 1 11 && cat /tmp/kmsg",
              "cat: can't open '/tmp/kmsg': Operation not permitted\n"),
    # chapter 06: no CAP_SYS_ADMIN, no mount; reading the mount table is fine.
    "mount": ("mkdir -p /mnt; $applet -t tmpfs x /mnt; echo $?; $applet | grep '^proc on /proc '",
              "mount: permission denied (are you root?)\n1\n"
              "proc on /proc type proc (rw,nosuid,nodev,noexec,relatime)\n"),
    "printf": ("$applet '%s-%03d\\n' a 7", "a-007\n"),
    "ps": ("$applet -o pid,comm", re.compile(r"PID\s+COMMAND\n\s+1 sh\n(\s+\d+ sh\n)?\s+\d+ ps\n")),
    "rm": ("touch /tmp/rm; $applet /tmp/rm; ls /tmp/rm", "ls: /tmp/rm: No such file or directory\n"),
    "sed": ("echo hello | $applet s/l/L/g", "heLLo\n"),
    "seq": ("$applet 3", "1\n2\n3\n"),
    "sh": ("$applet -c 'echo $((6 * 7))'", "42\n"),
    "sleep": ("$applet 0.1; echo $?", "0\n"),
    "stat": ("$applet -c '%a %U %F' /tmp", "1777 root directory\n"),
    "test": ("$applet -d /tmp; echo $?; $applet -f /tmp; echo $?", "0\n1\n"),
    "timeout": ("$applet 5 echo in time; $applet 0.2 sleep 5; echo $?", "in time\nTerminated\n143\n"),
    "touch": ("$applet /tmp/touch; stat -c '%s %F' /tmp/touch", "0 regular empty file\n"),
    "tr": ("echo abc | $applet a-c A-C", "ABC\n"),
    "true": ("$applet; echo $?", "0\n"),
    # chapter 06: the seccomp profile refuses unshare to a container without CAP_SYS_ADMIN.
    "unshare": ("$applet -U true; echo $?", "unshare: unshare(0x10000000): Operation not permitted\n1\n"),
    "wc": ("printf 'a b\\nc\\n' | $applet -l", "2\n"),
}

# The applets that need a network and a second container: test_networked_applets.
NETWORKED = {"httpd", "nc", "ping", "wget"}
# The ones that ask a user network's DNS responder (the default network has none): their
# exact output is checked in tests/test_stage7_dns.py.
ON_USER_NETWORKS = {"nslookup"}


# --- Which applets the book uses ------------------------------------------------

SHELLS = {"sh", "ash", "hush", "bash"}
ENGINES = {"mini-engine", "mini-runc", "runc", "podman", "docker"}
# Commands that run another command after their options and these many arguments.
WRAPPERS = {"busybox": 0, "exec": 0, "nohup": 0, "setsid": 0, "env": 0, "nice": 0, "time": 0,
            "xargs": 0, "unshare": 0, "nsenter": 0, "setpriv": 0, "timeout": 1, "chroot": 1}
EXEC_VALUE_OPTIONS = {"-e", "--env", "-u", "--user", "-w", "--workdir", "--cwd"}
OPERATOR = re.compile(r"[;&|()<>]+")
BIN_DIRS = ("", "/bin", "/sbin", "/usr/bin", "/usr/sbin")


def busybox_applets() -> set[str]:
    return set(subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split())


def words(line: str) -> list[str]:
    """A command line as the shell splits it, with ; | && ( ) as words of their own."""
    try:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
        lexer.whitespace_split = True
        return list(lexer)
    except ValueError:  # an unclosed quote: a line of a longer script
        return line.split()


def command(tokens: list[str], i: int, applets: set[str], found: set[str]) -> int:
    """``tokens[i]`` is a command run in a container: note it and what it runs; return where it ends."""
    while i < len(tokens) and re.match(r"[A-Za-z_]\w*=", tokens[i]):  # VAR=value cmd
        i += 1
    if i >= len(tokens) or OPERATOR.fullmatch(tokens[i]):
        return i
    where, _, name = tokens[i].rpartition("/")
    if where not in BIN_DIRS:  # /etc/passwd, ./script: not an applet
        return i + 1
    if name in applets:
        found.add(name)
    if name in SHELLS and i + 2 < len(tokens) and tokens[i + 1] == "-c":
        script(tokens[i + 2], applets, found)
        return i + 3
    if name in WRAPPERS:
        j = i + 1
        while j < len(tokens) and tokens[j].startswith("-"):
            j += 1
        return command(tokens, j + WRAPPERS[name], applets, found)
    return i + 1


def script(text: str, applets: set[str], found: set[str]) -> None:
    """Every command of a shell script that runs in a container."""
    for line in text.splitlines():
        tokens = words(line)
        i, start = 0, True
        while i < len(tokens):
            if OPERATOR.fullmatch(tokens[i]):
                i, start = i + 1, True
            elif start:
                i, start = command(tokens, i, applets, found), False
            else:
                i += 1


def host_line(line: str, applets: set[str], found: set[str]) -> None:
    """A command typed on the host: what runs in a container comes after the image
    (or the busybox binary), after `chroot DIR`, and after `ENGINE exec [OPTIONS] NAME`."""
    tokens = words(re.sub(r"^\s*(?:#|\$|/ #)\s+", "", line))  # the prompts of the book's listings
    engine, i = False, 0
    while i < len(tokens):
        token = tokens[i]
        if token == "busybox":
            i = command(tokens, i + 1, applets, found)
        elif token == "chroot":
            i = command(tokens, i + 2, applets, found)
        elif engine and token == "exec":
            j = i + 1
            while j < len(tokens) and tokens[j].startswith("-"):
                j += 2 if tokens[j] in EXEC_VALUE_OPTIONS else 1
            i = command(tokens, j + 1, applets, found)
        else:
            if OPERATOR.fullmatch(token):
                engine = False
            elif token.rpartition("/")[2] in ENGINES:
                engine = True
            i += 1


def markdown_code(text: str) -> list[str]:
    """The lines of a Markdown file's fenced and indented code blocks and `code` spans."""
    blocks = re.findall(r"```[^\n]*\n(.*?)```", text, re.S)
    blocks += re.findall(r"(?m)^(?: {4}.*\n?)+", text)
    blocks += re.findall(r"`([^`\n]+)`", text)
    return [line for block in blocks for line in block.splitlines()]


def python_commands(text: str) -> list[str]:
    """The command lines of a lab.py: its calls' and lists' strings, joined as the
    shell would see them (a variable named in them stands for the strings
    assigned to it), and the `code` spans of its comments (the notebook's text)."""
    tree = ast.parse(text)
    assigned: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    assigned.setdefault(target.id, []).append(node.value.value)

    def string(node: ast.expr) -> str:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name) and node.id in assigned:
            return "\n".join(assigned[node.id])
        if isinstance(node, ast.JoinedStr):
            return "".join(string(v.value) if isinstance(v, ast.FormattedValue) else string(v)
                           for v in node.values)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return string(node.left) + string(node.right)
        return "X"

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple)):
            lines.append(shlex.join(string(e) for e in node.elts))
        elif isinstance(node, ast.Call):
            lines += [string(a) for a in node.args]  # engine("run --rm busybox ls")
            lines.append(shlex.join(string(a) for a in node.args))  # engine("run", "busybox", "ls")
    comments = "\n".join(line.split("#", 1)[1] for line in text.splitlines() if line.lstrip().startswith("#"))
    return lines + re.findall(r"`([^`\n]+)`", comments)


def used_applets() -> dict[str, list[str]]:
    """applet -> the files that run it in a container."""
    applets = busybox_applets()
    sources = sorted(REPO.glob("chapters/*.md")) + sorted(REPO.glob("labs/*/README.md")) \
        + sorted(REPO.glob("labs/*/lab.py")) + [REPO / "README.md"]
    used: dict[str, list[str]] = {}
    for path in sources:
        text = path.read_text()
        found: set[str] = set()
        for line in python_commands(text) if path.suffix == ".py" else markdown_code(text):
            host_line(line, applets, found)
        for applet in found:
            used.setdefault(applet, []).append(str(path.relative_to(REPO)))
    return used


def test_every_applet_the_book_runs_has_a_check() -> None:
    used = used_applets()
    # The scan sees what the chapters are known to run: a shell, a server, a client.
    assert {"sh", "httpd", "ping", "ip", "cat"} <= used.keys(), sorted(used)
    checked = APPLETS.keys() | NETWORKED | ON_USER_NETWORKS
    unchecked = {applet: files for applet, files in used.items() if applet not in checked}
    assert unchecked == {}, "add these applets to APPLETS in tests/test_busybox_applets.py"
    assert checked <= busybox_applets()


def test_the_scan_finds_container_commands_only() -> None:
    applets = {"sh", "ls", "cat", "mount", "wc", "ps", "sleep", "awk", "echo", "grep"}
    found: set[str] = set()
    for line in ["# mount -t tmpfs x /mnt; mini-engine run --rm busybox ls / | wc -l",
                 "# mini-engine run --rm -e A=1 busybox sh -c \"awk '{print 1}' /x; echo $$ | grep 1\"",
                 "# mini-engine exec -e A=1 -it web cat /etc/hosts",
                 "# mini-engine --stage 0 run --rm busybox /etc/passwd",
                 "# chroot rootfs /bin/ps"]:
        host_line(line, applets, found)
    assert found == {"ls", "sh", "awk", "echo", "grep", "cat", "ps"}  # not the host's mount and wc


# --- The applets, run -----------------------------------------------------------

def full_paths() -> dict[str, str]:
    """applet -> its path in the image (/bin/ls, /usr/bin/wget)."""
    listed = subprocess.run([BUSYBOX, "--list-full"], capture_output=True, text=True, check=True).stdout
    return {path.rpartition("/")[2]: f"/{path}" for path in listed.split()}


def sections(output: str) -> dict[str, str]:
    """The harness's output, "== NAME" lines first, split back into each applet's."""
    found: dict[str, str] = {}
    name = None
    for line in output.splitlines(keepends=True):
        if line.startswith("== "):
            name = line[3:].strip()
            found[name] = ""
        elif name is not None:
            found[name] += line
    return found


def test_each_applet_in_a_container(engine: Engine) -> None:
    paths = full_paths()
    harness = "".join(f"echo '== {name}'\n( applet={paths[name]}; {snippet} ) 2>&1\n"
                      for name, (snippet, _) in APPLETS.items())
    result = engine("run", "--rm", "--hostname", "applets", "busybox", "sh", "-c", harness)
    assert result.returncode == 0, result.stderr
    got = sections(result.stdout)
    wrong = {}
    for name, (_, expected) in APPLETS.items():
        ok = expected.fullmatch(got.get(name, "")) if isinstance(expected, re.Pattern) \
            else got.get(name) == expected
        if not ok:
            wrong[name] = (got.get(name), expected)
    assert wrong == {}


# --- The networked ones, on the default bridge ------------------------------------

SERVE = "mkdir -p /www && echo hello from web > /www/index.html && exec httpd -f -p 80 -h /www"
SILENT = "sleep 60 | nc -l -p 81"  # takes a connection and never answers


@pytest.mark.stage(7)
def test_networked_applets(net: NetLab) -> None:
    servers = [net.popen("run", "--rm", "--name", name, "busybox", "sh", "-c", command,
                         stdout=subprocess.DEVNULL) for name, command in (("web", SERVE), ("silent", SILENT))]
    try:
        # The silent server takes one connection only: ask its netstat, not a client, when it listens.
        assert wait_until(lambda: ":81 " in net.run("exec", "silent", "netstat", "-ltn").stdout), \
            "the silent server did not listen"
        client = (
            "for i in $(seq 100); do wget -q -O /dev/null http://web/ 2>/dev/null && break; sleep 0.1; done\n"
            "address=$(ping -c 1 web | sed -n 's/^PING web (\\(.*\\)):.*/\\1/p')\n"
            "wget -qO- http://web/\n"
            "wget -qO- http://$address/\n"
            "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc web 80 | tail -n 1\n"
            "ping -c 1 -W 5 web | grep -c ' bytes from '\n"
            "wget -T 5 -qO- http://web/; echo \"wget -T: $?\"\n"
            "timeout 1 wget -qO- http://silent:81/; echo \"timeout 1 wget on a silent server: $?\"\n"
        )
        result = net.run("run", "--rm", "busybox", "sh", "-c", client)
        assert result.stdout == ("hello from web\n" * 3 + "1\n" + "wget -T: 1\n"
                                 + "timeout 1 wget on a silent server: 143\n"), result.stderr
        assert result.stderr.startswith("wget: invalid option -- 'T'\n"), result.stderr
    finally:
        for name, server in zip(("web", "silent"), servers, strict=True):
            net.run("kill", name)
            assert server.wait(timeout=30) == 137
