"""Stage 9: cp between a container and the host, as docker cp, running or stopped, and never out of the root."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Engine

pytestmark = [pytest.mark.stage(9), pytest.mark.root]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def running(engine: Engine) -> Iterator[str]:
    ok(engine("run", "-d", "--name", "cp-running", "busybox", "sleep", "120"))
    yield "cp-running"
    engine("rm", "-f", "cp-running")


@pytest.fixture
def stopped(engine: Engine, tmp_path: Path) -> Iterator[str]:
    """An exited container that made files, a directory, and hostile symlinks to the host's tmp_path."""
    script = ("echo made > /made; mkdir -p /d/e; echo deep > /d/e/f; "
              "chown 1000:2000 /d/e/f; chmod 4750 /d/e/f; "
              f"ln -s /d/e /d/link; ln -s {tmp_path} /escape; "
              f"ln -s ../../../../../../../..{tmp_path}/secret /up")
    ok(engine("run", "--name", "cp-stopped", "busybox", "sh", "-c", script))
    yield "cp-stopped"
    engine("rm", "-f", "cp-stopped")


def test_files_and_directories_in_and_out_of_a_running_container(engine: Engine, running: str,
                                                                 tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("hello\n")
    (tmp_path / "hello.txt").chmod(0o640)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "x").write_text("x\n")
    os.symlink("sub/x", tree / "lx")
    assert ok(engine("cp", str(tmp_path / "hello.txt"), f"{running}:/tmp/")) == ""
    ok(engine("cp", str(tree), f"{running}:/tmp/tree"))      # a new name: the directory becomes it
    ok(engine("cp", str(tree), f"{running}:/tmp/tree"))      # there now: it goes inside, as tree/tree
    script = ("cat /tmp/hello.txt; stat -c '%a %u:%g' /tmp/hello.txt; "
              "cat /tmp/tree/sub/x /tmp/tree/tree/lx; readlink /tmp/tree/lx")
    said = ok(engine("exec", running, "sh", "-c", script))
    assert said == "hello\n640 0:0\nx\nx\nsub/x\n"
    ok(engine("cp", f"{running}:/etc/passwd", str(tmp_path / "passwd")))
    assert (tmp_path / "passwd").read_text() == ok(engine("exec", running, "cat", "/etc/passwd"))
    ok(engine("cp", f"{running}:/tmp/tree", str(tmp_path / "back")))
    assert (tmp_path / "back" / "sub" / "x").read_text() == "x\n"
    assert os.readlink(tmp_path / "back" / "lx") == "sub/x"
    ok(engine("cp", f"{running}:/tmp/tree/.", str(tmp_path / "contents")))  # SRC/. : what is inside
    assert sorted(os.listdir(tmp_path / "contents")) == ["lx", "sub", "tree"]


def test_a_stopped_container_through_its_upper_dir(engine: Engine, stopped: str, tmp_path: Path) -> None:
    ok(engine("cp", f"{stopped}:/made", str(tmp_path / "made")))
    assert (tmp_path / "made").read_text() == "made\n"
    ok(engine("cp", "-a", f"{stopped}:/d", str(tmp_path / "d")))
    f = (tmp_path / "d" / "e" / "f").stat()
    assert (f.st_mode & 0o7777, f.st_uid, f.st_gid) == (0o4750, 1000, 2000)  # -a: the owner kept, setuid too
    assert os.readlink(tmp_path / "d" / "link") == "/d/e"
    ok(engine("cp", f"{stopped}:/d/e/f", str(tmp_path / "mine")))
    mine = (tmp_path / "mine").stat()
    assert (mine.st_uid, mine.st_gid) == (os.getuid(), os.getgid())  # without -a: the user's who copies
    (tmp_path / "new").write_text("new\n")
    ok(engine("cp", str(tmp_path / "new"), f"{stopped}:/d/new"))
    cid = ok(engine("inspect", "--format", "{{.Id}}", stopped)).strip()
    upper = engine.root / "containers" / cid / "upper"
    assert (upper / "d" / "new").read_text() == "new\n"  # written into the container's own layer
    assert not os.path.ismount(engine.root / "containers" / cid / "rootfs")  # and the overlay taken down
    assert "A /d/new" in ok(engine("diff", stopped)).splitlines()


def test_tar_streams_on_stdin_and_stdout(engine: Engine, stopped: str, running: str) -> None:
    out = subprocess.run(engine.argv("cp", f"{stopped}:/d", "-"), env=engine.env, capture_output=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == ["d", "d/e", "d/e/f", "d/link"]
        assert (members["d/e/f"].uid, members["d/e/f"].gid, members["d/e/f"].mode) == (1000, 2000, 0o4750)
        assert members["d/link"].linkname == "/d/e"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("given/file")
        info.size, info.uid, info.mode = 6, 42, 0o600
        tar.addfile(info, io.BytesIO(b"given\n"))
    put = subprocess.run(engine.argv("cp", "-", f"{running}:/tmp"), input=buffer.getvalue(), env=engine.env,
                         capture_output=True, timeout=60)
    assert put.returncode == 0, put.stderr
    assert ok(engine("exec", running, "sh", "-c", "cat /tmp/given/file; stat -c '%a %u' /tmp/given/file")) \
        == "given\n600 0\n"


def test_archive_mode_keeps_the_owner_going_in(engine: Engine, running: str, tmp_path: Path) -> None:
    (tmp_path / "owned").write_text("owned\n")
    os.chown(tmp_path / "owned", 1234, 5678)
    ok(engine("cp", "-a", str(tmp_path / "owned"), f"{running}:/tmp/a"))
    ok(engine("cp", str(tmp_path / "owned"), f"{running}:/tmp/b"))
    assert ok(engine("exec", running, "stat", "-c", "%u:%g", "/tmp/a", "/tmp/b")) == "1234:5678\n0:0\n"


def test_hostile_symlinks_never_reach_the_host(engine: Engine, stopped: str, tmp_path: Path) -> None:
    """/escape -> the host's tmp_path and /up -> ../../..tmp_path/secret, made by the container: each is
    followed (if at all) inside the container's root, where no such directory is."""
    (tmp_path / "secret").write_text("host secret\n")
    (tmp_path / "payload").write_text("pwned\n")
    before = sorted(os.listdir(tmp_path))
    into = engine("cp", str(tmp_path / "payload"), f"{stopped}:/escape/payload2")
    assert into.returncode == 125 and into.stderr.startswith("mini-engine: ") and into.stderr.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == before
    through = engine("cp", f"{stopped}:/escape/secret", str(tmp_path / "stolen"))
    assert (through.returncode, through.stderr) == (
        125, "mini-engine: /escape/secret: no such file or directory\n")
    followed = engine("cp", "-L", f"{stopped}:/up", str(tmp_path / "stolen"))
    assert (followed.returncode, followed.stderr) == (125, "mini-engine: /up: no such file or directory\n")
    # Without -L the link is copied as a link: its text, not the host's file.
    ok(engine("cp", f"{stopped}:/up", str(tmp_path / "link-only")))
    assert os.readlink(tmp_path / "link-only") == f"../../../../../../../..{tmp_path}/secret"
    # A tar that puts a symlink to the host first, then a file through it.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        link = tarfile.TarInfo("lnk")
        link.type, link.linkname = tarfile.SYMTYPE, str(tmp_path)
        tar.addfile(link)
        info = tarfile.TarInfo("lnk/pwned")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"pwned\n"))
        climb = tarfile.TarInfo("../../../../pwned2")
    put = subprocess.run(engine.argv("cp", "-", f"{stopped}:/"), input=buffer.getvalue(), env=engine.env,
                         capture_output=True, timeout=60)
    assert put.returncode == 125
    assert put.stderr == (b"mini-engine: lnk/pwned: refusing to write through 'lnk', which is not a directory "
                          b"(a symlink is never followed)\n")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        climb.size = 6
        tar.addfile(climb, io.BytesIO(b"pwned\n"))
    put = subprocess.run(engine.argv("cp", "-", f"{stopped}:/"), input=buffer.getvalue(), env=engine.env,
                         capture_output=True, timeout=60)
    assert put.stderr == b"mini-engine: ../../../../pwned2: a name that climbs out (..) is refused\n"
    # A tar into /escape: the directory is looked up in the root, where it is not.
    put = subprocess.run(engine.argv("cp", "-", f"{stopped}:/escape"), input=buffer.getvalue(), env=engine.env,
                         capture_output=True, timeout=60)
    assert (put.returncode, put.stderr) == (125, b"mini-engine: /escape: No such file or directory\n")
    assert sorted(os.listdir(tmp_path)) == sorted([*before, "link-only"])
    assert not any("pwned" in name for name in os.listdir("/"))


@pytest.mark.parametrize(("args", "message"), [
    (["nope:/etc/passwd", "{tmp}/x"], 'container "nope" does not exist'),
    (["{tmp}/a", "{tmp}/b"], "cp copies between a container and the host: one of SRC and DEST must be "
                             "CONTAINER:PATH, and only one"),
    (["cp-stopped:/no/such", "{tmp}/x"], "/no/such: no such file or directory"),
    (["cp-stopped:/d", "{tmp}/file"], "{tmp}/file: cannot copy a directory to a file"),
    (["cp-stopped:/made", "{tmp}/none/x"], "{tmp}/none: no such directory"),
    (["{tmp}/file", "cp-stopped:/made/x"], "/made: not a directory"),
])
def test_cp_failures_are_one_line(engine: Engine, stopped: str, tmp_path: Path, args: list[str],
                                  message: str) -> None:
    (tmp_path / "file").write_text("file\n")
    result = engine("cp", *(a.format(tmp=tmp_path) for a in args))
    assert (result.returncode, result.stderr) == (125, f"mini-engine: {message.format(tmp=tmp_path)}\n")


def test_a_user_namespaced_container_gets_its_own_ids(engine: Engine, tmp_path: Path) -> None:
    """--userns auto: root inside is a host uid of the range; what goes in belongs to the
    container's root, -a maps the owners through the uid map both ways."""
    ok(engine("run", "-d", "--userns", "auto", "--name", "cp-userns", "busybox", "sh", "-c",
              "touch /tmp/app && chown 1000:1000 /tmp/app && sleep 120"))
    try:
        (tmp_path / "in").write_text("in\n")
        os.chown(tmp_path / "in", 1234, 5678)
        ok(engine("cp", str(tmp_path / "in"), "cp-userns:/tmp/plain"))
        ok(engine("cp", "-a", str(tmp_path / "in"), "cp-userns:/tmp/kept"))
        said = ok(engine("exec", "cp-userns", "stat", "-c", "%u:%g", "/tmp/plain", "/tmp/kept"))
        assert said == "0:0\n1234:5678\n"
        ok(engine("cp", "-a", "cp-userns:/tmp/app", str(tmp_path / "app")))
        st = (tmp_path / "app").stat()
        assert (st.st_uid, st.st_gid) == (1000, 1000)  # as the container has it, not its host uid
    finally:
        engine("rm", "-f", "cp-userns")
