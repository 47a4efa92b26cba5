"""What a container was given stays its owner's: the engine's files, seen by another user.

A container's environment is in its ``config.json`` and ``container.json``,
its command there too, its output in ``ctr.log``, its files in ``rootfs/``
and ``upper/``; the runtime keeps a copy of the config under the runroot.
These tests look at all of them as an ordinary user (uid 65534, through
setpriv(1)) who knows the container's id, and expect the kernel to refuse
every look (mini_engine/paths.py).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import Engine, ok

from mini_engine.base.identity import subordinate_range
from mini_engine.labkit import wait_until

pytestmark = [pytest.mark.root]

NOBODY = 65534
STRANGER = 65533  # another ordinary user, for the rootless case

# Run as the other user: try to list each directory and read each file; print what the kernel said.
LOOK = """
import errno, json, os, sys
said = {}
for path in sys.argv[1:]:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as f:
                f.read()
        said[path] = "read"
    except OSError as exc:
        said[path] = errno.errorcode[exc.errno]
print(json.dumps(said))
"""


def as_user(uid: int, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups", *argv],
                          capture_output=True, text=True, timeout=120, cwd="/", env=env)


def look(uid: int, paths: list[Path]) -> dict[str, str]:
    """What ``uid`` gets for each path: "read", or the errno's name."""
    return json.loads(ok(as_user(uid, sys.executable, "-c", LOOK, *map(str, paths))))


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.mark.stage(8)
@pytest.mark.parametrize("userns", [[], ["--userns", "auto"]], ids=["host-ids", "userns-auto"])
def test_a_root_containers_environment_log_and_files_are_closed_to_other_users(
        engine: Engine, userns: list[str]) -> None:
    cid = ok(engine("run", "-d", *userns, "-e", "SECRET=hunter2", "busybox", "sh", "-c",
                    "echo $SECRET; echo $SECRET > /tmp/note; exec sleep 300")).strip()
    try:
        assert wait_until(lambda: engine("logs", cid).stdout == "hunter2\n")
        bundle, saved = engine.root / "containers" / cid, engine.runroot / "runtime" / cid
        pid = json.loads(ok(engine("inspect", cid)))[0]["State"]["Pid"]
        secrets = [bundle / "config.json", bundle / "container.json", bundle / "ctr.log",
                   saved / "config.json", saved / "state.json"]
        places = [engine.root, engine.root / "containers", bundle, bundle / "rootfs", bundle / "upper",
                  bundle / "rootfs/tmp/note", bundle / "upper/tmp/note", engine.runroot,
                  engine.runroot / "runtime", saved, *secrets,
                  Path(f"/proc/{pid}/environ"), Path(f"/proc/{pid}/root/tmp/note")]
        # The places are real, and root reads the secret in each record.
        assert all("hunter2" in path.read_text() for path in secrets[:4])
        assert look(NOBODY, places) == {str(path): "EACCES" for path in places}
        grep = as_user(NOBODY, "grep", "-rs", "hunter2", str(engine.root), str(engine.runroot))
        assert (grep.returncode, grep.stdout) == (2, "")  # nothing found, and some places refused
        # docker's stance: the roots 0710, a container's directory root's alone, its records 0600.
        assert [mode(p) for p in (engine.root, engine.root / "containers", engine.runroot)] == [0o710] * 3
        assert {mode(p) for p in secrets} == {0o600}
        group = subordinate_range("root", "/etc/subgid")[0]  # where --userns auto maps the root group
        assert os.stat(engine.root).st_gid == group
        # With --userns auto the container's root searches its way to its rootfs through the group.
        assert (mode(bundle), os.stat(bundle).st_gid) == ((0o710, group) if userns else (0o700, 0))
    finally:
        ok(engine("rm", "-f", cid))


@pytest.mark.stage(8)
def test_an_install_made_with_the_old_modes_is_closed_on_first_use(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    engine = Engine(tmp_path / "lib", tmp_path / "run")
    ok(engine("run", "-e", "SECRET=hunter2", "busybox", "true"))
    (cid,) = engine.containers()
    bundle = engine.root / "containers" / cid
    # What an engine before the rule left: 0755 roots, a 0711 bundle, 0644 records.
    for directory in (engine.root, engine.root / "containers", engine.runroot):
        directory.chmod(0o755)
    bundle.chmod(0o711)
    records = [bundle / "config.json", bundle / "container.json", *(engine.root / "images").iterdir()]
    for record in records:
        record.chmod(0o644)
    assert look(NOBODY, [bundle / "config.json"]) == {str(bundle / "config.json"): "read"}
    ok(engine("ps", "-a"))  # any command: the first use
    assert look(NOBODY, [bundle / "config.json", bundle]) == {
        str(bundle / "config.json"): "EACCES", str(bundle): "EACCES"}
    assert (mode(engine.root), mode(bundle), {mode(r) for r in records}) == (0o710, 0o700, {0o600})
    ok(engine("rm", cid))


@pytest.mark.stage(8)  # its containers run detached (run -d): stage 8's monitor and log
def test_a_learners_rootless_containers_stay_their_own() -> None:
    home = Path(tempfile.mkdtemp(prefix="rootless-", dir="/tmp"))
    try:
        os.chmod(home, 0o755)
        os.chown(home, NOBODY, NOBODY)
        env = dict(os.environ, HOME=str(home))  # the engine's default, rootless, roots
        env.pop("MINI_ENGINE_ROOT", None)
        env.pop("MINI_ENGINE_RUNROOT", None)
        env["XDG_RUNTIME_DIR"] = str(home / "xdg")

        def engine(*args: str) -> subprocess.CompletedProcess[str]:
            return as_user(NOBODY, sys.executable, "-m", "mini_engine", *args, env=env)

        (home / "xdg").mkdir(mode=0o700)
        os.chown(home / "xdg", NOBODY, NOBODY)
        ok(engine("run", "--name", "mine", "-e", "SECRET=hunter2", "busybox", "sh", "-c", "echo $SECRET"))
        root = home / ".local/share/mini-engine"
        (cid,) = os.listdir(root / "containers")
        bundle = root / "containers" / cid
        assert [mode(p) for p in (root, root / "containers", bundle, home / "xdg/mini-engine")] == [0o700] * 4
        assert {mode(bundle / name) for name in ("config.json", "container.json")} == {0o600}
        assert os.stat(bundle / "config.json").st_uid == NOBODY
        places = [root, bundle, bundle / "config.json", bundle / "container.json"]
        assert look(STRANGER, places) == {str(p): "EACCES" for p in places}
        assert look(NOBODY, [bundle / "config.json"]) == {str(bundle / "config.json"): "read"}
        ok(engine("rm", "mine"))
    finally:
        shutil.rmtree(home)
